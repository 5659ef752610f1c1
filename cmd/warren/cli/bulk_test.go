package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

// batchAPI imitates POST /v1/jobs/batch: each entry is checked on its own
// (a type other than sys.* is unknown, a payload with "bad" is refused),
// ids are numbered in the order jobs arrive, and the answers to come can be
// scripted.
type batchAPI struct {
	url string

	mu      sync.Mutex
	chunks  []int             // the size of each batch received, in order
	entries []json.RawMessage // every entry received, in order
	next    int               // jobs accepted so far
	script  []scripted        // answers to give before the normal one
	// maxEntries, when set, refuses larger batches with 413.
	maxEntries int
	// onBatch, when set, is called with each batch's size before it is
	// answered.
	onBatch func(n int)
}

// scripted is an answer the batch API gives instead of the normal one.
type scripted struct {
	status     int
	code       string
	retryAfter string
}

func newBatchAPI(t *testing.T) *batchAPI {
	t.Helper()
	f := &batchAPI{}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// batchID is the id of the nth job the fake accepts (from 0).
func batchID(n int) string { return fmt.Sprintf("0190c5f2-6d1e-7b3a-9c4d-%012d", n) }

func (f *batchAPI) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/jobs/batch" {
		http.NotFound(w, r)
		return
	}
	var body struct{ Jobs []json.RawMessage }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		apiReply(w, 400, map[string]any{"error": map[string]string{"code": "invalid_json", "message": err.Error()}})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.onBatch != nil {
		f.onBatch(len(body.Jobs))
	}
	if len(f.script) > 0 {
		s := f.script[0]
		f.script = f.script[1:]
		if s.retryAfter != "" {
			w.Header().Set("Retry-After", s.retryAfter)
		}
		apiReply(w, s.status, map[string]any{"error": map[string]string{"code": s.code, "message": "scripted " + s.code}})
		return
	}
	if f.maxEntries > 0 && len(body.Jobs) > f.maxEntries {
		apiReply(w, http.StatusRequestEntityTooLarge, map[string]any{"error": map[string]string{"code": "too_large", "message": "request body too large"}})
		return
	}
	f.chunks = append(f.chunks, len(body.Jobs))
	out := make([]map[string]any, len(body.Jobs))
	for i, raw := range body.Jobs {
		f.entries = append(f.entries, raw)
		var req struct {
			Type    string
			Payload map[string]any
		}
		if err := json.Unmarshal(raw, &req); err != nil {
			out[i] = map[string]any{"error": map[string]string{"code": "invalid_json", "message": err.Error()}}
			continue
		}
		switch {
		case !strings.HasPrefix(req.Type, "sys."):
			out[i] = map[string]any{"error": map[string]string{"code": "unknown_type", "field": "type", "message": fmt.Sprintf("unknown job type %q", req.Type)}}
		case req.Payload["bad"] != nil:
			out[i] = map[string]any{"error": map[string]string{"code": "invalid_payload", "field": "payload.bad", "message": "bad is not allowed"}}
		default:
			out[i] = map[string]any{"job": &jobs.Job{ID: batchID(f.next), Type: req.Type, Status: jobs.StatusQueued, CreatedAt: created}}
			f.next++
		}
	}
	apiReply(w, http.StatusOK, map[string]any{"jobs": out})
}

func (f *batchAPI) chunkSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.chunks...)
}

func (f *batchAPI) received() []json.RawMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]json.RawMessage(nil), f.entries...)
}

