package workers

import (
	"context"
	"sync"
)

// errCanceledByRequest is the cause given to a running job's context when
// the job is canceled through the API. It is a context.Canceled, so that a
// handler returning context.Cause(ctx) returns an error that says so.
var errCanceledByRequest error = canceledByRequest{}

type canceledByRequest struct{}

func (canceledByRequest) Error() string        { return "job canceled by request" }
func (canceledByRequest) Is(target error) bool { return target == context.Canceled }

// running maps the ids of jobs running in this process to the functions
// that cancel their contexts, so a cancel request heard on the events
// channel reaches the handler at once.
type running struct {
	mu   sync.Mutex
	jobs map[string]context.CancelCauseFunc
}

func newRunning() *running { return &running{jobs: map[string]context.CancelCauseFunc{}} }

// add registers a running job; the returned func unregisters it.
func (r *running) add(id string, cancel context.CancelCauseFunc) func() {
	r.mu.Lock()
	r.jobs[id] = cancel
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.jobs, id)
		r.mu.Unlock()
	}
}

// cancel cancels the job's context if it runs here.
func (r *running) cancel(id string) {
	r.mu.Lock()
	cancel := r.jobs[id]
	r.mu.Unlock()
	if cancel != nil {
		cancel(errCanceledByRequest)
	}
}
