package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/jobs"
)

// queuedJob is a job of type typ waiting in its queue.
func queuedJob(id, typ string) *jobs.Job {
	return &jobs.Job{
		ID:          id,
		Type:        typ,
		Status:      jobs.StatusQueued,
		Payload:     json.RawMessage(`{"message":"hello"}`),
		MaxAttempts: 3,
		Timeout:     jobs.Duration(30 * time.Second),
		CreatedAt:   created,
	}
}

func TestJobGet(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, fixedJob())

	stdout, stderr, code := f.run(t, "", "job", "get", testID)
	want := fixedJobView
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if diff := cmp.Diff(want, stdout); diff != "" {
		t.Errorf("job get (-want +got):\n%s", diff)
	}
	if out, _, _ := f.run(t, "", "job", "get", testID, "-o", "table"); out != want {
		t.Errorf("-o table differs from the default:\n%s", out)
	}

	stdout, stderr, code = f.run(t, "", "job", "get", testID, "-o", "json")
	if code != 0 || stderr != "" {
		t.Fatalf("-o json: exit %d, stderr %q", code, stderr)
	}
	var got jobs.Job
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("-o json: %v\n%s", err, stdout)
	}
	if got.ID != testID || got.Status != jobs.StatusSucceeded || !strings.HasPrefix(stdout, "{\n  \"id\": ") {
		t.Errorf("-o json: not the job, indented:\n%s", stdout)
	}
}

func TestJobGetErrors(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	for _, tc := range []struct {
		args     []string
		stderr   string
		requests int
	}{
		{[]string{"job", "get", testID}, "warren: get job " + testID + ": 404 not_found: no such job\n", 1},
		{[]string{"job", "get", "42"}, `warren: "42" is not a job id: want a UUID such as 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d` + "\n", 0},
		{[]string{"job", "get"}, "warren: get needs a job id, such as: warren job get 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d (got 0 arguments)\n", 0},
		{[]string{"job", "get", testID, "-o", "xml"}, `warren: -o "xml": want table (the default), wide, json or yaml` + "\n", 0},
		{[]string{"job", "frobnicate"}, `warren: unknown command "frobnicate" for "warren job"` + "\n", 0},
	} {
		before := len(f.requestLog())
		stdout, stderr, code := f.run(t, "", tc.args...)
		if code != 1 || stdout != "" || stderr != tc.stderr {
			t.Errorf("%q: exit %d, stdout %q, stderr %q\nwant 1, nothing, %q", tc.args, code, stdout, stderr, tc.stderr)
		}
		if n := len(f.requestLog()) - before; n != tc.requests {
			t.Errorf("%q: %d requests, want %d", tc.args, n, tc.requests)
		}
	}
}

