package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// slack is how far a record's time to live may have run down between the
// script that set it and the test reading it.
const slack = time.Minute

// wantTTL fails the test unless the record of id expires in about want.
func (f *fixture) wantTTL(t *testing.T, when, id string, want time.Duration) {
	t.Helper()
	if d := f.pttl(t, f.ns.JobKey(id)); d <= want-slack || d > want {
		t.Errorf("%s: PTTL = %s, want about %s", when, d, want)
	}
}

// The attack: a job nobody ever runs (stuck queued, or delayed 13 years)
// kept its record for ever. Every record now expires, the retention after
// its job is due, and a record that expired leaves nothing behind that
// points at it: the indexes heal, a late message finds it missing, and the
// rescuer has nothing to publish.
func TestUnfinishedRecordsExpire(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.declare(t)
	const short = 300 * time.Millisecond
	st, err := store.New(store.Config{
		URL: testenv.RedisURL(), Namespace: f.ns, Retention: short,
		IdempotencyWindow: time.Hour, Logger: testenv.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })

	stuck := newJob(1)
	keyed := newJob(2)
	keyed.IdempotencyKey = "stuck"
	far := newJob(3)
	years := time.Now().Add(13 * 365 * 24 * time.Hour).UTC().Truncate(time.Millisecond)
	far.Status, far.ScheduledAt = jobs.StatusScheduled, &years
	out, err := st.Create(ctx(t), []*jobs.Job{stuck, keyed, far})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range out {
		if c.Err != nil {
			t.Fatal(c.Err)
		}
	}
	// Delayed 13 years: kept 13 years and the retention, but not for ever.
	if d := f.pttl(t, f.ns.JobKey(far.ID)); d < 0 || d > years.Sub(far.CreatedAt)+short {
		t.Errorf("PTTL of a job delayed 13 years = %s, want an expiry just after its run time", d)
	}

	// Nobody runs the queued ones: their records go after the retention.
	deadline := time.Now().Add(wait)
	for {
		n, err := f.rdb.Exists(ctx(t), f.ns.JobKey(stuck.ID), f.ns.JobKey(keyed.ID)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("records of queued jobs still there %s after a retention of %s", wait, short)
		}
		time.Sleep(50 * time.Millisecond) // Redis expires keys on its own clock: nothing to wait on
	}

	// Nothing points at them for ever: the rescuer's look and the
	// oldest-waiting reading drop their index entries and find nothing.
	found, err := st.Overdue(ctx(t), pool, time.Now(), 100)
	if err != nil || len(found) != 0 {
		t.Errorf("Overdue after the records expired = %v, %v; want none", found, err)
	}
	if age := f.oldest(t, st); age != 0 {
		t.Errorf("OldestWaiting after the records expired = %s, want 0", age)
	}
	if _, ok := f.index(t)[stuck.ID]; ok {
		t.Error("the index of waiting jobs still names an expired record")
	}
	// A late message of the job is not run.
	if got := f.start(t, stuck.ID); !got.Missing {
		t.Errorf("Start after the record expired = %+v, want Missing", got)
	}
	if n, _ := f.rdb.Exists(ctx(t), f.ns.JobKey(stuck.ID)).Result(); n != 0 {
		t.Error("Start of an expired job wrote a record")
	}
	// The idempotency key of the gone job is taken by a new one.
	again := newJob(2)
	again.IdempotencyKey = "stuck"
	if c := f.create(t, again); c[0].Existing || c[0].Job.ID != again.ID {
		t.Errorf("Create with the key of an expired job: %+v, want a new job", c[0])
	}
}

