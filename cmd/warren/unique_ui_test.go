package main_test

import (
	"testing"
)

// A job's page shows its unique key, as text, with how long it is held.
func TestDashboardShowsUniqueKey(t *testing.T) {
	t.Parallel()
	_, base := devStack(t)
	b := newBrowser(t, base, 1280, 900, false)
	id := submit(t, base, "", `{"type":"sys.echo","payload":{"n":1},"unique":{"key":"uniq-<b>acct</b>-42","for":"2h","while":"until_done"}}`)
	b.open("/ui/jobs/" + id)
	b.waitFor("the unique key", `document.querySelector('[data-unique-key]')`)
	if got := eval[string](b, `document.querySelector('[data-unique-key]').textContent`); got != "uniq-<b>acct</b>-42" {
		t.Errorf("the key shown is %q", got)
	}
	if got := eval[string](b, `document.querySelector('[data-unique-key]').parentElement.textContent`); got != "uniq-<b>acct</b>-42 held until it ends, at most 2h0m0s from its creation" {
		t.Errorf("the unique key's line reads %q", got)
	}
	b.shot("job-unique")

	// A job without one shows no such line.
	plain := submit(t, base, "", `{"type":"sys.echo"}`)
	b.open("/ui/jobs/" + plain)
	b.waitFor("the job's facts", `document.querySelector('dl.kv')`)
	if eval[bool](b, `document.querySelector('[data-unique-key]') !== null`) {
		t.Error("a job without a unique key shows one")
	}
}
