package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

// fakeAPI imitates the documented v1 job endpoints in memory. A job finishes
// when it is first waited for, in the way its type says: sys.echo succeeds
// with its payload as result, sys.fail fails, sys.cancel is canceled, and
// sys.sleep never finishes. The type nope.nope is unknown. A job submitted
// with a delay or run_at is scheduled. Dead letters are kept per pool (see
// dead_test.go); the pool nopool has no dead-letter queue.
type fakeAPI struct {
	url string

	mu         sync.Mutex
	jobs       map[string]*jobs.Job
	keys       map[string]string // idempotency key -> job id
	requests   []string          // "METHOD /path?query", in order
	bodies     []client.JobRequest
	dead       map[string][]client.DeadLetter // pool -> its dead letters, oldest first
	deadBodies []string                       // bodies of POST /v1/dead/replay
}

// created is the creation time of every job of the fake.
var created = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func newFakeAPI(t *testing.T, seed ...*jobs.Job) *fakeAPI {
	t.Helper()
	f := &fakeAPI{jobs: map[string]*jobs.Job{}, keys: map[string]string{}, dead: map[string][]client.DeadLetter{}}
	for _, j := range seed {
		f.jobs[j.ID] = j
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/jobs", f.submit)
	mux.HandleFunc("GET /v1/jobs/{id}", f.get)
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", f.cancel)
	mux.HandleFunc("GET /v1/dead", f.listDead)
	mux.HandleFunc("POST /v1/dead/replay", f.replayDead)
	mux.HandleFunc("DELETE /v1/dead", f.purgeDead)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *fakeAPI) submit(w http.ResponseWriter, r *http.Request) {
	var req client.JobRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		apiReply(w, 400, map[string]any{"error": map[string]string{"code": "invalid_json", "message": err.Error()}})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bodies = append(f.bodies, req)
	if req.Type == "nope.nope" {
		apiReply(w, 400, map[string]any{"error": map[string]string{
			"code": "unknown_type", "message": `unknown job type "nope.nope" (known: sys.echo, sys.fail)`, "field": "type",
		}})
		return
	}
	if id, ok := f.keys[req.IdempotencyKey]; ok && req.IdempotencyKey != "" {
		apiReply(w, http.StatusOK, f.jobs[id])
		return
	}
	j := &jobs.Job{
		ID:             jobs.NewID(),
		Type:           req.Type,
		Status:         jobs.StatusQueued,
		Payload:        cmpOrRaw(req.Payload, `{}`),
		MaxAttempts:    cmpOrInt(req.MaxAttempts, 3),
		Timeout:        cmpOrDur(req.Timeout, jobs.Duration(5*time.Minute)),
		Metadata:       req.Metadata,
		Backoff:        req.Backoff,
		IdempotencyKey: req.IdempotencyKey,
		CreatedAt:      created,
	}
	switch {
	case req.Delay > 0:
		at := created.Add(req.Delay.Std())
		j.Status, j.ScheduledAt = jobs.StatusScheduled, &at
	case req.RunAt != nil:
		j.Status, j.ScheduledAt = jobs.StatusScheduled, req.RunAt
	}
	f.jobs[j.ID] = j
	f.keys[req.IdempotencyKey] = j.ID
	apiReply(w, http.StatusAccepted, j)
}

func (f *fakeAPI) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	f.mu.Lock()
	j, ok := f.jobs[id]
	if !ok {
		f.mu.Unlock()
		apiReply(w, http.StatusNotFound, map[string]any{"error": map[string]string{"code": "not_found", "message": "no such job"}})
		return
	}
	wait := r.URL.Query().Get("wait")
	if wait != "" && !j.Status.Terminal() && j.Type != "sys.sleep" {
		finish(j)
	}
	snapshot := *j
	f.mu.Unlock()
	if d, _ := time.ParseDuration(wait); d > 0 && !snapshot.Status.Terminal() {
		// Hold the long poll until it ends or the client gives up.
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	apiReply(w, http.StatusOK, &snapshot)
}

func (f *fakeAPI) cancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	switch {
	case !ok:
		apiReply(w, http.StatusNotFound, map[string]any{"error": map[string]string{"code": "not_found", "message": "no such job"}})
	case j.Status.Terminal():
		apiReply(w, http.StatusConflict, map[string]any{"error": map[string]string{
			"code": "conflict", "message": fmt.Sprintf("job %s already %s; only a job that has not ended can be canceled", id, j.Status),
		}})
	default:
		finished := created.Add(time.Second)
		j.Status, j.FinishedAt = jobs.StatusCanceled, &finished
		j.Error = &jobs.Error{Code: "canceled", Message: "canceled by request"}
		apiReply(w, http.StatusOK, j)
	}
}

