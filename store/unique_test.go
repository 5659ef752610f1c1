package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// uniqJob is a job holding (or asking for) unique key key under mode w.
func uniqJob(key string, w jobs.UniqueWhile, window time.Duration) *jobs.Job {
	j := newJob(1)
	j.Unique = &jobs.Unique{Key: key, While: w, For: jobs.Duration(window)}
	return j
}

// createConfirmed creates j as the producer does once its publish is
// confirmed.
func (f *fixture) createConfirmed(t *testing.T, j *jobs.Job) store.Created {
	t.Helper()
	c := f.create(t, j)[0]
	if err := f.st.Confirm(ctx(t), []*jobs.Job{j}); err != nil {
		t.Fatal(err)
	}
	return c
}

// uniqStages brings a fresh holder to each status through the real start,
// finish and cancel scripts.
var uniqStages = []struct {
	status jobs.Status
	bring  func(t *testing.T, f *fixture, j *jobs.Job)
}{
	{jobs.StatusScheduled, nil}, // created scheduled (below)
	{jobs.StatusQueued, func(*testing.T, *fixture, *jobs.Job) {}},
	{jobs.StatusRunning, func(t *testing.T, f *fixture, j *jobs.Job) { f.start(t, j.ID) }},
	{jobs.StatusRetrying, func(t *testing.T, f *fixture, j *jobs.Job) {
		f.start(t, j.ID)
		f.finish(t, j.ID, store.Outcome{Status: jobs.StatusRetrying, Error: &jobs.Error{Code: "handler", Message: "again", Retryable: true}, Next: time.Now().Add(time.Hour)})
	}},
	{jobs.StatusSucceeded, func(t *testing.T, f *fixture, j *jobs.Job) {
		f.start(t, j.ID)
		f.finish(t, j.ID, outcome(jobs.StatusSucceeded, "done"))
	}},
	{jobs.StatusFailed, func(t *testing.T, f *fixture, j *jobs.Job) {
		f.start(t, j.ID)
		f.finish(t, j.ID, outcome(jobs.StatusFailed, "broken"))
	}},
	{jobs.StatusCanceled, func(t *testing.T, f *fixture, j *jobs.Job) {
		if _, err := f.st.Cancel(ctx(t), j.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
	}},
}

// Each mode holds its key in the statuses docs/unique.md gives, decided by
// the create script from the holder's record as the start, finish and
// cancel scripts left it; the script and jobs.UniqueWhile.Holds agree.
func TestUniqueWhileModes(t *testing.T) {
	t.Parallel()
	f := setup(t)
	want := map[jobs.UniqueWhile][]jobs.Status{
		jobs.UniqueQueued:    {jobs.StatusScheduled, jobs.StatusQueued},
		jobs.UniqueRunning:   {jobs.StatusScheduled, jobs.StatusQueued, jobs.StatusRunning},
		jobs.UniqueUntilDone: {jobs.StatusScheduled, jobs.StatusQueued, jobs.StatusRunning, jobs.StatusRetrying},
		jobs.UniqueAlways:    {jobs.StatusScheduled, jobs.StatusQueued, jobs.StatusRunning, jobs.StatusRetrying, jobs.StatusSucceeded, jobs.StatusFailed},
	}
	for _, w := range jobs.UniqueWhiles {
		held := map[jobs.Status]bool{}
		for _, s := range want[w] {
			held[s] = true
		}
		for _, stage := range uniqStages {
			key := fmt.Sprintf("uniq-%s-%s", w, stage.status)
			holder := uniqJob(key, w, time.Hour)
			if stage.bring == nil {
				at := holder.CreatedAt.Add(time.Hour)
				holder.Status, holder.ScheduledAt = jobs.StatusScheduled, &at
			}
			f.createConfirmed(t, holder)
			if stage.bring != nil {
				stage.bring(t, f, holder)
			}
			if got := f.get(t, holder.ID).Status; got != stage.status {
				t.Fatalf("%s: holder is %s, want %s", key, got, stage.status)
			}
			if w.Holds(stage.status) != held[stage.status] {
				t.Errorf("jobs.UniqueWhile(%s).Holds(%s) = %v, want %v", w, stage.status, !held[stage.status], held[stage.status])
			}

			// The second job asks with another mode: the holder's decides.
			dup := uniqJob(key, jobs.UniqueQueued, time.Minute)
			c := f.create(t, dup)[0]
			switch {
			case held[stage.status] && (!c.Existing || !c.Unique || c.Job.ID != holder.ID):
				t.Errorf("while %s, holder %s: %+v, want the holder %s", w, stage.status, c, holder.ID)
			case !held[stage.status] && (c.Existing || c.Job.ID != dup.ID):
				t.Errorf("while %s, holder %s: %+v, want a new job", w, stage.status, c)
			}
			owner, _ := f.rdb.Get(ctx(t), f.ns.UniqueKey(dup.Type, key)).Result()
			if wantOwner := map[bool]string{true: holder.ID, false: dup.ID}[held[stage.status]]; owner != wantOwner {
				t.Errorf("while %s, holder %s: the key names %s, want %s", w, stage.status, owner, wantOwner)
			}
			if held[stage.status] {
				if _, err := f.st.Get(ctx(t), dup.ID); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("while %s, holder %s: the duplicate was written (%v)", w, stage.status, err)
				}
			}
		}
	}
}

