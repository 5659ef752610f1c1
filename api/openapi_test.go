package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/internal/apicheck"
)

// openAPI is the API's OpenAPI document, compiled once for every test.
var openAPI = sync.OnceValues(func() (*apicheck.Document, error) {
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		return nil, err
	}
	return apicheck.Load(b)
})

// exchange sends req as hc would, every hop of it (redirects too) checked
// against the OpenAPI document: a response the document does not describe
// for its operation and status, or a request the server accepted (2xx)
// that breaks the operation's parameters or body schema, fails t. It
// returns the last response with its body read. It may be called from any
// goroutine.
func exchange(t testing.TB, hc *http.Client, req *http.Request) (*http.Response, []byte, error) {
	t.Helper()
	return exchangeChecked(t, hc, req, false)
}

// exchangeChecked is exchange; responsesOnly leaves the request unchecked
// (doInvalid).
func exchangeChecked(t testing.TB, hc *http.Client, req *http.Request, responsesOnly bool) (*http.Response, []byte, error) {
	t.Helper()
	doc, err := openAPI()
	if err != nil {
		return nil, nil, fmt.Errorf("openapi.json: %w", err)
	}
	var (
		mu         sync.Mutex
		mismatches []error
	)
	checked := *hc
	checked.Transport = &apicheck.Transport{Doc: doc, Base: hc.Transport, ResponsesOnly: responsesOnly, Report: func(err error) {
		mu.Lock()
		defer mu.Unlock()
		mismatches = append(mismatches, err)
	}}
	resp, err := checked.Do(req)
	var body []byte
	if err == nil {
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, m := range mismatches {
		t.Error(m)
	}
	return resp, body, err
}

// Every GET has a HEAD beside it that answers as it does, without a body:
// the same parameters, security and statuses, with the same headers.
func TestOpenAPIHeadMirrorsGet(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	type op struct {
		Parameters []any `json:"parameters"`
		Security   any   `json:"security"`
		Responses  map[string]struct {
			Ref     string                     `json:"$ref"`
			Headers map[string]json.RawMessage `json:"headers"`
			Content map[string]json.RawMessage `json:"content"`
		} `json:"responses"`
	}
	var components struct {
		Components struct {
			Responses map[string]struct {
				Headers map[string]json.RawMessage `json:"headers"`
			} `json:"responses"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &components); err != nil {
		t.Fatal(err)
	}
	// headersOf returns a response's headers, following a $ref.
	headersOf := func(ref string, own map[string]json.RawMessage) []string {
		if name, ok := strings.CutPrefix(ref, "#/components/responses/"); ok {
			own = components.Components.Responses[name].Headers
		}
		var out []string
		for k, v := range own {
			var b bytes.Buffer
			if err := json.Compact(&b, v); err != nil {
				t.Fatal(err)
			}
			out = append(out, k+"="+b.String())
		}
		slices.Sort(out)
		return out
	}
	for path, item := range spec.Paths {
		getRaw, hasGet := item["get"]
		headRaw, hasHead := item["head"]
		if hasGet != hasHead {
			t.Errorf("%s: get %v, head %v; every GET answers HEAD too", path, hasGet, hasHead)
			continue
		}
		if !hasGet {
			continue
		}
		var get, head op
		if err := json.Unmarshal(getRaw, &get); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(headRaw, &head); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(get.Parameters, head.Parameters); d != "" {
			t.Errorf("%s: HEAD's parameters differ from GET's (-get +head):\n%s", path, d)
		}
		if d := cmp.Diff(get.Security, head.Security); d != "" {
			t.Errorf("%s: HEAD's security differs from GET's (-get +head):\n%s", path, d)
		}
		for status, gr := range get.Responses {
			hr, ok := head.Responses[status]
			if !ok {
				t.Errorf("%s: GET answers %s, HEAD does not", path, status)
				continue
			}
			if len(hr.Content) > 0 || hr.Ref != "" {
				t.Errorf("%s: HEAD's %s has a body", path, status)
			}
			if d := cmp.Diff(headersOf(gr.Ref, gr.Headers), headersOf("", hr.Headers)); d != "" {
				t.Errorf("%s: HEAD's %s headers differ from GET's (-get +head):\n%s", path, status, d)
			}
		}
		for status := range head.Responses {
			if _, ok := get.Responses[status]; !ok {
				t.Errorf("%s: HEAD answers %s, GET does not", path, status)
			}
		}
	}
}

// The server takes a body exactly when the document does: each of these
// is answered 2xx by the one and satisfies the other's schema, or neither.
func TestServerAndDocumentAgreeOnBodies(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	doc, err := openAPI()
	if err != nil {
		t.Fatal(err)
	}
	const id = "0190c5a0-7b1e-7cc3-8f0e-2d1b6c3c9f10"
	tests := []struct {
		name, path, body string
		taken            bool
	}{
		// null is as absent, for every optional field.
		{"every optional field null", "/v1/jobs", `{"type":"sys.echo","payload":null,"max_attempts":null,"timeout":null,"delay":null,"run_at":null,"backoff":null,"metadata":null,"idempotency_key":null}`, true},
		{"idempotency_key null", "/v1/jobs", `{"type":"sys.echo","idempotency_key":null}`, true},
		{"backoff fields null", "/v1/jobs", `{"type":"sys.echo","backoff":{"base":null,"factor":null,"max":null}}`, true},
		{"type null", "/v1/jobs", `{"type":null}`, false},
		{"a metadata value null", "/v1/jobs", `{"type":"sys.echo","metadata":{"team":null}}`, false},
		// A whole number is an integer however it is written.
		{"max_attempts 3.0", "/v1/jobs", `{"type":"sys.echo","max_attempts":3.0}`, true},
		{"max_attempts 30e-1", "/v1/jobs", `{"type":"sys.echo","max_attempts":30e-1}`, true},
		{"max_attempts 3.5", "/v1/jobs", `{"type":"sys.echo","max_attempts":3.5}`, false},
		{"max_attempts 3.0000000000000001", "/v1/jobs", `{"type":"sys.echo","max_attempts":3.0000000000000001}`, false},
		// backoff.factor: 0 (the type's), or 1 to 100.
		{"factor 0", "/v1/jobs", `{"type":"sys.echo","backoff":{"factor":0}}`, true},
		{"factor 0.5", "/v1/jobs", `{"type":"sys.echo","backoff":{"factor":0.5}}`, false},
		{"factor 1", "/v1/jobs", `{"type":"sys.echo","backoff":{"factor":1}}`, true},
		{"factor 100", "/v1/jobs", `{"type":"sys.echo","backoff":{"factor":100}}`, true},
		{"factor 101", "/v1/jobs", `{"type":"sys.echo","backoff":{"factor":101}}`, false},
		{"base in seconds", "/v1/jobs", `{"type":"sys.echo","backoff":{"base":1.5}}`, true},
		{"negative base", "/v1/jobs", `{"type":"sys.echo","backoff":{"base":-1}}`, false},
		{"in a batch", "/v1/jobs/batch", `{"jobs":[{"type":"sys.echo","max_attempts":2.0,"idempotency_key":null}]}`, true},
		// Replayed ids are UUIDs in any case, as job ids in paths are.
		{"replay an upper-case id", "/v1/dead/replay", `{"pool":"sys","ids":["` + strings.ToUpper(id) + `"]}`, true},
		{"replay all, ids null", "/v1/dead/replay", `{"pool":"sys","all":true,"ids":null}`, true},
		{"replay ids, all null", "/v1/dead/replay", `{"pool":"sys","ids":["` + id + `"],"all":null}`, true},
		{"replay a non-id", "/v1/dead/replay", `{"pool":"sys","ids":["x"]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := doInvalid(t, "POST", f.url+tt.path, nil, tt.body)
			if served := r.status/100 == 2; served != tt.taken {
				t.Errorf("server: %d %s; want taken %v", r.status, r.body, tt.taken)
			}
			u, _ := url.Parse(f.url + tt.path)
			derr := doc.CheckRequest("POST", u, http.Header{"Content-Type": {"application/json"}}, []byte(tt.body))
			if documented := derr == nil; documented != tt.taken {
				t.Errorf("document: %v; want taken %v", derr, tt.taken)
			}
		})
	}
	// Taken as 3, not as some other number.
	if j := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","max_attempts":3.0}`).job(t); j.MaxAttempts != 3 {
		t.Errorf("max_attempts 3.0 made %d", j.MaxAttempts)
	}
	// The missing ids are named as they were sent.
	r := do(t, "POST", f.url+"/v1/dead/replay", nil, `{"pool":"sys","ids":["`+strings.ToUpper(id)+`"]}`)
	if want := `{"missing":["` + strings.ToUpper(id) + `"],"replayed":0}`; strings.TrimSpace(string(r.body)) != want {
		t.Errorf("replay of an unknown upper-case id: %s, want %s", r.body, want)
	}
}

