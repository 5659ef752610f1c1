// Package conformance is the one test suite that every implementation of the
// worker side of docs/protocol.md runs: the Go runtime (package workers) and
// the Python worker (workers/python/wordcount.py) both serve the job type
// text.wordcount, and Run checks either of them against the real API, a real
// RabbitMQ and a real Redis, each check in a namespace of its own.
//
// An implementation is given to Run as a Start function, which starts a
// worker for text.wordcount in the namespace of the Env it is handed and
// returns a function that stops it (which must fail the test if the worker
// did not stop cleanly).
package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
)

// TypeName and Pool name the job type every implementation serves.
const (
	TypeName = "text.wordcount"
	Pool     = "text"
)

// Type is the declaration every implementation writes to the registry, byte
// for byte as json.Marshal writes it (the Python worker writes the same
// text), so implementations sharing a namespace never flip it back and forth.
var Type = jobs.Type{
	Name:        TypeName,
	Pool:        Pool,
	Schema:      json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"},"fail_times":{"type":"integer","minimum":0},"permanent":{"type":"boolean"}},"required":["text"],"additionalProperties":false}`),
	Timeout:     jobs.Duration(30 * time.Second),
	MaxAttempts: 3,
	Backoff:     jobs.Backoff{Base: jobs.Duration(time.Second), Factor: 2, Max: jobs.Duration(time.Minute)},
	Description: "Counts the words, lines and characters of a text.",
}

// Payload is the input of text.wordcount. FailTimes makes the first that
// many attempts fail with a retryable error (code "handler"); Permanent makes
// the job fail for good at once (code "permanent").
type Payload struct {
	Text      string `json:"text"`
	FailTimes int    `json:"fail_times,omitempty"`
	Permanent bool   `json:"permanent,omitempty"`
}

// Result is the output of text.wordcount: words are runs of non-space, lines
// count newlines plus a last line that lacks one, chars are code points.
type Result struct {
	Words int `json:"words"`
	Lines int `json:"lines"`
	Chars int `json:"chars"`
}

// Start starts an implementation's worker for text.wordcount in env's
// namespace and returns a function that stops it. Stop is called once.
type Start func(t *testing.T, env *testenv.Env) (stop func())

// fixture is one check's namespace, worker and API.
type fixture struct {
	env   *testenv.Env
	url   string
	start Start
	stop  func() // stops the worker; safe to call twice
}

// setup gives a check a fresh namespace with the worker running and its
// type declared, and an API over it.
func setup(t *testing.T, start Start) *fixture {
	t.Helper()
	env := testenv.New(t)
	f := &fixture{env: env, start: start}
	f.run(t)
	f.url = ServeAPI(t, env.Broker, env.Store, env.Log)
	return f
}

// ServeAPI waits for the worker under test to declare TypeName in st, then
// serves warren's API over b and st on loopback until the test ends, and
// returns its base URL.
func ServeAPI(t *testing.T, b *queue.Broker, st *store.Store, log *slog.Logger) string {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, "the worker to declare "+TypeName, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := st.Type(ctx, TypeName)
		return err == nil
	})
	srv, err := api.New(api.Config{Addr: "127.0.0.1:0", Logger: log}, b, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return "http://" + srv.Addr()
}

// run starts the worker, to be stopped by f.stop or when the test ends.
func (f *fixture) run(t *testing.T) {
	t.Helper()
	stopWorker := f.start(t, f.env)
	var once sync.Once
	stop := func() { once.Do(stopWorker) }
	f.stop = stop
	t.Cleanup(stop)
}

// Run runs every check against the implementation start starts. Each check
// is a parallel subtest with its own namespace and worker.
func Run(t *testing.T, start Start) {
	checks := []struct {
		name string
		run  func(t *testing.T, f *fixture)
	}{
		{"TypeDeclared", typeDeclared},
		{"Succeeds", succeeds},
		{"Retries", retries},
		{"DeadLetters", deadLetters},
		{"Permanent", permanent},
		{"CancelQueued", cancelQueued},
		{"Redelivered", redelivered},
		{"CopyWhileRunning", copyWhileRunning},
		{"CopyOfLostAttempt", copyOfLostAttempt},
		{"UnreadableMessage", unreadableMessage},
		{"UnreadableAnonymous", unreadableAnonymous},
		{"UnlimitedIntake", unlimitedIntake},
		{"Lease", leaseReports},
		{"Pause", pause},
		{"RateLimited", rateLimited},
		{"LimitChanged", limitChanged},
		{"Priorities", priorities},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, setup(t, start))
		})
	}
}

