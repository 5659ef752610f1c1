package sys_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/workers/sys"
)

// registry collects what Register registers.
type registry map[string]jobs.Handler

func (r registry) Handle(t jobs.Type, h jobs.Handler) error {
	if err := t.WithDefaults().Validate(); err != nil {
		return err
	}
	r[t.Name] = h
	return nil
}

var _ jobs.Registrar = registry(nil)

func handlers(t *testing.T) registry {
	t.Helper()
	r := registry{}
	if err := sys.Register(r); err != nil {
		t.Fatal(err)
	}
	return r
}

func run(t *testing.T, ctx context.Context, name, payload string, attempt int) (any, error) {
	t.Helper()
	return handlers(t)[name].Run(ctx, &jobs.Job{Type: name, Payload: json.RawMessage(payload), Attempt: attempt})
}

func TestEcho(t *testing.T) {
	t.Parallel()
	res, err := run(t, context.Background(), "sys.echo", `{"a":[1,2]}`, 1)
	if err != nil || string(res.(json.RawMessage)) != `{"a":[1,2]}` {
		t.Errorf("echo: %v %v", res, err)
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
		_, err := run(t, context.Background(), "sys.fail", tt.payload, tt.attempt)
		if (err != nil) != tt.fails || jobs.IsPermanent(err) != tt.permanent {
			t.Errorf("%s attempt %d: err %v (permanent %v)", tt.payload, tt.attempt, err, jobs.IsPermanent(err))
		}
	}
}

func TestSleepReportsProgressAndHonoursCancellation(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		progress []int
	)
	ctx := jobs.WithProgress(context.Background(), func(_ context.Context, p int, _ string) error {
		mu.Lock()
		defer mu.Unlock()
		progress = append(progress, p)
		return nil
	})
	res, err := run(t, ctx, "sys.sleep", `{"ms":300}`, 1)
	if err != nil || res.(map[string]int64)["slept_ms"] != 300 {
		t.Fatalf("sleep: %v %v", res, err)
	}
	mu.Lock()
	if len(progress) == 0 || progress[0] <= 0 || progress[len(progress)-1] >= 100 {
		t.Errorf("progress reported: %v", progress)
	}
	mu.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := run(t, ctx, "sys.sleep", `{"ms":3600000}`, 1)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled sleep returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sleep did not return after cancellation")
	}
}

func TestSpin(t *testing.T) {
	t.Parallel()
	res, err := run(t, context.Background(), "sys.spin", `{"ms":20}`, 1)
	if err != nil || res.(map[string]any)["spun_ms"] != int64(20) {
		t.Fatalf("spin: %v %v", res, err)
	}
	if _, err := run(t, context.Background(), "sys.spin", `{"ms":"a lot"}`, 1); err == nil {
		t.Error("spin with a bad payload succeeded")
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := run(t, ctx, "sys.spin", `{"ms":600000}`, 1)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled spin returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("spin did not return after cancellation")
	}
}

// sys.spin uses CPU time, so it takes at least as long on the wall clock.
func TestSpinTakesItsCPUTime(t *testing.T) {
	t.Parallel()
	start := time.Now()
	if _, err := run(t, context.Background(), "sys.spin", `{"ms":50}`, 1); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("50 ms of CPU took %s of wall time", took)
	}
}
