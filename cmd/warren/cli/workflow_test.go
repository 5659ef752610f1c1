package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const testWorkflowID = "0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c70"

// workflowAPI imitates the workflow endpoints: one workflow, a chord
// whose first member failed; it refuses a submission of an unknown type.
func workflowAPI(t *testing.T) (url string, bodies func() []string) {
	t.Helper()
	wf := map[string]any{
		"id": testWorkflowID, "name": "wf-cli", "on_failure": "continue", "status": "running", "jobs": 4,
		"created_at": "2025-03-14T09:26:53Z", "counts": map[string]int{"succeeded": 1, "failed": 1, "running": 1, "waiting": 1},
		"members": []map[string]any{
			{"step": "steps.chain[0]", "type": "sys.echo", "job_id": "0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c71", "status": "succeeded"},
			{"step": "steps.chain[1].chord.group[0]", "type": "sys.fail", "job_id": "0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c72", "status": "failed",
				"error": map[string]any{"code": "handler", "message": "asked to fail", "retryable": false}},
			{"step": "steps.chain[1].chord.group[1]", "type": "sys.sleep", "job_id": "0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c73", "status": "running"},
			{"step": "steps.chain[1].chord.then", "type": "sys.echo", "status": "waiting"},
		},
		"steps": map[string]any{"chain": []any{
			map[string]any{"job": map[string]any{"type": "sys.echo"}},
			map[string]any{"chord": map[string]any{
				"group": []any{map[string]any{"job": map[string]any{"type": "sys.fail"}}, map[string]any{"job": map[string]any{"type": "sys.sleep"}, "take_input": false}},
				"then":  map[string]any{"job": map[string]any{"type": "sys.echo"}}}},
		}},
	}
	var (
		mu   sync.Mutex
		seen []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.Method + " " + r.URL.Path {
		case "POST /v1/workflows":
			mu.Lock()
			seen = append(seen, string(b))
			mu.Unlock()
			if strings.Contains(string(b), "wf.nope") {
				apiReply(w, 400, map[string]any{"error": map[string]any{"code": "unknown_type", "field": "steps.chain[1].job.type",
					"message": `steps.chain[1].job: unknown job type "wf.nope"`}})
				return
			}
			apiReply(w, 202, wf)
		case "GET /v1/workflows/" + testWorkflowID:
			apiReply(w, 200, wf)
		case "POST /v1/workflows/" + testWorkflowID + "/cancel":
			c := map[string]any{}
			for k, v := range wf {
				c[k] = v
			}
			c["status"], c["counts"] = "canceled", map[string]int{"succeeded": 1, "failed": 1, "running": 1, "skipped": 1}
			apiReply(w, 200, c)
		case "GET /v1/workflows":
			apiReply(w, 200, map[string]any{"workflows": []any{map[string]any{"id": testWorkflowID, "name": "wf-cli", "on_failure": "continue",
				"status": "failed", "jobs": 4, "created_at": "2025-03-14T09:26:53Z", "finished_at": "2025-03-14T09:27:03Z",
				"error": map[string]any{"code": "member_failed", "message": "step steps.chain[1].chord.group[0] ended failed", "retryable": false}}},
				"before": "2025-03-14T09:26:53Z"})
		default:
			apiReply(w, 404, map[string]any{"error": map[string]any{"code": "not_found", "message": "no such workflow"}})
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
}

func TestWorkflowCommands(t *testing.T) {
	t.Parallel()
	url, bodies := workflowAPI(t)
	stdout, stderr, code := runWarren(t, url, "", "workflow", "get", testWorkflowID)
	want := `id:         0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c70
name:       wf-cli
status:     running
on failure: continue
jobs:       4: 1 succeeded, 1 failed, 1 running, 1 waiting
created:    2025-03-14T09:26:53.000Z
steps:
  chain
  ├─ [0] job sys.echo      succeeded  0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c71
  └─ [1] chord
     ├─ [0] job sys.fail   failed     0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c72  handler: asked to fail
     ├─ [1] job sys.sleep  running    0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c73
     └─ then job sys.echo  waiting
`
	if code != 0 || stderr != "" {
		t.Fatalf("get: exit %d, stderr %q", code, stderr)
	}
	if d := cmp.Diff(want, stdout); d != "" {
		t.Errorf("get (-want +got):\n%s", d)
	}
	stdout, _, _ = runWarren(t, url, "", "workflow", "get", testWorkflowID, "-o", "json")
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || got["id"] != testWorkflowID || got["members"] == nil {
		t.Errorf("get -o json: %v\n%s", err, stdout)
	}
	if stdout, _, _ = runWarren(t, url, "", "workflow", "get", testWorkflowID, "-o", "yaml"); !strings.Contains(stdout, "status: running\n") {
		t.Errorf("get -o yaml:\n%s", stdout)
	}

	stdout, stderr, code = runWarren(t, url, "", "workflow", "list")
	wantList := `ID                                    NAME    STATUS  JOBS  CREATED               FINISHED
0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c70  wf-cli  failed  4     2025-03-14T09:26:53Z  2025-03-14T09:27:03Z
more: warren workflow list --before 2025-03-14T09:26:53Z
`
	if code != 0 || stderr != "" || stdout != wantList {
		t.Errorf("list: exit %d, stderr %q\n%s", code, stderr, cmp.Diff(wantList, stdout))
	}
	if stdout, _, _ = runWarren(t, url, "", "workflow", "list", "-o", "wide"); !strings.Contains(stdout, "member_failed: step steps.chain[1].chord.group[0] ended failed") {
		t.Errorf("list -o wide:\n%s", stdout)
	}

	file := filepath.Join(t.TempDir(), "wf.json")
	body := `{"name":"wf-cli","steps":{"chain":[{"job":{"type":"sys.echo"}}]}}`
	if err := os.WriteFile(file, []byte(body+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if stdout, stderr, code = runWarren(t, url, "", "workflow", "submit", "-f", file); code != 0 || stdout != testWorkflowID+"\n" {
		t.Errorf("submit -f: exit %d, %q %q", code, stdout, stderr)
	}
	if stdout, _, code = runWarren(t, url, body, "workflow", "submit", "-f", "-", "-o", "json"); code != 0 || !strings.HasPrefix(stdout, "{\n  \"id\": ") {
		t.Errorf("submit -f - -o json: exit %d\n%s", code, stdout)
	}
	if d := cmp.Diff([]string{body, body}, bodies()); d != "" {
		t.Errorf("bodies sent (-want +got):\n%s", d)
	}
	if stdout, _, code = runWarren(t, url, "", "workflow", "cancel", testWorkflowID); code != 0 ||
		stdout != "canceled workflow "+testWorkflowID+" (1 succeeded, 1 failed, 1 running, 1 skipped)\n" {
		t.Errorf("cancel: exit %d %q", code, stdout)
	}

	for _, tc := range []struct {
		stdin  string
		args   []string
		stderr string
	}{
		{"", []string{"workflow", "get", "42"}, `warren: "42" is not a workflow id: want a UUID such as 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d` + "\n"},
		{"", []string{"workflow", "get", "0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7f"}, "warren: get workflow 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7f: 404 not_found: no such workflow\n"},
		{"", []string{"workflow", "submit"}, "warren: -f is required: a file holding the workflow as JSON, or - for standard input\n"},
		{"  ", []string{"workflow", "submit", "-f", "-"}, "warren: standard input is empty: want a workflow as JSON, such as {\"steps\":{\"job\":{\"type\":\"sys.echo\"}}}\n"},
		{`{"steps":`, []string{"workflow", "submit", "-f", "-"}, "warren: submit workflow: the workflow is not valid JSON\n"},
		{`{"steps":{"chain":[{"job":{"type":"sys.echo"}},{"job":{"type":"wf.nope"}}]}}`, []string{"workflow", "submit", "-f", "-"},
			"warren: submit workflow: 400 unknown_type: steps.chain[1].job: unknown job type \"wf.nope\" [field steps.chain[1].job.type]\n"},
		{"", []string{"workflow", "list", "--limit", "0"}, "warren: --limit 0: want 1 to 1000\n"},
	} {
		stdout, stderr, code := runWarren(t, url, tc.stdin, tc.args...)
		if code != 1 || stdout != "" || stderr != tc.stderr {
			t.Errorf("%q: exit %d, stdout %q, stderr %q\nwant 1, nothing, %q", tc.args, code, stdout, stderr, tc.stderr)
		}
	}
}
