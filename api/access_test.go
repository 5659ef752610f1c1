package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/apikey"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/workers/sys"
)

// logLines returns the JSON log records in b whose msg is msg.
func logLines(t *testing.T, b *syncBuffer, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(b.String(), "\n") {
		var rec map[string]any
		if l == "" || json.Unmarshal([]byte(l), &rec) != nil {
			continue
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// keyed is an API with keys, over a namespace where the sys types are
// declared and nothing consumes.
type keyed struct {
	*fixture
	logs    *syncBuffer
	secrets map[string]string // key name → secret
	srv     *api.Server
}

func setupKeyed(t *testing.T, cfg api.Config, keys ...apikey.Key) *keyed {
	t.Helper()
	k := &keyed{logs: &syncBuffer{}, secrets: map[string]string{}}
	for i := range keys {
		secret, sum, err := apikey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		keys[i].SHA256 = sum
		k.secrets[keys[i].Name] = secret
	}
	ring, err := apikey.NewRing(keys)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Keys = ring
	f := setup(t, api.Config{})
	cfg.Addr = cmpOr(cfg.Addr, "127.0.0.1:0")
	cfg.Logger = slog.New(slog.NewJSONHandler(io.MultiWriter(k.logs, tLog{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := startServer(t, cfg, f.env.Broker, f.env.Store)
	t.Cleanup(func() {
		for name, secret := range k.secrets {
			if strings.Contains(k.logs.String(), secret) {
				t.Errorf("the logs hold key %s's secret", name)
			}
		}
	})
	k.fixture = &fixture{env: f.env, url: "http://" + srv.Addr()}
	k.srv = srv
	return k
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

type tLog struct{ t *testing.T }

func (w tLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// as sends a request with the named key ("" for none).
func (k *keyed) as(t *testing.T, key, method, path, body string) response {
	t.Helper()
	h := map[string]string{}
	if key != "" {
		h["Authorization"] = "Bearer " + k.secrets[key]
	}
	return do(t, method, k.url+path, h, body)
}

func scopes(s ...apikey.Scope) []apikey.Scope { return s }

func TestKeysGuardEveryEndpoint(t *testing.T) {
	t.Parallel()
	k := setupKeyed(t, api.Config{},
		apikey.Key{Name: "ci", Scopes: scopes(apikey.Submit)},
		apikey.Key{Name: "dash", Scopes: scopes(apikey.Read)},
		apikey.Key{Name: "ops", Scopes: scopes(apikey.Admin)},
	)
	// A job to read and cancel, submitted by ci.
	res := k.as(t, "ci", "POST", "/v1/jobs", `{"type":"sys.echo","payload":{"n":1}}`)
	if res.status != 202 {
		t.Fatalf("ci submits: %d %s", res.status, res.body)
	}
	job := res.job(t)
	if job.SubmittedBy != "ci" {
		t.Errorf("submitted_by = %q, want ci", job.SubmittedBy)
	}
	id := job.ID

	endpoints := []struct {
		method, path, body string
		scope              apikey.Scope
	}{
		{"POST", "/v1/jobs", `{"type":"sys.echo"}`, apikey.Submit},
		{"POST", "/v1/jobs/batch", `{"jobs":[{"type":"sys.echo"}]}`, apikey.Submit},
		{"GET", "/v1/jobs/" + id, "", apikey.Read},
		{"GET", "/v1/jobs/" + id + "/artifact", "", apikey.Read},
		{"GET", "/v1/queues", "", apikey.Read},
		{"GET", "/v1/autoscale", "", apikey.Read},
		{"GET", "/metrics", "", apikey.Read},
		{"GET", "/v1/dead?pool=sys", "", apikey.Admin},
		{"POST", "/v1/dead/replay", `{"pool":"sys","all":true}`, apikey.Admin},
		{"DELETE", "/v1/dead?pool=sys", "", apikey.Admin},
		{"POST", "/v1/jobs/" + id + "/cancel", "", apikey.Admin}, // last: it ends the job
	}
	holds := map[string][]apikey.Scope{"ci": {apikey.Submit}, "dash": {apikey.Read}, "ops": {apikey.Submit, apikey.Read, apikey.Admin}}
	before := k.env.Messages(t, sys.Pool)
	for _, e := range endpoints {
		t.Run(e.method+" "+e.path, func(t *testing.T) {
			// No key, a malformed header, an unknown key: 401 and a challenge.
			for name, auth := range map[string]string{
				"none": "", "basic": "Basic " + k.secrets["ops"], "empty bearer": "Bearer ",
				"unknown": "Bearer wrn_notakeyatall", "hash for key": "Bearer " + apikey.Sum(k.secrets["ops"]),
			} {
				h := map[string]string{}
				if auth != "" {
					h["Authorization"] = auth
				}
				r := do(t, e.method, k.url+e.path, h, e.body)
				if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") || r.apiError(t).Code != "unauthorized" {
					t.Errorf("%s: %d %q %s; want 401 with a Bearer challenge", name, r.status, r.header.Get("WWW-Authenticate"), r.body)
				}
			}
			for key, held := range holds {
				r := k.as(t, key, e.method, e.path, e.body)
				allowed := false
				for _, s := range held {
					allowed = allowed || s == e.scope
				}
				switch {
				case allowed && (r.status == 401 || r.status == 403):
					t.Errorf("%s (holds %v): %d %s; want it allowed", key, held, r.status, r.body)
				case !allowed && r.status != 403:
					t.Errorf("%s (holds %v): %d %s; want 403", key, held, r.status, r.body)
				case !allowed && !strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_scope"`):
					t.Errorf("%s: 403 without insufficient_scope challenge: %q", key, r.header.Get("WWW-Authenticate"))
				}
			}
		})
	}
	// Of all those, only ci's and ops's two submissions each were published.
	if got := k.env.Messages(t, sys.Pool) - before; got != 4 {
		t.Errorf("%d messages published by the requests above, want 4 (two endpoints × ci and ops)", got)
	}
	// Probes and the description are open; the rest of the paths are not.
	for _, p := range []string{"/healthz", "/readyz", "/openapi.json"} {
		if r := do(t, "GET", k.url+p, nil, ""); r.status != 200 {
			t.Errorf("GET %s without a key: %d, want 200", p, r.status)
		}
	}
	if r := do(t, "GET", k.url+"/v2/things", nil, ""); r.status != 401 {
		t.Errorf("unknown path without a key: %d, want 401 (a stranger learns nothing)", r.status)
	}
	if r := k.as(t, "dash", "GET", "/v2/things", ""); r.status != 404 {
		t.Errorf("unknown path with a key: %d, want 404", r.status)
	}
	// The audit lines: ci's submission and ops's cancel, with key and remote.
	var sawSubmit, sawCancel bool
	for _, rec := range logLines(t, k.logs, "audit") {
		if rec["remote"] == nil || rec["remote"] == "" {
			t.Errorf("audit line without a remote address: %v", rec)
		}
		switch {
		case rec["action"] == "submit" && rec["key"] == "ci" && rec["job"] == id:
			sawSubmit = true
		case rec["action"] == "cancel" && rec["key"] == "ops" && rec["job"] == id:
			sawCancel = true
		}
	}
	if !sawSubmit || !sawCancel {
		t.Errorf("audit lines: submit by ci %v, cancel by ops %v; want both", sawSubmit, sawCancel)
	}
}

func TestKeysLimitedToTypes(t *testing.T) {
	t.Parallel()
	k := setupKeyed(t, api.Config{},
		apikey.Key{Name: "echoer", Scopes: scopes(apikey.Submit, apikey.Read), Types: []string{"sys.echo"}},
		apikey.Key{Name: "sleeper", Scopes: scopes(apikey.Admin), Types: []string{"sys.sleep"}},
	)
	before := k.env.Messages(t, sys.Pool)
	r := k.as(t, "echoer", "POST", "/v1/jobs", `{"type":"sys.sleep","payload":{"ms":1}}`)
	if e := r.apiError(t); r.status != 403 || e.Field != "type" {
		t.Fatalf("echoer submits sys.sleep: %d %+v; want 403 naming type", r.status, e)
	}
	r = k.as(t, "echoer", "POST", "/v1/jobs/batch", `{"jobs":[{"type":"sys.echo"},{"type":"sys.sleep","payload":{"ms":1}}]}`)
	var batch struct {
		Jobs []struct {
			Job   *jobs.Job
			Error *apiError
		}
	}
	if err := json.Unmarshal(r.body, &batch); err != nil || r.status != 200 || len(batch.Jobs) != 2 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	if batch.Jobs[0].Job == nil || batch.Jobs[1].Error == nil || batch.Jobs[1].Error.Code != "forbidden" {
		t.Fatalf("batch entries: %s; want the echo accepted and the sleep refused", r.body)
	}
	if got := k.env.Messages(t, sys.Pool) - before; got != 1 {
		t.Errorf("%d published, want 1: the refused job was published", got)
	}
	echo := batch.Jobs[0].Job.ID
	// sleeper (admin of sys.sleep) may not read or cancel the echo job, nor
	// touch dead letters, which hold every type of a pool.
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/jobs/" + echo}, {"GET", "/v1/jobs/" + echo + "?wait=10s"}, {"GET", "/v1/jobs/" + echo + "/artifact"},
		{"POST", "/v1/jobs/" + echo + "/cancel"}, {"GET", "/v1/dead?pool=sys"}, {"DELETE", "/v1/dead?pool=sys"},
	} {
		if r := k.as(t, "sleeper", c.method, c.path, ""); r.status != 403 {
			t.Errorf("sleeper %s %s: %d %s, want 403", c.method, c.path, r.status, r.body)
		}
	}
	if r := k.as(t, "echoer", "GET", "/v1/jobs/"+echo, ""); r.status != 200 || r.job(t).Status != jobs.StatusQueued {
		t.Errorf("echoer reads its job: %d %s", r.status, r.body)
	}
	// Queues are counts, not jobs: a limited key may see them.
	if r := k.as(t, "sleeper", "GET", "/v1/queues", ""); r.status != 200 {
		t.Errorf("sleeper GET /v1/queues: %d", r.status)
	}
}

func TestKeysRateLimits(t *testing.T) {
	t.Parallel()
	k := setupKeyed(t, api.Config{MaxBatch: 100},
		// One request a minute: the second is refused.
		apikey.Key{Name: "slow", Scopes: scopes(apikey.Admin), RequestsPerSecond: 1.0 / 60},
		// Five jobs a minute, batches of at most four.
		apikey.Key{Name: "few", Scopes: scopes(apikey.Submit), RequestsPerSecond: -1, JobsPerMinute: 5, MaxBatch: 4},
	)
	if r := k.as(t, "slow", "GET", "/v1/queues", ""); r.status != 200 {
		t.Fatalf("first request: %d %s", r.status, r.body)
	}
	r := k.as(t, "slow", "GET", "/v1/queues", "")
	if r.status != 429 || r.apiError(t).Code != "rate_limited" {
		t.Fatalf("second request: %d %s; want 429", r.status, r.body)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
		t.Errorf("Retry-After = %q, want 1 to 60 seconds", r.header.Get("Retry-After"))
	}

	before := k.env.Messages(t, sys.Pool)
	batch := func(n int) string {
		return `{"jobs":[` + strings.TrimSuffix(strings.Repeat(`{"type":"sys.echo"},`, n), ",") + `]}`
	}
	if r := k.as(t, "few", "POST", "/v1/jobs/batch", batch(5)); r.status != 400 || r.apiError(t).Field != "jobs" {
		t.Errorf("a batch of 5 over max_batch 4: %d %s; want 400 naming jobs", r.status, r.body)
	}
	if r := k.as(t, "few", "POST", "/v1/jobs/batch", batch(3)); r.status != 200 {
		t.Fatalf("3 of 5 jobs: %d %s", r.status, r.body)
	}
	if r := k.as(t, "few", "POST", "/v1/jobs/batch", batch(3)); r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Errorf("3 more with 2 left: %d %s; want 429 with Retry-After", r.status, r.body)
	}
	if r := k.as(t, "few", "POST", "/v1/jobs", `{"type":"sys.echo"}`); r.status != 202 {
		t.Errorf("1 more with 2 left: %d %s", r.status, r.body)
	}
	if got := k.env.Messages(t, sys.Pool) - before; got != 4 {
		t.Errorf("%d published, want 4: a refused request published jobs", got)
	}
}

func TestKeysWithoutKeysLoopbackOnly(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	for _, addr := range []string{"0.0.0.0:0", "[::]:0"} {
		srv, err := api.New(api.Config{Addr: addr, Logger: testenv.Logger(t)}, env.Broker, env.Store)
		if err != nil {
			t.Fatal(err)
		}
		err = srv.Start(context.Background())
		if err == nil {
			_ = srv.Stop(context.Background())
			t.Fatalf("started on %s without keys", addr)
		}
		if !strings.Contains(err.Error(), "--insecure-no-auth") || !strings.Contains(err.Error(), "warren keys new") {
			t.Errorf("the refusal does not say what to do: %v", err)
		}
	}
	logs := &syncBuffer{}
	srv, err := api.New(api.Config{Addr: "0.0.0.0:0", InsecureNoAuth: true,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))}, env.Broker, env.Store)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatalf("with InsecureNoAuth: %v", err)
	}
	defer srv.Stop(context.Background())
	if !strings.Contains(logs.String(), `"level":"WARN"`) || !strings.Contains(logs.String(), "WITHOUT KEYS") {
		t.Errorf("no loud warning: %s", logs.String())
	}
}

func TestHostAndOriginChecks(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{AllowedOrigins: []string{"https://ops.example.com"}})
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(f.url, "http://"))
	before := f.env.Messages(t, sys.Pool)
	send := func(host string, header map[string]string) response {
		t.Helper()
		h := map[string]string{"Host": host}
		for k, v := range header {
			h[k] = v
		}
		return do(t, "POST", f.url+"/v1/jobs", h, `{"type":"sys.echo"}`)
	}
	refused := []struct {
		name, host string
		header     map[string]string
		code       string
	}{
		// DNS rebinding: the attacker's name resolves to 127.0.0.1.
		{"rebound name", "rebind.attacker.example:" + port, nil, "forbidden_host"},
		{"rebound name without port", "attacker.example", nil, "forbidden_host"},
		{"cross-site origin", "", map[string]string{"Origin": "http://attacker.example"}, "forbidden_origin"},
		{"same host, other port", "", map[string]string{"Origin": "http://127.0.0.1:1"}, "forbidden_origin"},
		{"same host, other scheme", "", map[string]string{"Origin": "https://127.0.0.1:" + port}, "forbidden_origin"},
		{"null origin", "", map[string]string{"Origin": "null"}, "forbidden_origin"},
		{"cross-site fetch without origin", "", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}, "forbidden_origin"},
	}
	for _, c := range refused {
		r := send(c.host, c.header)
		if r.status != 403 || r.apiError(t).Code != c.code {
			t.Errorf("%s: %d %s; want 403 %s", c.name, r.status, r.body, c.code)
		}
	}
	if got := f.env.Messages(t, sys.Pool) - before; got != 0 {
		t.Fatalf("%d published by refused requests", got)
	}
	accepted := []struct {
		name, host string
		header     map[string]string
	}{
		{"address", "", nil},
		{"localhost", "localhost:" + port, nil},
		{"sub.localhost", "warren.localhost:" + port, nil},
		{"ipv6 loopback", "[::1]:" + port, nil},
		{"same origin", "", map[string]string{"Origin": "http://127.0.0.1:" + port}},
		{"allowed origin", "", map[string]string{"Origin": "https://ops.example.com"}},
		{"same-site fetch", "", map[string]string{"Sec-Fetch-Site": "same-origin"}},
	}
	for _, c := range accepted {
		if r := send(c.host, c.header); r.status != 202 {
			t.Errorf("%s: %d %s; want 202", c.name, r.status, r.body)
		}
	}
}

func TestMetricsAddrServesWithoutKeys(t *testing.T) {
	t.Parallel()
	k := setupKeyed(t, api.Config{MetricsAddr: "127.0.0.1:0"}, apikey.Key{Name: "dash", Scopes: scopes(apikey.Read)})
	if r := do(t, "GET", k.url+"/metrics", nil, ""); r.status != 401 {
		t.Errorf("GET /metrics on the API without a key: %d, want 401", r.status)
	}
	if r := k.as(t, "dash", "GET", "/metrics", ""); r.status != 200 || !strings.Contains(string(r.body), "warren_") {
		t.Errorf("GET /metrics on the API with a read key: %d", r.status)
	}
	m := "http://" + k.srv.MetricsAddr()
	if r := do(t, "GET", m+"/metrics", nil, ""); r.status != 200 || !strings.Contains(string(r.body), "warren_") {
		t.Errorf("GET /metrics on the metrics address: %d %.200s", r.status, r.body)
	}
	// The metrics address is not the API: its 404 is net/http's, unchecked.
	req, err := http.NewRequest("POST", m+"/v1/jobs", strings.NewReader(`{"type":"sys.echo"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 202 {
		t.Error("the metrics address takes jobs")
	}
}
