package store_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/store"
)

func TestReplicasRoundTrip(t *testing.T) {
	t.Parallel()
	f := setup(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	st := f.clocked(t, now)
	if got, err := st.Replicas(ctx(t)); err != nil || len(got) != 0 {
		t.Fatalf("Replicas before any = %v, %v; want none", got, err)
	}
	image := store.Replicas{Current: 2, Desired: 5, Reason: "backlog 120 over 2 replicas", At: now.Add(-time.Second), Interval: 15 * time.Second}
	for _, r := range []store.Replicas{{Current: 9, Desired: 9, At: now, Interval: time.Second}, image} {
		if err := st.PutReplicas(ctx(t), "image", r); err != nil { // the second replaces the first
			t.Fatal(err)
		}
	}
	// At zero means now.
	if err := st.PutReplicas(ctx(t), "webhook", store.Replicas{Current: 1, Desired: 0, Interval: time.Minute}); err != nil {
		t.Fatal(err)
	}
	got, err := st.Replicas(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]store.Replicas{
		"image":   image,
		"webhook": {Current: 1, Desired: 0, At: now, Interval: time.Minute},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Replicas (-want +got):\n%s", diff)
	}
	// Durations are written as everywhere else in warren: Go duration text.
	raw, err := f.rdb.HGet(ctx(t), f.ns.AutoscaleKey(), "image").Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"current":2,"desired":5,"reason":"backlog 120 over 2 replicas","at":"` + image.At.Format(time.RFC3339Nano) + `","interval":"15s"}`; raw != want {
		t.Errorf("stored as %s, want %s", raw, want)
	}
}

func TestReplicasStale(t *testing.T) {
	t.Parallel()
	f := setup(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	st := f.clocked(t, now)
	const interval = 10 * time.Second
	put := map[string]store.Replicas{
		"fresh":    {Current: 1, Desired: 1, At: now, Interval: interval},
		"edge":     {Current: 1, Desired: 2, At: now.Add(-3 * interval), Interval: interval},
		"stopped":  {Current: 3, Desired: 1, At: now.Add(-3*interval - time.Millisecond), Interval: interval},
		"long-ago": {Current: 3, Desired: 3, At: now.Add(-24 * time.Hour), Interval: interval},
	}
	for pool, r := range put {
		if err := st.PutReplicas(ctx(t), pool, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.rdb.HSet(ctx(t), f.ns.AutoscaleKey(), "garbled", "{not json").Err(); err != nil {
		t.Fatal(err)
	}
	got, err := st.Replicas(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]store.Replicas{"fresh": put["fresh"], "edge": put["edge"]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Replicas (-want +got):\n%s", diff)
	}
	// What was left out is gone from Redis too.
	fields, err := f.rdb.HKeys(ctx(t), f.ns.AutoscaleKey()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(fields) != 2 {
		t.Errorf("fields left in %s: %v, want fresh and edge", f.ns.AutoscaleKey(), fields)
	}
	// Counts written again after they went stale show again.
	if err := st.PutReplicas(ctx(t), "stopped", store.Replicas{Current: 1, Desired: 1, Interval: interval}); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Replicas(ctx(t)); len(got) != 3 {
		t.Errorf("after the stopped autoscaler came back: %v, want 3 pools", got)
	}
}

func TestPutReplicasInvalid(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for name, tt := range map[string]struct {
		pool string
		r    store.Replicas
	}{
		"no interval":   {"image", store.Replicas{Current: 1, Desired: 1}},
		"no pool":       {"", store.Replicas{Interval: time.Second}},
		"bad pool name": {"Image:x", store.Replicas{Interval: time.Second}},
	} {
		if err := f.st.PutReplicas(ctx(t), tt.pool, tt.r); err == nil {
			t.Errorf("%s: PutReplicas gave no error", name)
		}
	}
	if n, _ := f.rdb.Exists(ctx(t), f.ns.AutoscaleKey()).Result(); n != 0 {
		t.Errorf("invalid counts were written")
	}
}
