// Package jobs is the ground of warren: the Job, its states, the Handler
// contract that workers implement, the outcomes a handler can return, and the
// one place where queue names, routing keys and Redis keys are derived from a
// job type and a namespace. It imports nothing else of warren.
package jobs

import (
	"encoding/json"
	"fmt"
	"time"
)

// Status is where a job stands in its life.
type Status string

// The states of a job. A job moves forward only: once terminal, no outcome
// changes it; the ways back are deliberate: a replay of its dead letter,
// which makes a failed job queued again, and a retry by id
// (POST /v1/jobs/{id}/retry), which does that to a failed or canceled one.
const (
	// StatusScheduled is a job waiting for its run time (delayed jobs).
	StatusScheduled Status = "scheduled"
	// StatusQueued is a job accepted and waiting in its pool's queue.
	StatusQueued Status = "queued"
	// StatusRunning is a job a worker is running now.
	StatusRunning Status = "running"
	// StatusRetrying is a job whose attempt failed and that will run again.
	StatusRetrying Status = "retrying"
	// StatusSucceeded is a job whose handler returned a result. Terminal.
	StatusSucceeded Status = "succeeded"
	// StatusFailed is a job that failed for good. Terminal.
	StatusFailed Status = "failed"
	// StatusCanceled is a job that was canceled. Terminal.
	StatusCanceled Status = "canceled"
)

// Statuses are the statuses there are, in the order a job goes through them.
var Statuses = []Status{StatusScheduled, StatusQueued, StatusRunning, StatusRetrying, StatusSucceeded, StatusFailed, StatusCanceled}

// Terminal reports whether s is a final state.
func (s Status) Terminal() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCanceled
}

// Valid reports whether s is one of the known states.
func (s Status) Valid() bool {
	switch s {
	case StatusScheduled, StatusQueued, StatusRunning, StatusRetrying,
		StatusSucceeded, StatusFailed, StatusCanceled:
		return true
	}
	return false
}

// Limits on a job's settings.
const (
	// DefaultMaxAttempts is how many attempts a job gets when it names none.
	DefaultMaxAttempts = 3
	// MaxMaxAttempts is the largest max_attempts a type may declare, as a
	// default or a limit; a job may ask for no more than its type's
	// Type.MaxAttemptsLimit.
	MaxMaxAttempts = 100
	// DefaultTimeout is the timeout of a job whose type declares none.
	DefaultTimeout = 5 * time.Minute
	// MaxTimeout is the longest timeout a type may declare, as a default
	// or a limit; a job may ask for no more than its type's
	// Type.MaxTimeout.
	MaxTimeout = 24 * time.Hour
)

// Job is one unit of work and everything known about it. It is the same value
// the API returns, the store records and a handler receives.
type Job struct {
	// ID is a UUIDv7: unique, URL-safe and sortable by creation time.
	ID string `json:"id"`
	// Type names what to do, such as "webhook.deliver"; see Type.
	Type string `json:"type"`
	// Pool is the worker pool the job's type is declared in, recorded when
	// the job is accepted.
	Pool string `json:"pool,omitempty"`
	// Status is where the job stands.
	Status Status `json:"status"`
	// Payload is the job's input, a JSON object.
	Payload json.RawMessage `json:"payload"`
	// Attempt is the number of the current or last attempt, 1-based; 0
	// before the first run.
	Attempt int `json:"attempt"`
	// MaxAttempts is how many attempts the job may take in all.
	MaxAttempts int `json:"max_attempts"`
	// Timeout bounds one attempt; the handler's context ends when it passes.
	Timeout Duration `json:"timeout"`
	// Backoff overrides fields of the type's retry policy for this job.
	Backoff *Backoff `json:"backoff,omitempty"`
	// Metadata is free-form labels from the submitter, passed through.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Priority is 0 to MaxPriority: within a pool, jobs of priority
	// HighPriority and above run before the others under a backlog
	// (docs/priorities.md). Zero is the default.
	Priority int `json:"priority,omitempty"`
	// Result is what the handler returned, as JSON, once succeeded.
	Result json.RawMessage `json:"result,omitempty"`
	// Artifact describes output bytes the handler produced, if any.
	Artifact *ArtifactInfo `json:"artifact,omitempty"`
	// Error describes the last failure, if any.
	Error *Error `json:"error,omitempty"`
	// Progress is the last progress the handler reported.
	Progress *Progress `json:"progress,omitempty"`
	// Worker identifies the process that ran the last attempt.
	Worker string `json:"worker,omitempty"`
	// Attempts is the job's history: each attempt that ended, oldest
	// first, and the running one last.
	Attempts []Attempt `json:"attempts,omitempty"`
	// IdempotencyKey is the submitter's key for deduplicating submissions.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Unique, if set, made the job the only one of its type and key for a
	// while (docs/unique.md); nil for a job submitted without.
	Unique *Unique `json:"unique,omitempty"`
	// SubmittedBy is the name of the API key that submitted the job (never
	// the key itself); empty where the API runs without keys.
	SubmittedBy string `json:"submitted_by,omitempty"`

	CreatedAt   time.Time  `json:"created_at"`
	ScheduledAt *time.Time `json:"scheduled_at,omitempty"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	// LimitedUntil, on a waiting job, is when its type's rate limit lets
	// it be offered again (docs/ratelimits.md); nil when no limit holds it
	// back.
	LimitedUntil *time.Time `json:"limited_until,omitempty"`
}

// Decode unmarshals the job's payload into v.
func (j *Job) Decode(v any) error {
	if err := json.Unmarshal(j.Payload, v); err != nil {
		return fmt.Errorf("decode payload of %s %s: %w", j.Type, j.ID, err)
	}
	return nil
}

// Error is a failure as recorded on a job.
type Error struct {
	// Code is a stable, machine-readable word: "handler", "panic", "timeout",
	// "canceled", or one a handler chose.
	Code string `json:"code"`
	// Message is for people.
	Message string `json:"message"`
	// Retryable says whether warren will run the job again.
	Retryable bool `json:"retryable"`
	// Stack is where a handler panicked, trimmed to MaxStack bytes; empty
	// for other failures.
	Stack string `json:"stack,omitempty"`
}

// MaxStack bounds the stack an Error keeps of a panic.
const MaxStack = 4096

// Attempt is one run of a job.
type Attempt struct {
	// Attempt is the attempt's number, 1-based.
	Attempt int `json:"attempt"`
	// Worker identifies the process that ran it.
	Worker    string     `json:"worker,omitempty"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	// Outcome is how it ended: succeeded, failed, canceled, interrupted
	// (its worker shut down; the attempt did not count), lost (its worker
	// vanished), or running while it runs. An entry of attempt 0 marks
	// where the job was run again from its first attempt: retried (POST
	// /v1/jobs/{id}/retry) or replayed (from its dead letters), at EndedAt.
	Outcome string `json:"outcome"`
	// Error is why it failed, if it did.
	Error *Error `json:"error,omitempty"`
}

// Progress is how far a running job says it has come.
type Progress struct {
	Percent int    `json:"percent"`
	Message string `json:"message,omitempty"`
}

// Duration is a time.Duration that reads and writes JSON as Go duration text
// ("30s", "1m30s"). It also reads a number, taken as seconds.
type Duration time.Duration

// MarshalJSON writes the duration as text such as "30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads "30s" style text or a number of seconds; null
// leaves d as it is.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err := json.Unmarshal(b, &secs); err != nil {
			return fmt.Errorf("duration must be text such as \"30s\" or a number of seconds")
		}
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: want text such as \"30s\" or \"5m\"", s)
	}
	*d = Duration(v)
	return nil
}

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }
