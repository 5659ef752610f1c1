package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
)

// Priorities with real processes: with the pool paused, 200 jobs of
// priority 0 are submitted, then 20 of priority 9; resumed, a worker of
// concurrency 1 starts the high ones before all but a few of the normal
// ones (one in fairness+1 starts is a normal one while both lanes wait),
// and every job succeeds. docs/priorities.md quotes the figures.
func TestPriorityOrderRealProcesses(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	worker := startProc(t, env, "worker", "sys", "--concurrency", "1", "--health-addr", "127.0.0.1:0")
	waitReady(t, "http://"+worker.Addr(t, "health endpoints listening"))
	api := startProc(t, env, "api", "--addr", "127.0.0.1:0")
	apiURL := "http://" + api.Addr(t, "api listening")
	waitReady(t, apiURL)
	c, err := client.New(client.Config{BaseURL: apiURL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if out, errOut, code := warren(t, apiURL, "", "queue", "pause", "sys"); code != 0 {
		t.Fatalf("warren queue pause sys: exit %d, %s%s", code, out, errOut)
	}

	const normal, high, fairness = 200, 20, 8
	submit := func(n, priority int) []string {
		reqs := make([]client.JobRequest, n)
		for i := range reqs {
			reqs[i] = client.JobRequest{Type: "sys.echo", Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), Priority: priority}
		}
		res, err := c.EnqueueBatch(ctx, reqs)
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]string, n)
		for i, r := range res {
			if r.Error != nil || r.Job.Priority != priority {
				t.Fatalf("job %d of priority %d: %+v, %+v", i, priority, r.Job, r.Error)
			}
			ids[i] = r.Job.ID
		}
		return ids
	}
	normals := submit(normal, 0)
	highs := submit(high-1, 9)
	// One through the CLI's flag.
	out, errOut, code := warren(t, apiURL, "", "enqueue", "sys.echo", `{"cli":1}`, "--priority", "9")
	if id := strings.TrimSpace(out); code != 0 || !jobs.ValidID(id) {
		t.Fatalf("warren enqueue --priority 9: exit %d, %q %q", code, out, errOut)
	} else {
		highs = append(highs, id)
	}
	out, _, code = warren(t, apiURL, "", "queues", "-o", "json")
	var got struct{ Queues []client.Queue }
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("warren queues -o json: exit %d, %v: %s", code, err, out)
	}
	qs := got.Queues
	if i := slices.IndexFunc(qs, func(q client.Queue) bool { return q.Pool == "sys" }); i < 0 || qs[i].Ready != normal+high || qs[i].High != high {
		t.Errorf("warren queues while paused: %+v; want %d ready, %d of them high", qs, normal+high, high)
	}
	// The dashboard's pool card shows the high lane's part of the backlog.
	b := newBrowser(t, apiURL, 1280, 900, false)
	b.open("/ui/")
	b.waitFor("the sys pool's card to show its high-priority backlog", fmt.Sprintf(
		`(document.querySelector('[data-pool="sys"] [data-figure="high"]') || {}).textContent === "%d" && (document.querySelector('[data-pool="sys"] [data-figure="backlog"]') || {}).textContent === "%d"`,
		high, normal+high))
	b.shot("overview-high-priority")

	if out, errOut, code := warren(t, apiURL, "", "queue", "resume", "sys"); code != 0 {
		t.Fatalf("warren queue resume sys: exit %d, %s%s", code, out, errOut)
	}
	started := func(ids []string) []time.Time {
		var ts []time.Time
		for _, id := range ids {
			j, err := c.WaitDone(ctx, id)
			if err != nil || j.Status != jobs.StatusSucceeded || j.StartedAt == nil {
				t.Fatalf("job %s: %+v, %v; want succeeded", id, j, err)
			}
			ts = append(ts, *j.StartedAt)
		}
		return ts
	}
	hs, ns := started(highs), started(normals)
	if out, _, code := warren(t, apiURL, "", "job", "get", highs[len(highs)-1]); code != 0 || !strings.Contains(out, "9 (high lane)") {
		t.Errorf("warren job get of a high job: exit %d, %s; want its priority shown", code, out)
	}
	lastHigh := slices.MaxFunc(hs, func(a, b time.Time) int { return a.Compare(b) })
	before := 0
	for _, s := range ns {
		if s.Before(lastHigh) {
			before++
		}
	}
	t.Logf("%d of %d normal jobs started before the last of %d high ones (fairness %d)", before, normal, high, fairness)
	// One normal start per fairness high ones, and a few more: those the
	// normal lane handed over as consuming began, before the high lane's.
	if most := high/fairness + 4; before > most {
		t.Errorf("%d normal jobs started before the last high one, want at most %d", before, most)
	}
}

// The job page shows a job's priority, and says when it is in the high
// lane.
func TestPriorityOnTheJobPage(t *testing.T) {
	t.Parallel()
	_, base := devStack(t)
	b := newBrowser(t, base, 1280, 900, false)
	id := submit(t, base, "", `{"type":"sys.echo","payload":{"prio":7},"priority":7}`)
	b.open("/ui/jobs/" + id)
	b.waitFor("the job's priority", `(() => { const p = document.querySelector("[data-priority]"); return p && p.textContent === "7 (high lane)"; })()`)
	b.shot("job-priority")
	plain := submit(t, base, "", `{"type":"sys.echo","payload":{"prio":0}}`)
	b.open("/ui/jobs/" + plain)
	b.waitFor("priority 0 for a job submitted without", `(() => { const p = document.querySelector("[data-priority]"); return p && p.textContent === "0"; })()`)
}
