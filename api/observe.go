package api

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/metrics"
	"github.com/warrenhq/warren/telemetry"
)

// instruments are what the API counts submissions with and traces them to.
type instruments struct {
	submitted *metrics.Submissions
	tracer    trace.Tracer // nil: no spans, at no cost
}

func newInstruments(cfg Config, ns jobs.Namespace) instruments {
	in := instruments{submitted: metrics.NewSubmissions(ns)}
	if cfg.TracerProvider != nil {
		in.tracer = cfg.TracerProvider.Tracer("github.com/warrenhq/warren/api")
	}
	return in
}

// Collectors returns every collector GET /metrics serves besides the
// Go runtime's and the process's: the pools' gauges, the submissions
// counter and Config.Collectors.
func (s *Server) Collectors() []prometheus.Collector {
	return append([]prometheus.Collector{s.metrics}, s.moreCollectors()...)
}

// moreCollectors are those the pools' collector's handler serves with it.
func (s *Server) moreCollectors() []prometheus.Collector {
	return append([]prometheus.Collector{s.obs.submitted}, s.cfg.Collectors...)
}

// traced wraps a submission's handler in a server span, the child of the
// request's traceparent if it has one; the publish span and, through the
// message, the worker's run follow from it. Untraced, it is next itself.
func (s *Server) traced(route string, next http.Handler) http.Handler {
	if s.obs.tracer == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := telemetry.ExtractHTTP(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := s.obs.tracer.Start(ctx, route,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				attribute.String("http.request.method", r.Method),
				attribute.String("http.route", route),
				attribute.String("url.path", r.URL.Path),
			))
		defer span.End()
		// The body limit is set here, on the connection's own writer: an
		// oversized body must still close the connection, which
		// http.MaxBytesReader tells the server through the writer it is
		// given, and the status recorder below would hide that. readBody's
		// limit, the same, then never trips first.
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
		if sw.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(sw.status))
		}
	})
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