// writeLines writes lines to a file in a new temporary directory and
// returns its path.
func writeLines(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "jobs.jsonl")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFileLines(t *testing.T, p string) []string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// A file of payloads goes in chunks; bad lines are refused with their line
// numbers and the others go through; --ids-out answers line by line.
func TestEnqueueFile(t *testing.T) {
	t.Parallel()
	f := newBatchAPI(t)
	var lines []string
	for i := range 250 {
		switch i {
		case 10:
			lines = append(lines, "") // blank: skipped
		case 20:
			lines = append(lines, `{"n":20`) // not JSON
		case 30:
			lines = append(lines, `[1,2]`) // not an object
		case 40, 140, 240:
			lines = append(lines, fmt.Sprintf(`{"n":%d,"bad":true}`, i)) // refused by the API
		default:
			lines = append(lines, fmt.Sprintf(`  {"n":%d}  `, i))
		}
	}
	file := writeLines(t, lines...)
	idsOut := filepath.Join(t.TempDir(), "ids.txt")
	stdout, stderr, code := runWarren(t, f.url, "", "enqueue", "sys.echo", "--file", file, "--chunk", "100",
		"--ids-out", idsOut, "--max-attempts", "5", "--meta", "batch=b1")
	if code != exitRefused {
		t.Errorf("exit %d, want %d (stderr %q)", code, exitRefused, stderr)
	}
	if stderr != "" {
		t.Errorf("stderr %q, want none (not a terminal, and quick)", stderr)
	}
	want := `250 lines read: 244 accepted, 5 refused, 1 blank
  1 refused, invalid_json: the line is not valid JSON: unexpected end of JSON input (at byte 7) (line 21)
  1 refused, invalid_field [payload]: a payload must be a JSON object, not an array (line 31)
  3 refused, invalid_payload [payload.bad]: bad is not allowed (lines 41, 141, 241)
ids written to ` + idsOut + ` (line by line; empty for a line that is not a job)
`
	if d := cmp.Diff(want, stdout); d != "" {
		t.Errorf("summary (-want +got):\n%s", d)
	}
	// Chunks of 100 jobs: the lines refused here take no room in them.
	if d := cmp.Diff([]int{100, 100, 47}, f.chunkSizes()); d != "" {
		t.Errorf("chunk sizes (-want +got):\n%s", d)
	}
	// Each job request carries the flags' settings and the line's payload.
	got := f.received()
	var first client.JobRequest
	if err := json.Unmarshal(got[0], &first); err != nil {
		t.Fatal(err)
	}
	if first.Type != "sys.echo" || string(first.Payload) != `{"n":0}` || first.MaxAttempts != 5 || first.Metadata["batch"] != "b1" {
		t.Errorf("first request %s", got[0])
	}
	// Line i of --ids-out answers line i of the input.
	ids := readFileLines(t, idsOut)
	if len(ids) != len(lines) {
		t.Fatalf("%d lines in --ids-out, want %d", len(ids), len(lines))
	}
	n := 0
	for i, id := range ids {
		switch i {
		case 10, 20, 30, 40, 140, 240:
			if id != "" {
				t.Errorf("--ids-out line %d = %q, want empty", i+1, id)
			}
		default:
			if id != batchID(n) {
				t.Errorf("--ids-out line %d = %q, want %q", i+1, id, batchID(n))
			}
			n++
		}
	}
}

// The summary as data, in JSON and YAML.
func TestEnqueueFileSummaryData(t *testing.T) {
	t.Parallel()
	f := newBatchAPI(t)
	file := writeLines(t, `{"n":1}`, `nope`, `{"n":2}`)
	stdout, _, code := runWarren(t, f.url, "", "enqueue", "sys.echo", "--file", file, "-o", "json")
	if code != exitRefused {
		t.Errorf("exit %d, want %d", code, exitRefused)
	}
	var s bulkSummary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	want := bulkSummary{Lines: 3, Accepted: 2, Refused: 1, Refusals: []*refusalGroup{{
		Code: "invalid_json", Message: "the line is not valid JSON: invalid character 'o' in literal null (expecting 'u') (at byte 2)", Count: 1, Lines: []int{2},
	}}}
	if d := cmp.Diff(want, s, cmp.AllowUnexported(bulkSummary{})); d != "" {
		t.Errorf("summary (-want +got):\n%s", d)
	}
	stdout, _, _ = runWarren(t, f.url, "", "enqueue", "sys.echo", "--file", file, "-o", "yaml")
	if !strings.HasPrefix(stdout, "lines: 3\nblank: 0\naccepted: 2\nrefused: 1\nrefusals:\n- code: invalid_json\n") {
		t.Errorf("YAML summary:\n%s", stdout)
	}
}

