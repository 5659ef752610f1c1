package workers_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/metrics"
	"github.com/warrenhq/warren/workers"
)

// gather returns the series of c as "name{label=value,…}" → value (the
// sample count for a histogram).
func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				if l.GetName() != metrics.LabelNamespace {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
			}
			out[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// records keeps the log records a worker writes, with their attributes
// (those added by With included), for checks of what every line names.
type records struct {
	mu    sync.Mutex
	lines []map[string]slog.Value
}

// recorder is a slog.Handler writing to records, and on to next.
type recorder struct {
	to    *records
	attrs []slog.Attr
	next  slog.Handler
}

func (r recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r recorder) Handle(ctx context.Context, rec slog.Record) error {
	line := map[string]slog.Value{"msg": slog.StringValue(rec.Message)}
	for _, a := range r.attrs {
		line[a.Key] = a.Value
	}
	rec.Attrs(func(a slog.Attr) bool { line[a.Key] = a.Value; return true })
	r.to.mu.Lock()
	r.to.lines = append(r.to.lines, line)
	r.to.mu.Unlock()
	return r.next.Handle(ctx, rec)
}

func (r recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return recorder{r.to, append(append([]slog.Attr(nil), r.attrs...), as...), r.next.WithAttrs(as)}
}

func (r recorder) WithGroup(string) slog.Handler { return r }

// The worker counts each attempt by type and outcome, times runs and
// waits, counts dead letters by pool and shows its running jobs; every log
// line of a job's work names the job, its type, its pool and the worker.
func TestJobMetricsAndLogs(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declarePool(t, env, "m.ok", "m.flaky", "m.cancel")
	ok := submit(t, env, "m.ok", `{}`, 3)
	flaky := submitWith(t, env, "m.flaky", `{}`, 1, 2) // fails twice: retried, then failed
	cancel := submit(t, env, "m.cancel", `{}`, 1)[0]

	rec := &records{}
	runs := metrics.NewRuns(env.NS)
	running := make(chan struct{})
	release := make(chan struct{})
	w := workers.New(workers.Config{ID: "w-metrics", Runs: runs, Logger: slog.New(recorder{to: rec, next: env.Log.Handler()})}, env.Broker, env.Store)
	for _, h := range []handler{
		{typ("m.ok", time.Minute), func(context.Context, *jobs.Job) (any, error) { return "fine", nil }},
		{typ("m.flaky", time.Minute), func(context.Context, *jobs.Job) (any, error) {
			return nil, jobs.RetryAfter(errors.New("not yet"), 0)
		}},
		{typ("m.cancel", time.Minute), func(ctx context.Context, _ *jobs.Job) (any, error) {
			close(running)
			select {
			case <-ctx.Done():
			case <-release:
			}
			return nil, ctx.Err()
		}},
	} {
		if err := w.Handle(h.t, h.f); err != nil {
			t.Fatal(err)
		}
	}
	if w.Runs() != runs {
		t.Fatal("Runs does not return the configured figures")
	}
	// Declared types and pools are served at zero before any job runs.
	before := gather(t, runs)
	for _, k := range []string{"warren_jobs_completed_total{outcome=succeeded,type=m.ok}", "warren_jobs_running{pool=test}", "warren_dead_letters_total{pool=test}"} {
		if v, ok := before[k]; !ok || v != 0 {
			t.Errorf("before any job, %s = %v (present %v), want 0", k, v, ok)
		}
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(release)
		if err := w.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	<-running
	if got := gather(t, runs)["warren_jobs_running{pool=test}"]; got != 1 {
		t.Errorf("running while m.cancel runs = %v, want 1", got)
	}
	if _, err := env.Store.Cancel(context.Background(), cancel, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitTerminal(t, env, append(append(ok, flaky...), cancel))
	want := map[string]float64{
		"warren_jobs_completed_total{outcome=succeeded,type=m.ok}":    3,
		"warren_jobs_completed_total{outcome=retried,type=m.flaky}":   1,
		"warren_jobs_completed_total{outcome=failed,type=m.flaky}":    1,
		"warren_jobs_completed_total{outcome=canceled,type=m.cancel}": 1,
		"warren_job_run_seconds{type=m.ok}":                           3,
		"warren_job_run_seconds{type=m.flaky}":                        2,
		"warren_job_wait_seconds{type=m.ok}":                          3,
		"warren_jobs_running{pool=test}":                              0,
		"warren_dead_letters_total{pool=test}":                        1,
	}
	var mismatch []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got := gather(t, runs)
		mismatch = mismatch[:0]
		for k, v := range want {
			if got[k] != v {
				mismatch = append(mismatch, fmt.Sprintf("%s = %v, want %v", k, got[k], v))
			}
		}
		if len(mismatch) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the figures:\n%s", strings.Join(mismatch, "\n"))
		}
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	jobLines := 0
	for _, line := range rec.lines {
		if _, ok := line["job"]; !ok {
			continue
		}
		jobLines++
		for _, k := range []string{"type", "pool", "worker"} {
			if _, ok := line[k]; !ok {
				t.Errorf("a job's log line lacks %s: %v", k, line)
			}
		}
	}
	if jobLines == 0 {
		t.Error("no log line named a job")
	}
}

// One trace joins the API's request, its publish and the worker's run, in
// process; the handler's context carries the run's span.
func TestTraceAcrossAPIAndWorker(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	var (
		mu         sync.Mutex
		handlerCtx []trace.SpanContext
	)
	w := workers.New(workers.Config{ID: "w-trace", TracerProvider: tp, Logger: env.Log}, env.Broker, env.Store)
	if err := w.Handle(typ("tr.ok", time.Minute), jobs.HandlerFunc(func(ctx context.Context, _ *jobs.Job) (any, error) {
		mu.Lock()
		handlerCtx = append(handlerCtx, trace.SpanContextFromContext(ctx))
		mu.Unlock()
		return nil, nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	testenv.Eventually(t, 20*time.Second, "worker ready", w.Ready)

	srv, err := api.New(api.Config{Addr: "127.0.0.1:0", Logger: env.Log, TracerProvider: tp}, env.Broker, env.Store)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })

	// The caller's trace: the request's traceparent.
	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/v1/jobs", strings.NewReader(`{"type":"tr.ok","payload":{}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("submit: %s", resp.Status)
	}
	id := strings.TrimPrefix(resp.Header.Get("Location"), "/v1/jobs/")
	waitTerminal(t, env, []string{id})

	var server, publish, run sdktrace.ReadOnlySpan
	testenv.Eventually(t, 10*time.Second, "three spans", func() bool {
		for _, s := range exp.GetSpans().Snapshots() {
			switch {
			case s.Name() == "POST /v1/jobs":
				server = s
			case strings.HasPrefix(s.Name(), "publish "):
				publish = s
			case s.Name() == "run tr.ok":
				run = s
			}
		}
		return server != nil && publish != nil && run != nil
	})
	for _, s := range []sdktrace.ReadOnlySpan{server, publish, run} {
		if got := s.SpanContext().TraceID().String(); got != callerTrace {
			t.Errorf("span %q is in trace %s, want the caller's %s", s.Name(), got, callerTrace)
		}
	}
	if server.Parent().SpanID().String() != callerSpan || server.SpanKind() != trace.SpanKindServer {
		t.Errorf("server span: parent %s kind %s, want the caller's span %s", server.Parent().SpanID(), server.SpanKind(), callerSpan)
	}
	if publish.Parent().SpanID() != server.SpanContext().SpanID() || publish.SpanKind() != trace.SpanKindProducer {
		t.Errorf("publish span: parent %s kind %s, want the server span %s", publish.Parent().SpanID(), publish.SpanKind(), server.SpanContext().SpanID())
	}
	if run.Parent().SpanID() != publish.SpanContext().SpanID() || run.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("run span: parent %s kind %s, want the publish span %s", run.Parent().SpanID(), run.SpanKind(), publish.SpanContext().SpanID())
	}
	attrs := map[string]string{}
	for _, kv := range run.Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	if attrs["warren.job.id"] != id || attrs["warren.pool"] != pool || attrs["warren.worker"] != "w-trace" {
		t.Errorf("run span attributes: %v", attrs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handlerCtx) != 1 || handlerCtx[0].SpanID() != run.SpanContext().SpanID() {
		t.Errorf("the handler's context holds span %v, want the run span %s", handlerCtx, run.SpanContext().SpanID())
	}
}
