// Package sys is warren's built-in pool for smoke tests, load tests and
// checking alerts: sys.echo returns its payload, sys.sleep sleeps while
// reporting progress, sys.spin keeps a CPU busy, sys.fail fails a chosen
// number of attempts.
package sys

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warrenhq/warren/jobs"
)

// Pool is the name of the pool that runs the sys types.
const Pool = "sys"

// DefaultConcurrency suits sys jobs, which mostly wait.
const DefaultConcurrency = 32

// Types of the sys pool.
var (
	// The sys types are for trying warren out and testing it, where a job
	// may ask for more attempts than the defaults (a soak asks for 10).
	Echo = jobs.Type{
		Name: "sys.echo", Pool: Pool, Timeout: jobs.Duration(30 * time.Second),
		MaxTimeout: jobs.Duration(time.Minute), MaxAttemptsLimit: 10,
		Description: "Returns its payload as its result.",
		Schema:      json.RawMessage(`{"type":"object"}`),
	}
	Sleep = jobs.Type{
		Name: "sys.sleep", Pool: Pool, Timeout: jobs.Duration(10 * time.Minute),
		// Room for the longest sleep the schema allows, an hour.
		MaxTimeout: jobs.Duration(time.Hour + time.Minute), MaxAttemptsLimit: 10,
		Description: "Sleeps for ms milliseconds, reporting progress; honours cancellation.",
		Schema: json.RawMessage(`{
  "type": "object",
  "properties": {"ms": {"type": "integer", "minimum": 0, "maximum": 3600000}},
  "required": ["ms"],
  "additionalProperties": false
}`),
	}
	Spin = jobs.Type{
		Name: "sys.spin", Pool: Pool, Timeout: jobs.Duration(10 * time.Minute),
		Description: "Keeps one CPU busy for ms milliseconds: a CPU-bound job for load tests; honours cancellation.",
		Schema: json.RawMessage(`{
  "type": "object",
  "properties": {"ms": {"type": "integer", "minimum": 0, "maximum": 600000}},
  "required": ["ms"],
  "additionalProperties": false
}`),
	}
	Fail = jobs.Type{
		Name: "sys.fail", Pool: Pool, Timeout: jobs.Duration(30 * time.Second),
		// As many attempts as fail_times may need.
		MaxAttemptsLimit: jobs.MaxMaxAttempts,
		Description:      "Fails its first fail_times attempts (permanently if permanent), then succeeds.",
		Schema: json.RawMessage(`{
  "type": "object",
  "properties": {
    "fail_times": {"type": "integer", "minimum": 0, "maximum": 100},
    "permanent": {"type": "boolean"}
  },
  "additionalProperties": false
}`),
	}
)

// Register registers the sys types with r.
func Register(r jobs.Registrar) error {
	// A payload that does not decode fails for good, with code "handler".
	for _, h := range []struct {
		t jobs.Type
		h jobs.Handler
	}{
		{Echo, jobs.HandlerFunc(echo)},
		{Sleep, jobs.Typed(sleep).OnBadPayload(jobs.Permanent)},
		{Spin, jobs.Typed(spin).OnBadPayload(jobs.Permanent)},
		{Fail, jobs.Typed(fail).OnBadPayload(jobs.Permanent)},
	} {
		if err := r.Handle(h.t, h.h); err != nil {
			return fmt.Errorf("sys: %w", err)
		}
	}
	return nil
}

func echo(_ context.Context, j *jobs.Job) (any, error) {
	return j.Payload, nil
}

// millis is the payload of sys.sleep and sys.spin.
type millis struct {
	MS int64 `json:"ms"`
}

func sleep(ctx context.Context, _ *jobs.Job, p millis) (map[string]int64, error) {
	total := time.Duration(p.MS) * time.Millisecond
	// Report progress in up to ten steps, no more often than every 100ms,
	// so a long sleep shows movement without flooding Redis.
	steps := max(1, min(10, int(total/(100*time.Millisecond))))
	step := total / time.Duration(steps)
	t := time.NewTimer(step)
	defer t.Stop()
	for i := 1; i <= steps; i++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		if i < steps {
			_ = jobs.ReportProgress(ctx, i*100/steps, fmt.Sprintf("slept %s of %s", step*time.Duration(i), total))
			t.Reset(step)
		}
	}
	return map[string]int64{"slept_ms": p.MS}, nil
}

func spin(ctx context.Context, _ *jobs.Job, p millis) (map[string]any, error) {
	// A fixed amount of CPU time, not of wall time: like real CPU-bound
	// jobs, it takes longer when it shares a core, so more processes than
	// cores do not finish sooner. The goroutine keeps its thread while it
	// spins, so the thread's CPU clock is the job's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	want := time.Duration(p.MS) * time.Millisecond
	start, err := threadCPU()
	if err != nil {
		return nil, fmt.Errorf("sys.spin: %w", err)
	}
	x := uint64(1)
	for {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		now, err := threadCPU()
		if err != nil {
			return nil, fmt.Errorf("sys.spin: %w", err)
		}
		if now-start >= want {
			break
		}
		x = spinWork(x, 20000)
	}
	return map[string]any{"spun_ms": p.MS, "x": x % 1000}, nil
}

//go:noinline
func spinWork(x uint64, n int) uint64 {
	for range n {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

// threadCPU is the CPU time the calling thread has used.
func threadCPU() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, fmt.Errorf("thread CPU clock: %w", err)
	}
	return time.Duration(ts.Nano()), nil
}

type failPayload struct {
	FailTimes int  `json:"fail_times"`
	Permanent bool `json:"permanent"`
}

func fail(_ context.Context, j *jobs.Job, p failPayload) (map[string]int, error) {
	if j.Attempt <= p.FailTimes {
		err := fmt.Errorf("sys.fail: failing attempt %d of the first %d as asked", j.Attempt, p.FailTimes)
		if p.Permanent {
			return nil, jobs.Permanent(err)
		}
		return nil, err
	}
	return map[string]int{"attempts": j.Attempt}, nil
}