// finish moves j to the terminal state its type calls for.
func finish(j *jobs.Job) {
	started := j.CreatedAt.Add(100 * time.Millisecond)
	finished := started.Add(1500 * time.Millisecond)
	j.Attempt, j.StartedAt, j.FinishedAt, j.Worker = 1, &started, &finished, "fake-worker"
	switch j.Type {
	case "sys.fail":
		j.Status = jobs.StatusFailed
		j.Attempt = j.MaxAttempts
		j.Error = &jobs.Error{Code: "handler", Message: "told to fail"}
	case "sys.cancel":
		j.Status = jobs.StatusCanceled
		j.Error = &jobs.Error{Code: "canceled", Message: "canceled by a user"}
	default:
		j.Status = jobs.StatusSucceeded
		j.Result = j.Payload
	}
}

// requestBodies returns the job requests the fake received, in order.
func (f *fakeAPI) requestBodies() []client.JobRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]client.JobRequest(nil), f.bodies...)
}

func (f *fakeAPI) requestLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// run runs the warren command line in process against the fake.
func (f *fakeAPI) run(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runWarren(t, f.url, stdin, args...)
}

func runWarren(t *testing.T, apiURL, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(t.Context(), args, strings.NewReader(stdin), &out, &errOut, []string{"WARREN_API_URL=" + apiURL})
	return out.String(), errOut.String(), code
}

func apiReply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func cmpOrRaw(v json.RawMessage, def string) json.RawMessage {
	if len(v) == 0 {
		return json.RawMessage(def)
	}
	return v
}

func cmpOrInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func cmpOrDur(v, def jobs.Duration) jobs.Duration {
	if v == 0 {
		return def
	}
	return v
}

