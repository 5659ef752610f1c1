package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Soak is a long end-to-end run's memory over time.
type Soak struct {
	Jobs    int           `json:"jobs"`
	Seconds float64       `json:"seconds"`
	Rate    float64       `json:"per_s"`
	Samples []SoakSample  `json:"samples"`
	API     MemoryOverRun `json:"api_rss_mb"`
	Worker  MemoryOverRun `json:"worker_rss_mb"`
}

// SoakSample is one reading during a soak.
type SoakSample struct {
	Seconds  float64 `json:"seconds"`
	Done     int     `json:"done"`
	APIMB    float64 `json:"api_rss_mb"`
	WorkerMB float64 `json:"worker_rss_mb"`
}

// MemoryOverRun is a process's resident set early in a run (after a tenth
// of the jobs), at its end, and at most.
type MemoryOverRun struct {
	Early float64 `json:"early"`
	End   float64 `json:"end"`
	Max   float64 `json:"max"`
}

// soakOutstanding bounds the jobs submitted and not yet done, so the run
// measures the processes, not a growing queue.
const soakOutstanding = 20000

func runSoak(ctx context.Context, o options) (*Soak, error) {
	s, err := newStack(ctx, o, "soak")
	if err != nil {
		return nil, err
	}
	defer s.close()
	if err := s.declare(ctx); err != nil {
		return nil, err
	}
	worker, err := s.startWorker(ctx)
	if err != nil {
		return nil, err
	}
	defer worker.Stop()
	fmt.Printf("soak: %d jobs end to end, at most %d outstanding; memory every 5s\n", o.soak, soakOutstanding)

	s.track.count(o.soak)
	var submitted atomic.Int64
	start := time.Now()
	submitErr := make(chan error, 1)
	go func() {
		submitErr <- fanOut(ctx, 4, func(ctx context.Context) error {
			for {
				for int(submitted.Load())-s.track.doneSoFar() > soakOutstanding {
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(10 * time.Millisecond):
					}
				}
				from := int(submitted.Add(int64(o.batch))) - o.batch
				if from >= o.soak {
					return nil
				}
				if _, err := submitBatch(ctx, s.base, min(o.batch, o.soak-from), o.batch, 1, func(string, time.Time) {}); err != nil {
					return err
				}
			}
		})
	}()

	res := &Soak{Jobs: o.soak}
	sample := func() {
		a, _, _ := memory(s.api.PID())
		w, _, _ := memory(worker.PID())
		smp := SoakSample{Seconds: round(time.Since(start).Seconds(), 1), Done: s.track.doneSoFar(), APIMB: a, WorkerMB: w}
		res.Samples = append(res.Samples, smp)
		fmt.Printf("  %6.0fs  %9d done  API %6.1f MB  worker %6.1f MB\n", smp.Seconds, smp.Done, a, w)
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	reached := false
	for !reached {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-submitErr:
			if err != nil {
				return nil, fmt.Errorf("soak submit: %w", err)
			}
			submitErr = nil // all submitted; wait for the rest
		case <-tick.C:
			sample()
			reached = s.track.doneSoFar() >= o.soak
		}
	}
	sample()
	res.Seconds = round(time.Since(start).Seconds(), 1)
	res.Rate = round(float64(o.soak)/res.Seconds, 0)
	for _, smp := range res.Samples {
		if res.API.Early == 0 && smp.Done >= o.soak/10 {
			res.API.Early, res.Worker.Early = smp.APIMB, smp.WorkerMB
		}
		res.API.Max, res.Worker.Max = max(res.API.Max, smp.APIMB), max(res.Worker.Max, smp.WorkerMB)
	}
	last := res.Samples[len(res.Samples)-1]
	res.API.End, res.Worker.End = last.APIMB, last.WorkerMB
	return res, nil
}

func printSoak(s *Soak) {
	fmt.Printf("soak: %d jobs in %.0fs (%.0f jobs/s)\n", s.Jobs, s.Seconds, s.Rate)
	fmt.Printf("  API RSS:    %.1f MB after a tenth, %.1f MB at the end, %.1f MB at most\n", s.API.Early, s.API.End, s.API.Max)
	fmt.Printf("  worker RSS: %.1f MB after a tenth, %.1f MB at the end, %.1f MB at most\n", s.Worker.Early, s.Worker.End, s.Worker.Max)
}
