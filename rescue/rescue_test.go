package rescue_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/rescue"
	"github.com/warrenhq/warren/workers"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis keeps one background goroutine per process for its
		// connection-pool clock; it is not tied to any client.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

const pool = "rescued"

// runs counts the handler's runs of each attempt of each job.
type runs struct {
	mu sync.Mutex
	n  map[string]map[int]int
}

func (r *runs) add(j *jobs.Job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]map[int]int{}
	}
	if r.n[j.ID] == nil {
		r.n[j.ID] = map[int]int{}
	}
	r.n[j.ID][j.Attempt]++
}

// of returns a copy of a job's runs per attempt: handlers still write the
// map while the test reads it.
func (r *runs) of(id string) map[int]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.n[id])
}

// submit records and publishes jobs as the API does; delay > 0 makes them
// scheduled.
func submit(t *testing.T, env *testenv.Env, typ string, n int, delay time.Duration) []string {
	t.Helper()
	ctx := context.Background()
	var (
		js   []*jobs.Job
		msgs []queue.Message
		ids  []string
	)
	now := time.Now().UTC().Truncate(time.Millisecond)
	for range n {
		j := &jobs.Job{
			ID: jobs.NewID(), Type: typ, Pool: pool, Status: jobs.StatusQueued, Payload: json.RawMessage(`{}`),
			MaxAttempts: 5, CreatedAt: now,
		}
		if delay > 0 {
			at := now.Add(delay)
			j.Status, j.ScheduledAt = jobs.StatusScheduled, &at
		}
		m, err := queue.NewMessage(j, "")
		if err != nil {
			t.Fatal(err)
		}
		m.Delay = delay
		js, msgs, ids = append(js, j), append(msgs, m), append(ids, j.ID)
	}
	if _, err := env.Store.Create(ctx, js); err != nil {
		t.Fatal(err)
	}
	errs, err := env.Broker.Publish(ctx, msgs)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// purge empties a queue behind warren's back, as a broker that lost its
// messages would, and returns how many it removed.
func purge(t *testing.T, queueName string) int {
	t.Helper()
	n, err := testenv.Channel(t).QueuePurge(queueName, false)
	if err != nil {
		t.Fatalf("purge %s: %v", queueName, err)
	}
	return n
}

// The broker loses messages under load: a pool queue with a backlog, a
// delay level holding scheduled jobs, and the levels holding retries are
// purged. Every accepted job still ends succeeded, and no attempt of any job
// runs twice: the rescuer publishes the lost ones again, and the start
// script fences the copies.
func TestLostMessagesAreRescued(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	if err := env.Broker.DeclarePool(ctx, pool, []string{"r.quick", "r.flaky"}); err != nil {
		t.Fatal(err)
	}
	var ran runs
	quick := jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) (any, error) {
		ran.add(j)
		time.Sleep(10 * time.Millisecond)
		return nil, nil
	})
	flaky := jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) (any, error) {
		ran.add(j)
		if j.Attempt == 1 {
			// 1.5 s: 15 units, levels 3, 2, 1 and 0 of the delay.
			return nil, jobs.RetryAfter(errors.New("not yet"), 1500*time.Millisecond)
		}
		return nil, nil
	})

	// Accepted with nobody running them yet: a backlog in the pool queue
	// and, 2 s ahead (levels 4 and 2), jobs in the delay levels.
	queued := submit(t, env, "r.quick", 200, 0)
	delayed := submit(t, env, "r.quick", 50, 2*time.Second)
	retried := submit(t, env, "r.flaky", 50, 0)
	lostQueued := purge(t, env.NS.Queue(pool))
	lostDelayed := purge(t, env.NS.DelayQueue(4))

	w := workers.New(workers.Config{
		Logger: env.Log,
		Pools:  map[string]workers.PoolConfig{pool: {Concurrency: 4, Prefetch: 4}},
	}, env.Broker, env.Store)
	for name, h := range map[string]jobs.Handler{"r.quick": quick, "r.flaky": flaky} {
		if err := w.Handle(jobs.Type{Name: name, Pool: pool, Timeout: jobs.Duration(time.Minute)}, h); err != nil {
			t.Fatal(err)
		}
	}
	r := rescue.New(rescue.Config{Interval: 250 * time.Millisecond, Grace: time.Second, Namespace: env.NS, Logger: env.Log}, env.Broker, env.Store)
	for _, s := range []interface{ Start(context.Context) error }{w, r} {
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if err := r.Stop(ctx); err != nil {
			t.Error(err)
		}
		if err := w.Stop(ctx); err != nil {
			t.Error(err)
		}
	})

	// Once the first attempts of the flaky jobs failed, their retries wait
	// in the delay levels: lose those too.
	testenv.Eventually(t, 30*time.Second, "the flaky jobs' first attempts to fail", func() bool {
		for _, id := range retried {
			if runs := ran.of(id); runs[1] == 0 {
				return false
			}
		}
		return true
	})
	lostRetries := 0
	for level := range 4 {
		lostRetries += purge(t, env.NS.DelayQueue(level))
	}
	if lostQueued == 0 || lostDelayed == 0 || lostRetries == 0 {
		t.Fatalf("the purges removed %d queued, %d delayed and %d retry messages; the test needs some of each",
			lostQueued, lostDelayed, lostRetries)
	}

	all := append(append(append([]string{}, queued...), delayed...), retried...)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var waiting []string
		for _, id := range all {
			j, err := env.Store.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if !j.Status.Terminal() {
				waiting = append(waiting, fmt.Sprintf("%s %s %s attempt %d due %v runs %v", j.ID, j.Type, j.Status, j.Attempt, j.ScheduledAt, ran.of(id)))
			}
		}
		if len(waiting) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs have not ended after a minute, such as:\n%s", len(waiting), strings.Join(waiting[:min(len(waiting), 10)], "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, id := range all {
		j, err := env.Store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want := map[int]int{1: 1}
		if j.Type == "r.flaky" {
			want = map[int]int{1: 1, 2: 1}
		}
		if j.Status != jobs.StatusSucceeded || j.Attempt != len(want) || fmt.Sprint(ran.of(id)) != fmt.Sprint(want) {
			t.Errorf("job %s (%s): %s at attempt %d, runs per attempt %v; want succeeded at attempt %d, runs %v",
				id, j.Type, j.Status, j.Attempt, ran.of(id), len(want), want)
		}
	}
	rescued := total(t, r.Collector())
	// Not one rescue per purged message: a purge of a quorum delay level
	// may count a message that has expired and is on its way to the next
	// level (the broker holds it until the next confirms), which then
	// arrives. Every job ending with each attempt run once is the proof.
	if rescued == 0 {
		t.Error("nothing was rescued, yet messages were purged")
	}
	counted, err := env.Store.Rescued(ctx, []string{pool}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if float64(counted[pool]) != rescued {
		t.Errorf("the store counts %d rescues in the last hour, the metric %v", counted[pool], rescued)
	}
	testenv.Summary(t, "accepted=%d lost_messages=%d (queued=%d delayed=%d retries=%d) rescued=%v succeeded=%d duplicated=0",
		len(all), lostQueued+lostDelayed+lostRetries, lostQueued, lostDelayed, lostRetries, rescued, len(all))
}

