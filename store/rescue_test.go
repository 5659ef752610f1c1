package store_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// Two copies of one attempt run at most once while the attempt's worker
// lives: the second is busy, told to come back once the lease would lapse.
// Once the lease is gone the attempt was lost, and a copy runs it again as
// the next attempt.
func TestStartFencesCopiesOfARunningAttempt(t *testing.T) {
	t.Parallel()
	f := setup(t)
	j := newJob(1)
	f.create(t, j)
	now := time.Now()
	if err := f.st.Lease(ctx(t), "w-live", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	first, err := f.st.Start(ctx(t), j.ID, "w-live", 0, "token-1", now)
	if err != nil || first.Status != jobs.StatusRunning || first.Attempt != 1 {
		t.Fatalf("first copy: %+v, %v; want running attempt 1", first, err)
	}
	second, err := f.st.Start(ctx(t), j.ID, "w-other", 0, "token-2", now.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !second.Busy || second.Attempt != 1 || second.Wait < 9*time.Second || second.Wait > 11*time.Second {
		t.Errorf("second copy while the first's worker lives: %+v; want busy, attempt 1, wait about the lease's 10s + 1s", second)
	}
	if rec := f.get(t, j.ID); rec.Attempt != 1 || rec.Worker != "w-live" {
		t.Errorf("a busy copy changed the record: attempt %d worker %s", rec.Attempt, rec.Worker)
	}

	// The worker dies: its lease lapses (here: is deleted).
	if err := f.st.Release(ctx(t), "w-live"); err != nil {
		t.Fatal(err)
	}
	third, err := f.st.Start(ctx(t), j.ID, "w-other", 0, "token-3", now.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if third.Busy || third.Status != jobs.StatusRunning || third.Attempt != 2 {
		t.Errorf("copy after the worker's lease is gone: %+v; want running attempt 2 (the lost one counts)", third)
	}
	// And a copy of the first attempt is now stale.
	if late, _ := f.st.Start(ctx(t), j.ID, "w-x", 0, "token-4", now.Add(3*time.Second)); !late.Busy && !late.Stale {
		t.Errorf("copy of attempt 1 after attempt 2 started: %+v; want busy or stale", late)
	}
}

// A copy of an attempt that has run long waits longer before it is offered
// again (a tenth of the run, up to a minute), so an attempt that runs for
// hours is not asked after every few seconds.
func TestBusyWaitGrowsWithTheRun(t *testing.T) {
	t.Parallel()
	f := setup(t)
	j := newJob(1)
	f.create(t, j)
	if err := f.st.Lease(ctx(t), "w-long", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	f.mustStart(t, j.ID, "w-long", started)
	for _, tt := range []struct {
		ran      time.Duration
		min, max time.Duration
	}{
		{ran: 5 * time.Minute, min: 30 * time.Second, max: 30 * time.Second},
		{ran: 3 * time.Hour, min: time.Minute, max: time.Minute},
	} {
		got, err := f.st.Start(ctx(t), j.ID, "w-x", 0, "token-"+jobs.NewID(), started.Add(tt.ran))
		if err != nil {
			t.Fatal(err)
		}
		if !got.Busy || got.Wait < tt.min || got.Wait > tt.max {
			t.Errorf("after %s: %+v; want busy with a wait of %s", tt.ran, got, tt.min)
		}
	}
}

func (f *fixture) mustStart(t *testing.T, id, worker string, now time.Time) store.Started {
	t.Helper()
	s, err := f.st.Start(ctx(t), id, worker, -1, "token-"+jobs.NewID(), now)
	if err != nil || s.Status != jobs.StatusRunning {
		t.Fatalf("Start %s: %+v, %v", id, s, err)
	}
	return s
}

// A running job is in its pool's index of running jobs from its start to
// its outcome, whatever the outcome, and a cancel takes it out too.
func TestRunningIndex(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key := f.ns.RunningKey(pool)
	in := func(id string) bool {
		_, err := f.rdb.ZScore(ctx(t), key, id).Result()
		return err == nil
	}
	outcomes := []store.Outcome{
		{Status: jobs.StatusSucceeded, Result: []byte(`1`)},
		{Status: jobs.StatusFailed, Error: &jobs.Error{Code: "x", Message: "x"}},
		{Status: jobs.StatusRetrying, Error: &jobs.Error{Code: "x", Message: "x", Retryable: true}, Next: time.Now().Add(time.Hour)},
		{Status: jobs.StatusQueued, Error: &jobs.Error{Code: "interrupted", Message: "x", Retryable: true}},
	}
	for _, o := range outcomes {
		j := newJob(1)
		f.create(t, j)
		start := time.Now().Truncate(time.Millisecond)
		f.mustStart(t, j.ID, "w", start)
		if score, err := f.rdb.ZScore(ctx(t), key, j.ID).Result(); err != nil || int64(score) != start.UnixMilli() {
			t.Fatalf("running index after Start: %v, %v; want the start time", score, err)
		}
		f.finish(t, j.ID, o)
		if in(j.ID) {
			t.Errorf("job still in the running index after a %s outcome", o.Status)
		}
	}
	j := newJob(2)
	f.create(t, j)
	f.mustStart(t, j.ID, "w", time.Now())
	if _, err := f.st.Cancel(ctx(t), j.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if in(j.ID) {
		t.Error("a canceled job is still in the running index")
	}
}

func TestOverdue(t *testing.T) {
	t.Parallel()
	f := setup(t)
	now := time.Now().Truncate(time.Millisecond)
	old, fresh, gone, started := newJob(1), newJob(2), newJob(3), newJob(4)
	old.CreatedAt = now.Add(-time.Hour)
	gone.CreatedAt = now.Add(-2 * time.Hour)
	started.CreatedAt = now.Add(-3 * time.Hour)
	f.create(t, old, fresh, gone, started)
	f.mustStart(t, started.ID, "w", now)
	// Workers in other languages may leave entries behind: one of a job
	// that runs, one of a job whose record is gone.
	f.rdb.ZAdd(ctx(t), f.ns.WaitingKey(pool), redisZ(started.CreatedAt, started.ID))
	f.rdb.Del(ctx(t), f.ns.JobKey(gone.ID))

	got, err := f.st.Overdue(ctx(t), pool, now.Add(-time.Minute), 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Overdue{{ID: old.ID, Since: old.CreatedAt}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Overdue (-want +got):\n%s", d)
	}
	if n, _ := f.rdb.ZCard(ctx(t), f.ns.WaitingKey(pool)).Result(); n != 2 {
		t.Errorf("waiting index holds %d entries after Overdue, want 2 (the stale ones removed)", n)
	}
}

func TestOrphanedAndRescue(t *testing.T) {
	t.Parallel()
	f := setup(t)
	now := time.Now().Truncate(time.Millisecond)
	if err := f.st.Lease(ctx(t), "w-live", time.Minute); err != nil {
		t.Fatal(err)
	}
	var lost, alive []*jobs.Job
	for i := range 5 {
		j := newJob(i)
		f.create(t, j)
		f.mustStart(t, j.ID, "w-dead", now.Add(-time.Hour+time.Duration(i)*time.Second))
		lost = append(lost, j)
		k := newJob(i)
		f.create(t, k)
		f.mustStart(t, k.ID, "w-live", now.Add(-time.Hour))
		alive = append(alive, k)
	}
	recent := newJob(9)
	f.create(t, recent)
	f.mustStart(t, recent.ID, "w-dead", now)

	// Two at a time: the cursor carries the look on.
	var found []store.Overdue
	cursor := ""
	for range 10 {
		page, next, err := f.st.Orphaned(ctx(t), pool, now.Add(-time.Minute), 2, cursor)
		if err != nil {
			t.Fatal(err)
		}
		found = append(found, page...)
		if cursor = next; cursor == "" {
			break
		}
	}
	var want []store.Overdue
	for i, j := range lost {
		want = append(want, store.Overdue{ID: j.ID, Since: now.Add(-time.Hour + time.Duration(i)*time.Second), Attempt: 1})
	}
	if d := cmp.Diff(want, found); d != "" {
		t.Errorf("Orphaned (-want +got):\n%s", d)
	}

	// Rescue marks the job and hands back its record, once.
	marked, err := f.st.Rescue(ctx(t), pool, found[:1], true, now)
	if err != nil || len(marked) != 1 || marked[0] == nil {
		t.Fatalf("Rescue: %v, %v", marked, err)
	}
	j := marked[0]
	if j.ID != lost[0].ID || j.Type != lost[0].Type || string(j.Payload) != string(lost[0].Payload) || j.Attempt != 1 || j.Worker != "w-dead" {
		t.Errorf("Rescue returned %+v", j)
	}
	if score, _ := f.rdb.ZScore(ctx(t), f.ns.RunningKey(pool), j.ID).Result(); int64(score) != now.UnixMilli() {
		t.Errorf("running index score after Rescue = %v, want now", score)
	}
	// The rescued copy starts (its worker's lease is gone): the record has
	// moved on, and a second Rescue of what was seen does nothing, while
	// the others found are still rescued.
	if s, _ := f.st.Start(ctx(t), j.ID, "w-new", 0, "token-new", now); s.Attempt != 2 {
		t.Fatalf("start of the rescued copy: %+v; want attempt 2", s)
	}
	marked, err = f.st.Rescue(ctx(t), pool, found[:2], true, now)
	if err != nil || len(marked) != 2 || marked[0] != nil || marked[1] == nil || marked[1].ID != lost[1].ID {
		t.Errorf("Rescue of a job that moved on and one that did not: %v, %v; want nil and the second", marked, err)
	}
	// A waiting job is rescued as waiting, not as running.
	w := newJob(7)
	w.CreatedAt = now.Add(-time.Hour)
	f.create(t, w)
	seen := []store.Overdue{{ID: w.ID, Since: w.CreatedAt}}
	if marked, _ := f.st.Rescue(ctx(t), pool, seen, true, now); marked[0] != nil {
		t.Error("a waiting job was rescued as running")
	}
	if marked, err := f.st.Rescue(ctx(t), pool, seen, false, now); err != nil || marked[0] == nil {
		t.Errorf("Rescue of a waiting job: %v, %v", marked, err)
	}
	if got, _ := f.st.Overdue(ctx(t), pool, now.Add(-time.Minute), 10); len(got) != 0 {
		t.Errorf("a rescued job is overdue again at once: %+v", got)
	}

	for _, n := range []int{2, 1} {
		if err := f.st.CountRescued(ctx(t), pool, n, now); err != nil {
			t.Fatal(err)
		}
	}
	n, err := f.st.Rescued(ctx(t), []string{pool, "other"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]int{pool: 3, "other": 0}, n); d != "" {
		t.Errorf("Rescued (-want +got):\n%s", d)
	}
	if n, _ := f.st.Rescued(ctx(t), []string{pool}, now.Add(61*time.Minute)); n[pool] != 0 {
		t.Errorf("Rescued an hour later = %d, want 0", n[pool])
	}
}

func TestStartedMark(t *testing.T) {
	t.Parallel()
	f := setup(t)
	if m, err := f.st.StartedMark(ctx(t), pool); err != nil || !m.IsZero() {
		t.Fatalf("StartedMark before any = %v, %v", m, err)
	}
	t1 := time.Now().Truncate(time.Millisecond)
	for _, m := range []map[string]time.Time{{pool: t1}, {pool: t1.Add(-time.Hour)}} {
		if err := f.st.MarkStarted(ctx(t), m); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := f.st.StartedMark(ctx(t), pool); err != nil || !m.Equal(t1) {
		t.Errorf("StartedMark = %v, %v; want the later %v (an earlier mark does not move it back)", m, err, t1)
	}
}

func TestRescuerLease(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, tt := range []struct {
		holder string
		want   bool
	}{{"a", true}, {"b", false}, {"a", true}} {
		if got, err := f.st.HoldRescuer(ctx(t), tt.holder, time.Minute); err != nil || got != tt.want {
			t.Errorf("HoldRescuer(%s) = %v, %v; want %v", tt.holder, got, err, tt.want)
		}
	}
	if err := f.st.ReleaseRescuer(ctx(t), "b"); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.st.HoldRescuer(ctx(t), "b", time.Minute); got {
		t.Error("b took the lease after releasing one it did not hold")
	}
	if err := f.st.ReleaseRescuer(ctx(t), "a"); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.st.HoldRescuer(ctx(t), "b", time.Minute); !got {
		t.Error("b could not take the lease a released")
	}
}

func redisZ(at time.Time, id string) redis.Z {
	return redis.Z{Score: float64(at.UnixMilli()), Member: id}
}

// A copy parked because its attempt's worker lived is on its way back: the
// rescuer does not publish another until that copy was due back more than
// the grace ago, though the worker has died meanwhile.
func TestParkedCopyHoldsOffTheRescuer(t *testing.T) {
	t.Parallel()
	f := setup(t)
	j := newJob(1)
	f.create(t, j)
	started := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	if err := f.st.Lease(ctx(t), "w-dying", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	f.mustStart(t, j.ID, "w-dying", started)
	now := time.Now()
	busy, err := f.st.Start(ctx(t), j.ID, "w-other", 0, "token-copy", now)
	if err != nil || !busy.Busy {
		t.Fatalf("copy while the worker lives: %+v, %v; want busy", busy, err)
	}
	if err := f.st.Release(ctx(t), "w-dying"); err != nil { // it dies
		t.Fatal(err)
	}
	back := now.Add(busy.Wait)
	for _, tt := range []struct {
		cutoff time.Time
		want   int
	}{
		{cutoff: back.Add(-time.Second), want: 0}, // the copy is due back after the cutoff
		{cutoff: back.Add(time.Second), want: 1},  // it was due back before: lost too
	} {
		found, _, err := f.st.Orphaned(ctx(t), pool, tt.cutoff, 10, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(found) != tt.want {
			t.Errorf("Orphaned with the parked copy due back %s after the cutoff: %d jobs, want %d", back.Sub(tt.cutoff), len(found), tt.want)
		}
	}
	// When the copy runs, the record no longer says it is parked.
	if s, err := f.st.Start(ctx(t), j.ID, "w-other", 0, "token-copy-2", back); err != nil || s.Attempt != 2 {
		t.Fatalf("the parked copy back: %+v, %v; want attempt 2", s, err)
	}
	if _, ok := f.raw(t, j.ID)["parked_until"]; ok {
		t.Error("parked_until outlived the start of the copy")
	}
}
