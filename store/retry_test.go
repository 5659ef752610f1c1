package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// published records the jobs a Retry's publish was given, and fails while
// fail is set.
type published struct {
	mu   sync.Mutex
	jobs []*jobs.Job
	fail error
}

func (p *published) publish(_ context.Context, j *jobs.Job) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.jobs = append(p.jobs, j)
	return p.fail
}

func (p *published) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.jobs)
}

// ended makes a job that ran once and ended as status (failed or
// canceled), with an error, progress and an artifact note.
func (f *fixture) ended(t *testing.T, status jobs.Status) *jobs.Job {
	t.Helper()
	j := newJob(1)
	f.create(t, j)
	f.start(t, j.ID)
	if err := f.st.Progress(ctx(t), j.ID, jobs.Progress{Percent: 40}); err != nil {
		t.Fatal(err)
	}
	if err := f.st.PutArtifact(ctx(t), j.ID, jobs.Artifact{ContentType: "text/plain", Data: []byte("partial")}); err != nil {
		t.Fatal(err)
	}
	f.finish(t, j.ID, store.Outcome{Status: status, Error: &jobs.Error{Code: "handler", Message: "downstream is down"}})
	return j
}

// inSet reports whether id is a member of the sorted set key.
func (f *fixture) inSet(t *testing.T, key, id string) bool {
	t.Helper()
	_, err := f.rdb.ZScore(ctx(t), key, id).Result()
	return err == nil
}