func TestEnqueueOptionsValidate(t *testing.T) {
	t.Parallel()
	valid := func() enqueueOptions {
		return enqueueOptions{Type: "sys.echo", MaxAttempts: 3, Timeout: 30 * time.Second, Meta: []string{"team=ops"}}
	}
	for _, tc := range []struct {
		name string
		edit func(o *enqueueOptions)
		err  string
	}{
		{name: "valid", edit: func(o *enqueueOptions) {}},
		{name: "defaults", edit: func(o *enqueueOptions) { *o = enqueueOptions{Type: "sys.echo"} }},
		{name: "bad type", edit: func(o *enqueueOptions) { o.Type = "Echo" }, err: `job type "Echo": want lower-case words joined by dots, such as sys.echo`},
		{name: "bare @", edit: func(o *enqueueOptions) { o.Payload, o.HasPayload = "@", true }, err: "payload @ names no file"},
		{name: "negative attempts", edit: func(o *enqueueOptions) { o.MaxAttempts = -1 }, err: "--max-attempts -1: want 1 to 100 (0 means the type's default)"},
		{name: "too many attempts", edit: func(o *enqueueOptions) { o.MaxAttempts = 101 }, err: "--max-attempts 101: want 1 to 100"},
		{name: "short timeout", edit: func(o *enqueueOptions) { o.Timeout = 500 * time.Millisecond }, err: "--timeout 500ms: want 1s to 24h (0 means the type's default)"},
		{name: "long timeout", edit: func(o *enqueueOptions) { o.Timeout = 25 * time.Hour }, err: "--timeout 25h0m0s: want 1s to 24h"},
		{name: "meta without =", edit: func(o *enqueueOptions) { o.Meta = []string{"team"} }, err: `--meta "team": want key=value, such as team=ops`},
		{name: "meta without key", edit: func(o *enqueueOptions) { o.Meta = []string{"=ops"} }, err: `--meta "=ops": want key=value`},
		{name: "meta twice", edit: func(o *enqueueOptions) { o.Meta = []string{"team=ops", "team=dev"} }, err: `--meta "team=dev": key team given twice`},
		{name: "negative wait", edit: func(o *enqueueOptions) { o.WaitTimeout = -time.Second }, err: "--wait-timeout -1s: must not be negative (0 means no limit)"},
		{name: "delay", edit: func(o *enqueueOptions) { o.Delay = new(90 * time.Second) }},
		{name: "at", edit: func(o *enqueueOptions) { o.At = "2026-12-01T11:00:00.5+01:00" }},
		{name: "at in the past", edit: func(o *enqueueOptions) { o.At = "2020-01-01T00:00:00Z" }},
		{name: "delay and at", edit: func(o *enqueueOptions) { o.Delay, o.At = new(time.Minute), "2026-12-01T10:00:00Z" }, err: "--delay and --at both say when to run the job: give one of them"},
		{name: "zero delay", edit: func(o *enqueueOptions) { o.Delay = new(time.Duration(0)) }, err: "--delay 0s: want a positive duration, such as 90s or 2h"},
		{name: "negative delay", edit: func(o *enqueueOptions) { o.Delay = new(-time.Second) }, err: "--delay -1s: want a positive duration"},
		{name: "long delay", edit: func(o *enqueueOptions) { o.Delay = new(jobs.MaxDelay + time.Second) }, err: "--delay 119304h38m50.5s: want at most 119304h38m49s"},
		{name: "at without zone", edit: func(o *enqueueOptions) { o.At = "2026-12-01T10:00:00" }, err: `--at "2026-12-01T10:00:00": want an RFC 3339 time, such as 2026-12-01T10:00:00Z`},
		{name: "at as a date", edit: func(o *enqueueOptions) { o.At = "2026-12-01" }, err: `--at "2026-12-01": want an RFC 3339 time`},
		{name: "backoff", edit: func(o *enqueueOptions) {
			o.BackoffBase, o.BackoffFactor, o.BackoffMax = new(time.Second), new(2.0), new(10*time.Minute)
		}},
		{name: "backoff factor 1", edit: func(o *enqueueOptions) { o.BackoffFactor = new(1.0) }},
		{name: "backoff factor 100", edit: func(o *enqueueOptions) { o.BackoffFactor = new(100.0) }},
		{name: "zero backoff base", edit: func(o *enqueueOptions) { o.BackoffBase = new(time.Duration(0)) }, err: "--backoff-base 0s: want a positive duration, such as 1s or 500ms"},
		{name: "negative backoff max", edit: func(o *enqueueOptions) { o.BackoffMax = new(-time.Minute) }, err: "--backoff-max -1m0s: want a positive duration, such as 10m or 1h"},
		{name: "long backoff max", edit: func(o *enqueueOptions) { o.BackoffMax = new(jobs.MaxDelay + time.Hour) }, err: "--backoff-max 119305h38m49.5s: want at most 119304h38m49s"},
		{name: "small factor", edit: func(o *enqueueOptions) { o.BackoffFactor = new(0.5) }, err: "--backoff-factor 0.5: want 1 to 100, such as 2"},
		{name: "zero factor", edit: func(o *enqueueOptions) { o.BackoffFactor = new(0.0) }, err: "--backoff-factor 0: want 1 to 100"},
		{name: "large factor", edit: func(o *enqueueOptions) { o.BackoffFactor = new(100.5) }, err: "--backoff-factor 100.5: want 1 to 100"},
		{name: "NaN factor", edit: func(o *enqueueOptions) { o.BackoffFactor = new(math.NaN()) }, err: "--backoff-factor NaN: want 1 to 100"},
	} {
		o := valid()
		tc.edit(&o)
		err := o.Validate()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one starting %q", tc.name, err, tc.err)
		}
	}
}

