package workers_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/workers"
	"github.com/warrenhq/warren/workers/sys"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis keeps one background goroutine per process for its
		// connection-pool clock; it is not tied to any client.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

const pool = "test"

// submit records and publishes jobs as the API does.
func submit(t *testing.T, env *testenv.Env, typ string, payload string, n int) []string {
	t.Helper()
	return submitWith(t, env, typ, payload, n, 3)
}

// submitWith is submit with a max_attempts.
func submitWith(t *testing.T, env *testenv.Env, typ string, payload string, n, maxAttempts int) []string {
	t.Helper()
	ctx := context.Background()
	var (
		js   []*jobs.Job
		msgs []queue.Message
		ids  []string
	)
	for range n {
		j := &jobs.Job{
			ID: jobs.NewID(), Type: typ, Status: jobs.StatusQueued, Payload: json.RawMessage(payload),
			MaxAttempts: maxAttempts, CreatedAt: time.Now().UTC().Truncate(time.Millisecond),
		}
		m, err := queue.NewMessage(j, "")
		if err != nil {
			t.Fatal(err)
		}
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

// startWorker runs a worker with the given handlers until the test ends.
func startWorker(t *testing.T, env *testenv.Env, cfg workers.Config, handlers ...handler) *workers.Worker {
	t.Helper()
	cfg.Logger = env.Log
	w := workers.New(cfg, env.Broker, env.Store)
	for _, h := range handlers {
		if err := w.Handle(h.t, h.f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	testenv.Eventually(t, 20*time.Second, "worker ready", w.Ready)
	return w
}

// declarePool binds the test pool's queue before any job is published, as a
// worker that ran once before would have.
func declarePool(t *testing.T, env *testenv.Env, types ...string) {
	t.Helper()
	declare(t, env, pool, types...)
}

func declare(t *testing.T, env *testenv.Env, pool string, types ...string) {
	t.Helper()
	if err := env.Broker.DeclarePool(context.Background(), pool, types); err != nil {
		t.Fatal(err)
	}
}

// waitTerminal waits until each job is terminal and returns the records.
func waitTerminal(t *testing.T, env *testenv.Env, ids []string) []*jobs.Job {
	t.Helper()
	out := make([]*jobs.Job, len(ids))
	for i, id := range ids {
		testenv.Eventually(t, 30*time.Second, "job "+id+" to finish", func() bool {
			j, err := env.Store.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			out[i] = j
			return j.Status.Terminal()
		})
	}
	return out
}

type handler struct {
	t jobs.Type
	f jobs.HandlerFunc
}

func typ(name string, timeout time.Duration) jobs.Type {
	return jobs.Type{Name: name, Pool: pool, Timeout: jobs.Duration(timeout)}
}

func TestOutcomesAreRecorded(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declarePool(t, env, "t.ok", "t.err", "t.coded", "t.panic", "t.slow", "t.bad")
	ok := submit(t, env, "t.ok", `{"x":1}`, 1)[0]
	failed := submit(t, env, "t.err", `{}`, 1)[0]
	coded := submit(t, env, "t.coded", `{}`, 1)[0]
	panicked := submit(t, env, "t.panic", `{}`, 1)[0]
	slow := submit(t, env, "t.slow", `{}`, 1)[0]
	bad := submit(t, env, "t.bad", `{}`, 1)[0]
	after := submit(t, env, "t.ok", `{"after":"panic"}`, 1)[0]

	w := startWorker(t, env, workers.Config{ID: "w-test"},
		handler{typ("t.ok", time.Minute), func(_ context.Context, j *jobs.Job) (any, error) {
			return map[string]any{"got": j.Payload, "attempt": j.Attempt}, nil
		}},
		handler{typ("t.err", time.Minute), func(context.Context, *jobs.Job) (any, error) {
			return nil, errors.New("boom")
		}},
		handler{typ("t.coded", time.Minute), func(context.Context, *jobs.Job) (any, error) {
			return nil, &jobs.CodedError{Code: "quota", Err: errors.New("over quota")}
		}},
		handler{typ("t.panic", time.Minute), func(context.Context, *jobs.Job) (any, error) {
			panic("kaboom")
		}},
		handler{typ("t.slow", 200*time.Millisecond), func(ctx context.Context, _ *jobs.Job) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}},
		handler{typ("t.bad", time.Minute), func(context.Context, *jobs.Job) (any, error) {
			return func() {}, nil // cannot be encoded as JSON
		}},
	)
	got := waitTerminal(t, env, []string{ok, failed, coded, panicked, slow, bad, after})

	if j := got[0]; j.Status != jobs.StatusSucceeded || string(j.Result) != `{"attempt":1,"got":{"x":1}}` ||
		j.Attempt != 1 || j.Worker != w.ID() || j.StartedAt == nil || j.FinishedAt == nil || j.Error != nil {
		t.Errorf("succeeded job: %+v result %s", j, j.Result)
	}
	for i, want := range []struct {
		status jobs.Status
		code   string
	}{
		1: {jobs.StatusFailed, "handler"},
		2: {jobs.StatusFailed, "quota"},
		3: {jobs.StatusFailed, "panic"},
		4: {jobs.StatusFailed, "timeout"},
		5: {jobs.StatusFailed, "result"},
	} {
		if i == 0 {
			continue
		}
		j := got[i]
		if j.Status != want.status || j.Error == nil || j.Error.Code != want.code || j.Error.Message == "" || j.FinishedAt == nil {
			t.Errorf("%s: status %s error %+v, want %s with code %s", j.Type, j.Status, j.Error, want.status, want.code)
		}
	}
	// A timed-out attempt counts as failed and the retry policy applies.
	if j := got[4]; j.Attempt != j.MaxAttempts {
		t.Errorf("timed-out job ran %d attempts, want all %d", j.Attempt, j.MaxAttempts)
	}
	if got[6].Status != jobs.StatusSucceeded {
		t.Errorf("job after a panic: %s, want succeeded (the worker keeps going)", got[6].Status)
	}
	if n := env.Messages(t, pool); n != 0 {
		t.Errorf("%d messages left in the queue", n)
	}
}

func TestProgressIsVisibleWhileRunning(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declarePool(t, env, "t.progress")
	release := make(chan struct{})
	id := submit(t, env, "t.progress", `{}`, 1)[0]
	startWorker(t, env, workers.Config{},
		handler{typ("t.progress", time.Minute), func(ctx context.Context, _ *jobs.Job) (any, error) {
			if err := jobs.ReportProgress(ctx, 40, "resizing"); err != nil {
				return nil, err
			}
			<-release
			return "done", nil
		}},
	)
	testenv.Eventually(t, 10*time.Second, "progress", func() bool {
		j, err := env.Store.Get(context.Background(), id)
		return err == nil && j.Status == jobs.StatusRunning && j.Progress != nil &&
			*j.Progress == jobs.Progress{Percent: 40, Message: "resizing"}
	})
	close(release)
	j := waitTerminal(t, env, []string{id})[0]
	if j.Status != jobs.StatusSucceeded || j.Progress == nil || j.Progress.Percent != 100 {
		t.Errorf("finished job: %s progress %+v", j.Status, j.Progress)
	}
}

func TestFinishedAndUnrecordedJobsAreNotRun(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declarePool(t, env, "t.count")
	ctx := context.Background()
	// A redelivered message of a job that already succeeded.
	done := submit(t, env, "t.count", `{"which":"done"}`, 1)[0]
	if _, err := env.Store.Start(ctx, done, "earlier", -1, "token-"+jobs.NewID(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := env.Store.Finish(ctx, done, store.Outcome{Status: jobs.StatusSucceeded, Result: json.RawMessage(`1`)}, time.Now()); err != nil {
		t.Fatal(err)
	}
	// A message whose record the API discarded (publish not confirmed).
	orphan := &jobs.Job{ID: jobs.NewID(), Type: "t.count", Payload: json.RawMessage(`{"which":"orphan"}`), MaxAttempts: 1, Timeout: jobs.Duration(time.Minute)}
	m, _ := queue.NewMessage(orphan, "")
	if _, err := env.Broker.Publish(ctx, []queue.Message{m}); err != nil {
		t.Fatal(err)
	}
	last := submit(t, env, "t.count", `{"which":"last"}`, 1)[0]

	var runs sync.Map
	startWorker(t, env, workers.Config{Pools: map[string]workers.PoolConfig{pool: {Concurrency: 1}}},
		handler{typ("t.count", time.Minute), func(_ context.Context, j *jobs.Job) (any, error) {
			runs.Store(j.ID, true)
			return nil, nil
		}},
	)
	// One at a time in queue order: once the last job is done, the two
	// before it were handled.
	waitTerminal(t, env, []string{last})
	for name, id := range map[string]string{"finished job": done, "unrecorded job": orphan.ID} {
		if _, ran := runs.Load(id); ran {
			t.Errorf("the %s ran", name)
		}
	}
	if j, _ := env.Store.Get(ctx, done); j.Worker != "earlier" || j.Attempt != 1 {
		t.Errorf("finished job was changed: worker %s attempt %d", j.Worker, j.Attempt)
	}
	if n := env.Messages(t, pool); n != 0 {
		t.Errorf("%d messages left in the queue", n)
	}
}

func TestUnknownTypeFailsVisibly(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declarePool(t, env, "t.known", "t.unknown")
	id := submit(t, env, "t.unknown", `{}`, 1)[0]
	startWorker(t, env, workers.Config{},
		handler{typ("t.known", time.Minute), func(context.Context, *jobs.Job) (any, error) { return nil, nil }},
	)
	j := waitTerminal(t, env, []string{id})[0]
	if j.Status != jobs.StatusFailed || j.Error == nil || j.Error.Code != "unknown_type" {
		t.Errorf("job of an unhandled type: %s %+v", j.Status, j.Error)
	}
}

// A worker stopped while jobs wait loses none: what it had not started goes
// back to the queue, and the next worker runs each job exactly once.
func TestRestartWithJobsQueuedLosesNone(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declare(t, env, sys.Pool, sys.Sleep.Name)
	ids := submit(t, env, sys.Sleep.Name, `{"ms":20}`, 60)

	var runs atomic.Int64
	counted := jobs.Middleware(func(next jobs.Handler) jobs.Handler {
		return jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) (any, error) {
			runs.Add(1)
			return next.Run(ctx, j)
		})
	})
	newWorker := func() *workers.Worker {
		w := workers.New(workers.Config{Logger: env.Log, Pools: map[string]workers.PoolConfig{sys.Pool: {Concurrency: 4, Prefetch: 8}}}, env.Broker, env.Store)
		w.Use(counted)
		if err := sys.Register(w); err != nil {
			t.Fatal(err)
		}
		return w
	}
	first := newWorker()
	if err := first.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "first worker ready", first.Ready)
	testenv.Eventually(t, 30*time.Second, "some jobs done", func() bool { return runs.Load() >= 10 })
	if err := first.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	stoppedAt := runs.Load()

	second := newWorker()
	if err := second.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Stop(context.Background()) })
	got := waitTerminal(t, env, ids)
	succeeded, twice := 0, 0
	for _, j := range got {
		if j.Status == jobs.StatusSucceeded {
			succeeded++
		}
		if j.Attempt != 1 {
			twice++
		}
	}
	testenv.Summary(t, "submitted=%d succeeded=%d lost=%d duplicated=%d first_worker_ran=%d", len(ids), succeeded, len(ids)-succeeded, twice, stoppedAt)
	if succeeded != len(ids) || twice != 0 || runs.Load() != int64(len(ids)) {
		t.Errorf("succeeded %d of %d, %d ran more than once, %d runs", succeeded, len(ids), twice, runs.Load())
	}
}