func TestRetryFailedOrCanceled(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, status := range []jobs.Status{jobs.StatusFailed, jobs.StatusCanceled} {
		j := f.ended(t, status)
		// Keep less than the retention, so the retry's expiry shows.
		if err := f.rdb.PExpire(ctx(t), f.ns.JobKey(j.ID), time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		var p published
		res, err := f.st.Retry(ctx(t), j.ID, "", p.publish)
		if err != nil {
			t.Fatalf("%s: Retry: %v", status, err)
		}
		if res.Was != status || res.Repeated || res.Job == nil {
			t.Errorf("%s: Retried = %+v", status, res)
		}
		got := f.get(t, j.ID)
		if got.Status != jobs.StatusQueued || got.Attempt != 0 || got.Error != nil || got.Result != nil || got.Progress != nil ||
			got.Worker != "" || got.StartedAt != nil || got.FinishedAt != nil || got.ScheduledAt != nil || got.Artifact != nil {
			t.Errorf("%s: record after retry: %+v", status, got)
		}
		if got.Payload == nil || string(got.Payload) != string(j.Payload) || got.MaxAttempts != j.MaxAttempts || got.Type != j.Type {
			t.Errorf("%s: the job's request changed: %+v", status, got)
		}
		if p.count() != 1 || p.jobs[0].ID != j.ID || p.jobs[0].Attempt != 0 || p.jobs[0].Status != jobs.StatusQueued {
			t.Errorf("%s: published %+v, want the queued job once, attempt 0", status, p.jobs)
		}
		if d := f.pttl(t, f.ns.JobKey(j.ID)); d <= retention-time.Minute || d > retention {
			t.Errorf("%s: PTTL = %s, want about the %s retention", status, d, retention)
		}
		if !f.inSet(t, f.ns.WaitingKey(pool), j.ID) {
			t.Errorf("%s: not in the pool's index of waiting jobs", status)
		}
		lists := f.ns.ListKey()
		if f.inSet(t, lists+jobs.ListOfStatus(pool, status), j.ID) || !f.inSet(t, lists+jobs.ListOfStatus(pool, jobs.StatusQueued), j.ID) {
			t.Errorf("%s: not moved from the list of %s jobs to that of queued ones", status, status)
		}
		// The next attempt is attempt 1 again, and the job can succeed.
		if s := f.start(t, j.ID); s.Status != jobs.StatusRunning || s.Attempt != 1 {
			t.Errorf("%s: start after retry: %+v, want running attempt 1", status, s)
		}
		f.finish(t, j.ID, store.Outcome{Status: jobs.StatusSucceeded})
		if got := f.get(t, j.ID); got.Status != jobs.StatusSucceeded || got.Error != nil {
			t.Errorf("%s: after the new run: %s %+v", status, got.Status, got.Error)
		}
	}
}

func TestRetryRefusesJobsThatAreNotFailedOrCanceled(t *testing.T) {
	t.Parallel()
	f := setup(t)
	queued := newJob(1)
	scheduled := newJob(2)
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	scheduled.Status, scheduled.ScheduledAt = jobs.StatusScheduled, &at
	running, retrying, succeeded := newJob(3), newJob(4), newJob(5)
	f.create(t, queued, scheduled, running, retrying, succeeded)
	f.start(t, running.ID)
	f.start(t, retrying.ID)
	f.finish(t, retrying.ID, store.Outcome{Status: jobs.StatusRetrying, Error: &jobs.Error{Code: "handler", Message: "x", Retryable: true}, Next: time.Now().Add(time.Minute)})
	f.start(t, succeeded.ID)
	f.finish(t, succeeded.ID, store.Outcome{Status: jobs.StatusSucceeded})
	for _, j := range []*jobs.Job{queued, scheduled, running, retrying, succeeded} {
		before := f.raw(t, j.ID)
		var p published
		res, err := f.st.Retry(ctx(t), j.ID, "", p.publish)
		if !errors.Is(err, store.ErrNotRetryable) {
			t.Errorf("%s job: err %v, want ErrNotRetryable", before["status"], err)
		}
		if string(res.Was) != before["status"] {
			t.Errorf("%s job: Was = %q", before["status"], res.Was)
		}
		if p.count() != 0 {
			t.Errorf("%s job: published", before["status"])
		}
		if diff := cmp.Diff(before, f.raw(t, j.ID)); diff != "" {
			t.Errorf("%s job: record changed (-before +after):\n%s", before["status"], diff)
		}
	}
	var p published
	if _, err := f.st.Retry(ctx(t), jobs.NewID(), "", p.publish); !errors.Is(err, store.ErrNotFound) || p.count() != 0 {
		t.Errorf("unknown job: %v, %d published; want ErrNotFound, none", err, p.count())
	}
}

// A retry whose message cannot be published leaves the record as it was:
// fields, expiry, index of waiting jobs and lists; and whoever began to
// wait for the job hears it ended.
func TestRetryPublishFailsChangesNothing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	j := f.ended(t, jobs.StatusFailed)
	before := f.raw(t, j.ID)
	ttl := f.pttl(t, f.ns.JobKey(j.ID))

	sub := f.rdb.Subscribe(ctx(t), f.ns.DoneChannel(j.ID))
	defer sub.Close()
	if _, err := sub.Receive(ctx(t)); err != nil {
		t.Fatal(err)
	}
	broken := errors.New("broker gone")
	p := published{fail: broken}
	if _, err := f.st.Retry(ctx(t), j.ID, "", p.publish); !errors.Is(err, broken) {
		t.Fatalf("Retry = %v, want the publish error", err)
	}
	if diff := cmp.Diff(before, f.raw(t, j.ID)); diff != "" {
		t.Errorf("record after a failed retry (-before +after):\n%s", diff)
	}
	if d := f.pttl(t, f.ns.JobKey(j.ID)); d > ttl || d < ttl-time.Minute {
		t.Errorf("PTTL = %s, want about %s as before", d, ttl)
	}
	if f.inSet(t, f.ns.WaitingKey(pool), j.ID) {
		t.Error("left in the index of waiting jobs")
	}
	lists := f.ns.ListKey()
	if !f.inSet(t, lists+jobs.ListOfStatus(pool, jobs.StatusFailed), j.ID) || f.inSet(t, lists+jobs.ListOfStatus(pool, jobs.StatusQueued), j.ID) {
		t.Error("not back in the list of failed jobs")
	}
	msg, err := sub.ReceiveMessage(ctx(t))
	if err != nil || msg.Payload != "failed" {
		t.Errorf("done channel: %v %v, want failed", msg, err)
	}
	// And a later retry, with the broker back, goes through.
	p.fail = nil
	if _, err := f.st.Retry(ctx(t), j.ID, "", p.publish); err != nil || f.get(t, j.ID).Status != jobs.StatusQueued {
		t.Errorf("retry after the broker came back: %v", err)
	}
}

// A worker that took the job although its publish was not confirmed makes
// the retry real: the undo leaves the running job alone.
func TestRetryUndoKeepsJobAWorkerTook(t *testing.T) {
	t.Parallel()
	f := setup(t)
	j := f.ended(t, jobs.StatusCanceled)
	_, err := f.st.Retry(ctx(t), j.ID, "", func(_ context.Context, j *jobs.Job) error {
		f.start(t, j.ID)
		return errors.New("confirm lost")
	})
	if err == nil {
		t.Fatal("Retry succeeded")
	}
	if got := f.get(t, j.ID); got.Status != jobs.StatusRunning || got.Attempt != 1 {
		t.Errorf("record: %s attempt %d, want running attempt 1", got.Status, got.Attempt)
	}
}

