package testenv

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Span is one span a Collector received, flattened for tests.
type Span struct {
	Service              string
	Name                 string
	Kind                 string // "server", "producer", "consumer", …
	TraceID, SpanID      string // hex
	ParentSpanID         string // hex; "" for a root span
	Attributes           map[string]string
	StatusError          bool
	StatusMessage        string
	Start, End           time.Time
	InstrumentationScope string
}

// Collector is an OTLP/HTTP trace receiver (POST /v1/traces, protobuf or
// JSON, gzip or not) that keeps the spans it is sent, for tests of a
// process's traces: point OTEL_EXPORTER_OTLP_ENDPOINT at URL.
type Collector struct {
	// URL is the collector's base URL, for OTEL_EXPORTER_OTLP_ENDPOINT.
	URL string

	mu    sync.Mutex
	spans []Span
	more  chan struct{}
}

// NewCollector starts a Collector on loopback until the test ends.
func NewCollector(t testing.TB) *Collector {
	t.Helper()
	c := &Collector{more: make(chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

func (c *Collector) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(io.LimitReader(body, 64<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltrace.ExportTraceServiceRequest
	ct := r.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/json") {
		err = protojson.Unmarshal(b, &req)
	} else {
		err = proto.Unmarshal(b, &req)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var got []Span
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				service = anyValue(kv.Value)
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				sp := Span{
					Service:              service,
					Name:                 s.Name,
					Kind:                 strings.ToLower(strings.TrimPrefix(s.Kind.String(), "SPAN_KIND_")),
					TraceID:              hex.EncodeToString(s.TraceId),
					SpanID:               hex.EncodeToString(s.SpanId),
					ParentSpanID:         hex.EncodeToString(s.ParentSpanId),
					Attributes:           map[string]string{},
					StatusError:          s.GetStatus().GetCode().String() == "STATUS_CODE_ERROR",
					StatusMessage:        s.GetStatus().GetMessage(),
					Start:                time.Unix(0, int64(s.StartTimeUnixNano)),
					End:                  time.Unix(0, int64(s.EndTimeUnixNano)),
					InstrumentationScope: ss.GetScope().GetName(),
				}
				for _, kv := range s.Attributes {
					sp.Attributes[kv.Key] = anyValue(kv.Value)
				}
				got = append(got, sp)
			}
		}
	}
	c.mu.Lock()
	c.spans = append(c.spans, got...)
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	// An empty ExportTraceServiceResponse: zero bytes in protobuf, {} in JSON.
	if strings.HasPrefix(ct, "application/json") {
		_, _ = w.Write([]byte("{}"))
	}
}

func anyValue(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	}
	return v.String()
}

// Spans returns the spans received so far.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}

// WaitFor waits until cond holds of the spans received, failing the test
// after timeout; it returns those spans.
func (c *Collector) WaitFor(t testing.TB, timeout time.Duration, what string, cond func([]Span) bool) []Span {
	t.Helper()
	deadline := time.After(timeout)
	for {
		spans := c.Spans()
		if cond(spans) {
			return spans
		}
		select {
		case <-c.more:
		case <-deadline:
			for _, s := range spans {
				t.Logf("span %s %q trace=%s span=%s parent=%s %v", s.Service, s.Name, s.TraceID, s.SpanID, s.ParentSpanID, s.Attributes)
			}
			t.Fatalf("the collector did not see %s within %s (%d spans)", what, timeout, len(spans))
		}
	}
}
