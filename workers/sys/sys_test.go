package sys_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/jobstest"
	"github.com/warrenhq/warren/workers/sys"
)

func handlers(t *testing.T) *jobstest.Registry {
	t.Helper()
	r := &jobstest.Registry{}
	if err := sys.Register(r); err != nil {
		t.Fatal(err)
	}
	return r
}

func run(t *testing.T, ctx context.Context, name, payload string, attempt int) *jobstest.Result {
	t.Helper()
	return handlers(t).Run(ctx, t, name, payload, &jobstest.Options{Attempt: attempt})
}

func TestEcho(t *testing.T) {
	t.Parallel()
	res := run(t, context.Background(), "sys.echo", `{"a":[1,2]}`, 1)
	if res.Err != nil || res.Job.Status != jobs.StatusSucceeded || string(res.Job.Result) != `{"a":[1,2]}` {
		t.Errorf("echo: %s %s %v", res.Job.Status, res.Job.Result, res.Err)
	}
}

func TestFail(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		payload   string
		attempt   int
		fails     bool
		permanent bool
	}{
		{`{"fail_times":2}`, 1, true, false},
		{`{"fail_times":2}`, 2, true, false},
		{`{"fail_times":2}`, 3, false, false},
		{`{"fail_times":1,"permanent":true}`, 1, true, true},
		{`{}`, 1, false, false},
	} {
		res := run(t, context.Background(), "sys.fail", tt.payload, tt.attempt)
		err := res.Err
		if (err != nil) != tt.fails || jobs.IsPermanent(err) != tt.permanent {
			t.Errorf("%s attempt %d: err %v (permanent %v)", tt.payload, tt.attempt, err, jobs.IsPermanent(err))
		}
		// As the runtime records it: retried unless permanent.
		want := jobs.StatusSucceeded
		switch {
		case tt.permanent:
			want = jobs.StatusFailed
		case tt.fails:
			want = jobs.StatusRetrying
		}
		if res.Job.Status != want {
			t.Errorf("%s attempt %d: status %s, want %s", tt.payload, tt.attempt, res.Job.Status, want)
		}
		if res.Job.Status == jobs.StatusSucceeded && string(res.Job.Result) != fmt.Sprintf(`{"attempts":%d}`, tt.attempt) {
			t.Errorf("%s attempt %d: result %s", tt.payload, tt.attempt, res.Job.Result)
		}
	}
}

// A payload that does not decode fails for good, with code "handler", and
// a message naming the job.
func TestBadPayload(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"sys.sleep", "sys.spin", "sys.fail"} {
		res := run(t, context.Background(), name, `{"ms":"a lot","fail_times":"x"}`, 1)
		e := res.Job.Error
		if res.Job.Status != jobs.StatusFailed || e == nil || e.Code != "handler" || e.Retryable ||
			!strings.HasPrefix(e.Message, "decode payload of "+name+" "+res.Job.ID+": json: ") {
			t.Errorf("%s: %s %+v", name, res.Job.Status, e)
		}
	}
}

func TestSleepReportsProgressAndHonoursCancellation(t *testing.T) {
	t.Parallel()
	res := run(t, context.Background(), "sys.sleep", `{"ms":300}`, 1)
	if res.Err != nil || string(res.Job.Result) != `{"slept_ms":300}` {
		t.Fatalf("sleep: %s %v", res.Job.Result, res.Err)
	}
	progress := res.Progress
	if len(progress) == 0 || progress[0].Percent <= 0 || progress[len(progress)-1].Percent >= 100 {
		t.Errorf("progress reported: %v", progress)
	}
	if res.Job.Progress == nil || *res.Job.Progress != progress[len(progress)-1] {
		t.Errorf("progress recorded: %v, reported %v", res.Job.Progress, progress)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *jobstest.Result, 1)
	go func() { done <- run(t, ctx, "sys.sleep", `{"ms":3600000}`, 1) }()
	cancel()
	select {
	case res := <-done:
		if !errors.Is(res.Err, context.Canceled) || res.Job.Status != jobs.StatusCanceled {
			t.Errorf("cancelled sleep returned %v (%s)", res.Err, res.Job.Status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sleep did not return after cancellation")
	}
}

func TestSpin(t *testing.T) {
	t.Parallel()
	res := run(t, context.Background(), "sys.spin", `{"ms":20}`, 1)
	var r struct {
		SpunMS *int64 `json:"spun_ms"`
	}
	if err := json.Unmarshal(res.Job.Result, &r); res.Err != nil || err != nil || r.SpunMS == nil || *r.SpunMS != 20 {
		t.Fatalf("spin: %s %v", res.Job.Result, res.Err)
	}
	if res := run(t, context.Background(), "sys.spin", `{"ms":"a lot"}`, 1); res.Err == nil {
		t.Error("spin with a bad payload succeeded")
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *jobstest.Result, 1)
	go func() { done <- run(t, ctx, "sys.spin", `{"ms":600000}`, 1) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case res := <-done:
		if !errors.Is(res.Err, context.Canceled) || res.Job.Status != jobs.StatusCanceled {
			t.Errorf("cancelled spin returned %v (%s)", res.Err, res.Job.Status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("spin did not return after cancellation")
	}
}

// sys.spin uses CPU time, so it takes at least as long on the wall clock.
func TestSpinTakesItsCPUTime(t *testing.T) {
	t.Parallel()
	start := time.Now()
	if res := run(t, context.Background(), "sys.spin", `{"ms":50}`, 1); res.Err != nil {
		t.Fatal(res.Err)
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("50 ms of CPU took %s of wall time", took)
	}
}
