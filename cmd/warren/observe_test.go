package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/warrenhq/warren/internal/testenv"
)

// scrape reads a Prometheus text endpoint into its families.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	out := map[string]*dto.MetricFamily{}
	for {
		f := &dto.MetricFamily{}
		if err := dec.Decode(f); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("decode %s: %v", url, err)
		}
		out[f.GetName()] = f
	}
}

// series finds the series of a family whose labels include want, and
// returns its value (a histogram's sample count) and its labels.
func series(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, map[string]string, bool) {
	for _, m := range fams[name].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if got, ok := labels[k]; !ok || (v != "*" && got != v) {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), labels, true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), labels, true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), labels, true
		}
	}
	return 0, nil, false
}

// Under `warren dev`, one trace runs from the caller through the API's
// request and publish to the run in a worker process, exported over
// OTLP/HTTP; and the API's /metrics serves the supervisor's figures and
// its worker processes' beside its own.
func TestDevTracesAndMetricsAcrossProcesses(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	collector := testenv.NewCollector(t)
	p := startProcWith(t, env, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + collector.URL,
		"OTEL_BSP_SCHEDULE_DELAY=100",
		"OTEL_SERVICE_NAME=", // the default names, warren-dev and warren-worker-POOL
	}, "dev", "--addr", "127.0.0.1:0")
	base := "http://" + p.Addr(t, "api listening")
	waitReady(t, base)
	testenv.Eventually(t, 30*time.Second, "sys.echo declared", func() bool {
		_, err := env.Store.Type(context.Background(), "sys.echo")
		return err == nil
	})

	const callerTrace, callerSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/jobs", strings.NewReader(`{"type":"sys.echo","payload":{"traced":true}}`))
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
	loc := resp.Header.Get("Location")
	resp, err = http.Get(base + loc + "?wait=30s")
	if err != nil {
		t.Fatal(err)
	}
	var job struct{ ID, Status string }
	_ = json.NewDecoder(resp.Body).Decode(&job)
	resp.Body.Close()
	if job.Status != "succeeded" {
		t.Fatalf("job %s: %s, want succeeded", loc, job.Status)
	}

	byName := map[string]testenv.Span{}
	collector.WaitFor(t, 30*time.Second, "the request's, publish's and run's spans", func(spans []testenv.Span) bool {
		for _, s := range spans {
			if s.TraceID == callerTrace {
				byName[strings.Fields(s.Name)[0]] = s
			}
		}
		return len(byName) >= 3
	})
	server, publish, run := byName["POST"], byName["publish"], byName["run"]
	if server.Service != "warren-dev" || server.ParentSpanID != callerSpan || server.Kind != "server" {
		t.Errorf("request span: %+v, want warren-dev's server span under the caller's %s", server, callerSpan)
	}
	if publish.Service != "warren-dev" || publish.ParentSpanID != server.SpanID || publish.Kind != "producer" {
		t.Errorf("publish span: %+v, want warren-dev's producer span under the request's %s", publish, server.SpanID)
	}
	if run.Service != "warren-worker-sys" || run.ParentSpanID != publish.SpanID || run.Kind != "consumer" ||
		run.Name != "run sys.echo" || run.Attributes["warren.job.id"] != job.ID {
		t.Errorf("run span: %+v, want warren-worker-sys's consumer span of job %s under the publish's %s", run, job.ID, publish.SpanID)
	}

	// The API's /metrics: its own figures, the supervisor's and the
	// workers' (labelled with their pid).
	testenv.Eventually(t, 30*time.Second, "the job in the dev stack's metrics", func() bool {
		fams := scrape(t, base+"/metrics")
		for _, c := range []struct {
			name   string
			labels map[string]string
		}{
			{"warren_jobs_submitted_total", map[string]string{"type": "sys.echo"}},
			{"warren_jobs_completed_total", map[string]string{"type": "sys.echo", "outcome": "succeeded", "pid": "*"}},
			{"warren_job_run_seconds", map[string]string{"type": "sys.echo", "pid": "*"}},
			{"warren_job_wait_seconds", map[string]string{"type": "sys.echo", "pid": "*"}},
		} {
			if v, _, ok := series(fams, c.name, c.labels); !ok || v < 1 {
				t.Logf("%s%v: %v (present %v)", c.name, c.labels, v, ok)
				return false
			}
		}
		for _, c := range []struct {
			name   string
			labels map[string]string
		}{
			{"warren_jobs_running", map[string]string{"pool": "sys", "pid": "*"}},
			{"warren_dead_letters_total", map[string]string{"pool": "sys", "pid": "*"}},
			{"warren_replicas", map[string]string{"pool": "sys", "kind": "current"}},
			{"warren_replicas", map[string]string{"pool": "sys", "kind": "desired"}},
			{"warren_queue_backlog", map[string]string{"pool": "sys"}},
			{"go_goroutines", map[string]string{"pid": "*"}},
		} {
			if _, _, ok := series(fams, c.name, c.labels); !ok {
				t.Logf("%s%v: absent", c.name, c.labels)
				return false
			}
		}
		// The pool gauges are measured once, by the API, not per process.
		if _, _, ok := series(fams, "warren_queue_backlog", map[string]string{"pid": "*"}); ok {
			t.Errorf("a worker process's pool gauge was gathered")
		}
		return true
	})
}

// `warren autoscale --addr` serves /metrics: its pools' gauges, the replica
// counts, and its worker processes' figures gathered from their sockets.
func TestAutoscaleServesWorkerMetrics(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	sup := startProc(t, env, "autoscale", "sys", "--addr", "127.0.0.1:0")
	base := "http://" + sup.Addr(t, "supervisor endpoints listening")
	testenv.Eventually(t, 30*time.Second, "the worker's figures in the supervisor's /metrics", func() bool {
		fams := scrape(t, base+"/metrics")
		_, labels, ok := series(fams, "warren_jobs_running", map[string]string{"pool": "sys", "pid": "*"})
		if !ok {
			return false
		}
		for _, c := range []map[string]string{{"pool": "sys", "kind": "current"}, {"pool": "sys", "kind": "desired"}} {
			if v, _, ok := series(fams, "warren_replicas", c); !ok || v != 1 {
				return false
			}
		}
		if _, _, ok := series(fams, "warren_queue_backlog", map[string]string{"pool": "sys"}); !ok {
			return false
		}
		// The pid is the worker process's, as /status lists it.
		resp, err := http.Get(base + "/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			Processes []struct {
				Pool       string
				PID        int
				HealthAddr string `json:"health_addr"`
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Processes {
			if p.Pool == "sys" && strings.HasPrefix(p.HealthAddr, "unix:") && labels["pid"] == strconv.Itoa(p.PID) {
				return true
			}
		}
		t.Logf("pid %s not among %+v", labels["pid"], st.Processes)
		return false
	})
}