func TestEnqueuePrintsID(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	args := []string{"enqueue", "sys.echo", `{"message": "hello"}`,
		"--max-attempts", "5", "--timeout", "30s", "--meta", "team=ops", "--meta", "note=a=b", "--key", "order-42"}
	stdout, stderr, code := f.run(t, "", args...)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	id := strings.TrimSuffix(stdout, "\n")
	if !jobs.ValidID(id) || stdout != id+"\n" {
		t.Errorf("stdout %q, want a job id and a newline", stdout)
	}
	want := []client.JobRequest{{
		Type:           "sys.echo",
		Payload:        json.RawMessage(`{"message":"hello"}`),
		MaxAttempts:    5,
		Timeout:        jobs.Duration(30 * time.Second),
		Metadata:       map[string]string{"team": "ops", "note": "a=b"},
		IdempotencyKey: "order-42",
	}}
	if diff := cmp.Diff(want, f.requestBodies()); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}

	// The same key again: the same job, and a note that it was not new.
	stdout2, stderr2, code := f.run(t, "", args...)
	if code != 0 || stdout2 != stdout {
		t.Errorf("replay: exit %d, stdout %q; want 0, %q", code, stdout2, stdout)
	}
	if want := "job " + id + ` already exists for key "order-42"; not submitted again` + "\n"; stderr2 != want {
		t.Errorf("replay stderr %q, want %q", stderr2, want)
	}
}

