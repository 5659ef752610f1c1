// Package producer submits jobs with warren's promise: a job is accepted
// only once Redis holds its record and RabbitMQ has confirmed its message,
// and a job that is not accepted leaves nothing behind. The HTTP API is a
// thin layer over it, and a Go program enqueues in-process with it, with the
// same checks and the same guarantee:
//
//	p := producer.New(producer.Config{}, broker, st)
//	res, err := p.Submit(ctx, producer.Request{Type: "sys.echo", Payload: json.RawMessage(`{"n":1}`)})
package producer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/metrics"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/telemetry"
)

// Broker is what the producer needs of RabbitMQ.
type Broker interface {
	Publish(ctx context.Context, msgs []queue.Message) ([]error, error)
	Connected() bool
	Namespace() jobs.Namespace
}

// Store is what the producer needs of Redis.
type Store interface {
	Create(ctx context.Context, js []*jobs.Job) ([]store.Created, error)
	Discard(ctx context.Context, js []*jobs.Job) error
	Confirm(ctx context.Context, js []*jobs.Job) error
	TypeStore
}

// TypeStore is where the producer reads the types workers declared.
type TypeStore interface {
	Type(ctx context.Context, name string) (jobs.Type, error)
	Types(ctx context.Context) ([]jobs.Type, error)
}

var (
	_ Broker = (*queue.Broker)(nil)
	_ Store  = (*store.Store)(nil)
)

// ErrNoRoute means no queue is bound for a job's type: no worker of its
// pool has ever run, so nobody would take the job. It was not accepted.
var ErrNoRoute = errors.New("no queue is bound for the job's type: start a worker of its pool")

// Config configures a Producer. Zero fields take the defaults noted.
type Config struct {
	// Logger receives what cannot be undone cleanly (a record left after a
	// failure); nil means slog.Default().
	Logger *slog.Logger
	// TracerProvider, if set, traces each publish as a producer span whose
	// traceparent the jobs' messages carry to the worker. Nil means no
	// spans: a traceparent given to Accept goes on the messages as it came.
	TracerProvider trace.TracerProvider
	// Submissions, if set, counts the jobs accepted, by type.
	Submissions *metrics.Submissions
	// MaxDelay bounds how far ahead a job may be due (its delay or run_at)
	// and its backoff's waits, since its record is kept until then; at most
	// jobs.MaxDelay. Zero means 30 days.
	MaxDelay time.Duration
	// Now tells the time; nil means time.Now.
	Now func() time.Time
}

// Producer submits jobs. It is safe for concurrent use.
type Producer struct {
	broker   Broker
	store    Store
	types    *types
	log      *slog.Logger
	tracer   trace.Tracer // nil: no spans, at no cost
	count    *metrics.Submissions
	maxDelay time.Duration
	now      func() time.Time
}

// New returns a Producer over the given broker and store.
func New(cfg Config, b Broker, st Store) *Producer {
	p := &Producer{broker: b, store: st, log: cmp.Or(cfg.Logger, slog.Default()), count: cfg.Submissions,
		maxDelay: min(cmp.Or(cfg.MaxDelay, 30*24*time.Hour), jobs.MaxDelay), now: cfg.Now}
	if p.now == nil {
		p.now = time.Now
	}
	p.types = &types{st: st, now: p.now, entries: map[string]*typeEntry{}}
	if cfg.TracerProvider != nil {
		p.tracer = cfg.TracerProvider.Tracer("github.com/warrenhq/warren/producer")
	}
	return p
}

// Forget drops what the producer knows of a type ("" for every type), so
// that the next job of it reads the declaration again: call it when a
// worker announces a declaration (store.Handlers.Type). Without it a
// changed declaration is seen within 10 seconds.
func (p *Producer) Forget(name string) { p.types.forget(name) }

// Result is what became of one job.
type Result struct {
	// Job is the job accepted, or, when Existing, the earlier job with the
	// same idempotency key, or holding the same unique key, as it was
	// recorded. Nil when Err is set.
	Job *jobs.Job
	// Existing says an earlier job had the same idempotency key, or holds
	// the job's unique key: nothing new was recorded or published.
	Existing bool
	// Unique says that Existing is for the unique key.
	Unique bool
	// Err says why this job was not accepted: ErrNoRoute, a refusal of
	// the broker (queue.ErrNacked) or of the store (such as
	// store.ErrIdempotencyConflict), or a *UniqueConflictError for a
	// duplicate refused (jobs.OnConflictError). Its record was removed
	// again.
	Err error
}

// ErrUniqueConflict is what a *UniqueConflictError is: a job's unique key
// was held and the job asked to be refused then (jobs.OnConflictError).
var ErrUniqueConflict = errors.New("the job's unique key is held by another job")

// UniqueConflictError refuses a job whose unique key another job holds,
// naming that job. Nothing was recorded or published.
type UniqueConflictError struct {
	// Holder is the job that holds the key, as recorded.
	Holder *jobs.Job
}

func (e *UniqueConflictError) Error() string {
	return fmt.Sprintf("unique key %q of type %s is held by job %s (%s)", e.Holder.Unique.Key, e.Holder.Type, e.Holder.ID, e.Holder.Status)
}

func (e *UniqueConflictError) Is(target error) bool { return target == ErrUniqueConflict }

