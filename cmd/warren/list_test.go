package main_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/warrenhq/warren/jobs"
)

// warren job list and warren jobs find what ran, and job get shows its
// attempts.
func TestJobListAgainstRunningStack(t *testing.T) {
	t.Parallel()
	_, url := devStack(t)
	var ids []string
	for range 2 {
		out, errOut, code := warren(t, url, "", "enqueue", "sys.echo", `{"n":1}`)
		if code != 0 {
			t.Fatalf("enqueue: exit %d, %s", code, errOut)
		}
		ids = append(ids, strings.TrimSpace(out))
	}
	_, errOut, code := warren(t, url, "", "enqueue", "sys.fail", `{"fail_times":5}`, "--max-attempts", "2", "--wait")
	if code != 2 {
		t.Fatalf("failing job: exit %d, %s", code, errOut)
	}
	if _, errOut, code := warren(t, url, "", append([]string{"job", "wait"}, ids...)...); code != 0 {
		t.Fatalf("job wait: exit %d, %s", code, errOut)
	}
	out, errOut, code := warren(t, url, "", "job", "list", "--status", "succeeded", "--type", "sys.echo", "-o", "json")
	var page struct{ Jobs []jobs.Job }
	if err := json.Unmarshal([]byte(out), &page); code != 0 || err != nil || len(page.Jobs) != 2 || page.Jobs[0].ID != ids[1] {
		t.Fatalf("job list -o json: exit %d, %s %s; want the two echo jobs, newest first", code, out, errOut)
	}
	out, _, code = warren(t, url, "", "jobs", "--status", "failed")
	if code != 0 || !strings.Contains(out, "sys.fail") || !strings.Contains(out, "failed") || strings.Contains(out, ids[0]) {
		t.Errorf("jobs --status failed: exit %d\n%s", code, out)
	}
	fields := strings.Fields(out)
	failedID := ""
	for _, f := range fields {
		if jobs.ValidID(f) {
			failedID = f
		}
	}
	out, _, code = warren(t, url, "", "job", "get", failedID)
	if code != 0 || !strings.Contains(out, "attempts:") || !strings.Contains(out, "#1 failed") || !strings.Contains(out, "#2 failed") {
		t.Errorf("job get of the failed job: exit %d\n%s", code, out)
	}
	if _, errOut, code := warren(t, url, "", "job", "list", "--status", "bogus"); code == 0 || !strings.Contains(errOut, "--status") {
		t.Errorf("job list --status bogus: exit %d, %s", code, errOut)
	}
}
