package main_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
)

// binary is the warren program built once for these tests; exampleBinary
// is examples/upper, the worker service docs/workers.md walks through.
var binary, exampleBinary string

func TestMain(m *testing.M) {
	os.Exit(testenv.BuildAndRun(m, func(dir string) (err error) {
		if binary, err = testenv.BuildWarren(dir, true); err != nil {
			return err
		}
		exampleBinary, err = testenv.Build(dir, "../../examples/upper", true)
		return err
	}))
}

// servers says where a warren process finds RabbitMQ and Redis, and in which
// namespace it works.
type servers struct {
	ns       jobs.Namespace
	amqpURL  string
	redisURL string
}

// shared is the shared servers, in a namespace of env's.
func shared(env *testenv.Env) servers {
	return servers{ns: env.NS, amqpURL: testenv.AMQPURL(), redisURL: testenv.RedisURL()}
}

// environ is the environment of a warren process that works in s and logs
// at level.
func (s servers) environ(level string) []string {
	return []string{
		"WARREN_NAMESPACE=" + string(s.ns),
		"WARREN_AMQP_URL=" + s.amqpURL,
		"WARREN_REDIS_URL=" + s.redisURL,
		"WARREN_LOG_LEVEL=" + level,
		"WARREN_SHUTDOWN_GRACE=5s",
	}
}

// startProc runs `warren args…` in the env's namespace until the test ends;
// at the end it must exit 0 on SIGTERM.
func startProc(t *testing.T, env *testenv.Env, args ...string) *testenv.Proc {
	t.Helper()
	return startProcWith(t, env, nil, args...)
}

// startProcWith is startProc with more environment variables (they override
// startProc's).
func startProcWith(t *testing.T, env *testenv.Env, extra []string, args ...string) *testenv.Proc {
	t.Helper()
	return testenv.StartWarren(t, binary, append(shared(env).environ("debug"), extra...), args...)
}

// warren runs a CLI command against apiURL and returns its output and exit
// status.
func warren(t *testing.T, apiURL string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return cliIn(t, []string{"WARREN_API_URL=" + apiURL}, stdin, args...)
}

func devStack(t *testing.T) (*testenv.Env, string) {
	t.Helper()
	env := testenv.New(t)
	p := startProc(t, env, "dev", "--addr", "127.0.0.1:0")
	url := "http://" + p.Addr(t, "api listening")
	waitReady(t, url)
	// The API is up at once; each pool's first worker process declares its
	// types a moment later.
	for _, typ := range []string{"sys.echo", "webhook.deliver", "image.thumbnail"} {
		testenv.Eventually(t, 30*time.Second, typ+" declared", func() bool {
			_, err := env.Store.Type(context.Background(), typ)
			return err == nil
		})
	}
	return env, url
}

