package workers

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/metrics"
	"github.com/warrenhq/warren/telemetry"
)

// instruments are what a Worker counts its jobs with and traces them to.
type instruments struct {
	runs   *metrics.Runs
	tracer trace.Tracer // nil: no spans, at no cost
}

func newInstruments(cfg Config) instruments {
	in := instruments{runs: cfg.Runs}
	if in.runs == nil {
		in.runs = metrics.NewRuns("")
	}
	if cfg.TracerProvider != nil {
		in.tracer = cfg.TracerProvider.Tracer("github.com/warrenhq/warren/workers")
	}
	return in
}

// declare makes a registered type's figures and its pool's, so that they
// are served (at zero) before the first job: a counter that appears only
// with its first increment hides that increment from rate().
func (in instruments) declare(t jobs.Type) {
	in.runs.Type(t.Name)
	in.runs.Pool(t.Pool)
}

// run runs an attempt's handler: inside its span when tracing (the child
// of the span that published the job, named by the message's traceparent,
// and in the handler's context), counted in its pool's running jobs, and
// timed. due is when the job was due (zero if the record does not say).
func (w *Worker) run(ctx context.Context, a attempt, h jobs.Handler, due time.Time) (any, error) {
	job := a.job
	tm := w.obs.runs.Type(job.Type)
	if !due.IsZero() && job.StartedAt != nil {
		tm.Waited(job.StartedAt.Sub(due))
	}
	var span trace.Span
	if w.obs.tracer != nil {
		ctx, span = w.obs.tracer.Start(telemetry.Extract(ctx, a.traceparent), "run "+job.Type,
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				attribute.String("messaging.system", "rabbitmq"),
				attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.message.id", job.ID),
				attribute.String("warren.job.id", job.ID),
				attribute.String("warren.job.type", job.Type),
				attribute.Int("warren.job.attempt", job.Attempt),
				attribute.String("warren.pool", a.pool),
				attribute.String("warren.worker", w.cfg.ID),
			))
	}
	pm := w.obs.runs.Pool(a.pool)
	pm.Running.Inc()
	start := time.Now()
	result, err := safeRun(ctx, h, job)
	took := time.Since(start)
	pm.Running.Dec()
	tm.Ran(took)
	if span != nil {
		if err != nil {
			code := jobs.ErrorCode(err)
			var p *recovered
			if errors.As(err, &p) {
				code = "panic"
			} else if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				code = "timeout"
			}
			span.SetAttributes(attribute.String("warren.error.code", code))
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
	return result, err
}

// outcome counts an attempt that ended as status (see metrics.TypeRuns).
// A message too broken to name its type is counted among the pool's dead
// letters alone.
func (in instruments) outcome(typ string, status jobs.Status) {
	if typ != "" {
		in.runs.Type(typ).Outcome(status)
	}
}

// limited counts a job its type's rate limit held back (parked).
func (in instruments) limited(typ string) {
	in.runs.Type(typ).Limited.Inc()
}

// deadLettered counts a job of pool put in (or found in) its dead-letter
// queue.
func (in instruments) deadLettered(pool string) {
	in.runs.Pool(pool).DeadLetters.Inc()
}

// poolOf returns the pool a registered type belongs to; "" for a type this
// process does not handle.
func (w *Worker) poolOf(typ string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.types[typ].t.Pool
}

// Runs returns the figures the worker counts its jobs in (Config.Runs, or
// its own), to serve with its other metrics.
func (w *Worker) Runs() *metrics.Runs { return w.obs.runs }
