package workers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/workers"
)

// fast is a retry policy quick enough for tests.
var fast = jobs.Backoff{Base: jobs.Duration(100 * time.Millisecond), Factor: 2, Max: jobs.Duration(time.Second)}

func fastType(name string) jobs.Type {
	return jobs.Type{Name: name, Pool: pool, Timeout: jobs.Duration(time.Minute), Backoff: fast}
}

// failing fails its first n attempts with err, then succeeds.
func failing(n int, err error, calls *atomic.Int32) jobs.HandlerFunc {
	return func(_ context.Context, j *jobs.Job) (any, error) {
		calls.Add(1)
		if j.Attempt <= n {
			return nil, err
		}
		return map[string]int{"attempt": j.Attempt}, nil
	}
}

func deadCount(t *testing.T, env *testenv.Env) int {
	t.Helper()
	q, err := env.Broker.InspectDead(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

func TestRetriesUntilSuccessOrExhaustion(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declarePool(t, env, "t.flaky", "t.doomed", "t.broken", "t.later")
	flaky := submit(t, env, "t.flaky", `{}`, 1)[0]   // fails twice, succeeds on attempt 3
	doomed := submit(t, env, "t.doomed", `{}`, 1)[0] // fails every attempt
	broken := submit(t, env, "t.broken", `{}`, 1)[0] // permanent at once
	later := submit(t, env, "t.later", `{}`, 1)[0]   // asks for its own delay
	var flakyCalls, doomedCalls, brokenCalls, laterCalls atomic.Int32
	var firstFail atomic.Int64
	startWorker(t, env, workers.Config{},
		handler{fastType("t.flaky"), failing(2, errors.New("flaky"), &flakyCalls)},
		handler{fastType("t.doomed"), failing(99, errors.New("doomed"), &doomedCalls)},
		handler{fastType("t.broken"), failing(99, jobs.Permanent(errors.New("bad input")), &brokenCalls)},
		handler{jobs.Type{Name: "t.later", Pool: pool, Backoff: jobs.Backoff{Base: jobs.Duration(time.Hour)}},
			func(_ context.Context, j *jobs.Job) (any, error) {
				laterCalls.Add(1)
				if j.Attempt == 1 {
					firstFail.Store(time.Now().UnixMilli())
					return nil, jobs.RetryAfter(errors.New("rate limited"), 400*time.Millisecond)
				}
				return time.Now().UnixMilli() - firstFail.Load(), nil
			}},
	)
	got := waitTerminal(t, env, []string{flaky, doomed, broken, later})

	if j := got[0]; j.Status != jobs.StatusSucceeded || j.Attempt != 3 || flakyCalls.Load() != 3 || j.Error != nil {
		t.Errorf("flaky job: %s attempt %d calls %d error %+v", j.Status, j.Attempt, flakyCalls.Load(), j.Error)
	}
	if j := got[1]; j.Status != jobs.StatusFailed || j.Attempt != 3 || doomedCalls.Load() != 3 ||
		j.Error == nil || j.Error.Retryable || j.Error.Message != "doomed" {
		t.Errorf("doomed job: %s attempt %d calls %d error %+v", j.Status, j.Attempt, doomedCalls.Load(), j.Error)
	}
	if j := got[2]; j.Status != jobs.StatusFailed || j.Attempt != 1 || brokenCalls.Load() != 1 || j.Error == nil || j.Error.Retryable {
		t.Errorf("permanent failure: %s attempt %d calls %d error %+v", j.Status, j.Attempt, brokenCalls.Load(), j.Error)
	}
	var waited int64
	if j := got[3]; j.Status != jobs.StatusSucceeded || json.Unmarshal(j.Result, &waited) != nil ||
		waited < 350 || waited > 5000 {
		t.Errorf("RetryAfter job: %s waited %dms (result %s), want about 400ms, not the hour of its backoff", j.Status, waited, j.Result)
	}
	// The two failed jobs wait in the dead-letter queue, the error in headers.
	testenv.Eventually(t, 10*time.Second, "two dead letters", func() bool { return deadCount(t, env) == 2 })
	headers := deadHeaders(t, env)
	for _, id := range []string{doomed, broken} {
		h := headers[id]
		if h == nil || h["x-warren-error"] == nil || h["x-warren-error-code"] != "handler" || h["x-warren-failed-at"] == nil {
			t.Errorf("dead letter of %s: headers %v", id, h)
		}
	}
}

// deadHeaders reads the dead-letter queue without consuming it for good.
func deadHeaders(t *testing.T, env *testenv.Env) map[string]amqp.Table {
	t.Helper()
	conn, err := amqp.Dial(testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]amqp.Table{}
	var tags []uint64
	for {
		m, ok, err := ch.Get(env.NS.DeadQueue(pool), false)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		out[m.MessageId] = m.Headers
		tags = append(tags, m.DeliveryTag)
	}
	for _, tag := range tags {
		_ = ch.Nack(tag, false, true)
	}
	return out
}

// A copy of a job whose record has moved on never runs: the record, not
// the message, decides which attempt is next.
func TestStaleCopiesDoNotRun(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declarePool(t, env, "t.once")
	ctx := context.Background()
	id := submit(t, env, "t.once", `{}`, 1)[0]
	// The original message ran attempt 1, which failed and scheduled a
	// retry, but its worker died before acknowledging it.
	started, err := env.Store.Start(ctx, id, "lost", 0, "token-"+jobs.NewID(), time.Now())
	if err != nil || started.Attempt != 1 {
		t.Fatalf("start: %+v %v", started, err)
	}
	j, _ := env.Store.Get(ctx, id)
	if err := env.Store.Finish(ctx, id, storeRetrying(), time.Now()); err != nil {
		t.Fatal(err)
	}
	j.Attempt = 1
	retry, _ := queue.NewMessage(j, "")
	if _, err := env.Broker.Publish(ctx, []queue.Message{retry}); err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int32
	var attempts []int
	startWorker(t, env, workers.Config{Pools: map[string]workers.PoolConfig{pool: {Concurrency: 1}}},
		handler{fastType("t.once"), func(_ context.Context, j *jobs.Job) (any, error) {
			runs.Add(1)
			attempts = append(attempts, j.Attempt)
			return nil, nil
		}})
	got := waitTerminal(t, env, []string{id})[0]
	testenv.Eventually(t, 10*time.Second, "queue drained", func() bool { return env.Messages(t, pool) == 0 })
	if got.Status != jobs.StatusSucceeded || runs.Load() != 1 || fmt.Sprint(attempts) != "[2]" {
		t.Errorf("status %s, ran %d times with attempts %v; want once, as attempt 2", got.Status, runs.Load(), attempts)
	}
}

// An attempt lost with its worker counts: the redelivery runs as the next
// attempt, or fails the job when none remain.
func TestLostAttemptsCount(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declarePool(t, env, "t.lost")
	ctx := context.Background()
	ids := append(submit(t, env, "t.lost", `{}`, 1), submitWith(t, env, "t.lost", `{}`, 1, 1)...)
	// Both messages were taken by a worker that died mid-attempt: the
	// records say running, attempt 1. The first job may take 3 attempts,
	// the second only that one.
	for _, id := range ids {
		if _, err := env.Store.Start(ctx, id, "lost", 0, "token-"+jobs.NewID(), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	startWorker(t, env, workers.Config{}, handler{fastType("t.lost"), func(context.Context, *jobs.Job) (any, error) { return "ok", nil }})
	got := waitTerminal(t, env, ids)
	if j := got[0]; j.Status != jobs.StatusSucceeded || j.Attempt != 2 {
		t.Errorf("redelivered job: %s attempt %d, want succeeded on attempt 2", j.Status, j.Attempt)
	}
	if j := got[1]; j.Status != jobs.StatusFailed || j.Error == nil || j.Error.Code != "attempts_exhausted" {
		t.Errorf("job whose only attempt was lost: %s %+v, want failed attempts_exhausted", j.Status, j.Error)
	}
}

func TestCancelRunningJob(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declarePool(t, env, "t.long")
	id := submit(t, env, "t.long", `{}`, 1)[0]
	running := make(chan struct{})
	cause := make(chan error, 1)
	startWorker(t, env, workers.Config{}, handler{fastType("t.long"), func(ctx context.Context, _ *jobs.Job) (any, error) {
		close(running)
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return nil, ctx.Err()
	}})
	<-running
	if _, err := env.Store.Cancel(context.Background(), id, time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-cause:
		if err == nil || err.Error() != "job canceled by request" {
			t.Errorf("handler's context ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the running handler was not cancelled")
	}
	j := waitTerminal(t, env, []string{id})[0]
	if j.Status != jobs.StatusCanceled || j.Error == nil || j.Error.Code != "canceled" {
		t.Errorf("canceled job: %s %+v", j.Status, j.Error)
	}
	testenv.Eventually(t, 10*time.Second, "message settled", func() bool { return env.Messages(t, pool) == 0 })
	if n := deadCount(t, env); n != 0 {
		t.Errorf("a canceled job went to the dead letters (%d)", n)
	}
}

// A message that is delivered too often without an outcome is
// dead-lettered by the broker, and its job is then marked failed.
func TestDeliveryLimitFailsTheJob(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declarePool(t, env, "t.crashy")
	id := submit(t, env, "t.crashy", `{}`, 1)[0]
	// Play a worker that dies holding the message, again and again.
	conn, err := amqp.Dial(testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := 0; i <= queue.DeliveryLimit; i++ {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		var ok bool
		deadline := time.Now().Add(10 * time.Second)
		for !ok && time.Now().Before(deadline) {
			_, ok, err = ch.Get(env.NS.Queue(pool), false)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if !ok {
			break // dead-lettered
		}
		ch.Close() // returns the unacknowledged message, counting a delivery
	}
	startWorker(t, env, workers.Config{}, handler{fastType("t.crashy"), func(context.Context, *jobs.Job) (any, error) {
		t.Error("the dead-lettered job ran")
		return nil, nil
	}})
	j := waitTerminal(t, env, []string{id})[0]
	if j.Status != jobs.StatusFailed || j.Error == nil || j.Error.Code != "delivery_limit" {
		t.Errorf("job: %s %+v, want failed with delivery_limit", j.Status, j.Error)
	}
	if n := deadCount(t, env); n != 1 {
		t.Errorf("%d dead letters, want the job's message", n)
	}
}

func storeRetrying() store.Outcome {
	return store.Outcome{Status: jobs.StatusRetrying, Error: &jobs.Error{Code: "handler", Message: "x", Retryable: true}, Next: time.Now()}
}