// 1. The type is declared exactly, its schema is enforced by the API, and
// the worker keeps a lease.
func typeDeclared(t *testing.T, f *fixture) {
	want, err := json.Marshal(Type.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	rdb := rawRedis(t)
	got, err := rdb.HGet(context.Background(), f.env.NS.TypesKey(), TypeName).Result()
	if err != nil {
		t.Fatalf("HGET %s %s: %v", f.env.NS.TypesKey(), TypeName, err)
	}
	if got != string(want) {
		t.Errorf("declaration differs from the Go one:\n got %s\nwant %s", got, want)
	}

	r := f.post(t, "/v1/jobs", `{"type":"text.wordcount","payload":{}}`)
	if r.status != http.StatusBadRequest {
		t.Fatalf("payload without text: status %d (%s), want 400", r.status, r.body)
	}
	var e struct{ Error struct{ Code, Field string } }
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Field != "payload.text" || e.Error.Code != "invalid_payload" {
		t.Errorf("payload without text: error %s, want invalid_payload naming payload.text", r.body)
	}
	r = f.post(t, "/v1/jobs", `{"type":"text.wordcount","payload":{"text":"a","fail_times":"x"}}`)
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "payload.fail_times") {
		t.Errorf("fail_times not an integer: status %d (%s), want 400 naming payload.fail_times", r.status, r.body)
	}
	j := f.submit(t, `{"type":"text.wordcount","payload":{"text":"a b"}}`)
	done := f.wait(t, j.ID)
	if done.Status != jobs.StatusSucceeded {
		t.Fatalf("job %s ended %s (%+v), want succeeded", j.ID, done.Status, done.Error)
	}
	keys, err := rdb.Keys(context.Background(), f.env.NS.WorkerKey("*")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{f.env.NS.WorkerKey(done.Worker)}; !cmp.Equal(keys, want) {
		t.Errorf("worker leases %v, want %v (the lease of the worker that ran the job)", keys, want)
	}
	f.stop()
	if n, _ := rdb.Exists(context.Background(), f.env.NS.WorkerKey(done.Worker)).Result(); n != 0 {
		t.Errorf("the worker kept its lease after it stopped")
	}
}

// 2. A job runs once, its outcome is recorded in full, and its end is
// announced on its done channel (protocol section 10).
func succeeds(t *testing.T, f *fixture) {
	// Every job's done channel, subscribed before the job exists.
	done := rawRedis(t).PSubscribe(context.Background(), f.env.NS.DoneChannel("*"))
	t.Cleanup(func() { _ = done.Close() })
	if _, err := done.Receive(context.Background()); err != nil {
		t.Fatalf("subscribe to the done channels: %v", err)
	}
	text := "one two  three\nfour five\nsix wörds"
	submitted := f.submit(t, fmt.Sprintf(`{"type":"text.wordcount","payload":{"text":%q}}`, text))
	if submitted.Status != jobs.StatusQueued || submitted.Attempt != 0 {
		t.Errorf("submitted job: status %s attempt %d, want queued 0", submitted.Status, submitted.Attempt)
	}
	j := f.wait(t, submitted.ID)
	if j.Status != jobs.StatusSucceeded {
		t.Fatalf("status %s (error %+v), want succeeded", j.Status, j.Error)
	}
	var got Result
	if err := json.Unmarshal(j.Result, &got); err != nil {
		t.Fatalf("result %s: %v", j.Result, err)
	}
	if diff := cmp.Diff(Result{Words: 7, Lines: 3, Chars: 34}, got); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if j.Attempt != 1 || j.Worker == "" || j.Error != nil {
		t.Errorf("attempt %d worker %q error %+v, want 1, set, none", j.Attempt, j.Worker, j.Error)
	}
	if j.StartedAt == nil || j.FinishedAt == nil || j.FinishedAt.Before(*j.StartedAt) || j.StartedAt.Before(j.CreatedAt.Truncate(time.Millisecond)) {
		t.Errorf("created %v started %v finished %v, want both set, in order", j.CreatedAt, j.StartedAt, j.FinishedAt)
	}
	if again := f.get(t, j.ID, ""); again.Status != jobs.StatusSucceeded || !cmp.Equal(again.Result, j.Result) {
		t.Errorf("GET again: %s %s", again.Status, again.Result)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if msg, err := done.ReceiveMessage(ctx); err != nil {
		t.Errorf("no announcement on the job's done channel: %v", err)
	} else if msg.Channel != f.env.NS.DoneChannel(j.ID) || msg.Payload != "succeeded" {
		t.Errorf("announced %q on %s, want \"succeeded\" on %s", msg.Payload, msg.Channel, f.env.NS.DoneChannel(j.ID))
	}
	f.noneWaiting(t, "after the job succeeded")
	f.drained(t)
}

// 3. Failed attempts are retried through the delay levels with the job's
// own backoff, until one succeeds.
func retries(t *testing.T, f *fixture) {
	begin := time.Now()
	j := f.submit(t, `{"type":"text.wordcount","payload":{"text":"x y","fail_times":2},"max_attempts":3,"backoff":{"base":"200ms"}}`)
	j = f.wait(t, j.ID)
	if j.Status != jobs.StatusSucceeded || j.Attempt != 3 || j.Error != nil {
		t.Fatalf("status %s attempt %d error %+v, want succeeded at attempt 3 with no error", j.Status, j.Attempt, j.Error)
	}
	// Waits of 100–200 ms and 200–400 ms (through the delay levels: a wait
	// under 100 ms would skip them), well under the type's 1s base.
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("took %s: the job's backoff was not used", took)
	}
	// The record keeps each attempt: two failed, then the one that
	// succeeded, each with its worker and times; and when the last retry
	// was due.
	var outcomes []string
	for i, a := range j.Attempts {
		outcomes = append(outcomes, a.Outcome)
		if a.Attempt != i+1 || a.Worker == "" || a.StartedAt == nil || a.EndedAt == nil || (a.Outcome == "failed") != (a.Error != nil) {
			t.Errorf("attempt %d recorded as %+v", i+1, a)
		}
	}
	if want := []string{"failed", "failed", "succeeded"}; !slices.Equal(outcomes, want) {
		t.Errorf("attempts %v, want %v", outcomes, want)
	}
	if j.ScheduledAt == nil {
		t.Error("scheduled_at gone from a job that was retried; it stays, saying when the last retry was due")
	}
	f.noneWaiting(t, "after the retried job succeeded")
	f.drained(t)
}

// 4. A job that fails on its last attempt is dead-lettered with its error,
// and a replay runs it again.
func deadLetters(t *testing.T, f *fixture) {
	j := f.submit(t, `{"type":"text.wordcount","payload":{"text":"x","fail_times":5},"max_attempts":2,"backoff":{"base":"100ms"}}`)
	j = f.wait(t, j.ID)
	if j.Status != jobs.StatusFailed || j.Attempt != 2 || j.Error == nil || j.Error.Retryable || j.Error.Code != "handler" {
		t.Fatalf("status %s attempt %d error %+v, want failed at attempt 2 with a handler error, not retryable", j.Status, j.Attempt, j.Error)
	}
	d := f.dead(t)
	if len(d) != 1 || d[0].ID != j.ID || d[0].Reason != "failed" || d[0].Attempts != 2 ||
		d[0].Error.Code != j.Error.Code || d[0].Error.Message != j.Error.Message || d[0].FailedAt == nil {
		t.Fatalf("dead letters %+v, want one of job %s, reason failed, attempts 2, error %+v, failed_at set", d, j.ID, j.Error)
	}

	r := f.post(t, "/v1/dead/replay", fmt.Sprintf(`{"pool":"text","ids":[%q]}`, j.ID))
	var replay struct{ Replayed int }
	if r.status != http.StatusOK || json.Unmarshal(r.body, &replay) != nil || replay.Replayed != 1 {
		t.Fatalf("replay: %d %s, want 200 with one replayed", r.status, r.body)
	}
	// The replay made the record queued before it answered; the worker then
	// fails the job again (finished_at has millisecond resolution, and a
	// fast worker may finish within the same millisecond).
	again := f.wait(t, j.ID)
	if again.Status != jobs.StatusFailed || again.Attempt != 2 || again.FinishedAt.Before(*j.FinishedAt) {
		t.Errorf("after replay: status %s attempt %d finished %v, want failed again at attempt 2, later", again.Status, again.Attempt, again.FinishedAt)
	}
	if d := f.dead(t); len(d) != 1 || d[0].ID != j.ID {
		t.Errorf("dead letters after the replay failed again: %+v, want one of job %s", d, j.ID)
	}
	f.noneWaiting(t, "after the replayed job failed again")
	f.drained(t)
}

// 5. A permanent failure is not retried.
func permanent(t *testing.T, f *fixture) {
	// Attempts remain (the type's most, 3), and none is used.
	j := f.submit(t, `{"type":"text.wordcount","payload":{"text":"x","permanent":true},"max_attempts":3}`)
	j = f.wait(t, j.ID)
	if j.Status != jobs.StatusFailed || j.Attempt != 1 || j.Error == nil || j.Error.Retryable || j.Error.Code != "permanent" {
		t.Fatalf("status %s attempt %d error %+v, want failed at attempt 1, code permanent, not retryable", j.Status, j.Attempt, j.Error)
	}
	if d := f.dead(t); len(d) != 1 || d[0].ID != j.ID || d[0].Attempts != 1 || d[0].Error.Code != "permanent" {
		t.Errorf("dead letters %+v, want job %s after 1 attempt, code permanent", d, j.ID)
	}
	f.drained(t)
}

// 6. A job canceled while its message waits is never run: its message is
// acknowledged unrun when it arrives.
func cancelQueued(t *testing.T, f *fixture) {
	j := f.submit(t, `{"type":"text.wordcount","payload":{"text":"x"},"delay":"2s"}`)
	due := time.Now().Add(2 * time.Second)
	if j.Status != jobs.StatusScheduled || j.ScheduledAt == nil {
		t.Fatalf("submitted with a delay: status %s scheduled_at %v, want scheduled, set", j.Status, j.ScheduledAt)
	}
	// The API indexed it as waiting from its due time (protocol section 12).
	rdb := rawRedis(t)
	score, err := rdb.ZScore(context.Background(), f.env.NS.WaitingKey(Pool), j.ID).Result()
	if err != nil || int64(score) != j.ScheduledAt.UnixMilli() {
		t.Errorf("index of waiting jobs: score %v (%v), want the due time %d", int64(score), err, j.ScheduledAt.UnixMilli())
	}
	r := f.post(t, "/v1/jobs/"+j.ID+"/cancel", "")
	if r.status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	f.noneWaiting(t, "after the cancel")
	// 2s is 20 units: it waits in levels 4 and 2. Once they are empty and
	// the due time has passed, the message is in the pool's queue or was
	// taken from it.
	time.Sleep(time.Until(due))
	testenv.Eventually(t, 10*time.Second, "the delayed message to leave the delay levels", func() bool {
		return f.ready(t, f.env.NS.DelayQueue(4)) == 0 && f.ready(t, f.env.NS.DelayQueue(2)) == 0
	})
	// Delivered is not handled: wait until the management API shows the
	// one message that entered the pool queue acknowledged.
	settled(t, f.env.NS.Queue(Pool), 1)
	// Stopping the worker returns whatever it still holds unacknowledged.
	f.stop()
	if n := f.env.Messages(t, Pool); n != 0 {
		t.Errorf("%d messages back in the queue after the worker stopped: the canceled job's message was not acknowledged", n)
	}
	if n := f.ready(t, f.env.NS.DeadQueue(Pool)); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
	got := f.get(t, j.ID, "")
	if got.Status != jobs.StatusCanceled || got.Attempt != 0 || got.Worker != "" || got.StartedAt != nil {
		t.Errorf("record: status %s attempt %d worker %q started %v, want canceled, never started", got.Status, got.Attempt, got.Worker, got.StartedAt)
	}
}

// 7. A redelivered copy of a finished job, and a message whose job has no
// record, are acknowledged without running.
func redelivered(t *testing.T, f *fixture) {
	j := f.wait(t, f.submit(t, `{"type":"text.wordcount","payload":{"text":"once"}}`).ID)
	if j.Status != jobs.StatusSucceeded {
		t.Fatalf("status %s, want succeeded", j.Status)
	}
	copyOf := j
	copyOf.Attempt = 0 // as the first message said
	dup, err := queue.NewMessage(&copyOf, "")
	if err != nil {
		t.Fatal(err)
	}
	ghost := jobs.Job{ID: jobs.NewID(), Type: TypeName, Payload: json.RawMessage(`{"text":"ghost"}`), MaxAttempts: 3, Timeout: jobs.Duration(time.Minute), CreatedAt: time.Now().UTC()}
	unknown, err := queue.NewMessage(&ghost, "")
	if err != nil {
		t.Fatal(err)
	}
	f.publish(t, dup, unknown)
	// Ready = 0 only says the copies were delivered; the management API's
	// figures include unacknowledged messages. Its delivery counter (the
	// first job and the two copies: 3) rules out a snapshot older than the
	// copies.
	settled(t, f.env.NS.Queue(Pool), 3)
	f.stop()
	if n := f.env.Messages(t, Pool); n != 0 {
		t.Errorf("%d messages back in the queue after the worker stopped, want 0", n)
	}
	if n := f.ready(t, f.env.NS.DeadQueue(Pool)); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
	got := f.get(t, j.ID, "")
	if got.Status != jobs.StatusSucceeded || got.Attempt != 1 || !got.FinishedAt.Equal(*j.FinishedAt) || !got.StartedAt.Equal(*j.StartedAt) {
		t.Errorf("record changed by the copy: status %s attempt %d started %v finished %v", got.Status, got.Attempt, got.StartedAt, got.FinishedAt)
	}
	for _, k := range f.env.JobKeys(t) {
		if k == f.env.NS.JobKey(ghost.ID) {
			t.Errorf("a record was written for a job that was never accepted")
		}
	}
}

// 8. Two copies of one attempt run at most once while the attempt's worker
// lives: a second copy of a message whose attempt runs is parked in the
// delay levels, neither run beside it nor dropped, and once the attempt has
// ended the parked copy comes back and is acknowledged unrun (protocol
// section 7.1).
//
// The attempt is held running on the worker under test without a slow
// handler: its job fails for good, and the dead letter it must publish
// before recording the failure (section 7.4) cannot be routed while the
// pool's dead-letter queue is unbound, so the worker holds the attempt
// until the test binds the queue again.
func copyWhileRunning(t *testing.T, f *fixture) {
	ns, rdb := f.env.NS, rawRedis(t)
	f.bindDead(t, false)
	t.Cleanup(func() { f.bindDead(t, true) }) // before the worker stops, should the test end early
	j := f.submit(t, `{"type":"text.wordcount","payload":{"text":"held","permanent":true},"max_attempts":3}`)
	var worker string
	testenv.Eventually(t, 10*time.Second, "the worker to start attempt 1 and hold it", func() bool {
		r := f.get(t, j.ID, "")
		worker = r.Worker
		return r.Status == jobs.StatusRunning && r.Attempt == 1 && worker != ""
	})
	if n, _ := rdb.Exists(context.Background(), ns.WorkerKey(worker)).Result(); n != 1 {
		t.Fatalf("worker %q runs attempt 1 without a lease", worker)
	}
	if _, err := rdb.ZScore(context.Background(), ns.RunningKey(Pool), j.ID).Result(); err != nil {
		t.Errorf("the running job is not in its pool's index of running jobs: %v", err)
	}

	// A second copy of the message the API published: the same body, and
	// x-warren-attempts 0.
	copyOf := j
	copyOf.Attempt = 0
	dup, err := queue.NewMessage(&copyOf, "")
	if err != nil {
		t.Fatal(err)
	}
	f.publish(t, dup)
	testenv.Eventually(t, 10*time.Second, "the copy to be parked in the delay levels", func() bool { return f.delayed(t) > 0 })
	if r := f.get(t, j.ID, ""); r.Status != jobs.StatusRunning || r.Attempt != 1 || r.Worker != worker {
		t.Errorf("after the copy arrived: status %s attempt %d worker %q, want running attempt 1 on %q still", r.Status, r.Attempt, r.Worker, worker)
	}

	f.bindDead(t, true)
	done := f.wait(t, j.ID)
	if done.Status != jobs.StatusFailed || done.Attempt != 1 || done.Error == nil || done.Error.Code != "permanent" {
		t.Fatalf("status %s attempt %d error %+v, want failed at attempt 1, code permanent", done.Status, done.Attempt, done.Error)
	}
	// The parked copy comes back once the worker's lease would have lapsed
	// (10 s at most, and a second): the original, the copy and its return.
	settled(t, ns.Queue(Pool), 3)
	if n := f.delayed(t); n != 0 {
		t.Errorf("%d messages in the delay levels after the parked copy came back, want none (parked again?)", n)
	}
	got := f.get(t, j.ID, "")
	if got.Status != jobs.StatusFailed || got.Attempt != 1 || !got.FinishedAt.Equal(*done.FinishedAt) {
		t.Errorf("record changed by the copy: status %s attempt %d finished %v", got.Status, got.Attempt, got.FinishedAt)
	}
	// Each run of the handler leaves a dead letter.
	if d := f.dead(t); len(d) != 1 || d[0].ID != j.ID || d[0].Attempts != 1 {
		t.Errorf("dead letters %+v, want one, of attempt 1: the handler ran more than once", d)
	}
	f.notRunning(t, j.ID)
	f.noneWaiting(t, "after the held job failed")
	// The worker recorded how far its pool's queue has come: it started a
	// job due when this one was created (jobs.Namespace.StartedKey).
	testenv.Eventually(t, 10*time.Second, "the worker to record the due time of the job it started", func() bool {
		score, err := rdb.ZScore(context.Background(), ns.StartedKey(), Pool).Result()
		return err == nil && int64(score) >= j.CreatedAt.UnixMilli()
	})
	f.stop()
	if n := f.env.Messages(t, Pool); n != 0 {
		t.Errorf("%d messages back in the queue after the worker stopped, want 0", n)
	}
}

// 9. A copy of an attempt whose worker is gone (its lease lapsed) runs, as
// the next attempt: the lost attempt is not waited for.
func copyOfLostAttempt(t *testing.T, f *fixture) {
	j := f.submit(t, `{"type":"text.wordcount","payload":{"text":"a b c"},"delay":"2s"}`)
	// While the message waits in the delay levels, a worker that has no
	// lease (it died) starts attempt 1, through the start script as any
	// worker does.
	const gone = "gone-worker"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := f.env.Store.Start(ctx, j.ID, gone, 0, gone+"/"+jobs.NewID(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != jobs.StatusRunning || st.Attempt != 1 {
		t.Fatalf("start as a lost worker: %+v, want running attempt 1 (did the delayed message arrive first?)", st)
	}
	done := f.wait(t, j.ID)
	if done.Status != jobs.StatusSucceeded || done.Attempt != 2 || done.Worker == gone || done.Error != nil {
		t.Fatalf("status %s attempt %d worker %q error %+v, want succeeded at attempt 2 on the worker under test",
			done.Status, done.Attempt, done.Worker, done.Error)
	}
	var res Result
	if err := json.Unmarshal(done.Result, &res); err != nil || res.Words != 3 {
		t.Errorf("result %s, want 3 words", done.Result)
	}
	settled(t, f.env.NS.Queue(Pool), 1)
	if n := f.delayed(t); n != 0 {
		t.Errorf("%d messages in the delay levels, want none", n)
	}
	f.notRunning(t, j.ID)
	f.noneWaiting(t, "after the job succeeded")
}

// 10. A message the worker cannot read (not valid UTF-8, nested deeper than
// any decoder goes, or fields of the wrong type) fails its job, named by the
// message id, with code bad_message, and becomes its dead letter: it is
// settled once, never run, never dropped, never requeued in a loop.
func unreadableMessage(t *testing.T, f *fixture) {
	bodies := map[string]func(id string) []byte{
		"invalid UTF-8": func(id string) []byte {
			return []byte(`{"id":"` + id + `","type":"text.wordcount","payload":{"text":"caf\xe9"}}`)
		},
		"nested 50000 deep": func(string) []byte {
			return []byte(strings.Repeat("[", 50000) + strings.Repeat("]", 50000))
		},
		"wrong types": func(id string) []byte {
			return []byte(`{"id":"` + id + `","type":["text.wordcount"],"max_attempts":"many"}`)
		},
	}
	var ids []string
	for what, body := range bodies {
		// A real job, waiting in the delay levels, whose message id the
		// unreadable copy carries.
		j := f.submit(t, `{"type":"text.wordcount","payload":{"text":"a"},"delay":"10m"}`)
		f.publish(t, queue.Message{ID: j.ID, Type: j.Type, Body: body(j.ID)})
		done := f.wait(t, j.ID)
		if done.Status != jobs.StatusFailed || done.Error == nil || done.Error.Code != "bad_message" || done.Attempt != 0 {
			t.Errorf("%s: status %s attempt %d error %+v, want failed with bad_message, never run", what, done.Status, done.Attempt, done.Error)
		}
		ids = append(ids, j.ID)
	}
	settled(t, f.env.NS.Queue(Pool), len(bodies))
	// Each became a dead letter, once; unreadable, so counted but not listed.
	testenv.Eventually(t, 10*time.Second, "a dead letter for each", func() bool {
		return f.ready(t, f.env.NS.DeadQueue(Pool)) == len(bodies)
	})
	time.Sleep(time.Second) // long enough for a loop to show
	if n := f.ready(t, f.env.NS.DeadQueue(Pool)); n != len(bodies) {
		t.Errorf("%d dead letters, want %d: one per unreadable message", n, len(bodies))
	}
	if n := f.env.Messages(t, Pool); n != 0 {
		t.Errorf("%d messages back in the pool queue, want 0", n)
	}
	for _, id := range ids {
		f.notRunning(t, id)
	}
}

// 11. An unreadable message that names no job is rejected once: the broker
// dead-letters it to the pool's dead letters and the intake, which the
// worker acknowledges; nothing loops, and the worker carries on.
func unreadableAnonymous(t *testing.T, f *fixture) {
	f.publish(t, queue.Message{Type: "text.wordcount", Body: []byte(strings.Repeat("{", 50000))})
	settled(t, f.env.NS.Queue(Pool), 1)
	// The dead-lettering that put it in the dead letters put it in the
	// intake too.
	testenv.Eventually(t, 10*time.Second, "the message in the dead letters", func() bool {
		return f.ready(t, f.env.NS.DeadQueue(Pool)) == 1
	})
	settled(t, f.env.NS.DeadIntakeQueue(Pool), 1)
	time.Sleep(time.Second) // long enough for a loop to show
	if n := f.ready(t, f.env.NS.DeadQueue(Pool)); n != 1 {
		t.Errorf("%d dead letters, want 1", n)
	}
	// The worker carries on.
	if done := f.wait(t, f.submit(t, `{"type":"text.wordcount","payload":{"text":"still here"}}`).ID); done.Status != jobs.StatusSucceeded {
		t.Errorf("a job after the unreadable message: %s, want succeeded", done.Status)
	}
}

// 12. A namespace made when the intake queue had no delivery limit (it was
// {ns}.dead-intake.{pool}) is migrated by the worker when it starts: the
// message waiting in the old intake queue still fails its job, once, with
// delivery_limit, and the old queue is deleted, at the latest by the
// worker's next start (protocol section 8).
func unlimitedIntake(t *testing.T, f *fixture) {
	f.stop()
	// A job the broker dead-lettered before the upgrade: its message waits
	// in the delay levels for the test's sake, its dead letter in the old
	// intake queue.
	j := f.submit(t, `{"type":"text.wordcount","payload":{"text":"a"},"delay":"10m"}`)
	m, err := queue.NewMessage(&j, "")
	if err != nil {
		t.Fatal(err)
	}
	old := f.env.NS.UnlimitedIntakeQueue(Pool)
	f.amqp(t, func(ch *amqp.Channel) error {
		if _, err := ch.QueueDeclare(old, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}); err != nil {
			return err
		}
		if err := ch.QueueBind(old, jobs.DeadRoutingKey("limit", Pool), f.env.NS.DeadExchange(), false, nil); err != nil {
			return err
		}
		return ch.PublishWithContext(context.Background(), "", old, true, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, MessageId: m.ID, Body: m.Body, Headers: amqp.Table{
				"x-warren-attempts": int32(0), "x-warren-max-attempts": int32(j.MaxAttempts),
				"x-warren-timeout-ms": j.Timeout.Std().Milliseconds()}})
	})
	testenv.Eventually(t, 10*time.Second, "the dead letter in the old intake queue", func() bool { return f.ready(t, old) == 1 })

	f.run(t)
	done := f.wait(t, j.ID)
	if done.Status != jobs.StatusFailed || done.Error == nil || done.Error.Code != "delivery_limit" {
		t.Errorf("status %s error %+v, want failed with delivery_limit", done.Status, done.Error)
	}
	settled(t, f.env.NS.DeadIntakeQueue(Pool), 1)
	exists := func() bool {
		_, err := queueReady(testenv.AMQPURL(), old)
		return err == nil
	}
	if exists() {
		// Deleting it may be left to the next start.
		f.stop()
		f.run(t)
		testenv.Eventually(t, 30*time.Second, "the old intake queue to be deleted by the next start", func() bool { return !exists() })
	}
	// The intake publishes no dead letter of its own (section 8).
	time.Sleep(time.Second) // long enough for a second copy to show
	if n := f.ready(t, f.env.NS.DeadQueue(Pool)); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
	if got := f.get(t, j.ID, ""); got.Status != jobs.StatusFailed || !got.FinishedAt.Equal(*done.FinishedAt) {
		t.Errorf("record changed after the job failed: status %s finished %v", got.Status, got.FinishedAt)
	}
	f.notRunning(t, j.ID)
}

// ---- helpers

type response struct {
	status int
	body   []byte
}

func (f *fixture) do(t *testing.T, method, path, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, body: b}
}

