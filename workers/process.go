package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/warrenhq/warren/internal/backoff"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
)

// storeTimeout bounds one Redis write of an outcome.
const storeTimeout = 5 * time.Second

// process runs one delivery from start to acknowledgement. ctx is cancelled
// only in the second phase of shutdown.
//
// The order of writes is what makes outcomes safe: a retry's delayed copy or
// a dead letter is published (confirmed) before the record says so, and the
// message is acknowledged only after the record is written. A crash between
// any two steps leaves the message unacknowledged, and its redelivery finds
// the record where the crash left it.
func (w *Worker) process(ctx context.Context, log *slog.Logger, pool string, d queue.Delivery) {
	job, err := queue.DecodeJob(d.Body())
	if err != nil {
		// No retry can make it readable: it fails, once.
		w.unreadable(ctx, log, pool, d, err)
		return
	}
	log = jobLogger(log, job)
	a := attempt{w: w, log: log, pool: pool, d: d, job: job, traceparent: d.TraceParent()}
	if !w.admit(ctx, a) {
		return // held back by its type's rate limit (limit.go): parked
	}

	// One token per delivery makes a repeated start (a reply lost on its
	// way back, retried) change nothing.
	token := w.cfg.ID + "/" + jobs.NewID()
	var started store.Started
	if !a.hold(ctx, "record the start", func(ctx context.Context) (err error) {
		started, err = w.store.Start(ctx, job.ID, w.cfg.ID, d.Attempts(), token, w.cfg.Now())
		return err
	}) {
		return
	}
	switch {
	case started.Missing:
		// The API never confirmed this job (its publish failed after the
		// broker took the message) or its record expired: nobody was told
		// it was accepted, so it must not run.
		log.Warn("no record for job; dropping message")
		_ = d.Ack()
		return
	case started.Stale:
		// A retry of this job is already on its way; this copy was left
		// behind by a worker that stopped before acknowledging it.
		log.Info("stale copy of a job; dropping it", "attempt", started.Attempt)
		_ = d.Ack()
		return
	case started.Busy:
		// A second copy of an attempt a live worker is running (one the
		// rescuer republished, or a redelivery after that worker's
		// connection dropped): it must not run beside it, and it must not
		// vanish either, in case that worker dies before the attempt ends.
		// It goes round the delay levels and is offered again.
		log.Info("another worker runs this attempt; parking this copy", "attempt", started.Attempt, "for", started.Wait)
		a.park(ctx, started.Wait)
		return
	case started.Status.Terminal():
		// A redelivery of a job that already ended: never run it twice.
		log.Info("job already finished; acknowledging redelivery", "status", started.Status)
		_ = d.Ack()
		return
	}
	w.marks.add(jobs.StartedMember(pool, jobs.Lane(job.Priority)), started.Due)
	job.Status, job.Attempt, job.Worker = jobs.StatusRunning, started.Attempt, w.cfg.ID
	now := w.cfg.Now()
	job.StartedAt = &now

	w.mu.Lock()
	reg, known := w.types[job.Type]
	w.mu.Unlock()
	switch {
	case !known:
		// The queue is bound to a type this process does not handle (an
		// older build of the service): fail it visibly rather than loop.
		a.fail(ctx, &jobs.Error{Code: "unknown_type", Message: fmt.Sprintf("worker %s has no handler for type %s", w.cfg.ID, job.Type)})
		return
	case job.MaxAttempts > 0 && job.Attempt > job.MaxAttempts:
		// Only a lost attempt gets here: the worker running the last one
		// died, and the broker redelivered the message.
		a.fail(ctx, &jobs.Error{Code: "attempts_exhausted", Message: fmt.Sprintf(
			"attempt %d of %d was lost with its worker; no attempts remain", job.Attempt-1, job.MaxAttempts)})
		return
	}
	runCtx, cancelByRequest, end := attemptContext(ctx, reg.t, job)
	unregister := w.running.add(job.ID, cancelByRequest)
	runCtx = jobs.WithProgress(runCtx, func(_ context.Context, percent int, msg string) error {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
		defer cancel()
		return w.store.Progress(pctx, job.ID, jobs.Progress{Percent: percent, Message: msg})
	})
	result, runErr := w.run(runCtx, a, reg.h, started.Due)
	o := judge(ctx, runCtx, reg.t, job, result, runErr, w.cfg.Rand)
	unregister()
	end()

	var p *recovered
	if errors.As(runErr, &p) && o.Error != nil && o.Error.Code == "panic" {
		log.Error("handler panicked", "panic", p.value, "stack", string(p.stack))
	}
	switch o.Status {
	case jobs.StatusCanceled:
		// The API already recorded the job canceled; settle only the message.
		log.Info("job canceled while running")
		w.obs.outcome(job.Type, jobs.StatusCanceled)
		_ = d.Ack()
	case jobs.StatusQueued:
		log.Warn("job interrupted by shutdown; requeueing")
		made := d.Attempts()
		if made < 0 {
			made = job.Attempt - 1
		}
		a.settle(context.WithoutCancel(ctx), store.Outcome{
			Status:  jobs.StatusQueued,
			Restore: made, // as the requeued message says, so it is not taken for a stale copy
			Error:   o.Error,
		})
	case jobs.StatusRetrying:
		a.retry(ctx, o.Error, o.Delay)
	case jobs.StatusFailed:
		a.fail(ctx, o.Error)
	default:
		if o.Artifact != nil {
			err := error(nil)
			if !a.hold(ctx, "store the artifact", func(ctx context.Context) error {
				err = w.store.PutArtifact(ctx, job.ID, *o.Artifact)
				if errors.Is(err, store.ErrArtifactTooLarge) || errors.Is(err, store.ErrNotFound) {
					return nil // not an outage: settled below
				}
				return err
			}) {
				return
			}
			if errors.Is(err, store.ErrNotFound) {
				// The record expired while the attempt ran: the finish
				// below finds it missing, and the message is settled.
				err = nil
			}
			if err != nil {
				a.fail(ctx, &jobs.Error{Code: "artifact_too_large", Message: err.Error()})
				return
			}
		}
		log.Debug("attempt succeeded", "attempt", job.Attempt, "took", time.Since(now))
		a.settle(ctx, store.Outcome{Status: jobs.StatusSucceeded, Result: o.Result})
	}
}