// The key is held at most its window from acceptance, whatever the
// holder's state: it expires in Redis, and the record says what it was.
// Another type's same key is another key.
func TestUniqueWindowAndRecord(t *testing.T) {
	t.Parallel()
	f := setup(t)
	holder := uniqJob("uniq-window", jobs.UniqueAlways, 90*time.Minute)
	f.createConfirmed(t, holder)
	key := f.ns.UniqueKey(holder.Type, "uniq-window")
	if d := f.pttl(t, key); d <= 90*time.Minute-slack || d > 90*time.Minute {
		t.Errorf("the unique key expires in %s, want about 1h30m", d)
	}
	got := f.get(t, holder.ID).Unique
	if got == nil || *got != (jobs.Unique{Key: "uniq-window", While: jobs.UniqueAlways, For: jobs.Duration(90 * time.Minute)}) {
		t.Errorf("the record's unique: %+v", got)
	}
	if _, ok := f.raw(t, holder.ID)["unique_pending"]; ok {
		t.Error("a confirmed job is still marked pending")
	}

	other := uniqJob("uniq-window", jobs.UniqueAlways, time.Hour)
	other.Type = "store.other"
	if c := f.create(t, other)[0]; c.Existing {
		t.Errorf("the same key of another type: %+v, want a new job", c)
	}

	// The window over (the key gone from Redis), the key is free whatever
	// the holder's state.
	if err := f.rdb.Del(ctx(t), key).Err(); err != nil {
		t.Fatal(err)
	}
	next := uniqJob("uniq-window", jobs.UniqueAlways, time.Hour)
	if c := f.createConfirmed(t, next); c.Existing {
		t.Errorf("after the window: %+v, want a new job", c)
	}
}

