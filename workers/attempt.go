package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/warrenhq/warren/jobs"
)

// Outcome is how one attempt ended, as the runtime decides it from what the
// handler returned, before it records it.
type Outcome struct {
	// Status is the job's status after the attempt: succeeded; retrying when
	// another attempt follows; failed; canceled when a cancel request ended
	// the attempt; queued when a shutdown interrupted it (the attempt does
	// not count).
	Status jobs.Status
	// Result is the handler's result as JSON (succeeded only).
	Result json.RawMessage
	// Artifact is the bytes the handler returned beside its result in a
	// jobs.Output, if any (succeeded only).
	Artifact *jobs.Artifact
	// Error is the failure as it is recorded (retrying, failed, queued);
	// its Retryable says whether another attempt follows.
	Error *jobs.Error
	// Delay is the wait before the next attempt (retrying only): the
	// backoff of the job's policy, or what the handler asked for with
	// jobs.RetryAfter.
	Delay time.Duration
}

// RunAttempt runs one attempt of job with h as a Worker runs it, without a
// broker or a store: with the job's timeout (the type's when the job names
// none, which RunAttempt then sets on job), a panic recovered with its
// stack, and the outcome decided as a Worker decides it (timeout, panic,
// permanent or retryable with attempts left, the result encoded). The end
// of ctx cancels the attempt as a cancel request through the API does;
// progress the handler reports goes wherever ctx sends it
// (jobs.WithProgress). job should be as a Worker hands it over: running,
// with its Attempt and MaxAttempts set.
//
// A Worker runs every attempt through the same decisions; package jobstest
// uses RunAttempt to run handlers in tests.
func RunAttempt(ctx context.Context, t jobs.Type, h jobs.Handler, job *jobs.Job) Outcome {
	t = t.WithDefaults()
	base := context.WithoutCancel(ctx) // the worker's, which no shutdown ends here
	runCtx, cancelByRequest, end := attemptContext(base, t, job)
	defer end()
	ran := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(ran)
		cancelByRequest(errCanceledByRequest)
	})
	defer func() {
		if !stop() {
			<-ran
		}
	}()
	result, err := safeRun(runCtx, h, job)
	return judge(base, runCtx, t, job, result, err, rand.Float64)
}

// attemptContext returns the context an attempt's handler runs in: ctx
// bounded by the job's timeout (the type's when the job names none, which
// it then records on job), and cancellable with a cause: a cancel request
// gives errCanceledByRequest. end releases it, once the outcome is decided.
func attemptContext(ctx context.Context, t jobs.Type, job *jobs.Job) (runCtx context.Context, cancel context.CancelCauseFunc, end func()) {
	if job.Timeout <= 0 {
		job.Timeout = t.Timeout
	}
	runCtx, end = context.WithTimeout(ctx, job.Timeout.Std())
	runCtx, cancel = context.WithCancelCause(runCtx)
	return runCtx, cancel, end
}

// judge decides how an attempt ended. ctx is the worker's, which ends only
// in the second phase of a shutdown; runCtx is the one the handler ran in
// (see attemptContext), not yet released; result and runErr are what the
// handler returned; rnd jitters the retry delay.
func judge(ctx, runCtx context.Context, t jobs.Type, job *jobs.Job, result any, runErr error, rnd func() float64) Outcome {
	timedOut := errors.Is(runCtx.Err(), context.DeadlineExceeded)
	switch {
	case errors.Is(context.Cause(runCtx), errCanceledByRequest):
		// The API already recorded the job canceled.
		return Outcome{Status: jobs.StatusCanceled}
	case runErr != nil && ctx.Err() != nil && !timedOut:
		// Shutdown cancelled the job: it did not fail, so it goes back to
		// the queue for another worker, and the attempt does not count.
		return Outcome{Status: jobs.StatusQueued, Error: &jobs.Error{
			Code: "interrupted", Message: "worker shut down during the attempt", Retryable: true,
		}}
	case timedOut:
		return failure(t, job, &jobs.Error{Code: "timeout", Message: fmt.Sprintf("attempt timed out after %s", job.Timeout.Std())}, runErr, rnd)
	case runErr != nil:
		e := &jobs.Error{Code: jobs.ErrorCode(runErr), Message: runErr.Error()}
		var p *recovered
		if errors.As(runErr, &p) {
			e.Code, e.Stack = "panic", trimStack(string(p.stack))
		}
		return failure(t, job, e, runErr, rnd)
	}
	var artifact *jobs.Artifact
	switch out := result.(type) {
	case jobs.Output:
		result, artifact = out.Result, out.Artifact
	case *jobs.Output:
		if out != nil { // a nil one is a null result
			result, artifact = out.Result, out.Artifact
		}
	}
	b, err := encodeResult(result)
	if err != nil {
		return Outcome{Status: jobs.StatusFailed, Error: &jobs.Error{Code: "result", Message: err.Error()}}
	}
	return Outcome{Status: jobs.StatusSucceeded, Result: b, Artifact: artifact}
}

// failure decides between a retry and the end: a retryable error with
// attempts left is retried after the backoff (or the delay the handler asked
// for); anything else fails the job for good.
func failure(t jobs.Type, job *jobs.Job, e *jobs.Error, runErr error, rnd func() float64) Outcome {
	if jobs.IsPermanent(runErr) || job.Attempt >= job.MaxAttempts {
		e.Retryable = false
		return Outcome{Status: jobs.StatusFailed, Error: e}
	}
	policy := t.Backoff
	if job.Backoff != nil {
		policy = job.Backoff.Over(t.Backoff)
	}
	delay := policy.Delay(job.Attempt, rnd)
	var ra *jobs.RetryAfterError
	if errors.As(runErr, &ra) {
		delay = min(max(ra.After, 0), jobs.MaxDelay)
	}
	e.Retryable = true
	return Outcome{Status: jobs.StatusRetrying, Error: e, Delay: delay}
}
