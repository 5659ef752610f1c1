package conformance

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
)

// workerEntry is an entry of GET /v1/workers.
type workerEntry struct {
	ID          string
	Pool        string
	Host        string
	PID         int
	Version     string
	Concurrency int
	Busy        int
	Done        int
	Failed      int
	StartedAt   *time.Time `json:"started_at"`
	LastSeenAt  *time.Time `json:"last_seen_at"`
}

func (f *fixture) workers(t *testing.T) []workerEntry {
	t.Helper()
	r := f.do(t, "GET", "/v1/workers", "")
	var out struct{ Workers []workerEntry }
	if r.status != http.StatusOK || json.Unmarshal(r.body, &out) != nil {
		t.Fatalf("GET /v1/workers: %d %s", r.status, r.body)
	}
	return out.Workers
}

// 13. The lease says who the worker is and what its pool does (protocol
// section 11): the API lists it, with the attempts it ended, and stops
// listing it when it stops.
func leaseReports(t *testing.T, f *fixture) {
	ok := f.wait(t, f.submit(t, `{"type":"text.wordcount","payload":{"text":"a b"}}`).ID)
	failed := f.wait(t, f.submit(t, `{"type":"text.wordcount","payload":{"text":"x","permanent":true}}`).ID)
	if ok.Status != jobs.StatusSucceeded || failed.Status != jobs.StatusFailed {
		t.Fatalf("jobs ended %s and %s, want succeeded and failed", ok.Status, failed.Status)
	}
	var w workerEntry
	testenv.Eventually(t, 15*time.Second, "the lease to count the two attempts", func() bool {
		ws := f.workers(t)
		if len(ws) != 1 {
			return false
		}
		w = ws[0]
		return w.Done == 1 && w.Failed == 1 && w.Busy == 0
	})
	if w.ID != ok.Worker || w.Pool != Pool || w.Concurrency < 1 || w.Host == "" || w.PID < 1 || w.Version == "" ||
		w.StartedAt == nil || w.LastSeenAt == nil || w.LastSeenAt.Before(*w.StartedAt) || time.Since(*w.LastSeenAt) > 15*time.Second {
		t.Errorf("GET /v1/workers: %+v; want worker %s of pool %s with its concurrency, host, pid, version, start and last renewal", w, ok.Worker, Pool)
	}
	rdb := rawRedis(t)
	if score, err := rdb.ZScore(context.Background(), f.env.NS.WorkersKey(), w.ID).Result(); err != nil || int64(score) < time.Now().UnixMilli() {
		t.Errorf("the list of workers (%s): score %v (%v), want the lease's lapse, ahead", f.env.NS.WorkersKey(), int64(score), err)
	}
	f.stop()
	if ws := f.workers(t); len(ws) != 0 {
		t.Errorf("after the worker stopped, GET /v1/workers lists %+v", ws)
	}
	if _, err := rdb.ZScore(context.Background(), f.env.NS.WorkersKey(), w.ID).Result(); err != redis.Nil {
		t.Errorf("the stopped worker is still in the list of workers (%v)", err)
	}
}

// 14. A paused pool's worker lets its running attempt end and starts
// nothing new; queued jobs wait, also across a restart of the worker; a
// resume runs them, once each (protocol section 15).
func pause(t *testing.T, f *fixture) {
	// An attempt held running: its dead letter cannot be routed (see
	// copyWhileRunning).
	f.bindDead(t, false)
	t.Cleanup(func() { f.bindDead(t, true) })
	held := f.submit(t, `{"type":"text.wordcount","payload":{"text":"held","permanent":true}}`)
	testenv.Eventually(t, 10*time.Second, "the worker to hold an attempt", func() bool {
		return f.get(t, held.ID, "").Status == jobs.StatusRunning
	})
	if r := f.post(t, "/v1/queues/"+Pool+"/pause", ""); r.status != http.StatusOK {
		t.Fatalf("pause: %d %s", r.status, r.body)
	}
	f.bindDead(t, true)
	if j := f.wait(t, held.ID); j.Status != jobs.StatusFailed || j.Attempt != 1 {
		t.Errorf("the attempt running when the pool was paused: %s at attempt %d, want failed at attempt 1 (it ran on)", j.Status, j.Attempt)
	}
	// Its consumer cancelled, and its last delivery settled, the worker
	// leaves the queue without consumers.
	testenv.Eventually(t, 10*time.Second, "the worker to stop consuming", func() bool { return f.consumers(t) == 0 })

	var waiting []string
	for range 2 {
		waiting = append(waiting, f.submit(t, `{"type":"text.wordcount","payload":{"text":"wait"}}`).ID)
	}
	stillWaiting := func(when string) {
		t.Helper()
		time.Sleep(time.Second) // room for a wrong start
		for _, id := range waiting {
			if j := f.get(t, id, ""); j.Status != jobs.StatusQueued || j.Attempt != 0 {
				t.Errorf("%s: job %s is %s at attempt %d, want queued, never started", when, id, j.Status, j.Attempt)
			}
		}
		if n := f.env.Messages(t, Pool); n != len(waiting) {
			t.Errorf("%s: %d messages ready, want %d", when, n, len(waiting))
		}
	}
	stillWaiting("while paused")

	// A worker that starts while the pool is paused consumes nothing.
	f.stop()
	f.run(t)
	testenv.Eventually(t, 30*time.Second, "the restarted worker's lease", func() bool { return len(f.workers(t)) == 1 })
	stillWaiting("after the worker restarted")
	if n := f.consumers(t); n != 0 {
		t.Errorf("the restarted worker of a paused pool consumes (%d consumers)", n)
	}

	if r := f.post(t, "/v1/queues/"+Pool+"/resume", ""); r.status != http.StatusOK {
		t.Fatalf("resume: %d %s", r.status, r.body)
	}
	for _, id := range waiting {
		if j := f.wait(t, id); j.Status != jobs.StatusSucceeded || j.Attempt != 1 {
			t.Errorf("job %s after the resume: %s at attempt %d, want succeeded at the first", id, j.Status, j.Attempt)
		}
	}
	f.drained(t)
}

// consumers is how many consumers the pool's queue has.
func (f *fixture) consumers(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := f.env.Broker.InspectPool(ctx, Pool)
	if err != nil {
		t.Fatalf("inspect pool %s: %v", Pool, err)
	}
	return q.Consumers
}
