package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/jobs"
)

type greeting struct {
	Name  string `json:"name"`
	Times int    `json:"times"`
}

type greeted struct {
	Text string `json:"text"`
}

func greet(_ context.Context, _ *jobs.Job, p greeting) (greeted, error) {
	return greeted{Text: strings.Repeat("hello "+p.Name+"! ", p.Times)}, nil
}

func typedJob(payload string) *jobs.Job {
	return &jobs.Job{ID: "0190b6e2-8c4d-7a1b-9f3e-2d5c6b7a8e90", Type: "t.greet", Payload: json.RawMessage(payload), Attempt: 1}
}

func TestTypedDecodesAndReturnsTheResult(t *testing.T) {
	t.Parallel()
	var got *jobs.Job
	h := jobs.Typed(func(ctx context.Context, j *jobs.Job, p greeting) (greeted, error) {
		got = j
		return greet(ctx, j, p)
	})
	var _ jobs.Handler = h
	job := typedJob(`{"name":"ada","times":2}`)
	res, err := h.Run(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(any(greeted{Text: "hello ada! hello ada! "}), res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if got != job {
		t.Error("the function was not handed the job")
	}
	// The runtime marshals the result as it is.
	if b, _ := json.Marshal(res); string(b) != `{"text":"hello ada! hello ada! "}` {
		t.Errorf("result JSON %s", b)
	}
}

// Decoding is Job.Decode's: fields the payload type lacks are ignored
// (the type's schema is what refuses them, at the API), missing ones stay
// zero.
func TestTypedDecodesAsJobDecode(t *testing.T) {
	t.Parallel()
	var got greeting
	h := jobs.Typed(func(_ context.Context, _ *jobs.Job, p greeting) (any, error) {
		got = p
		return nil, nil
	})
	for _, payload := range []string{`{"name":"ada","extra":[1,2]}`, `{"NAME":"ada"}`} {
		got = greeting{}
		if _, err := h.Run(context.Background(), typedJob(payload)); err != nil {
			t.Errorf("%s: %v", payload, err)
		}
		var want greeting
		if err := typedJob(payload).Decode(&want); err != nil {
			t.Fatal(err)
		}
		if got != want || got.Name != "ada" {
			t.Errorf("%s: decoded %+v, Job.Decode gives %+v", payload, got, want)
		}
	}
}

func TestTypedBadPayload(t *testing.T) {
	t.Parallel()
	called := false
	h := jobs.Typed(func(context.Context, *jobs.Job, greeting) (greeted, error) {
		called = true
		return greeted{}, nil
	})
	for _, payload := range []string{`{"name":1}`, `[]`, `"ada"`, `{"times":"2"}`, `not json`} {
		job := typedJob(payload)
		res, err := h.Run(context.Background(), job)
		var want greeting
		decodeErr := job.Decode(&want)
		switch {
		case res != nil || err == nil:
			t.Errorf("%s: %v, %v; want a failure", payload, res, err)
		case !jobs.IsPermanent(err) || jobs.ErrorCode(err) != jobs.CodeBadPayload || jobs.CodeBadPayload != "bad_payload":
			t.Errorf("%s: %v is not permanent with code bad_payload (code %s)", payload, err, jobs.ErrorCode(err))
		case err.Error() != decodeErr.Error():
			t.Errorf("%s: message %q, want Job.Decode's %q", payload, err, decodeErr)
		}
	}
	if called {
		t.Error("the function was called with a payload that does not decode")
	}
}

func TestTypedOnBadPayload(t *testing.T) {
	t.Parallel()
	errCustom := errors.New("custom")
	for _, tt := range []struct {
		name      string
		bad       func(error) error
		code      string
		permanent bool
		is        error
	}{
		{"Permanent keeps the error", jobs.Permanent, "handler", true, nil},
		{"a chosen error", func(err error) error {
			return jobs.Permanent(&jobs.CodedError{Code: "invalid_payload", Err: errors.Join(errCustom, err)})
		}, "invalid_payload", true, errCustom},
		{"a retryable one", func(error) error { return errCustom }, "handler", false, errCustom},
		{"nil is the default", func(error) error { return nil }, jobs.CodeBadPayload, true, nil},
	} {
		h := jobs.Typed(greet).OnBadPayload(tt.bad)
		_, err := h.Run(context.Background(), typedJob(`{"name":1}`))
		if err == nil || jobs.ErrorCode(err) != tt.code || jobs.IsPermanent(err) != tt.permanent || tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("%s: %v (code %s, permanent %v)", tt.name, err, jobs.ErrorCode(err), jobs.IsPermanent(err))
		}
	}
	// The handler it returns is a copy: the first keeps its default.
	h := jobs.Typed(greet)
	_ = h.OnBadPayload(jobs.Permanent)
	if _, err := h.Run(context.Background(), typedJob(`{"name":1}`)); jobs.ErrorCode(err) != jobs.CodeBadPayload {
		t.Errorf("OnBadPayload changed the handler it was called on: %v", err)
	}
}

// An error from the function is returned as it is, and its result dropped.
func TestTypedError(t *testing.T) {
	t.Parallel()
	errBusy := jobs.RetryAfter(errors.New("busy"), 7*time.Second)
	h := jobs.Typed(func(context.Context, *jobs.Job, greeting) (greeted, error) {
		return greeted{Text: "partial"}, errBusy
	})
	res, err := h.Run(context.Background(), typedJob(`{}`))
	if res != nil || err != errBusy {
		t.Errorf("got %v, %v; want nil and the function's error", res, err)
	}
}

// A jobs.Output, or a pointer to one, reaches the runtime as it is, so
// its artifact is kept.
func TestTypedOutput(t *testing.T) {
	t.Parallel()
	out := jobs.Output{Result: greeted{Text: "hi"}, Artifact: &jobs.Artifact{ContentType: "text/plain", Data: []byte("hi")}}
	res, err := jobs.Typed(func(context.Context, *jobs.Job, greeting) (jobs.Output, error) { return out, nil }).
		Run(context.Background(), typedJob(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(any(out), res); diff != "" {
		t.Errorf("Output (-want +got):\n%s", diff)
	}
	res, err = jobs.Typed(func(context.Context, *jobs.Job, greeting) (*jobs.Output, error) { return &out, nil }).
		Run(context.Background(), typedJob(`{}`))
	if p, ok := res.(*jobs.Output); err != nil || !ok || p != &out {
		t.Errorf("*Output: got %#v, %v", res, err)
	}
}

// A pointer payload type decodes as its element, a raw one keeps the text.
func TestTypedPayloadKinds(t *testing.T) {
	t.Parallel()
	res, err := jobs.Typed(func(_ context.Context, _ *jobs.Job, p *greeting) (string, error) { return p.Name, nil }).
		Run(context.Background(), typedJob(`{"name":"ada"}`))
	if err != nil || res != "ada" {
		t.Errorf("pointer payload: %v, %v", res, err)
	}
	res, err = jobs.Typed(func(_ context.Context, _ *jobs.Job, p json.RawMessage) (json.RawMessage, error) { return p, nil }).
		Run(context.Background(), typedJob(`{"a": [1, 2]}`))
	if raw, ok := res.(json.RawMessage); err != nil || !ok || string(raw) != `{"a": [1, 2]}` {
		t.Errorf("raw payload: %s, %v", res, err)
	}
}

// FuzzTyped checks that any payload either reaches the function as
// Job.Decode reads it or fails the job for good with Job.Decode's error,
// and never panics.
func FuzzTyped(f *testing.F) {
	for _, seed := range []string{`{"name":"ada","times":2}`, `{}`, `{"name":1}`, `null`, `[]`, `{"times":1e400}`, ``, `{"name":"\ud800"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var got *greeting
		h := jobs.Typed(func(_ context.Context, _ *jobs.Job, p greeting) (any, error) {
			got = &p
			return nil, nil
		})
		job := &jobs.Job{ID: "id", Type: "t.fuzz", Payload: raw}
		_, err := h.Run(context.Background(), job)
		var want greeting
		decodeErr := job.Decode(&want)
		switch {
		case decodeErr != nil && (err == nil || err.Error() != decodeErr.Error() || !jobs.IsPermanent(err) || jobs.ErrorCode(err) != jobs.CodeBadPayload):
			t.Fatalf("%q: %v, Job.Decode says %v", raw, err, decodeErr)
		case decodeErr != nil && got != nil:
			t.Fatalf("%q: the function ran on a payload that does not decode", raw)
		case decodeErr == nil && (err != nil || got == nil || *got != want):
			t.Fatalf("%q: %v, decoded %v, want %+v", raw, err, got, want)
		}
	})
}