// The same retry asked twice (its answer lost) changes the job once; it
// publishes again only while the job has not started.
func TestRetryRepeatedToken(t *testing.T) {
	t.Parallel()
	f := setup(t)
	j := f.ended(t, jobs.StatusFailed)
	var p published
	if _, err := f.st.Retry(ctx(t), j.ID, "tok-1", p.publish); err != nil {
		t.Fatal(err)
	}
	res, err := f.st.Retry(ctx(t), j.ID, "tok-1", p.publish)
	if err != nil || !res.Repeated || res.Job.Status != jobs.StatusQueued {
		t.Fatalf("repeat: %+v %v", res, err)
	}
	if p.count() != 2 {
		t.Errorf("published %d times, want 2 (the repeat publishes while queued)", p.count())
	}
	f.start(t, j.ID)
	res, err = f.st.Retry(ctx(t), j.ID, "tok-1", p.publish)
	if err != nil || !res.Repeated || res.Job.Status != jobs.StatusRunning || p.count() != 2 {
		t.Errorf("repeat while running: %+v %v, %d published; want the running job, nothing published", res, err, p.count())
	}
	// A new token on the running job is refused.
	if _, err := f.st.Retry(ctx(t), j.ID, "tok-2", p.publish); !errors.Is(err, store.ErrNotRetryable) {
		t.Errorf("another retry while running: %v", err)
	}
	// A publish failure on a repeat takes nothing back: the first call's
	// message may be on its way.
	k := f.ended(t, jobs.StatusFailed)
	if _, err := f.st.Retry(ctx(t), k.ID, "tok-3", p.publish); err != nil {
		t.Fatal(err)
	}
	p.fail = errors.New("broker gone")
	if _, err := f.st.Retry(ctx(t), k.ID, "tok-3", p.publish); err == nil {
		t.Error("repeat whose publish failed: no error")
	}
	if got := f.get(t, k.ID); got.Status != jobs.StatusQueued {
		t.Errorf("after a repeat whose publish failed: %s, want queued", got.Status)
	}
}

// Of many retries at once, one changes the job; the rest are refused.
func TestRetryConcurrent(t *testing.T) {
	t.Parallel()
	f := setup(t)
	j := f.ended(t, jobs.StatusFailed)
	var (
		p       published
		ok, no  atomic.Int32
		wg      sync.WaitGroup
		unknown atomic.Value
	)
	for range 16 {
		wg.Go(func() {
			_, err := f.st.Retry(context.Background(), j.ID, "", p.publish)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrNotRetryable):
				no.Add(1)
			default:
				unknown.Store(err)
			}
		})
	}
	wg.Wait()
	if err := unknown.Load(); err != nil {
		t.Fatal(err)
	}
	if ok.Load() != 1 || no.Load() != 15 || p.count() != 1 {
		t.Errorf("%d retried, %d refused, %d published; want 1, 15, 1", ok.Load(), no.Load(), p.count())
	}
}

// A retry marks the history: the attempts before it, a "retried" mark at
// the retry, and the attempts after it counted from 1 again.
func TestRetryMarksTheAttempts(t *testing.T) {
	t.Parallel()
	f := setup(t)
	j := newJob(1)
	f.create(t, j)
	now := time.Now()
	if _, err := f.st.Start(ctx(t), j.ID, "w1", 0, "a", now); err != nil {
		t.Fatal(err)
	}
	if err := f.st.Finish(ctx(t), j.ID, store.Outcome{Status: jobs.StatusFailed, Error: &jobs.Error{Code: "x", Message: "boom"}}, now); err != nil {
		t.Fatal(err)
	}
	var p published
	if _, err := f.st.Retry(ctx(t), j.ID, "", p.publish); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.Start(ctx(t), j.ID, "w2", 0, "b", now); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range f.get(t, j.ID).Attempts {
		got = append(got, fmt.Sprintf("%d %s %s", a.Attempt, a.Outcome, a.Worker))
	}
	if want := []string{"1 failed w1", "0 retried ", "1 running w2"}; !slices.Equal(got, want) {
		t.Errorf("attempts %q, want %q", got, want)
	}
}
