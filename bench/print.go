package main

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

// The targets of issue 17: throughputs as shares of the baseline's, at
// least; latency at breakdownLevel and CPU per job as multiples of the
// baseline's, at most.
const (
	targetE2E             = 0.75
	targetProcess         = 0.80
	targetSubmitInProcess = 0.60
	targetSubmitBatch     = 0.55
	targetSubmitSingle    = 0.25
	targetP50             = 2.0
	targetP99             = 1.5
	targetCPU             = 1.3
)

func newTable(out io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
}

func printResults(r Results) {
	b, w, c := r.Baseline, r.Warren, r.Cost
	fmt.Println()
	tw := newTable(os.Stdout)
	fmt.Fprintln(tw, "measurement\twarren\tbaseline\tratio\ttarget\t")
	row := func(name string, v, base, ratio float64, target string) {
		fmt.Fprintf(tw, "%s\t%.0f/s\t%.0f/s\t%.2f\t%s\t\n", name, v, base, ratio, target)
	}
	row("end to end", w.E2E, b.E2E, r.Ratios["e2e"], fmt.Sprintf(">= %.2f", targetE2E))
	row("process (1 worker)", w.Process, b.Consume, r.Ratios["process"], fmt.Sprintf(">= %.2f", targetProcess))
	row("submit, in-process batches", w.SubmitInProcess, b.Publish, r.Ratios["submit_inprocess"], fmt.Sprintf(">= %.2f", targetSubmitInProcess))
	row("submit, batches", w.SubmitBatch, b.Publish, r.Ratios["submit_batch"], fmt.Sprintf(">= %.2f", targetSubmitBatch))
	row("submit, single POSTs", w.SubmitSingle, b.Publish, r.Ratios["submit_single"], fmt.Sprintf(">= %.2f", targetSubmitSingle))
	if l := r.Latency[breakdownLevel]; l != nil {
		name := fmt.Sprintf("latency at %s%% load", breakdownLevel)
		fmt.Fprintf(tw, "%s p50\t%.1f ms\t%.1f ms\t%.2f\t<= %.1f\t\n", name, l.Warren.P50, l.Baseline.P50, l.P50Ratio, targetP50)
		fmt.Fprintf(tw, "%s p99\t%.1f ms\t%.1f ms\t%.2f\t<= %.1f\t\n", name, l.Warren.P99, l.Baseline.P99, l.P99Ratio, targetP99)
	}
	fmt.Fprintf(tw, "CPU s per 10k jobs, end to end\t%.2f\t%.2f\t%.2f\t<= %.1f\t\n",
		r.CPU["warren_e2e"].Total(), r.CPU["baseline_e2e"].Total(), r.CPURatio, targetCPU)
	_ = tw.Flush()
	if len(r.Rounds) > 1 {
		fmt.Printf("(the round with the median end-to-end ratio of %d; every round's ratios:)\n", len(r.Rounds))
		for _, k := range []string{"e2e", "process", "submit_inprocess", "submit_batch", "submit_single", "latency_p50_ratio", "latency_p99_ratio", "cpu_ratio"} {
			fmt.Printf("  %-18s", k)
			for _, rd := range r.Rounds {
				fmt.Printf(" %.2f", rd[k])
			}
			fmt.Println()
		}
	}
	fmt.Println()
	printLatency(os.Stdout, r)
	fmt.Println()
	fmt.Printf("CPU seconds per 10,000 jobs: API %.2f (single POSTs), %.2f (batches); worker %.2f\n",
		c.APICPUPer10kSingle, c.APICPUPer10kBatch, c.WorkerCPUPer10k)
	fmt.Printf("RSS: API %.1f MB idle, %.1f MB peak; worker %.1f MB idle, %.1f MB peak\n",
		c.APIIdleMB, c.APIPeakMB, c.WorkerIdleMB, c.WorkerPeakMB)
	fmt.Println()
	tw = newTable(os.Stdout)
	fmt.Fprintln(tw, "CPU s per 10k jobs\tRabbitMQ\tRedis\tAPI\tworker\tbench client\ttotal\t")
	for _, k := range []string{"baseline_publish", "warren_submit_inprocess", "warren_submit_batch", "warren_submit_single",
		"baseline_consume", "warren_process", "baseline_e2e", "warren_e2e"} {
		c, ok := r.CPU[k]
		if !ok {
			continue
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", k, c.RabbitMQ, c.Redis, c.API, c.Worker, c.Client, c.Total())
	}
	_ = tw.Flush()
	fmt.Printf("(in-process submission runs in the bench client; the API is idle meanwhile. cpu_ratio: warren_e2e / baseline_e2e = %.2f)\n", r.CPURatio)
	if len(r.Scale) > 0 {
		fmt.Println()
		for _, p := range r.Scale {
			fmt.Printf("process with %d worker process(es): %.0f jobs/s (x%.2f)\n", p.Workers, p.Rate, p.Ratio)
		}
	}
	for _, p := range r.Profiles {
		fmt.Println("profile:", p)
	}
}

// printLatency prints latency at full load and at each paced level, warren
// beside the baseline, and the breakdown of warren's.
func printLatency(out io.Writer, r Results) {
	tw := newTable(out)
	fmt.Fprintln(tw, "latency (ms)\tp50\tp95\tp99\tmax\t")
	lat := func(name string, l Latencies) {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t\n", name, l.P50, l.P95, l.P99, l.Max)
	}
	fmt.Fprintln(tw, "full load\t\t\t\t\t")
	lat("baseline", r.Baseline.Latency)
	lat("warren", r.Warren.Latency)
	for _, name := range levelNames {
		l := r.Latency[name]
		if l == nil {
			continue
		}
		fmt.Fprintf(tw, "%s%% load (%.0f/s)\t\t\t\t\t\n", name, l.Rate)
		lat("baseline", l.Baseline)
		lat("warren", l.Warren)
		fmt.Fprintf(tw, "ratio\t%.2f\t%.2f\t%.2f\t\t\n", l.P50Ratio, l.P95Ratio, l.P99Ratio)
		fmt.Fprintf(tw, "CPU busy: baseline %.0f%%, warren %.0f%%\t\t\t\t\t\n", 100*l.BaselineBusy, 100*l.WarrenBusy)
		lat("baseline, until confirmed", l.BaselineConfirmed)
		lat("warren, until answered", l.WarrenAnswered)
	}
	_ = tw.Flush()
	// A rewrite of Redis's append-only file during a paced run takes a
	// core for a second or two: it explains a tail that other rounds lack.
	fmt.Println("\nRedis's append-only file during the paced runs (bytes appended per job; rewrites that ran, which take a core):")
	for _, name := range levelNames {
		if l := r.Latency[name]; l != nil {
			fmt.Printf("  %s%% load: baseline %s, warren %s\n", name, l.BaselineAOF, l.WarrenAOF)
		}
	}
	bd := r.Latency[breakdownLevel]
	if bd == nil || bd.Breakdown == nil {
		return
	}
	d := bd.Breakdown
	fmt.Fprintf(out, "\nwarren's latency at %s%% load, by part (%d jobs; record times in whole ms, so each part ±1 ms):\n", breakdownLevel, d.Sampled)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  part\tfrom → to\tp50\tp99\twhat it holds")
	part := func(name, span string, l Latencies, what string) {
		fmt.Fprintf(tw, "  %s\t%s\t%.1f\t%.1f\t%s\n", name, span, l.P50, l.P99, what)
	}
	part("request", "due → created_at", d.Request, "HTTP, JSON decoding, schema validation")
	part("to worker", "created_at → started_at", d.ToWorker, "record, publish, quorum queue, delivery, prefetch buffer")
	part("start, run", "started_at → finished_at", d.Run, "start script's round trip, handler")
	part("store", "finished_at → heard", d.Store, "finish script's round trip, done message to the bench")
	part("total", "due → heard", d.Total, "the same jobs end to end")
	part("answer", "created_at → answered", d.Answer, "record, publish, confirm, HTTP answer (beside \"to worker\")")
	fmt.Fprintln(tw, "  ack\t(no timestamp)\t\t\tafter the result is stored, outside the latency (as the baseline's)")
	_ = tw.Flush()
}