// With --requests each line is a whole request: TYPE and the flags fill in
// what a line leaves out, and a line that says when to run keeps its own.
func TestEnqueueFileRequests(t *testing.T) {
	t.Parallel()
	f := newBatchAPI(t)
	in := strings.Join([]string{
		`{"payload":{"n":1}}`,
		`{"type":"sys.sleep","payload":{"ms":5},"max_attempts":1}`,
		`{"type":"sys.echo","payload":{"n":3},"run_at":"2030-01-01T00:00:00Z","idempotency_key":"k3"}`,
		`{"type":"other.thing"}`,
	}, "\n")
	stdout, stderr, code := runWarren(t, f.url, in, "enqueue", "sys.echo", "--file", "-", "--requests", "--delay", "1h", "--max-attempts", "4")
	if code != exitRefused {
		t.Errorf("exit %d, want %d (stdout %q, stderr %q)", code, exitRefused, stdout, stderr)
	}
	var got []map[string]any
	for _, raw := range f.received() {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	want := []map[string]any{
		{"type": "sys.echo", "payload": map[string]any{"n": 1.0}, "delay": "1h0m0s", "max_attempts": 4.0},
		{"type": "sys.sleep", "payload": map[string]any{"ms": 5.0}, "delay": "1h0m0s", "max_attempts": 1.0},
		{"type": "sys.echo", "payload": map[string]any{"n": 3.0}, "run_at": "2030-01-01T00:00:00Z", "idempotency_key": "k3", "max_attempts": 4.0},
		{"type": "other.thing", "delay": "1h0m0s", "max_attempts": 4.0},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("requests sent (-want +got):\n%s", d)
	}
	if !strings.Contains(stdout, `1 refused, unknown_type [type]: unknown job type "other.thing" (line 4)`) {
		t.Errorf("summary:\n%s", stdout)
	}

	// Without TYPE, lines must name their own.
	f2 := newBatchAPI(t)
	_, stderr, code = runWarren(t, f2.url, `{"type":"sys.echo","payload":{}}`, "enqueue", "--file", "-", "--requests")
	if code != 0 || len(f2.received()) != 1 || string(f2.received()[0]) != `{"type":"sys.echo","payload":{}}` {
		t.Errorf("exit %d, stderr %q, sent %s; want the line sent as it is", code, stderr, f2.received())
	}
}

// A payload that looks like a job request is sent as a payload all the
// same, with a warning that --requests may have been meant.
func TestEnqueueFileWarnsOfRequestLikePayloads(t *testing.T) {
	t.Parallel()
	f := newBatchAPI(t)
	_, stderr, code := runWarren(t, f.url, `{"type":"sys.echo","payload":{"n":1}}`+"\n"+`{"type":"x","payload":2}`,
		"enqueue", "sys.echo", "--file", "-")
	if code != 0 {
		t.Errorf("exit %d", code)
	}
	if want := "warren: line 1 has top-level \"type\" and \"payload\" members; it is sent as a payload, whole, as every line is without --requests\n"; stderr != want {
		t.Errorf("stderr %q, want %q (once)", stderr, want)
	}
	var req client.JobRequest
	if err := json.Unmarshal(f.received()[0], &req); err != nil || string(req.Payload) != `{"type":"sys.echo","payload":{"n":1}}` {
		t.Errorf("sent %s, want the line as the payload", f.received()[0])
	}
}

// lineSource produces n JSON lines as they are read, counting them, so that
// a test can tell how far ahead of the sending the reading is.
type lineSource struct {
	n, made int
	read    atomic.Int64 // lines handed out
	buf     []byte
}

func (s *lineSource) Read(p []byte) (int, error) {
	for len(s.buf) < len(p) && s.made < s.n {
		s.buf = fmt.Appendf(s.buf, `{"n":%d}`+"\n", s.made)
		s.made++
	}
	if len(s.buf) == 0 {
		return 0, io.EOF
	}
	k := copy(p, s.buf)
	s.buf = s.buf[k:]
	// Lines wholly handed out (a line cut short counts when it ends).
	s.read.Store(int64(s.made - strings.Count(string(s.buf), "\n")))
	return k, nil
}

// 100,000 lines go through in chunks, and the reading never runs far ahead
// of the sending: the file is never held in memory.
func TestEnqueueFileStreams(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("100,000 lines")
	}
	const n, chunk = 100_000, 500
	src := &lineSource{n: n}
	f := newBatchAPI(t)
	var (
		mu      sync.Mutex
		sent    int
		aheadBy int64 // the most lines read but not yet in a chunk sent
	)
	f.onBatch = func(k int) {
		mu.Lock()
		defer mu.Unlock()
		sent += k
		aheadBy = max(aheadBy, src.read.Load()-int64(sent))
	}
	idsOut := filepath.Join(t.TempDir(), "ids.txt")
	var out, errOut strings.Builder
	code := Main(t.Context(), []string{"enqueue", "sys.echo", "--file", "-", "--ids-out", idsOut},
		src, &out, &errOut, []string{"WARREN_API_URL=" + f.url})
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if want := "100,000 lines read: 100,000 accepted, 0 refused\nids written to " + idsOut + " (line by line; empty for a line that is not a job)\n"; out.String() != want {
		t.Errorf("summary %q, want %q", out.String(), want)
	}
	sizes := f.chunkSizes()
	if len(sizes) != n/chunk {
		t.Errorf("%d batch requests, want %d", len(sizes), n/chunk)
	}
	for i, k := range sizes {
		if k != chunk {
			t.Errorf("batch %d holds %d jobs, want %d", i, k, chunk)
			break
		}
	}
	// Ahead of what was sent: the chunk being sent, the lines queued for
	// it (64), and what the 64 KiB read buffer holds (at least 8 bytes a
	// line here).
	if limit := int64(chunk + 64 + 64<<10/8 + 2); aheadBy > limit {
		t.Errorf("read %d lines ahead of those sent, want at most %d", aheadBy, limit)
	}
	t.Logf("read at most %d lines ahead of those sent, of %d", aheadBy, n)
	fh, err := os.Open(idsOut)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for i := 0; sc.Scan(); i++ {
		if sc.Text() != batchID(i) {
			t.Fatalf("--ids-out line %d = %q, want %q", i+1, sc.Text(), batchID(i))
		}
	}
}

