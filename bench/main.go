// Command bench measures warren against the limit of the broker and Redis
// it runs on, in one run on the same servers: a raw amqp091-go producer and
// consumer doing the same work with no framework (the baseline), then the
// warren API and a warren worker process (submit, process, end to end at
// full load and at paced loads, CPU and memory), and the baseline again at
// the same paced loads for latency. Every throughput is also given as a
// ratio to the baseline of the same run, so figures compare across
// machines. `make bench` runs it; docs/performance.md explains the figures.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
)

type options struct {
	warren   string
	n        int
	clients  int
	batch    int
	prefetch int
	outDir   string
	out      string
	workers  []int
	repeat   int
	soak     int
	amqpURL  string
	redisURL string
}

func main() {
	var o options
	var workers string
	flag.StringVar(&o.warren, "warren", "bin/warren", "the warren binary to run")
	flag.IntVar(&o.n, "n", 20000, "jobs per measurement")
	flag.IntVar(&o.clients, "clients", 64, "concurrent clients for single submissions")
	flag.IntVar(&o.batch, "batch", 100, "jobs per batch submission")
	flag.IntVar(&o.prefetch, "prefetch", 200, "prefetch of the baseline consumer")
	flag.StringVar(&o.outDir, "dir", "bench/out", "folder for the results and the profiles")
	flag.StringVar(&o.out, "out", "", "the results as JSON (default DIR/results.json)")
	flag.StringVar(&workers, "workers", "", "also measure processing with these numbers of worker processes, e.g. 1,2,4")
	flag.IntVar(&o.repeat, "repeat", 3, "rounds of baseline and warren; the figures are the median round's")
	flag.IntVar(&o.soak, "soak", 0, "instead, run this many jobs end to end and report memory over time (e.g. 1000000)")
	flag.Parse()
	o.repeat = max(o.repeat, 1)
	o.out = cmp.Or(o.out, filepath.Join(o.outDir, "results.json"))
	o.amqpURL, o.redisURL = testenv.AMQPURL(), testenv.RedisURL()
	for _, f := range strings.Split(workers, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		k, err := strconv.Atoi(f)
		if err != nil || k < 1 {
			fmt.Fprintf(os.Stderr, "bench: -workers: want numbers such as 1,2,4, got %q\n", f)
			os.Exit(2)
		}
		o.workers = append(o.workers, k)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// Results is what a run writes to its JSON file.
type Results struct {
	When     time.Time          `json:"when"`
	Machine  Machine            `json:"machine"`
	Jobs     int                `json:"jobs"`
	Baseline Baseline           `json:"baseline"`
	Warren   Warren             `json:"warren"`
	Ratios   map[string]float64 `json:"ratios"`
	// Latency is, per paced load level ("25", "50", "75": percent of
	// warren's full-load end-to-end rate), warren's latency beside the
	// baseline's at the same rate.
	Latency map[string]*LoadLevel `json:"latency,omitempty"`
	// CPURatio is warren's CPU per job end to end (every process) over the
	// baseline's.
	CPURatio float64 `json:"cpu_ratio,omitempty"`
	Cost     Cost    `json:"cost"`
	// CPU is, per measurement, the CPU seconds per 10,000 jobs of every
	// process involved: where the time goes.
	CPU      map[string]CPUPer10k `json:"cpu_per_10k"`
	Scale    []ScalePoint         `json:"scale,omitempty"`
	Soak     *Soak                `json:"soak,omitempty"`
	Profiles []string             `json:"profiles,omitempty"`
	// Rounds holds every round's ratios; the figures above are those of
	// the round with the median end-to-end ratio.
	Rounds []map[string]float64 `json:"rounds,omitempty"`
}

// Machine says where the figures come from.
type Machine struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go"`
	RabbitMQ  string `json:"rabbitmq"`
	Redis     string `json:"redis"`
}

// Baseline is the raw broker+Redis limit.
type Baseline struct {
	Publish float64   `json:"publish_per_s"`
	Consume float64   `json:"consume_per_s"`
	E2E     float64   `json:"e2e_per_s"`
	Latency Latencies `json:"e2e_latency_ms"`
}

// Warren is warren's figures.
type Warren struct {
	SubmitSingle float64 `json:"submit_single_per_s"`
	SubmitBatch  float64 `json:"submit_batch_per_s"`
	// SubmitInProcess is the producer package's SubmitMany called in the
	// benchmark's own process: submission without HTTP.
	SubmitInProcess float64   `json:"submit_inprocess_per_s"`
	Process         float64   `json:"process_per_s"`
	E2E             float64   `json:"e2e_per_s"`
	Latency         Latencies `json:"e2e_latency_ms"`
	// The half-load figures are those of Results.Latency["50"], kept
	// for readers of earlier results.
	HalfRate    float64   `json:"half_load_per_s"`
	HalfLatency Latencies `json:"half_load_latency_ms"`
	// HalfSubmitLatency is the first part of HalfLatency: from a job's
	// submission to the API's answer (its confirm from the broker).
	HalfSubmitLatency Latencies `json:"half_load_submit_latency_ms"`
}

// Cost is CPU and memory of the warren processes.
type Cost struct {
	APICPUPer10kSingle float64 `json:"api_cpu_s_per_10k_single"`
	APICPUPer10kBatch  float64 `json:"api_cpu_s_per_10k_batch"`
	WorkerCPUPer10k    float64 `json:"worker_cpu_s_per_10k"`
	APIIdleMB          float64 `json:"api_idle_rss_mb"`
	APIPeakMB          float64 `json:"api_peak_rss_mb"`
	WorkerIdleMB       float64 `json:"worker_idle_rss_mb"`
	WorkerPeakMB       float64 `json:"worker_peak_rss_mb"`
}

// ScalePoint is processing with k worker processes.
type ScalePoint struct {
	Workers int     `json:"workers"`
	Rate    float64 `json:"process_per_s"`
	Ratio   float64 `json:"ratio_to_one"`
}

func run(ctx context.Context, o options) error {
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(o.warren); err != nil {
		return fmt.Errorf("the warren binary %s: %w (make bench builds it)", o.warren, err)
	}
	res := Results{When: time.Now().UTC().Truncate(time.Second), Jobs: o.n,
		Machine: Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}}
	res.Machine.RabbitMQ, res.Machine.Redis = serverVersions(ctx, o)
	fmt.Printf("warren bench: %d jobs per measurement, %d CPUs, RabbitMQ %s, Redis %s\n",
		o.n, res.Machine.CPUs, res.Machine.RabbitMQ, res.Machine.Redis)

	if o.soak > 0 {
		soak, err := runSoak(ctx, o)
		if err != nil {
			return err
		}
		res.Soak = soak
		printSoak(soak)
		return writeResults(o.out, res)
	}

	// Each round measures the baseline and then warren; with several
	// rounds the figures are those of the round with the median end-to-end
	// ratio, and every round's ratios are kept, since one machine's
	// figures vary by a fifth from run to run.
	srv := findServers(o.amqpURL, o.redisURL)
	var (
		rounds []Results
		all    []map[string]float64 // every round's ratios, in the order they ran
	)
	for i := range o.repeat {
		if o.repeat > 1 {
			fmt.Printf("round %d of %d\n", i+1, o.repeat)
		}
		r, err := runRound(ctx, o, srv, res)
		if err != nil {
			return err
		}
		rounds = append(rounds, r)
		all = append(all, roundRatios(r))
	}
	slices.SortStableFunc(rounds, func(a, b Results) int { return cmp.Compare(a.Ratios["e2e"], b.Ratios["e2e"]) })
	res = rounds[len(rounds)/2]
	res.Rounds = all
	if len(o.workers) > 0 {
		fmt.Printf("scale: processing with %v worker processes ...\n", o.workers)
		var err error
		if res.Scale, err = runScale(ctx, o); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
	}
	printResults(res)
	return writeResults(o.out, res)
}

