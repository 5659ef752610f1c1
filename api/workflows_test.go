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
	"github.com/warrenhq/warren/workers/sys"
	"github.com/warrenhq/warren/workflow"
)

func (r response) workflow(t *testing.T) workflow.View {
	t.Helper()
	var v workflow.View
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode workflow from %s: %v", r.body, err)
	}
	return v
}

// workflowCount is how many workflows the namespace has recorded.
func workflowCount(t *testing.T, f *fixture) int {
	t.Helper()
	recs, err := f.env.Store.ListWorkflows(t.Context(), time.Time{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

// Submit, read, list and cancel, over HTTP; nothing consumes, so the
// first step's job stays queued.
func TestWorkflowSubmitGetListCancel(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	r := do(t, "POST", f.url+"/v1/workflows", nil, `{"name":"wf-api","steps":{"chain":[
		{"job":{"type":"sys.echo","payload":{"n":1}}},
		{"chord":{"group":[{"job":{"type":"sys.echo"}},{"job":{"type":"sys.sleep","payload":{"ms":1}},"take_input":false}],
		          "then":{"job":{"type":"sys.echo"}}}}]}}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("submit: %d %s", r.status, r.body)
	}
	v := r.workflow(t)
	if r.header.Get("Location") != "/v1/workflows/"+v.ID || v.Status != workflow.StatusRunning || v.Name != "wf-api" || v.OnFailure != "stop" {
		t.Fatalf("answer %+v, Location %q", v, r.header.Get("Location"))
	}
	if len(v.Members) != 4 || v.Members[0].JobID == "" || v.Members[0].Status != "queued" || v.Members[1].Status != workflow.MemberWaiting {
		t.Fatalf("members %+v", v.Members)
	}
	if v.Members[2].Step != "steps.chain[1].chord.group[1]" || v.Counts["queued"] != 1 || v.Counts["waiting"] != 3 {
		t.Errorf("members %+v counts %v", v.Members, v.Counts)
	}
	if n := f.env.Messages(t, sys.Pool); n != 1 {
		t.Errorf("%d messages published, want the first step's one", n)
	}
	j, err := f.env.Store.Get(t.Context(), v.Members[0].JobID)
	if err != nil || j.Metadata["workflow"] != v.ID || j.Metadata["workflow_step"] != "steps.chain[0]" {
		t.Fatalf("member job %+v, %v", j, err)
	}

	got := do(t, "GET", f.url+"/v1/workflows/"+strings.ToUpper(v.ID), nil, "").workflow(t)
	if got.ID != v.ID || got.Steps == nil || got.Steps.Chain == nil {
		t.Errorf("get: %+v", got)
	}
	var list struct {
		Workflows []workflow.View `json:"workflows"`
		Before    string          `json:"before"`
	}
	r = do(t, "GET", f.url+"/v1/workflows?limit=1", nil, "")
	if err := json.Unmarshal(r.body, &list); err != nil || len(list.Workflows) != 1 || list.Workflows[0].ID != v.ID ||
		list.Workflows[0].Members != nil || list.Before == "" {
		t.Fatalf("list: %s %v", r.body, err)
	}
	r = do(t, "GET", f.url+"/v1/workflows?limit=1&before="+list.Before, nil, "")
	list.Before = ""
	if err := json.Unmarshal(r.body, &list); err != nil || len(list.Workflows) != 0 || list.Before != "" {
		t.Errorf("second page: %s %v", r.body, err)
	}

	r = do(t, "POST", f.url+"/v1/workflows/"+v.ID+"/cancel", nil, "")
	if c := r.workflow(t); r.status != 200 || c.Status != workflow.StatusCanceled || c.Members[0].Status != "canceled" ||
		c.Members[1].Status != workflow.MemberSkipped || c.Error == nil || c.Error.Code != "canceled" {
		t.Errorf("cancel: %d %s", r.status, r.body)
	}
	if r = do(t, "POST", f.url+"/v1/workflows/"+v.ID+"/cancel", nil, ""); r.status != 409 || r.apiError(t).Code != "conflict" {
		t.Errorf("second cancel: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/workflows/" + jobs.NewID(), 404, "not_found"},
		{"POST", "/v1/workflows/" + jobs.NewID() + "/cancel", 404, "not_found"},
		{"GET", "/v1/workflows/nope", 400, "invalid_id"},
		{"GET", "/v1/workflows?limit=0", 400, "invalid_field"},
		{"GET", "/v1/workflows?limit=1001", 400, "invalid_field"},
		{"GET", "/v1/workflows?before=yesterday", 400, "invalid_field"},
	} {
		r := doInvalid(t, tc.method, f.url+tc.path, nil, "")
		if r.status != tc.status || r.apiError(t).Code != tc.code {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, r.status, r.body, tc.status, tc.code)
		}
	}
}

// chains wraps a job step in n levels of chains.
func chains(n int) string {
	return strings.Repeat(`{"chain":[`, n) + `{"job":{"type":"sys.echo"}}` + strings.Repeat(`]}`, n)
}

// group is a group of n echo jobs.
func group(n int) string {
	return `{"group":[` + strings.TrimSuffix(strings.Repeat(`{"job":{"type":"sys.echo"}},`, n), ",") + `]}`
}

// Every malformed or oversized workflow is refused with the path of what
// is wrong, and leaves nothing: no record, no message.
func TestWorkflowRefusals(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	deepPath := "steps" + strings.Repeat(".chain[0]", 10)
	for _, tc := range []struct {
		name, body    string
		status        int
		code, field   string
		checkDocument bool // the request is one the document allows, refused for what it cannot say
	}{
		{"ten deep", `{"steps":` + chains(9) + `}`, 202, "", "", true},
		{"eleven deep", `{"steps":` + chains(10) + `}`, 400, "invalid_field", deepPath, true},
		{"deep JSON", `{"steps":` + chains(60) + `}`, 400, "invalid_json", "steps.chain[0]…", false},
		{"1000 jobs", `{"steps":` + group(1000) + `}`, 202, "", "", true},
		{"1001 jobs", `{"steps":` + group(1001) + `}`, 400, "invalid_field", "steps.group[1000]", false},
		{"no steps", `{"name":"x"}`, 400, "missing_field", "steps", false},
		{"steps null", `{"steps":null}`, 400, "missing_field", "steps", false},
		{"steps text", `{"steps":"job"}`, 400, "invalid_json", "steps", false},
		{"no kind", `{"steps":{}}`, 400, "invalid_field", "steps", false},
		{"two kinds", `{"steps":{"job":{"type":"sys.echo"},"group":[{"job":{"type":"sys.echo"}}]}}`, 400, "invalid_field", "steps", false},
		{"chain not array", `{"steps":{"chain":{"job":{"type":"sys.echo"}}}}`, 400, "invalid_field", "steps.chain", false},
		{"empty chain", `{"steps":{"chain":[]}}`, 400, "invalid_field", "steps.chain", false},
		{"empty group", `{"steps":{"chain":[{"job":{"type":"sys.echo"}},{"group":[]}]}}`, 400, "invalid_field", "steps.chain[1].group", false},
		{"chord without then", `{"steps":{"chord":{"group":[{"job":{"type":"sys.echo"}}]}}}`, 400, "missing_field", "steps.chord.then", false},
		{"chord without group", `{"steps":{"chord":{"then":{"job":{"type":"sys.echo"}}}}}`, 400, "missing_field", "steps.chord.group", false},
		{"take_input on a group", `{"steps":{"group":[{"job":{"type":"sys.echo"}}],"take_input":false}}`, 400, "invalid_field", "steps.take_input", false},
		{"unknown step field", `{"steps":{"jobs":[]}}`, 400, "unknown_field", "steps.jobs", false},
		{"unknown field", `{"steps":{"job":{"type":"sys.echo"}},"retries":3}`, 400, "unknown_field", "retries", false},
		{"type a number", `{"steps":{"chain":[{"job":{"type":7}}]}}`, 400, "invalid_field", "steps.chain[0].job.type", false},
		{"unknown type", `{"steps":{"chain":[{"job":{"type":"sys.echo"}},{"chord":{"group":[{"job":{"type":"wf.nope"}}],"then":{"job":{"type":"sys.echo"}}}}]}}`,
			400, "unknown_type", "steps.chain[1].chord.group[0].job.type", true},
		{"payload schema", `{"steps":{"group":[{"job":{"type":"sys.sleep","payload":{"ms":"x"}},"take_input":false}]}}`, 400, "invalid_payload", "steps.group[0].job.payload.ms", true},
		{"payload not object", `{"steps":{"job":{"type":"sys.echo","payload":[1]}}}`, 400, "invalid_field", "steps.job.payload", false},
		{"schema takes no input", `{"steps":{"chain":[{"job":{"type":"sys.echo"}},{"group":[{"job":{"type":"sys.fail"}}]}]}}`,
			400, "invalid_field", "steps.chain[1].group[0].take_input", true},
		{"schema takes no input, none taken", `{"steps":{"chain":[{"job":{"type":"sys.echo"}},{"group":[{"job":{"type":"sys.fail"},"take_input":false}]}]}}`,
			202, "", "", true},
		{"sets input", `{"steps":{"chain":[{"job":{"type":"sys.echo"}},{"job":{"type":"sys.echo","payload":{"input":1}}}]}}`, 400, "invalid_field", "steps.chain[1].job.payload.input", true},
		{"idempotency key", `{"steps":{"job":{"type":"sys.echo","idempotency_key":"k"}}}`, 400, "invalid_field", "steps.job.idempotency_key", false},
		{"run_at", `{"steps":{"job":{"type":"sys.echo","run_at":"2030-01-02T15:04:05Z"}}}`, 400, "invalid_field", "steps.job.run_at", false},
		{"unique", `{"steps":{"job":{"type":"sys.echo","unique":{"key":"a"}}}}`, 400, "invalid_field", "steps.job.unique", false},
		{"on_conflict", `{"steps":{"job":{"type":"sys.echo","on_conflict":"error"}}}`, 400, "invalid_field", "steps.job.on_conflict", false},
		{"workflow metadata", `{"steps":{"job":{"type":"sys.echo","metadata":{"workflow":"x"}}}}`, 400, "invalid_field", "steps.job.metadata.workflow", true},
		{"bad timeout", `{"steps":{"job":{"type":"sys.echo","timeout":"soon"}}}`, 400, "invalid_field", "steps.job.timeout", true},
		{"on_failure", `{"on_failure":"maybe","steps":{"job":{"type":"sys.echo"}}}`, 400, "invalid_field", "on_failure", false},
		{"long name", `{"name":"` + strings.Repeat("n", 201) + `","steps":{"job":{"type":"sys.echo"}}}`, 400, "invalid_field", "name", false},
		{"name not UTF-8", "{\"name\":\"\xff\",\"steps\":{\"job\":{\"type\":\"sys.echo\"}}}", 400, "invalid_encoding", "name", false},
		{"huge payload", `{"steps":{"job":{"type":"sys.echo","payload":{"s":"` + strings.Repeat("x", 1<<20) + `"}}}}`, 413, "too_large", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := workflowCount(t, f)
			msgs := f.env.Messages(t, sys.Pool)
			var r response
			if tc.checkDocument {
				r = do(t, "POST", f.url+"/v1/workflows", nil, tc.body)
			} else {
				r = doInvalid(t, "POST", f.url+"/v1/workflows", nil, tc.body)
			}
			if r.status != tc.status {
				t.Fatalf("%d %.300s, want %d", r.status, r.body, tc.status)
			}
			if tc.status == 202 {
				return
			}
			e := r.apiError(t)
			if prefix, ok := strings.CutSuffix(tc.field, "…"); ok && strings.HasPrefix(e.Field, prefix) {
				e.Field = tc.field // a long path, cut short
			}
			if e.Code != tc.code || e.Field != tc.field {
				t.Errorf("%s at %q (%s), want %s at %q", e.Code, e.Field, e.Message, tc.code, tc.field)
			}
			if workflowCount(t, f) != before || f.env.Messages(t, sys.Pool) != msgs {
				t.Error("a refused workflow was recorded or published")
			}
		})
	}
}

// The scopes, the keys limited to types, and the keys' rate and batch
// limits hold for workflows as they do for jobs.
func TestWorkflowKeys(t *testing.T) {
	t.Parallel()
	k := setupKeyed(t, api.Config{},
		apikey.Key{Name: "ci", Scopes: scopes(apikey.Submit)},
		apikey.Key{Name: "dash", Scopes: scopes(apikey.Read)},
		apikey.Key{Name: "ops", Scopes: scopes(apikey.Admin)},
		apikey.Key{Name: "echoer", Scopes: scopes(apikey.Admin), Types: []string{"sys.echo"}},
		apikey.Key{Name: "few", Scopes: scopes(apikey.Submit), RequestsPerSecond: -1, JobsPerMinute: 5},
		apikey.Key{Name: "small", Scopes: scopes(apikey.Submit), MaxBatch: 2},
	)
	echo := `{"steps":{"chain":[{"job":{"type":"sys.echo"}},{"job":{"type":"sys.echo"}}]}}`
	mixed := `{"steps":{"chain":[{"job":{"type":"sys.echo"}},{"group":[{"job":{"type":"sys.echo"}},{"job":{"type":"sys.fail"},"take_input":false}]}]}}`

	r := k.as(t, "ci", "POST", "/v1/workflows", mixed)
	if r.status != 202 {
		t.Fatalf("ci submits: %d %s", r.status, r.body)
	}
	wf := r.workflow(t)
	if wf.SubmittedBy != "ci" {
		t.Errorf("submitted_by %q", wf.SubmittedBy)
	}
	if j, err := k.env.Store.Get(t.Context(), wf.Members[0].JobID); err != nil || j.SubmittedBy != "ci" {
		t.Errorf("member submitted by %q (%v), want ci", j.SubmittedBy, err)
	}
	for _, tc := range []struct {
		key, method, path, body string
		status                  int
	}{
		{"", "POST", "/v1/workflows", echo, 401},
		{"", "GET", "/v1/workflows", "", 401},
		{"", "GET", "/v1/workflows/" + wf.ID, "", 401},
		{"", "POST", "/v1/workflows/" + wf.ID + "/cancel", "", 401},
		{"dash", "POST", "/v1/workflows", echo, 403},
		{"ci", "GET", "/v1/workflows", "", 403},
		{"ci", "GET", "/v1/workflows/" + wf.ID, "", 403},
		{"ci", "POST", "/v1/workflows/" + wf.ID + "/cancel", "", 403},
		{"dash", "POST", "/v1/workflows/" + wf.ID + "/cancel", "", 403},
		{"dash", "GET", "/v1/workflows", "", 200},
		{"dash", "GET", "/v1/workflows/" + wf.ID, "", 200},
		// Limited to sys.echo: not a workflow with a sys.fail member.
		{"echoer", "POST", "/v1/workflows", mixed, 403},
		{"echoer", "GET", "/v1/workflows/" + wf.ID, "", 403},
		{"echoer", "POST", "/v1/workflows/" + wf.ID + "/cancel", "", 403},
		{"echoer", "GET", "/v1/workflows", "", 403},
		{"echoer", "POST", "/v1/workflows", echo, 202},
		// max_batch 2 bounds a workflow's jobs.
		{"small", "POST", "/v1/workflows", echo, 202},
		{"small", "POST", "/v1/workflows", mixed, 400},
		// 5 jobs a minute: 6 is more than the key may ever send at once
		// (400 naming jobs), then 3 + 2 of the 5, then none left (429).
		{"few", "POST", "/v1/workflows", `{"steps":` + group(6) + `}`, 400},
		{"few", "POST", "/v1/workflows", mixed, 202},
		{"few", "POST", "/v1/workflows", echo, 202},
		{"few", "POST", "/v1/workflows", mixed, 429},
		{"ops", "POST", "/v1/workflows/" + wf.ID + "/cancel", "", 200},
	} {
		r := k.as(t, tc.key, tc.method, tc.path, tc.body)
		if r.status != tc.status {
			t.Errorf("%s %s %s: %d %s, want %d", tc.key, tc.method, tc.path, r.status, r.body, tc.status)
			continue
		}
		switch {
		case tc.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer"):
			t.Errorf("%s %s: 401 without a challenge", tc.method, tc.path)
		case tc.key == "echoer" && tc.method == "POST" && tc.status == 403:
			if e := r.apiError(t); e.Code != "forbidden" || (tc.body == mixed && e.Field != "steps.chain[1].group[1].job.type") {
				t.Errorf("echoer: %+v", e)
			}
		case tc.key == "few" && tc.status == 400:
			if e := r.apiError(t); e.Field != "jobs" {
				t.Errorf("few: %+v", e)
			}
		case tc.key == "small" && tc.status == 400:
			if e := r.apiError(t); e.Field != "steps.chain[1].group[1]" || !strings.Contains(e.Message, "max_batch") {
				t.Errorf("small: %+v", e)
			}
		case tc.status == 429 && r.header.Get("Retry-After") == "":
			t.Error("429 without Retry-After")
		}
	}
	audit := map[string]bool{}
	for _, rec := range logLines(t, k.logs, "audit") {
		if rec["action"] == "submit" && rec["workflow"] != nil {
			audit[fmt.Sprint("submit ", rec["key"], " ", rec["jobs"])] = true
		}
		if rec["action"] == "cancel" && rec["workflow"] == wf.ID {
			audit[fmt.Sprint("cancel ", rec["key"])] = true
		}
	}
	for _, want := range []string{"submit ci 3", "submit few 3", "cancel ops"} {
		if !audit[want] {
			t.Errorf("no audit line %q in %v", want, audit)
		}
	}
}