// A 429 is waited out and the chunk sent again; the summary says how long
// the wait was.
func TestEnqueueFileRateLimited(t *testing.T) {
	t.Parallel()
	f := newBatchAPI(t)
	f.script = []scripted{{status: http.StatusTooManyRequests, code: "rate_limited", retryAfter: "1"}}
	file := writeLines(t, `{"n":1}`, `{"n":2}`, `{"n":3}`)
	start := time.Now()
	stdout, stderr, code := runWarren(t, f.url, "", "enqueue", "sys.echo", "--file", file, "--chunk", "2")
	if code != 0 {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("done after %s: the Retry-After of 1s was not waited out", waited)
	}
	if d := cmp.Diff([]int{2, 1}, f.chunkSizes()); d != "" {
		t.Errorf("chunks accepted (-want +got):\n%s", d)
	}
	if want := "3 lines read: 3 accepted, 0 refused\nwaited 1s in all for the key's rate limit\n"; stdout != want {
		t.Errorf("summary %q, want %q", stdout, want)
	}
}

// An error that would befall every chunk stops the run; the summary says
// what was done, and from which line nothing was sent.
func TestEnqueueFileStopsOnError(t *testing.T) {
	t.Parallel()
	f := newBatchAPI(t)
	file := writeLines(t, `{"n":1}`, `{"n":2}`, `{"n":3}`, `{"n":4}`, `{"n":5}`)
	idsOut := filepath.Join(t.TempDir(), "ids.txt")
	var batches atomic.Int32
	f.onBatch = func(int) {
		if batches.Add(1) == 2 {
			f.script = append(f.script, scripted{status: http.StatusForbidden, code: "forbidden"})
		}
	}
	stdout, stderr, code := runWarren(t, f.url, "", "enqueue", "sys.echo", "--file", file, "--chunk", "2", "--ids-out", idsOut)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if want := "warren: enqueue batch of 2: 403 forbidden: scripted forbidden\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	if !strings.Contains(stdout, "2 accepted") || !strings.Contains(stdout, "stopped: lines from 3 on were not sent (tail -n +3 FILE sends them)\n") {
		t.Errorf("summary:\n%s", stdout)
	}
	if d := cmp.Diff([]string{batchID(0), batchID(1)}, readFileLines(t, idsOut)); d != "" {
		t.Errorf("--ids-out (-want +got):\n%s", d)
	}
}