// Each script that moves an unfinished job on keeps its record until the
// retention after the job is next due, or after its attempt's deadline
// while it runs; a finished job keeps it the retention after its end.
func TestExpiryFollowsTheJob(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.declare(t)
	j := newJob(1) // timeout 90.25s
	timeout := j.Timeout.Std()
	due := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Millisecond)
	j.Status, j.ScheduledAt = jobs.StatusScheduled, &due
	f.create(t, j)
	f.wantTTL(t, "created, due in 2h", j.ID, 2*time.Hour+retention)

	now := time.Now()
	f.mustStart(t, j.ID, "w-1", now)
	f.wantTTL(t, "started", j.ID, timeout+retention)

	// A retry due in 3 hours.
	if err := f.st.Finish(ctx(t), j.ID, store.Outcome{Status: jobs.StatusRetrying, Attempt: 1,
		Error: &jobs.Error{Code: "x", Message: "x", Retryable: true}, Next: now.Add(3 * time.Hour)}, now); err != nil {
		t.Fatal(err)
	}
	f.wantTTL(t, "retrying, due in 3h", j.ID, 3*time.Hour+retention)

	// A second copy of a running attempt is parked: the record is kept at
	// least until the copy is back, and the retention after.
	if err := f.st.Lease(ctx(t), "w-live", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	f.mustStart(t, j.ID, "w-live", now)
	if err := f.rdb.PExpire(ctx(t), f.ns.JobKey(j.ID), time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	busy, err := f.st.Start(ctx(t), j.ID, "w-other", 1, "token-busy", now)
	if err != nil || !busy.Busy {
		t.Fatalf("second copy: %+v, %v; want busy", busy, err)
	}
	f.wantTTL(t, "a copy parked", j.ID, busy.Wait+retention)
	if err := f.st.Release(ctx(t), "w-live"); err != nil {
		t.Fatal(err)
	}

	// Interrupted by a shutdown: due again at once.
	if err := f.st.Finish(ctx(t), j.ID, store.Outcome{Status: jobs.StatusQueued, Attempt: 2, Restore: 1,
		Error: &jobs.Error{Code: "interrupted", Message: "x", Retryable: true}}, now); err != nil {
		t.Fatal(err)
	}
	f.wantTTL(t, "interrupted", j.ID, retention)

	// Rescued: published again now, so kept the retention from now; a
	// record whose expiry was further off keeps it.
	if err := f.rdb.PExpire(ctx(t), f.ns.JobKey(j.ID), time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := f.st.Rescue(ctx(t), pool, []store.Overdue{{ID: j.ID, Attempt: 1}}, false, now); err != nil || got[0] == nil {
		t.Fatalf("Rescue: %v, %v", got, err)
	}
	f.wantTTL(t, "rescued", j.ID, retention)
	if err := f.rdb.PExpire(ctx(t), f.ns.JobKey(j.ID), 5*retention).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.Rescue(ctx(t), pool, []store.Overdue{{ID: j.ID, Attempt: 1}}, false, now); err != nil {
		t.Fatal(err)
	}
	f.wantTTL(t, "rescued with a longer expiry", j.ID, 5*retention)

	// Failed for good, then replayed: queued again, due now.
	f.mustStart(t, j.ID, "w-2", now)
	f.finish(t, j.ID, store.Outcome{Status: jobs.StatusFailed, Error: &jobs.Error{Code: "x", Message: "x"}})
	f.wantTTL(t, "failed", j.ID, retention)
	if err := f.rdb.PExpire(ctx(t), f.ns.JobKey(j.ID), time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.st.Revive(ctx(t), f.get(t, j.ID)); err != nil || !ok {
		t.Fatalf("Revive: %v, %v", ok, err)
	}
	f.wantTTL(t, "replayed", j.ID, retention)

	// A replay of a job whose record expired writes it anew, expiring too.
	gone := newJob(2)
	f.create(t, gone)
	if err := f.rdb.Del(ctx(t), f.ns.JobKey(gone.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.st.Revive(ctx(t), gone); err != nil || !ok {
		t.Fatalf("Revive of an expired record: %v, %v", ok, err)
	}
	f.wantTTL(t, "replayed from its dead letter", gone.ID, retention)

	// A job without an idempotency key is created by plain commands: its
	// record expires as well.
	plain := newJob(3)
	f.create(t, plain)
	f.wantTTL(t, "created without a key", plain.ID, retention)
	keyed := newJob(4)
	keyed.IdempotencyKey = "k"
	f.create(t, keyed)
	f.wantTTL(t, "created with a key", keyed.ID, retention)
}

// A record that names no timeout is kept, while it runs, the retention after
// the longest timeout any job may have: the script cannot know the type's.
func TestExpiryOfARunningJobWithoutTimeout(t *testing.T) {
	t.Parallel()
	f := setup(t)
	j := newJob(1)
	j.Timeout = 0
	f.create(t, j)
	f.mustStart(t, j.ID, "w", time.Now())
	f.wantTTL(t, "started without a timeout", j.ID, jobs.MaxTimeout+retention)
}

// A record written before records expired (no expiry at all) gains one at
// its job's next change.
func TestRecordWithoutExpiryGainsOne(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.declare(t)
	j := newJob(1)
	f.create(t, j)
	if err := f.rdb.Persist(ctx(t), f.ns.JobKey(j.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.Rescue(ctx(t), pool, []store.Overdue{{ID: j.ID}}, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	f.wantTTL(t, "an old record rescued", j.ID, retention)
}

// Output bytes are kept only for a job that has a record: written to one
// that expired, they would make a record of their own that never expires.
func TestArtifactOfAnExpiredJob(t *testing.T) {
	t.Parallel()
	f := setup(t)
	id := jobs.NewID()
	err := f.st.PutArtifact(ctx(t), id, jobs.Artifact{ContentType: "image/png", Data: []byte("png")})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutArtifact of a job without a record = %v, want ErrNotFound", err)
	}
	if n, _ := f.rdb.Exists(ctx(t), f.ns.JobKey(id), f.ns.ArtifactKey(id)).Result(); n != 0 {
		t.Errorf("PutArtifact of a job without a record wrote %d keys", n)
	}

	j := newJob(1)
	f.create(t, j)
	if err := f.st.PutArtifact(ctx(t), j.ID, jobs.Artifact{ContentType: "image/png", Data: []byte("png")}); err != nil {
		t.Fatal(err)
	}
	if got := f.get(t, j.ID).Artifact; got == nil || got.Bytes != 3 {
		t.Errorf("artifact noted on the record = %+v, want 3 bytes", got)
	}
	if d := f.pttl(t, f.ns.ArtifactKey(j.ID)); d <= retention-slack || d > retention {
		t.Errorf("PTTL of the artifact = %s, want about %s", d, retention)
	}
}