func TestJobWait(t *testing.T) {
	t.Parallel()
	const (
		idEcho  = "0190c5f2-6d1e-7b3a-9c4d-000000000001"
		idFail  = "0190c5f2-6d1e-7b3a-9c4d-000000000002"
		idSleep = "0190c5f2-6d1e-7b3a-9c4d-000000000003"
		idEcho2 = "0190c5f2-6d1e-7b3a-9c4d-000000000004"
	)
	seed := func() []*jobs.Job {
		return []*jobs.Job{
			queuedJob(idEcho, "sys.echo"),
			queuedJob(idFail, "sys.fail"),
			queuedJob(idSleep, "sys.sleep"),
			queuedJob(idEcho2, "sys.echo"),
		}
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{
			name: "all succeed",
			args: []string{"job", "wait", idEcho, idEcho2, idEcho},
			stdout: `ID                                    TYPE      STATUS     ATTEMPT  DURATION  ERROR
0190c5f2-6d1e-7b3a-9c4d-000000000001  sys.echo  succeeded  1/3      1.5s      -
0190c5f2-6d1e-7b3a-9c4d-000000000004  sys.echo  succeeded  1/3      1.5s      -
2 jobs: 2 succeeded
`,
		},
		{
			name: "one fails",
			args: []string{"job", "wait", idEcho, idFail},
			code: 2,
			stdout: `ID                                    TYPE      STATUS     ATTEMPT  DURATION  ERROR
0190c5f2-6d1e-7b3a-9c4d-000000000001  sys.echo  succeeded  1/3      1.5s      -
0190c5f2-6d1e-7b3a-9c4d-000000000002  sys.fail  failed     3/3      1.5s      handler: told to fail
2 jobs: 1 succeeded, 1 failed
`,
		},
		{
			name: "one does not finish in time",
			args: []string{"job", "wait", idSleep, idEcho, "--wait-timeout", "50ms"},
			code: 3,
			stdout: `ID                                    TYPE       STATUS     ATTEMPT  DURATION  ERROR
0190c5f2-6d1e-7b3a-9c4d-000000000003  sys.sleep  queued     0/3      -         -
0190c5f2-6d1e-7b3a-9c4d-000000000001  sys.echo   succeeded  1/3      1.5s      -
2 jobs: 1 succeeded, 1 queued
`,
			stderr: "1 of 2 jobs not finished after 50ms\n",
		},
		{
			name: "a failure outweighs a timeout",
			args: []string{"job", "wait", idSleep, idFail, "--wait-timeout", "50ms"},
			code: 2,
			stdout: `ID                                    TYPE       STATUS  ATTEMPT  DURATION  ERROR
0190c5f2-6d1e-7b3a-9c4d-000000000003  sys.sleep  queued  0/3      -         -
0190c5f2-6d1e-7b3a-9c4d-000000000002  sys.fail   failed  3/3      1.5s      handler: told to fail
2 jobs: 1 failed, 1 queued
`,
		},
		{
			name:   "unknown job",
			args:   []string{"job", "wait", idSleep, testID},
			code:   1,
			stderr: "warren: wait for job " + testID + ": 404 not_found: no such job\n",
		},
		{
			name:   "no ids",
			args:   []string{"job", "wait"},
			code:   1,
			stderr: "warren: wait needs at least one job id, or --file, such as: warren job wait 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d\n",
		},
		{
			name:   "negative limit",
			args:   []string{"job", "wait", idEcho, "--wait-timeout", "-1s"},
			code:   1,
			stderr: "warren: --wait-timeout -1s: must not be negative (0 means no limit)\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t, seed()...)
			stdout, stderr, code := f.run(t, "", tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			if diff := cmp.Diff(tc.stdout, stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if stderr != tc.stderr {
				t.Errorf("stderr %q, want %q", stderr, tc.stderr)
			}
		})
	}
}

func TestJobWaitJSON(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, queuedJob(testID, "sys.echo"), queuedJob(testID2, "sys.cancel"))
	stdout, _, code := f.run(t, "", "job", "wait", testID, testID2, "-o", "json")
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	var got []jobs.Job
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("stdout is not a JSON array of jobs: %v\n%s", err, stdout)
	}
	var states []string
	for _, j := range got {
		states = append(states, j.ID+" "+string(j.Status))
	}
	if diff := cmp.Diff([]string{testID + " succeeded", testID2 + " canceled"}, states); diff != "" {
		t.Errorf("jobs (-want +got):\n%s", diff)
	}
}

func TestJobWaitOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		o   jobWaitOptions
		err string
	}{
		{jobWaitOptions{IDs: []string{testID, testID2}}, ""},
		{jobWaitOptions{IDs: []string{testID}, WaitTimeout: time.Minute}, ""},
		{jobWaitOptions{IDs: []string{testID, "x"}}, `"x" is not a job id`},
		{jobWaitOptions{IDs: []string{testID}, WaitTimeout: -time.Second}, "--wait-timeout -1s: must not be negative"},
	} {
		err := tc.o.Validate()
		if (tc.err == "") != (err == nil) || (err != nil && !strings.HasPrefix(err.Error(), tc.err)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.o, err, tc.err)
		}
	}
}

