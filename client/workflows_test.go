package client_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

const testWorkflowID = "0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c70"

// testWorkflow is a workflow as the API would return it, read alone.
func testWorkflow(status string) map[string]any {
	return map[string]any{
		"id": testWorkflowID, "name": "wf-client", "on_failure": "stop", "status": status, "jobs": 2,
		"created_at": "2025-03-14T09:26:53Z", "counts": map[string]int{"queued": 1, "waiting": 1},
		"members": []map[string]any{
			{"step": "steps.chain[0]", "type": "sys.echo", "job_id": testID, "status": "queued"},
			{"step": "steps.chain[1]", "type": "sys.echo", "status": "waiting"},
		},
		"steps": map[string]any{"chain": []any{
			map[string]any{"job": map[string]any{"type": "sys.echo", "timeout": "30s"}},
			map[string]any{"job": map[string]any{"type": "sys.echo"}, "take_input": false},
		}},
	}
}

func TestWorkflowSubmitGetCancelList(t *testing.T) {
	t.Parallel()
	var bodies []string
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.Method + " " + r.URL.Path {
		case "POST /v1/workflows":
			bodies = append(bodies, string(b))
			w.Header().Set("Location", "/v1/workflows/"+testWorkflowID)
			reply(w, http.StatusAccepted, testWorkflow("running"))
		case "GET /v1/workflows/" + testWorkflowID:
			reply(w, http.StatusOK, testWorkflow("running"))
		case "POST /v1/workflows/" + testWorkflowID + "/cancel":
			reply(w, http.StatusConflict, map[string]any{"error": map[string]any{"code": "conflict", "message": "workflow already ended (succeeded)"}})
		case "GET /v1/workflows":
			if q := r.URL.Query(); q.Get("limit") != "1" || q.Get("before") != "2025-03-14T09:26:53Z" {
				t.Errorf("list query %v", q)
			}
			reply(w, http.StatusOK, map[string]any{"workflows": []any{map[string]any{
				"id": testWorkflowID, "on_failure": "continue", "status": "failed", "jobs": 3, "created_at": "2025-03-14T09:26:52Z",
				"finished_at": "2025-03-14T09:27:00Z", "error": map[string]any{"code": "member_failed", "message": "m", "retryable": false}}},
				"before": "2025-03-14T09:26:52Z"})
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			http.NotFound(w, r)
		}
	})
	ctx := context.Background()
	no := false
	req := client.WorkflowRequest{Name: "wf-client", Steps: client.WorkflowStep{Chain: []client.WorkflowStep{
		{Job: &client.JobRequest{Type: "sys.echo", Timeout: jobs.Duration(30 * time.Second)}},
		{Job: &client.JobRequest{Type: "sys.echo"}, TakeInput: &no},
	}}}
	w, err := c.SubmitWorkflow(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if w.ID != testWorkflowID || len(w.Members) != 2 || w.Members[0].JobID != testID || w.Steps == nil || *w.Steps.Chain[1].TakeInput {
		t.Errorf("submitted %+v", w)
	}
	if _, err := c.SubmitWorkflowJSON(ctx, json.RawMessage(`{"steps":{"job":{"type":"sys.echo"}}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SubmitWorkflowJSON(ctx, json.RawMessage(`{"steps":`)); err == nil {
		t.Error("invalid JSON was sent")
	}
	want := []string{`{"name":"wf-client","steps":{"chain":[{"job":{"type":"sys.echo","timeout":"30s"}},{"job":{"type":"sys.echo"},"take_input":false}]}}`,
		`{"steps":{"job":{"type":"sys.echo"}}}`}
	if d := cmp.Diff(want, bodies); d != "" {
		t.Errorf("bodies (-want +got):\n%s", d)
	}
	if w, err := c.Workflow(ctx, testWorkflowID); err != nil || w.Terminal() || w.Counts["waiting"] != 1 {
		t.Errorf("get: %+v %v", w, err)
	}
	if _, err := c.CancelWorkflow(ctx, testWorkflowID); !client.IsConflict(err) {
		t.Errorf("cancel of an ended workflow: %v, want a conflict", err)
	}
	if _, err := c.Workflow(ctx, ""); err == nil {
		t.Error("get of no id: no error")
	}
	p, err := c.Workflows(ctx, 1, time.Date(2025, 3, 14, 10, 26, 53, 0, time.FixedZone("CET", 3600)))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Workflows) != 1 || !p.Workflows[0].Terminal() || p.Workflows[0].Error.Code != "member_failed" || p.Before.IsZero() {
		t.Errorf("list: %+v", p)
	}
}
