package producer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/warrenhq/warren/jobs"
)

// Limits on what a submission may carry besides its payload.
const (
	MaxMetadataEntries = 64
	MaxMetadataKey     = 128
	MaxMetadataValue   = 1024
	MaxIdempotencyKey  = 255
)

// Request asks for one job. Zero fields take the type's defaults.
type Request struct {
	// Type is the job type, declared by a worker of its pool; required.
	Type string
	// Payload is the job's input, a JSON object checked against the
	// type's schema; empty or null means {}.
	Payload json.RawMessage
	// MaxAttempts bounds the attempts, up to the type's limit.
	MaxAttempts int
	// Timeout bounds one attempt: 1s up to the type's most.
	Timeout time.Duration
	// Backoff is the retry policy, over the type's.
	Backoff *jobs.Backoff
	// Metadata are labels to list and find the job by.
	Metadata map[string]string
	// Priority is 0 (the default) to jobs.MaxPriority; 5 and above run
	// before the others of their pool under a backlog (docs/priorities.md).
	Priority int
	// IdempotencyKey, if set, makes a repeat of the request within the
	// store's idempotency window answer with the first job.
	IdempotencyKey string
	// Delay or RunAt (not both) schedule the job for later; a RunAt past
	// runs it now.
	Delay time.Duration
	RunAt time.Time
	// SubmittedBy names who submitted it (an API key's name), for the
	// record.
	SubmittedBy string
	// Unique, if set, makes the job the only one of its type and key for a
	// while (docs/unique.md): a zero For means jobs.DefaultUniqueFor (it
	// is required with jobs.UniqueAlways), an empty While means
	// jobs.UniqueUntilDone, an empty OnConflict jobs.OnConflictExisting.
	Unique *jobs.Unique
}

// Error is a refused request: the field at fault, a code (the HTTP API's
// error codes: missing_field, invalid_field, invalid_encoding,
// unknown_type, invalid_payload) and a message for people. Nothing was
// recorded or published for it.
type Error struct {
	Code, Field, Message string
	// Unknown says Field is a payload field its type's schema does not
	// take at all, whatever its value (schema.FieldError.Unknown).
	Unknown bool
}

func (e *Error) Error() string { return e.Message }

func refuse(code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Build checks a request against its type and the producer's limits and
// returns the job it asks for, not yet recorded. A refusal is an *Error.
func (p *Producer) Build(ctx context.Context, req Request) (*jobs.Job, error) {
	if req.Type == "" {
		return nil, refuse("missing_field", "type", "type is required, such as \"sys.echo\"")
	}
	if !jobs.ValidTypeName(req.Type) {
		return nil, refuse("invalid_field", "type", "type %q is not a valid type name (lower-case words joined by dots)", req.Type)
	}
	te, err := p.types.get(ctx, req.Type)
	if err != nil {
		return nil, err
	}
	t := te.t

	payload := bytes.TrimSpace(req.Payload)
	if len(payload) == 0 || string(payload) == "null" {
		payload = []byte("{}")
	}
	switch {
	case !utf8.Valid(payload):
		return nil, refuse("invalid_encoding", "payload", "payload: not UTF-8 text")
	case !json.Valid(payload):
		return nil, refuse("invalid_field", "payload", "payload is not valid JSON")
	case payload[0] != '{':
		return nil, refuse("invalid_field", "payload", "payload must be a JSON object")
	}
	if err := te.validatePayload(payload); err != nil {
		return nil, err
	}

	// A job may lower its type's defaults, and raise them only as far as
	// the type declares (t has its maxima filled in).
	maxAttempts := t.MaxAttempts
	if req.MaxAttempts != 0 {
		if req.MaxAttempts < 1 || req.MaxAttempts > t.MaxAttemptsLimit {
			return nil, refuse("invalid_field", "max_attempts", "max_attempts must be a whole number from 1 to %d, the most type %s allows", t.MaxAttemptsLimit, t.Name)
		}
		maxAttempts = req.MaxAttempts
	}
	timeout := t.Timeout
	if req.Timeout != 0 {
		if req.Timeout < time.Second || jobs.Duration(req.Timeout) > t.MaxTimeout {
			return nil, refuse("invalid_field", "timeout", "timeout must be from 1s to %s, the most type %s allows", t.MaxTimeout.Std(), t.Name)
		}
		timeout = jobs.Duration(req.Timeout)
	}

	if !jobs.ValidPriority(req.Priority) {
		return nil, refuse("invalid_field", "priority", "priority must be a whole number from 0 to %d", jobs.MaxPriority)
	}
	if len(req.Metadata) > MaxMetadataEntries {
		return nil, refuse("invalid_field", "metadata", "metadata has more than %d entries", MaxMetadataEntries)
	}
	var metadata map[string]string
	for k, v := range req.Metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, refuse("invalid_encoding", "metadata", "metadata: keys and values must be UTF-8 text")
		}
		if k == "" || len(k) > MaxMetadataKey || len(v) > MaxMetadataValue {
			return nil, refuse("invalid_field", "metadata."+k, "metadata keys must be 1 to %d bytes and values at most %d", MaxMetadataKey, MaxMetadataValue)
		}
		if metadata == nil {
			metadata = make(map[string]string, len(req.Metadata))
		}
		metadata[k] = v
	}

	if !utf8.ValidString(req.IdempotencyKey) {
		return nil, refuse("invalid_encoding", "idempotency_key", "idempotency_key: not UTF-8 text")
	}
	if len(req.IdempotencyKey) > MaxIdempotencyKey {
		return nil, refuse("invalid_field", "idempotency_key", "idempotency_key must be at most %d bytes", MaxIdempotencyKey)
	}

	if b := req.Backoff; b != nil {
		if err := b.Validate(); err != nil {
			return nil, refuse("invalid_field", "backoff", "%v", err)
		}
		if b.Base.Std() > p.maxDelay || b.Max.Std() > p.maxDelay {
			// A retry that far off would keep the record as long.
			return nil, refuse("invalid_field", "backoff", "backoff: base and max must be at most %s (api.max_delay)", p.maxDelay)
		}
	}

	unique, err := checkUnique(req.Unique)
	if err != nil {
		return nil, err
	}

	now := p.now().UTC().Truncate(time.Millisecond)
	delay, err := p.delay(req, now)
	if err != nil {
		return nil, err
	}
	job := &jobs.Job{
		ID:             jobs.NewID(),
		Type:           t.Name,
		Pool:           t.Pool,
		Status:         jobs.StatusQueued,
		Payload:        json.RawMessage(payload),
		MaxAttempts:    maxAttempts,
		Timeout:        timeout,
		Backoff:        req.Backoff,
		Metadata:       metadata,
		Priority:       req.Priority,
		IdempotencyKey: req.IdempotencyKey,
		Unique:         unique,
		SubmittedBy:    req.SubmittedBy,
		CreatedAt:      now,
	}
	if delay >= jobs.DelayUnit {
		at := now.Add(delay)
		job.Status, job.ScheduledAt = jobs.StatusScheduled, &at
	}
	return job, nil
}

