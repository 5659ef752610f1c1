package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenhq/warren/jobs"
)

// Header names of a job message; docs/protocol.md documents them.
const (
	headerMaxAttempts = "x-warren-max-attempts"
	headerTimeoutMS   = "x-warren-timeout-ms"
	headerTraceParent = "traceparent"
	// headerAttempts is how many attempts were made before this message
	// was published (0 for a new job). A worker runs a message only while
	// the record agrees, so a stale copy never runs an attempt twice.
	headerAttempts = "x-warren-attempts"
	// Headers of a dead letter: why the job failed, and when.
	headerErrorCode = "x-warren-error-code"
	headerError     = "x-warren-error"
	headerFailedAt  = "x-warren-failed-at"
	// headerDeliveryCount is set by quorum queues on redelivered messages.
	headerDeliveryCount = "x-delivery-count"
)

// ContentType is the content type of every job message.
const ContentType = "application/json"

// Message is one job as it travels through RabbitMQ.
type Message struct {
	ID, Type string
	// Priority routes the message to its pool's lane (jobs.Lane): the
	// body carries it, so every copy made from the job (a retry, a parked
	// copy, a rescue, a replay) keeps the lane.
	Priority int
	Body     []byte
	headers  amqp.Table
	Time     time.Time
	// Delay, when at least jobs.DelayUnit, sends the message through the
	// delay levels: it reaches its pool that much later.
	Delay time.Duration
	// DeadPool, when set, sends the message to that pool's dead-letter
	// queue instead of to its pool.
	DeadPool string
}

// body is the JSON body of a job message: what a worker needs to run the job
// without reading its record first.
type body struct {
	ID          string            `json:"id"`
	Type        string            `json:"type"`
	Payload     json.RawMessage   `json:"payload"`
	MaxAttempts int               `json:"max_attempts"`
	TimeoutMS   int64             `json:"timeout_ms"`
	Backoff     *jobs.Backoff     `json:"backoff,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Priority    int               `json:"priority,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
}

// NewMessage encodes a job as a message; j.Attempt is the number of
// attempts made so far. traceparent, if not empty, is a W3C trace context
// passed on to the worker.
func NewMessage(j *jobs.Job, traceparent string) (Message, error) {
	b, err := json.Marshal(body{
		ID:          j.ID,
		Type:        j.Type,
		Payload:     j.Payload,
		MaxAttempts: j.MaxAttempts,
		TimeoutMS:   j.Timeout.Std().Milliseconds(),
		Backoff:     j.Backoff,
		Metadata:    j.Metadata,
		Priority:    j.Priority,
		CreatedAt:   j.CreatedAt,
	})
	if err != nil {
		return Message{}, fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	h := amqp.Table{
		headerMaxAttempts: int32(j.MaxAttempts),
		headerTimeoutMS:   j.Timeout.Std().Milliseconds(),
		headerAttempts:    int32(j.Attempt),
	}
	if traceparent != "" {
		h[headerTraceParent] = traceparent
	}
	return Message{ID: j.ID, Type: j.Type, Priority: j.Priority, Body: b, headers: h, Time: j.CreatedAt}, nil
}

// DeadLetterOf makes m the dead letter of its job, failed for good with an
// error code and message at the given time: bound for pool's dead-letter
// queue, with the error in its headers (docs/protocol.md, section 7.4).
func (m *Message) DeadLetterOf(pool, code, message string, at time.Time) {
	if m.headers == nil {
		m.headers = amqp.Table{}
	}
	m.DeadPool = pool
	m.headers[headerErrorCode] = code
	m.headers[headerError] = message
	m.headers[headerFailedAt] = strconv.FormatInt(at.UnixMilli(), 10)
}

// route returns where a message goes: its pool's lane by type and
// priority, the first delay level, or a pool's dead letters.
func (m Message) route(ns jobs.Namespace) (exchange, key string) {
	switch {
	case m.DeadPool != "":
		return ns.DeadExchange(), jobs.DeadRoutingKey("failed", m.DeadPool)
	case m.Delay >= jobs.DelayUnit:
		return ns.DelayEntry(m.Delay), ns.DelayRoutingKey(m.Delay, ns.RoutingKey(m.Type, m.Priority))
	}
	return ns.Exchange(), ns.RoutingKey(m.Type, m.Priority)
}

func (m Message) publishing() amqp.Publishing {
	return amqp.Publishing{
		ContentType:  ContentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    m.ID,
		Type:         m.Type,
		Timestamp:    m.Time,
		Headers:      m.headers,
		Body:         m.Body,
	}
}

// ErrMalformed means a message is not a job message warren can read.
var ErrMalformed = errors.New("malformed job message")

// DecodeJob reads the job a message carries. A body that is not valid
// UTF-8 is malformed: Go's JSON decoder would quietly turn its bad bytes
// into U+FFFD and run the job on input nobody sent.
func DecodeJob(data []byte) (*jobs.Job, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not valid UTF-8", ErrMalformed)
	}
	var b body
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !jobs.ValidID(b.ID) || b.Type == "" {
		return nil, fmt.Errorf("%w: missing id or type", ErrMalformed)
	}
	if !jobs.ValidPriority(b.Priority) {
		return nil, fmt.Errorf("%w: priority %d out of range (0 to %d)", ErrMalformed, b.Priority, jobs.MaxPriority)
	}
	return &jobs.Job{
		ID:          b.ID,
		Type:        b.Type,
		Status:      jobs.StatusQueued,
		Payload:     b.Payload,
		MaxAttempts: b.MaxAttempts,
		Timeout:     jobs.Duration(time.Duration(b.TimeoutMS) * time.Millisecond),
		Backoff:     b.Backoff,
		Metadata:    b.Metadata,
		Priority:    b.Priority,
		CreatedAt:   b.CreatedAt,
	}, nil
}
