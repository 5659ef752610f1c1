package api_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/apikey"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/workers/sys"
)

// A second submission of a type and unique key while the key is held is
// the first job (200, X-Warren-Duplicate: unique), or 409 unique_conflict
// naming it with on_conflict error; nothing is published for either. The
// job shows its unique key.
func TestUniqueDuplicateAndConflict(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	body := `{"type":"sys.echo","payload":{"n":1},"unique":{"key":"uniq-acct-42","for":"1h","while":"running"}}`
	first := do(t, "POST", f.url+"/v1/jobs", nil, body)
	if first.status != 202 {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	j := first.job(t)
	if j.Unique == nil || *j.Unique != (jobs.Unique{Key: "uniq-acct-42", For: jobs.Duration(3600e9), While: jobs.UniqueRunning}) {
		t.Errorf("the job's unique: %+v", j.Unique)
	}
	got := do(t, "GET", f.url+"/v1/jobs/"+j.ID, nil, "")
	if g := got.job(t); g.Unique == nil || g.Unique.Key != "uniq-acct-42" {
		t.Errorf("GET shows unique %+v", g.Unique)
	}

	// Another payload, the same type and key: still the first job.
	second := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","payload":{"n":2},"unique":{"key":"uniq-acct-42"}}`)
	if second.status != 200 || second.job(t).ID != j.ID || second.header.Get("X-Warren-Duplicate") != "unique" {
		t.Errorf("duplicate: %d %s %q, want 200 with %s", second.status, second.body, second.header.Get("X-Warren-Duplicate"), j.ID)
	}
	if loc := second.header.Get("Location"); loc != "/v1/jobs/"+j.ID {
		t.Errorf("Location %q", loc)
	}

	conflict := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","unique":{"key":"uniq-acct-42","on_conflict":"error"}}`)
	var e struct {
		Error struct {
			Code, Field string
			JobID       string `json:"job_id"`
		} `json:"error"`
	}
	_ = json.Unmarshal(conflict.body, &e)
	if conflict.status != 409 || e.Error.Code != "unique_conflict" || e.Error.Field != "unique.key" {
		t.Errorf("on_conflict error: %d %s", conflict.status, conflict.body)
	}
	if !strings.Contains(string(conflict.body), `"job_id":"`+j.ID+`"`) {
		t.Errorf("the conflict does not name the holder: %s", conflict.body)
	}

	// on_conflict beside unique, as the feature was first written, means the same.
	if r := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","unique":{"key":"uniq-acct-42"},"on_conflict":"error"}`); r.status != 409 ||
		r.apiError(t).Code != "unique_conflict" || r.apiError(t).Field != "unique.key" {
		t.Errorf("on_conflict error beside unique: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","unique":{"key":"uniq-acct-42"},"on_conflict":"existing"}`); r.status != 200 || r.job(t).ID != j.ID {
		t.Errorf("on_conflict existing beside unique: %d %s", r.status, r.body)
	}

	// Another type's same key is another key.
	if r := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.sleep","payload":{"ms":1},"unique":{"key":"uniq-acct-42"}}`); r.status != 202 {
		t.Errorf("another type: %d %s", r.status, r.body)
	}

	// An idempotent repeat is told apart.
	do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","idempotency_key":"uniq-idem"}`)
	if r := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","idempotency_key":"uniq-idem"}`); r.header.Get("X-Warren-Duplicate") != "idempotency" {
		t.Errorf("idempotent repeat: header %q", r.header.Get("X-Warren-Duplicate"))
	}

	// A batch: two entries of one key are one job.
	r := do(t, "POST", f.url+"/v1/jobs/batch", nil, `{"jobs":[
		{"type":"sys.echo","unique":{"key":"uniq-b"}},
		{"type":"sys.echo","unique":{"key":"uniq-b"}},
		{"type":"sys.echo","unique":{"key":"uniq-acct-42","on_conflict":"error"}}]}`)
	var out struct {
		Jobs []struct {
			Job       *jobs.Job
			Duplicate string
			Error     *struct{ Code, Field string }
		}
	}
	if err := json.Unmarshal(r.body, &out); err != nil || len(out.Jobs) != 3 {
		t.Fatalf("batch: %s", r.body)
	}
	if a, b := out.Jobs[0], out.Jobs[1]; a.Job == nil || b.Job == nil || a.Job.ID != b.Job.ID || a.Duplicate != "" || b.Duplicate != "unique" {
		t.Errorf("batch entries: %s", r.body)
	}
	if c := out.Jobs[2]; c.Error == nil || c.Error.Code != "unique_conflict" {
		t.Errorf("batch conflict entry: %s", r.body)
	}

	// Published: the first, the sleep, the idempotent one, the batch's one.
	if n := f.env.Messages(t, sys.Pool); n != 4 {
		t.Errorf("%d messages published, want 4", n)
	}
	if n := len(f.env.JobKeys(t)); n != 4 {
		t.Errorf("%d records, want 4", n)
	}
}