// HEAD answers as GET without the body, and a method a path does not take
// gets 405 naming those it does: each as the document says (exchange checks
// every answer against it).
func TestHeadAndOtherMethods(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	j := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo"}`).job(t)
	for _, path := range []string{
		"/healthz", "/readyz", "/openapi.json", "/metrics", "/v1/jobs", "/v1/jobs?status=queued", "/v1/jobs/" + j.ID,
		"/v1/jobs/" + j.ID + "/artifact", "/v1/dead?pool=sys", "/v1/queues", "/v1/types", "/v1/workers", "/v1/autoscale",
		"/ui/session",
	} {
		get, head := do(t, "GET", f.url+path, nil, ""), do(t, "HEAD", f.url+path, nil, "")
		if head.status != get.status || len(head.body) != 0 || head.header.Get("Content-Type") != get.header.Get("Content-Type") {
			t.Errorf("HEAD %s: %d %q, %d bytes; GET: %d %q", path, head.status, head.header.Get("Content-Type"), len(head.body),
				get.status, get.header.Get("Content-Type"))
		}
	}
	for _, tt := range []struct{ method, path, allow string }{
		{"DELETE", "/v1/jobs", "GET, HEAD, POST"},
		{"PUT", "/v1/jobs/" + j.ID, "GET, HEAD"},
		{"GET", "/v1/jobs/" + j.ID + "/cancel", "POST"},
		{"GET", "/v1/dead/replay", "POST"},
		{"POST", "/v1/dead", "GET, HEAD, DELETE"},
		{"OPTIONS", "/healthz", "GET, HEAD"},
		{"DELETE", "/v1/jobs/batch", "GET, HEAD, POST"}, // GET /v1/jobs/{id} matches it too
	} {
		r := do(t, tt.method, f.url+tt.path, nil, "")
		if r.status != 405 || r.header.Get("Allow") != tt.allow || r.apiError(t).Code != "method_not_allowed" {
			t.Errorf("%s %s: %d Allow %q %s; want 405 method_not_allowed, Allow %q", tt.method, tt.path, r.status, r.header.Get("Allow"), r.body, tt.allow)
		}
	}
	if r := do(t, "GET", f.url+"/v1/nothing", nil, ""); r.status != 404 || r.apiError(t).Code != "not_found" {
		t.Errorf("GET /v1/nothing: %d %s; want 404 not_found", r.status, r.body)
	}
}