func (f *fixture) post(t *testing.T, path, body string) response {
	t.Helper()
	return f.do(t, "POST", path, body)
}

func decodeJob(t *testing.T, r response) jobs.Job {
	t.Helper()
	var j jobs.Job
	if err := json.Unmarshal(r.body, &j); err != nil {
		t.Fatalf("decode job from %s: %v", r.body, err)
	}
	return j
}

// submit posts a job and requires 202.
func (f *fixture) submit(t *testing.T, body string) jobs.Job {
	t.Helper()
	r := f.post(t, "/v1/jobs", body)
	if r.status != http.StatusAccepted {
		t.Fatalf("submit %s: status %d (%s), want 202", body, r.status, r.body)
	}
	return decodeJob(t, r)
}

func (f *fixture) get(t *testing.T, id, wait string) jobs.Job {
	t.Helper()
	path := "/v1/jobs/" + id
	if wait != "" {
		path += "?wait=" + wait
	}
	r := f.do(t, "GET", path, "")
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, r.status, r.body)
	}
	return decodeJob(t, r)
}

// wait long-polls a job until it is terminal.
func (f *fixture) wait(t *testing.T, id string) jobs.Job {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		j := f.get(t, id, "10s")
		if j.Status.Terminal() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s (attempt %d, error %+v) after 30s", id, j.Status, j.Attempt, j.Error)
		}
	}
}