// Every malformed unique member is a 400 naming its field, and nothing is
// written or published.
func TestUniqueValidation(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	for _, c := range []struct{ unique, code, field string }{
		{`{}`, "missing_field", "unique.key"},
		{`{"key":""}`, "missing_field", "unique.key"},
		{`{"key":null}`, "missing_field", "unique.key"},
		{`{"key":7}`, "invalid_field", "unique.key"},
		{`{"key":"` + strings.Repeat("k", 256) + `"}`, "invalid_field", "unique.key"},
		{`{"key":"a\u0000b"}`, "invalid_field", "unique.key"},
		{`{"key":"\ud800"}`, "invalid_encoding", "unique.key"},
		{`{"key":"k","for":"soon"}`, "invalid_field", "unique.for"},
		{`{"key":"k","for":"-1h"}`, "invalid_field", "unique.for"},
		{`{"key":"k","for":0.5}`, "invalid_field", "unique.for"},
		{`{"key":"k","for":"721h"}`, "invalid_field", "unique.for"},
		{`{"key":"k","while":"forever"}`, "invalid_field", "unique.while"},
		{`{"key":"k","while":"always"}`, "missing_field", "unique.for"},
		{`{"key":"k","on_conflict":"ignore"}`, "invalid_field", "unique.on_conflict"},
		{`{"key":"k","Key":"k"}`, "unknown_field", "unique.Key"},
		{`{"key":"k","extra":1}`, "unknown_field", "unique.extra"},
		{`"k"`, "invalid_field", "unique"},
		{`[]`, "invalid_field", "unique"},
	} {
		r := doInvalid(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","unique":`+c.unique+`}`)
		if e := r.apiError(t); r.status != 400 || e.Code != c.code || e.Field != c.field {
			t.Errorf("unique %s: %d %+v, want 400 %s naming %s", c.unique, r.status, e, c.code, c.field)
		}
		// The same in a batch entry: refused on its own (text that is not
		// a character makes the whole body unusable).
		b := doInvalid(t, "POST", f.url+"/v1/jobs/batch", nil, `{"jobs":[{"type":"sys.echo","unique":`+c.unique+`}]}`)
		wantStatus := map[bool]int{true: 400, false: 200}[c.code == "invalid_encoding"]
		if b.status != wantStatus || !strings.Contains(string(b.body), `"code":"`+c.code+`"`) {
			t.Errorf("batch entry with unique %s: %d %s", c.unique, b.status, b.body)
		}
	}
	// on_conflict beside unique: checked as in it, and only with it.
	for _, c := range []struct{ body, code, field string }{
		{`{"type":"sys.echo","on_conflict":"error"}`, "invalid_field", "on_conflict"},
		{`{"type":"sys.echo","unique":null,"on_conflict":"error"}`, "invalid_field", "on_conflict"},
		{`{"type":"sys.echo","unique":{"key":"k"},"on_conflict":"ignore"}`, "invalid_field", "on_conflict"},
		{`{"type":"sys.echo","unique":{"key":"k"},"on_conflict":""}`, "invalid_field", "on_conflict"},
		{`{"type":"sys.echo","unique":{"key":"k"},"on_conflict":7}`, "invalid_field", "on_conflict"},
		{`{"type":"sys.echo","unique":{"key":"k","on_conflict":"existing"},"on_conflict":"error"}`, "invalid_field", "on_conflict"},
	} {
		r := doInvalid(t, "POST", f.url+"/v1/jobs", nil, c.body)
		if e := r.apiError(t); r.status != 400 || e.Code != c.code || e.Field != c.field {
			t.Errorf("%s: %d %+v, want 400 %s naming %s", c.body, r.status, e, c.code, c.field)
		}
	}
	if r := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","unique":null}`); r.status != 202 || r.job(t).Unique != nil {
		t.Errorf("unique null: %d %s, want a job without", r.status, r.body)
	}
	if n := len(f.env.JobKeys(t)); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
}

// A key that may not read jobs learns only the id of another key's job
// holding the unique key (409), not its contents; its own job it sees.
func TestUniqueDuplicateNeedsRead(t *testing.T) {
	t.Parallel()
	k := setupKeyed(t, api.Config{},
		apikey.Key{Name: "reader", Scopes: []apikey.Scope{apikey.Submit, apikey.Read}},
		apikey.Key{Name: "writer", Scopes: []apikey.Scope{apikey.Submit}})
	as := func(name string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + k.secrets[name]}
	}
	body := `{"type":"sys.echo","payload":{"secret":"s3"},"unique":{"key":"uniq-shared"}}`
	first := do(t, "POST", k.url+"/v1/jobs", as("reader"), body)
	if first.status != 202 {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	r := do(t, "POST", k.url+"/v1/jobs", as("writer"), body)
	if r.status != 409 || strings.Contains(string(r.body), "s3") || !strings.Contains(string(r.body), first.job(t).ID) {
		t.Errorf("a submit-only key: %d %s, want 409 naming the job only", r.status, r.body)
	}
	if r := do(t, "POST", k.url+"/v1/jobs", as("reader"), body); r.status != 200 {
		t.Errorf("a key that may read: %d %s, want 200", r.status, r.body)
	}
}
