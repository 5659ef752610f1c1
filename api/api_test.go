package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/workers/sys"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis keeps one background goroutine per process for its
		// connection-pool clock; it is not tied to any client.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

type fixture struct {
	env *testenv.Env
	url string
}

// setup starts an API over a fresh namespace in which the sys types are
// declared and the sys queue bound, but no worker consumes: whatever the API
// publishes stays in the queue to be counted.
func setup(t *testing.T, cfg api.Config) *fixture {
	t.Helper()
	env := testenv.New(t)
	ctx := context.Background()
	types := []jobs.Type{sys.Echo.WithDefaults(), sys.Sleep.WithDefaults(), sys.Fail.WithDefaults()}
	if err := env.Broker.DeclarePool(ctx, sys.Pool, []string{"sys.echo", "sys.sleep", "sys.fail"}); err != nil {
		t.Fatal(err)
	}
	if err := env.Store.DeclareTypes(ctx, types); err != nil {
		t.Fatal(err)
	}
	return &fixture{env: env, url: start(t, cfg, env.Broker, env.Store)}
}

// start runs a Server on a free port until the test ends and returns its
// URL.
func start(t *testing.T, cfg api.Config, b api.Broker, st api.Store) string {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	return "http://" + startServer(t, cfg, b, st).Addr()
}

// startServer runs a Server as configured (a test's logger when cfg names
// none) until the test ends.
func startServer(t *testing.T, cfg api.Config, b api.Broker, st api.Store) *api.Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testenv.Logger(t)
	}
	srv, err := api.New(cfg, b, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return srv
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) job(t *testing.T) jobs.Job {
	t.Helper()
	var j jobs.Job
	if err := json.Unmarshal(r.body, &j); err != nil {
		t.Fatalf("decode job from %s: %v", r.body, err)
	}
	return j
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
}

func (r response) apiError(t *testing.T) apiError {
	t.Helper()
	var e struct{ Error *apiError }
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == nil {
		t.Fatalf("want a JSON error body, got %q (%v)", r.body, err)
	}
	return *e.Error
}

// do sends a request (with Content-Type: application/json when it has a
// body) and checks the exchange against the OpenAPI document (exchange).
func do(t *testing.T, method, url string, header map[string]string, body string) response {
	t.Helper()
	return doChecked(t, method, url, header, body, false)
}

// doInvalid is do for a request that breaks the document on purpose and
// that the server may take all the same (a batch whose bad entries it
// refuses one by one in a 200; a body sent where none is read): its
// response is checked, the request not.
func doInvalid(t *testing.T, method, url string, header map[string]string, body string) response {
	t.Helper()
	return doChecked(t, method, url, header, body, true)
}

