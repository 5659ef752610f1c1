package main_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
)

// A pool paused with the CLI, with real processes: the worker's running job
// finishes, no new job starts and queued ones wait, also after the worker
// restarts; `warren workers` and `warren queues` show it; resumed, the
// waiting jobs run, once each, on the new worker.
func TestPauseAndResumeRealProcesses(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	worker := startProc(t, env, "worker", "sys", "--health-addr", "127.0.0.1:0")
	waitReady(t, "http://"+worker.Addr(t, "health endpoints listening"))
	api := startProc(t, env, "api", "--addr", "127.0.0.1:0")
	apiURL := "http://" + api.Addr(t, "api listening")
	waitReady(t, apiURL)
	c, err := client.New(client.Config{BaseURL: apiURL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	long, _, err := c.Enqueue(ctx, client.JobRequest{Type: "sys.sleep", Payload: json.RawMessage(`{"ms":3000}`)})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the long job to run", func() bool {
		j, err := c.Get(ctx, long.ID)
		return err == nil && j.Status == jobs.StatusRunning
	})
	if out, errOut, code := warren(t, apiURL, "", "queue", "pause", "sys"); code != 0 {
		t.Fatalf("warren queue pause sys: exit %d, %s%s", code, out, errOut)
	}
	var waiting []string
	for range 3 {
		j, _, err := c.Enqueue(ctx, client.JobRequest{Type: "sys.echo", Payload: json.RawMessage(`{"hi":1}`)})
		if err != nil {
			t.Fatal(err)
		}
		waiting = append(waiting, j.ID)
	}
	done, err := c.WaitDone(ctx, long.ID)
	if err != nil || done.Status != jobs.StatusSucceeded || done.Attempt != 1 {
		t.Fatalf("the job running when the pool was paused: %+v, %v; want succeeded at the first attempt", done, err)
	}
	stillQueued := func(when string) {
		t.Helper()
		for _, id := range waiting {
			if j, err := c.Get(ctx, id); err != nil || j.Status != jobs.StatusQueued || j.Attempt != 0 {
				t.Errorf("%s: job %s is %s (attempt %d, %v); want queued, never started", when, id, j.Status, j.Attempt, err)
			}
		}
	}
	stillQueued("after the running job ended")

	// The worker's lease, renewed every few seconds, counts the job done.
	var ws []client.Worker
	testenv.Eventually(t, 15*time.Second, "warren workers to show the finished job", func() bool {
		out, _, code := warren(t, apiURL, "", "workers", "-o", "json")
		var got struct{ Workers []client.Worker }
		if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got.Workers) != 1 {
			return false
		}
		ws = got.Workers
		return ws[0].Done == 1 && ws[0].Busy == 0
	})
	if w := ws[0]; w.Pool != "sys" || w.Concurrency != 32 || w.PID == 0 || w.Host == "" || w.Version == "" || w.StartedAt.IsZero() {
		t.Errorf("the worker as warren workers shows it: %+v", w)
	}
	first := ws[0].ID
	if out, _, _ := warren(t, apiURL, "", "queues"); !strings.Contains(out, "\nsys (paused) ") {
		t.Errorf("warren queues does not show sys paused:\n%s", out)
	}

	// A worker started while the pool is paused takes nothing.
	worker.Stop(t)
	worker = startProc(t, env, "worker", "sys", "--health-addr", "127.0.0.1:0")
	waitReady(t, "http://"+worker.Addr(t, "health endpoints listening"))
	time.Sleep(time.Second) // room for a wrong start
	stillQueued("after the worker restarted")
	qs, err := c.Queues(ctx)
	if err != nil || len(qs) != 1 || !qs[0].Paused || qs[0].Ready != len(waiting) || qs[0].Consumers != 0 {
		t.Errorf("queues with the pool paused: %+v, %v; want sys paused, %d ready, no consumer", qs, err, len(waiting))
	}

	if out, errOut, code := warren(t, apiURL, "", "queue", "resume", "sys"); code != 0 {
		t.Fatalf("warren queue resume sys: exit %d, %s%s", code, out, errOut)
	}
	for _, id := range waiting {
		j, err := c.WaitDone(ctx, id)
		if err != nil || j.Status != jobs.StatusSucceeded || j.Attempt != 1 || j.Worker == first || j.Worker == "" {
			t.Errorf("job %s after the resume: %+v, %v; want succeeded at once by the restarted worker", id, j, err)
		}
	}
}
