package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
)

// retryTimeout bounds a retry's wait for Redis and the broker's confirm,
// so that it answers 503 (having put the job back) rather than hanging
// while RabbitMQ is away.
const retryTimeout = 10 * time.Second

// retryJob handles POST /v1/jobs/{id}/retry: a failed or canceled job runs
// again, from a first attempt (store.Retry records it, then the job is
// published with confirms; a publish that fails leaves the job as it was).
// Scope admin; the body, if any, is not read. An Idempotency-Key header
// makes a repeat of the request (its answer lost) answer the same job
// without running it again; without one, a second retry of a job that is
// already queued again is a 409.
func (s *Server) retryJob(w http.ResponseWriter, r *http.Request) {
	id, ok := s.pathJob(w, r)
	if !ok {
		return
	}
	key, traceparent, err := s.submitHeaders(r, true)
	if err == nil {
		err = checkRetryKey(key)
	}
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	// When the broker is down, the record is not touched at all.
	if !s.broker.Connected() {
		writeError(w, toAPIError(s.log, queue.ErrUnavailable))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), retryTimeout)
	defer cancel()
	publish := func(ctx context.Context, j *jobs.Job) error {
		m, err := queue.NewMessage(j, traceparent)
		if err != nil {
			return err
		}
		errs, err := s.broker.Publish(ctx, []queue.Message{m})
		if err == nil {
			err = errs[0]
		}
		return err
	}
	res, err := s.store.Retry(ctx, id, retryToken(callerOf(r.Context()), key), publish)
	switch {
	case errors.Is(err, store.ErrNotRetryable):
		writeError(w, notRetryable(id, res.Was))
		return
	case errors.Is(err, queue.ErrUnroutable) && res.Job != nil:
		writeError(w, apiErr("no_route", "", "no queue is bound for type %s: start a worker of its pool, then send this again; the job was left as it was", res.Job.Type))
		return
	case err != nil:
		writeError(w, toAPIError(s.log, err))
		return
	}
	if !res.Repeated {
		s.audit(r, "retry", "job", id, "was", res.Was)
	}
	writeJSON(w, http.StatusOK, s.store.Present(r.Context(), res.Job))
}

// notRetryable is the 409 for a job that is neither failed nor canceled.
func notRetryable(id string, st jobs.Status) *Error {
	if st == jobs.StatusSucceeded {
		return apiErr("conflict", "", "job %s succeeded; only a failed or canceled job can be retried (submit a new job to run its payload again)", id)
	}
	return apiErr("conflict", "", "job %s is %s and has not ended; only a failed or canceled job can be retried (wait for it to end, or cancel it first)", id, st)
}

// checkRetryKey refuses an Idempotency-Key that a submission would refuse.
func checkRetryKey(key string) error {
	if len(key) > producer.MaxIdempotencyKey {
		return apiErr("invalid_field", "idempotency_key", "the Idempotency-Key header must be at most %d bytes", producer.MaxIdempotencyKey)
	}
	return nil
}

// retryToken names a retry in the job's record: from the request's
// Idempotency-Key, scoped by the caller's key (so that one caller's key
// never matches another's), or new for a request without one.
func retryToken(c caller, key string) string {
	if key == "" {
		return jobs.NewID()
	}
	sum := sha256.Sum256([]byte(c.name() + "\x00" + key))
	return "key:" + hex.EncodeToString(sum[:])
}