// A chunk the API finds too large is sent in halves, and the chunks after
// it are no larger.
func TestEnqueueFileTooLarge(t *testing.T) {
	t.Parallel()
	f := newBatchAPI(t)
	f.maxEntries = 3
	var lines []string
	for i := range 20 {
		lines = append(lines, fmt.Sprintf(`{"n":%d}`, i))
	}
	idsOut := filepath.Join(t.TempDir(), "ids.txt")
	stdout, stderr, code := runWarren(t, f.url, "", "enqueue", "sys.echo", "--file", writeLines(t, lines...), "--chunk", "8", "--ids-out", idsOut)
	if code != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// 8 is refused, then 4 (refused), 2, 2 (its halves), 4 → 2, 2; then
	// chunks of 2.
	for i, k := range f.chunkSizes() {
		if k > 3 {
			t.Errorf("batch %d of %d accepted, over the limit", i, k)
		}
	}
	ids := readFileLines(t, idsOut)
	for i := range 20 {
		if ids[i] != batchID(i) {
			t.Errorf("--ids-out line %d = %q, want %q: the halves must keep the order", i+1, ids[i], batchID(i))
		}
	}
}

func TestEnqueueFileOptions(t *testing.T) {
	t.Parallel()
	file := writeLines(t, `{}`)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sys.echo", "{}", "--file", file}, "--file gives the payloads, one a line: leave out the PAYLOAD argument"},
		{[]string{"sys.echo", "--file", file, "--key", "k"}, "--key would give every job of --file the same idempotency key: with --requests, give each line its own idempotency_key"},
		{[]string{"sys.echo", "--file", file, "--wait"}, "--wait works on one job: with --file, keep the ids with --ids-out and wait with 'warren job wait --file IDS'"},
		{[]string{"sys.echo", "--file", file, "--chunk", "0"}, "--chunk 0: want 1 to 1000 jobs per batch request"},
		{[]string{"sys.echo", "--file", file, "--chunk", "1001"}, "--chunk 1001: want 1 to 1000 jobs per batch request"},
		{[]string{"sys.echo", "--requests"}, "--requests says how to read the lines of --file: give --file too"},
		{[]string{"sys.echo", "--ids-out", "x"}, "--ids-out writes the ids of the jobs of --file: give --file too (one job prints its id)"},
		{[]string{"--file", file}, `enqueue needs a job type, such as: warren enqueue sys.echo '{"message":"hello"}'`},
		{[]string{"Bad", "--file", file, "--requests"}, `job type "Bad": want lower-case words joined by dots, such as sys.echo`},
		{[]string{"sys.echo", "--file", filepath.Join(t.TempDir(), "missing")}, "--file: open "},
	} {
		_, stderr, code := runWarren(t, "http://127.0.0.1:1", "", append([]string{"enqueue"}, tc.args...)...)
		if code != 1 || !strings.HasPrefix(stderr, "warren: "+tc.want) {
			t.Errorf("enqueue %v: exit %d, stderr %q; want %q", tc.args, code, stderr, tc.want)
		}
	}
}

// fakeBulkClient answers batches from a script, then accepts everything.
type fakeBulkClient struct {
	answers []error
	calls   []int
}

