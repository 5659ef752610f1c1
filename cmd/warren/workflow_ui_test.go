package main_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// The Workflows page lists workflows with their members' counts, and a
// workflow's page shows its steps as a tree, each member with its status
// and a link to its job; both update in place.
func TestWorkflowDashboardPage(t *testing.T) {
	t.Parallel()
	_, base := devStack(t)
	submit := func(body string) string {
		t.Helper()
		code, out := call(t, "POST", base+"/v1/workflows", "", body)
		var v struct{ ID string }
		if code != 202 || json.Unmarshal(out, &v) != nil {
			t.Fatalf("submit: %d %s", code, out)
		}
		return v.ID
	}
	thumbs := submit(`{"name":"wf-ui-thumbnails","on_failure":"continue","steps":{"chain":[
		{"job":{"type":"sys.echo","payload":{"n":1}}},
		{"chord":{"group":[{"job":{"type":"sys.echo"}},{"job":{"type":"sys.fail","payload":{"fail_times":1,"permanent":true}},"take_input":false},
			{"job":{"type":"sys.sleep","payload":{"ms":300}},"take_input":false}],
			"then":{"job":{"type":"sys.echo"}}}}]}}`)
	submit(`{"name":"wf-ui-nightly","steps":{"chain":[{"job":{"type":"sys.echo","delay":"1h"}},{"job":{"type":"sys.echo"}}]}}`)

	b := newBrowser(t, base, 1280, 720, false)
	b.open("/ui/")
	b.click(`nav a[data-page="workflows"]`)
	b.waitFor("both workflows", `document.querySelectorAll('tr[data-workflow]').length === 2`)
	b.markPage()
	row := `document.querySelector('tr[data-workflow="` + thumbs + `"]')`
	b.waitFor("the thumbnails workflow ended, shown without a reload",
		row+`.querySelector('.status.failed') && `+row+`.querySelector('[data-col="counts"]').innerText.includes("4 succeeded")`)
	if !b.pageKept() {
		t.Error("the workflows page reloaded; it must update in place")
	}
	if got := eval[string](b, row+`.innerText`); !strings.Contains(got, "wf-ui-thumbnails") || !strings.Contains(got, "1 failed") || !strings.Contains(got, "5") {
		t.Errorf("the thumbnails row says %q", got)
	}
	b.shot("workflows-1280-light")

	b.click(`a[data-key="wf-` + thumbs + `"]`)
	b.waitFor("the steps tree", `document.querySelectorAll('.wf-tree li.wf-job').length === 5`)
	fail := `document.querySelector('li[data-step="steps.chain[1].chord.group[1]"]')`
	if got := eval[string](b, fail+`.innerText`); !strings.Contains(got, "sys.fail") || !strings.Contains(got, "failed") {
		t.Errorf("the failed member says %q", got)
	}
	then := `document.querySelector('li[data-step="steps.chain[1].chord.then"]')`
	if got := eval[string](b, then+`.innerText`); !strings.Contains(got, "then") || !strings.Contains(got, "succeeded") {
		t.Errorf("the callback says %q", got)
	}
	if got := eval[string](b, `document.querySelector('[data-workflow-error]').innerText`); !strings.Contains(got, "member_failed") {
		t.Errorf("the workflow's error says %q", got)
	}
	b.shot("workflow-detail-1280-light")
	// A member's job id links to the job's page.
	b.click(`li[data-step="steps.chain[1].chord.group[1]"] a[href^="/ui/jobs/"]`)
	b.waitFor("the member's job page", `location.pathname.startsWith("/ui/jobs/") && document.querySelector('h1 .status.failed')`)
}