// attempt carries what settling one delivery needs.
type attempt struct {
	w           *Worker
	log         *slog.Logger
	pool        string
	d           queue.Delivery
	job         *jobs.Job
	traceparent string
}

// retry publishes the job's next attempt, to come after delay, then
// records the job retrying with e (judge decided it).
func (a attempt) retry(ctx context.Context, e *jobs.Error, delay time.Duration) {
	a.log.Info("attempt failed; retrying", "attempt", a.job.Attempt, "code", e.Code, "err", e.Message, "delay", delay)

	retry := *a.job
	retry.Attempt = a.job.Attempt // attempts made: the next run must see the record agree
	m, err := queue.NewMessage(&retry, a.traceparent)
	if err != nil {
		a.fail(ctx, &jobs.Error{Code: "internal", Message: err.Error()})
		return
	}
	m.Delay = delay
	if !a.publish(ctx, m, "schedule the retry") {
		return
	}
	a.settle(ctx, store.Outcome{Status: jobs.StatusRetrying, Error: e, Next: a.w.cfg.Now().Add(delay)})
}

// fail ends the job as failed: a copy of its message goes to the pool's
// dead-letter queue with the error in its headers, then the record says
// failed, then the message is acknowledged.
func (a attempt) fail(ctx context.Context, e *jobs.Error) {
	e.Retryable = false
	a.log.Warn("job failed", "attempt", a.job.Attempt, "code", e.Code, "err", e.Message)
	dead := *a.job
	m, err := queue.NewMessage(&dead, a.traceparent)
	if err == nil {
		m.DeadLetterOf(a.pool, e.Code, e.Message, a.w.cfg.Now())
		if !a.publish(ctx, m, "dead-letter the job") {
			return
		}
		a.w.obs.deadLettered(a.pool)
	} else {
		a.log.Error("cannot encode dead letter", "err", err)
	}
	a.settle(ctx, store.Outcome{Status: jobs.StatusFailed, Error: e})
}

// park publishes the delivery again, unchanged in what the start script
// reads (the same attempts made), to come back after wait, and acknowledges
// it.
func (a attempt) park(ctx context.Context, wait time.Duration) {
	copyOf := *a.job
	copyOf.Attempt = max(a.d.Attempts(), 0)
	m, err := queue.NewMessage(&copyOf, a.traceparent)
	if err != nil {
		// It decoded, so it encodes; should it not, the broker keeps it.
		a.log.Error("cannot park a copy of a job", "err", err)
		_ = a.d.Requeue()
		return
	}
	m.Delay = max(wait, jobs.DelayUnit)
	if !a.publish(ctx, m, "park the copy") {
		return
	}
	if err := a.d.Ack(); err != nil {
		a.log.Warn("ack of a parked copy failed; the broker redelivers it", "err", err)
	}
}

// publish sends a message with confirms, retrying while the broker is away
// and the worker is not shutting down. On false the delivery was returned to
// the queue and the caller stops.
func (a attempt) publish(ctx context.Context, m queue.Message, what string) bool {
	return a.hold(ctx, what, func(ctx context.Context) error {
		errs, err := a.w.broker.Publish(ctx, []queue.Message{m})
		if err == nil {
			err = errs[0]
		}
		return err
	})
}