func TestCLIAgainstRunningStack(t *testing.T) {
	t.Parallel()
	_, url := devStack(t)

	out, errOut, code := warren(t, url, "", "enqueue", "sys.echo", `{"hello":"world"}`)
	id := strings.TrimSpace(out)
	if code != 0 || !jobs.ValidID(id) {
		t.Fatalf("enqueue: exit %d, stdout %q, stderr %q; want a job id alone", code, out, errOut)
	}
	out, _, code = warren(t, url, "", "job", "wait", id, "-o", "json")
	var waited []jobs.Job
	if err := json.Unmarshal([]byte(out), &waited); code != 0 || err != nil || len(waited) != 1 ||
		waited[0].Status != jobs.StatusSucceeded || compact(t, string(waited[0].Result)) != `{"hello":"world"}` {
		t.Errorf("job wait: exit %d, output %s", code, out)
	}
	out, _, code = warren(t, url, "", "job", "get", id)
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "succeeded") {
		t.Errorf("job get: exit %d, output %s", code, out)
	}

	// --wait prints the result; the payload may come from stdin.
	out, _, code = warren(t, url, `{"n":42}`, "enqueue", "sys.echo", "-", "--wait")
	if code != 0 || compact(t, out) != `{"n":42}` {
		t.Errorf("enqueue --wait: exit %d, output %q", code, out)
	}

	// A failed job: exit status 2 and the error on stderr.
	out, errOut, code = warren(t, url, "", "enqueue", "sys.fail", `{"fail_times":1}`, "--wait", "--max-attempts", "1")
	if code != 2 || !strings.Contains(errOut, "failed") || out != "" {
		t.Errorf("failing job: exit %d, stdout %q, stderr %q; want exit 2 and the error", code, out, errOut)
	}

	// API errors are one clear line and a non-zero exit.
	_, errOut, code = warren(t, url, "", "enqueue", "nope.nope")
	if code != 1 || !strings.Contains(errOut, "unknown job type") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("unknown type: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = warren(t, url, "", "enqueue", "sys.sleep", `{"ms":"soon"}`)
	if code != 1 || !strings.Contains(errOut, "payload.ms") {
		t.Errorf("bad payload: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = warren(t, "http://127.0.0.1:1", "", "job", "get", id)
	if code != 1 || !strings.Contains(errOut, "not reachable") {
		t.Errorf("API down: exit %d, stderr %q", code, errOut)
	}
}

func TestBatchAndProgressOverHTTP(t *testing.T) {
	t.Parallel()
	_, url := devStack(t)
	c, err := client.New(client.Config{BaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var reqs []client.JobRequest
	for i := range 50 {
		reqs = append(reqs, client.JobRequest{Type: "sys.echo", Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))})
	}
	res, err := c.EnqueueBatch(ctx, reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Error != nil {
			t.Fatalf("entry %d: %v", i, r.Error)
		}
		j, err := c.WaitDone(ctx, r.Job.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status != jobs.StatusSucceeded || string(j.Result) != fmt.Sprintf(`{"i":%d}`, i) {
			t.Errorf("job %d: %s %s", i, j.Status, j.Result)
		}
	}

	j, _, err := c.Enqueue(ctx, client.JobRequest{Type: "sys.sleep", Payload: json.RawMessage(`{"ms":3000}`)})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "progress reported", func() bool {
		g, err := c.Get(ctx, j.ID)
		return err == nil && g.Status == jobs.StatusRunning && g.Progress != nil && g.Progress.Percent > 0
	})
	if g, err := c.WaitDone(ctx, j.ID); err != nil || g.Status != jobs.StatusSucceeded {
		t.Errorf("sleep job: %v %+v", err, g)
	}
}

// A declared type stays accepted while no worker runs; its jobs wait in the
// durable queue and a worker process started later runs every one, once.
func TestJobsWaitForAWorkerProcess(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	first := startProc(t, env, "worker", "sys", "--health-addr", "127.0.0.1:0")
	waitReady(t, "http://"+first.Addr(t, "health endpoints listening"))
	first.Stop(t) // SIGTERM: must exit 0

	api := startProc(t, env, "api", "--addr", "127.0.0.1:0")
	apiURL := "http://" + api.Addr(t, "api listening")
	waitReady(t, apiURL)
	c, err := client.New(client.Config{BaseURL: apiURL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ids []string
	for i := range 40 {
		j, _, err := c.Enqueue(ctx, client.JobRequest{Type: "sys.echo", Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))})
		if err != nil {
			t.Fatalf("enqueue with no worker running: %v", err)
		}
		ids = append(ids, j.ID)
	}
	if n := env.Messages(t, "sys"); n != len(ids) {
		t.Fatalf("%d messages wait in the queue, want %d", n, len(ids))
	}

	startProc(t, env, "worker", "sys")
	succeeded, duplicated := 0, 0
	for _, id := range ids {
		j, err := c.WaitDone(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status == jobs.StatusSucceeded {
			succeeded++
		}
		if j.Attempt != 1 {
			duplicated++
		}
	}
	testenv.Summary(t, "submitted=%d succeeded=%d lost=%d duplicated=%d", len(ids), succeeded, len(ids)-succeeded, duplicated)
	if succeeded != len(ids) || duplicated != 0 {
		t.Errorf("succeeded %d of %d, %d ran more than once", succeeded, len(ids), duplicated)
	}
}

// waitReady waits until a warren process's /readyz answers 200.
func waitReady(t *testing.T, base string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, base+"/readyz to answer 200", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func compact(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("not JSON: %q", s)
	}
	return b.String()
}

// readmeBlock returns the first fenced block of the given language after the
// heading.
func readmeBlock(t *testing.T, heading, lang string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no %q section", heading)
	}
	s = s[i:]
	start := strings.Index(s, "```"+lang+"\n")
	if start < 0 {
		t.Fatalf("README section %q has no %s block", heading, lang)
	}
	s = s[start+len("```"+lang+"\n"):]
	return s[:strings.Index(s, "```")]
}

// The README's commands, run as written against a running stack. The only
// change is the API address: the test's stack listens on a free port, which
// the CLI learns from WARREN_API_URL and curl from the rewritten URLs.
func TestREADMETryIt(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the README uses curl; install it")
	}
	_, url := devStack(t)
	script := strings.ReplaceAll(readmeBlock(t, "## Try it", "sh"), "http://127.0.0.1:8080", url)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(binary, filepath.Join(dir, "bin", "warren")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "WARREN_API_URL="+url)
	out, err := cmd.CombinedOutput()
	t.Logf("README commands:\n%s", out)
	if err != nil {
		t.Fatalf("README commands failed: %v", err)
	}
	for _, want := range []string{
		`"hello": "world"`, // --wait prints the result
		"succeeded",        // job wait
		`"type":"sys.echo","pool":"sys","status":"queued"`, // curl POST
		`"status":"succeeded"`,                             // curl long-poll
		`"field":"payload.ms"`,                             // refused input
		`"attempts": 2`,                                    // retried, then succeeded
		"exit status 2",                                    // permanent failure
		"1 of 1 dead letters in pool sys",                  // dead letters listed
		"purged 1",                                         // and purged
		"canceled",                                         // the scheduled job
		"BACKLOG",                                          // warren queues
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("README output lacks %q", want)
		}
	}
}

