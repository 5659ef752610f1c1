package cli

import (
	"encoding/json"
	"strings"
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
		{[]string{"job", "get", testID, "-o", "yaml"}, `warren: -o "yaml": want table (the default) or json` + "\n", 0},
		{[]string{"job", "list"}, `warren: unknown command "list" for "warren job"` + "\n", 0},
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
`,
		},
		{
			name: "one fails",
			args: []string{"job", "wait", idEcho, idFail},
			code: 2,
			stdout: `ID                                    TYPE      STATUS     ATTEMPT  DURATION  ERROR
0190c5f2-6d1e-7b3a-9c4d-000000000001  sys.echo  succeeded  1/3      1.5s      -
0190c5f2-6d1e-7b3a-9c4d-000000000002  sys.fail  failed     3/3      1.5s      handler: told to fail
`,
		},
		{
			name: "one does not finish in time",
			args: []string{"job", "wait", idSleep, idEcho, "--wait-timeout", "50ms"},
			code: 3,
			stdout: `ID                                    TYPE       STATUS     ATTEMPT  DURATION  ERROR
0190c5f2-6d1e-7b3a-9c4d-000000000003  sys.sleep  queued     0/3      -         -
0190c5f2-6d1e-7b3a-9c4d-000000000001  sys.echo   succeeded  1/3      1.5s      -
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
			stderr: "warren: wait needs at least one job id, such as: warren job wait 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d\n",
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
