package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
)

// storeTimeout bounds one Redis write of an outcome, which must happen even
// when the job's own context has ended.
const storeTimeout = 5 * time.Second

// process runs one delivery from start to acknowledgement. ctx is cancelled
// only in the second phase of shutdown.
func (w *Worker) process(ctx context.Context, log *slog.Logger, d queue.Delivery) {
	job, err := queue.DecodeJob(d.Body())
	if err != nil {
		// No retry can make it readable; keeping it would block nothing but
		// would be redelivered forever.
		log.Error("dropping unreadable message", "message_id", d.MessageID(), "err", err)
		_ = d.Drop()
		return
	}
	log = log.With("job", job.ID, "type", job.Type)

	w.mu.Lock()
	reg, known := w.types[job.Type]
	w.mu.Unlock()
	if !known {
		// The queue is bound to a type this process does not handle (an
		// older build of the service); fail it visibly rather than loop.
		log.Error("no handler for job type")
		w.settle(ctx, log, d, job.ID, store.Outcome{
			Status: jobs.StatusFailed,
			Error:  &jobs.Error{Code: "unknown_type", Message: fmt.Sprintf("worker %s has no handler for type %s", w.cfg.ID, job.Type)},
		})
		return
	}

	started, err := w.store.Start(ctx, job.ID, w.cfg.ID, w.cfg.Now())
	switch {
	case err != nil:
		log.Warn("cannot record start; returning job to the queue", "err", err)
		w.requeueLater(ctx, d)
		return
	case started.Missing:
		// The API never confirmed this job (its publish failed after the
		// broker took the message) or its record expired: nobody was told
		// it was accepted, so it must not run.
		log.Warn("no record for job; dropping message")
		_ = d.Ack()
		return
	case started.Status.Terminal():
		// A redelivery of a job that already ended: never run it twice.
		log.Info("job already finished; acknowledging redelivery", "status", started.Status)
		_ = d.Ack()
		return
	}
	job.Status = jobs.StatusRunning
	job.Attempt = started.Attempt
	job.Worker = w.cfg.ID
	now := w.cfg.Now()
	job.StartedAt = &now
	if job.Timeout <= 0 {
		job.Timeout = reg.t.Timeout
	}

	runCtx, cancel := context.WithTimeout(ctx, job.Timeout.Std())
	runCtx = jobs.WithProgress(runCtx, func(_ context.Context, percent int, msg string) error {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
		defer cancel()
		return w.store.Progress(pctx, job.ID, jobs.Progress{Percent: percent, Message: msg})
	})
	result, runErr := safeRun(runCtx, reg.h, job)
	timedOut := errors.Is(runCtx.Err(), context.DeadlineExceeded)
	cancel()

	if runErr != nil && ctx.Err() != nil && !timedOut {
		// Shutdown cancelled the job: it did not fail, so it goes back to
		// the queue for another worker. (A handler that finished anyway is
		// recorded below like any other.)
		log.Warn("job interrupted by shutdown; requeueing")
		w.settle(context.WithoutCancel(ctx), log, d, job.ID, store.Outcome{
			Status: jobs.StatusQueued,
			Error:  &jobs.Error{Code: "interrupted", Message: "worker shut down during the attempt", Retryable: true},
		})
		return
	}

	var o store.Outcome
	switch {
	case timedOut:
		o = failure("timeout", fmt.Sprintf("attempt timed out after %s", job.Timeout.Std()))
	case runErr != nil:
		var p *recovered
		if errors.As(runErr, &p) {
			log.Error("handler panicked", "panic", p.value, "stack", string(p.stack))
			o = failure("panic", runErr.Error())
		} else {
			o = failure(jobs.ErrorCode(runErr), runErr.Error())
		}
	default:
		b, err := encodeResult(result)
		if err != nil {
			o = failure("result", err.Error())
		} else {
			o = store.Outcome{Status: jobs.StatusSucceeded, Result: b}
		}
	}
	log.Debug("attempt finished", "status", o.Status, "attempt", job.Attempt, "took", time.Since(now))
	w.settle(ctx, log, d, job.ID, o)
}

// failure is a failed attempt's outcome. Retries arrive with the delivery
// guarantees work; until then a failed attempt is final.
func failure(code, msg string) store.Outcome {
	return store.Outcome{Status: jobs.StatusFailed, Error: &jobs.Error{Code: code, Message: msg}}
}

// settle stores the outcome and then settles the message: acknowledged once
// the outcome is stored, requeued when it could not be, so no outcome is lost.
func (w *Worker) settle(ctx context.Context, log *slog.Logger, d queue.Delivery, id string, o store.Outcome) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	err := w.store.Finish(sctx, id, o, w.cfg.Now())
	cancel()
	switch {
	case err == nil, errors.Is(err, store.ErrTerminal), errors.Is(err, store.ErrNotFound):
		if o.Status == jobs.StatusQueued {
			if err := d.Requeue(); err != nil {
				log.Warn("requeue failed; the broker redelivers the job", "err", err)
			}
			return
		}
		if err := d.Ack(); err != nil {
			// The channel died after the outcome was stored: the broker will
			// redeliver, and Start sees a terminal job and acks it then.
			log.Warn("ack failed; the redelivery will be acknowledged unrun", "err", err)
		}
	default:
		log.Warn("cannot record outcome; returning job to the queue", "err", err)
		w.requeueLater(ctx, d)
	}
}

// requeueLater returns a message to its queue after a pause, so that an
// outage of Redis does not turn into a hot redelivery loop.
func (w *Worker) requeueLater(ctx context.Context, d queue.Delivery) {
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	_ = d.Requeue()
}
