package workers_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/warrenhq/warren/workers"
)

// GET /metrics is served when the worker is given a metrics handler, and
// only then.
func TestHealthHandlerMetrics(t *testing.T) {
	t.Parallel()
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "warren_queue_backlog{pool=\"sys\"} 3\n")
	})
	for _, tc := range []struct {
		name    string
		metrics http.Handler
		status  int
		body    string
	}{
		{"with", metrics, http.StatusOK, "warren_queue_backlog{pool=\"sys\"} 3\n"},
		{"without", nil, http.StatusNotFound, "404 page not found\n"},
	} {
		w := workers.New(workers.Config{Metrics: tc.metrics}, nil, nil)
		srv := httptest.NewServer(w.HealthHandler())
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != tc.status || string(b) != tc.body {
			t.Errorf("%s a metrics handler: GET /metrics %d %q, want %d %q", tc.name, resp.StatusCode, b, tc.status, tc.body)
		}
	}
}