type deadEntry struct {
	ID       string
	Reason   string
	Attempts int
	Error    jobs.Error
	FailedAt *time.Time `json:"failed_at"`
}

func (f *fixture) dead(t *testing.T) []deadEntry {
	t.Helper()
	r := f.do(t, "GET", "/v1/dead?pool="+Pool, "")
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/dead: %d %s", r.status, r.body)
	}
	var out struct{ Dead []deadEntry }
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatalf("decode dead letters %s: %v", r.body, err)
	}
	return out.Dead
}

// drained requires that the pool queue is left empty: nothing requeued,
// nothing left behind.
func (f *fixture) drained(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, "the pool queue to be empty", func() bool { return f.env.Messages(t, Pool) == 0 })
}

// noneWaiting requires that the pool's index of waiting jobs (protocol
// section 12) is empty: every script the worker ran kept it.
func (f *fixture) noneWaiting(t *testing.T, when string) {
	t.Helper()
	ids, err := rawRedis(t).ZRange(context.Background(), f.env.NS.WaitingKey(Pool), 0, -1).Result()
	if err != nil {
		t.Fatalf("read the index of waiting jobs: %v", err)
	}
	if len(ids) != 0 {
		t.Errorf("%s: jobs %v still indexed as waiting, want none", when, ids)
	}
}