// The README's commands for schedules, workflows, rate limits and unique
// jobs, run as written against a running stack, as TestREADMETryIt runs
// the first block.
func TestREADMEFeatures(t *testing.T) {
	t.Parallel()
	_, url := devStack(t)
	script := readmeBlock(t, "### Schedules, workflows, rate limits and unique jobs", "sh")
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(binary, filepath.Join(dir, "bin", "warren")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "WARREN_API_URL="+url, "PATH="+filepath.Join(dir, "bin")+":"+os.Getenv("PATH"))
	out, err := cmd.Output()
	t.Logf("README commands:\n%s", out)
	if err != nil {
		t.Fatalf("README commands failed: %v", err)
	}
	for _, want := range []string{
		"added schedule heartbeat", "deleted schedule heartbeat", // schedule add, rm
		"thumbnails",                           // workflow get
		"set the rate limit of sys.echo: 2/1s", // limit set
		"LIMITED",                              // warren queues
		"removed the rate limit of sys.echo",   // limit rm
	} {
		if !strings.Contains(strings.ToLower(string(out)), strings.ToLower(want)) {
			t.Errorf("README output lacks %q", want)
		}
	}
	// The two submissions with one unique key print one job's id.
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if n := len(lines); n < 2 || lines[n-1] != lines[n-2] || len(lines[n-1]) != 36 {
		t.Errorf("the unique key's two submissions printed %q, want one id twice", lines[max(0, n-2):])
	}
}

