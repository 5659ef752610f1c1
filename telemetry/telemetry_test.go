package telemetry_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/telemetry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestExporters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    []string
		wantErr string
	}{
		{name: "nothing set: off", env: nil, want: nil},
		{name: "an endpoint turns otlp on", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, want: []string{"otlp"}},
		{name: "a traces endpoint too", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, want: []string{"otlp"}},
		{name: "named", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp, Console"}, want: []string{"otlp", "console"}},
		{name: "none wins over an endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, want: nil},
		{name: "sdk disabled", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, want: nil},
		{name: "unknown exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: "zipkin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := telemetry.Exporters(env(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("exporters (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOffByDefault(t *testing.T) {
	t.Parallel()
	tr, err := telemetry.Setup(context.Background(), telemetry.Config{Getenv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Provider() != nil || tr.Exporter() != "" {
		t.Errorf("tracing is on without any OTEL_* variable: %q", tr.Exporter())
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestGRPCIsRefused(t *testing.T) {
	t.Parallel()
	_, err := telemetry.Setup(context.Background(), telemetry.Config{Getenv: env(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
	})})
	if err == nil || !strings.Contains(err.Error(), "4318") {
		t.Fatalf("err = %v, want one pointing at OTLP over HTTP", err)
	}
}

func TestTraceParentRoundTrip(t *testing.T) {
	t.Parallel()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := telemetry.Extract(context.Background(), tp)
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsRemote() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("extracted %+v", sc)
	}
	if got := telemetry.TraceParent(ctx); got != tp {
		t.Errorf("TraceParent = %q, want %q", got, tp)
	}
	for _, bad := range []string{"", "00-zz", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"} {
		if ctx := telemetry.Extract(context.Background(), bad); trace.SpanContextFromContext(ctx).IsValid() {
			t.Errorf("Extract(%q) made a valid span context", bad)
		}
	}
	if got := telemetry.TraceParent(context.Background()); got != "" {
		t.Errorf("TraceParent of no span = %q", got)
	}
}

// Spans reach an OTLP/HTTP collector, protobuf or JSON, with the service
// name given, or the one OTEL_SERVICE_NAME names.
func TestOTLPExport(t *testing.T) {
	t.Parallel()
	for _, protocol := range []string{"http/protobuf", "http/json"} {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			c := testenv.NewCollector(t)
			tr, err := telemetry.Setup(context.Background(), telemetry.Config{Service: "warren-test", Getenv: env(map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT": c.URL + "/", "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
			})})
			if err != nil {
				t.Fatal(err)
			}
			if tr.Exporter() != "otlp" {
				t.Fatalf("exporter %q", tr.Exporter())
			}
			_, span := tr.Provider().Tracer("test").Start(context.Background(), "unit of work")
			span.End()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tr.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			spans := c.Spans()
			if len(spans) != 1 || spans[0].Name != "unit of work" || spans[0].Service != "warren-test" {
				t.Fatalf("collector got %+v", spans)
			}
		})
	}
}

func TestConsoleExport(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	tr, err := telemetry.Setup(context.Background(), telemetry.Config{Console: &out, Getenv: env(map[string]string{"OTEL_TRACES_EXPORTER": "console"})})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Provider().Tracer("test").Start(context.Background(), "printed span")
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"Name":"printed span"`) {
		t.Errorf("console output lacks the span:\n%s", out.String())
	}
}
