package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/workers"
)

// artifactAPI is a real API, and a worker of two types: cli.flaky fails until
// healed, cli.art succeeds with an artifact of {"size":N} bytes.
type artifactAPI struct {
	url    string
	healed atomic.Bool
	runs   atomic.Int32
}

func startArtifactAPI(t *testing.T) *artifactAPI {
	t.Helper()
	env := testenv.New(t)
	l := &artifactAPI{}
	w := workers.New(workers.Config{Logger: env.Log}, env.Broker, env.Store)
	flaky := jobs.Type{Name: "cli.flaky", Pool: "cli", MaxAttempts: 1}
	if err := w.Handle(flaky, jobs.HandlerFunc(func(context.Context, *jobs.Job) (any, error) {
		l.runs.Add(1)
		if !l.healed.Load() {
			return nil, errors.New("downstream is down")
		}
		return map[string]string{"ok": "yes"}, nil
	})); err != nil {
		t.Fatal(err)
	}
	art := jobs.Type{Name: "cli.art", Pool: "cli", MaxAttempts: 1}
	if err := w.Handle(art, jobs.HandlerFunc(func(_ context.Context, j *jobs.Job) (any, error) {
		var p struct {
			Size int    `json:"size"`
			Type string `json:"type"`
		}
		_ = j.Decode(&p)
		data := make([]byte, p.Size)
		for i := range data {
			data[i] = byte(i)
		}
		return jobs.Output{Result: map[string]int{"bytes": p.Size}, Artifact: &jobs.Artifact{ContentType: p.Type, Data: data}}, nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	testenv.Eventually(t, 20*time.Second, "worker ready", w.Ready)
	srv, err := api.New(api.Config{Addr: "127.0.0.1:0", Logger: env.Log}, env.Broker, env.Store)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	l.url = "http://" + srv.Addr()
	return l
}

// warren runs the command line against the API, with standard output a
// buffer (not a terminal).
func (l *artifactAPI) warren(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(t.Context(), args, strings.NewReader(""), &out, &errOut, []string{"WARREN_API_URL=" + l.url})
	return out.String(), errOut.String(), code
}

// enqueueDone submits a job and waits for it to end.
func (l *artifactAPI) enqueueDone(t *testing.T, typ, payload string) *jobs.Job {
	t.Helper()
	id, stderr, _ := l.warren(t, "enqueue", typ, payload)
	id = strings.TrimSpace(id)
	if !jobs.ValidID(id) {
		t.Fatalf("enqueue %s: %q %s", typ, id, stderr)
	}
	out, stderr, _ := l.warren(t, "job", "wait", id, "-o", "json")
	var js []*jobs.Job
	if err := json.Unmarshal([]byte(out), &js); err != nil || len(js) != 1 {
		t.Fatalf("wait %s: %q %s", id, out, stderr)
	}
	return js[0]
}

func TestJobRetryCommand(t *testing.T) {
	t.Parallel()
	l := startArtifactAPI(t)
	failed := l.enqueueDone(t, "cli.flaky", `{}`)
	if failed.Status != jobs.StatusFailed {
		t.Fatalf("job %s, want failed", failed.Status)
	}
	l.healed.Store(true)
	succeeded := l.enqueueDone(t, "cli.flaky", `{}`)
	const unknown = "0190c5f2-6d1e-7b3a-9c4d-000000000009"

	// The failed job is retried; the others are reported, and the exit
	// status says not all were.
	stdout, stderr, code := l.warren(t, "job", "retry", failed.ID, succeeded.ID, unknown, failed.ID)
	if code != 1 || stdout != failed.ID+" queued\n" {
		t.Errorf("retry: exit %d, stdout %q; want 1 and %q", code, stdout, failed.ID+" queued\n")
	}
	want := succeeded.ID + ": succeeded, not failed or canceled\n" + unknown + ": no such job\n"
	if stderr != want {
		t.Errorf("retry: stderr %q, want %q", stderr, want)
	}
	out, _, _ := l.warren(t, "job", "wait", failed.ID, "-o", "json")
	if !strings.Contains(out, `"status": "succeeded"`) || !strings.Contains(out, `"attempt": 1`) {
		t.Errorf("the retried job: %s", out)
	}
	// Retried again, now that it succeeded: refused.
	if _, stderr, code := l.warren(t, "job", "retry", failed.ID); code != 1 || !strings.Contains(stderr, "succeeded, not failed or canceled") {
		t.Errorf("retry a succeeded job: exit %d, %q", code, stderr)
	}
	if n := l.runs.Load(); n != 3 {
		t.Errorf("%d runs, want 3: the failure, the success, the retry", n)
	}

	// -o json: the retried jobs as a list; nothing retried, [].
	canceled, _, _ := l.warren(t, "enqueue", "cli.flaky", `{}`, "--delay", "1h")
	canceled = strings.TrimSpace(canceled)
	l.warren(t, "job", "cancel", canceled)
	stdout, _, code = l.warren(t, "job", "retry", canceled, "-o", "json")
	var js []*jobs.Job
	if err := json.Unmarshal([]byte(stdout), &js); code != 0 || err != nil || len(js) != 1 || js[0].Status != jobs.StatusQueued || js[0].ScheduledAt != nil {
		t.Errorf("retry a canceled job -o json: exit %d %s", code, stdout)
	}
	if stdout, _, code := l.warren(t, "job", "retry", unknown, "-o", "json"); code != 1 || strings.TrimSpace(stdout) != "[]" {
		t.Errorf("-o json, nothing retried: exit %d %q", code, stdout)
	}

	// Malformed input is refused before anything is sent.
	for _, args := range [][]string{{"job", "retry"}, {"job", "retry", "42"}} {
		if _, stderr, code := l.warren(t, args...); code != 1 || !strings.Contains(stderr, "job id") {
			t.Errorf("%q: exit %d %q", args, code, stderr)
		}
	}
}

func TestJobArtifactCommand(t *testing.T) {
	t.Parallel()
	l := startArtifactAPI(t)
	png := l.enqueueDone(t, "cli.art", `{"size":300,"type":"image/png"}`)
	if png.Status != jobs.StatusSucceeded || png.Artifact == nil {
		t.Fatalf("job %s artifact %v", png.Status, png.Artifact)
	}
	// job get says it has one: type, size, how to get it.
	view, _, _ := l.warren(t, "job", "get", png.ID)
	if want := regexp.MustCompile(`(?m)^artifact: +image/png, 300 B \(warren job artifact ` + png.ID + ` -O FILE\)$`); !want.MatchString(view) {
		t.Errorf("job get:\n%s\nwant a line %q", view, want)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "out.png")
	if err := os.WriteFile(file, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := l.warren(t, "job", "artifact", png.ID, "-O", file)
	if code != 0 || stdout != file+": 300 B of image/png\n" {
		t.Errorf("-O: exit %d %q %q", code, stdout, stderr)
	}
	b, err := os.ReadFile(file)
	if err != nil || len(b) != 300 || b[1] != 1 || b[299] != byte(299%256) {
		t.Errorf("file: %d bytes, %v", len(b), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left beside the file: %v", entries)
	}
	// To standard output when it is not a terminal (a pipe, a file).
	stdout, _, code = l.warren(t, "job", "artifact", png.ID)
	if code != 0 || stdout != string(b) {
		t.Errorf("to a pipe: exit %d, %d bytes", code, len(stdout))
	}
	stdout, _, code = l.warren(t, "job", "artifact", png.ID, "-O", file, "-o", "json")
	var info struct {
		Job, File   string
		ContentType string `json:"content_type"`
		Bytes       int
	}
	if err := json.Unmarshal([]byte(stdout), &info); code != 0 || err != nil || info.Bytes != 300 || info.File != file ||
		info.Job != png.ID || info.ContentType != "image/png" {
		t.Errorf("-o json: exit %d %s", code, stdout)
	}

	echo := l.enqueueDone(t, "cli.flaky", `{}`)
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"job", "artifact", echo.ID}, "job " + echo.ID + " has no artifact"},
		{[]string{"job", "artifact", "0190c5f2-6d1e-7b3a-9c4d-000000000009"}, "has no artifact"},
		{[]string{"job", "artifact", png.ID, "-O", dir}, "is a directory"},
		{[]string{"job", "artifact", "nope"}, "is not a job id"},
		{[]string{"job", "artifact"}, "needs a job id"},
	} {
		stdout, stderr, code := l.warren(t, tc.args...)
		if code != 1 || stdout != "" || !strings.Contains(stderr, tc.err) {
			t.Errorf("%q: exit %d %q %q, want 1 and %q", tc.args, code, stdout, stderr, tc.err)
		}
	}
}

func TestShortJSON(t *testing.T) {
	t.Parallel()
	long := `{"data":"` + strings.Repeat("é", 300) + `"}`
	got := shortJSON(json.RawMessage(long))
	if !strings.HasSuffix(got, "… (611 B in all; -o json shows it whole)") || !strings.HasPrefix(got, `{"data":"éé`) || len(got) > maxShownJSON+60 {
		t.Errorf("shortJSON = %q", got)
	}
	if got := shortJSON(json.RawMessage(`{ "a": 1 }`)); got != `{"a":1}` {
		t.Errorf("short payload: %q", got)
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := sizeText(n); got != want {
			t.Errorf("sizeText(%d) = %q, want %q", n, got, want)
		}
	}
}