// Accept records jobs that are built and valid (Build makes them) and
// publishes them with publisher confirms: one Redis round trip, and one
// pipelined publish for all. A job the broker did not confirm is removed
// again. The error is non-nil when nothing could be accepted: the broker
// or Redis is unavailable (queue.ErrUnavailable, store.ErrUnavailable),
// and then nothing was kept. traceparent, if any, is the W3C trace context
// the jobs' run continues.
func (p *Producer) Accept(ctx context.Context, js []*jobs.Job, traceparent string) ([]Result, error) {
	out := make([]Result, len(js))
	if len(js) == 0 {
		return out, nil
	}
	// Check the broker first: when it is down, nothing is written at all.
	if !p.broker.Connected() {
		return nil, queue.ErrUnavailable
	}
	created, err := p.store.Create(ctx, js)
	if err != nil {
		// Some records may have been written before the failure (a reply
		// lost, say); none was published, so none may stay.
		if derr := p.store.Discard(context.WithoutCancel(ctx), js); derr != nil {
			p.log.Warn("cannot remove records of jobs whose creation failed", "err", derr, "jobs", len(js))
		}
		return nil, err
	}
	ctx, traceparent, span := p.startPublish(ctx, traceparent, len(js))
	defer span.End()
	var (
		fresh []*jobs.Job
		msgs  []queue.Message
		index []int
	)
	for i, c := range created {
		switch {
		case c.Err != nil:
			out[i].Err = c.Err
		case c.Existing && c.Unique && js[i].Unique != nil && js[i].Unique.OnConflict == jobs.OnConflictError:
			out[i].Err = &UniqueConflictError{Holder: c.Job}
		case c.Existing:
			out[i] = Result{Job: c.Job, Existing: true, Unique: c.Unique}
		default:
			m, err := queue.NewMessage(c.Job, traceparent)
			if err != nil {
				out[i].Err = err
				continue
			}
			if at := c.Job.ScheduledAt; at != nil {
				m.Delay = at.Sub(c.Job.CreatedAt)
			}
			fresh, msgs, index = append(fresh, c.Job), append(msgs, m), append(index, i)
		}
	}
	if len(msgs) == 0 {
		return out, nil
	}
	errs, err := p.broker.Publish(ctx, msgs)
	endPublish(span, err, errs)
	cleanup := context.WithoutCancel(ctx)
	if err != nil {
		if derr := p.store.Discard(cleanup, fresh); derr != nil {
			p.log.Error("cannot remove records of unpublished jobs", "err", derr, "jobs", len(fresh))
		}
		return nil, err
	}
	var failed []*jobs.Job
	why := map[string]error{}
	for k, perr := range errs {
		i := index[k]
		if perr == nil {
			out[i].Job = fresh[k]
			if p.count != nil {
				p.count.Add(fresh[k].Type, 1)
			}
			continue
		}
		failed = append(failed, fresh[k])
		if errors.Is(perr, queue.ErrUnroutable) {
			perr = ErrNoRoute
		}
		out[i].Err = perr
		why[fresh[k].ID] = perr
	}
	if err := p.store.Discard(cleanup, failed); err != nil {
		p.log.Error("cannot remove records of unpublished jobs", "err", err, "jobs", len(failed))
	}
	confirmed := make([]*jobs.Job, 0, len(fresh)-len(failed))
	for k, perr := range errs {
		if perr == nil {
			confirmed = append(confirmed, fresh[k])
		}
	}
	if err := p.store.Confirm(cleanup, confirmed); err != nil {
		// Costs a duplicate submission a wait (store.Create), nothing more.
		p.log.Warn("cannot mark jobs confirmed", "err", err, "jobs", len(confirmed))
	}
	sameCall(out, why)
	return out, nil
}

// sameCall gives a job answered with an earlier job of the same call (a
// batch whose entries share a unique or idempotency key) the earlier job's
// fate when that one was not accepted (why: its error, by id): it was
// discarded, so it cannot stand for the other.
func sameCall(out []Result, why map[string]error) {
	if len(why) == 0 {
		return
	}
	for i, r := range out {
		id := ""
		var conflict *UniqueConflictError
		switch {
		case r.Existing && r.Job != nil:
			id = r.Job.ID
		case errors.As(r.Err, &conflict):
			id = conflict.Holder.ID
		}
		if err, ok := why[id]; ok {
			out[i] = Result{Err: err}
		}
	}
}

// startPublish starts the span of publishing n jobs, the child of ctx's
// span, and returns its context and the traceparent the messages carry so
// that the worker's run joins the trace. Untraced, it returns ctx, the
// traceparent given (passed on as it came) and a span that does nothing.
func (p *Producer) startPublish(ctx context.Context, traceparent string, n int) (context.Context, string, trace.Span) {
	if p.tracer == nil {
		return ctx, traceparent, trace.SpanFromContext(context.Background())
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		// Not under a span of the caller's: continue the given trace, if any.
		ctx = telemetry.Extract(ctx, traceparent)
	}
	exchange := p.broker.Namespace().Exchange()
	ctx, span := p.tracer.Start(ctx, "publish "+exchange,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "rabbitmq"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", exchange),
			attribute.Int("messaging.batch.message_count", n),
		))
	return ctx, telemetry.TraceParent(ctx), span
}

// endPublish records on the publish span what the broker answered.
func endPublish(span trace.Span, err error, errs []error) {
	if !span.IsRecording() {
		return
	}
	failed := 0
	for _, e := range errs {
		if e != nil {
			failed++
		}
	}
	switch {
	case err != nil:
		span.SetStatus(codes.Error, err.Error())
	case failed > 0:
		span.SetAttributes(attribute.Int("warren.publish.refused", failed))
		span.SetStatus(codes.Error, "the broker refused some messages")
	}
}
