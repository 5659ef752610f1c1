package api_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/apikey"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/store"
)

type workerEntry struct {
	ID          string     `json:"id"`
	Pool        string     `json:"pool"`
	Host        string     `json:"host"`
	PID         int        `json:"pid"`
	Version     string     `json:"version"`
	Concurrency int        `json:"concurrency"`
	Busy        int        `json:"busy"`
	Done        int64      `json:"done"`
	Failed      int64      `json:"failed"`
	StartedAt   *time.Time `json:"started_at"`
	LastSeenAt  *time.Time `json:"last_seen_at"`
}

func listWorkers(t *testing.T, url string) []workerEntry {
	t.Helper()
	r := do(t, "GET", url, nil, "")
	if r.status != 200 {
		t.Fatalf("GET %s: %d %s", url, r.status, r.body)
	}
	var out struct{ Workers []workerEntry }
	if err := json.Unmarshal(r.body, &out); err != nil || out.Workers == nil {
		t.Fatalf("GET %s: %s (%v); want a list, [] when empty", url, r.body, err)
	}
	return out.Workers
}

type poolState struct {
	Pool     string     `json:"pool"`
	Paused   bool       `json:"paused"`
	PausedAt *time.Time `json:"paused_at"`
	PausedBy string     `json:"paused_by"`
	Changed  bool       `json:"changed"`
}

func (r response) poolState(t *testing.T) poolState {
	t.Helper()
	var p poolState
	if r.status != 200 || json.Unmarshal(r.body, &p) != nil {
		t.Fatalf("pause or resume: %d %s; want 200 and the pool's state", r.status, r.body)
	}
	return p
}