// After the grace period, shutdown cancels running jobs and returns them to
// the queue rather than failing them.
func TestShutdownAfterGraceRequeuesRunningJobs(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declarePool(t, env, "t.stuck")
	id := submit(t, env, "t.stuck", `{}`, 1)[0]
	started := make(chan struct{})
	w := workers.New(workers.Config{Logger: env.Log, ShutdownGrace: 100 * time.Millisecond}, env.Broker, env.Store)
	if err := w.Handle(typ("t.stuck", time.Hour), jobs.HandlerFunc(func(ctx context.Context, _ *jobs.Job) (any, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	j, err := env.Store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != jobs.StatusQueued || j.Error == nil || j.Error.Code != "interrupted" {
		t.Errorf("interrupted job: %s %+v, want queued/interrupted", j.Status, j.Error)
	}
	// A quorum queue applies the requeue through its log, so its count may
	// lag the nack for a moment.
	testenv.Eventually(t, 10*time.Second, "the interrupted job back in the queue", func() bool {
		return env.Messages(t, pool) == 1
	})
}

func TestHealthHandler(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	w := workers.New(workers.Config{Logger: env.Log}, env.Broker, env.Store)
	if err := sys.Register(w); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w.HealthHandler())
	defer srv.Close()
	status := func(path string) int {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := status("/readyz"); s != http.StatusServiceUnavailable {
		t.Errorf("readyz before start: %d", s)
	}
	if s := status("/healthz"); s != http.StatusOK {
		t.Errorf("healthz: %d", s)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer w.Stop(context.Background())
	testenv.Eventually(t, 20*time.Second, "readyz 200", func() bool { return status("/readyz") == http.StatusOK })
}

func TestRegistrationErrors(t *testing.T) {
	t.Parallel()
	w := workers.New(workers.Config{}, nil, nil)
	h := jobs.HandlerFunc(func(context.Context, *jobs.Job) (any, error) { return nil, nil })
	for _, tt := range []struct {
		name string
		t    jobs.Type
		h    jobs.Handler
	}{
		{"bad name", jobs.Type{Name: "Bad", Pool: "p"}, h},
		{"bad pool", jobs.Type{Name: "a.b", Pool: "P Q"}, h},
		{"nil handler", jobs.Type{Name: "a.b", Pool: "p"}, nil},
		{"schema not JSON", jobs.Type{Name: "a.c", Pool: "p", Schema: json.RawMessage(`{`)}, h},
		{"schema does not compile", jobs.Type{Name: "a.d", Pool: "p", Schema: json.RawMessage(`{"type":"nonsense"}`)}, h},
		{"schema refers elsewhere", jobs.Type{Name: "a.e", Pool: "p", Schema: json.RawMessage(`{"$ref":"https://example.com/s.json"}`)}, h},
	} {
		if err := w.Handle(tt.t, tt.h); err == nil {
			t.Errorf("%s: registered", tt.name)
		}
	}
	if err := w.Handle(jobs.Type{Name: "a.b", Pool: "p"}, h); err != nil {
		t.Fatal(err)
	}
	if err := w.Handle(jobs.Type{Name: "a.b", Pool: "p"}, h); err == nil {
		t.Error("registered a type twice")
	}
	if err := workers.New(workers.Config{}, nil, nil).Start(context.Background()); err == nil {
		t.Error("started with no handlers")
	}
}

// A handler that finishes its work even though shutdown cancelled it is
// recorded as succeeded, not requeued to run again.
func TestSuccessDuringShutdownIsKept(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declarePool(t, env, "t.stubborn")
	id := submit(t, env, "t.stubborn", `{}`, 1)[0]
	started := make(chan struct{})
	w := workers.New(workers.Config{Logger: env.Log, ShutdownGrace: 50 * time.Millisecond}, env.Broker, env.Store)
	if err := w.Handle(typ("t.stubborn", time.Hour), jobs.HandlerFunc(func(ctx context.Context, _ *jobs.Job) (any, error) {
		close(started)
		<-ctx.Done()
		return "finished anyway", nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-started
	if err := w.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	j, err := env.Store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != jobs.StatusSucceeded || string(j.Result) != `"finished anyway"` {
		t.Errorf("job %s result %s, want succeeded", j.Status, j.Result)
	}
	if n := env.Messages(t, pool); n != 0 {
		t.Errorf("%d messages in the queue, want none", n)
	}
}

// If Redis loses the type registry, a running worker restores it, so the
// API does not refuse the pool's types until the worker restarts.
func TestLostTypeDeclarationsAreRestored(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	w := workers.New(workers.Config{Logger: env.Log, RedeclareEvery: 50 * time.Millisecond}, env.Broker, env.Store)
	if err := sys.Register(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	testenv.Eventually(t, 20*time.Second, "worker ready", w.Ready)
	if err := env.Store.DeleteNamespace(context.Background()); err != nil { // as a flushed Redis would be
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "sys types declared again", func() bool {
		ts, err := env.Store.Types(context.Background())
		return err == nil && len(ts) == 4 // echo, sleep, spin, fail
	})
}