// A submission never stands on a job that is then discarded: one that
// finds the key held by a job whose publish is not yet confirmed waits for
// its fate; a discarded holder leaves the key free; a confirmed one is the
// duplicate. A holder left unconfirmed longer than the wait (its creator
// died; the rescuer publishes such a job) counts as accepted.
func TestUniquePendingHolder(t *testing.T) {
	t.Parallel()
	f := setup(t)
	holder := uniqJob("uniq-pending", jobs.UniqueRunning, time.Hour)
	f.create(t, holder) // not confirmed

	short, cancel := context.WithTimeout(ctx(t), 300*time.Millisecond)
	defer cancel()
	if res, err := f.st.Create(short, []*jobs.Job{uniqJob("uniq-pending", jobs.UniqueRunning, time.Hour)}); err == nil {
		t.Fatalf("a duplicate of an unconfirmed holder was answered at once: %+v", res)
	}

	if err := f.st.Discard(ctx(t), []*jobs.Job{holder}); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.rdb.Exists(ctx(t), f.ns.UniqueKey(holder.Type, "uniq-pending")).Result(); n != 0 {
		t.Error("the discarded holder's unique key stayed")
	}
	second := uniqJob("uniq-pending", jobs.UniqueRunning, time.Hour)
	if c := f.create(t, second)[0]; c.Existing {
		t.Fatalf("after the holder was discarded: %+v, want a new job", c)
	}

	// Confirmed while a duplicate waits: the duplicate gets it.
	got := make(chan store.Created, 1)
	go func() {
		res, err := f.st.Create(ctx(t), []*jobs.Job{uniqJob("uniq-pending", jobs.UniqueRunning, time.Hour)})
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		got <- res[0]
	}()
	if err := f.st.Confirm(ctx(t), []*jobs.Job{second}); err != nil {
		t.Fatal(err)
	}
	if c := <-got; !c.Existing || !c.Unique || c.Job.ID != second.ID {
		t.Errorf("after the holder was confirmed: %+v, want %s", c, second.ID)
	}

	// Unconfirmed for longer than the wait: accepted after all.
	stale := uniqJob("uniq-stale", jobs.UniqueRunning, time.Hour)
	stale.CreatedAt = time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	f.create(t, stale)
	if c := f.create(t, uniqJob("uniq-stale", jobs.UniqueRunning, time.Hour))[0]; !c.Existing || c.Job.ID != stale.ID {
		t.Errorf("a holder unconfirmed for a minute: %+v, want %s", c, stale.ID)
	}
}

// Two entries of one batch with the same key: the second is the first,
// without waiting for a confirm only the caller can give.
func TestUniqueInOneBatch(t *testing.T) {
	t.Parallel()
	f := setup(t)
	first, second := uniqJob("uniq-batch", jobs.UniqueUntilDone, time.Hour), uniqJob("uniq-batch", jobs.UniqueUntilDone, time.Hour)
	out := f.create(t, first, second)
	if out[0].Existing || !out[1].Existing || !out[1].Unique || out[1].Job.ID != first.ID {
		t.Errorf("one batch: %+v, %+v; want the first new and the second the first", out[0], out[1])
	}
}

// The idempotency key is checked first: a repeat of the submission that
// took the unique key is the job it created, whatever the unique key says.
// A duplicate by unique key does not take the idempotency key.
func TestUniqueWithIdempotencyKey(t *testing.T) {
	t.Parallel()
	f := setup(t)
	holder := uniqJob("uniq-idem", jobs.UniqueQueued, time.Hour)
	holder.IdempotencyKey = "uniq-order-1"
	f.createConfirmed(t, holder)
	f.start(t, holder.ID) // the unique key is free now

	again := uniqJob("uniq-idem", jobs.UniqueQueued, time.Hour)
	again.IdempotencyKey = "uniq-order-1"
	if c := f.create(t, again)[0]; !c.Existing || c.Unique || c.Job.ID != holder.ID {
		t.Errorf("a repeat: %+v, want the job its idempotency key names", c)
	}

	// Another request, held out by the unique key: its idempotency key
	// stays free.
	f.createConfirmed(t, uniqJob("uniq-idem-2", jobs.UniqueQueued, time.Hour))
	dup := uniqJob("uniq-idem-2", jobs.UniqueQueued, time.Hour)
	dup.IdempotencyKey = "uniq-order-2"
	if c := f.create(t, dup)[0]; !c.Existing || !c.Unique {
		t.Errorf("a duplicate by unique key: %+v", c)
	}
	if n, _ := f.rdb.Exists(ctx(t), f.ns.IdempotencyKey("", "uniq-order-2")).Result(); n != 0 {
		t.Error("a duplicate took its idempotency key")
	}
}