func TestJobCancel(t *testing.T) {
	t.Parallel()
	const (
		idQueued  = "0190c5f2-6d1e-7b3a-9c4d-000000000001"
		idSleep   = "0190c5f2-6d1e-7b3a-9c4d-000000000002"
		idDone    = testID // fixedJob: succeeded
		idUnknown = "0190c5f2-6d1e-7b3a-9c4d-0000000000ff"
	)
	seed := func() []*jobs.Job {
		canceled := queuedJob(testID2, "sys.echo")
		canceled.Status = jobs.StatusCanceled
		return []*jobs.Job{queuedJob(idQueued, "sys.echo"), queuedJob(idSleep, "sys.sleep"), fixedJob(), canceled}
	}
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		stdout   string
		stderr   string
		requests []string
	}{
		{
			name:     "one",
			args:     []string{"job", "cancel", idQueued},
			stdout:   idQueued + " canceled\n",
			requests: []string{"POST /v1/jobs/" + idQueued + "/cancel"},
		},
		{
			name:   "several, once each",
			args:   []string{"job", "cancel", idSleep, idQueued, idSleep},
			stdout: idSleep + " canceled\n" + idQueued + " canceled\n",
			requests: []string{
				"POST /v1/jobs/" + idSleep + "/cancel",
				"POST /v1/jobs/" + idQueued + "/cancel",
			},
		},
		{
			name:   "ended and unknown jobs are reported, the others canceled",
			args:   []string{"job", "cancel", idDone, idUnknown, idQueued, testID2},
			code:   1,
			stdout: idQueued + " canceled\n",
			stderr: idDone + ": already succeeded\n" + idUnknown + ": no such job\n" + testID2 + ": already canceled\n",
			requests: []string{
				"POST /v1/jobs/" + idDone + "/cancel",
				"GET /v1/jobs/" + idDone,
				"POST /v1/jobs/" + idUnknown + "/cancel",
				"POST /v1/jobs/" + idQueued + "/cancel",
				"POST /v1/jobs/" + testID2 + "/cancel",
				"GET /v1/jobs/" + testID2,
			},
		},
		{
			name:   "JSON with nothing canceled",
			args:   []string{"job", "cancel", idDone, "-o", "json"},
			code:   1,
			stdout: "[]\n",
			stderr: idDone + ": already succeeded\n",
			requests: []string{
				"POST /v1/jobs/" + idDone + "/cancel",
				"GET /v1/jobs/" + idDone,
			},
		},
		{
			name:   "no ids",
			args:   []string{"job", "cancel"},
			code:   1,
			stderr: "warren: cancel needs at least one job id, such as: warren job cancel 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d\n",
		},
		{
			name:   "a malformed id refuses them all",
			args:   []string{"job", "cancel", idQueued, "42"},
			code:   1,
			stderr: `warren: "42" is not a job id: want a UUID such as 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d` + "\n",
		},
		{
			name:   "bad output format",
			args:   []string{"job", "cancel", idQueued, "-o", "xml"},
			code:   1,
			stderr: `warren: -o "xml": want table (the default), wide, json or yaml` + "\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t, seed()...)
			stdout, stderr, code := f.run(t, "", tc.args...)
			if code != tc.code || stdout != tc.stdout || stderr != tc.stderr {
				t.Errorf("exit %d, stdout %q, stderr %q\nwant %d, %q, %q", code, stdout, stderr, tc.code, tc.stdout, tc.stderr)
			}
			if diff := cmp.Diff(tc.requests, f.requestLog()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestJobCancelJSON(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, queuedJob(testID, "sys.echo"), queuedJob(testID2, "sys.sleep"))
	stdout, stderr, code := f.run(t, "", "job", "cancel", testID, testID2, "-o", "json")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var got []jobs.Job
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("stdout is not a JSON array of jobs: %v\n%s", err, stdout)
	}
	var states []string
	for _, j := range got {
		states = append(states, j.ID+" "+string(j.Status))
	}
	if diff := cmp.Diff([]string{testID + " canceled", testID2 + " canceled"}, states); diff != "" {
		t.Errorf("jobs (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(stdout, "[\n  {\n    \"id\": ") {
		t.Errorf("not indented:\n%s", stdout)
	}
}

func TestJobCancelStopsWhenTheAPIFails(t *testing.T) {
	t.Parallel()
	// An API that cancels the first job, then loses Redis.
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			j := queuedJob(testID, "sys.echo")
			j.Status = jobs.StatusCanceled
			apiReply(w, http.StatusOK, j)
			return
		}
		apiReply(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]string{"code": "unavailable", "message": "Redis is not reachable"}})
	}))
	t.Cleanup(srv.Close)
	const other = "0190c5f2-6d1e-7b3a-9c4d-000000000001"
	for _, tc := range []struct {
		format, stdout string
	}{
		{"table", testID + " canceled\n"},
		{"json", ""}, // checked below
	} {
		calls.Store(0)
		stdout, stderr, code := runWarren(t, srv.URL, "", "job", "cancel", testID, other, testID2, "-o", tc.format)
		if want := "warren: cancel job " + other + ": 503 unavailable: Redis is not reachable\n"; code != 1 || stderr != want {
			t.Errorf("-o %s: exit %d, stderr %q; want 1, %q", tc.format, code, stderr, want)
		}
		if n := calls.Load(); n != 2 {
			t.Errorf("-o %s: %d requests, want 2 (none after the failure)", tc.format, n)
		}
		if tc.format == "table" {
			if stdout != tc.stdout {
				t.Errorf("-o table: stdout %q, want %q", stdout, tc.stdout)
			}
			continue
		}
		var got []jobs.Job
		if err := json.Unmarshal([]byte(stdout), &got); err != nil || len(got) != 1 || got[0].ID != testID {
			t.Errorf("-o json: stdout %q (%v), want the one job canceled", stdout, err)
		}
	}
}

func TestJobCancelOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		o   jobIDsOptions
		err string
	}{
		{jobIDsOptions{IDs: []string{testID, testID2}}, ""},
		{jobIDsOptions{IDs: []string{testID, strings.ToUpper(testID2)}}, `"0190C5F2-6D1E-7B3A-9C4D-2F1E0A9B8C7E" is not a job id`},
	} {
		err := tc.o.Validate()
		if (tc.err == "") != (err == nil) || (err != nil && !strings.HasPrefix(err.Error(), tc.err)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.o, err, tc.err)
		}
	}
}
