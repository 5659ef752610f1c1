package main

import (
	"fmt"
	"os"
	"text/tabwriter"
)

func printResults(r Results) {
	b, w, c := r.Baseline, r.Warren, r.Cost
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measurement\twarren\tbaseline\tratio\ttarget\t")
	row := func(name string, v, base, ratio float64, target string) {
		fmt.Fprintf(tw, "%s\t%.0f/s\t%.0f/s\t%.2f\t%s\t\n", name, v, base, ratio, target)
	}
	row("end to end", w.E2E, b.E2E, r.Ratios["e2e"], ">= 0.60")
	row("process (1 worker)", w.Process, b.Consume, r.Ratios["process"], ">= 0.70")
	row("submit, batches", w.SubmitBatch, b.Publish, r.Ratios["submit_batch"], ">= 0.70")
	row("submit, single POSTs", w.SubmitSingle, b.Publish, r.Ratios["submit_single"], ">= 0.35")
	_ = tw.Flush()
	if len(r.Rounds) > 1 {
		fmt.Printf("(the round with the median end-to-end ratio of %d; every round's ratios:)\n", len(r.Rounds))
		for _, k := range []string{"e2e", "process", "submit_batch", "submit_single"} {
			fmt.Printf("  %-14s", k)
			for _, rd := range r.Rounds {
				fmt.Printf(" %.2f", rd[k])
			}
			fmt.Println()
		}
	}
	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency (ms)\tp50\tp95\tp99\tmax\t")
	lat := func(name string, l Latencies) {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t\n", name, l.P50, l.P95, l.P99, l.Max)
	}
	lat("baseline, full load", b.Latency)
	lat("warren, full load", w.Latency)
	lat(fmt.Sprintf("warren, half load (%.0f/s)", w.HalfRate), w.HalfLatency)
	lat("  half load, until the POST is answered", w.HalfSubmitLatency)
	_ = tw.Flush()
	fmt.Println()
	fmt.Printf("CPU seconds per 10,000 jobs: API %.2f (single POSTs), %.2f (batches); worker %.2f\n",
		c.APICPUPer10kSingle, c.APICPUPer10kBatch, c.WorkerCPUPer10k)
	fmt.Printf("RSS: API %.1f MB idle, %.1f MB peak; worker %.1f MB idle, %.1f MB peak\n",
		c.APIIdleMB, c.APIPeakMB, c.WorkerIdleMB, c.WorkerPeakMB)
	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "CPU s per 10k jobs\tRabbitMQ\tRedis\tAPI\tworker\tbench client\ttotal\t")
	for _, k := range []string{"baseline_publish", "warren_submit_batch", "warren_submit_single", "baseline_consume", "warren_process", "baseline_e2e", "warren_e2e"} {
		c, ok := r.CPU[k]
		if !ok {
			continue
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", k, c.RabbitMQ, c.Redis, c.API, c.Worker, c.Client,
			c.RabbitMQ+c.Redis+c.API+c.Worker+c.Client)
	}
	_ = tw.Flush()
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