// checkUnique checks a request's unique settings and fills in their
// defaults; nil for none.
func checkUnique(u *jobs.Unique) (*jobs.Unique, error) {
	if u == nil {
		return nil, nil
	}
	out := *u
	if err := jobs.ValidUniqueKey(out.Key); err != nil {
		code := "invalid_field"
		switch {
		case out.Key == "":
			code = "missing_field"
		case !utf8.ValidString(out.Key):
			code = "invalid_encoding"
		}
		return nil, refuse(code, "unique.key", "%v", err)
	}
	if out.While == "" {
		out.While = jobs.UniqueUntilDone
	}
	if !out.While.Valid() {
		return nil, refuse("invalid_field", "unique.while", "unique.while must be one of queued, running, until_done or always, got %q", out.While)
	}
	switch {
	case out.For == 0 && out.While == jobs.UniqueAlways:
		return nil, refuse("missing_field", "unique.for", "unique.for is required with while always: the window in which one job of the key may run, such as \"1h\"")
	case out.For == 0:
		out.For = jobs.Duration(jobs.DefaultUniqueFor)
	case out.For.Std() < time.Second || out.For.Std() > jobs.MaxUniqueFor:
		return nil, refuse("invalid_field", "unique.for", "unique.for must be from 1s to %s (30 days)", jobs.MaxUniqueFor)
	}
	switch {
	case out.OnConflict == "":
		out.OnConflict = jobs.OnConflictExisting
	case !out.OnConflict.Valid():
		return nil, refuse("invalid_field", "unique.on_conflict", "unique.on_conflict must be existing or error, got %q", out.OnConflict)
	}
	return &out, nil
}

// delay is how long from now the request's job waits, at most maxDelay.
func (p *Producer) delay(req Request, now time.Time) (time.Duration, error) {
	switch {
	case req.Delay != 0 && !req.RunAt.IsZero():
		return 0, refuse("invalid_field", "run_at", "send delay or run_at, not both")
	case req.Delay != 0:
		if req.Delay < 0 || req.Delay > p.maxDelay {
			return 0, refuse("invalid_field", "delay", "delay must be from 0s to %s (api.max_delay)", p.maxDelay)
		}
		return req.Delay, nil
	case !req.RunAt.IsZero():
		d := req.RunAt.Sub(now)
		if d > p.maxDelay {
			return 0, refuse("invalid_field", "run_at", "run_at is more than %s away (api.max_delay)", p.maxDelay)
		}
		return max(d, 0), nil // a time past runs now
	}
	return 0, nil
}

// Submit builds the job a request asks for and accepts it: it returns once
// the job is recorded and the broker has confirmed its message, or with
// why not (an *Error for a refused request; queue.ErrUnavailable or
// store.ErrUnavailable when a server is away, with nothing kept).
func (p *Producer) Submit(ctx context.Context, req Request) (Result, error) {
	j, err := p.Build(ctx, req)
	if err != nil {
		return Result{}, err
	}
	res, err := p.Accept(ctx, []*jobs.Job{j}, "")
	if err != nil {
		return Result{}, err
	}
	return res[0], res[0].Err
}

// SubmitMany submits several requests as one batch: one Redis round trip
// and one pipelined publish for all. A refused request does not stop the
// others: its Result carries the refusal. The error is for a batch that
// could not be taken at all (a server away), and then nothing was kept.
func (p *Producer) SubmitMany(ctx context.Context, reqs []Request) ([]Result, error) {
	out := make([]Result, len(reqs))
	var (
		valid []*jobs.Job
		index []int
	)
	for i, req := range reqs {
		j, err := p.Build(ctx, req)
		var refused *Error
		if errors.As(err, &refused) {
			out[i].Err = err
			continue
		}
		if err != nil {
			return nil, err // Redis away: nothing can be taken
		}
		valid, index = append(valid, j), append(index, i)
	}
	res, err := p.Accept(ctx, valid, "")
	if err != nil {
		return nil, err
	}
	for k, r := range res {
		out[index[k]] = r
	}
	return out, nil
}