// GET /v1/workers lists the live workers from their leases, one entry per
// process and pool.
func TestWorkers(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	ctx := context.Background()
	if got := listWorkers(t, f.url+"/v1/workers"); len(got) != 0 {
		t.Fatalf("no worker yet: %+v", got)
	}
	started := time.Now().Add(-time.Hour).Truncate(time.Millisecond).UTC()
	for _, w := range []store.WorkerInfo{
		{ID: "w-b", Host: "vm2", PID: 7, Version: "v1.2.3", Started: started, Pools: map[string]store.PoolLoad{
			"sys":   {Concurrency: 10, Busy: 3, Done: 40, Failed: 2},
			"image": {Concurrency: 2},
		}},
		{ID: "w-a", Host: "vm1", PID: 8, Version: "dev", Started: started, Pools: map[string]store.PoolLoad{
			"sys": {Concurrency: 4, Busy: 4, Done: 1},
		}},
	} {
		if _, err := f.env.Store.KeepLease(ctx, w, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// A lapsed lease is not listed.
	if _, err := f.env.Store.KeepLease(ctx, store.WorkerInfo{ID: "w-gone", Pools: map[string]store.PoolLoad{"sys": {}}}, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)

	got := listWorkers(t, f.url+"/v1/workers")
	for _, e := range got {
		if e.StartedAt == nil || !e.StartedAt.Equal(started) || e.LastSeenAt == nil || time.Since(*e.LastSeenAt) > time.Minute {
			t.Errorf("%s/%s: started %v last seen %v, want %v and just now", e.ID, e.Pool, e.StartedAt, e.LastSeenAt, started)
		}
		e.StartedAt, e.LastSeenAt = nil, nil
	}
	for i := range got {
		got[i].StartedAt, got[i].LastSeenAt = nil, nil
	}
	want := []workerEntry{
		{ID: "w-b", Pool: "image", Host: "vm2", PID: 7, Version: "v1.2.3", Concurrency: 2},
		{ID: "w-a", Pool: "sys", Host: "vm1", PID: 8, Version: "dev", Concurrency: 4, Busy: 4, Done: 1},
		{ID: "w-b", Pool: "sys", Host: "vm2", PID: 7, Version: "v1.2.3", Concurrency: 10, Busy: 3, Done: 40, Failed: 2},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("workers (-want +got):\n%s", d)
	}
	sys := listWorkers(t, f.url+"/v1/workers?pool=sys")
	if len(sys) != 2 || sys[0].ID != "w-a" || sys[1].ID != "w-b" {
		t.Errorf("?pool=sys: %+v, want w-a and w-b", sys)
	}
	// A declared pool nobody serves: an empty list, not an error.
	for _, id := range []string{"w-a", "w-b"} {
		if err := f.env.Store.Release(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if got := listWorkers(t, f.url+"/v1/workers?pool=sys"); len(got) != 0 {
		t.Errorf("after the workers released their leases: %+v", got)
	}

	for q, want := range map[string]struct {
		status int
		code   string
	}{
		"pool=nope":             {404, "not_found"},
		"pool=Sys":              {400, "invalid_field"},
		"pool=%2E%2E%2Fsys":     {400, "invalid_field"},
		"pool=" + longName(100): {400, "invalid_field"},
	} {
		r := do(t, "GET", f.url+"/v1/workers?"+q, nil, "")
		if e := r.apiError(t); r.status != want.status || e.Code != want.code || e.Field != "pool" {
			t.Errorf("?%s: %d %+v; want %d %s naming pool", q, r.status, e, want.status, want.code)
		}
	}
}

func longName(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a'
	}
	return string(b)
}

// Pausing and resuming a pool is recorded in Redis, announced on the
// events channel, shown by GET /v1/queues, and refused for what is not a
// known pool.
func TestPauseAndResume(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	ctx := context.Background()
	heard := make(chan string, 10)
	n := f.env.Store.NewNotifier(store.Handlers{Pause: func(pool string, paused bool) {
		if pool != "" {
			heard <- map[bool]string{true: "pause ", false: "resume "}[paused] + pool
		}
	}})
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Stop(context.Background()) })
	time.Sleep(200 * time.Millisecond) // the subscription is confirmed in the background

	before := time.Now().Truncate(time.Millisecond)
	p := do(t, "POST", f.url+"/v1/queues/sys/pause", nil, "").poolState(t)
	if p.Pool != "sys" || !p.Paused || !p.Changed || p.PausedAt == nil || p.PausedAt.Before(before) {
		t.Errorf("pause: %+v, want sys paused now, changed", p)
	}
	again := do(t, "POST", f.url+"/v1/queues/sys/pause", nil, "").poolState(t)
	if !again.Paused || again.Changed || !again.PausedAt.Equal(*p.PausedAt) {
		t.Errorf("pause again: %+v, want paused, unchanged, since the first pause (%v)", again, p.PausedAt)
	}
	if got := recv(t, heard); got != "pause sys" {
		t.Errorf("heard %q, want pause sys", got)
	}
	if paused, err := f.env.Store.Paused(ctx); err != nil || len(paused) != 1 {
		t.Errorf("recorded pauses %v (%v), want sys", paused, err)
	}
	if qs := pausedQueues(t, f.url); len(qs) != 1 || !qs[0].Paused || qs[0].PausedAt == nil || qs[0].Pool != "sys" {
		t.Errorf("GET /v1/queues: %+v, want sys paused", qs)
	}

	r := do(t, "POST", f.url+"/v1/queues/sys/resume", nil, "").poolState(t)
	if r.Paused || !r.Changed {
		t.Errorf("resume: %+v, want not paused, changed", r)
	}
	if got := recv(t, heard); got != "resume sys" {
		t.Errorf("heard %q, want resume sys", got)
	}
	if r := do(t, "POST", f.url+"/v1/queues/sys/resume", nil, "").poolState(t); r.Changed {
		t.Errorf("resume again: %+v, want unchanged", r)
	}
	if qs := pausedQueues(t, f.url); len(qs) != 1 || qs[0].Paused || qs[0].PausedAt != nil {
		t.Errorf("GET /v1/queues after the resume: %+v", qs)
	}

	// A pause whose pool's types are gone can still be lifted.
	opts, _ := redis.ParseURL(testenv.RedisURL())
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	if err := rdb.HSet(ctx, f.env.NS.PausedKey(), "ghost", `{"at_ms":1}`).Err(); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "POST", f.url+"/v1/queues/ghost/resume", nil, "").poolState(t); !r.Changed {
		t.Errorf("resume of a paused pool without types: %+v", r)
	}
	if got := recv(t, heard); got != "resume ghost" {
		t.Errorf("heard %q, want resume ghost", got)
	}

	for _, c := range []struct {
		method, path string
		status       int
		code, field  string
	}{
		{"POST", "/v1/queues/nope/pause", 404, "not_found", "pool"},
		{"POST", "/v1/queues/nope/resume", 404, "not_found", "pool"},
		{"POST", "/v1/queues/SYS/pause", 400, "invalid_field", "pool"},
		{"POST", "/v1/queues/sys%3Aevil/pause", 400, "invalid_field", "pool"},
		{"POST", "/v1/queues/" + longName(64) + "/pause", 400, "invalid_field", "pool"},
		{"GET", "/v1/queues/sys/pause", 405, "method_not_allowed", ""},
		{"DELETE", "/v1/queues/sys/resume", 405, "method_not_allowed", ""},
		{"POST", "/v1/queues/sys/stop", 404, "not_found", ""},
	} {
		r := do(t, c.method, f.url+c.path, nil, "")
		if e := r.apiError(t); r.status != c.status || e.Code != c.code || e.Field != c.field {
			t.Errorf("%s %s: %d %+v; want %d %s naming %q", c.method, c.path, r.status, e, c.status, c.code, c.field)
		}
	}
	if paused, _ := f.env.Store.Paused(ctx); len(paused) != 0 {
		t.Errorf("refused requests left pauses: %v", paused)
	}
	select {
	case got := <-heard:
		t.Errorf("heard %q after the refused requests, want nothing", got)
	default:
	}
}