func TestEnqueueScheduleAndBackoff(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	for _, args := range [][]string{
		{"enqueue", "sys.echo", "--delay", "90s"},
		{"enqueue", "sys.echo", "--at", "2026-12-01T11:00:00+01:00"},
		{"enqueue", "sys.echo", "--backoff-base", "2s", "--backoff-factor", "3", "--backoff-max", "5m"},
		{"enqueue", "sys.echo", "--backoff-factor", "1.5", "--delay", "50ms"},
	} {
		if _, stderr, code := f.run(t, "", args...); code != 0 || stderr != "" {
			t.Fatalf("%q: exit %d, stderr %q", args, code, stderr)
		}
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	want := []client.JobRequest{
		{Type: "sys.echo", Payload: json.RawMessage(`{}`), Delay: jobs.Duration(90 * time.Second)},
		{Type: "sys.echo", Payload: json.RawMessage(`{}`), RunAt: &at},
		{Type: "sys.echo", Payload: json.RawMessage(`{}`), Backoff: &jobs.Backoff{
			Base: jobs.Duration(2 * time.Second), Factor: 3, Max: jobs.Duration(5 * time.Minute),
		}},
		{Type: "sys.echo", Payload: json.RawMessage(`{}`), Delay: jobs.Duration(50 * time.Millisecond), Backoff: &jobs.Backoff{Factor: 1.5}},
	}
	if diff := cmp.Diff(want, f.requestBodies()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}

	// With -o json, the job shows when it is scheduled for.
	stdout, _, code := f.run(t, "", "enqueue", "sys.echo", "--at", "2026-12-01T10:00:00Z", "-o", "json")
	var j jobs.Job
	if err := json.Unmarshal([]byte(stdout), &j); err != nil {
		t.Fatalf("stdout is not a job: %v\n%s", err, stdout)
	}
	if code != 0 || j.Status != jobs.StatusScheduled || j.ScheduledAt == nil || !j.ScheduledAt.Equal(at) {
		t.Errorf("exit %d, status %s, scheduled at %v; want 0, scheduled, %v", code, j.Status, j.ScheduledAt, at)
	}
}

func TestEnqueuePayloadSources(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "payload.json")
	if err := os.WriteFile(path, []byte(`{"from": "file"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFakeAPI(t)
	for _, args := range [][]string{
		{"enqueue", "sys.echo"},
		{"enqueue", "sys.echo", "@" + path},
		{"enqueue", "sys.echo", "-"},
	} {
		if _, stderr, code := f.run(t, `{"from": "stdin"}`, args...); code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
	var got []string
	for _, b := range f.requestBodies() {
		got = append(got, string(b.Payload))
	}
	if diff := cmp.Diff([]string{`{}`, `{"from":"file"}`, `{"from":"stdin"}`}, got); diff != "" {
		t.Errorf("payloads (-want +got):\n%s", diff)
	}
}

func TestEnqueueRefusedLocally(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"enqueue"}, `warren: enqueue needs a job type, such as: warren enqueue sys.echo '{"message":"hello"}'`},
		{[]string{"enqueue", "sys.echo", "{}", "x"}, "warren: enqueue takes a type and at most one payload, got 3 arguments (quote the payload JSON)"},
		{[]string{"enqueue", "sys.echo", `{"message":`}, "warren: payload is not valid JSON: unexpected end of JSON input (at byte 11)"},
		{[]string{"enqueue", "sys.echo", `["hello"]`}, `warren: payload must be a JSON object such as '{"message":"hello"}', not an array`},
		{[]string{"enqueue", "sys.echo", "-"}, "warren: payload from standard input is empty"},
		{[]string{"enqueue", "Sys.Echo"}, `warren: job type "Sys.Echo": want lower-case words joined by dots, such as sys.echo`},
		{[]string{"enqueue", "sys.echo", "--timeout", "soon"}, `warren: invalid argument "soon" for "--timeout" flag`},
		{[]string{"enqueue", "sys.echo", "--timeout", "100ms"}, "warren: --timeout 100ms: want 1s to 24h"},
		{[]string{"enqueue", "sys.echo", "--max-attempts", "0x"}, `warren: invalid argument "0x" for "--max-attempts" flag`},
		{[]string{"enqueue", "sys.echo", "--meta", "team"}, `warren: --meta "team": want key=value`},
		{[]string{"enqueue", "sys.echo", "-o", "xml"}, `warren: -o "xml": want table (the default), wide, json or yaml`},
		{[]string{"enqueue", "sys.echo", "--wait-timeout", "-1s"}, "warren: --wait-timeout -1s: must not be negative"},
		{[]string{"enqueue", "sys.echo", "--delay", "soon"}, `warren: invalid argument "soon" for "--delay" flag: time: invalid duration "soon"`},
		{[]string{"enqueue", "sys.echo", "--delay", "0s"}, "warren: --delay 0s: want a positive duration, such as 90s or 2h"},
		{[]string{"enqueue", "sys.echo", "--at", "tomorrow"}, `warren: --at "tomorrow": want an RFC 3339 time, such as 2026-12-01T10:00:00Z`},
		{[]string{"enqueue", "sys.echo", "--delay", "1m", "--at", "2026-12-01T10:00:00Z"}, "warren: --delay and --at both say when to run the job: give one of them"},
		{[]string{"enqueue", "sys.echo", "--backoff-base", "0s"}, "warren: --backoff-base 0s: want a positive duration"},
		{[]string{"enqueue", "sys.echo", "--backoff-max", "-5m"}, "warren: --backoff-max -5m0s: want a positive duration"},
		{[]string{"enqueue", "sys.echo", "--backoff-factor", "0.5"}, "warren: --backoff-factor 0.5: want 1 to 100, such as 2"},
		{[]string{"enqueue", "sys.echo", "--backoff-factor", "two"}, `warren: invalid argument "two" for "--backoff-factor" flag: want a number, such as 2`},
	} {
		stdout, stderr, code := f.run(t, "", tc.args...)
		if code != 1 || stdout != "" || !strings.HasPrefix(stderr, tc.stderr) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 1, nothing, one line starting %q", tc.args, code, stdout, stderr, tc.stderr)
		}
	}
	if reqs := f.requestLog(); len(reqs) != 0 {
		t.Errorf("requests sent: %q, want none", reqs)
	}
}

func TestEnqueueAPIError(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	stdout, stderr, code := f.run(t, "", "enqueue", "nope.nope")
	want := `warren: enqueue nope.nope: 400 unknown_type: unknown job type "nope.nope" (known: sys.echo, sys.fail) [field type]` + "\n"
	if code != 1 || stdout != "" || stderr != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, %q", code, stdout, stderr, want)
	}
}

func TestEnqueueUnreachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	_, stderr, code := runWarren(t, srv.URL, "", "enqueue", "sys.echo")
	want := fmt.Sprintf("warren: enqueue sys.echo: warren API at %s is not reachable (connection refused); "+
		"start it with 'make run' or 'warren dev', or point --api (WARREN_API_URL) at it\n", srv.URL)
	if code != 1 || stderr != want {
		t.Errorf("exit %d, stderr %q; want 1, %q", code, stderr, want)
	}
}

func TestEnqueueWait(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // "ID" stands for the job's id
		stderr string
	}{
		{
			name:   "succeeded",
			args:   []string{"enqueue", "sys.echo", `{"message":"hello","n":[1]}`, "--wait"},
			stdout: "{\n  \"message\": \"hello\",\n  \"n\": [\n    1\n  ]\n}\n",
		},
		{
			name:   "succeeded within a limit",
			args:   []string{"enqueue", "sys.echo", `{"message":"hello"}`, "--wait-timeout", "1m"},
			stdout: "{\n  \"message\": \"hello\"\n}\n",
		},
		{
			name:   "failed",
			args:   []string{"enqueue", "sys.fail", "--wait"},
			code:   2,
			stderr: "job ID failed: handler: told to fail\n",
		},
		{
			name:   "canceled",
			args:   []string{"enqueue", "sys.cancel", "--wait"},
			code:   2,
			stderr: "job ID canceled: canceled: canceled by a user\n",
		},
		{
			name:   "still running when the limit passes",
			args:   []string{"enqueue", "sys.sleep", "--wait-timeout", "50ms"},
			code:   3,
			stderr: "job ID is still queued after 50ms; see: warren job get ID\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			stdout, stderr, code := f.run(t, "", tc.args...)
			id := lastJobID(t, f)
			if want := strings.ReplaceAll(tc.stderr, "ID", id); code != tc.code || stdout != tc.stdout || stderr != want {
				t.Errorf("exit %d, stdout %q, stderr %q\nwant %d, %q, %q", code, stdout, stderr, tc.code, tc.stdout, want)
			}
		})
	}
}

// lastJobID returns the id in the last job request the fake saw.
func lastJobID(t *testing.T, f *fakeAPI) string {
	t.Helper()
	reqs := f.requestLog()
	for i := len(reqs) - 1; i >= 0; i-- {
		if rest, ok := strings.CutPrefix(reqs[i], "GET /v1/jobs/"); ok {
			id, _, _ := strings.Cut(rest, "?")
			return id
		}
	}
	t.Fatal("no job was read")
	return ""
}

func TestEnqueueJSON(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	for _, tc := range []struct {
		args   []string
		code   int
		status jobs.Status
	}{
		{[]string{"enqueue", "sys.echo", "-o", "json"}, 0, jobs.StatusQueued},
		{[]string{"enqueue", "sys.echo", "-o", "json", "--wait"}, 0, jobs.StatusSucceeded},
		{[]string{"enqueue", "sys.fail", "-o", "json", "--wait"}, 2, jobs.StatusFailed},
	} {
		stdout, _, code := f.run(t, "", tc.args...)
		var j jobs.Job
		if err := json.Unmarshal([]byte(stdout), &j); err != nil {
			t.Errorf("%q: stdout is not a job: %v\n%s", tc.args, err, stdout)
			continue
		}
		if code != tc.code || j.Status != tc.status || !strings.HasPrefix(stdout, "{\n  \"id\": ") {
			t.Errorf("%q: exit %d, status %s; want %d, %s, indented\n%s", tc.args, code, j.Status, tc.code, tc.status, stdout)
		}
	}
}
