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

// mostInWindow is the most jobs that started within any span of length w,
// by their records' started_at.
func mostInWindow(js []*jobs.Job, w time.Duration) int {
	var at []time.Time
	for _, j := range js {
		if j.StartedAt != nil {
			at = append(at, *j.StartedAt)
		}
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	most := 0
	for i := range at {
		n := 0
		for j := i; j < len(at) && at[j].Sub(at[i]) < w; j++ {
			n++
		}
		most = max(most, n)
	}
	return most
}

// submitJobs submits n jobs of typ with the given metadata and returns
// their ids.
func submitJobs(t *testing.T, c *client.Client, typ, payload string, n int, meta map[string]string) []string {
	t.Helper()
	reqs := make([]client.JobRequest, n)
	for i := range reqs {
		reqs[i] = client.JobRequest{Type: typ, Payload: json.RawMessage(payload), Metadata: meta}
	}
	res, err := c.EnqueueBatch(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i, r := range res {
		if r.Error != nil {
			t.Fatalf("entry %d refused: %v", i, r.Error)
		}
		ids[i] = r.Job.ID
	}
	return ids
}

// A rate limit is shared by every worker process of the pool: with two
// `warren worker sys` processes and sys.echo limited to 5 a second (burst
// 1), no second of the run starts more than 6 jobs, by the records; every
// job succeeds after one attempt (waiting for a token costs none); and
// `warren queues` and `warren limit list` show the jobs held back. Each
// tenant of sys.sleep, limited per customer, has a budget of its own.
func TestLimitSharedByTwoWorkerProcesses(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	s := shared(env)
	_, apiURL := startAPI(t, s)
	// The limits come first, so that both workers know them before their
	// first job (a change later reaches them within moments too).
	for _, args := range [][]string{
		{"limit", "set", "sys.echo", "--limit", "5", "--per", "1s", "--burst", "1"},
		{"limit", "set", "sys.sleep", "--tenant-key", "customer", "--tenant-limit", "2", "--tenant-per", "1s"},
	} {
		if stdout, stderr, code := warren(t, apiURL, "", args...); code != 0 || !strings.Contains(stdout, "set the rate limit of") {
			t.Fatalf("warren %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
		}
	}
	startWorker(t, s, nil)
	startWorker(t, s, nil)
	c := newClient(t, apiURL)

	echoes := submitJobs(t, c, "sys.echo", `{}`, 40, nil)
	acme := submitJobs(t, c, "sys.sleep", `{"ms":0}`, 8, map[string]string{"customer": "acme"})
	globex := submitJobs(t, c, "sys.sleep", `{"ms":0}`, 8, map[string]string{"customer": "globex"})

	// While they wait, the views show them.
	testenv.Eventually(t, 10*time.Second, "warren queues to show limited jobs", func() bool {
		stdout, _, code := warren(t, apiURL, "", "queues", "-o", "json")
		var out struct{ Queues []client.Queue }
		if code != 0 || json.Unmarshal([]byte(stdout), &out) != nil {
			return false
		}
		for _, q := range out.Queues {
			if q.Pool == "sys" && q.Limited > 0 {
				return true
			}
		}
		return false
	})
	if stdout, _, code := warren(t, apiURL, "", "queues"); code != 0 || !strings.Contains(stdout, "LIMITED") {
		t.Errorf("warren queues: exit %d\n%s", code, stdout)
	}
	if stdout, _, code := warren(t, apiURL, "", "limit", "list"); code != 0 || !strings.Contains(stdout, "5/1s +1") || !strings.Contains(stdout, "customer: 2/1s") {
		t.Errorf("warren limit list: exit %d\n%s", code, stdout)
	}

	all := slices.Concat(echoes, acme, globex)
	done := waitDone(t, c, all, 45*time.Second)
	byID := func(ids []string) []*jobs.Job {
		out := make([]*jobs.Job, 0, len(ids))
		for _, id := range ids {
			if j := done[id]; j != nil {
				out = append(out, j)
			}
		}
		return out
	}
	workers := map[string]bool{}
	for _, id := range all {
		j := done[id]
		switch {
		case j == nil:
			t.Errorf("job %s did not end", id)
		case j.Status != jobs.StatusSucceeded || j.Attempt != 1 || len(j.Attempts) != 1:
			t.Errorf("job %s: %s after %d attempts (%+v), want succeeded after one: a wait for a token is no attempt", id, j.Status, j.Attempt, j.Attempts)
		default:
			workers[j.Worker] = true
		}
	}
	if len(workers) != 2 {
		t.Errorf("jobs ran on %d worker processes, want both", len(workers))
	}
	// The tokens are taken by Redis's clock a moment before each start is
	// recorded by its worker's: a window a little under the period allows
	// for that.
	const slack = 100 * time.Millisecond
	if most := mostInWindow(byID(echoes), time.Second-slack); most > 5+1 {
		t.Errorf("sys.echo: %d jobs started within one second, want at most 6 (5 per second, burst 1)", most)
	}
	for name, ids := range map[string][]string{"acme": acme, "globex": globex} {
		if most := mostInWindow(byID(ids), time.Second-slack); most > 2 {
			t.Errorf("sys.sleep of %s: %d started within one second, want at most 2", name, most)
		}
	}
	// Their own budgets: each tenant's jobs ran alongside the other's, not
	// after them.
	first := func(ids []string) time.Time { return *slices.MinFunc(byID(ids), startedFirst).StartedAt }
	last := func(ids []string) time.Time { return *slices.MaxFunc(byID(ids), startedFirst).StartedAt }
	if !first(globex).Before(last(acme)) || !first(acme).Before(last(globex)) {
		t.Errorf("tenants ran one after the other (acme %s–%s, globex %s–%s), want each its own budget",
			first(acme), last(acme), first(globex), last(globex))
	}

	// Limits gone, the views say so.
	if _, _, code := warren(t, apiURL, "", "limit", "rm", "sys.echo"); code != 0 {
		t.Errorf("warren limit rm: exit %d", code)
	}
	if _, stderr, code := warren(t, apiURL, "", "limit", "get", "sys.echo"); code == 0 || !strings.Contains(stderr, "no rate limit") {
		t.Errorf("warren limit get after rm: exit %d, stderr %q; want an error saying there is none", code, stderr)
	}
}

func startedFirst(a, b *jobs.Job) int { return a.StartedAt.Compare(*b.StartedAt) }

// Changing or removing a limit frees the jobs it holds back: they check
// back within a quarter of their wait and start long before the turn the
// old limit gave them, each after one attempt.
func TestLimitChangeFreesHeldJobs(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	s := shared(env)
	_, apiURL := startAPI(t, s)
	setLimit := func(args ...string) {
		t.Helper()
		if stdout, stderr, code := warren(t, apiURL, "", append([]string{"limit"}, args...)...); code != 0 {
			t.Fatalf("warren limit %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
		}
	}
	setLimit("set", "sys.echo", "--limit", "1", "--per", "20s")
	startWorker(t, s, nil)
	c := newClient(t, apiURL)

	// held waits until n of the jobs are held back, and returns them and
	// the turns they were given.
	held := func(ids []string, n int) ([]string, []time.Time) {
		t.Helper()
		var got []string
		var turns []time.Time
		testenv.Eventually(t, 15*time.Second, fmt.Sprintf("%d of the jobs to be held back", n), func() bool {
			got, turns = nil, nil
			for _, id := range ids {
				j, err := c.Get(context.Background(), id)
				if err == nil && j.LimitedUntil != nil && j.Status == jobs.StatusQueued {
					got, turns = append(got, id), append(turns, *j.LimitedUntil)
				}
			}
			return len(got) == n
		})
		return got, turns
	}
	freed := func(name string, ids []string, turns []time.Time) {
		t.Helper()
		done := waitDone(t, c, ids, 30*time.Second)
		for i, id := range ids {
			j := done[id]
			switch {
			case j == nil || j.Status != jobs.StatusSucceeded || j.Attempt != 1:
				t.Errorf("%s: job %s ended %+v, want succeeded after one attempt", name, id, j)
			case !j.StartedAt.Before(turns[i]):
				t.Errorf("%s: job %s started at %s, not before the turn %s the old limit gave it", name, id, j.StartedAt, turns[i])
			}
		}
	}

	// One per 20 s: the first starts, the others get turns 20 and 40 s on,
	// and check back after 10 s.
	waiting, turns := held(submitJobs(t, c, "sys.echo", `{}`, 3, nil), 2)
	setLimit("set", "sys.echo", "--limit", "100", "--per", "1s")
	freed("a looser limit", waiting, turns)

	// The worker hears of the strict limit again a moment later; only
	// jobs it takes after that are held back, so submit until one is.
	setLimit("set", "sys.echo", "--limit", "1", "--per", "20s")
	var last string
	var turn time.Time
	testenv.Eventually(t, 20*time.Second, "a job to be held back by the strict limit again", func() bool {
		last = submitJobs(t, c, "sys.echo", `{}`, 1, nil)[0]
		time.Sleep(300 * time.Millisecond)
		j, err := c.Get(context.Background(), last)
		if err != nil || j.LimitedUntil == nil {
			return false
		}
		turn = *j.LimitedUntil
		return true
	})
	setLimit("rm", "sys.echo")
	freed("the limit removed", []string{last}, []time.Time{turn})
}
