package jobstest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/jobstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis keeps one background goroutine per process for its
		// connection-pool clock; it is not tied to any client.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

// typ is a test type; its defaults are 3 attempts and a 5-minute timeout.
func typ(name string) jobs.Type { return jobs.Type{Name: name, Pool: "test"} }

func TestJobAsHandedOver(t *testing.T) {
	t.Parallel()
	var got jobs.Job
	h := jobs.HandlerFunc(func(_ context.Context, j *jobs.Job) (any, error) {
		got = *j
		return nil, nil
	})
	res := jobstest.Run(context.Background(), t, jobs.Type{Name: "t.job", Pool: "test", Timeout: jobs.Duration(time.Minute), MaxAttempts: 4},
		h, map[string]int{"n": 1}, &jobstest.Options{Attempt: 2, Metadata: map[string]string{"team": "a"}})
	if !jobs.ValidID(got.ID) || got.Type != "t.job" || got.Pool != "test" || got.Status != jobs.StatusRunning ||
		string(got.Payload) != `{"n":1}` || got.Attempt != 2 || got.MaxAttempts != 4 || got.Timeout.Std() != time.Minute ||
		got.Metadata["team"] != "a" || got.StartedAt == nil || got.Worker == "" {
		t.Errorf("handler got %+v", got)
	}
	if j := res.Job; j.ID != got.ID || j.Status != jobs.StatusSucceeded || string(j.Result) != "null" || j.FinishedAt == nil || j.Attempt != 2 {
		t.Errorf("recorded %+v", j)
	}

	// The options override the type's defaults; a payload given as text
	// is taken as it is.
	res = jobstest.Run(context.Background(), t, typ("t.job"), h, `{"n": 2}`,
		&jobstest.Options{ID: "0190b6e2-8c4d-7a1b-9f3e-2d5c6b7a8e90", MaxAttempts: 7, Timeout: time.Second})
	if got.ID != "0190b6e2-8c4d-7a1b-9f3e-2d5c6b7a8e90" || string(got.Payload) != `{"n": 2}` || got.Attempt != 1 ||
		got.MaxAttempts != 7 || got.Timeout.Std() != time.Second || res.Job.ID != got.ID {
		t.Errorf("handler got %+v", got)
	}
}

func TestProgress(t *testing.T) {
	t.Parallel()
	h := jobs.HandlerFunc(func(ctx context.Context, _ *jobs.Job) (any, error) {
		for _, p := range []int{-5, 10, 60, 150} {
			if err := jobs.ReportProgress(ctx, p, fmt.Sprint("at ", p)); err != nil {
				return nil, err
			}
		}
		return "done", nil
	})
	res := jobstest.Run(context.Background(), t, typ("t.progress"), h, `{}`, nil)
	want := []jobs.Progress{{Percent: 0, Message: "at -5"}, {Percent: 10, Message: "at 10"}, {Percent: 60, Message: "at 60"}, {Percent: 100, Message: "at 150"}}
	if diff := cmp.Diff(want, res.Progress); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&want[3], res.Job.Progress); diff != "" {
		t.Errorf("recorded progress (-want +got):\n%s", diff)
	}

	// Reports also reach a ProgressFunc the caller's context carries.
	var seen []int
	ctx := jobs.WithProgress(context.Background(), func(_ context.Context, p int, _ string) error {
		seen = append(seen, p)
		return nil
	})
	jobstest.Run(ctx, t, typ("t.progress"), h, `{}`, nil)
	if diff := cmp.Diff([]int{0, 10, 60, 100}, seen); diff != "" {
		t.Errorf("progress passed on (-want +got):\n%s", diff)
	}
}