// The README's handler snippet is the checked example in workers.
func TestREADMEHandlerSnippet(t *testing.T) {
	t.Parallel()
	readme := readmeBlock(t, "## Write a handler", "go")
	src, err := os.ReadFile("../../workers/example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)// readme:begin\n(.*?)\t// readme:end`).FindSubmatch(src)
	if m == nil {
		t.Fatal("workers/example_test.go has no readme:begin/end markers")
	}
	example := regexp.MustCompile(`(?m)^\t`).ReplaceAllString(string(m[1]), "")
	if strings.TrimSpace(example) != strings.TrimSpace(readme) {
		t.Errorf("README handler snippet differs from workers/example_test.go:\nREADME:\n%s\nexample:\n%s", readme, example)
	}
}

// The worker service of docs/workers.md runs as its own program next to
// warren: its type is accepted by the API and its jobs succeed.
func TestExampleServiceRuns(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	api := startProc(t, env, "api", "--addr", "127.0.0.1:0")
	url := "http://" + api.Addr(t, "api listening")
	waitReady(t, url)
	cmd := exec.Command(exampleBinary)
	cmd.Env = append(os.Environ(), "WARREN_NAMESPACE="+string(env.NS),
		"WARREN_AMQP_URL="+testenv.AMQPURL(), "WARREN_REDIS_URL="+testenv.RedisURL())
	cmd.Stderr = tWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("examples/upper exited with %v after SIGTERM", err)
		}
	})
	testenv.Eventually(t, 30*time.Second, "text.upper declared", func() bool {
		_, err := env.Store.Type(context.Background(), "text.upper")
		return err == nil
	})
	out, errOut, code := warren(t, url, "", "enqueue", "text.upper", `{"text":"hello"}`, "--wait")
	if code != 0 || compact(t, out) != `{"text":"HELLO"}` {
		t.Errorf("text.upper: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// tWriter sends a process's output to the test log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Webhook delivery through the real stack: signed, to an allow-listed
// receiver; a metadata address is refused for good.
func TestWebhookDelivery(t *testing.T) {
	t.Parallel()
	var got struct {
		sync.Mutex
		sig, body string
	}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Lock()
		got.sig, got.body = r.Header.Get("Warren-Signature"), string(b)
		got.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"received":true}`))
	}))
	defer receiver.Close()
	env := testenv.New(t)
	// The secret signs for the receiver's /hook alone (its value comes
	// from the environment, as from a Kubernetes Secret), and the test
	// reads the receiver's answer back from the result.
	cfg := filepath.Join(t.TempDir(), "warren.yaml")
	yml := "webhook:\n  secrets:\n    test: {allow: [\"" + receiver.URL + "/hook\"]}\n  keep_response_body: true\n"
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProcWith(t, env, []string{"WARREN_CONFIG=" + cfg, "WARREN_WEBHOOK_ALLOW=127.0.0.1", "WARREN_WEBHOOK_SECRETS=test=s3cret"},
		"dev", "--addr", "127.0.0.1:0")
	url := "http://" + p.Addr(t, "api listening")
	waitReady(t, url)
	testenv.Eventually(t, 30*time.Second, "webhook.deliver declared", func() bool {
		_, err := env.Store.Type(context.Background(), "webhook.deliver")
		return err == nil
	})

	out, errOut, code := warren(t, url, "", "enqueue", "webhook.deliver",
		`{"url":"`+receiver.URL+`/hook","body":{"order":7},"secret":"test"}`, "--wait")
	var res struct {
		Status int
		Body   string
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Status != 200 || res.Body != `{"received":true}` {
		t.Fatalf("delivery: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	got.Lock()
	sig, body := got.sig, got.body
	got.Unlock()
	ts, _, _ := strings.Cut(strings.TrimPrefix(sig, "t="), ",")
	mac := hmac.New(sha256.New, []byte("s3cret"))
	mac.Write([]byte(ts + "." + body))
	if want := "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil)); sig != want || body != `{"order":7}` {
		t.Errorf("receiver got signature %q for body %q, want %q", sig, body, want)
	}

	_, errOut, code = warren(t, url, "", "enqueue", "webhook.deliver", `{"url":"http://169.254.169.254/latest/meta-data/"}`, "--wait")
	if code != 2 || !strings.Contains(errOut, "refused_target") {
		t.Errorf("metadata address: exit %d, stderr %q, want a permanent refused_target failure", code, errOut)
	}
}

// An image job through the real stack: the thumbnail comes back as the
// job's artifact, with its content type.
func TestImageThumbnail(t *testing.T) {
	t.Parallel()
	_, url := devStack(t)
	src, err := os.ReadFile("../../workers/image/testdata/sample.jpg")
	if err != nil {
		t.Fatal(err)
	}
	payload := `{"data":"` + base64.StdEncoding.EncodeToString(src) + `","width":32,"format":"png"}`
	out, errOut, code := warren(t, url, "", "enqueue", "image.thumbnail", payload, "--wait", "-o", "json")
	var j jobs.Job
	if code != 0 || json.Unmarshal([]byte(out), &j) != nil || j.Artifact == nil || j.Artifact.ContentType != "image/png" {
		t.Fatalf("thumbnail: exit %d, stdout %.300q, stderr %q", code, out, errOut)
	}
	resp, err := http.Get(url + "/v1/jobs/" + j.ID + "/artifact")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	img, err := png.Decode(resp.Body)
	if err != nil || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("artifact: %v, content type %q", err, resp.Header.Get("Content-Type"))
	}
	if b := img.Bounds(); b.Dx() != 32 || b.Dy() != 24 {
		t.Errorf("thumbnail is %dx%d, want 32x24 (64x48 fit inside 32 wide)", b.Dx(), b.Dy())
	}
	// A decompression bomb fails for good, without taking the worker down.
	bomb, _ := os.ReadFile("../../workers/image/testdata/bomb.png")
	_, errOut, code = warren(t, url, "", "enqueue", "image.thumbnail",
		`{"data":"`+base64.StdEncoding.EncodeToString(bomb)+`","width":10}`, "--wait")
	if code != 2 || !strings.Contains(errOut, "too_many_pixels") {
		t.Errorf("bomb: exit %d, stderr %q", code, errOut)
	}
}
