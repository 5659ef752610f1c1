package api_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// autoscaleEntry is an entry of GET /v1/autoscale as a client reads it.
type autoscaleEntry struct {
	Pool       string  `json:"pool"`
	Autoscaler *string `json:"autoscaler"`
	Stale      bool    `json:"stale"`
	Current    int     `json:"current"`
	Desired    int     `json:"desired"`
	Reason     string  `json:"reason"`
	Backlog    int     `json:"backlog"`
	Policy     *struct {
		Min             int    `json:"min"`
		Max             int    `json:"max"`
		TargetBacklog   int    `json:"target_backlog"`
		TargetAge       string `json:"target_age"`
		Interval        string `json:"interval"`
		ScaleDownWindow string `json:"scale_down_window"`
	} `json:"policy"`
	Decisions []struct {
		At               time.Time `json:"at"`
		Current          int       `json:"current"`
		Desired          int       `json:"desired"`
		Recommended      int       `json:"recommended"`
		Backlog          int       `json:"backlog"`
		OldestAgeSeconds float64   `json:"oldest_age_seconds"`
		Reason           string    `json:"reason"`
	} `json:"decisions"`
	Note string `json:"note"`
}

func listAutoscale(t *testing.T, url string) ([]autoscaleEntry, string) {
	t.Helper()
	r := do(t, "GET", url, nil, "")
	if r.status != 200 {
		t.Fatalf("GET %s: %d %s", url, r.status, r.body)
	}
	var out struct{ Pools []autoscaleEntry }
	if err := json.Unmarshal(r.body, &out); err != nil || out.Pools == nil {
		t.Fatalf("GET %s: %s (%v); want a list", url, r.body, err)
	}
	return out.Pools, string(r.body)
}

