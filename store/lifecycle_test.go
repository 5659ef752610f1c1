package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

func TestCreateGetRoundTrip(t *testing.T) {
	t.Parallel()
	f := setup(t)
	scheduled := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	withKey := newJob(2)
	withKey.IdempotencyKey = "order-42"
	bare := newJob(3)
	bare.Metadata = nil
	bare.Payload = json.RawMessage(`{}`)
	delayed := newJob(4)
	delayed.Status = jobs.StatusScheduled
	delayed.ScheduledAt = &scheduled
	in := []*jobs.Job{newJob(1), withKey, bare, delayed}

	out := f.create(t, in...)
	for i, c := range out {
		if c.Existing {
			t.Errorf("job %d: Existing = true for a new job", i)
		}
		if diff := cmp.Diff(in[i], c.Job); diff != "" {
			t.Errorf("job %d: Created.Job (-input +got):\n%s", i, diff)
		}
	}
	for i, j := range in {
		got := f.get(t, j.ID)
		if diff := cmp.Diff(j, got); diff != "" {
			t.Errorf("job %d: Get after Create (-created +got):\n%s", i, diff)
		}
	}
	if got := f.get(t, in[0].ID); got.ScheduledAt != nil || got.StartedAt != nil || got.FinishedAt != nil || got.Error != nil ||
		got.Result != nil || got.Progress != nil || got.Attempt != 0 {
		t.Errorf("a new record has state it should not: %+v", got)
	}
	// A queued record is kept the retention after it is due: at once, or
	// at the end of its delay.
	if d := f.pttl(t, f.ns.JobKey(in[0].ID)); d <= retention-time.Minute || d > retention {
		t.Errorf("PTTL of a queued job = %s, want about the %s retention", d, retention)
	}
	if d, want := f.pttl(t, f.ns.JobKey(delayed.ID)), scheduled.Sub(delayed.CreatedAt)+retention; d <= want-time.Minute || d > want {
		t.Errorf("PTTL of a job delayed an hour = %s, want about %s", d, want)
	}
	// The wire format other workers read (docs/protocol.md).
	want := map[string]string{
		"id": in[0].ID, "type": "store.test", "pool": "storepool", "status": "queued", "payload": string(in[0].Payload),
		"attempt": "0", "max_attempts": "4", "timeout_ms": "90250",
		"metadata":   `{"n":"1","team":"store"}`,
		"created_at": fmt.Sprint(in[0].CreatedAt.UnixMilli()),
	}
	if diff := cmp.Diff(want, f.raw(t, in[0].ID)); diff != "" {
		t.Errorf("record fields (-want +got):\n%s", diff)
	}
}

func TestGetMissing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	if _, err := f.st.Get(ctx(t), jobs.NewID()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of a missing job = %v, want ErrNotFound", err)
	}
}

func TestCreateIdempotency(t *testing.T) {
	t.Parallel()
	f := setup(t)
	first := newJob(1)
	first.IdempotencyKey = "k1"
	f.create(t, first)
	idemTTL := f.pttl(t, f.ns.IdempotencyKey("", "k1"))
	if idemTTL <= 59*time.Minute || idemTTL > time.Hour {
		t.Errorf("idempotency key PTTL = %s, want about the 1h window", idemTTL)
	}

	second := newJob(2)
	second.IdempotencyKey = "k1"
	second.Payload = first.Payload
	other := newJob(3)
	other.IdempotencyKey = "k2"
	out := f.create(t, second, other)
	if !out[0].Existing {
		t.Error("second Create with the same key: Existing = false")
	}
	if diff := cmp.Diff(first, out[0].Job); diff != "" {
		t.Errorf("second Create names (-first job +got):\n%s", diff)
	}
	if out[1].Existing || out[1].Job.ID != other.ID {
		t.Errorf("a job with another key in the same batch: %+v, want it created", out[1])
	}
	if _, err := f.st.Get(ctx(t), second.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of the duplicate = %v, want ErrNotFound (it must not be written)", err)
	}

	// Two jobs with one key in one batch: the first is created.
	a, b := newJob(4), newJob(4)
	a.IdempotencyKey, b.IdempotencyKey = "k3", "k3"
	out = f.create(t, a, b)
	if out[0].Existing || !out[1].Existing || out[1].Job.ID != a.ID {
		t.Errorf("one key twice in a batch: got (%v, %s), (%v, %s); want the first created, the second naming it",
			out[0].Existing, out[0].Job.ID, out[1].Existing, out[1].Job.ID)
	}
}

