package api_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/apikey"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/workers/sys"
)

// GET /v1/types lists the declared types a key may submit, with their
// defaults filled in; a key limited to some types sees only those, and a
// key without the read scope none.
func TestListTypes(t *testing.T) {
	t.Parallel()
	k := setupKeyed(t, api.Config{},
		apikey.Key{Name: "dash", Scopes: scopes(apikey.Read)},
		apikey.Key{Name: "echo", Scopes: scopes(apikey.Read, apikey.Submit), Types: []string{"sys.echo"}},
		apikey.Key{Name: "ci", Scopes: scopes(apikey.Submit)},
	)
	list := func(key string) []jobs.Type {
		t.Helper()
		r := k.as(t, key, "GET", "/v1/types", "")
		if r.status != 200 {
			t.Fatalf("GET /v1/types as %s: %d %s", key, r.status, r.body)
		}
		var body struct{ Types []jobs.Type }
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatalf("GET /v1/types as %s: %v\n%s", key, err, r.body)
		}
		return body.Types
	}
	want := []jobs.Type{sys.Echo.WithDefaults(), sys.Fail.WithDefaults(), sys.Sleep.WithDefaults()}
	for i := range want {
		// The registry keeps schemas as JSON text, compacted.
		var b bytes.Buffer
		if err := json.Compact(&b, want[i].Schema); err != nil {
			t.Fatal(err)
		}
		want[i].Schema = b.Bytes()
	}
	if d := cmp.Diff(want, list("dash")); d != "" {
		t.Errorf("types for dash (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want[:1], list("echo")); d != "" {
		t.Errorf("types for a key limited to sys.echo (-want +got):\n%s", d)
	}
	if r := k.as(t, "ci", "GET", "/v1/types", ""); r.status != 403 {
		t.Errorf("GET /v1/types with a key lacking read: %d %s, want 403", r.status, r.body)
	}
	if r := k.as(t, "", "GET", "/v1/types", ""); r.status != 401 {
		t.Errorf("GET /v1/types without a key: %d %s, want 401", r.status, r.body)
	}
}