func (c *fakeBulkClient) EnqueueBatchJSON(_ context.Context, reqs []json.RawMessage) ([]client.BatchResult, error) {
	c.calls = append(c.calls, len(reqs))
	if len(c.answers) > 0 {
		err := c.answers[0]
		c.answers = c.answers[1:]
		if err != nil {
			return nil, err
		}
	}
	out := make([]client.BatchResult, len(reqs))
	for i := range reqs {
		out[i].Job = &jobs.Job{ID: batchID(i)}
	}
	return out, nil
}

var _ bulkClient = (*fakeBulkClient)(nil)

func TestBatchSenderRetries(t *testing.T) {
	t.Parallel()
	unavailable := &client.APIError{Status: 503, Code: "unavailable", RetryAfter: 3 * time.Second}
	unreachable := &client.UnreachableError{URL: "http://x", Err: errors.New("connection refused")}
	limited := &client.APIError{Status: 429, Code: "rate_limited", RetryAfter: 7 * time.Second}
	entries := make([]json.RawMessage, 4)
	for _, tc := range []struct {
		name    string
		answers []error
		calls   []int
		waits   []time.Duration
		err     bool
	}{
		{"accepted", nil, []int{4}, nil, false},
		{"rate limited twice", []error{limited, limited}, []int{4, 4, 4}, []time.Duration{7 * time.Second, 7 * time.Second}, false},
		{"unavailable, then back", []error{unavailable, unreachable}, []int{4, 4, 4}, []time.Duration{3 * time.Second, 2 * time.Second}, false},
		{
			"unavailable for good",
			[]error{unreachable, unreachable, unreachable, unreachable, unreachable, unreachable},
			[]int{4, 4, 4, 4, 4, 4},
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second},
			true,
		},
		{"refused", []error{&client.APIError{Status: 401, Code: "unauthorized"}}, []int{4}, nil, true},
		{"too large", []error{&client.APIError{Status: 413, Code: "too_large"}}, []int{4, 2, 2}, nil, false},
		{
			"more than the key may send at once",
			[]error{&client.APIError{Status: 400, Code: "invalid_field", Field: "jobs"}, &client.APIError{Status: 400, Code: "invalid_field", Field: "jobs"}},
			[]int{4, 2, 1, 1, 2}, nil, false,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeBulkClient{answers: tc.answers}
			var waits []time.Duration
			s := &batchSender{c: c, maxCount: 4, maxBytes: 1 << 20, sleep: func(_ context.Context, d time.Duration) error {
				waits = append(waits, d)
				return nil
			}}
			res, err := s.send(context.Background(), entries)
			if (err != nil) != tc.err {
				t.Errorf("error %v, want error: %v", err, tc.err)
			}
			if err == nil && len(res) != len(entries) {
				t.Errorf("%d results for %d entries", len(res), len(entries))
			}
			if d := cmp.Diff(tc.calls, c.calls); d != "" {
				t.Errorf("batches sent (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.waits, waits); d != "" {
				t.Errorf("waits (-want +got):\n%s", d)
			}
		})
	}
}

// Jobs piped in a few at a time are sent within flushAfter, not held until
// a chunk fills.
func TestEnqueueFileFlushesATrickle(t *testing.T) {
	t.Parallel()
	f := newBatchAPI(t)
	sent := make(chan int, 10)
	f.onBatch = func(n int) { sent <- n }
	pr, pw := io.Pipe()
	done := make(chan int)
	var out, errOut syncBuffer
	go func() {
		done <- Main(t.Context(), []string{"enqueue", "sys.echo", "--file", "-"}, pr, &out, &errOut, []string{"WARREN_API_URL=" + f.url})
	}()
	if _, err := io.WriteString(pw, "{\"n\":1}\n{\"n\":2}\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-sent:
		if n != 2 {
			t.Errorf("first batch of %d jobs, want 2", n)
		}
	case <-time.After(flushAfter + 5*time.Second):
		t.Fatal("the jobs written were not sent while the input stayed open")
	}
	if _, err := io.WriteString(pw, "{\"n\":3}\n"); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if code := <-done; code != 0 || out.String() != "3 lines read: 3 accepted, 0 refused\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}
