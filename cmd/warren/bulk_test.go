package main_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
)

// writeSleepLines writes n payload lines for sys.sleep jobs of a few
// milliseconds, with a line that is not JSON at line bad[0] and a payload
// the type's schema refuses at line bad[1], if given.
func writeSleepLines(t *testing.T, n int, bad ...int) string {
	t.Helper()
	var b strings.Builder
	for i := 1; i <= n; i++ {
		switch {
		case len(bad) > 0 && i == bad[0]:
			b.WriteString("{not json\n")
		case len(bad) > 1 && i == bad[1]:
			b.WriteString(`{"ms":"soon"}` + "\n")
		default:
			fmt.Fprintf(&b, `{"ms":%d}`+"\n", i%3)
		}
	}
	p := filepath.Join(t.TempDir(), "jobs.jsonl")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Many jobs from a file through the real API and workers: refused lines are
// reported by line, the others run, and `job wait --file` waits for the ids
// `enqueue --ids-out` wrote. Completion and --watch work against it too.
func TestBulkEnqueueAndLiveViews(t *testing.T) {
	t.Parallel()
	_, url := devStack(t)
	file := writeSleepLines(t, 1500, 10, 1200)
	ids := filepath.Join(t.TempDir(), "ids.txt")
	out, errOut, code := warren(t, url, "", "enqueue", "sys.sleep", "--file", file, "--chunk", "400", "--ids-out", ids)
	want := "1,500 lines read: 1,498 accepted, 2 refused\n" +
		"  1 refused, invalid_json: the line is not valid JSON: invalid character 'n' looking for beginning of object key string (at byte 2) (line 10)\n" +
		"  1 refused, invalid_payload [payload.ms]: "
	if code != 4 || !strings.HasPrefix(out, want) || !strings.Contains(out, "(line 1200)\n") {
		t.Fatalf("enqueue --file: exit %d, stdout %q, stderr %q; want exit 4 and a summary starting %q", code, out, errOut, want)
	}
	b, err := os.ReadFile(ids)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 1500 || lines[9] != "" || lines[1199] != "" || !jobs.ValidID(lines[0]) || !jobs.ValidID(lines[1499]) {
		t.Errorf("--ids-out: %d lines (want 1500, empty at 10 and 1200): %q … %q", len(lines), lines[0], lines[len(lines)-1])
	}
	out, errOut, code = warren(t, url, "", "job", "wait", "--file", ids, "--summary", "--wait-timeout", "2m")
	if code != 0 || out != "1,498 jobs: 1,498 succeeded\n" {
		t.Errorf("job wait --file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// Completion asks the API for types and pools.
	out, _, code = warren(t, url, "", "__complete", "enqueue", "sys.")
	if code != 0 || !strings.Contains(out, "sys.echo\tpool sys\n") || !strings.Contains(out, "sys.sleep\tpool sys\n") || strings.Contains(out, "webhook") {
		t.Errorf("__complete enqueue sys.: exit %d, %q", code, out)
	}
	out, _, code = warren(t, url, "", "__complete", "dead", "list", "")
	if code != 0 || !strings.Contains(out, "sys\n") || !strings.Contains(out, "webhook\n") {
		t.Errorf("__complete dead list: exit %d, %q", code, out)
	}

	// --watch, off a terminal: one view after another until SIGINT, which
	// ends it with status 0.
	cmd := exec.Command(binary, "queues", "--watch", "--interval", "200ms")
	cmd.Env = append(os.Environ(), "WARREN_API_URL="+url)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	views := 0
	view := regexp.MustCompile(`^# \d{4}-\d\d-\d\dT`)
	sc := bufio.NewScanner(stdout)
	for views < 3 && sc.Scan() {
		if view.MatchString(sc.Text()) {
			views++
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() { // drain
	}
	if err := cmd.Wait(); err != nil || views < 3 {
		t.Errorf("queues --watch: %d views, then %v after SIGINT; want 3 views and exit 0", views, err)
	}

	// The README's commands, with fewer jobs, and the live view ended
	// after a few seconds as Ctrl-C would.
	script := readmeBlock(t, "### Many jobs, and live views", "sh")
	for from, to := range map[string]string{
		"seq 1 100000":          "seq 1 2000",
		"warren queues --watch": "timeout --preserve-status -s INT 3 warren queues --watch",
	} {
		if !strings.Contains(script, from) {
			t.Fatalf("the README's block no longer says %q:\n%s", from, script)
		}
		script = strings.ReplaceAll(script, from, to)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(binary, filepath.Join(dir, "bin", "warren")); err != nil {
		t.Fatal(err)
	}
	sh := exec.Command("bash", "-euo", "pipefail", "-c", script)
	// Its own process group: timeout signals its whole group, which must
	// not reach this test and the stack it runs.
	sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	sh.Dir = dir
	sh.Env = append(os.Environ(), "WARREN_API_URL="+url, "PATH="+filepath.Join(dir, "bin")+":"+os.Getenv("PATH"))
	outb, err := sh.CombinedOutput()
	t.Logf("README commands:\n%s", outb)
	if err != nil {
		t.Fatalf("README commands failed: %v", err)
	}
	for _, want := range []string{
		"2,000 lines read: 2,000 accepted, 0 refused\n", // enqueue --file
		"2,000 jobs: 2,000 succeeded\n",                 // job wait --file --summary
		"1 line read: 1 accepted, 0 refused\n",          // --requests from stdin
		"POOL ",                                         // queues --watch
	} {
		if !strings.Contains(string(outb), want) {
			t.Errorf("README output lacks %q", want)
		}
	}
}

// A key over its rate: the chunk the API refuses with 429 is sent again
// after Retry-After, and every job gets in.
func TestBulkEnqueueWaitsOutTheRateLimit(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	key, entry := newKey(t, "bulk", "--scopes", "submit,read")
	keysFile := filepath.Join(t.TempDir(), "api-keys")
	if err := os.WriteFile(keysFile, []byte(entry+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// 600 jobs a minute: a burst of 600, then 10 a second.
	p := startProcWith(t, env, []string{"WARREN_API_KEYS_FILE=" + keysFile, "WARREN_API_JOBS_PER_MINUTE=600"}, "dev", "--addr", "127.0.0.1:0")
	url := "http://" + p.Addr(t, "api listening")
	waitReady(t, url)
	testenv.Eventually(t, 30*time.Second, "sys.sleep declared", func() bool {
		_, err := env.Store.Type(context.Background(), "sys.sleep")
		return err == nil
	})
	// The second chunk finds 275 jobs left of the burst: it is refused
	// until 50 more are due, about 5s later.
	file := writeSleepLines(t, 650)
	start := time.Now()
	// Held back an hour, so that the workers have nothing to do.
	out, errOut, code := cli(t, []string{"WARREN_API_URL=" + url, "WARREN_API_KEY=" + key},
		"enqueue", "sys.sleep", "--file", file, "--chunk", "325", "--delay", "1h")
	took := time.Since(start)
	if code != 0 || !strings.HasPrefix(out, "650 lines read: 650 accepted, 0 refused\n") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if !regexp.MustCompile(`waited \d+s in all for the key's rate limit`).MatchString(out) {
		t.Errorf("summary %q: want the wait for the rate limit", out)
	}
	if strings.Contains(out+errOut, key) {
		t.Errorf("the CLI printed the key")
	}
	t.Logf("650 jobs at 600 a minute took %s", took.Round(time.Millisecond))
}
