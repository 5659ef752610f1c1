package store_test

import (
	"fmt"
	"strings"
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

// A report carries the pool's policy and what the decision was made from;
// a decision that changes the size, or gives another reason than the last
// one recorded, joins the pool's recent decisions, newest first.
func TestScalingRecordsDecisions(t *testing.T) {
	t.Parallel()
	f := setup(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	st := f.clocked(t, now)
	policy := &store.ScalePolicy{Min: 1, Max: 8, TargetBacklog: 10, ActivationBacklog: 2, TargetAge: 30 * time.Second,
		Interval: 5 * time.Second, ScaleDownWindow: -time.Second, MaxStep: 2}
	steps := []struct {
		from, desired int
		reason        string
		pushed        bool
	}{
		{1, 1, "backlog 0 at 10 per replica", true},  // the first
		{1, 1, "backlog 0 at 10 per replica", false}, // nothing new
		{1, 3, "backlog 30 at 10 per replica", true}, // a change of size
		{3, 3, "backlog 30 at 10 per replica", false},
		{3, 3, "backlog 34 at 10 per replica", false},                            // the same kind of reason, other figures
		{3, 3, "backlog 31 at 10 per replica is within 10% of the target", true}, // another reason
		{3, 2, "backlog 31 at 10 per replica is within 10% of the target", true}, // the same reason, but a change
		{2, 2, "", true},
		{2, 2, "", false},
	}
	var want []store.ScaleDecision
	for i, s := range steps {
		r := store.Replicas{Current: s.from, Desired: s.desired, From: s.from, Reason: s.reason, Recommended: s.desired + 1,
			Backlog: 10 * i, OldestAge: time.Duration(i) * time.Second, At: now.Add(time.Duration(i-len(steps)) * time.Second),
			Interval: 5 * time.Second, Policy: policy}
		if err := st.PutReplicas(ctx(t), "image", r); err != nil {
			t.Fatal(err)
		}
		if s.pushed {
			want = append([]store.ScaleDecision{{At: r.At, Current: s.from, Desired: s.desired, Recommended: s.desired + 1,
				Backlog: 10 * i, OldestAge: r.OldestAge, Reason: s.reason}}, want...)
		}
	}
	got, err := st.Scaling(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	last := store.Replicas{Current: 2, Desired: 2, From: 2, Recommended: 3, Backlog: 80, OldestAge: 8 * time.Second,
		At: now.Add(-time.Second), Interval: 5 * time.Second, Policy: policy}
	if d := cmp.Diff(map[string]store.PoolScaling{"image": {Replicas: &last, Decisions: want}}, got); d != "" {
		t.Errorf("Scaling (-want +got):\n%s", d)
	}
	// The record's policy is written as warren writes durations.
	raw, err := f.rdb.HGet(ctx(t), f.ns.AutoscaleKey(), "image").Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := `"policy":{"min":1,"max":8,"target_backlog":10,"activation_backlog":2,"target_age":"30s","interval":"5s","scale_up_window":"0s","scale_down_window":"-1s","max_step":2}`; !strings.Contains(raw, want) {
		t.Errorf("stored as %s, want it to hold %s", raw, want)
	}
	// The list expires, as every record warren writes.
	key := f.ns.AutoscaleDecisionsKey("image")
	if ttl, err := f.rdb.PTTL(ctx(t), key).Result(); err != nil || ttl < 6*24*time.Hour || ttl > 7*24*time.Hour {
		t.Errorf("the decisions expire in %s (%v), want 7 days", ttl, err)
	}
	// A report of another pool touches none of these.
	if err := st.PutReplicas(ctx(t), "webhook", store.Replicas{Current: 1, Desired: 1, Interval: time.Second}); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.rdb.LLen(ctx(t), key).Result(); n != int64(len(want)) {
		t.Errorf("%d decisions of image after a report on webhook, want %d", n, len(want))
	}
}

// The list keeps the newest 50 decisions.
func TestScalingKeepsTheLatestDecisions(t *testing.T) {
	t.Parallel()
	f := setup(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	st := f.clocked(t, now)
	for i := range 60 {
		r := store.Replicas{Current: i % 2, From: i % 2, Desired: (i + 1) % 2, Reason: fmt.Sprint("decision ", i),
			At: now.Add(time.Duration(i-60) * time.Millisecond), Interval: time.Second}
		if err := st.PutReplicas(ctx(t), "image", r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.Scaling(ctx(t), "image")
	if err != nil {
		t.Fatal(err)
	}
	ds := got["image"].Decisions
	if len(ds) != 50 || ds[0].Reason != "decision 59" || ds[49].Reason != "decision 10" {
		t.Fatalf("%d decisions, from %q to %q; want 50, from decision 59 to decision 10", len(ds), ds[0].Reason, ds[len(ds)-1].Reason)
	}
}

// Counts whose autoscaler stopped are not current, as Replicas has them;
// its decisions are still there for a pool asked for. A pool asked for
// with nothing has an entry with no decisions; a name that is no pool's
// has none.
func TestScalingStaleAndUnreported(t *testing.T) {
	t.Parallel()
	f := setup(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	st := f.clocked(t, now)
	const interval = 10 * time.Second
	stopped := store.Replicas{Current: 3, From: 3, Desired: 1, Reason: "backlog 0", At: now.Add(-3*interval - time.Millisecond), Interval: interval}
	for pool, r := range map[string]store.Replicas{
		"stopped": stopped,
		"fresh":   {Current: 1, From: 1, Desired: 1, At: now, Interval: interval},
	} {
		if err := st.PutReplicas(ctx(t), pool, r); err != nil {
			t.Fatal(err)
		}
	}
	// A decision another writer garbled is left out.
	if err := f.rdb.RPush(ctx(t), f.ns.AutoscaleDecisionsKey("fresh"), "{not json").Err(); err != nil {
		t.Fatal(err)
	}
	got, err := st.Scaling(ctx(t), "stopped", "idle", "Not-A-Pool")
	if err != nil {
		t.Fatal(err)
	}
	fresh := store.Replicas{Current: 1, From: 1, Desired: 1, At: now, Interval: interval}
	want := map[string]store.PoolScaling{
		"fresh":   {Replicas: &fresh, Decisions: []store.ScaleDecision{{At: now, Current: 1, Desired: 1}}},
		"stopped": {Decisions: []store.ScaleDecision{{At: stopped.At, Current: 3, Desired: 1, Reason: "backlog 0"}}},
		"idle":    {Decisions: []store.ScaleDecision{}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Scaling (-want +got):\n%s", d)
	}
	// Unasked, the stopped pool is left out, and its counts are gone.
	got, err = st.Scaling(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got["stopped"]; ok || len(got) != 1 {
		t.Errorf("Scaling() = %v, want fresh alone", got)
	}
	if n, _ := f.rdb.HExists(ctx(t), f.ns.AutoscaleKey(), "stopped").Result(); n {
		t.Errorf("the stale counts were not deleted")
	}
}
