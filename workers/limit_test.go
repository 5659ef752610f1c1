package workers_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/workers"
)

// A job over its type's rate limit is parked: it does not run, no attempt
// is counted, its record stays queued and says until when, and it holds no
// worker slot (a job of another type behind it runs at once). It runs when
// its token comes, and every job ends succeeded after one attempt.
func TestLimitParksJobsOverTheLimit(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	declarePool(t, env, "test.rl", "test.free")
	lim := jobs.Limit{Type: "test.rl", Rate: &jobs.Rate{Limit: 2, Per: jobs.Duration(time.Second)}} // one every 500ms
	if _, err := env.Store.PutLimit(ctx, store.LimitRecord{Limit: lim}, jobs.MaxLimits); err != nil {
		t.Fatal(err)
	}
	limited := submit(t, env, "test.rl", `{}`, 6)

	var (
		mu     sync.Mutex
		starts []time.Time
	)
	free := make(chan struct{})
	w := startWorker(t, env, workers.Config{Pools: map[string]workers.PoolConfig{pool: {Concurrency: 1, Prefetch: 1}}},
		handler{typ("test.rl", time.Minute), func(context.Context, *jobs.Job) (any, error) {
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
			return nil, nil
		}},
		handler{typ("test.free", time.Minute), func(context.Context, *jobs.Job) (any, error) {
			close(free)
			return nil, nil
		}},
	)

	// While jobs are held back, a record says so, and its status is queued.
	var held *jobs.Job
	testenv.Eventually(t, 10*time.Second, "a job to show it is held back", func() bool {
		for _, id := range limited {
			if j, err := env.Store.Get(ctx, id); err == nil && j.LimitedUntil != nil {
				held = j
				return true
			}
		}
		return false
	})
	if held.Status != jobs.StatusQueued || held.Attempt != 0 {
		t.Errorf("a job held back: status %s attempt %d, want queued 0", held.Status, held.Attempt)
	}
	// One slot, and jobs held back do not take it.
	submit(t, env, "test.free", `{}`, 1)
	select {
	case <-free:
	case <-time.After(10 * time.Second):
		t.Fatal("a job of an unlimited type did not run while the limited ones waited")
	}
	mu.Lock()
	ranBefore := len(starts)
	mu.Unlock()
	if ranBefore == len(limited) {
		t.Errorf("all %d limited jobs ran before the free one; the limit held none back", ranBefore)
	}

	for _, j := range waitTerminal(t, env, limited) {
		if j.Status != jobs.StatusSucceeded || j.Attempt != 1 || len(j.Attempts) != 1 || j.LimitedUntil != nil {
			t.Errorf("job %s: status %s attempt %d attempts %+v limited_until %v, want succeeded after one attempt",
				j.ID, j.Status, j.Attempt, j.Attempts, j.LimitedUntil)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	// One every 500ms by Redis's clock; the handler's clock sees the same
	// spacing give or take the round trips.
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-1]); gap < 400*time.Millisecond {
			t.Errorf("runs %d and %d %s apart, want about 500ms (2 per second, no burst)", i-1, i, gap)
		}
	}
	var m dto.Metric
	if err := w.Runs().Type("test.rl").Limited.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n < float64(len(limited)-1) {
		t.Errorf("warren_jobs_limited_total = %v, want at least %d", n, len(limited)-1)
	}
	if n, err := env.Store.Limited(ctx, []string{"test.rl"}, time.Now()); err != nil || n["test.rl"] != 0 {
		t.Errorf("limited after all ran: %v %v, want 0", n, err)
	}
}

// A limit set or removed while the worker runs applies without a restart.
func TestLimitChangesApplyWithoutRestart(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	declarePool(t, env, "test.rl")
	ran := make(chan string, 16)
	w := startWorker(t, env, workers.Config{LimitsEvery: time.Hour}, // only the announcement can tell it
		handler{typ("test.rl", time.Minute), func(_ context.Context, j *jobs.Job) (any, error) {
			ran <- j.ID
			return nil, nil
		}},
	)
	lim := jobs.Limit{Type: "test.rl", Rate: &jobs.Rate{Limit: 1, Per: jobs.Duration(time.Hour)}}
	if _, err := env.Store.PutLimit(ctx, store.LimitRecord{Limit: lim}, jobs.MaxLimits); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the worker to hear of the limit", func() bool {
		_, ok := w.Limits()["test.rl"]
		return ok
	})
	ids := submit(t, env, "test.rl", `{}`, 2)
	first := <-ran
	var other string
	for _, id := range ids {
		if id != first {
			other = id
		}
	}
	testenv.Eventually(t, 10*time.Second, "the second job to be held back", func() bool {
		j, err := env.Store.Get(ctx, other)
		return err == nil && j.LimitedUntil != nil
	})
	select {
	case id := <-ran:
		t.Fatalf("job %s ran within the hour its limit allows one", id)
	default:
	}
	if _, err := env.Store.DeleteLimit(ctx, "test.rl"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the worker to hear the limit is gone", func() bool {
		_, ok := w.Limits()["test.rl"]
		return !ok
	})
	// The parked job comes back after its wait (an hour away): nothing
	// brings it sooner, and that is what the docs say. A new one runs now.
	id := submit(t, env, "test.rl", `{}`, 1)[0]
	select {
	case got := <-ran:
		if got != id {
			t.Errorf("ran %s, want the new job %s", got, id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a job did not run after its type's limit was removed")
	}
}