// GET /v1/autoscale shows every declared or reported pool with its policy
// and its recent decisions; a pool nothing reports on, with neither.
func TestAutoscale(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	ctx := context.Background()
	if err := f.env.Store.DeclareTypes(ctx, []jobs.Type{
		jobs.Type{Name: "report.build", Pool: "reports"}.WithDefaults(),
		jobs.Type{Name: "old.job", Pool: "old"}.WithDefaults(),
	}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	policy := &store.ScalePolicy{Min: 1, Max: 4, TargetBacklog: 10, TargetAge: 30 * time.Second,
		Interval: time.Minute, ScaleDownWindow: time.Minute}
	for _, r := range []store.Replicas{
		{Current: 1, From: 1, Desired: 1, Reason: "backlog 0 at 10 per replica", At: now.Add(-2 * time.Minute)},
		{Current: 1, From: 1, Desired: 1, Reason: "backlog 0 at 10 per replica", At: now.Add(-time.Minute)}, // not recorded: nothing new
		{Current: 3, From: 1, Desired: 3, Reason: "backlog 25 at 10 per replica", Recommended: 3, Backlog: 25,
			OldestAge: 1500 * time.Millisecond, At: now},
	} {
		r.Interval, r.Policy = time.Minute, policy
		if err := f.env.Store.PutReplicas(ctx, "sys", r); err != nil {
			t.Fatal(err)
		}
	}
	for pool, r := range map[string]store.Replicas{
		"ghost": {Current: 0, Desired: 0, At: now, Interval: time.Minute},                                          // reported, not declared
		"old":   {Current: 2, From: 2, Desired: 1, Reason: "idle", At: now.Add(-time.Hour), Interval: time.Second}, // its autoscaler stopped
		"gone":  {Current: 1, Desired: 1, At: now.Add(-time.Hour), Interval: time.Second},                          // stopped, not declared
	} {
		if err := f.env.Store.PutReplicas(ctx, pool, r); err != nil {
			t.Fatal(err)
		}
	}

	got, body := listAutoscale(t, f.url+"/v1/autoscale")
	var pools []string
	for _, e := range got {
		pools = append(pools, e.Pool)
	}
	if d := cmp.Diff([]string{"ghost", "old", "reports", "sys"}, pools); d != "" {
		t.Fatalf("pools (-want +got):\n%s\n%s", d, body)
	}
	ghost, old, reports, sys := got[0], got[1], got[2], got[3]

	if sys.Autoscaler == nil || *sys.Autoscaler != "warren autoscale" || sys.Stale || sys.Current != 3 || sys.Desired != 3 ||
		sys.Backlog != 25 || sys.Reason != "backlog 25 at 10 per replica" || sys.Note != "" {
		t.Errorf("sys: %+v", sys)
	}
	if p := sys.Policy; p == nil || p.Min != 1 || p.Max != 4 || p.TargetBacklog != 10 || p.TargetAge != "30s" || p.Interval != "1m0s" || p.ScaleDownWindow != "1m0s" {
		t.Errorf("sys policy: %+v", p)
	}
	if ds := sys.Decisions; len(ds) != 2 || ds[0].Current != 1 || ds[0].Desired != 3 || ds[0].Recommended != 3 || ds[0].Backlog != 25 ||
		ds[0].OldestAgeSeconds != 1.5 || !ds[0].At.Equal(now) || ds[1].Desired != 1 || !ds[1].At.Equal(now.Add(-2*time.Minute)) {
		t.Errorf("sys decisions, newest first: %+v", ds)
	}
	if ghost.Autoscaler == nil || ghost.Policy != nil || len(ghost.Decisions) != 1 {
		t.Errorf("ghost, reported without a policy: %+v", ghost)
	}
	if old.Autoscaler != nil || !old.Stale || old.Policy != nil || len(old.Decisions) != 1 || old.Decisions[0].Reason != "idle" || old.Note == "" {
		t.Errorf("old, whose autoscaler stopped: %+v", old)
	}
	if reports.Autoscaler != nil || reports.Stale || reports.Policy != nil || len(reports.Decisions) != 0 || !strings.Contains(reports.Note, "KEDA") {
		t.Errorf("reports, which nothing reports on: %+v", reports)
	}
	if want := `{"pool":"reports","autoscaler":null,"stale":false,"policy":null,"decisions":[],"note":`; !strings.Contains(body, want) {
		t.Errorf("body %s: want %s (no figures where nothing reports)", body, want)
	}

	one, _ := listAutoscale(t, f.url+"/v1/autoscale?pool=sys")
	if len(one) != 1 || one[0].Pool != "sys" || len(one[0].Decisions) != 2 {
		t.Errorf("?pool=sys: %+v", one)
	}
	if one, _ := listAutoscale(t, f.url+"/v1/autoscale?pool=reports"); len(one) != 1 || one[0].Pool != "reports" {
		t.Errorf("?pool=reports: %+v", one)
	}
	for q, want := range map[string]struct {
		status int
		code   string
	}{
		"pool=nope":             {404, "not_found"},
		"pool=gone":             {404, "not_found"},
		"pool=Sys":              {400, "invalid_field"},
		"pool=sys%3Aevil":       {400, "invalid_field"},
		"pool=" + longName(100): {400, "invalid_field"},
	} {
		r := do(t, "GET", f.url+"/v1/autoscale?"+q, nil, "")
		if e := r.apiError(t); r.status != want.status || e.Code != want.code || e.Field != "pool" {
			t.Errorf("?%s: %d %+v; want %d %s naming pool", q, r.status, e, want.status, want.code)
		}
	}
}

func TestAutoscaleRedisAway(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	url := start(t, api.Config{}, env.Broker, unreachableStore(t, env))
	r := do(t, "GET", url+"/v1/autoscale", nil, "")
	if e := r.apiError(t); r.status != 503 || e.Code != "unavailable" || !strings.Contains(e.Message, "Redis") || r.header.Get("Retry-After") == "" {
		t.Errorf("%d %s, want 503 unavailable naming Redis, with Retry-After", r.status, r.body)
	}
}