func doChecked(t *testing.T, method, url string, header map[string]string, body string, responsesOnly bool) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if h := header["Host"]; h != "" {
		req.Host = h // the client sends req.Host, not the header
	}
	resp, b, err := exchangeChecked(t, http.DefaultClient, req, responsesOnly)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func TestRejectedRequestsWriteAndPublishNothing(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{MaxBodyBytes: 2048, MaxBatch: 5})
	big := `{"type":"sys.echo","payload":{"s":"` + strings.Repeat("x", 3000) + `"}}`
	six := `{"jobs":[` + strings.TrimSuffix(strings.Repeat(`{"type":"sys.echo"},`, 6), ",") + `]}`
	tests := []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
		code, field              string
		message                  string // a part the message must hold
	}{
		{name: "malformed json", method: "POST", path: "/v1/jobs", body: `{"type":`, status: 400, code: "invalid_json"},
		{name: "not json", method: "POST", path: "/v1/jobs", body: `hello`, status: 400, code: "invalid_json"},
		{name: "empty body", method: "POST", path: "/v1/jobs", header: map[string]string{"Content-Type": "application/json"}, status: 400, code: "invalid_json"},
		{name: "two values", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo"} {}`, status: 400, code: "invalid_json"},
		{name: "array body", method: "POST", path: "/v1/jobs", body: `[1]`, status: 400, code: "invalid_json"},
		{name: "unknown field", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo","urgency":1}`, status: 400, code: "unknown_field", field: "urgency"},
		{name: "missing type", method: "POST", path: "/v1/jobs", body: `{"payload":{}}`, status: 400, code: "missing_field", field: "type"},
		{name: "priority too high", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo","priority":10}`, status: 400, code: "invalid_field", field: "priority"},
		{name: "priority negative", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo","priority":-1}`, status: 400, code: "invalid_field", field: "priority"},
		{name: "priority fraction", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo","priority":1.5}`, status: 400, code: "invalid_field", field: "priority"},
		{name: "priority text", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo","priority":"high"}`, status: 400, code: "invalid_field", field: "priority"},
		{name: "malformed type", method: "POST", path: "/v1/jobs", body: `{"type":"Not A Type"}`, status: 400, code: "invalid_field", field: "type"},
		{name: "type not a string", method: "POST", path: "/v1/jobs", body: `{"type":7}`, status: 400, code: "invalid_field", field: "type"},
		{name: "unknown type lists known", method: "POST", path: "/v1/jobs", body: `{"type":"image.blur"}`, status: 400, code: "unknown_type", field: "type", message: "sys.echo, sys.fail, sys.sleep"},
		{name: "payload wrong type", method: "POST", path: "/v1/jobs", body: `{"type":"sys.sleep","payload":{"ms":"soon"}}`, status: 400, code: "invalid_payload", field: "payload.ms"},
		{name: "payload missing field", method: "POST", path: "/v1/jobs", body: `{"type":"sys.sleep","payload":{}}`, status: 400, code: "invalid_payload", field: "payload.ms"},
		{name: "payload extra field", method: "POST", path: "/v1/jobs", body: `{"type":"sys.sleep","payload":{"ms":1,"extra":true}}`, status: 400, code: "invalid_payload", field: "payload.extra"},
		{name: "payload out of range", method: "POST", path: "/v1/jobs", body: `{"type":"sys.sleep","payload":{"ms":-5}}`, status: 400, code: "invalid_payload", field: "payload.ms"},
		{name: "payload not an object", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo","payload":[1,2]}`, status: 400, code: "invalid_field", field: "payload"},
		{name: "body too large", method: "POST", path: "/v1/jobs", body: big, status: 413, code: "too_large"},
		{name: "wrong content type", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo"}`, header: map[string]string{"Content-Type": "text/plain"}, status: 415, code: "unsupported_media"},
		{name: "bad timeout", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo","timeout":"soon"}`, status: 400, code: "invalid_field", field: "timeout"},
		{name: "zero timeout", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo","timeout":"0s"}`, status: 400, code: "invalid_field", field: "timeout"},
		{name: "huge timeout", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo","timeout":"48h"}`, status: 400, code: "invalid_field", field: "timeout"},
		{name: "max_attempts zero", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo","max_attempts":0}`, status: 400, code: "invalid_field", field: "max_attempts"},
		{name: "max_attempts over", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo","max_attempts":101}`, status: 400, code: "invalid_field", field: "max_attempts"},
		{name: "max_attempts fraction", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo","max_attempts":1.5}`, status: 400, code: "invalid_field", field: "max_attempts"},
		{name: "max_attempts text", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo","max_attempts":"3"}`, status: 400, code: "invalid_field", field: "max_attempts"},
		{name: "metadata not strings", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo","metadata":{"n":1}}`, status: 400, code: "invalid_field", field: "metadata.n"},
		{name: "two different keys", method: "POST", path: "/v1/jobs", body: `{"type":"sys.echo","idempotency_key":"a"}`, header: map[string]string{"Idempotency-Key": "b"}, status: 400, code: "invalid_field", field: "idempotency_key"},
		{name: "batch too big", method: "POST", path: "/v1/jobs/batch", body: six, status: 400, code: "invalid_field", field: "jobs"},
		{name: "batch without jobs", method: "POST", path: "/v1/jobs/batch", body: `{}`, status: 400, code: "missing_field", field: "jobs"},
		{name: "batch unknown field", method: "POST", path: "/v1/jobs/batch", body: `{"jobs":[],"x":1}`, status: 400, code: "unknown_field", field: "x"},
		{name: "malformed id", method: "GET", path: "/v1/jobs/12345", status: 400, code: "invalid_id", field: "id"},
		{name: "unknown id", method: "GET", path: "/v1/jobs/0190c5a0-7b1e-7cc3-8f0e-2d1b6c3c9f10", status: 404, code: "not_found"},
		{name: "bad wait", method: "GET", path: "/v1/jobs/0190c5a0-7b1e-7cc3-8f0e-2d1b6c3c9f10?wait=forever", status: 400, code: "invalid_field", field: "wait"},
		{name: "wrong method", method: "DELETE", path: "/v1/jobs", status: 405, code: "method_not_allowed"},
		{name: "no such endpoint", method: "GET", path: "/v2/things", status: 404, code: "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.method, f.url+tt.path, tt.header, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d; body %s", r.status, tt.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			e := r.apiError(t)
			if e.Code != tt.code || e.Field != tt.field {
				t.Errorf("error code %q field %q, want %q %q (message %q)", e.Code, e.Field, tt.code, tt.field, e.Message)
			}
			if e.Message == "" || !strings.Contains(e.Message, tt.message) {
				t.Errorf("message %q, want one containing %q", e.Message, tt.message)
			}
		})
	}
	if r := do(t, "DELETE", f.url+"/v1/jobs", nil, ""); r.header.Get("Allow") != "GET, HEAD, POST" {
		t.Errorf("405 Allow header %q, want GET, HEAD, POST", r.header.Get("Allow"))
	}
	if keys := f.env.JobKeys(t); len(keys) != 0 {
		t.Errorf("rejected requests wrote records: %v", keys)
	}
	if n := f.env.Messages(t, sys.Pool); n != 0 {
		t.Errorf("rejected requests published %d messages", n)
	}
}

func TestSubmitAcceptsAfterConfirm(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	r := do(t, "POST", f.url+"/v1/jobs", map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		`{"type":"sys.echo","payload":{"n":1},"max_attempts":5,"timeout":"45s","metadata":{"team":"search"}}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d, want 202: %s", r.status, r.body)
	}
	j := r.job(t)
	if r.header.Get("Location") != "/v1/jobs/"+j.ID {
		t.Errorf("Location %q", r.header.Get("Location"))
	}
	want := jobs.Job{
		ID: j.ID, Type: "sys.echo", Pool: "sys", Status: jobs.StatusQueued, Payload: json.RawMessage(`{"n":1}`),
		MaxAttempts: 5, Timeout: jobs.Duration(45 * time.Second), Metadata: map[string]string{"team": "search"},
		CreatedAt: j.CreatedAt,
	}
	if d := cmp.Diff(want, j); d != "" {
		t.Errorf("job (-want +got):\n%s", d)
	}
	if !jobs.ValidID(j.ID) || time.Since(j.CreatedAt) > time.Minute {
		t.Errorf("id %q created %s", j.ID, j.CreatedAt)
	}
	got := do(t, "GET", f.url+"/v1/jobs/"+j.ID, nil, "")
	if d := cmp.Diff(want, got.job(t)); got.status != 200 || d != "" {
		t.Errorf("GET status %d, job (-want +got):\n%s", got.status, d)
	}
	if n := f.env.Messages(t, sys.Pool); n != 1 {
		t.Errorf("%d messages in the queue, want 1", n)
	}
	// Defaults come from the type's declaration.
	d := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.sleep","payload":{"ms":1}}`).job(t)
	if d.MaxAttempts != jobs.DefaultMaxAttempts || d.Timeout != sys.Sleep.Timeout {
		t.Errorf("defaults: max_attempts %d timeout %s", d.MaxAttempts, d.Timeout.Std())
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	first := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","idempotency_key":"order-7"}`)
	second := do(t, "POST", f.url+"/v1/jobs", map[string]string{"Idempotency-Key": "order-7"}, `{"type":"sys.echo"}`)
	if first.status != 202 || second.status != 200 {
		t.Fatalf("statuses %d, %d; want 202, 200", first.status, second.status)
	}
	if a, b := first.job(t).ID, second.job(t).ID; a != b {
		t.Errorf("second submission made job %s, want the first, %s", b, a)
	}
	// A rejected request does not use up its key.
	if r := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.sleep","idempotency_key":"order-8"}`); r.status != 400 {
		t.Fatalf("status %d, want 400", r.status)
	}
	if r := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","idempotency_key":"order-8"}`); r.status != 202 {
		t.Errorf("key of a rejected request: status %d, want 202", r.status)
	}
	// The prefixes of the keys schedules and workflows give their jobs are
	// theirs: a submitter's key with one could stand for a tick or a
	// member before it is made. In the body, the header, a batch entry.
	for _, key := range []string{"schedule:nightly:2030-01-01T00:00:00Z", "workflow:01a2:steps.chain[0]"} {
		if r := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","idempotency_key":"`+key+`"}`); r.status != 400 || r.apiError(t).Field != "idempotency_key" {
			t.Errorf("key %s in the body: %d %s, want 400 naming idempotency_key", key, r.status, r.body)
		}
		if r := do(t, "POST", f.url+"/v1/jobs", map[string]string{"Idempotency-Key": key}, `{"type":"sys.echo"}`); r.status != 400 || r.apiError(t).Field != "idempotency_key" {
			t.Errorf("key %s in the header: %d %s, want 400 naming idempotency_key", key, r.status, r.body)
		}
		if r := do(t, "POST", f.url+"/v1/jobs/batch", nil, `{"jobs":[{"type":"sys.echo","idempotency_key":"`+key+`"}]}`); r.status != 200 ||
			!strings.Contains(string(r.body), `"field":"idempotency_key"`) || strings.Contains(string(r.body), `"job"`) {
			t.Errorf("key %s in a batch entry: %d %s, want the entry refused naming idempotency_key", key, r.status, r.body)
		}
	}
	if r := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","idempotency_key":"my-schedule:1"}`); r.status != 202 {
		t.Errorf("a key that only holds the word: %d %s, want 202", r.status, r.body)
	}
	if n := f.env.Messages(t, sys.Pool); n != 3 {
		t.Errorf("%d messages published, want 3", n)
	}
}

func TestBatch(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	// Entries the document refuses: the batch takes them, refusing each.
	r := doInvalid(t, "POST", f.url+"/v1/jobs/batch", nil, `{"jobs":[
		{"type":"sys.echo","payload":{"i":0}},
		{"type":"nope.nope"},
		{"type":"sys.sleep","payload":{"ms":5}},
		{"type":"sys.sleep","payload":{"ms":"x"}},
		{"type":"sys.echo","bogus":true},
		{"type":"sys.echo","payload":{"i":5}}
	]}`)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var out struct {
		Jobs []struct {
			Job   *jobs.Job
			Error *apiError
		}
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	type entry struct{ Type, Code, Field string }
	var got []entry
	for _, e := range out.Jobs {
		switch {
		case e.Job != nil && e.Error == nil:
			if e.Job.Status != jobs.StatusQueued || !jobs.ValidID(e.Job.ID) {
				t.Errorf("accepted entry %+v", e.Job)
			}
			got = append(got, entry{Type: e.Job.Type})
		case e.Error != nil && e.Job == nil:
			got = append(got, entry{Code: e.Error.Code, Field: e.Error.Field})
		default:
			t.Errorf("entry is neither a job nor an error: %+v", e)
		}
	}
	want := []entry{
		{Type: "sys.echo"}, {Code: "unknown_type", Field: "type"}, {Type: "sys.sleep"},
		{Code: "invalid_payload", Field: "payload.ms"}, {Code: "unknown_field", Field: "bogus"}, {Type: "sys.echo"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("entries (-want +got):\n%s", d)
	}
	if n := f.env.Messages(t, sys.Pool); n != 3 {
		t.Errorf("%d messages published, want 3", n)
	}
	if n := len(f.env.JobKeys(t)); n != 3 {
		t.Errorf("%d records written, want 3", n)
	}
}

func TestUnboundTypeIsRefusedAndLeavesNothing(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	// Declared in Redis but no queue bound: the mandatory publish comes back.
	orphan := jobs.Type{Name: "orphan.job", Pool: "orphan"}.WithDefaults()
	if err := env.Store.DeclareTypes(ctx, []jobs.Type{orphan}); err != nil {
		t.Fatal(err)
	}
	if err := env.Broker.DeclarePool(ctx, "orphan", nil); err != nil {
		t.Fatal(err)
	}
	url := start(t, api.Config{}, env.Broker, env.Store)
	r := do(t, "POST", url+"/v1/jobs", map[string]string{"Idempotency-Key": "k1"}, `{"type":"orphan.job"}`)
	if r.status != 503 || r.apiError(t).Code != "no_route" {
		t.Fatalf("status %d body %s, want 503 no_route", r.status, r.body)
	}
	if keys := env.JobKeys(t); len(keys) != 0 {
		t.Errorf("refused job left records: %v", keys)
	}
	if n := env.Messages(t, "orphan"); n != 0 {
		t.Errorf("%d messages in the orphan queue", n)
	}
}

// A creation that fails half-way leaves no record and publishes nothing:
// the pool's index of waiting jobs is made a string, so each job's ZADD
// fails after its record was written.
func TestFailedCreationLeavesNothing(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	opts, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	if err := rdb.Set(context.Background(), f.env.NS.WaitingKey("sys"), "not a sorted set", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for path, body := range map[string]string{
		"/v1/jobs":       `{"type":"sys.echo"}`,
		"/v1/jobs/batch": `{"jobs":[{"type":"sys.echo"},{"type":"sys.echo","payload":{"n":2}}]}`,
	} {
		if r := do(t, "POST", f.url+path, nil, body); r.status < 500 {
			t.Errorf("%s: status %d body %s, want a 5xx", path, r.status, r.body)
		}
	}
	if keys := f.env.JobKeys(t); len(keys) != 0 {
		t.Errorf("failed creations left records: %v", keys)
	}
	if n := f.env.Messages(t, "sys"); n != 0 {
		t.Errorf("%d messages published for jobs whose creation failed", n)
	}
}

// unreachableBroker is a Broker in env's namespace whose RabbitMQ never
// answers.
func unreachableBroker(t *testing.T, env *testenv.Env) *queue.Broker {
	t.Helper()
	down, err := queue.New(queue.Config{URL: "amqp://guest:guest@127.0.0.1:1/", Namespace: env.NS, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := down.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = down.Stop(context.Background()) })
	return down
}

// unreachableStore is a Store in env's namespace whose Redis never answers.
func unreachableStore(t *testing.T, env *testenv.Env) *store.Store {
	t.Helper()
	down, err := store.New(store.Config{URL: "redis://127.0.0.1:1/0", Namespace: env.NS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { down.Close() })
	return down
}

func TestRedisDownAnswers503AndPublishesNothing(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	if err := env.Broker.DeclarePool(context.Background(), sys.Pool, []string{"sys.echo"}); err != nil {
		t.Fatal(err)
	}
	url := start(t, api.Config{}, env.Broker, unreachableStore(t, env))
	for _, path := range []string{"/v1/jobs", "/v1/jobs/batch"} {
		body := `{"type":"sys.echo"}`
		if path == "/v1/jobs/batch" {
			body = `{"jobs":[` + body + `]}`
		}
		r := do(t, "POST", url+path, nil, body)
		if r.status != 503 || r.apiError(t).Code != "unavailable" || r.header.Get("Retry-After") == "" {
			t.Errorf("%s: status %d body %s, want 503 unavailable with Retry-After", path, r.status, r.body)
		}
	}
	if r := do(t, "GET", url+"/readyz", nil, ""); r.status != 503 {
		t.Errorf("readyz %d, want 503", r.status)
	}
	if n := env.Messages(t, sys.Pool); n != 0 {
		t.Errorf("%d messages published while Redis was down", n)
	}
}

func TestBrokerDownAnswers503AndWritesNothing(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	if err := env.Store.DeclareTypes(context.Background(), []jobs.Type{sys.Echo.WithDefaults()}); err != nil {
		t.Fatal(err)
	}
	url := start(t, api.Config{}, unreachableBroker(t, env), env.Store)
	r := do(t, "POST", url+"/v1/jobs", map[string]string{"Idempotency-Key": "kk"}, `{"type":"sys.echo"}`)
	if r.status != 503 || r.apiError(t).Code != "unavailable" {
		t.Errorf("status %d body %s, want 503 unavailable", r.status, r.body)
	}
	if r := do(t, "GET", url+"/readyz", nil, ""); r.status != 503 {
		t.Errorf("readyz %d, want 503", r.status)
	}
	if keys := env.JobKeys(t); len(keys) != 0 {
		t.Errorf("records written while the broker was down: %v", keys)
	}
}

func TestLongPoll(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	j := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo"}`).job(t)

	// A wait that ends before the job does returns the job as it stands.
	if r := do(t, "GET", f.url+"/v1/jobs/"+j.ID+"?wait=100ms", nil, ""); r.job(t).Status != jobs.StatusQueued {
		t.Errorf("status %s after a short wait, want queued", r.job(t).Status)
	}

	var (
		wg  sync.WaitGroup
		got response
	)
	const pollWait = 60 * time.Second
	wg.Go(func() { got = do(t, "GET", f.url+"/v1/jobs/"+j.ID+"?wait="+pollWait.String(), nil, "") })
	// The poll waits on the job's done channel; once it listens, the end
	// must wake it, not the end of its wait.
	opts, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx := context.Background()
	done := f.env.NS.DoneChannel(j.ID)
	testenv.Eventually(t, 10*time.Second, "the long-poll to subscribe to the job's done channel", func() bool {
		n, err := rdb.PubSubNumSub(ctx, done).Result()
		return err == nil && n[done] == 1
	})
	if _, err := f.env.Store.Start(ctx, j.ID, "test", -1, "token-"+jobs.NewID(), time.Now()); err != nil {
		t.Fatal(err)
	}
	ended := time.Now()
	if err := f.env.Store.Finish(ctx, j.ID, store.Outcome{Status: jobs.StatusSucceeded, Result: json.RawMessage(`{"ok":true}`)}, time.Now()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if g := got.job(t); g.Status != jobs.StatusSucceeded || string(g.Result) != `{"ok":true}` {
		t.Errorf("long-poll returned %+v, want the succeeded job", g)
	}
	if time.Since(ended) > pollWait/2 {
		t.Errorf("the long-poll returned when its wait ran out, not when the job ended")
	}
	testenv.Eventually(t, 10*time.Second, "the done channel to be unsubscribed after the poll", func() bool {
		n, err := rdb.PubSubNumSub(ctx, done).Result()
		return err == nil && n[done] == 0
	})
}

func TestHealthAndOpenAPI(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := do(t, "GET", f.url+p, nil, ""); r.status != 200 {
			t.Errorf("%s: %d %s", p, r.status, r.body)
		}
	}
	r := do(t, "GET", f.url+"/openapi.json", nil, "")
	var spec struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &spec); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(spec.OpenAPI, "3.") {
		t.Errorf("openapi version %q", spec.OpenAPI)
	}
	// Every route the server answers is documented, and nothing more.
	// Every GET answers HEAD too.
	want := map[string][]string{
		"/v1/jobs": {"get", "head", "post"}, "/v1/jobs/batch": {"post"}, "/v1/jobs/{id}": {"get", "head"},
		"/v1/jobs/{id}/cancel": {"post"}, "/v1/jobs/{id}/retry": {"post"}, "/v1/jobs/{id}/artifact": {"get", "head"},
		"/v1/dead": {"delete", "get", "head"}, "/v1/dead/replay": {"post"}, "/v1/queues": {"get", "head"},
		"/v1/types": {"get", "head"}, "/healthz": {"get", "head"}, "/readyz": {"get", "head"},
		"/openapi.json": {"get", "head"}, "/metrics": {"get", "head"},
		"/v1/queues/{pool}/pause": {"post"}, "/v1/queues/{pool}/resume": {"post"}, "/v1/workers": {"get", "head"},
		"/v1/autoscale": {"get", "head"}, "/ui/session": {"get", "head"}, "/ui/login": {"post"}, "/ui/logout": {"post"},
		"/v1/schedules": {"get", "head", "post"}, "/v1/schedules/{name}": {"delete", "get", "head"},
		"/v1/schedules/{name}/pause": {"post"}, "/v1/schedules/{name}/resume": {"post"},
		"/v1/limits": {"get", "head"}, "/v1/limits/{type}": {"delete", "get", "head", "put"},
		"/v1/workflows": {"get", "head", "post"}, "/v1/workflows/{id}": {"get", "head"}, "/v1/workflows/{id}/cancel": {"post"},
	}
	got := map[string][]string{}
	for p, ops := range spec.Paths {
		for m := range ops {
			if m != "parameters" && m != "summary" && m != "description" {
				got[p] = append(got[p], m)
			}
		}
	}
	for p := range got {
		slices.Sort(got[p]) // built from a map: any order
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("documented operations (-served +documented):\n%s", d)
	}
	// And each documented route answers something other than 404/405.
	for p := range want {
		path := strings.ReplaceAll(strings.ReplaceAll(p, "{id}", "0190c5a0-7b1e-7cc3-8f0e-2d1b6c3c9f10"), "{name}", "sched-none")
		method := strings.ToUpper(want[p][0])
		// {} is no valid body for most: only the response is checked.
		r := doInvalid(t, method, f.url+path, nil, map[string]string{"POST": `{}`}[method])
		if r.status == 405 || (r.status == 404 && r.apiError(t).Code != "not_found") {
			t.Errorf("%s %s: %d", method, p, r.status)
		}
	}
	_ = bytes.MinRead
	_ = fmt.Sprint
}

// Types are learned from the workers' declarations while the API runs: a
// new type is accepted without a restart, and a changed schema applies.
func TestTypesAreLearnedWithoutRestart(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	ctx := context.Background()
	if r := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.sleep","payload":{}}`); r.status != 400 {
		t.Fatalf("status %d, want 400 under the first schema (it caches it)", r.status)
	}
	if r := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"report.build"}`); r.status != 400 {
		t.Fatalf("status %d for an undeclared type, want 400", r.status)
	}

	relaxed := sys.Sleep.WithDefaults()
	relaxed.Schema = json.RawMessage(`{"type":"object"}`)
	report := jobs.Type{Name: "report.build", Pool: "reports"}.WithDefaults()
	if err := f.env.Broker.DeclarePool(ctx, "reports", []string{report.Name}); err != nil {
		t.Fatal(err)
	}
	if err := f.env.Store.DeclareTypes(ctx, []jobs.Type{relaxed, report}); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"report.build"}`); r.status != 202 {
		t.Errorf("new type: status %d %s, want 202", r.status, r.body)
	}
	// The change reaches the cache through the events channel.
	testenv.Eventually(t, 10*time.Second, "the relaxed schema to apply", func() bool {
		return do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.sleep","payload":{}}`).status == 202
	})
}
