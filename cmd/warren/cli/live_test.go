package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

// `job wait --file` reads ids a line each, skipping empty lines and
// comments (the file `enqueue --ids-out` writes), and --summary leaves the
// jobs that succeeded out of the table.
func TestJobWaitFile(t *testing.T) {
	t.Parallel()
	const (
		idEcho  = "0190c5f2-6d1e-7b3a-9c4d-000000000001"
		idFail  = "0190c5f2-6d1e-7b3a-9c4d-000000000002"
		idEcho2 = "0190c5f2-6d1e-7b3a-9c4d-000000000004"
	)
	f := newFakeAPI(t, queuedJob(idEcho, "sys.echo"), queuedJob(idFail, "sys.fail"), queuedJob(idEcho2, "sys.echo"))
	ids := filepath.Join(t.TempDir(), "ids.txt")
	if err := os.WriteFile(ids, []byte("# from enqueue --ids-out\n"+idEcho+"\n\n"+strings.ToUpper(idFail)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := f.run(t, "", "job", "wait", idEcho2, "--file", ids, "--summary")
	if code != exitJobFailed {
		t.Errorf("exit %d, want %d (stderr %q)", code, exitJobFailed, stderr)
	}
	want := `ID                                    TYPE      STATUS  ATTEMPT  DURATION  ERROR
0190c5f2-6d1e-7b3a-9c4d-000000000002  sys.fail  failed  3/3      1.5s      handler: told to fail
3 jobs: 2 succeeded, 1 failed
`
	if d := cmp.Diff(want, stdout); d != "" {
		t.Errorf("stdout (-want +got):\n%s", d)
	}

	// From standard input; -o wide adds columns.
	stdout, _, code = f.run(t, idEcho+"\n", "job", "wait", "--file", "-", "-o", "wide")
	want = `ID                                    TYPE      STATUS     ATTEMPT  DURATION  CREATED                   FINISHED                  WORKER       METADATA  ERROR
0190c5f2-6d1e-7b3a-9c4d-000000000001  sys.echo  succeeded  1/3      1.5s      2025-03-14T09:26:53.000Z  2025-03-14T09:26:54.600Z  fake-worker  -         -
1 job: 1 succeeded
`
	if code != 0 || stdout != want {
		t.Errorf("exit %d, stdout:\n%s\nwant:\n%s", code, stdout, want)
	}

	// YAML: the list of jobs, as JSON gives it.
	stdout, _, code = f.run(t, "", "job", "wait", idEcho, "-o", "yaml")
	if code != 0 || !strings.HasPrefix(stdout, "- id: "+idEcho+"\n  type: sys.echo\n  status: succeeded\n") {
		t.Errorf("exit %d, stdout:\n%s", code, stdout)
	}

	for _, tc := range []struct {
		content, want string
	}{
		{"\n# nothing\n", "warren: " + ids + " holds no job ids\n"},
		{idEcho + "\nnot-an-id\n", "warren: " + ids + ` line 2: "not-an-id" is not a job id: want a UUID such as 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d` + "\n"},
	} {
		if err := os.WriteFile(ids, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := f.run(t, "", "job", "wait", "--file", ids)
		if code != 1 || stderr != tc.want {
			t.Errorf("ids %q: exit %d, stderr %q; want 1, %q", tc.content, code, stderr, tc.want)
		}
	}
}

// Many jobs are waited for with a few long polls at a time.
func TestWaitEachBoundsPolls(t *testing.T) {
	t.Parallel()
	var seed []*jobs.Job
	var ids []string
	for i := range 100 {
		id := fmt.Sprintf("0190c5f2-6d1e-7b3a-9c4d-%012d", i)
		seed, ids = append(seed, queuedJob(id, "sys.echo")), append(ids, id)
	}
	f := newFakeAPI(t, seed...)
	c, err := client.New(client.Config{BaseURL: f.url})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	settled := 0
	js, err := waitEach(t.Context(), c, ids, 0, func(j *jobs.Job) {
		mu.Lock()
		settled++
		mu.Unlock()
		j.Payload = nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, j := range js {
		if j.ID != ids[i] || j.Status != jobs.StatusSucceeded || j.Payload != nil {
			t.Errorf("job %d: %s %s %s", i, j.ID, j.Status, j.Payload)
		}
	}
	if settled != len(ids) {
		t.Errorf("settled called %d times, want %d", settled, len(ids))
	}
}

// watchRun runs the command line until the API has received n requests,
// then ends it as Ctrl-C does (its context). Views are made one after
// another, so n requests mean at least n-1 views written.
func watchRun(t *testing.T, apiURL string, requests func() int, n int, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		for requests() < n && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	var out, errOut syncBuffer
	code = Main(ctx, args, strings.NewReader(""), &out, &errOut, []string{"WARREN_API_URL=" + apiURL})
	return out.String(), errOut.String(), code
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Off a terminal, --watch prints one view after another until Ctrl-C,
// which ends it with status 0.
func TestQueuesWatch(t *testing.T) {
	t.Parallel()
	f := newQueuesAPI(t, someQueues()...)
	count := func() int { return len(f.requestLog()) }
	stdout, stderr, code := watchRun(t, f.url, count, 4, "queues", "--watch", "--interval", "100ms")
	if code != 0 || stderr != "" {
		t.Errorf("exit %d, stderr %q; want 0 and nothing", code, stderr)
	}
	views := regexp.MustCompile(`(?m)^# \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\nPOOL +BACKLOG`).FindAllStringIndex(stdout, -1)
	if len(views) < 3 {
		t.Errorf("%d views, want 3 or more, each under a time:\n%s", len(views), stdout)
	}

	// JSON: a stream of documents, one per view.
	stdout, _, code = watchRun(t, f.url, count, len(f.requestLog())+3, "queues", "--interval", "100ms", "-o", "json")
	dec := json.NewDecoder(strings.NewReader(stdout))
	docs := 0
	for {
		var v queuesOutput
		if err := dec.Decode(&v); err != nil {
			break
		}
		if len(v.Queues) != 3 {
			t.Errorf("view %d: %d queues", docs, len(v.Queues))
		}
		docs++
	}
	if code != 0 || docs < 2 {
		t.Errorf("exit %d, %d JSON views, want 2 or more:\n%s", code, docs, stdout)
	}

	// A transient error is shown, on stderr, and the watch goes on.
	f.mu.Lock()
	f.status = http.StatusServiceUnavailable
	f.mu.Unlock()
	_, stderr, code = watchRun(t, f.url, count, len(f.requestLog())+3, "queues", "--interval", "100ms")
	if code != 0 || strings.Count(stderr, "503 unavailable") < 2 || !strings.Contains(stderr, "(trying again)") {
		t.Errorf("exit %d, stderr %q; want the error each time, and 0", code, stderr)
	}
}

// An error that asking again cannot change ends the watch.
func TestJobGetWatch(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, queuedJob(testID, "sys.echo"))
	count := func() int { return len(f.requestLog()) }
	stdout, _, code := watchRun(t, f.url, count, 3, "job", "get", testID, "--watch", "--interval", "100ms", "-o", "yaml")
	if code != 0 || strings.Count(stdout, "---\nid: "+testID+"\n") < 2 {
		t.Errorf("exit %d, stdout:\n%s\nwant YAML documents", code, stdout)
	}
	_, stderr, code := watchRun(t, f.url, count, 100, "job", "get", testID2, "--watch")
	if code != 1 || !strings.Contains(stderr, "404 not_found") {
		t.Errorf("unknown job: exit %d, stderr %q; want 1 and the 404", code, stderr)
	}
	_, stderr, code = runWarren(t, f.url, "", "job", "get", testID, "--interval", "10ms")
	if want := "warren: --interval 10ms: want 100ms to 1h, such as 2s\n"; code != 1 || stderr != want {
		t.Errorf("exit %d, stderr %q; want 1, %q", code, stderr, want)
	}
}

// On a terminal each view replaces the last, cut to the terminal's size.
func TestViewerRedraw(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	v := &viewer{w: &b, tty: true, header: "Every 2s: warren queues",
		size: func() (int, int, bool) { return 12, 6, true }}
	at := time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)
	if err := v.show(at, []byte("a\nbbbbbbbbbbbbbbbbbbbbbb\nc\nd\ne\nf\n"), nil); err != nil {
		t.Fatal(err)
	}
	want := "\x1b[H\x1b[2J" +
		"Every 2s: wa\x1b[K\n" +
		"\x1b[K\n" +
		"a\x1b[K\n" +
		"bbbbbbbbbbbb\x1b[K\n" +
		"… 4 more lin\x1b[K\n" +
		"\x1b[J"
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("first view (-want +got):\n%s", d)
	}
	b.Reset()
	if err := v.show(at, nil, errors.New("API down")); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "\x1b[HEvery 2s: wa\x1b[K\n\x1b[K\nerror: API d\x1b[K\n") {
		t.Errorf("second view %q: want it drawn over the first, with the error", b.String())
	}
}

func TestProgressDraw(t *testing.T) {
	t.Parallel()
	state := progressState{Done: 30, Total: 120, Text: "1,200 lines"}
	start := time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)
	var b bytes.Buffer
	p := &progress{w: &b, tty: true, label: "enqueue", state: func() progressState { return state }, start: start,
		cols: func() int { return 60 }}
	p.draw(start.Add(2500 * time.Millisecond))
	if want := "\renqueue ██████░░░░░░░░░░░░░░░░░░  25%  1,200 lines  2s\x1b[K"; b.String() != want {
		t.Errorf("terminal line %q, want %q", b.String(), want)
	}
	b.Reset()
	p.tty = false
	p.draw(start.Add(20 * time.Second))
	if want := "enqueue: 1,200 lines (25%), 20s so far\n"; b.String() != want {
		t.Errorf("plain line %q, want %q", b.String(), want)
	}
	// Not started: Stop does nothing; started and stopped at once: nothing
	// was drawn, so nothing is.
	b.Reset()
	p.Stop()
	p2 := newProgress(&b, "wait", func() progressState { return state })
	p2.Start()
	p2.Stop()
	p2.Stop()
	if b.Len() != 0 {
		t.Errorf("a quick run drew %q", b.String())
	}
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 100000: "100,000", 1234567: "1,234,567", -4200: "-4,200"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
}

// typesAPI answers GET /v1/types and GET /v1/queues, for completion.
func typesAPI(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/types", func(w http.ResponseWriter, r *http.Request) {
		apiReply(w, 200, map[string]any{"types": []jobs.Type{{Name: "sys.echo", Pool: "sys"}, {Name: "sys.sleep", Pool: "sys"}, {Name: "image.resize", Pool: "image"}}})
	})
	mux.HandleFunc("GET /v1/queues", func(w http.ResponseWriter, r *http.Request) {
		apiReply(w, 200, map[string]any{"queues": []client.Queue{{Pool: "image"}, {Pool: "sys"}}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestCompletion(t *testing.T) {
	t.Parallel()
	url := typesAPI(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"__complete", "enqueue", ""}, "sys.echo\tpool sys\nsys.sleep\tpool sys\nimage.resize\tpool image\n:4\n"},
		{[]string{"__complete", "enqueue", "sys.s"}, "sys.sleep\tpool sys\n:4\n"},
		{[]string{"__complete", "enqueue", "sys.echo", ""}, ":4\n"},
		{[]string{"__complete", "dead", "list", ""}, "image\nsys\n:4\n"},
		{[]string{"__complete", "dead", "replay", "sys", ""}, ":4\n"},
		{[]string{"__complete", "queues", "-o", ""}, "table\tthe readable view (the default)\nwide\tthe readable view with more columns\njson\tthe API's data as JSON\nyaml\tthe API's data as YAML\n:4\n"},
		{[]string{"__complete", "queues", "-o", "y"}, "yaml\tthe API's data as YAML\n:4\n"},
	} {
		stdout, stderr, code := runWarren(t, url, "", tc.args...)
		if code != 0 || stdout != tc.want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
	// An API that does not answer: no suggestions, quickly, and no error.
	start := time.Now()
	stdout, _, code := runWarren(t, "http://127.0.0.1:1", "", "__complete", "enqueue", "")
	if code != 0 || stdout != ":4\n" || time.Since(start) > completionTimeout+time.Second {
		t.Errorf("API down: exit %d, stdout %q after %s; want nothing but the directive", code, stdout, time.Since(start))
	}
	// The scripts themselves come from cobra.
	for _, sh := range []string{"bash", "zsh", "fish"} {
		stdout, _, code := runWarren(t, url, "", "completion", sh)
		if code != 0 || !strings.Contains(stdout, "__complete") {
			t.Errorf("completion %s: exit %d, %d bytes", sh, code, len(stdout))
		}
	}
}

func TestQueuesWide(t *testing.T) {
	t.Parallel()
	qs := someQueues()
	qs[1].Scheduled, qs[1].Running, qs[1].Retrying, qs[1].SucceededLastHour, qs[1].FailedLastHour = 5, 4, 1, 1200, 3
	qs[1].High = 6
	f := newQueuesAPI(t, qs...)
	stdout, stderr, code := runWarren(t, f.url, "", "queues", "-o", "wide")
	want := `POOL     BACKLOG  READY  UNACKED  CONSUMERS  OLDEST  LIMITED  DEAD  RESCUED  REPLICAS  HIGH  SCHEDULED  RUNNING  RETRYING  OK/1H  FAILED/1H  SOURCE      SCALED                    REASON
image    0        0      0        0          -       0        0     0        -         0     0          0        0         0      0          management  -                         -
sys      16       12     4        2          1m23s   0        3     5        2/4       6     5          4        1         1200   3          management  2025-03-14T09:27:01.500Z  backlog 16 over target 4 per replica
webhook  7        7      -        1          <1ms    0        0     0        -         0     0          0        0         0      0          amqp        -                         -
`
	if code != 0 || stderr != "" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if d := cmp.Diff(want, stdout); d != "" {
		t.Errorf("queues -o wide (-want +got):\n%s", d)
	}
}
