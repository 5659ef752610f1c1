// Package telemetry sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables, and carries a trace across a job's message in its
// W3C traceparent header, so that the API's submission, its publish and a
// worker's run of the job are one trace.
//
// Tracing is off unless the environment asks for it: OTEL_TRACES_EXPORTER
// set to otlp or console, or an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set. Off, Setup returns a Tracing
// whose Provider is nil, and the services make no spans at all.
package telemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Config configures Setup. Zero fields take the defaults noted.
type Config struct {
	// Service is the service.name of the spans when OTEL_SERVICE_NAME (or
	// service.name in OTEL_RESOURCE_ATTRIBUTES) does not say; zero means
	// "warren".
	Service string
	// Getenv reads the variables that decide whether and where to export;
	// nil means os.Getenv. The exporter and the SDK read their finer
	// settings (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION,
	// _CERTIFICATE, OTEL_TRACES_SAMPLER, OTEL_BSP_*, OTEL_RESOURCE_ATTRIBUTES)
	// from the process environment themselves.
	Getenv func(string) string
	// Console receives the spans of OTEL_TRACES_EXPORTER=console, as JSON;
	// nil means os.Stdout.
	Console io.Writer
}

// Tracing is a process's tracing: a TracerProvider exporting as the
// environment says, or none.
type Tracing struct {
	provider *sdktrace.TracerProvider // nil when off
	exporter string
}

// Setup reads the environment and returns the process's tracing; an
// exporter the environment names but warren cannot make (OTLP over gRPC,
// say) is an error, not a silent loss of traces.
func Setup(ctx context.Context, cfg Config) (*Tracing, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	exporters, err := Exporters(getenv)
	if err != nil || len(exporters) == 0 {
		return &Tracing{}, err
	}
	opts := []sdktrace.TracerProviderOption{}
	for _, name := range exporters {
		exp, err := newExporter(ctx, name, getenv, cfg.Console)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	// Later options win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// over the default name.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", cmp.Or(cfg.Service, "warren"))),
		resource.WithFromEnv(),
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	opts = append(opts, sdktrace.WithResource(res))
	return &Tracing{provider: sdktrace.NewTracerProvider(opts...), exporter: strings.Join(exporters, ",")}, nil
}

// Exporters returns the span exporters the environment asks for: those
// OTEL_TRACES_EXPORTER lists (otlp, console; none means none), else otlp
// when an OTLP endpoint is set, else none. OTEL_SDK_DISABLED=true turns
// tracing off whatever else is set.
func Exporters(getenv func(string) string) ([]string, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return nil, nil
	}
	list := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	if list == "" {
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return nil, nil
		}
		list = "otlp"
	}
	var out []string
	for name := range strings.SplitSeq(list, ",") {
		switch name = strings.ToLower(strings.TrimSpace(name)); name {
		case "none":
			return nil, nil
		case "otlp", "console":
			out = append(out, name)
		case "":
		default:
			return nil, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER=%s: warren exports traces with otlp or console (or none)", name)
		}
	}
	return out, nil
}

func newExporter(ctx context.Context, name string, getenv func(string) string, console io.Writer) (sdktrace.SpanExporter, error) {
	if name == "console" {
		exp, err := stdouttrace.New(stdouttrace.WithWriter(cmp.Or[io.Writer](console, os.Stdout)))
		if err != nil {
			return nil, fmt.Errorf("telemetry: console exporter: %w", err)
		}
		return exp, nil
	}
	var opts []otlptracehttp.Option
	switch p := cmp.Or(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf"); p {
	case "http/protobuf":
		opts = append(opts, otlptracehttp.WithEncoding(otlptracehttp.EncodingProtobuf))
	case "http/json":
		opts = append(opts, otlptracehttp.WithEncoding(otlptracehttp.EncodingJSON))
	default:
		return nil, fmt.Errorf("telemetry: OTLP protocol %q: warren sends OTLP over HTTP (http/protobuf or http/json); point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port (4318)", p)
	}
	// The endpoint as Getenv reads it (the exporter would read the
	// process's own environment): the traces endpoint as it is, the
	// general one with the traces path after it, as the specification
	// says.
	if u := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); u != "" {
		opts = append(opts, otlptracehttp.WithEndpointURL(u))
	} else if u := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); u != "" {
		opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimSuffix(u, "/")+"/v1/traces"))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP exporter: %w", err)
	}
	return exp, nil
}

// Provider returns the TracerProvider to hand to the services; nil when
// tracing is off.
func (t *Tracing) Provider() trace.TracerProvider {
	if t == nil || t.provider == nil {
		return nil
	}
	return t.provider
}

// Exporter names the exporters in use ("otlp", "console"); "" when off.
func (t *Tracing) Exporter() string {
	if t == nil {
		return ""
	}
	return t.exporter
}

// Shutdown exports the spans still buffered and stops the exporters.
// Calling it again, or on a Tracing that is off, does nothing.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	err := t.provider.Shutdown(ctx)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("telemetry: spans may be lost: %w", err)
	}
	return err
}

// traceContext is the W3C trace context propagator; the traceparent header
// is all a job's message carries.
var traceContext propagation.TraceContext

// traceParentCarrier carries one traceparent value.
type traceParentCarrier struct{ value string }

func (c *traceParentCarrier) Get(key string) string {
	if key == HeaderTraceParent {
		return c.value
	}
	return ""
}

func (c *traceParentCarrier) Set(key, value string) {
	if key == HeaderTraceParent {
		c.value = value
	}
}

func (c *traceParentCarrier) Keys() []string { return []string{HeaderTraceParent} }

// HeaderTraceParent is the W3C header that carries a trace across HTTP
// requests and (as the traceparent header) job messages.
const HeaderTraceParent = "traceparent"

// Extract returns ctx with the remote span that a W3C traceparent names as
// its parent; ctx as it is when traceparent is empty or malformed.
func Extract(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return traceContext.Extract(ctx, &traceParentCarrier{value: traceparent})
}

// ExtractHTTP returns ctx with the remote span that an HTTP request's
// traceparent header names as its parent.
func ExtractHTTP(ctx context.Context, h propagation.HeaderCarrier) context.Context {
	return traceContext.Extract(ctx, h)
}

// TraceParent returns the W3C traceparent of ctx's span, for a message
// that continues its trace; "" when ctx has no valid span.
func TraceParent(ctx context.Context) string {
	var c traceParentCarrier
	traceContext.Inject(ctx, &c)
	return c.value
}