// total adds up a counter's series.
func total(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	go func() { c.Collect(ch); close(ch) }()
	sum := 0.0
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		sum += pb.GetCounter().GetValue()
	}
	return sum
}

// A job whose worker died mid-attempt, and whose message did not come back
// (here: there never was one), is published again once its worker's lease
// is gone, and runs as the next attempt: the lost one counts. One whose
// worker lives is left alone.
func TestRunningJobOfADeadWorkerIsRescued(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	if err := env.Broker.DeclarePool(ctx, pool, []string{"r.quick"}); err != nil {
		t.Fatal(err)
	}
	ids := submit(t, env, "r.quick", 2, 0)
	purge(t, env.NS.Queue(pool))
	orphan, alive := ids[0], ids[1]
	if err := env.Store.Lease(ctx, "w-alive", time.Minute); err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-time.Hour)
	for id, w := range map[string]string{orphan: "w-dead", alive: "w-alive"} {
		if s, err := env.Store.Start(ctx, id, w, 0, "token-"+id, long); err != nil || s.Attempt != 1 {
			t.Fatalf("start %s: %+v, %v", id, s, err)
		}
	}

	var ran runs
	w := workers.New(workers.Config{Logger: env.Log}, env.Broker, env.Store)
	if err := w.Handle(jobs.Type{Name: "r.quick", Pool: pool, Timeout: jobs.Duration(time.Minute)},
		jobs.HandlerFunc(func(_ context.Context, j *jobs.Job) (any, error) { ran.add(j); return nil, nil })); err != nil {
		t.Fatal(err)
	}
	r := rescue.New(rescue.Config{Interval: 100 * time.Millisecond, Grace: time.Second, Namespace: env.NS, Logger: env.Log}, env.Broker, env.Store)
	for _, s := range []interface{ Start(context.Context) error }{w, r} {
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = r.Stop(ctx)
		_ = w.Stop(ctx)
	})
	testenv.Eventually(t, 30*time.Second, "the orphaned job to end", func() bool {
		j, err := env.Store.Get(ctx, orphan)
		return err == nil && j.Status.Terminal()
	})
	j, err := env.Store.Get(ctx, orphan)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != jobs.StatusSucceeded || j.Attempt != 2 || fmt.Sprint(ran.of(orphan)) != "map[2:1]" {
		t.Errorf("orphaned job: %s at attempt %d, runs %v; want succeeded at attempt 2, run once", j.Status, j.Attempt, ran.of(orphan))
	}
	// A look leaves the live worker's job alone.
	looked, err := r.Look(ctx)
	if err != nil || looked != 0 {
		t.Errorf("a look with only a live worker's job running rescued %d (%v), want 0", looked, err)
	}
	if j, _ := env.Store.Get(ctx, alive); j.Status != jobs.StatusRunning || j.Attempt != 1 || ran.of(alive) != nil {
		t.Errorf("the live worker's job: %s attempt %d runs %v; want running attempt 1, not run here", j.Status, j.Attempt, ran.of(alive))
	}
}

