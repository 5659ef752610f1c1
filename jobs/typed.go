package jobs

import "context"

// CodeBadPayload is the error code of a job whose payload a typed handler
// cannot decode (see Typed).
const CodeBadPayload = "bad_payload"

// Typed returns a Handler that decodes the job's payload into a P (with
// Job.Decode) and calls f with it; what f returns is the job's result, so R
// is any result type, jobs.Output among them when the handler keeps bytes
// beside its result. A payload that does not decode fails the job at once
// with code CodeBadPayload (Permanent: no retry can fix it), and f is not
// called; OnBadPayload chooses another error.
//
//	type resize struct {
//		URL   string `json:"url"`
//		Width int    `json:"width"`
//	}
//
//	func run(ctx context.Context, j *jobs.Job, p resize) (Result, error) { … }
//
//	w.Handle(Resize, jobs.Typed(run))
func Typed[P, R any](f func(ctx context.Context, job *Job, p P) (R, error)) TypedHandler[P, R] {
	return TypedHandler[P, R]{f: f}
}

// TypedHandler is the Handler Typed returns.
type TypedHandler[P, R any] struct {
	f          func(ctx context.Context, job *Job, p P) (R, error)
	badPayload func(error) error
}

// OnBadPayload returns h with bad turning the error of a payload that does
// not decode into the job's error, in place of a permanent failure with
// code CodeBadPayload (which is also what a nil from bad gets). Permanent
// itself keeps the decoding error as it is, recorded with code "handler".
func (h TypedHandler[P, R]) OnBadPayload(bad func(error) error) TypedHandler[P, R] {
	h.badPayload = bad
	return h
}

// Run decodes the payload and calls the function. When the function fails,
// its result is dropped: the job's result is nil.
func (h TypedHandler[P, R]) Run(ctx context.Context, job *Job) (any, error) {
	var p P
	if err := job.Decode(&p); err != nil {
		if h.badPayload != nil {
			if bad := h.badPayload(err); bad != nil {
				return nil, bad
			}
		}
		return nil, Permanent(&CodedError{Code: CodeBadPayload, Err: err})
	}
	r, err := h.f(ctx, job, p)
	if err != nil {
		return nil, err
	}
	return r, nil
}