// settle stores the outcome and then settles the message: acknowledged once
// the outcome is stored (requeued for an interrupted attempt), so no outcome
// is lost.
func (a attempt) settle(ctx context.Context, o store.Outcome) {
	if o.Attempt == 0 {
		o.Attempt = a.job.Attempt // 0 for the intake, which knows no attempt
	}
	var err error
	if !a.hold(ctx, "record the outcome", func(ctx context.Context) error {
		err = a.w.store.Finish(ctx, a.job.ID, o, a.w.cfg.Now())
		if errors.Is(err, store.ErrTerminal) || errors.Is(err, store.ErrNotFound) {
			return nil // settled already (canceled, say): nothing to record
		}
		return err
	}) {
		return
	}
	// As the worker decided it, even where the record had moved on (a
	// retry's copy that ran first, a cancel): the attempt ended so.
	a.w.obs.outcome(a.job.Type, o.Status)
	a.w.load.ended(a.pool, o.Status)
	if o.Status == jobs.StatusQueued {
		if err := a.d.Requeue(); err != nil {
			a.log.Warn("requeue failed; the broker redelivers the job", "err", err)
		}
		return
	}
	if err := a.d.Ack(); err != nil {
		// The channel died after the outcome was stored: the broker will
		// redeliver, and Start sees a terminal job and acks it then.
		a.log.Warn("ack failed; the redelivery will be acknowledged unrun", "err", err)
	}
}

// hold runs f until it succeeds, backing off while Redis or the broker is
// away. The message stays unacknowledged meanwhile rather than being
// requeued, which a quorum queue would count towards its delivery limit.
// When ctx ends first (shutdown's second phase) the message goes back to the
// queue and hold reports false.
func (a attempt) hold(ctx context.Context, what string, f func(context.Context) error) bool {
	wait := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
		err := f(sctx)
		cancel()
		if err == nil {
			return true
		}
		delay := wait.Next()
		a.log.Warn("cannot "+what+"; holding the job and trying again", "err", err, "in", delay)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			_ = a.d.Requeue()
			return false
		}
	}
}

// unreadable settles a message whose body is not a job message warren can
// read (not JSON, not UTF-8, nested too deep, fields of the wrong type): no
// retry can make it readable, so it must neither run nor go round the
// queue again. When its message id names a job, that job fails with code
// bad_message and the message, as it came, becomes its dead letter, as any
// job's that fails for good (listed by neither GET /v1/dead nor replayed,
// since it cannot be read). Without a job id there is no record to settle:
// the message is rejected, and the broker dead-letters it once.
func (w *Worker) unreadable(ctx context.Context, log *slog.Logger, pool string, d queue.Delivery, why error) {
	id := d.MessageID()
	if !jobs.ValidID(id) {
		log.Error("rejecting an unreadable message that names no job", "message_id", id, "err", why)
		_ = d.Drop()
		return
	}
	job := &jobs.Job{ID: id}
	a := attempt{w: w, log: log.With("job", id), pool: pool, d: d, job: job}
	e := &jobs.Error{Code: "bad_message", Message: fmt.Sprintf("the worker cannot read the job's message: %v", why)}
	a.log.Error("job failed: its message cannot be read", "err", why)
	m := queue.Message{ID: id, Body: d.Body()}
	m.DeadLetterOf(pool, e.Code, e.Message, w.cfg.Now())
	if !a.publish(ctx, m, "dead-letter the unreadable message") {
		return
	}
	w.obs.deadLettered(pool)
	a.settle(ctx, store.Outcome{Status: jobs.StatusFailed, Error: e})
}

// deadLettered handles a message the broker dead-lettered because it reached
// the delivery limit (it kept losing its worker, or kept being returned):
// the message itself already waits in the pool's dead-letter queue; the job
// must not look queued or running for ever, so it is marked failed.
func (w *Worker) deadLettered(ctx context.Context, log *slog.Logger, d queue.Delivery) {
	job, err := queue.DecodeJob(d.Body())
	if err != nil {
		log.Error("dropping unreadable dead letter", "message_id", d.MessageID(), "err", err)
		_ = d.Ack()
		return
	}
	a := attempt{w: w, log: jobLogger(log, job), d: d, job: job}
	a.log.Warn("the broker dead-lettered a job after too many deliveries")
	if pool := w.poolOf(job.Type); pool != "" {
		w.obs.deadLettered(pool)
	}
	a.settle(ctx, store.Outcome{Status: jobs.StatusFailed, Error: &jobs.Error{
		Code:    "delivery_limit",
		Message: fmt.Sprintf("the message was delivered %d times without an outcome (its worker was lost each time); see the dead-letter queue", queue.DeliveryLimit),
	}})
}

// trimStack keeps the start of a panic's stack, where the panicking frames
// are, within jobs.MaxStack bytes and on whole lines.
func trimStack(s string) string {
	if len(s) <= jobs.MaxStack {
		return s
	}
	s = s[:jobs.MaxStack]
	if i := strings.LastIndexByte(s, '\n'); i > 0 {
		s = s[:i+1]
	}
	return s + "…"
}
