package store_test

import (
	"testing"
	"time"

	"github.com/warrenhq/warren/jobs"
)

func TestPresentShowsAJobAsItStands(t *testing.T) {
	t.Parallel()
	f := setup(t)
	now := time.Now().UTC()
	st := f.clocked(t, now)
	// A worker whose lease is current.
	if err := f.rdb.Set(ctx(t), f.ns.WorkerKey("w-alive"), `{"id":"w-alive"}`, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	past, future := now.Add(-time.Second), now.Add(time.Hour)
	tests := []struct {
		name string
		job  jobs.Job
		want jobs.Status
	}{
		{"due", jobs.Job{Status: jobs.StatusScheduled, ScheduledAt: &past}, jobs.StatusQueued},
		{"not yet due", jobs.Job{Status: jobs.StatusScheduled, ScheduledAt: &future}, jobs.StatusScheduled},
		{"running, worker alive", jobs.Job{Status: jobs.StatusRunning, Worker: "w-alive"}, jobs.StatusRunning},
		{"running, worker gone", jobs.Job{Status: jobs.StatusRunning, Worker: "w-gone"}, jobs.StatusQueued},
		{"retrying", jobs.Job{Status: jobs.StatusRetrying, ScheduledAt: &past}, jobs.StatusRetrying},
		{"succeeded", jobs.Job{Status: jobs.StatusSucceeded, Worker: "w-gone"}, jobs.StatusSucceeded},
	}
	for _, tt := range tests {
		j := tt.job
		if got := st.Present(ctx(t), &j).Status; got != tt.want {
			t.Errorf("%s: shown %s, want %s", tt.name, got, tt.want)
		}
	}
}
