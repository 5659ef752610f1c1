package main_test

import (
	"encoding/json"
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

	// The rate limits page: the limit and what it holds back.
	b.open("/ui/limits")
	b.waitFor("the limit of sys.sleep with the job it holds back", `(() => {
		const row = document.querySelector('tr[data-limit="sys.sleep"]');
		return row && row.querySelector('[data-col="rate"]').textContent === "1 per 1 h" &&
			Number(row.querySelector('[data-col="limited"]').textContent) >= 1; })()`)
	// An admin changes it in the form: a tenant rate beside the type's.
	b.click(`button[data-key="edit-sys.sleep"]`)
	b.waitFor("the form to hold the limit", `document.querySelector("#l-type").value === "sys.sleep" && document.querySelector("#l-limit").value === "1"`)
	setInputs(b, map[string]string{"#l-tenant-key": "customer", "#l-tenant-limit": "2", "#l-tenant-per": "1m"})
	b.click(`#limit-form button[type="submit"]`)
	b.waitFor("the tenant rate in the table", `(() => {
		const cell = document.querySelector('tr[data-limit="sys.sleep"] [data-col="tenant"]');
		return cell && cell.textContent.includes("2 per 1 min") && cell.textContent.includes("customer") &&
			document.querySelector("#limit-saved").textContent === "Changed the limit of sys.sleep."; })()`)
	b.shot("limits")
	// A period the API refuses: its error, the field marked, the limit as it was.
	setInputs(b, map[string]string{"#l-per": "5ms"})
	b.click(`#limit-form button[type="submit"]`)
	b.waitFor("the refusal naming the period", `!document.querySelector("#page-error").hidden &&
		document.querySelector("#page-error").textContent.includes("rate.per") &&
		document.querySelector("#l-per").getAttribute("aria-invalid") === "true"`)
	b.shot("limits-refused")
	var got struct {
		Rate   struct{ Per string }
		Tenant struct{ Limit int }
	}
	if status, body := call(t, "GET", base+"/v1/limits/sys.sleep", "", ""); status != http.StatusOK ||
		json.Unmarshal(body, &got) != nil || got.Rate.Per != "1h0m0s" || got.Tenant.Limit != 2 {
		t.Fatalf("the limit after a refused change: %d %s", status, body)
	}
	// Removed, after a confirmation.
	b.click(`button[data-key="remove-sys.sleep"]`)
	b.waitFor("the confirmation", `document.querySelector("dialog[open] #confirm-remove")`)
	b.click(`dialog[open] #confirm-remove`)
	b.waitFor("no limits", `document.querySelector(".empty") && document.querySelector(".empty").textContent.startsWith("No job type has a rate limit")`)
	if status, body := call(t, "GET", base+"/v1/limits/sys.sleep", "", ""); status != http.StatusNotFound {
		t.Errorf("the limit after its removal: %d %s", status, body)
	}
}

// setInputs sets form fields' values, by CSS selector, as typing would.
func setInputs(b *browser, values map[string]string) {
	b.t.Helper()
	for css, v := range values {
		js := fmt.Sprintf(`(() => { const el = document.querySelector(%q); if (!el) return false; el.value = %q;
			el.dispatchEvent(new Event("input", { bubbles: true })); return true; })()`, css, v)
		if !eval[bool](b, js) {
			b.t.Fatalf("no field %s on the page", css)
		}
	}
}