// Ending the context cancels the job as a cancel request does: the handler's
// context ends, and the job is canceled whatever the handler returns.
func TestCancellation(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		ret  func(ctx context.Context) error
	}{
		{"ctx.Err", func(ctx context.Context) error { return ctx.Err() }},
		{"context.Cause", func(ctx context.Context) error { return fmt.Errorf("gave up: %w", context.Cause(ctx)) }},
		{"a permanent error", func(ctx context.Context) error { return jobs.Permanent(ctx.Err()) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			h := jobs.HandlerFunc(func(hctx context.Context, _ *jobs.Job) (any, error) {
				_ = jobs.ReportProgress(hctx, 50, "waiting to be canceled")
				<-hctx.Done()
				return nil, tt.ret(hctx)
			})
			ctx = jobs.WithProgress(ctx, func(context.Context, int, string) error { cancel(); return nil })
			res := jobstest.Run(ctx, t, typ("t.cancel"), h, `{}`, nil)
			if res.Job.Status != jobs.StatusCanceled || res.Job.Error != nil || !errors.Is(res.Err, context.Canceled) || jobs.ErrorCode(res.Err) != "canceled" {
				t.Errorf("got %s %+v, handler returned %v (code %s)", res.Job.Status, res.Job.Error, res.Err, jobs.ErrorCode(res.Err))
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	h := jobs.HandlerFunc(func(ctx context.Context, _ *jobs.Job) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	short := jobs.Type{Name: "t.slow", Pool: "test", Timeout: jobs.Duration(20 * time.Millisecond)}
	res := jobstest.Run(context.Background(), t, short, h, `{}`, nil)
	want := &jobs.Error{Code: "timeout", Message: "attempt timed out after 20ms", Retryable: true}
	if diff := cmp.Diff(want, res.Job.Error); diff != "" || res.Job.Status != jobs.StatusRetrying || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("first attempt: %s %v (-want +got):\n%s", res.Job.Status, res.Err, diff)
	}
	// The job's own timeout, on its last attempt.
	res = jobstest.Run(context.Background(), t, typ("t.slow"), h, `{}`, &jobstest.Options{Timeout: 10 * time.Millisecond, Attempt: 3})
	want = &jobs.Error{Code: "timeout", Message: "attempt timed out after 10ms"}
	if diff := cmp.Diff(want, res.Job.Error); diff != "" || res.Job.Status != jobs.StatusFailed || res.Job.Timeout.Std() != 10*time.Millisecond {
		t.Errorf("last attempt: %s (-want +got):\n%s", res.Job.Status, diff)
	}
}

func boom() { panic("boom") }

func TestPanic(t *testing.T) {
	t.Parallel()
	h := jobs.HandlerFunc(func(context.Context, *jobs.Job) (any, error) {
		boom()
		return nil, nil
	})
	res := jobstest.Run(context.Background(), t, typ("t.panic"), h, `{}`, nil)
	e := res.Job.Error
	if res.Job.Status != jobs.StatusRetrying || e == nil || e.Code != "panic" || e.Message != "handler panicked: boom" || !e.Retryable || res.Err != nil {
		t.Fatalf("got %s %+v (handler returned %v)", res.Job.Status, e, res.Err)
	}
	if !strings.Contains(e.Stack, "jobstest_test.boom") || len(e.Stack) > jobs.MaxStack+len("…") {
		t.Errorf("stack does not show where it panicked, or is too long:\n%s", e.Stack)
	}
	res = jobstest.Run(context.Background(), t, typ("t.panic"), h, `{}`, &jobstest.Options{MaxAttempts: 1})
	if res.Job.Status != jobs.StatusFailed || res.Job.Error.Code != "panic" || res.Job.Error.Retryable {
		t.Errorf("last attempt: %s %+v", res.Job.Status, res.Job.Error)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	errBase := errors.New("down")
	for _, tt := range []struct {
		name    string
		err     error
		attempt int
		status  jobs.Status
		code    string
	}{
		{"retryable", errBase, 1, jobs.StatusRetrying, "handler"},
		{"retryable on the last attempt", errBase, 3, jobs.StatusFailed, "handler"},
		{"permanent", jobs.Permanent(errBase), 1, jobs.StatusFailed, "handler"},
		{"coded", &jobs.CodedError{Code: "quota", Err: errBase}, 2, jobs.StatusRetrying, "quota"},
		{"retry after", jobs.RetryAfter(errBase, time.Hour), 1, jobs.StatusRetrying, "handler"},
		{"permanent and coded", jobs.Permanent(&jobs.CodedError{Code: "refused", Err: errBase}), 1, jobs.StatusFailed, "refused"},
	} {
		h := jobs.HandlerFunc(func(context.Context, *jobs.Job) (any, error) { return "ignored", tt.err })
		res := jobstest.Run(context.Background(), t, typ("t.err"), h, `{}`, &jobstest.Options{Attempt: tt.attempt})
		want := &jobs.Error{Code: tt.code, Message: "down", Retryable: tt.status == jobs.StatusRetrying}
		if diff := cmp.Diff(want, res.Job.Error); diff != "" || res.Job.Status != tt.status || res.Err != tt.err || res.Job.Result != nil {
			t.Errorf("%s: %s %v %s (-want +got):\n%s", tt.name, res.Job.Status, res.Err, res.Job.Result, diff)
		}
	}
}

type shout struct {
	Text string `json:"text"`
}

type shouted struct {
	Text   string `json:"text"`
	Length int    `json:"length"`
}

// A typed handler's result is stored as JSON, an Output's artifact beside
// it, and a payload it cannot decode fails the job for good.
func TestTypedResults(t *testing.T) {
	t.Parallel()
	var r jobstest.Registry
	for _, reg := range []struct {
		t jobs.Type
		h jobs.Handler
	}{
		{typ("t.shout"), jobs.Typed(func(_ context.Context, _ *jobs.Job, p shout) (shouted, error) {
			return shouted{Text: strings.ToUpper(p.Text), Length: len(p.Text)}, nil
		})},
		{typ("t.raw"), jobs.Typed(func(_ context.Context, j *jobs.Job, _ shout) (json.RawMessage, error) { return j.Payload, nil })},
		{typ("t.file"), jobs.Typed(func(_ context.Context, _ *jobs.Job, p shout) (jobs.Output, error) {
			return jobs.Output{Result: map[string]int{"bytes": len(p.Text)}, Artifact: &jobs.Artifact{ContentType: "text/plain", Data: []byte(p.Text)}}, nil
		})},
		{typ("t.nofile"), jobs.Typed(func(context.Context, *jobs.Job, shout) (*jobs.Output, error) { return nil, nil })},
		{typ("t.chan"), jobs.Typed(func(context.Context, *jobs.Job, shout) (chan int, error) { return make(chan int), nil })},
	} {
		if err := r.Handle(reg.t, reg.h); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		typ, payload, result string
		artifact             *jobs.Artifact
	}{
		{"t.shout", `{"text":"hey"}`, `{"text":"HEY","length":3}`, nil},
		{"t.raw", `{"text": "as sent"}`, `{"text": "as sent"}`, nil},
		{"t.file", `{"text":"hey"}`, `{"bytes":3}`, &jobs.Artifact{ContentType: "text/plain", Data: []byte("hey")}},
		{"t.nofile", `{}`, `null`, nil},
	} {
		res := r.Run(context.Background(), t, tt.typ, tt.payload, nil)
		if res.Job.Status != jobs.StatusSucceeded || string(res.Job.Result) != tt.result {
			t.Errorf("%s: %s %s %+v", tt.typ, res.Job.Status, res.Job.Result, res.Job.Error)
		}
		if diff := cmp.Diff(tt.artifact, res.Artifact); diff != "" {
			t.Errorf("%s: artifact (-want +got):\n%s", tt.typ, diff)
		}
		if a := res.Job.Artifact; (a == nil) != (tt.artifact == nil) || a != nil && (a.ContentType != "text/plain" || a.Bytes != 3) {
			t.Errorf("%s: artifact recorded as %+v", tt.typ, a)
		}
	}
	res := r.Run(context.Background(), t, "t.chan", `{}`, nil)
	if e := res.Job.Error; res.Job.Status != jobs.StatusFailed || e == nil || e.Code != "result" {
		t.Errorf("unencodable result: %s %+v", res.Job.Status, e)
	}
	res = r.Run(context.Background(), t, "t.shout", `{"text":3}`, nil)
	if e := res.Job.Error; res.Job.Status != jobs.StatusFailed || e == nil || e.Code != jobs.CodeBadPayload || e.Retryable ||
		!strings.HasPrefix(e.Message, "decode payload of t.shout "+res.Job.ID+": ") {
		t.Errorf("bad payload: %s %+v", res.Job.Status, e)
	}
}

func TestRegistryChecksAsAWorker(t *testing.T) {
	t.Parallel()
	h := jobs.HandlerFunc(func(context.Context, *jobs.Job) (any, error) { return nil, nil })
	var r jobstest.Registry
	if err := r.Handle(jobs.Type{Name: "t.ok", Pool: "test", Schema: json.RawMessage(`{"type":"object"}`)}, h); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		t jobs.Type
		h jobs.Handler
	}{
		{jobs.Type{Name: "t.ok", Pool: "test"}, h},          // twice
		{jobs.Type{Name: "Bad Name", Pool: "test"}, h},      // not a type name
		{jobs.Type{Name: "t.nohandler", Pool: "test"}, nil}, // no handler
		{jobs.Type{Name: "t.schema", Pool: "test", Schema: json.RawMessage(`{"type":"thing"}`)}, h},
	} {
		if err := r.Handle(tt.t, tt.h); err == nil {
			t.Errorf("%s registered", tt.t.Name)
		}
	}
	got, ok := r.Type("t.ok")
	if !ok || got.MaxAttempts != jobs.DefaultMaxAttempts || got.Timeout.Std() != jobs.DefaultTimeout {
		t.Errorf("Type: %+v, %v; want the type with its defaults", got, ok)
	}
	if _, ok := r.Type("t.schema"); ok {
		t.Error("a refused type is listed")
	}
}

// On a real worker against RabbitMQ and Redis, a run ends in the record the
// worker wrote, with the artifact and the progress reports.
func TestOnServers(t *testing.T) {
	t.Parallel()
	fileType := jobs.Type{Name: "t.file", Pool: "test", Timeout: jobs.Duration(30 * time.Second)}
	file := jobs.Typed(func(ctx context.Context, _ *jobs.Job, p shout) (jobs.Output, error) {
		_ = jobs.ReportProgress(ctx, 40, "writing")
		if p.Text == "" {
			return jobs.Output{}, jobs.Permanent(&jobs.CodedError{Code: "empty", Err: errors.New("nothing to write")})
		}
		return jobs.Output{Result: map[string]int{"bytes": len(p.Text)}, Artifact: &jobs.Artifact{ContentType: "text/plain", Data: []byte(p.Text)}}, nil
	})

	t.Run("succeeded", func(t *testing.T) {
		t.Parallel()
		res := jobstest.Run(context.Background(), t, fileType, file, shout{Text: "hey"}, &jobstest.Options{Servers: true, Metadata: map[string]string{"team": "a"}})
		j := res.Job
		if res.Err != nil || j.Status != jobs.StatusSucceeded || string(j.Result) != `{"bytes":3}` || j.Attempt != 1 || j.Metadata["team"] != "a" {
			t.Fatalf("got %s %s attempt %d %v (%v)", j.Status, j.Result, j.Attempt, j.Metadata, res.Err)
		}
		if diff := cmp.Diff(&jobs.Artifact{ContentType: "text/plain", Data: []byte("hey")}, res.Artifact); diff != "" {
			t.Errorf("artifact (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]jobs.Progress{{Percent: 40, Message: "writing"}}, res.Progress); diff != "" {
			t.Errorf("progress (-want +got):\n%s", diff)
		}
		// What only the store writes: the attempts, the progress at the end.
		if len(j.Attempts) != 1 || j.Attempts[0].Outcome != "succeeded" || j.Progress == nil || j.Progress.Percent != 100 || j.FinishedAt == nil {
			t.Errorf("record: attempts %+v progress %+v", j.Attempts, j.Progress)
		}
	})

	t.Run("failed on attempt 2", func(t *testing.T) {
		t.Parallel()
		res := jobstest.Run(context.Background(), t, fileType, file, `{}`, &jobstest.Options{Servers: true, Attempt: 2})
		want := &jobs.Error{Code: "empty", Message: "nothing to write"}
		if diff := cmp.Diff(want, res.Job.Error); diff != "" || res.Job.Status != jobs.StatusFailed || res.Job.Attempt != 2 || jobs.ErrorCode(res.Err) != "empty" {
			t.Errorf("got %s attempt %d %v (-want +got):\n%s", res.Job.Status, res.Job.Attempt, res.Err, diff)
		}
	})

	t.Run("canceled", func(t *testing.T) {
		t.Parallel()
		running := make(chan struct{})
		wait := jobs.HandlerFunc(func(ctx context.Context, _ *jobs.Job) (any, error) {
			close(running)
			<-ctx.Done()
			return nil, context.Cause(ctx)
		})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-running:
			case <-ctx.Done():
			}
			cancel()
		}()
		res := jobstest.Run(ctx, t, fileType, wait, `{}`, &jobstest.Options{Servers: true})
		want := &jobs.Error{Code: "canceled", Message: "canceled by request"}
		if diff := cmp.Diff(want, res.Job.Error); diff != "" || res.Job.Status != jobs.StatusCanceled || !errors.Is(res.Err, context.Canceled) {
			t.Errorf("got %s %v (-want +got):\n%s", res.Job.Status, res.Err, diff)
		}
	})
}
