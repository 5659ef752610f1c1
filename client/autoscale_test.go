package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

func TestAutoscale(t *testing.T) {
	testenv.RequireServices(t)
	t.Parallel()
	c, env := liveAPI(t)
	ctx := context.Background()
	// Nothing reports on sys yet.
	ps, err := c.Autoscale(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Pool != "sys" || ps[0].Autoscaler != "" || ps[0].Policy != nil || ps[0].Decisions == nil || len(ps[0].Decisions) != 0 {
		t.Fatalf("before any report: %+v", ps)
	}

	at := time.Now().Add(-time.Second).UTC().Truncate(time.Millisecond)
	if err := env.Store.PutReplicas(ctx, "sys", store.Replicas{Current: 3, From: 1, Desired: 3, Recommended: 3, Backlog: 25,
		OldestAge: 2 * time.Second, Reason: "backlog 25 at 10 per replica", At: at, Interval: 5 * time.Second,
		Policy: &store.ScalePolicy{Min: 1, Max: 4, TargetBacklog: 10, Interval: 5 * time.Second, ScaleDownWindow: -time.Second}}); err != nil {
		t.Fatal(err)
	}
	ps, err = c.Autoscale(ctx, "sys")
	if err != nil {
		t.Fatal(err)
	}
	want := []client.PoolScaling{{
		Pool: "sys", Autoscaler: "warren autoscale", Current: 3, Desired: 3, Recommended: 3, Backlog: 25, OldestAgeSeconds: 2,
		Reason: "backlog 25 at 10 per replica", At: at,
		Policy: &client.ScalingPolicy{Min: 1, Max: 4, TargetBacklog: 10, Interval: jobs.Duration(5 * time.Second),
			ScaleDownWindow: jobs.Duration(-time.Second)},
		Decisions: []client.ScalingDecision{{At: at, Current: 1, Desired: 3, Recommended: 3, Backlog: 25, OldestAgeSeconds: 2,
			Reason: "backlog 25 at 10 per replica"}},
	}}
	if d := cmp.Diff(want, ps); d != "" {
		t.Errorf("Autoscale (-want +got):\n%s", d)
	}
	if _, err := c.Autoscale(ctx, "nope"); !client.IsNotFound(err) {
		t.Errorf("an unknown pool: %v, want not found", err)
	}
}
