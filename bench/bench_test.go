package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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
	for _, k := range []string{"e2e", "process", "submit_inprocess", "submit_batch", "submit_single"} {
		if res.Ratios[k] <= 0 {
			t.Errorf("ratio %s = %v, want a measured figure", k, res.Ratios[k])
		}
	}
	checkLatency(t, res)
	checkCPU(t, res)
	if res.Warren.Latency.P50 <= 0 || res.Warren.HalfLatency.P99 <= 0 || res.Baseline.Latency.P50 <= 0 {
		t.Errorf("latencies not measured: %+v %+v", res.Warren, res.Baseline)
	}
	if res.Cost.APIPeakMB <= 0 || res.Cost.WorkerPeakMB <= 0 || res.Cost.WorkerCPUPer10k <= 0 {
		t.Errorf("cost not measured: %+v", res.Cost)
	}
	if len(res.Rounds) != 2 {
		t.Errorf("rounds = %v, want the ratios of both rounds", res.Rounds)
	}
	for _, rd := range res.Rounds {
		for _, k := range []string{"e2e", "submit_inprocess", "cpu_ratio", "latency_p50_ratio", "latency_p99_ratio"} {
			if rd[k] <= 0 {
				t.Errorf("a round's %s = %v, want a measured figure", k, rd[k])
			}
		}
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

func TestSplit(t *testing.T) {
	due := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	at := func(ms float64) time.Time { return due.Add(time.Duration(ms * float64(time.Millisecond))) }
	b := jobTimes{due: due, answered: at(9.3), done: at(20.1)}
	// The record's times are whole milliseconds, taken as their middle.
	got, ok := split(b, at(2), at(11), at(15))
	want := [6]time.Duration{2500 * time.Microsecond, 9 * time.Millisecond, 4 * time.Millisecond,
		4600 * time.Microsecond, 6800 * time.Microsecond, at(20.1).Sub(due)}
	if !ok || got != want {
		t.Errorf("split = %v, %v; want %v", got, ok, want)
	}
	if _, ok := split(jobTimes{due: due, done: at(20)}, at(2), at(11), at(15)); ok {
		t.Error("split of a job whose answer was not heard succeeded")
	}
}

func TestNewLevels(t *testing.T) {
	got := newLevels(4000, 3000)
	want := map[string]LoadLevel{"2": {Rate: 80, Jobs: 400}, "25": {Rate: 1000, Jobs: 1500}, "50": {Rate: 2000, Jobs: 1500}, "75": {Rate: 3000, Jobs: 1500}}
	if len(got) != len(want) {
		t.Fatalf("newLevels = %v, want the levels %v", got, levelNames)
	}
	for name, w := range want {
		if g := got[name]; g == nil || *g != w {
			t.Errorf("level %s = %+v, want %+v", name, g, w)
		}
	}
	if l := newLevels(40, 3000)["25"]; l.Jobs != 100 {
		t.Errorf("at 10 jobs/s, %d jobs, want ten seconds' worth", l.Jobs)
	}
}

func TestSinceLeavesOutVanishedProcesses(t *testing.T) {
	before := map[int]time.Duration{1: time.Second, 2: 5 * time.Second}
	after := map[int]time.Duration{1: 3 * time.Second, 3: time.Second} // 2 vanished, 3 appeared
	if got := since([]int{1, 2, 3}, before, after); got != 2*time.Second {
		t.Errorf("since = %s, want 2s (pid 1's alone)", got)
	}
}

func TestPorts(t *testing.T) {
	got := ports("amqp://guest:guest@127.0.0.1:5673/, amqp://h2/vhost", "5672")
	if len(got) != 2 || got[0] != "5673" || got[1] != "5672" {
		t.Errorf("ports = %v, want [5673 5672]", got)
	}
}

// aofEnabled reports whether the test's Redis keeps an append-only file.
func aofEnabled(t *testing.T) bool {
	t.Helper()
	opts, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	on, err := rdb.ConfigGet(context.Background(), "appendonly").Result()
	if err != nil {
		t.Fatal(err)
	}
	return on["appendonly"] == "yes"
}

// ordered reports whether l's percentiles are measured and in order.
func ordered(l Latencies) bool {
	return l.P50 > 0 && l.P50 <= l.P95 && l.P95 <= l.P99 && l.P99 <= l.Max
}

// checkLatency checks results.json's latency at the paced load levels.
func checkLatency(t *testing.T, res Results) {
	t.Helper()
	aofOn := aofEnabled(t)
	prev := 0.0
	for _, name := range levelNames {
		l := res.Latency[name]
		if l == nil {
			t.Errorf("latency[%q] missing; have %v", name, res.Latency)
			continue
		}
		if l.Rate <= prev || l.Jobs <= 0 {
			t.Errorf("latency[%q]: %.0f jobs/s, %d jobs; want more than the level below (%.0f/s)", name, l.Rate, l.Jobs, prev)
		}
		prev = l.Rate
		for what, lat := range map[string]Latencies{"warren": l.Warren, "baseline": l.Baseline,
			"warren_answered": l.WarrenAnswered, "baseline_confirmed": l.BaselineConfirmed} {
			if !ordered(lat) {
				t.Errorf("latency[%q].%s = %+v, want measured percentiles in order", name, what, lat)
			}
		}
		if l.P50Ratio != ratio(l.Warren.P50, l.Baseline.P50) || l.P99Ratio != ratio(l.Warren.P99, l.Baseline.P99) || l.P99Ratio <= 0 {
			t.Errorf("latency[%q] ratios p50 %v, p99 %v; want warren's over the baseline's", name, l.P50Ratio, l.P99Ratio)
		}
		// With an append-only file (scripts/services.sh keeps one), each
		// run appends to it, or a rewrite of it ran.
		for what, a := range map[string]AOF{"warren_aof": l.WarrenAOF, "baseline_aof": l.BaselineAOF} {
			if aofOn && (a.Rewrites < 0 || (a.Rewrites == 0) == (a.BytesPerJob == 0)) {
				t.Errorf("latency[%q].%s = %+v, want bytes per job, or rewrites that hid them", name, what, a)
			}
		}
		// Each run keeps the machine somewhat busy, and no more than all
		// of it (a little slack: the readings are not taken at once).
		for what, b := range map[string]float64{"warren_busy": l.WarrenBusy, "baseline_busy": l.BaselineBusy} {
			if b <= 0 || b > 1.05 {
				t.Errorf("latency[%q].%s = %v, want a share of the machine's CPU", name, what, b)
			}
		}
		if (l.Breakdown != nil) != (name == breakdownLevel) {
			t.Errorf("latency[%q] has a breakdown: %v; want one at %s%% only", name, l.Breakdown != nil, breakdownLevel)
		}
	}
	half := res.Latency["50"]
	if half == nil || res.Warren.HalfLatency != half.Warren || res.Warren.HalfRate != half.Rate {
		t.Errorf("half_load_* = %.0f/s %+v, want latency[\"50\"]'s", res.Warren.HalfRate, res.Warren.HalfLatency)
	}
	if half == nil || half.Breakdown == nil {
		return
	}
	d := half.Breakdown
	if d.Sampled <= 0 || d.Sampled > half.Jobs {
		t.Errorf("breakdown of %d jobs, want some of the %d", d.Sampled, half.Jobs)
	}
	if d.Sampled == half.Jobs && d.Total != half.Warren {
		t.Errorf("breakdown of every job: total %+v, want warren's latency %+v", d.Total, half.Warren)
	}
	// Each part runs forward in time, within the record's whole
	// milliseconds; a part read from the wrong field would not.
	for what, lat := range map[string]Latencies{"request": d.Request, "to_worker": d.ToWorker, "start_and_run": d.Run,
		"store": d.Store, "answer": d.Answer} {
		if lat.P50 < -1 || lat.Max <= 0 || lat.P99 > d.Total.Max+1 {
			t.Errorf("breakdown %s = %+v, want a part of the total %+v", what, lat, d.Total)
		}
	}
}

// checkCPU checks the CPU per job of every measurement and cpu_ratio.
func checkCPU(t *testing.T, res Results) {
	t.Helper()
	for _, k := range []string{"baseline_publish", "baseline_consume", "baseline_e2e", "warren_submit_inprocess",
		"warren_submit_batch", "warren_submit_single", "warren_process", "warren_e2e"} {
		// A small run's measurement may take less than a clock tick of
		// a process, but never a negative one.
		c, ok := res.CPU[k]
		if !ok || min(c.RabbitMQ, c.Redis, c.API, c.Worker, c.Client) < 0 {
			t.Errorf("cpu_per_10k[%s] = %+v, want measured, none negative", k, c)
		}
	}
	want := ratio(res.CPU["warren_e2e"].Total(), res.CPU["baseline_e2e"].Total())
	if res.CPURatio <= 0 || res.CPURatio != want {
		t.Errorf("cpu_ratio = %v, want warren_e2e's total over baseline_e2e's, %v", res.CPURatio, want)
	}
}
