package api_test

import (
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/internal/testenv"
)

// A traced submission: a server span with the answer's status, a publish
// span under it whose traceparent the message carries, and the job counted
// in /metrics; an oversized body still gets its 413.
func TestTracedSubmission(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	f := setup(t, api.Config{TracerProvider: tp, MaxBodyBytes: 4096})

	r := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","payload":{"n":1}}`)
	if r.status != 202 {
		t.Fatalf("submit: %d %s", r.status, r.body)
	}
	var server, publish sdktrace.ReadOnlySpan
	for _, s := range exp.GetSpans().Snapshots() {
		switch {
		case s.Name() == "POST /v1/jobs":
			server = s
		case strings.HasPrefix(s.Name(), "publish "):
			publish = s
		}
	}
	if server == nil || publish == nil {
		t.Fatalf("spans: %v", exp.GetSpans().Snapshots())
	}
	if server.Parent().IsValid() || server.SpanKind() != trace.SpanKindServer {
		t.Errorf("server span without a traceparent: parent %v kind %v, want a root server span", server.Parent(), server.SpanKind())
	}
	attrs := map[string]string{}
	for _, kv := range server.Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	if attrs["http.response.status_code"] != "202" || attrs["http.route"] != "POST /v1/jobs" {
		t.Errorf("server span attributes %v", attrs)
	}
	if publish.Parent().SpanID() != server.SpanContext().SpanID() || publish.SpanKind() != trace.SpanKindProducer {
		t.Errorf("publish span: parent %v kind %v", publish.Parent(), publish.SpanKind())
	}
	msg, ok, err := testenv.Channel(t).Get(f.env.NS.Queue("sys"), true)
	if err != nil || !ok {
		t.Fatalf("get the message: %v %v", ok, err)
	}
	want := "00-" + publish.SpanContext().TraceID().String() + "-" + publish.SpanContext().SpanID().String() + "-01"
	if got := msg.Headers["traceparent"]; got != want {
		t.Errorf("the message's traceparent %v, want the publish span's %s", got, want)
	}

	m := do(t, "GET", f.url+"/metrics", nil, "")
	if !strings.Contains(string(m.body), `warren_jobs_submitted_total{type="sys.echo",warren_namespace="`+string(f.env.NS)+`"} 1`) {
		t.Errorf("/metrics does not count the job:\n%s", m.body)
	}

	big := `{"type":"sys.echo","payload":{"s":"` + strings.Repeat("x", 8192) + `"}}`
	r = do(t, "POST", f.url+"/v1/jobs", nil, big)
	if r.status != 413 || r.apiError(t).Code != "too_large" {
		t.Errorf("oversized body, traced: %d %s; want 413 too_large", r.status, r.body)
	}
}