// A key whose job's record is gone (expired after its retention) no longer
// holds: the next Create with it makes a new job and takes the key.
func TestCreateIdempotencyAfterRecordExpired(t *testing.T) {
	t.Parallel()
	f := setup(t)
	old := newJob(1)
	old.IdempotencyKey = "k"
	f.create(t, old)
	if err := f.rdb.Del(ctx(t), f.ns.JobKey(old.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	fresh := newJob(2)
	fresh.IdempotencyKey = "k"
	out := f.create(t, fresh)
	if out[0].Existing || out[0].Job.ID != fresh.ID {
		t.Errorf("Create with the key of an expired job: %+v, want the new job created", out[0])
	}
	if id, _ := f.rdb.Get(ctx(t), f.ns.IdempotencyKey("", "k")).Result(); id != fresh.ID {
		t.Errorf("idempotency key names %q, want the new job %s", id, fresh.ID)
	}
	f.get(t, fresh.ID)
}

func TestCreateIdempotencyConcurrent(t *testing.T) {
	t.Parallel()
	f := setup(t)
	const n = 20
	in := make([]*jobs.Job, n)
	for i := range in {
		in[i] = newJob(0) // the same submission, sent n times at once
		in[i].IdempotencyKey = "race"
	}
	var (
		wg  sync.WaitGroup
		out = make([]store.Created, n)
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			res, err := f.st.Create(context.Background(), in[i:i+1])
			if err != nil || res[0].Err != nil {
				t.Errorf("Create %d: %v, %v", i, err, res)
				return
			}
			out[i] = res[0]
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	var created []string
	for _, c := range out {
		if !c.Existing {
			created = append(created, c.Job.ID)
		}
	}
	if len(created) != 1 {
		t.Fatalf("%d jobs created for one key, want 1: %v", len(created), created)
	}
	for i, c := range out {
		if c.Job.ID != created[0] {
			t.Errorf("Create %d names job %s, want %s", i, c.Job.ID, created[0])
		}
	}
	keys, err := f.rdb.Keys(ctx(t), f.ns.JobKey("*")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{f.ns.JobKey(created[0])}, keys); diff != "" {
		t.Errorf("job records (-want +got):\n%s", diff)
	}
}

func TestDiscard(t *testing.T) {
	t.Parallel()
	f := setup(t)
	j := newJob(1)
	j.IdempotencyKey = "k"
	plain := newJob(2)
	f.create(t, j, plain)
	if err := f.st.Discard(ctx(t), []*jobs.Job{j, plain}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{j.ID, plain.ID} {
		if _, err := f.st.Get(ctx(t), id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get after Discard = %v, want ErrNotFound", err)
		}
	}
	if n, _ := f.rdb.Exists(ctx(t), f.ns.IdempotencyKey("", "k")).Result(); n != 0 {
		t.Error("Discard left the idempotency key")
	}

	// The key is free: a later Create with it creates anew.
	again := newJob(3)
	again.IdempotencyKey = "k"
	if out := f.create(t, again); out[0].Existing || out[0].Job.ID != again.ID {
		t.Errorf("Create after Discard: %+v, want a new job", out[0])
	}

	// Discarding a job whose key names another job leaves the key alone.
	stranger := newJob(4)
	stranger.IdempotencyKey = "k"
	if err := f.st.Discard(ctx(t), []*jobs.Job{stranger}); err != nil {
		t.Fatal(err)
	}
	if id, err := f.rdb.Get(ctx(t), f.ns.IdempotencyKey("", "k")).Result(); err != nil || id != again.ID {
		t.Errorf("idempotency key = %q, %v after discarding another job; want %s", id, err, again.ID)
	}
	f.get(t, again.ID)

	if err := f.st.Discard(ctx(t), nil); err != nil {
		t.Errorf("Discard(nil) = %v", err)
	}
}

func TestDiscardKeepsJobAWorkerTook(t *testing.T) {
	t.Parallel()
	f := setup(t)
	j := newJob(1)
	j.IdempotencyKey = "taken"
	f.create(t, j)
	f.start(t, j.ID)
	if err := f.st.Discard(ctx(t), []*jobs.Job{j}); err != nil {
		t.Fatal(err)
	}
	if got := f.get(t, j.ID); got.Status != jobs.StatusRunning {
		t.Errorf("status after Discard of a running job = %s, want running", got.Status)
	}
	if id, _ := f.rdb.Get(ctx(t), f.ns.IdempotencyKey("", "taken")).Result(); id != j.ID {
		t.Errorf("idempotency key = %q after Discard of a running job, want %s", id, j.ID)
	}
}

func TestStart(t *testing.T) {
	t.Parallel()
	f := setup(t)
	if got := f.start(t, jobs.NewID()); !got.Missing {
		t.Errorf("Start of a missing job = %+v, want Missing", got)
	}

	j := newJob(1)
	f.create(t, j)
	now := time.Now().UTC().Truncate(time.Millisecond)
	got, err := f.st.Start(ctx(t), j.ID, "w-a", -1, "token-"+jobs.NewID(), now)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(store.Started{Status: jobs.StatusRunning, Attempt: 1, Due: j.CreatedAt}, got); diff != "" {
		t.Errorf("first Start (-want +got):\n%s", diff)
	}
	rec := f.get(t, j.ID)
	if rec.Status != jobs.StatusRunning || rec.Attempt != 1 || rec.Worker != "w-a" || rec.StartedAt == nil || !rec.StartedAt.Equal(now) {
		t.Errorf("record after Start: status %s attempt %d worker %q started %v", rec.Status, rec.Attempt, rec.Worker, rec.StartedAt)
	}

	if err := f.st.Progress(ctx(t), j.ID, jobs.Progress{Percent: 40}); err != nil {
		t.Fatal(err)
	}
	due := now.Add(500 * time.Millisecond)
	f.finish(t, j.ID, store.Outcome{Status: jobs.StatusRetrying, Error: &jobs.Error{Code: "handler", Message: "x", Retryable: true}, Next: due})
	later := now.Add(time.Second)
	got, err = f.st.Start(ctx(t), j.ID, "w-b", -1, "token-"+jobs.NewID(), later)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(store.Started{Status: jobs.StatusRunning, Attempt: 2, Due: due}, got); diff != "" {
		t.Errorf("second Start (-want +got):\n%s", diff)
	}
	rec = f.get(t, j.ID)
	if rec.Attempt != 2 || rec.Worker != "w-b" || !rec.StartedAt.Equal(later) || rec.Progress != nil {
		t.Errorf("record after second Start: attempt %d worker %q started %v progress %v; want 2, w-b, %v, none",
			rec.Attempt, rec.Worker, rec.StartedAt, rec.Progress, later)
	}
}

func TestStartTerminal(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, status := range []jobs.Status{jobs.StatusSucceeded, jobs.StatusFailed, jobs.StatusCanceled} {
		j := newJob(1)
		f.create(t, j)
		f.start(t, j.ID)
		f.finish(t, j.ID, store.Outcome{Status: status, Result: json.RawMessage(`{"ok":true}`)})
		before := f.raw(t, j.ID)

		got := f.start(t, j.ID)
		if diff := cmp.Diff(store.Started{Status: status, Attempt: 1}, got); diff != "" {
			t.Errorf("Start of a %s job (-want +got):\n%s", status, diff)
		}
		if diff := cmp.Diff(before, f.raw(t, j.ID)); diff != "" {
			t.Errorf("Start changed a %s record (-before +after):\n%s", status, diff)
		}
	}
}

func TestFinishSucceeded(t *testing.T) {
	t.Parallel()
	f := setup(t)
	j := newJob(1)
	f.create(t, j)
	f.start(t, j.ID)

	sub := f.rdb.Subscribe(ctx(t), f.ns.DoneChannel(j.ID))
	defer sub.Close()
	if _, err := sub.Receive(ctx(t)); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}

	finished := time.Now().UTC().Truncate(time.Millisecond)
	result := json.RawMessage(`{"thumbnail":"s3://b/k.png","bytes":1234}`)
	if err := f.st.Finish(ctx(t), j.ID, store.Outcome{Status: jobs.StatusSucceeded, Result: result}, finished); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.ReceiveMessage(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := "succeeded"; msg.Payload != want {
		t.Errorf("done channel said %q, want %q", msg.Payload, want)
	}

	got := f.get(t, j.ID)
	if got.Status != jobs.StatusSucceeded || string(got.Result) != string(result) || got.FinishedAt == nil || !got.FinishedAt.Equal(finished) ||
		got.Error != nil {
		t.Errorf("record after success: status %s result %s finished %v error %v", got.Status, got.Result, got.FinishedAt, got.Error)
	}
	if got.Progress != nil {
		t.Errorf("progress = %+v after success without progress, want none", got.Progress)
	}
	if d := f.pttl(t, f.ns.JobKey(j.ID)); d <= retention-time.Minute || d > retention {
		t.Errorf("PTTL after success = %s, want about the %s retention", d, retention)
	}
}

func TestFinishSucceededAfterProgress(t *testing.T) {
	t.Parallel()
	f := setup(t)
	j := newJob(1)
	f.create(t, j)
	f.start(t, j.ID)
	if err := f.st.Progress(ctx(t), j.ID, jobs.Progress{Percent: 60, Message: "resizing"}); err != nil {
		t.Fatal(err)
	}
	f.finish(t, j.ID, store.Outcome{Status: jobs.StatusSucceeded, Result: json.RawMessage(`1`)})
	if diff := cmp.Diff(&jobs.Progress{Percent: 100}, f.get(t, j.ID).Progress); diff != "" {
		t.Errorf("progress after success (-want +got):\n%s", diff)
	}
}

func TestFinishFailed(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, status := range []jobs.Status{jobs.StatusFailed, jobs.StatusCanceled} {
		j := newJob(1)
		f.create(t, j)
		f.start(t, j.ID)
		if err := f.st.Progress(ctx(t), j.ID, jobs.Progress{Percent: 30}); err != nil {
			t.Fatal(err)
		}
		e := &jobs.Error{Code: "bad_gateway", Message: "upstream said 502 \"oops\"", Retryable: false}
		f.finish(t, j.ID, store.Outcome{Status: status, Error: e})
		got := f.get(t, j.ID)
		if got.Status != status || got.Result != nil || got.FinishedAt == nil {
			t.Errorf("%s: record status %s result %s finished %v", status, got.Status, got.Result, got.FinishedAt)
		}
		if diff := cmp.Diff(e, got.Error); diff != "" {
			t.Errorf("%s: error (-want +got):\n%s", status, diff)
		}
		if diff := cmp.Diff(&jobs.Progress{Percent: 30}, got.Progress); diff != "" {
			t.Errorf("%s: progress (-want +got):\n%s", status, diff)
		}
		if d := f.pttl(t, f.ns.JobKey(j.ID)); d <= retention-time.Minute || d > retention {
			t.Errorf("%s: PTTL = %s, want about %s", status, d, retention)
		}
	}
}

func TestFinishRetrying(t *testing.T) {
	t.Parallel()
	f := setup(t)
	j := newJob(1)
	f.create(t, j)
	f.start(t, j.ID)
	e := &jobs.Error{Code: "timeout", Message: "deadline", Retryable: true}
	f.finish(t, j.ID, store.Outcome{Status: jobs.StatusRetrying, Error: e})
	got := f.get(t, j.ID)
	if got.Status != jobs.StatusRetrying || got.FinishedAt != nil {
		t.Errorf("after retrying: status %s finished %v; want retrying, not finished", got.Status, got.FinishedAt)
	}
	if diff := cmp.Diff(e, got.Error); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
	// Kept the retention after the retry is due (here: at once).
	if d := f.pttl(t, f.ns.JobKey(j.ID)); d <= retention-time.Minute || d > retention {
		t.Errorf("PTTL of a retrying job = %s, want about the %s retention", d, retention)
	}
	// The next attempt succeeds; the error of the last failure goes.
	f.start(t, j.ID)
	f.finish(t, j.ID, store.Outcome{Status: jobs.StatusSucceeded, Result: json.RawMessage(`"ok"`)})
	if got := f.get(t, j.ID); got.Error != nil || got.Attempt != 2 {
		t.Errorf("after success: error %+v attempt %d; want no error, attempt 2", got.Error, got.Attempt)
	}
}

func TestFinishMissing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	err := f.st.Finish(ctx(t), jobs.NewID(), store.Outcome{Status: jobs.StatusSucceeded}, time.Now())
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Finish of a missing job = %v, want ErrNotFound", err)
	}
	if keys, _ := f.rdb.Keys(ctx(t), f.ns.KeyPrefix()+"*").Result(); len(keys) != 0 {
		t.Errorf("Finish of a missing job wrote %v", keys)
	}
}

// A terminal job never changes again: no outcome that follows is recorded,
// and each is refused with ErrTerminal.
func TestFinishAfterTerminal(t *testing.T) {
	t.Parallel()
	f := setup(t)
	terminal := []jobs.Status{jobs.StatusSucceeded, jobs.StatusFailed, jobs.StatusCanceled}
	all := []jobs.Status{
		jobs.StatusScheduled, jobs.StatusQueued, jobs.StatusRunning, jobs.StatusRetrying,
		jobs.StatusSucceeded, jobs.StatusFailed, jobs.StatusCanceled,
	}
	for _, from := range terminal {
		for _, to := range all {
			if to == from {
				continue // TestFinishRepeatsTerminalOutcome
			}
			t.Run(fmt.Sprintf("%s to %s", from, to), func(t *testing.T) {
				t.Parallel()
				f.finishAfterTerminal(t, from, to)
			})
		}
	}
}

// A second outcome equal to the recorded one is refused too: the caller did
// not record it (the first did), and must learn so, as for any other status.
func TestFinishRepeatsTerminalOutcome(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, status := range []jobs.Status{jobs.StatusSucceeded, jobs.StatusFailed, jobs.StatusCanceled} {
		t.Run(string(status), func(t *testing.T) {
			t.Parallel()
			f.finishAfterTerminal(t, status, status)
		})
	}
}

// finishAfterTerminal finishes a job as from, then as to, and checks that
// the second Finish returned ErrTerminal and changed nothing.
func (f *fixture) finishAfterTerminal(t *testing.T, from, to jobs.Status) {
	t.Helper()
	j := newJob(1)
	f.create(t, j)
	f.start(t, j.ID)
	f.finish(t, j.ID, outcome(from, "first"))
	before := f.raw(t, j.ID)
	ttl := f.pttl(t, f.ns.JobKey(j.ID))

	err := f.st.Finish(ctx(t), j.ID, outcome(to, "second"), time.Now().Add(time.Hour))
	if !errors.Is(err, store.ErrTerminal) {
		t.Errorf("Finish(%s) of a %s job = %v, want ErrTerminal", to, from, err)
	}
	if diff := cmp.Diff(before, f.raw(t, j.ID)); diff != "" {
		t.Errorf("Finish(%s) changed a %s record (-before +after):\n%s", to, from, diff)
	}
	// The expiry was not pushed back either.
	if after := f.pttl(t, f.ns.JobKey(j.ID)); after > ttl {
		t.Errorf("PTTL went from %s to %s", ttl, after)
	}
}

// outcome returns what a worker would record for status.
func outcome(status jobs.Status, word string) store.Outcome {
	if status == jobs.StatusSucceeded {
		return store.Outcome{Status: status, Result: json.RawMessage(strconv.Quote(word))}
	}
	return store.Outcome{Status: status, Error: &jobs.Error{Code: word, Message: word, Retryable: !status.Terminal()}}
}

func TestProgress(t *testing.T) {
	t.Parallel()
	f := setup(t)
	j := newJob(1)
	f.create(t, j)
	p := jobs.Progress{Percent: 10, Message: "queued"}

	// Not running yet: nothing recorded.
	if err := f.st.Progress(ctx(t), j.ID, p); err != nil {
		t.Fatal(err)
	}
	if got := f.get(t, j.ID).Progress; got != nil {
		t.Errorf("progress of a queued job = %+v, want none", got)
	}

	f.start(t, j.ID)
	for _, want := range []jobs.Progress{{Percent: 20, Message: "a"}, {Percent: 70}} {
		if err := f.st.Progress(ctx(t), j.ID, want); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(&want, f.get(t, j.ID).Progress); diff != "" {
			t.Errorf("progress while running (-want +got):\n%s", diff)
		}
	}

	f.finish(t, j.ID, store.Outcome{Status: jobs.StatusFailed, Error: &jobs.Error{Code: "handler"}})
	if err := f.st.Progress(ctx(t), j.ID, jobs.Progress{Percent: 99}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&jobs.Progress{Percent: 70}, f.get(t, j.ID).Progress); diff != "" {
		t.Errorf("progress after the job failed (-want +got):\n%s", diff)
	}

	// A missing job: nothing is written.
	missing := jobs.NewID()
	if err := f.st.Progress(ctx(t), missing, p); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.rdb.Exists(ctx(t), f.ns.JobKey(missing)).Result(); n != 0 {
		t.Error("Progress of a missing job created a record")
	}
}
