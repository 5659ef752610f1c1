package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/jobs"
)

const (
	testID  = "0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d"
	testID2 = "0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7e"
)

// fixedJob is a finished job with every field set.
// fixedJobView is the readable view of fixedJob().
const fixedJobView = `id:              0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d
type:            sys.echo
status:          succeeded
attempt:         2/3
timeout:         5m
worker:          host-1/4242
created:         2025-03-14T09:26:53.589Z
started:         2025-03-14T09:26:53.709Z
finished:        2025-03-14T09:26:54.943Z
duration:        1.23s
progress:        100% done
error:           timeout: attempt 1 took longer than 5m (will retry)
metadata:        team=ops, ticket=42
submitted by:    ci
idempotency key: order-42
payload:         {"message":"hello"}
result:          {"message":"hello","n":[1,2]}
`

func fixedJob() *jobs.Job {
	created := time.Date(2025, 3, 14, 9, 26, 53, 589_000_000, time.UTC)
	started := created.Add(120 * time.Millisecond)
	finished := started.Add(1234567 * time.Microsecond)
	return &jobs.Job{
		ID:             testID,
		Type:           "sys.echo",
		Status:         jobs.StatusSucceeded,
		Payload:        json.RawMessage(`{ "message": "hello" }`),
		Attempt:        2,
		MaxAttempts:    3,
		Timeout:        jobs.Duration(5 * time.Minute),
		Metadata:       map[string]string{"ticket": "42", "team": "ops"},
		Result:         json.RawMessage(`{"message": "hello", "n": [1, 2]}`),
		Error:          &jobs.Error{Code: "timeout", Message: "attempt 1 took longer than 5m", Retryable: true},
		Progress:       &jobs.Progress{Percent: 100, Message: "done"},
		Worker:         "host-1/4242",
		IdempotencyKey: "order-42",
		SubmittedBy:    "ci",
		CreatedAt:      created,
		StartedAt:      &started,
		FinishedAt:     &finished,
	}
}

func TestWriteJobView(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := writeJobView(&b, fixedJob()); err != nil {
		t.Fatal(err)
	}
	want := fixedJobView
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("view (-want +got):\n%s", diff)
	}
}

func TestWriteJobViewQueued(t *testing.T) {
	t.Parallel()
	j := &jobs.Job{
		ID:          testID,
		Type:        "sys.echo",
		Status:      jobs.StatusQueued,
		Payload:     json.RawMessage(`{}`),
		MaxAttempts: 3,
		Timeout:     jobs.Duration(30 * time.Second),
		CreatedAt:   time.Date(2025, 3, 14, 9, 26, 53, 0, time.FixedZone("", 3600)),
	}
	var b bytes.Buffer
	if err := writeJobView(&b, j); err != nil {
		t.Fatal(err)
	}
	want := `id:      0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d
type:    sys.echo
status:  queued
attempt: 0/3
timeout: 30s
created: 2025-03-14T09:26:53.000+01:00
payload: {}
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("view (-want +got):\n%s", diff)
	}
}

func TestWriteJobTable(t *testing.T) {
	t.Parallel()
	failed := &jobs.Job{
		ID:          testID2,
		Type:        "sys.fail",
		Status:      jobs.StatusFailed,
		Attempt:     3,
		MaxAttempts: 3,
		Error:       &jobs.Error{Code: "handler", Message: "told to fail\n\tagain"},
	}
	var b bytes.Buffer
	if err := writeJobTable(&b, []*jobs.Job{fixedJob(), failed}); err != nil {
		t.Fatal(err)
	}
	want := `ID                                    TYPE      STATUS     ATTEMPT  DURATION  ERROR
0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d  sys.echo  succeeded  2/3      1.23s     timeout: attempt 1 took longer than 5m
0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7e  sys.fail  failed     3/3      -         handler: told to fail  again
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
}

func TestWriteJSON(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := writeJSON(&b, fixedJob()); err != nil {
		t.Fatal(err)
	}
	var got jobs.Job
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "{\n  \"id\": \""+testID+"\",\n") || !strings.HasSuffix(b.String(), "}\n") {
		t.Errorf("not indented JSON with a final newline:\n%s", b.String())
	}
	// The raw JSON fields are re-indented; compare them as compact JSON.
	want := fixedJob()
	want.Payload = json.RawMessage(compactJSON(want.Payload))
	want.Result = json.RawMessage(compactJSON(want.Result))
	got.Payload = json.RawMessage(compactJSON(got.Payload))
	got.Result = json.RawMessage(compactJSON(got.Result))
	if diff := cmp.Diff(want, &got); diff != "" {
		t.Errorf("job round trip (-want +got):\n%s", diff)
	}
}

func TestWriteRawJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`{"a":[1,2]}`, "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n"},
		{`"text"`, "\"text\"\n"},
		{``, "null\n"},
	} {
		var b bytes.Buffer
		if err := writeRawJSON(&b, json.RawMessage(tc.in)); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("writeRawJSON(%s) = %q, want %q", tc.in, b.String(), tc.want)
		}
	}
}

func TestDurationText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{1234567 * time.Nanosecond, "1.235ms"},
		{1234567 * time.Microsecond, "1.23s"},
		{30 * time.Second, "30s"},
		{5 * time.Minute, "5m"},
		{90*time.Minute + 400*time.Millisecond, "1h30m"},
		{24 * time.Hour, "24h"},
		{61*time.Minute + 5*time.Second, "1h1m5s"},
	} {
		if got := durationText(tc.d); got != tc.want {
			t.Errorf("durationText(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestJobDuration(t *testing.T) {
	t.Parallel()
	at := func(ms int) *time.Time {
		v := time.Date(2025, 3, 14, 9, 26, 53, ms*1e6, time.UTC)
		return &v
	}
	for _, tc := range []struct {
		started, finished *time.Time
		want              string
	}{
		{nil, nil, ""},
		{at(0), nil, ""},
		{at(5), at(5), "<1ms"},
		{at(5), at(305), "300ms"},
	} {
		if got := jobDuration(&jobs.Job{StartedAt: tc.started, FinishedAt: tc.finished}); got != tc.want {
			t.Errorf("jobDuration(%v, %v) = %q, want %q", tc.started, tc.finished, got, tc.want)
		}
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ output, want, err string }{
		{"", formatHuman, ""},
		{"table", formatHuman, ""},
		{"json", formatJSON, ""},
		{"yaml", formatYAML, ""},
		{"wide", formatWide, ""},
		{"xml", "", `-o "xml": want table (the default), wide, json or yaml`},
	} {
		a := &app{output: tc.output}
		got, err := a.format()
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("-o %q: error %v, want %q", tc.output, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("-o %q = %q, %v; want %q", tc.output, got, err, tc.want)
		}
	}
}

func TestJobViewShowsAttempts(t *testing.T) {
	j := fixedJob()
	started := j.CreatedAt.Add(time.Second)
	ended := started.Add(1500 * time.Millisecond)
	j.Attempts = []jobs.Attempt{
		{Attempt: 1, Worker: "host-1/4242", StartedAt: &started, EndedAt: &ended, Outcome: "failed",
			Error: &jobs.Error{Code: "panic", Message: "boom", Stack: "goroutine 1"}},
		{Attempt: 2, Worker: "host-2/7", StartedAt: &ended, Outcome: "running"},
	}
	var b strings.Builder
	if err := writeJobView(&b, j); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"attempts:        #1 failed " + timeText(started) + " (1.5s) on host-1/4242: panic: boom\n",
		"                 #2 running " + timeText(ended) + " on host-2/7\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the view lacks %q:\n%s", want, b.String())
		}
	}
}

// A job its rate limit holds back says until when, and a unique job its
// key.
func TestWriteJobViewHeldBackUnique(t *testing.T) {
	t.Parallel()
	until := time.Date(2025, 3, 14, 9, 27, 53, 0, time.UTC)
	j := &jobs.Job{
		ID:           testID,
		Type:         "sys.echo",
		Status:       jobs.StatusQueued,
		Payload:      json.RawMessage(`{}`),
		MaxAttempts:  3,
		Timeout:      jobs.Duration(30 * time.Second),
		CreatedAt:    time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC),
		LimitedUntil: &until,
		Unique:       &jobs.Unique{Key: "account-42", For: jobs.Duration(time.Hour), While: jobs.UniqueUntilDone},
	}
	var b bytes.Buffer
	if err := writeJobView(&b, j); err != nil {
		t.Fatal(err)
	}
	want := `id:        0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d
type:      sys.echo
status:    queued
attempt:   0/3
timeout:   30s
created:   2025-03-14T09:26:53.000Z
held back: until 2025-03-14T09:27:53.000Z by its type's rate limit
unique:    account-42 (while: until_done, for: 1h)
payload:   {}
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("view (-want +got):\n%s", diff)
	}
}
