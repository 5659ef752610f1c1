package workers

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/warrenhq/warren/jobs"
)

// benchRun runs w.run over a handler that does nothing, b.N times.
func benchRun(b *testing.B, w *Worker, traceparent string) {
	now := time.Now()
	job := &jobs.Job{ID: jobs.NewID(), Type: "bench.noop", Attempt: 1, StartedAt: &now}
	a := attempt{w: w, pool: "bench", job: job, traceparent: traceparent}
	h := jobs.HandlerFunc(func(context.Context, *jobs.Job) (any, error) { return nil, nil })
	w.obs.declare(jobs.Type{Name: "bench.noop", Pool: "bench"})
	due := now.Add(-time.Second)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := w.run(ctx, a, h, due); err != nil {
			b.Fatal(err)
		}
		w.obs.outcome(job.Type, jobs.StatusSucceeded)
	}
}

// What the metrics (and, off, the tracing) add to each attempt: nothing
// allocated.
func BenchmarkRunUntraced(b *testing.B) {
	benchRun(b, New(Config{ID: "bench"}, nil, nil), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
}

// The same with tracing on (spans to an in-memory exporter), for
// comparison.
func BenchmarkRunTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(tracetest.NewNoopExporter())))
	defer tp.Shutdown(context.Background())
	benchRun(b, New(Config{ID: "bench", TracerProvider: tp}, nil, nil), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
}

func TestUntracedRunAllocatesNothing(t *testing.T) {
	w := New(Config{ID: "allocs"}, nil, nil)
	now := time.Now()
	job := &jobs.Job{ID: jobs.NewID(), Type: "a.noop", Attempt: 1, StartedAt: &now}
	a := attempt{w: w, pool: "a", job: job}
	h := jobs.HandlerFunc(func(context.Context, *jobs.Job) (any, error) { return nil, nil })
	w.obs.declare(jobs.Type{Name: "a.noop", Pool: "a"})
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		_, _ = w.run(ctx, a, h, now)
		w.obs.outcome(job.Type, jobs.StatusSucceeded)
		w.obs.deadLettered("a")
	}); n != 0 {
		t.Errorf("an untraced run allocates %v times for its metrics, want 0", n)
	}
}
