package main_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
)

// The dashboard shows jobs a rate limit holds back: the pool's figure, and
// on a job's page until when.
func TestDashboardShowsRateLimitedJobs(t *testing.T) {
	t.Parallel()
	_, base := devStack(t)
	if status, b := call(t, "PUT", base+"/v1/limits/sys.sleep", "", `{"rate":{"limit":1,"per":"1h"}}`); status != http.StatusOK {
		t.Fatalf("PUT the limit: %d %s", status, b)
	}
	// The workers hear of it on the events channel, a moment later; only
	// jobs submitted after that are held back, so submit until one is.
	var held string
	testenv.Eventually(t, 20*time.Second, "a sys.sleep job to be held back", func() bool {
		id := submit(t, base, "", `{"type":"sys.sleep","payload":{"ms":0}}`)
		time.Sleep(300 * time.Millisecond)
		if j := getJob(t, base, "", id); j.LimitedUntil != nil {
			held = id
			return true
		}
		return false
	})
	b := newBrowser(t, base, 1280, 900, false)
	b.open("/ui/")
	b.waitFor("the sys pool to show a rate-limited job",
		`Number((document.querySelector('[data-pool="sys"] [data-figure="limited"]') || {}).textContent) >= 1`)
	b.shot("overview-rate-limited")
	b.open("/ui/jobs/" + held)
	b.waitFor("the job's page to say until when it is held back", fmt.Sprintf(
		`location.pathname === "/ui/jobs/%s" && document.querySelector("[data-limited-until]") && document.querySelector("h1 .status.queued")`, held))
	b.shot("job-rate-limited")
}
