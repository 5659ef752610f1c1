package workers_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/workers"
)

// runs counts a handler's calls per job.
type runs struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *runs) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[id]++
}

func (r *runs) of(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[id]
}

// A paused pool's worker finishes the jobs it runs and starts no new one:
// the jobs it had prefetched go back to the queue, once, and wait there,
// also across a restart of the worker; resumed, each runs once.
func TestPausedPoolTakesNoNewJobs(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declarePool(t, env, "t.block", "t.quick")
	ctx := context.Background()
	release := make(chan struct{})
	var ran runs
	handlers := []handler{
		{typ("t.block", time.Minute), func(_ context.Context, j *jobs.Job) (any, error) {
			ran.add(j.ID)
			<-release
			return "done", nil
		}},
		{typ("t.quick", time.Minute), func(_ context.Context, j *jobs.Job) (any, error) {
			ran.add(j.ID)
			return "quick", nil
		}},
	}
	// Both slots busy, two more messages prefetched: nothing quick can
	// start before the pause takes effect.
	cfg := workers.Config{ID: "w-pause-1", Pools: map[string]workers.PoolConfig{pool: {Concurrency: 2, Prefetch: 4}}}
	w := startWorker(t, env, cfg, handlers...)
	blocking := submit(t, env, "t.block", `{}`, 2)
	for _, id := range blocking {
		testenv.Eventually(t, 10*time.Second, "the blocking job running", func() bool { return ran.of(id) == 1 })
	}
	quick := submit(t, env, "t.quick", `{}`, 3)
	ready(t, env, 1) // two of three prefetched

	if _, changed, err := env.Store.PausePool(ctx, pool, "test"); err != nil || !changed {
		t.Fatalf("pause: changed %v, %v", changed, err)
	}
	testenv.Eventually(t, 10*time.Second, "the worker to hear of the pause", func() bool { return slices.Equal(w.Paused(), []string{pool}) })
	ready(t, env, 3) // the prefetched ones are back
	close(release)
	for _, j := range waitTerminal(t, env, blocking) {
		if j.Status != jobs.StatusSucceeded || j.Attempt != 1 {
			t.Errorf("job running when the pool was paused: %s attempt %d, want succeeded at once", j.Status, j.Attempt)
		}
	}
	time.Sleep(300 * time.Millisecond) // room for a wrong start
	assertWaiting(t, env, &ran, quick)

	// A worker starting while the pool is paused consumes nothing.
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	cfg.ID = "w-pause-2"
	w2 := startWorker(t, env, cfg, handlers...)
	if got := w2.Paused(); !slices.Equal(got, []string{pool}) {
		t.Errorf("restarted worker: paused %v, want [%s]", got, pool)
	}
	time.Sleep(300 * time.Millisecond)
	assertWaiting(t, env, &ran, quick)
	if q, err := env.Broker.InspectPool(ctx, pool); err != nil || q.Consumers != 0 {
		t.Errorf("restarted worker of a paused pool: %d consumers (%v), want 0", q.Consumers, err)
	}

	if changed, err := env.Store.ResumePool(ctx, pool); err != nil || !changed {
		t.Fatalf("resume: changed %v, %v", changed, err)
	}
	for _, j := range waitTerminal(t, env, quick) {
		if j.Status != jobs.StatusSucceeded || j.Attempt != 1 || ran.of(j.ID) != 1 || j.Worker != "w-pause-2" {
			t.Errorf("job %s after the resume: %s attempt %d, run %d times by %s; want succeeded once by w-pause-2",
				j.ID, j.Status, j.Attempt, ran.of(j.ID), j.Worker)
		}
	}
	if len(w2.Paused()) != 0 {
		t.Errorf("after the resume the worker says %v are paused", w2.Paused())
	}
}

// assertWaiting requires jobs to be queued, never run, their messages ready
// in the queue.
func assertWaiting(t *testing.T, env *testenv.Env, ran *runs, ids []string) {
	t.Helper()
	for _, id := range ids {
		j, err := env.Store.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status != jobs.StatusQueued || ran.of(id) != 0 {
			t.Errorf("job %s of a paused pool: %s, run %d times; want queued, never run", id, j.Status, ran.of(id))
		}
	}
	if n := env.Messages(t, pool); n != len(ids) {
		t.Errorf("%d messages ready in the paused pool's queue, want %d", n, len(ids))
	}
}

// ready waits until the test pool's queue holds n ready messages.
func ready(t *testing.T, env *testenv.Env, n int) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "ready messages in the queue", func() bool { return env.Messages(t, pool) == n })
}

// The lease says who the worker is and what its pools do, and a pause the
// worker did not hear announced (written to Redis behind its back) reaches
// it with the next renewal of its lease.
func TestLeaseReportsLoadAndPauses(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declarePool(t, env, "t.ok", "t.fail", "t.block")
	ctx := context.Background()
	release := make(chan struct{})
	defer close(release)
	before := time.Now().Truncate(time.Millisecond)
	w := startWorker(t, env, workers.Config{ID: "w-load", Version: "v9.9.9", Pools: map[string]workers.PoolConfig{pool: {Concurrency: 3}}},
		handler{typ("t.ok", time.Minute), func(context.Context, *jobs.Job) (any, error) { return nil, nil }},
		handler{typ("t.fail", time.Minute), func(context.Context, *jobs.Job) (any, error) {
			return nil, jobs.Permanent(errors.New("no"))
		}},
		handler{typ("t.block", time.Minute), func(context.Context, *jobs.Job) (any, error) {
			<-release
			return nil, nil
		}},
	)
	waitTerminal(t, env, append(submit(t, env, "t.ok", `{}`, 2), submit(t, env, "t.fail", `{}`, 1)...))
	submit(t, env, "t.block", `{}`, 1)

	var got store.WorkerInfo
	want := store.PoolLoad{Concurrency: 3, Busy: 1, Done: 2, Failed: 1}
	testenv.Eventually(t, 10*time.Second, "the lease to report the pool's load", func() bool {
		ws, err := env.Store.Workers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ws) != 1 {
			return false
		}
		got = ws[0]
		return got.Pools[pool] == want
	})
	host, _ := os.Hostname()
	if got.ID != w.ID() || got.Host != host || got.PID != os.Getpid() || got.Version != "v9.9.9" ||
		got.Started.Before(before) || got.Seen.Before(got.Started) || time.Since(got.Seen) > workers.LeaseTTL {
		t.Errorf("lease %+v: want id %s, host %s, pid %d, version v9.9.9, started after %v, seen since",
			got, w.ID(), host, os.Getpid(), before)
	}

	// Paused behind the worker's back: no event is published.
	opts, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	rec, _ := json.Marshal(map[string]any{"at_ms": time.Now().UnixMilli()})
	if err := rdb.HSet(ctx, env.NS.PausedKey(), pool, rec).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, workers.LeaseTTL, "the lease renewal to bring the pause", func() bool { return slices.Equal(w.Paused(), []string{pool}) })
}
