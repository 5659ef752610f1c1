package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

func TestScalingView(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)
	ps := []client.PoolScaling{
		{Pool: "image", Note: "no autoscaler reports on this pool"},
		{Pool: "old", Stale: true, Note: "its autoscaler stopped", Decisions: []client.ScalingDecision{
			{At: now.Add(-time.Hour), Current: 2, Desired: 1, Recommended: 1, Reason: "backlog 0\tidle"}}},
		{Pool: "sys", Autoscaler: "warren autoscale", Current: 4, Desired: 4, Recommended: 3, Backlog: 38, OldestAgeSeconds: 1.2,
			Reason: "backlog 38 at 10 per replica", At: now.Add(-12 * time.Second),
			Policy: &client.ScalingPolicy{Min: 1, Max: 4, TargetBacklog: 10, Interval: jobs.Duration(5 * time.Second),
				ScaleDownWindow: jobs.Duration(time.Minute), MaxStep: 2},
			Decisions: []client.ScalingDecision{
				{At: now.Add(-12 * time.Second), Current: 2, Desired: 4, Recommended: 4, Backlog: 38, OldestAgeSeconds: 1.2, Reason: "backlog 38 at 10 per replica"},
				{At: now.Add(-time.Minute), Current: 2, Desired: 2, Recommended: 1, Backlog: 3},
			}},
	}
	var b bytes.Buffer
	if err := writeScaling(&b, ps, now); err != nil {
		t.Fatal(err)
	}
	want := `image: no autoscaler reports on this pool

old: its autoscaler stopped
  decisions, newest first:
    AT                        FROM  TO  RECOMMENDED  BACKLOG  OLDEST  REASON
    2026-03-14T09:00:00.000Z  2     1   1            0        0s      backlog 0 idle

sys: scaled by warren autoscale
  replicas: 4 running, 4 desired, 3 recommended (12s ago)
  measured: backlog 38, oldest waiting 1.2s
  reason:   backlog 38 at 10 per replica
  policy:   1 to 4 replicas, target backlog 10, activation backlog 0, target age none, interval 5s, scale-up window 0s, scale-down window 1m, max step 2
  decisions, newest first:
    AT                        FROM  TO  RECOMMENDED  BACKLOG  OLDEST  REASON
    2026-03-14T09:59:48.000Z  2     4   4            38       1.2s    backlog 38 at 10 per replica
    2026-03-14T09:59:00.000Z  2     2   1            3        0s      -
`
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("view (-want +got):\n%s", d)
	}
	b.Reset()
	_ = writeScaling(&b, nil, now)
	if got := b.String(); got != "no pools\n" {
		t.Errorf("no pools: %q", got)
	}
}

// warren scaling against the real API.
func TestScalingCommand(t *testing.T) {
	testenv.RequireServices(t)
	t.Parallel()
	env, url := liveAPI(t)
	if err := env.Store.PutReplicas(context.Background(), "sys", store.Replicas{Current: 2, From: 1, Desired: 2, Recommended: 2,
		Backlog: 15, Reason: "backlog 15 at 10 per replica", Interval: time.Minute,
		Policy: &store.ScalePolicy{Min: 1, Max: 3, TargetBacklog: 10, Interval: time.Minute, ScaleDownWindow: time.Minute}}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runWarren(t, url, "", "scaling")
	if code != 0 || !strings.HasPrefix(out, "sys: scaled by warren autoscale\n") || !strings.Contains(out, "1 to 3 replicas") ||
		!strings.Contains(out, " 1     2   2            15       0s      backlog 15 at 10 per replica\n") {
		t.Errorf("warren scaling: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = runWarren(t, url, "", "scaling", "sys", "-o", "json")
	var got scalingOutput
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || len(got.Pools) != 1 || got.Pools[0].Policy == nil || len(got.Pools[0].Decisions) != 1 {
		t.Errorf("warren scaling sys -o json: exit %d, %s", code, out)
	}
	if _, errOut, code := runWarren(t, url, "", "scaling", "nope"); code != 1 || !strings.Contains(errOut, "no pool nope") {
		t.Errorf("warren scaling nope: exit %d, %s", code, errOut)
	}
	for _, args := range [][]string{{"scaling", "No!"}, {"scaling", "sys", "image"}} {
		if _, _, code := runWarren(t, url, "", args...); code != 1 {
			t.Errorf("warren %s: exit %d, want 1", strings.Join(args, " "), code)
		}
	}
}