// A broker that has just come back may still hand on what it held (delayed
// messages that came due while it was away): the rescuer counts a job late
// only a grace after its connection to the broker began.
func TestNoRescueWhileTheConnectionIsYoung(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	if err := env.Broker.DeclarePool(ctx, pool, []string{"r.quick"}); err != nil {
		t.Fatal(err)
	}
	// The rescuer looks at the pools of the type registry.
	if err := env.Store.DeclareTypes(ctx, []jobs.Type{{Name: "r.quick", Pool: pool, Timeout: jobs.Duration(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	since := env.Broker.ConnectedSince()
	j := &jobs.Job{
		ID: jobs.NewID(), Type: "r.quick", Pool: pool, Status: jobs.StatusQueued, Payload: json.RawMessage(`{}`),
		MaxAttempts: 1, CreatedAt: since.Add(-5 * time.Minute).UTC().Truncate(time.Millisecond),
	}
	if _, err := env.Store.Create(ctx, []*jobs.Job{j}); err != nil { // recorded, never published
		t.Fatal(err)
	}
	var now time.Time
	r := rescue.New(rescue.Config{Grace: time.Minute, Namespace: env.NS, Logger: env.Log, Now: func() time.Time { return now }},
		env.Broker, env.Store)
	for _, tt := range []struct {
		at   time.Duration
		want int
	}{{30 * time.Second, 0}, {2 * time.Minute, 1}} {
		now = since.Add(tt.at)
		if n, err := r.Look(ctx); err != nil || n != tt.want {
			t.Errorf("a look %s after the connection began rescued %d (%v), want %d", tt.at, n, err, tt.want)
		}
	}
	if n := env.Messages(t, pool); n != 1 {
		t.Errorf("%d messages in the pool queue after the rescue, want 1", n)
	}
}