// notRunning requires that a job has left its pool's index of running jobs:
// the worker's start script put it there, its finish script took it out.
func (f *fixture) notRunning(t *testing.T, id string) {
	t.Helper()
	if _, err := rawRedis(t).ZScore(context.Background(), f.env.NS.RunningKey(Pool), id).Result(); err != redis.Nil {
		t.Errorf("job %s still in its pool's index of running jobs (%v), want it gone", id, err)
	}
}

// publish publishes messages straight to the broker, confirmed.
func (f *fixture) publish(t *testing.T, msgs ...queue.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs, err := f.env.Broker.Publish(ctx, msgs)
	if err == nil {
		err = errorsJoin(errs)
	}
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// bindDead binds the pool's dead-letter queue to the dead-letter exchange
// for failed jobs, or unbinds it: a worker's dead letter then cannot be
// routed, and the worker holds the job's attempt until it can.
func (f *fixture) bindDead(t *testing.T, bind bool) {
	t.Helper()
	f.amqp(t, func(ch *amqp.Channel) error {
		q, key, ex := f.env.NS.DeadQueue(Pool), jobs.DeadRoutingKey("*", Pool), f.env.NS.DeadExchange()
		if bind {
			return ch.QueueBind(q, key, ex, false, nil)
		}
		return ch.QueueUnbind(q, key, ex, nil)
	})
}

// delayed is how many messages wait in the namespace's delay levels.
func (f *fixture) delayed(t *testing.T) int {
	t.Helper()
	n := 0
	f.amqp(t, func(ch *amqp.Channel) error {
		for level := range jobs.DelayLevels {
			q, err := ch.QueueDeclarePassive(f.env.NS.DelayQueue(level), true, false, false, false, nil)
			if err != nil {
				return err
			}
			n += q.Messages
		}
		return nil
	})
	return n
}

// amqp runs do on a channel of a connection of its own.
func (f *fixture) amqp(t *testing.T, do func(*amqp.Channel) error) {
	t.Helper()
	if err := do(testenv.Channel(t)); err != nil {
		t.Fatal(err)
	}
}

// ready is how many messages wait ready in a queue of the namespace.
func (f *fixture) ready(t *testing.T, name string) int {
	t.Helper()
	n, err := queueReady(testenv.AMQPURL(), name)
	if err != nil {
		t.Fatalf("inspect %s: %v", name, err)
	}
	return n
}

func rawRedis(t *testing.T) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func errorsJoin(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// queueReady reads a queue's ready count with a passive declare on a
// connection of its own (the broker of testenv inspects only pool queues).
func queueReady(url, name string) (int, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	return q.Messages, nil
}

// settled waits until the management API reports, in a snapshot that has
// seen at least delivered messages handed to consumers, that none is left
// in the queue, ready or unacknowledged: every message was acknowledged.
// The count of deliveries can fall short for good: a channel closed between
// two collections of statistics (a consumer replaced as its prefetch
// adapts) takes the count of its last deliveries with it. So a queue found
// empty in every snapshot for settledQuiet (two collections) also counts
// as settled: no message is ever that long between a queue and the next.
func settled(t *testing.T, queueName string, delivered int) {
	t.Helper()
	base, err := url.Parse(testenv.ManagementURL())
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := base.User.Password()
	user := base.User.Username()
	base.User = nil
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	var emptySince time.Time
	testenv.Eventually(t, 30*time.Second, "every message of "+queueName+" acknowledged", func() bool {
		req, _ := http.NewRequest("GET", base.String()+"/api/queues/%2F/"+url.PathEscape(queueName), nil)
		req.SetBasicAuth(user, pw)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("management API: %v", err)
		}
		defer resp.Body.Close()
		var q struct {
			Messages     *int `json:"messages"`
			MessageStats struct {
				DeliverGet int `json:"deliver_get"`
			} `json:"message_stats"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&q); err != nil {
			return false
		}
		if q.Messages == nil || *q.Messages != 0 {
			emptySince = time.Time{}
			return false
		}
		if emptySince.IsZero() {
			emptySince = time.Now()
		}
		return q.MessageStats.DeliverGet >= delivered || time.Since(emptySince) >= settledQuiet
	})
}

// settledQuiet is two of RabbitMQ's collections of statistics (every 5s by
// default).
const settledQuiet = 10 * time.Second
