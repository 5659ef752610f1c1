package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/apikey"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

type limitAnswer struct {
	store.LimitRecord
	Limited  int  `json:"limited"`
	Replaced bool `json:"replaced"`
}

func (r response) limit(t *testing.T) limitAnswer {
	t.Helper()
	var l limitAnswer
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatalf("decode limit from %s: %v", r.body, err)
	}
	return l
}

func TestLimitsEndpoints(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	url := f.url + "/v1/limits/sys.echo"
	r := do(t, "PUT", url, nil, `{"rate":{"limit":5,"per":"1s","burst":2},"tenant":{"key":"customer","limit":1,"per":60}}`)
	if r.status != http.StatusOK {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	l := r.limit(t)
	if l.Replaced || l.Type != "sys.echo" || l.Rate == nil || l.Rate.Limit != 5 || l.Rate.Per.Std() != time.Second || l.Rate.Burst != 2 ||
		l.Tenant == nil || l.Tenant.Key != "customer" || l.Tenant.Per.Std() != time.Minute || l.SetAt.IsZero() {
		t.Errorf("PUT answered %+v", l)
	}
	if r := do(t, "PUT", url, nil, `{"tenant":{"key":"customer","limit":2,"per":"1m"}}`); r.status != 200 || !r.limit(t).Replaced || r.limit(t).Rate != nil {
		t.Errorf("PUT again: %d %s, want the tenant rate alone, replaced", r.status, r.body)
	}
	if r := do(t, "GET", url, nil, ""); r.status != 200 || r.limit(t).Tenant.Limit != 2 {
		t.Errorf("GET: %d %s", r.status, r.body)
	}
	r = do(t, "GET", f.url+"/v1/limits", nil, "")
	var list struct{ Limits []limitAnswer }
	if err := json.Unmarshal(r.body, &list); err != nil || len(list.Limits) != 1 || list.Limits[0].Type != "sys.echo" {
		t.Errorf("GET /v1/limits: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", f.url+"/v1/queues", nil, ""); r.status != 200 || !strings.Contains(string(r.body), `"limited":0`) {
		t.Errorf("GET /v1/queues: %d %s, want limited 0", r.status, r.body)
	}
	if r := do(t, "DELETE", url, nil, ""); r.status != 200 || r.limit(t).Tenant.Limit != 2 {
		t.Errorf("DELETE: %d %s", r.status, r.body)
	}
	for _, m := range []string{"GET", "DELETE"} {
		if r := do(t, m, url, nil, ""); r.status != 404 || r.apiError(t).Code != "not_found" {
			t.Errorf("%s after DELETE: %d %s, want 404", m, r.status, r.body)
		}
	}
	// A limit may come before its type's workers.
	if r := do(t, "PUT", f.url+"/v1/limits/rl.later", nil, `{"rate":{"limit":1,"per":"1h"}}`); r.status != 200 {
		t.Errorf("PUT of an undeclared type: %d %s", r.status, r.body)
	}
}

// A tenant rate that names no key takes the API's default (api.tenant_key);
// without one configured it is refused naming tenant.key.
func TestLimitsDefaultTenantKey(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{TenantKey: "customer"})
	r := do(t, "PUT", f.url+"/v1/limits/sys.echo", nil, `{"tenant":{"limit":10,"per":"1m"}}`)
	if l := r.limit(t); r.status != http.StatusOK || l.Tenant == nil || l.Tenant.Key != "customer" || l.Tenant.Limit != 10 {
		t.Fatalf("PUT without a key: %d %s, want the default key customer", r.status, r.body)
	}
	r = do(t, "PUT", f.url+"/v1/limits/sys.echo", nil, `{"tenant":{"key":"team","limit":10,"per":"1m"}}`)
	if l := r.limit(t); r.status != http.StatusOK || l.Tenant.Key != "team" {
		t.Errorf("PUT with a key of its own: %d %s, want team", r.status, r.body)
	}
	if r := do(t, "PUT", f.url+"/v1/limits/sys.echo", nil, `{"tenant":{"key":"","limit":10,"per":"1m"}}`); r.status != 400 || r.apiError(t).Field != "tenant.key" {
		t.Errorf("PUT with an empty key: %d %s, want 400 naming tenant.key", r.status, r.body)
	}
	none := setup(t, api.Config{})
	if r := do(t, "PUT", none.url+"/v1/limits/sys.echo", nil, `{"tenant":{"limit":10,"per":"1m"}}`); r.status != 400 || r.apiError(t).Field != "tenant.key" {
		t.Errorf("PUT without a key or a default: %d %s, want 400 naming tenant.key", r.status, r.body)
	}
	if _, err := api.New(api.Config{TenantKey: "bad\x00key"}, nil, nil); err == nil {
		t.Error("api.New took a tenant key with a control character")
	}
}

// Every bad input is refused with 4xx naming the field, and writes
// nothing.
func TestLimitsHostileInput(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{MaxBodyBytes: 4096})
	put := func(path, body string) response { return doInvalid(t, "PUT", f.url+path, nil, body) }
	tests := []struct {
		name, path, body string
		status           int
		code, field      string
	}{
		{"empty object", "/v1/limits/sys.echo", `{}`, 400, "invalid_field", "limit"},
		{"both null", "/v1/limits/sys.echo", `{"rate":null,"tenant":null}`, 400, "invalid_field", "limit"},
		{"limit 0", "/v1/limits/sys.echo", `{"rate":{"limit":0,"per":"1s"}}`, 400, "invalid_field", "rate.limit"},
		{"limit negative", "/v1/limits/sys.echo", `{"rate":{"limit":-5,"per":"1s"}}`, 400, "invalid_field", "rate.limit"},
		{"limit huge", "/v1/limits/sys.echo", `{"rate":{"limit":1000001,"per":"1s"}}`, 400, "invalid_field", "rate.limit"},
		{"limit overflow", "/v1/limits/sys.echo", `{"rate":{"limit":99999999999999999999999,"per":"1s"}}`, 400, "invalid_field", "rate.limit"},
		{"limit a fraction", "/v1/limits/sys.echo", `{"rate":{"limit":1.5,"per":"1s"}}`, 400, "invalid_field", "rate.limit"},
		{"limit text", "/v1/limits/sys.echo", `{"rate":{"limit":"5","per":"1s"}}`, 400, "invalid_field", "rate.limit"},
		{"per missing", "/v1/limits/sys.echo", `{"rate":{"limit":5}}`, 400, "missing_field", "rate.per"},
		{"per too short", "/v1/limits/sys.echo", `{"rate":{"limit":5,"per":"999ms"}}`, 400, "invalid_field", "rate.per"},
		{"per too long", "/v1/limits/sys.echo", `{"rate":{"limit":5,"per":"24h1s"}}`, 400, "invalid_field", "rate.per"},
		{"per negative", "/v1/limits/sys.echo", `{"rate":{"limit":5,"per":"-1s"}}`, 400, "invalid_field", "rate.per"},
		{"per not a duration", "/v1/limits/sys.echo", `{"rate":{"limit":5,"per":"soon"}}`, 400, "invalid_field", "rate.per"},
		{"per an object", "/v1/limits/sys.echo", `{"rate":{"limit":5,"per":{}}}`, 400, "invalid_field", "rate.per"},
		{"burst negative", "/v1/limits/sys.echo", `{"rate":{"limit":5,"per":"1s","burst":-1}}`, 400, "invalid_field", "rate.burst"},
		{"burst huge", "/v1/limits/sys.echo", `{"rate":{"limit":5,"per":"1s","burst":10001}}`, 400, "invalid_field", "rate.burst"},
		{"unknown field", "/v1/limits/sys.echo", `{"rate":{"limit":5,"per":"1s"},"every":"1s"}`, 400, "unknown_field", "every"},
		{"unknown field in rate", "/v1/limits/sys.echo", `{"rate":{"limit":5,"per":"1s","size":3}}`, 400, "unknown_field", "rate.size"},
		{"key in rate", "/v1/limits/sys.echo", `{"rate":{"key":"customer","limit":5,"per":"1s"}}`, 400, "unknown_field", "rate.key"},
		{"capitals", "/v1/limits/sys.echo", `{"Rate":{"limit":5,"per":"1s"}}`, 400, "unknown_field", "Rate"},
		{"tenant without key", "/v1/limits/sys.echo", `{"tenant":{"limit":5,"per":"1s"}}`, 400, "missing_field", "tenant.key"},
		{"tenant key empty", "/v1/limits/sys.echo", `{"tenant":{"key":"","limit":5,"per":"1s"}}`, 400, "invalid_field", "tenant.key"},
		{"tenant key long", "/v1/limits/sys.echo", `{"tenant":{"key":"` + strings.Repeat("k", 129) + `","limit":5,"per":"1s"}}`, 400, "invalid_field", "tenant.key"},
		{"tenant key control", "/v1/limits/sys.echo", `{"tenant":{"key":"a\u0007b","limit":5,"per":"1s"}}`, 400, "invalid_field", "tenant.key"},
		{"tenant per short", "/v1/limits/sys.echo", `{"tenant":{"key":"c","limit":5,"per":"10ms"}}`, 400, "invalid_field", "tenant.per"},
		{"rate an array", "/v1/limits/sys.echo", `{"rate":[5,"1s"]}`, 400, "invalid_json", "rate"},
		{"not JSON", "/v1/limits/sys.echo", `{"rate":`, 400, "invalid_json", ""},
		{"duplicate key", "/v1/limits/sys.echo", `{"rate":{"limit":5,"per":"1s"},"rate":{"limit":500,"per":"1s"}}`, 400, "invalid_json", "rate"},
		{"too deep", "/v1/limits/sys.echo", `{"rate":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, 400, "invalid_json", "*"},
		{"too large", "/v1/limits/sys.echo", `{"rate":{"limit":5,"per":"1s"},"x":"` + strings.Repeat("x", 5000) + `"}`, 413, "too_large", ""},
		{"not a type name", "/v1/limits/SYS", `{"rate":{"limit":5,"per":"1s"}}`, 400, "invalid_field", "type"},
		{"a type name too long", "/v1/limits/a." + strings.Repeat("b", 200), `{"rate":{"limit":5,"per":"1s"}}`, 400, "invalid_field", "type"},
	}
	for _, tt := range tests {
		r := put(tt.path, tt.body)
		if r.status != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, r.status, r.body, tt.status)
			continue
		}
		if e := r.apiError(t); e.Code != tt.code || (e.Field != tt.field && tt.field != "*") {
			t.Errorf("%s: %+v, want %s on %q", tt.name, e, tt.code, tt.field)
		}
	}
	if r := doInvalid(t, "PUT", f.url+"/v1/limits/sys.echo", map[string]string{"Content-Type": "text/plain"}, `{"rate":{"limit":5,"per":"1s"}}`); r.status != 415 {
		t.Errorf("text/plain: %d, want 415", r.status)
	}
	if r := do(t, "GET", f.url+"/v1/limits", nil, ""); !strings.Contains(string(r.body), `"limits":[]`) {
		t.Errorf("after refusals: %s, want no limits", r.body)
	}
	if r := doInvalid(t, "PATCH", f.url+"/v1/limits/sys.echo", nil, `{}`); r.status != 405 || !strings.Contains(r.header.Get("Allow"), "PUT") {
		t.Errorf("PATCH: %d Allow %q, want 405 naming PUT", r.status, r.header.Get("Allow"))
	}
}

// At most jobs.MaxLimits types have limits; replacing one is always allowed.
func TestLimitsAreBounded(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	for i := range jobs.MaxLimits {
		rec := store.LimitRecord{Limit: jobs.Limit{Type: fmt.Sprintf("rl.t%d", i), Rate: &jobs.Rate{Limit: 1, Per: jobs.Duration(time.Second)}}}
		if _, err := f.env.Store.PutLimit(t.Context(), rec, jobs.MaxLimits); err != nil {
			t.Fatal(err)
		}
	}
	if r := do(t, "PUT", f.url+"/v1/limits/rl.one-more", nil, `{"rate":{"limit":1,"per":"1s"}}`); r.status != 409 || r.apiError(t).Code != "conflict" {
		t.Errorf("one more: %d %s, want 409", r.status, r.body)
	}
	if r := do(t, "PUT", f.url+"/v1/limits/rl.t0", nil, `{"rate":{"limit":2,"per":"1s"}}`); r.status != 200 {
		t.Errorf("replacing one: %d %s", r.status, r.body)
	}
}

// Reading limits needs read, writing them admin; a key for some types
// sees and sets their limits alone.
func TestLimitsScopes(t *testing.T) {
	t.Parallel()
	k := setupKeyed(t, api.Config{},
		apikey.Key{Name: "dash", Scopes: scopes(apikey.Read)},
		apikey.Key{Name: "ci", Scopes: scopes(apikey.Submit)},
		apikey.Key{Name: "ops", Scopes: scopes(apikey.Admin)},
		apikey.Key{Name: "sleeper", Scopes: scopes(apikey.Admin), Types: []string{"sys.sleep"}},
	)
	body := `{"rate":{"limit":5,"per":"1s"}}`
	for _, key := range []string{"dash", "ci"} {
		if r := k.as(t, key, "PUT", "/v1/limits/sys.echo", body); r.status != 403 {
			t.Errorf("%s sets a limit: %d, want 403", key, r.status)
		}
	}
	if r := k.as(t, "", "GET", "/v1/limits", ""); r.status != 401 {
		t.Errorf("no key reads limits: %d, want 401", r.status)
	}
	if r := k.as(t, "ops", "PUT", "/v1/limits/sys.echo", body); r.status != 200 || r.limit(t).SetBy != "ops" {
		t.Fatalf("ops sets a limit: %d %s", r.status, r.body)
	}
	if r := k.as(t, "dash", "GET", "/v1/limits/sys.echo", ""); r.status != 200 {
		t.Errorf("dash reads it: %d", r.status)
	}
	if r := k.as(t, "sleeper", "PUT", "/v1/limits/sys.echo", body); r.status != 403 {
		t.Errorf("sleeper sets sys.echo's: %d, want 403", r.status)
	}
	if r := k.as(t, "sleeper", "DELETE", "/v1/limits/sys.echo", ""); r.status != 403 {
		t.Errorf("sleeper removes sys.echo's: %d, want 403", r.status)
	}
	if r := k.as(t, "sleeper", "GET", "/v1/limits", ""); !strings.Contains(string(r.body), `"limits":[]`) {
		t.Errorf("sleeper lists: %s, want none of sys.echo", r.body)
	}
	if r := k.as(t, "sleeper", "PUT", "/v1/limits/sys.sleep", body); r.status != 200 {
		t.Errorf("sleeper sets sys.sleep's: %d %s", r.status, r.body)
	}
}
