package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Handler runs jobs of one type. Run returns the job's result, which is
// marshalled to JSON (a json.RawMessage or []byte holding JSON is stored as
// it is), or an error. An error is retried while attempts remain unless it is
// marked Permanent; see RetryAfter for asking for a particular delay.
//
// Run must return when ctx ends: it ends when the job's timeout passes, when
// the job is canceled, or when the worker shuts down.
type Handler interface {
	Run(ctx context.Context, job *Job) (any, error)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, job *Job) (any, error)

// Run calls f.
func (f HandlerFunc) Run(ctx context.Context, job *Job) (any, error) { return f(ctx, job) }

// Middleware wraps a Handler with behaviour of its own (recovery, metrics,
// tracing), in the manner of net/http middleware.
type Middleware func(Handler) Handler

// Type declares a job type: its stable name, the pool whose queue receives
// it, the JSON Schema its payload must satisfy and its defaults. Worker
// services declare the types they handle; the API learns them from there.
type Type struct {
	// Name is the stable type string, such as "image.thumbnail": lower-case
	// words separated by dots.
	Name string `json:"name"`
	// Pool is the worker pool that handles the type, such as "image".
	Pool string `json:"pool"`
	// Schema is a JSON Schema (draft 2020-12 unless it says otherwise) for
	// the payload. Empty means any JSON object.
	Schema json.RawMessage `json:"schema,omitempty"`
	// Timeout is the default for one attempt; zero means DefaultTimeout.
	Timeout Duration `json:"timeout,omitempty"`
	// MaxTimeout is the longest timeout a job of the type may ask for;
	// zero means Timeout: a job may shorten its timeout, not lengthen it,
	// unless the type allows it here. A type declares more only when some
	// of its jobs need it, since an attempt holds a worker's slot until
	// its timeout.
	MaxTimeout Duration `json:"max_timeout,omitempty"`
	// MaxAttempts is the default attempt count; zero means
	// DefaultMaxAttempts.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// MaxAttemptsLimit is the most attempts a job of the type may ask for
	// (its max_attempts); zero means MaxAttempts.
	MaxAttemptsLimit int `json:"max_attempts_limit,omitempty"`
	// Backoff is the default retry policy; zero fields take the defaults.
	Backoff Backoff `json:"backoff,omitzero"`
	// Description says what the type does, for people listing types.
	Description string `json:"description,omitempty"`
}

var (
	typeNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+$`)
	poolNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
)

// MaxTypeName is the longest type name: a delayed message's routing key
// holds the type after DelayLevels bits and must stay within AMQP's 255.
const MaxTypeName = 128

// ValidTypeName reports whether s is a well-formed type name: at least two
// lower-case words joined by dots, such as "webhook.deliver".
func ValidTypeName(s string) bool { return len(s) <= MaxTypeName && typeNameRE.MatchString(s) }

// ValidPoolName reports whether s is a well-formed pool name.
func ValidPoolName(s string) bool { return poolNameRE.MatchString(s) }

// WithDefaults returns t with its zero fields filled in, its maxima
// included: a type that declares no maximum has its default as its
// maximum.
func (t Type) WithDefaults() Type {
	if t.Timeout == 0 {
		t.Timeout = Duration(DefaultTimeout)
	}
	if t.MaxAttempts == 0 {
		t.MaxAttempts = DefaultMaxAttempts
	}
	if t.MaxTimeout == 0 {
		t.MaxTimeout = t.Timeout
	}
	if t.MaxAttemptsLimit == 0 {
		t.MaxAttemptsLimit = t.MaxAttempts
	}
	return t
}

// Validate reports what is wrong with a declaration, if anything.
func (t Type) Validate() error {
	switch {
	case !ValidTypeName(t.Name):
		return fmt.Errorf("type name %q: want lower-case words joined by dots, such as \"image.resize\"", t.Name)
	case !ValidPoolName(t.Pool):
		return fmt.Errorf("type %s: pool name %q: want a lower-case word", t.Name, t.Pool)
	case t.Timeout < 0 || t.Timeout.Std() > MaxTimeout:
		return fmt.Errorf("type %s: timeout %s out of range (0 to %s)", t.Name, t.Timeout.Std(), MaxTimeout)
	case t.MaxAttempts < 0 || t.MaxAttempts > MaxMaxAttempts:
		return fmt.Errorf("type %s: max_attempts %d out of range (1 to %d)", t.Name, t.MaxAttempts, MaxMaxAttempts)
	case t.MaxTimeout < 0 || t.MaxTimeout.Std() > MaxTimeout:
		return fmt.Errorf("type %s: max_timeout %s out of range (0 to %s)", t.Name, t.MaxTimeout.Std(), MaxTimeout)
	case t.MaxAttemptsLimit < 0 || t.MaxAttemptsLimit > MaxMaxAttempts:
		return fmt.Errorf("type %s: max_attempts_limit %d out of range (1 to %d)", t.Name, t.MaxAttemptsLimit, MaxMaxAttempts)
	}
	// A maximum under the default would refuse the default itself.
	if d := t.WithDefaults(); d.MaxTimeout < d.Timeout {
		return fmt.Errorf("type %s: max_timeout %s is under its timeout %s", t.Name, d.MaxTimeout.Std(), d.Timeout.Std())
	} else if d.MaxAttemptsLimit < d.MaxAttempts {
		return fmt.Errorf("type %s: max_attempts_limit %d is under its max_attempts %d", t.Name, d.MaxAttemptsLimit, d.MaxAttempts)
	}
	if err := t.Backoff.Validate(); err != nil {
		return fmt.Errorf("type %s: %w", t.Name, err)
	}
	if len(t.Schema) > 0 && !json.Valid(t.Schema) {
		return fmt.Errorf("type %s: schema is not valid JSON", t.Name)
	}
	return nil
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that no retry can fix (a malformed payload, a
// refused target): the job fails at once, whatever attempts remain.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or one it wraps, was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryAfterError asks for the next attempt no sooner than After.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter wraps err with a request to retry after d (such as a 429's
// Retry-After), instead of the type's backoff.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &RetryAfterError{Err: err, After: d}
}

// CodedError lets a handler choose the code recorded with its failure.
type CodedError struct {
	Code string
	Err  error
}

func (e *CodedError) Error() string { return e.Err.Error() }
func (e *CodedError) Unwrap() error { return e.Err }

// ErrorCode returns the code recorded for err: the one a CodedError names,
// "timeout" for a deadline, "canceled" for a cancellation, else "handler".
func ErrorCode(err error) string {
	var c *CodedError
	switch {
	case errors.As(err, &c) && c.Code != "":
		return c.Code
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "handler"
}

// ProgressFunc records a running job's progress.
type ProgressFunc func(ctx context.Context, percent int, message string) error

type progressKey struct{}

// WithProgress returns a context through which handlers report progress; the
// worker runtime calls it, handlers call ReportProgress.
func WithProgress(ctx context.Context, f ProgressFunc) context.Context {
	return context.WithValue(ctx, progressKey{}, f)
}

// ReportProgress records how far the running job has come (percent is
// clamped to 0..100). Outside a worker it does nothing.
func ReportProgress(ctx context.Context, percent int, message string) error {
	f, _ := ctx.Value(progressKey{}).(ProgressFunc)
	if f == nil {
		return nil
	}
	return f(ctx, min(max(percent, 0), 100), message)
}

// Registrar is what a worker service registers its types and handlers
// with; the worker runtime implements it. Services depend on this interface,
// not on the runtime.
type Registrar interface {
	Handle(t Type, h Handler) error
}
