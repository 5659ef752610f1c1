package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
)

func TestLatencies(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := latencies(ds)
	want := Latencies{P50: 51, P95: 96, P99: 100, Max: 100}
	if got != want {
		t.Errorf("latencies(1..100 ms) = %+v, want %+v", got, want)
	}
	if got := latencies(nil); got != (Latencies{}) {
		t.Errorf("latencies(nil) = %+v, want zeros", got)
	}
}

func TestJobID(t *testing.T) {
	id, err := jobID([]byte(`{"id":"01a2-b","type":"sys.echo","pool":"sys"}`))
	if err != nil || id != "01a2-b" {
		t.Errorf("jobID = %q, %v", id, err)
	}
	if _, err := jobID([]byte(`{"error":{}}`)); err == nil {
		t.Error("jobID of an answer without an id succeeded")
	}
}

func TestProcessFigures(t *testing.T) {
	d, err := cpuTime(os.Getpid())
	if err != nil || d < 0 {
		t.Errorf("cpuTime = %s, %v", d, err)
	}
	rss, peak, err := memory(os.Getpid())
	if err != nil || rss <= 0 || peak < rss {
		t.Errorf("memory = %.1f MB now, %.1f MB peak, %v", rss, peak, err)
	}
}

// TestBenchRuns runs the whole benchmark at a small size against the real
// servers and a freshly built warren, so that `make bench` cannot rot. It
// checks that every figure was measured, not how fast anything is.
func TestBenchRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("needs RabbitMQ, Redis and a build of warren")
	}
	dir := t.TempDir()
	bin, err := testenv.BuildWarren(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	o := options{
		warren: bin, n: 400, clients: 8, batch: 50, prefetch: 200,
		outDir: dir, out: filepath.Join(dir, "results.json"), workers: []int{1, 2}, repeat: 2,
		amqpURL: testenv.AMQPURL(), redisURL: testenv.RedisURL(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := run(ctx, o); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(o.out)
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"e2e", "process", "submit_batch", "submit_single"} {
		if res.Ratios[k] <= 0 {
			t.Errorf("ratio %s = %v, want a measured figure", k, res.Ratios[k])
		}
	}
	if res.Warren.Latency.P50 <= 0 || res.Warren.HalfLatency.P99 <= 0 || res.Baseline.Latency.P50 <= 0 {
		t.Errorf("latencies not measured: %+v %+v", res.Warren, res.Baseline)
	}
	if res.Cost.APIPeakMB <= 0 || res.Cost.WorkerPeakMB <= 0 || res.Cost.WorkerCPUPer10k <= 0 {
		t.Errorf("cost not measured: %+v", res.Cost)
	}
	if len(res.Rounds) != 2 || res.Rounds[0]["e2e"] <= 0 || res.Rounds[1]["e2e"] <= 0 {
		t.Errorf("rounds = %v, want the ratios of both rounds", res.Rounds)
	}
	if len(res.Scale) != 2 || res.Scale[1].Rate <= 0 {
		t.Errorf("scale = %+v, want figures for 1 and 2 workers", res.Scale)
	}
	for _, p := range res.Profiles {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("profile %s: %v", p, err)
		}
	}
}
