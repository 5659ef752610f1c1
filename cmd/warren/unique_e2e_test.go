package main_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
)

// Against a real `warren dev`: while a job with a unique key runs, enqueuing
// the same type and key prints that job (or fails with --on-conflict
// error) and publishes nothing; once it has ended, the key makes a new job.
func TestUniqueJobEndToEnd(t *testing.T) {
	t.Parallel()
	env, url := devStack(t)
	unique := []string{"--unique-key", "uniq-e2e-42", "--unique-while", "running", "--unique-for", "1h"}
	enqueue := func(extra ...string) (string, string, int) {
		args := append([]string{"enqueue", "sys.sleep", `{"ms":4000}`}, unique...)
		out, errOut, code := warren(t, url, "", append(args, extra...)...)
		return strings.TrimSpace(out), errOut, code
	}

	first, errOut, code := enqueue()
	if code != 0 || !jobs.ValidID(first) {
		t.Fatalf("enqueue: exit %d, %q %q", code, first, errOut)
	}
	testenv.Eventually(t, 30*time.Second, "the job running", func() bool {
		j, err := env.Store.Get(context.Background(), first)
		return err == nil && j.Status == jobs.StatusRunning
	})

	dup, errOut, code := enqueue()
	if code != 0 || dup != first || !strings.Contains(errOut, "holds unique key") {
		t.Errorf("a duplicate while it runs: exit %d, stdout %q, stderr %q; want %s", code, dup, errOut, first)
	}
	out, errOut, code := enqueue("--on-conflict", "error")
	if code != 1 || out != "" || !strings.Contains(errOut, first) {
		t.Errorf("--on-conflict error: exit %d, stdout %q, stderr %q; want exit 1 naming %s", code, out, errOut, first)
	}
	out, _, code = warren(t, url, "", "job", "get", first, "-o", "json")
	if code != 0 || !strings.Contains(out, `"key": "uniq-e2e-42"`) && !strings.Contains(out, `"key":"uniq-e2e-42"`) {
		t.Errorf("job get shows no unique key: exit %d, %s", code, out)
	}

	if _, errOut, code := warren(t, url, "", "job", "wait", first, "--wait-timeout", "30s"); code != 0 {
		t.Fatalf("job wait: exit %d, %s", code, errOut)
	}
	next, errOut, code := enqueue()
	if code != 0 || !jobs.ValidID(next) || next == first {
		t.Errorf("after the job ended: exit %d, %q %q; want a new job", code, next, errOut)
	}
	// Two jobs were made in all, whatever was asked.
	if keys := env.JobKeys(t); len(keys) != 2 {
		t.Errorf("%d job records, want 2", len(keys))
	}
}
