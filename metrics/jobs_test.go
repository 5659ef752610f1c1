package metrics_test

import (
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/metrics"
)

// series returns the series c collects as `name{label="value",…}` →
// value (a histogram's sample count), the namespace label left out.
func series(t *testing.T, cs ...prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(cs...)
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
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			out[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}

func TestRunsAndSubmissions(t *testing.T) {
	runs := metrics.NewRuns("ns1")
	tr := runs.Type("image.resize")
	if runs.Type("image.resize") != tr {
		t.Error("Type made the figures twice")
	}
	for _, st := range []jobs.Status{jobs.StatusSucceeded, jobs.StatusSucceeded, jobs.StatusFailed, jobs.StatusRetrying, jobs.StatusCanceled, jobs.StatusQueued} {
		tr.Outcome(st)
	}
	tr.Ran(1500 * time.Millisecond)
	tr.Waited(-time.Second) // clocks apart: counted as no wait
	tr.Limited.Inc()
	pr := runs.Pool("image")
	pr.Running.Inc()
	pr.DeadLetters.Inc()
	subs := metrics.NewSubmissions("ns1")
	subs.Add("image.resize", 3)
	subs.Add("image.resize", 1)
	got := series(t, runs, subs)
	want := map[string]float64{
		"warren_jobs_completed_total{outcome=succeeded,type=image.resize}": 2,
		"warren_jobs_completed_total{outcome=failed,type=image.resize}":    1,
		"warren_jobs_completed_total{outcome=retried,type=image.resize}":   1,
		"warren_jobs_completed_total{outcome=canceled,type=image.resize}":  1,
		"warren_job_run_seconds{type=image.resize}":                        1,
		"warren_job_wait_seconds{type=image.resize}":                       1,
		"warren_jobs_running{pool=image}":                                  1,
		"warren_jobs_limited_total{type=image.resize}":                     1,
		"warren_dead_letters_total{pool=image}":                            1,
		"warren_jobs_submitted_total{type=image.resize}":                   4,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
	// Counting allocates nothing once the labels are resolved.
	if n := testing.AllocsPerRun(100, func() {
		runs.Type("image.resize").Outcome(jobs.StatusSucceeded)
		runs.Type("image.resize").Ran(time.Millisecond)
		runs.Pool("image").Running.Inc()
		runs.Pool("image").Running.Dec()
		subs.Add("image.resize", 1)
	}); n != 0 {
		t.Errorf("counting allocates %v times, want 0", n)
	}
}

func TestReplicas(t *testing.T) {
	t.Parallel()
	r := metrics.NewReplicas("ns1", func() []metrics.PoolReplicas {
		return []metrics.PoolReplicas{{Pool: "image", Current: 2, Desired: 3}}
	})
	want := map[string]float64{"warren_replicas{kind=current,pool=image}": 2, "warren_replicas{kind=desired,pool=image}": 3}
	if diff := cmp.Diff(want, series(t, r)); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
}

// serveChild serves reg's metrics on a Unix socket until the test ends
// and returns its address.
func serveChild(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "w.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return "unix:" + path
}

// A supervisor's /metrics serves its processes' series, each with its pid,
// except the pool gauges; a process that serves nothing is skipped.
func TestChildren(t *testing.T) {
	t.Parallel()
	child := func(done float64) *prometheus.Registry {
		reg := prometheus.NewRegistry()
		runs := metrics.NewRuns("ns1")
		for range int(done) {
			runs.Type("sys.echo").Outcome(jobs.StatusSucceeded)
		}
		runs.Type("sys.echo").Ran(time.Second)
		backlog := prometheus.NewGauge(prometheus.GaugeOpts{Name: metrics.MetricBacklog, Help: "x"})
		backlog.Set(7)
		reg.MustRegister(runs, backlog)
		return reg
	}
	c := metrics.NewChildren(metrics.ChildrenConfig{List: func() []metrics.Child {
		return []metrics.Child{
			{PID: 11, Addr: serveChild(t, child(2))},
			{PID: 12, Addr: serveChild(t, child(5))},
			{PID: 13, Addr: "unix:" + filepath.Join(t.TempDir(), "gone.sock")},
		}
	}})
	got := series(t, c)
	var keys []string
	for k := range got {
		if strings.Contains(k, "sys.echo") && strings.HasPrefix(k, "warren_jobs_completed_total") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	want := map[string]float64{
		"warren_jobs_completed_total{outcome=succeeded,pid=11,type=sys.echo}": 2,
		"warren_jobs_completed_total{outcome=succeeded,pid=12,type=sys.echo}": 5,
		"warren_job_run_seconds{pid=11,type=sys.echo}":                        1,
		"warren_job_run_seconds{pid=12,type=sys.echo}":                        1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (have %v)", k, got[k], v, keys)
		}
	}
	for k := range got {
		if strings.HasPrefix(k, metrics.MetricBacklog) {
			t.Errorf("a process's pool gauge was gathered: %s", k)
		}
	}
	// The gathered histogram keeps its buckets.
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == metrics.MetricRunSeconds && (f.GetType() != dto.MetricType_HISTOGRAM || len(f.Metric[0].GetHistogram().GetBucket()) != len(metrics.DurationBuckets)) {
			t.Errorf("gathered %s: %v", f.GetName(), f)
		}
	}
}
