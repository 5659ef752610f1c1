package store_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// pool is the pool the jobs of these tests belong to: newJob's type is
// declared in it.
const pool = "storepool"

// declare puts newJob's type in pool, so the scripts can index its jobs.
func (f *fixture) declare(t *testing.T) {
	t.Helper()
	if err := f.st.DeclareTypes(ctx(t), []jobs.Type{{Name: "store.test", Pool: pool}}); err != nil {
		t.Fatal(err)
	}
}

// clocked returns a Store on f's namespace whose clock always reads now.
func (f *fixture) clocked(t *testing.T, now time.Time) *store.Store {
	t.Helper()
	st, err := store.New(store.Config{
		URL: testenv.RedisURL(), Namespace: f.ns, Retention: retention,
		IdempotencyWindow: time.Hour, Logger: testenv.Logger(t),
		Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// index returns pool's index of waiting jobs as Redis holds it: job id →
// score in Unix ms.
func (f *fixture) index(t *testing.T) map[string]int64 {
	t.Helper()
	zs, err := f.rdb.ZRangeWithScores(ctx(t), f.ns.WaitingKey(pool), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, z := range zs {
		out[z.Member.(string)] = int64(z.Score)
	}
	return out
}

// wantIndex fails the test unless pool's index holds exactly want.
func (f *fixture) wantIndex(t *testing.T, when string, want map[string]int64) {
	t.Helper()
	if diff := cmp.Diff(want, f.index(t)); diff != "" {
		t.Errorf("%s: index of waiting jobs (-want +got):\n%s", when, diff)
	}
}

func (f *fixture) oldest(t *testing.T, st *store.Store) time.Duration {
	t.Helper()
	d, err := st.OldestWaiting(ctx(t), pool)
	if err != nil {
		t.Fatalf("OldestWaiting: %v", err)
	}
	return d
}

func TestWaitingIndexCreate(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.declare(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	queued := newJob(1)
	queued.CreatedAt = now.Add(-time.Second)
	delayed := newJob(2)
	due := now.Add(time.Hour)
	delayed.Status, delayed.ScheduledAt = jobs.StatusScheduled, &due
	keyed := newJob(3)
	keyed.IdempotencyKey = "k"
	undeclared := newJob(4)
	undeclared.Type, undeclared.Pool = "other.type", ""
	f.create(t, queued, delayed, keyed, undeclared)
	want := map[string]int64{
		queued.ID:  queued.CreatedAt.UnixMilli(),
		delayed.ID: due.UnixMilli(),
		keyed.ID:   keyed.CreatedAt.UnixMilli(),
	}
	f.wantIndex(t, "after create", want)
	// The record names its pool; the scripts that follow find the index
	// through it.
	if got := f.raw(t, queued.ID)["pool"]; got != pool {
		t.Errorf("record's pool = %q, want %q", got, pool)
	}
	// A job without a pool (an API that does not name it) gets no index
	// and no field, and is created all the same.
	if h := f.raw(t, undeclared.ID); h["pool"] != "" || h["status"] != "queued" {
		t.Errorf("job of an undeclared type: pool %q status %q, want none, queued", h["pool"], h["status"])
	}
	if n, _ := f.rdb.Exists(ctx(t), f.ns.WaitingKey("")).Result(); n != 0 {
		t.Errorf("an index without a pool was written")
	}
	// A second submission with the same key names the first job and adds
	// nothing.
	again := newJob(3)
	again.IdempotencyKey = "k"
	if out := f.create(t, again); !out[0].Existing || out[0].Job.ID != keyed.ID {
		t.Fatalf("same key: %+v, want the earlier job", out[0])
	}
	f.wantIndex(t, "after a duplicate submission", want)
	// A job whose publish failed goes again.
	if err := f.st.Discard(ctx(t), []*jobs.Job{queued, keyed}); err != nil {
		t.Fatal(err)
	}
	delete(want, queued.ID)
	delete(want, keyed.ID)
	f.wantIndex(t, "after discard", want)
}

// A job is in the index while it waits for a worker, and only then: from
// creation to start, from a retry's due time to the next start.
func TestWaitingIndexLifecycle(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.declare(t)
	j := newJob(1)
	f.create(t, j)
	f.wantIndex(t, "created", map[string]int64{j.ID: j.CreatedAt.UnixMilli()})

	// A repeated start (the same delivery) leaves it out, as the first did.
	for range 2 {
		if _, err := f.st.Start(ctx(t), j.ID, "w", 0, "token-1", time.Now()); err != nil {
			t.Fatal(err)
		}
		f.wantIndex(t, "started", map[string]int64{})
	}

	next := time.Now().Add(3 * time.Second).Truncate(time.Millisecond)
	retry := store.Outcome{Status: jobs.StatusRetrying, Attempt: 1, Next: next,
		Error: &jobs.Error{Code: "handler", Message: "no", Retryable: true}}
	for range 2 { // the second is a repeat after a lost reply
		if err := f.st.Finish(ctx(t), j.ID, retry, time.Now()); err != nil {
			t.Fatal(err)
		}
		f.wantIndex(t, "retrying", map[string]int64{j.ID: next.UnixMilli()})
	}
	// The retried message's earlier copy is stale: it does not run, and
	// the job still waits for its retry.
	if s, err := f.st.Start(ctx(t), j.ID, "w", 0, "token-stale", time.Now()); err != nil || !s.Stale {
		t.Fatalf("start of the stale copy: %+v, %v", s, err)
	}
	f.wantIndex(t, "after a stale copy", map[string]int64{j.ID: next.UnixMilli()})

	if _, err := f.st.Start(ctx(t), j.ID, "w", 1, "token-2", time.Now()); err != nil {
		t.Fatal(err)
	}
	f.wantIndex(t, "second attempt", map[string]int64{})
	f.finish(t, j.ID, store.Outcome{Status: jobs.StatusSucceeded, Result: json.RawMessage(`1`)})
	f.wantIndex(t, "succeeded", map[string]int64{})
}

func TestWaitingIndexEnds(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.declare(t)
	now := time.Now()
	fail := &jobs.Error{Code: "handler", Message: "no"}
	for name, tt := range map[string]struct {
		start bool
		end   func(id string) error
	}{
		"failed": {start: true, end: func(id string) error {
			return f.st.Finish(ctx(t), id, store.Outcome{Status: jobs.StatusFailed, Error: fail}, now)
		}},
		// The intake fails a job whatever its state, knowing no attempt.
		"failed by the intake": {end: func(id string) error {
			return f.st.Finish(ctx(t), id, store.Outcome{Status: jobs.StatusFailed, Error: fail}, now)
		}},
		"canceled while queued": {end: func(id string) error {
			_, err := f.st.Cancel(ctx(t), id, now)
			return err
		}},
		"canceled while running": {start: true, end: func(id string) error {
			_, err := f.st.Cancel(ctx(t), id, now)
			return err
		}},
	} {
		t.Run(name, func(t *testing.T) {
			j := newJob(1)
			f.create(t, j)
			if tt.start {
				f.start(t, j.ID)
			}
			if err := tt.end(j.ID); err != nil {
				t.Fatal(err)
			}
			if _, ok := f.index(t)[j.ID]; ok {
				t.Errorf("job %s still indexed as waiting", j.ID)
			}
		})
	}
}

// An attempt interrupted by shutdown goes back to the queue: the job waits
// again, from then.
func TestWaitingIndexInterrupted(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.declare(t)
	j := newJob(1)
	f.create(t, j)
	f.start(t, j.ID)
	at := time.Now().Add(-time.Second).Truncate(time.Millisecond)
	err := f.st.Finish(ctx(t), j.ID, store.Outcome{Status: jobs.StatusQueued, Attempt: 1, Restore: 0,
		Error: &jobs.Error{Code: "interrupted", Message: "worker shut down during the attempt", Retryable: true}}, at)
	if err != nil {
		t.Fatal(err)
	}
	f.wantIndex(t, "interrupted", map[string]int64{j.ID: at.UnixMilli()})
}

// A replay puts a failed job back, due now; so does a replay of a job whose
// record expired, rewritten from its dead letter.
func TestWaitingIndexRevive(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.declare(t)
	now := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	st := f.clocked(t, now)
	failed, expired := newJob(1), newJob(2)
	f.create(t, failed, expired)
	for _, j := range []*jobs.Job{failed, expired} {
		f.start(t, j.ID)
		f.finish(t, j.ID, store.Outcome{Status: jobs.StatusFailed, Error: &jobs.Error{Code: "handler", Message: "no"}})
	}
	f.wantIndex(t, "failed", map[string]int64{})
	if err := f.rdb.Del(ctx(t), f.ns.JobKey(expired.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	for _, j := range []*jobs.Job{failed, expired} {
		if ok, err := st.Revive(ctx(t), j); err != nil || !ok {
			t.Fatalf("Revive %s = %v, %v; want true", j.ID, ok, err)
		}
	}
	want := map[string]int64{failed.ID: now.UnixMilli(), expired.ID: now.UnixMilli()}
	f.wantIndex(t, "revived", want)
	if got := f.raw(t, expired.ID)["pool"]; got != pool {
		t.Errorf("rewritten record's pool = %q, want %q", got, pool)
	}
	// A second replay of the same dead letter finds the job alive and
	// changes nothing.
	later := f.clocked(t, now.Add(time.Hour))
	if ok, err := later.Revive(ctx(t), failed); err != nil || ok {
		t.Fatalf("second Revive = %v, %v; want false", ok, err)
	}
	f.wantIndex(t, "revived twice", want)
	f.start(t, failed.ID)
	delete(want, failed.ID)
	f.wantIndex(t, "started after the replay", want)
}

func TestOldestWaiting(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.declare(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	st := f.clocked(t, now)
	if d := f.oldest(t, st); d != 0 {
		t.Errorf("OldestWaiting of an empty pool = %s, want 0", d)
	}

	oldest := newJob(1)
	oldest.CreatedAt = now.Add(-5 * time.Second)
	pastDue := newJob(2) // run_at already past when it was made
	at := now.Add(-2 * time.Second)
	pastDue.Status, pastDue.ScheduledAt = jobs.StatusScheduled, &at
	ahead := newJob(3)
	later := now.Add(time.Hour)
	ahead.Status, ahead.ScheduledAt = jobs.StatusScheduled, &later
	done, running := newJob(4), newJob(5)
	f.create(t, oldest, pastDue, ahead, done, running)
	f.start(t, done.ID)
	f.finish(t, done.ID, store.Outcome{Status: jobs.StatusSucceeded, Result: json.RawMessage(`1`)})
	f.start(t, running.ID)

	// Entries no script left behind, as a worker that does not keep the
	// index (or a record that expired) leaves them: older than every real
	// one.
	gone := jobs.NewID()
	stale := []redis.Z{
		{Member: gone, Score: float64(now.Add(-time.Minute).UnixMilli())},
		{Member: done.ID, Score: float64(now.Add(-50 * time.Second).UnixMilli())},
		{Member: running.ID, Score: float64(now.Add(-40 * time.Second).UnixMilli())},
	}
	if err := f.rdb.ZAdd(ctx(t), f.ns.WaitingKey(pool), stale...).Err(); err != nil {
		t.Fatal(err)
	}
	if d := f.oldest(t, st); d != 5*time.Second {
		t.Errorf("OldestWaiting = %s, want 5s", d)
	}
	want := map[string]int64{
		oldest.ID:  oldest.CreatedAt.UnixMilli(),
		pastDue.ID: at.UnixMilli(),
		ahead.ID:   later.UnixMilli(),
	}
	f.wantIndex(t, "after OldestWaiting", want)

	f.start(t, oldest.ID)
	if d := f.oldest(t, st); d != 2*time.Second {
		t.Errorf("OldestWaiting once the oldest started = %s, want 2s", d)
	}
	f.start(t, pastDue.ID)
	// Only a job whose run time is ahead is left: nothing waits yet.
	if d := f.oldest(t, st); d != 0 {
		t.Errorf("OldestWaiting with only a job not yet due = %s, want 0", d)
	}
	if d, err := f.st.OldestWaiting(ctx(t), "nopool"); err != nil || d != 0 {
		t.Errorf("OldestWaiting of an unknown pool = %s, %v; want 0", d, err)
	}
}

// The age is right even behind more stale entries than one script run
// examines, and a call with the real clock gives a plausible age.
func TestOldestWaitingBehindManyStale(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.declare(t)
	j := newJob(1)
	j.CreatedAt = time.Now().Add(-3 * time.Second).UTC().Truncate(time.Millisecond)
	f.create(t, j)
	var stale []redis.Z
	for i := range 250 {
		stale = append(stale, redis.Z{Member: fmt.Sprint("gone-", i), Score: float64(j.CreatedAt.Add(-time.Hour).UnixMilli() + int64(i))})
	}
	if err := f.rdb.ZAdd(ctx(t), f.ns.WaitingKey(pool), stale...).Err(); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	d := f.oldest(t, f.st)
	if low, high := 3*time.Second, 3*time.Second+time.Since(before)+time.Second; d < low || d > high {
		t.Errorf("OldestWaiting = %s, want from %s to %s", d, low, high)
	}
	f.wantIndex(t, "healed", map[string]int64{j.ID: j.CreatedAt.UnixMilli()})
}

func TestDeleteNamespaceRemovesIndexAndReplicas(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.declare(t)
	f.create(t, newJob(1))
	if err := f.st.PutReplicas(ctx(t), pool, store.Replicas{Current: 1, Desired: 2, Interval: time.Second}); err != nil {
		t.Fatal(err)
	}
	keys := []string{f.ns.WaitingKey(pool), f.ns.AutoscaleKey()}
	if n, _ := f.rdb.Exists(ctx(t), keys...).Result(); n != 2 {
		t.Fatalf("%d of %v exist before the delete, want both", n, keys)
	}
	if err := f.st.DeleteNamespace(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.rdb.Exists(ctx(t), keys...).Result(); n != 0 {
		t.Errorf("%d of %v left after DeleteNamespace", n, keys)
	}
}