// runRound measures the baseline, then warren, then the baseline again
// at warren's paced load levels, and returns res with the figures.
func runRound(ctx context.Context, o options, srv servers, res Results) (Results, error) {
	r := res
	r.CPU = map[string]CPUPer10k{}
	fmt.Println("baseline: raw amqp091-go + go-redis ...")
	b, err := runBaseline(ctx, o, srv, r.CPU)
	if err != nil {
		return r, fmt.Errorf("baseline: %w", err)
	}
	fmt.Println("warren: API and one worker process ...")
	w, cost, levels, profiles, err := runWarren(ctx, o, b, srv, r.CPU)
	if err != nil {
		return r, fmt.Errorf("warren: %w", err)
	}
	fmt.Println("baseline, paced at warren's load levels ...")
	if err := runBaselinePaced(ctx, o, srv, levels); err != nil {
		return r, fmt.Errorf("baseline paced: %w", err)
	}
	for _, l := range levels {
		l.ratios()
	}
	r.Baseline, r.Warren, r.Cost, r.Latency, r.Profiles = b, w, cost, levels, profiles
	r.Ratios = map[string]float64{
		"e2e":              ratio(w.E2E, b.E2E),
		"process":          ratio(w.Process, b.Consume),
		"submit_inprocess": ratio(w.SubmitInProcess, b.Publish),
		"submit_batch":     ratio(w.SubmitBatch, b.Publish),
		"submit_single":    ratio(w.SubmitSingle, b.Publish),
	}
	r.CPURatio = ratio(r.CPU["warren_e2e"].Total(), r.CPU["baseline_e2e"].Total())
	return r, nil
}

// roundRatios are the figures of a round shown beside the median round's:
// its throughput ratios, its CPU ratio and its latency ratios at
// breakdownLevel.
func roundRatios(r Results) map[string]float64 {
	out := maps.Clone(r.Ratios)
	out["cpu_ratio"] = r.CPURatio
	if l := r.Latency[breakdownLevel]; l != nil {
		out["latency_p50_ratio"], out["latency_p99_ratio"] = l.P50Ratio, l.P99Ratio
	}
	return out
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round(a/b, 3)
}

func round(f float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(f*p) / p
}

func writeResults(path string, res Results) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Println("results written to", path)
	return nil
}
