package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// limitsAPI imitates the limits' endpoints: it keeps what PUT sends.
type limitsAPI struct {
	url    string
	mu     sync.Mutex
	bodies []string
}

func newLimitsAPI(t *testing.T) *limitsAPI {
	t.Helper()
	f := &limitsAPI{}
	list := []map[string]any{
		{"type": "email.send", "rate": map[string]any{"limit": 100, "per": "1m0s", "burst": 5},
			"tenant": map[string]any{"key": "customer", "limit": 10, "per": "1m0s", "burst": 0},
			"set_at": "2026-03-14T09:27:01.5Z", "set_by": "ops", "limited": 12},
		{"type": "sys.echo", "rate": map[string]any{"limit": 5, "per": "1s", "burst": 0}, "set_at": "2026-03-14T09:27:01.5Z", "limited": 0},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/limits", func(w http.ResponseWriter, r *http.Request) {
		apiReply(w, http.StatusOK, map[string]any{"limits": list})
	})
	mux.HandleFunc("PUT /v1/limits/{type}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies = append(f.bodies, string(b))
		f.mu.Unlock()
		var l map[string]any
		_ = json.Unmarshal(b, &l)
		l["type"], l["set_at"], l["limited"] = r.PathValue("type"), "2026-03-14T09:27:01.5Z", 0
		apiReply(w, http.StatusOK, l)
	})
	mux.HandleFunc("DELETE /v1/limits/{type}", func(w http.ResponseWriter, r *http.Request) {
		apiReply(w, http.StatusNotFound, map[string]any{"error": map[string]string{
			"code": "not_found", "message": "type " + r.PathValue("type") + " has no rate limit"}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func TestLimitCommands(t *testing.T) {
	t.Parallel()
	f := newLimitsAPI(t)
	stdout, stderr, code := runWarren(t, f.url, "", "limit", "list")
	want := `TYPE        RATE       PER TENANT       LIMITED
email.send  100/1m +5  customer: 10/1m  12
sys.echo    5/1s       -                0
`
	if code != 0 || stderr != "" {
		t.Fatalf("limit list: exit %d, stderr %q", code, stderr)
	}
	if d := cmp.Diff(want, stdout); d != "" {
		t.Errorf("limit list (-want +got):\n%s", d)
	}
	if stdout, _, _ := runWarren(t, f.url, "", "limit", "list", "-o", "wide"); !strings.Contains(stdout, "2026-03-14T09:27:01.500Z  ops") {
		t.Errorf("limit list -o wide:\n%s", stdout)
	}

	stdout, stderr, code = runWarren(t, f.url, "", "limit", "set", "email.send", "--limit", "100", "--per", "1m",
		"--tenant-key", "customer", "--tenant-limit", "10", "--tenant-per", "1m", "--tenant-burst", "5")
	if code != 0 || stdout != "set the rate limit of email.send: 100/1m, and 10/1m +5 per customer\n" {
		t.Errorf("limit set: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	f.mu.Lock()
	body := f.bodies[0]
	f.mu.Unlock()
	if want := `{"rate":{"limit":100,"per":"1m0s","burst":0},"tenant":{"key":"customer","limit":10,"per":"1m0s","burst":5}}`; body != want {
		t.Errorf("limit set sent %s, want %s", body, want)
	}

	// Without --tenant-key the request leaves the key to the API's default
	// (api.tenant_key).
	if _, stderr, code := runWarren(t, f.url, "", "limit", "set", "email.send", "--tenant-limit", "10", "--tenant-per", "1m"); code != 0 {
		t.Errorf("limit set without --tenant-key: exit %d, stderr %q", code, stderr)
	}
	f.mu.Lock()
	body = f.bodies[len(f.bodies)-1]
	f.mu.Unlock()
	if want := `{"tenant":{"limit":10,"per":"1m0s","burst":0}}`; body != want {
		t.Errorf("limit set without --tenant-key sent %s, want %s", body, want)
	}

	// What the flags cannot mean is refused before any request.
	for _, args := range [][]string{
		{"limit", "set", "email.send"},
		{"limit", "set", "email.send", "--limit", "5"},
		{"limit", "set", "email.send", "--burst", "5"},
		{"limit", "set", "email.send", "--tenant-key", "customer", "--tenant-limit", "5"},
		{"limit", "set", "email.send", "--tenant-key", "customer"},
		{"limit", "set", "email.send", "--tenant-per", "1m"},
		{"limit", "set"},
	} {
		if _, stderr, code := runWarren(t, f.url, "", args...); code == 0 || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q; want refused", args, code, stderr)
		}
	}
	if _, stderr, code := runWarren(t, f.url, "", "limit", "rm", "nope.nope"); code == 0 || !strings.Contains(stderr, "no rate limit") {
		t.Errorf("limit rm of none: exit %d, stderr %q", code, stderr)
	}
}
