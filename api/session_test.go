package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/apikey"
)

// sessionOf reads GET /ui/session with the given cookie ("" for none).
func sessionOf(t *testing.T, base, cookie string) map[string]any {
	t.Helper()
	h := map[string]string{}
	if cookie != "" {
		h["Cookie"] = "warren_key=" + cookie
	}
	r := do(t, "GET", base+"/ui/session", h, "")
	var s map[string]any
	if r.status != 200 || json.Unmarshal(r.body, &s) != nil {
		t.Fatalf("GET /ui/session: %d %s", r.status, r.body)
	}
	return s
}

func TestDashboardSignIn(t *testing.T) {
	t.Parallel()
	k := setupKeyed(t, api.Config{},
		apikey.Key{Name: "ops", Scopes: []apikey.Scope{apikey.Admin}},
		apikey.Key{Name: "viewer", Scopes: []apikey.Scope{apikey.Read}},
		apikey.Key{Name: "ci", Scopes: []apikey.Scope{apikey.Submit}})
	login := func(body string, header map[string]string) response {
		t.Helper()
		return do(t, "POST", k.url+"/ui/login", header, body)
	}

	// A stranger learns only that keys are asked for.
	if s := sessionOf(t, k.url, ""); s["auth"] != "key" || s["signed_in"] != false || s["csrf"] != nil || s["key"] != nil {
		t.Errorf("session without a cookie: %v", s)
	}
	refusals := []struct {
		name, body string
		header     map[string]string
		status     int
		code       string
	}{
		{"unknown key", `{"key":"wrn_nobody"}`, nil, 401, "unauthorized"},
		{"the hash as the key", `{"key":"` + apikey.Sum(k.secrets["ops"]) + `"}`, nil, 401, "unauthorized"},
		{"submit only", `{"key":"` + k.secrets["ci"] + `"}`, nil, 403, "forbidden"},
		{"empty key", `{"key":""}`, nil, 400, "missing_field"},
		{"unknown field", `{"key":"x","scope":"admin"}`, nil, 400, "invalid_json"},
		// A form another site could post without the API's consent.
		{"a form", "key=" + k.secrets["ops"], map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media"},
		{"text", k.secrets["ops"], map[string]string{"Content-Type": "text/plain"}, 415, "unsupported_media"},
	}
	for _, tt := range refusals {
		r := login(tt.body, tt.header)
		if r.status != tt.status || r.apiError(t).Code != tt.code {
			t.Errorf("%s: %d %s, want %d %s", tt.name, r.status, r.body, tt.status, tt.code)
		}
		if c := r.header.Get("Set-Cookie"); c != "" {
			t.Errorf("%s: set a cookie: %s", tt.name, c)
		}
	}

	// A good key is kept in a cookie scripts cannot read and other sites
	// cannot make the browser send.
	r := login(`{"key":"`+k.secrets["viewer"]+`"}`, nil)
	if r.status != 200 {
		t.Fatalf("sign in: %d %s", r.status, r.body)
	}
	cookies := (&http.Response{Header: r.header}).Cookies()
	if len(cookies) != 1 || cookies[0].Name != "warren_key" || cookies[0].Value != k.secrets["viewer"] || !cookies[0].HttpOnly ||
		cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].Path != "/" || cookies[0].MaxAge != 12*3600 {
		t.Errorf("the session cookie: %s", r.header.Values("Set-Cookie"))
	}
	s := sessionOf(t, k.url, k.secrets["viewer"])
	if s["signed_in"] != true || s["key"] != "viewer" || s["csrf"] == "" || s["csrf"] == nil {
		t.Errorf("session of viewer: %v", s)
	}

	// The cookie stands for the key, with its scopes.
	cookie := map[string]string{"Cookie": "warren_key=" + k.secrets["viewer"]}
	if r := do(t, "GET", k.url+"/v1/queues", cookie, ""); r.status != 200 {
		t.Errorf("GET /v1/queues signed in as viewer: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", k.url+"/v1/dead?pool=sys", cookie, ""); r.status != 403 {
		t.Errorf("GET /v1/dead as viewer: %d, want 403", r.status)
	}
	if r := do(t, "GET", k.url+"/v1/queues", map[string]string{"Cookie": "warren_key=wrn_revoked"}, ""); r.status != 401 {
		t.Errorf("a cookie with an unknown key: %d, want 401", r.status)
	}
}

func TestDashboardChangesNeedTheCSRFToken(t *testing.T) {
	t.Parallel()
	k := setupKeyed(t, api.Config{}, apikey.Key{Name: "ops", Scopes: []apikey.Scope{apikey.Admin}})
	secret := k.secrets["ops"]
	token, _ := sessionOf(t, k.url, secret)["csrf"].(string)
	other := setupKeyed(t, api.Config{}, apikey.Key{Name: "ops", Scopes: []apikey.Scope{apikey.Admin}})
	otherToken, _ := sessionOf(t, other.url, other.secrets["ops"])["csrf"].(string)
	if token == "" || token == otherToken {
		t.Fatalf("tokens %q and %q: want one per key", token, otherToken)
	}

	pause := k.url + "/v1/queues/sys/pause"
	for name, h := range map[string]map[string]string{
		"no token":           {"Cookie": "warren_key=" + secret},
		"another key's":      {"Cookie": "warren_key=" + secret, "X-Warren-CSRF": otherToken},
		"the key as a token": {"Cookie": "warren_key=" + secret, "X-Warren-CSRF": secret},
	} {
		r := do(t, "POST", pause, h, "")
		if r.status != 403 || r.apiError(t).Code != "forbidden_csrf" {
			t.Errorf("%s: %d %s, want 403 forbidden_csrf", name, r.status, r.body)
		}
	}
	if r := do(t, "GET", k.url+"/v1/queues", nil, ""); strings.Contains(string(r.body), `"paused":true`) {
		t.Fatal("a refused pause paused the pool")
	}
	// With the token it goes through; so does a key in the header, which
	// needs no token (no browser sends it on its own).
	if r := do(t, "POST", pause, map[string]string{"Cookie": "warren_key=" + secret, "X-Warren-CSRF": token}, ""); r.status != 200 {
		t.Errorf("pause with the token: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", k.url+"/v1/queues/sys/resume", map[string]string{"Authorization": "Bearer " + secret}, ""); r.status != 200 {
		t.Errorf("resume with the key: %d %s", r.status, r.body)
	}
	// A browser request from another origin is refused before anything.
	r := do(t, "POST", pause, map[string]string{"Cookie": "warren_key=" + secret, "X-Warren-CSRF": token, "Origin": "http://evil.example"}, "")
	if r.status != 403 || r.apiError(t).Code != "forbidden_origin" {
		t.Errorf("from another origin: %d %s", r.status, r.body)
	}

	// Behind a proxy that ends TLS, the page's origin is https: the proxy
	// says so, and the cookie is Secure.
	host := strings.TrimPrefix(k.url, "http://")
	behind := map[string]string{"Cookie": "warren_key=" + secret, "X-Warren-CSRF": token, "Origin": "https://" + host}
	if r := do(t, "POST", k.url+"/v1/queues/sys/resume", behind, ""); r.status != 403 {
		t.Errorf("an https origin the API was not told of: %d, want 403", r.status)
	}
	behind["X-Forwarded-Proto"] = "https"
	if r := do(t, "POST", k.url+"/v1/queues/sys/resume", behind, ""); r.status != 200 {
		t.Errorf("an https origin behind a TLS proxy: %d %s", r.status, r.body)
	}
	r = do(t, "POST", k.url+"/ui/login", map[string]string{"X-Forwarded-Proto": "https"}, `{"key":"`+secret+`"}`)
	if cs := (&http.Response{Header: r.header}).Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Errorf("sign-in behind a TLS proxy: %d %v, want a Secure cookie", r.status, r.header.Values("Set-Cookie"))
	}

	// Signing out needs the token too, and deletes the cookie.
	if r := do(t, "POST", k.url+"/ui/logout", map[string]string{"Cookie": "warren_key=" + secret}, ""); r.status != 403 {
		t.Errorf("logout without the token: %d, want 403", r.status)
	}
	r = do(t, "POST", k.url+"/ui/logout", map[string]string{"Cookie": "warren_key=" + secret, "X-Warren-CSRF": token}, "")
	cookies := (&http.Response{Header: r.header}).Cookies()
	if r.status != 204 || len(cookies) != 1 || cookies[0].MaxAge >= 0 {
		t.Errorf("logout: %d %s", r.status, r.header.Values("Set-Cookie"))
	}
}

func TestDashboardSignInsAreLimited(t *testing.T) {
	t.Parallel()
	k := setupKeyed(t, api.Config{}, apikey.Key{Name: "ops", Scopes: []apikey.Scope{apikey.Admin}})
	var limited response
	for i := range 20 {
		r := do(t, "POST", k.url+"/ui/login", nil, `{"key":"wrn_guess`+string(rune('a'+i))+`"}`)
		if r.status == 429 {
			limited = r
			break
		}
	}
	if limited.status != 429 || limited.header.Get("Retry-After") == "" {
		t.Fatalf("20 wrong sign-ins from one address: last %d, want 429 with Retry-After", limited.status)
	}
	// Even the right key waits its turn: the limit is the address's.
	if r := do(t, "POST", k.url+"/ui/login", nil, `{"key":"`+k.secrets["ops"]+`"}`); r.status != 429 {
		t.Errorf("the right key after the limit: %d, want 429", r.status)
	}
}

func TestDashboardIsServedOpenAndLockedDown(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	// The page is open; it holds no data.
	for _, p := range []string{"/ui/", "/ui/jobs", "/ui/jobs/0190c5a0-7b1e-7cc3-8f0e-2d1b6c3c9f10", "/ui/assets/app.js", "/ui/assets/style.css"} {
		r := do(t, "GET", f.url+p, nil, "")
		if r.status != 200 {
			t.Errorf("GET %s: %d", p, r.status)
			continue
		}
		csp := r.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q", p, csp)
		}
		if r.header.Get("X-Frame-Options") != "DENY" || r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: headers %v", p, r.header)
		}
	}
	if r := do(t, "GET", f.url+"/ui/assets/app.js", nil, ""); !strings.HasPrefix(r.header.Get("Content-Type"), "text/javascript") {
		t.Errorf("app.js is served as %q", r.header.Get("Content-Type"))
	}
	if r := do(t, "GET", f.url+"/ui/assets/nothing.js", nil, ""); r.status != 404 {
		t.Errorf("an unknown asset: %d", r.status)
	}
	// / and /dashboard lead to it, without following.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, p := range []string{"/", "/dashboard", "/ui"} {
		resp, err := client.Get(f.url + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode/100 != 3 || (loc != "/ui/" && !strings.HasSuffix(loc, "/ui/")) {
			t.Errorf("GET %s: %d to %q, want a redirect to /ui/", p, resp.StatusCode, loc)
		}
	}
	// Without keys the session is open, and a sign-in needs nothing.
	if s := sessionOf(t, f.url, ""); s["auth"] != "open" || s["signed_in"] != true {
		t.Errorf("open session: %v", s)
	}
}