// pausedQueues reads GET /v1/queues for what it says of pauses.
func pausedQueues(t *testing.T, url string) []poolState {
	t.Helper()
	r := do(t, "GET", url+"/v1/queues", nil, "")
	var body struct{ Queues []poolState }
	if r.status != 200 || json.Unmarshal(r.body, &body) != nil {
		t.Fatalf("GET /v1/queues: %d %s", r.status, r.body)
	}
	return body.Queues
}

func recv(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("nothing heard on the events channel")
		return ""
	}
}

// With keys: listing workers needs read, pausing and resuming admin and a
// key for every type; both are audited.
func TestPauseNeedsAdmin(t *testing.T) {
	t.Parallel()
	k := setupKeyed(t, api.Config{},
		apikey.Key{Name: "ci", Scopes: scopes(apikey.Submit)},
		apikey.Key{Name: "dash", Scopes: scopes(apikey.Read)},
		apikey.Key{Name: "ops", Scopes: scopes(apikey.Admin)},
		apikey.Key{Name: "sleeper", Scopes: scopes(apikey.Admin), Types: []string{"sys.sleep"}},
	)
	for key, want := range map[string]int{"": 401, "ci": 403, "dash": 200, "ops": 200, "sleeper": 200} {
		if r := k.as(t, key, "GET", "/v1/workers", ""); r.status != want {
			t.Errorf("%q GET /v1/workers: %d %s, want %d", key, r.status, r.body, want)
		}
	}
	for _, path := range []string{"/v1/queues/sys/pause", "/v1/queues/sys/resume"} {
		for key, want := range map[string]int{"": 401, "ci": 403, "dash": 403, "sleeper": 403} {
			if r := k.as(t, key, "POST", path, ""); r.status != want || r.apiError(t).Code != map[int]string{401: "unauthorized", 403: "forbidden"}[want] {
				t.Errorf("%q POST %s: %d %s, want %d", key, path, r.status, r.body, want)
			}
		}
	}
	if paused, _ := k.env.Store.Paused(context.Background()); len(paused) != 0 {
		t.Fatalf("refused keys paused %v", paused)
	}
	p := k.as(t, "ops", "POST", "/v1/queues/sys/pause", "").poolState(t)
	if !p.Paused || p.PausedBy != "ops" {
		t.Errorf("ops pauses: %+v, want paused by ops", p)
	}
	k.as(t, "ops", "POST", "/v1/queues/sys/resume", "").poolState(t)
	var actions []string
	for _, rec := range logLines(t, k.logs, "audit") {
		if rec["key"] == "ops" && rec["pool"] == "sys" {
			actions = append(actions, rec["action"].(string))
		}
	}
	if d := cmp.Diff([]string{"pause", "resume"}, actions); d != "" {
		t.Errorf("audit lines of ops on pool sys (-want +got):\n%s", d)
	}
}
