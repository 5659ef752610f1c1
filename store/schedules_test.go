package store_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/warrenhq/warren/store"
)

// Schedules: a name once, a bounded number per namespace, and a tick's
// claim goes to one job, which its outcome records once.
func TestScheduleRecords(t *testing.T) {
	t.Parallel()
	f := setup(t)
	c := ctx(t)
	t0 := time.UnixMilli(1_900_000_000_000)
	add := func(name string, max int) error {
		return f.st.AddSchedule(c, store.ScheduleRecord{Name: name, Def: []byte(`{"every":"1s"}`), CreatedAt: t0, CreatedBy: "ops"}, max)
	}
	for i := range 3 {
		if err := add(fmt.Sprintf("sched-%d", i), 3); err != nil {
			t.Fatal(err)
		}
	}
	if err := add("sched-0", 10); !errors.Is(err, store.ErrScheduleExists) {
		t.Errorf("a taken name: %v", err)
	}
	if err := add("sched-3", 3); !errors.Is(err, store.ErrScheduleLimit) {
		t.Errorf("one over the limit: %v", err)
	}
	all, err := f.st.Schedules(c)
	if err != nil || len(all) != 3 || all[0].Name != "sched-0" || all[0].CreatedBy != "ops" || !all[0].After.Equal(t0) {
		t.Fatalf("Schedules = %+v, %v", all, err)
	}

	tick := t0.Add(time.Second)
	claim := func(id string, want store.ClaimState, wantJob string) {
		t.Helper()
		got, err := f.st.ClaimTick(c, "sched-0", tick, id)
		if err != nil || got.State != want || got.Job != wantJob {
			t.Errorf("ClaimTick(%s) = %+v, %v; want state %d job %q", id, got, err, want, wantJob)
		}
	}
	claim("job-a", store.Claimed, "job-a")
	claim("job-b", store.ClaimPending, "job-a")
	if got, _ := f.st.ClaimTick(c, "sched-0", tick.Add(time.Second), "job-c"); got.State != store.ClaimBusy {
		t.Errorf("another tick while one is in flight: %+v", got)
	}
	// A skip of the tick in flight by someone else's outcome is refused.
	if ok, err := f.st.CompleteTick(c, "sched-0", store.TickOutcome{Tick: tick.Add(time.Second), Reason: "overlap", Now: tick}); err != nil || ok {
		t.Errorf("completing another tick while one is in flight: %v, %v", ok, err)
	}
	out := store.TickOutcome{Tick: tick, Job: "job-a", Next: tick.Add(time.Second), Now: tick}
	if ok, err := f.st.CompleteTick(c, "sched-0", out); err != nil || !ok {
		t.Fatalf("CompleteTick = %v, %v", ok, err)
	}
	if ok, _ := f.st.CompleteTick(c, "sched-0", out); ok {
		t.Error("the same tick recorded twice")
	}
	claim("job-d", store.ClaimDone, "")
	rec, err := f.st.Schedule(c, "sched-0")
	if err != nil || rec.LastJob != "job-a" || !rec.LastTick.Equal(tick) || !rec.After.Equal(tick) || !rec.PendingTick.IsZero() || !rec.Due.Equal(tick.Add(time.Second)) {
		t.Errorf("after the tick: %+v, %v", rec, err)
	}

	names, next, err := f.st.DueSchedules(c, tick, 10)
	if err != nil || len(names) != 2 || !next.Equal(t0) {
		t.Errorf("DueSchedules = %v, %s, %v; want the two others, due since t0", names, next, err)
	}
	if changed, err := f.st.PauseSchedule(c, "sched-0", "ops", tick); err != nil || !changed {
		t.Fatal(changed, err)
	}
	claim("job-e", store.ClaimGone, "")
	if _, err := f.st.PauseSchedule(c, "nope", "", tick); !errors.Is(err, store.ErrScheduleNotFound) {
		t.Errorf("pausing what is not there: %v", err)
	}
	if err := f.st.DeleteSchedule(c, "sched-0"); err != nil {
		t.Fatal(err)
	}
	if err := f.st.DeleteSchedule(c, "sched-0"); !errors.Is(err, store.ErrScheduleNotFound) {
		t.Errorf("deleting twice: %v", err)
	}
	if err := add("sched-3", 3); err != nil {
		t.Errorf("after a delete there is room: %v", err)
	}
}

// The scheduler's lease goes to one process at a time.
func TestScheduleLease(t *testing.T) {
	t.Parallel()
	f := setup(t)
	c := ctx(t)
	if held, err := f.st.HoldScheduler(c, "a", time.Minute); err != nil || !held {
		t.Fatal(held, err)
	}
	if held, _ := f.st.HoldScheduler(c, "b", time.Minute); held {
		t.Error("two holders")
	}
	if err := f.st.ReleaseScheduler(c, "a"); err != nil {
		t.Fatal(err)
	}
	if held, _ := f.st.HoldScheduler(c, "b", time.Minute); !held {
		t.Error("b could not take a released lease")
	}
}
