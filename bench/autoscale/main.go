// Command autoscale measures what autoscaling buys: one step load of
// CPU-bound jobs (sys.spin) on a pool run three ways — fixed at its min,
// fixed at its max, and autoscaled between them by `warren autoscale` —
// reporting for each the time to drain the load and the replica-seconds
// (worker processes × seconds) spent over the same window of time from the
// submission, which a pool fixed at its max pays for whether or not work
// waits. `make bench-autoscale` runs it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/warrenhq/warren/autoscale"
	"github.com/warrenhq/warren/bench/launch"
	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
)

type options struct {
	warren      string
	jobs, ms    int
	min, max    int
	target      int
	concurrency int
	window      time.Duration
	out         string
}

// result is one scenario's figures.
type result struct {
	Scenario     string  `json:"scenario"`
	Min          int     `json:"min_replicas"`
	Max          int     `json:"max_replicas"`
	DrainSeconds float64 `json:"drain_seconds"`
	// ReplicaSeconds is worker processes × seconds over the window.
	ReplicaSeconds float64 `json:"replica_seconds"`
	// DrainReplicaSeconds is the same until the load drained.
	DrainReplicaSeconds float64 `json:"drain_replica_seconds"`
	SettleSeconds       float64 `json:"settle_seconds"`
	PeakReplicas        int     `json:"peak_replicas"`
	JobsPerSecond       float64 `json:"jobs_per_second"`
}

func main() {
	var o options
	flag.StringVar(&o.warren, "warren", "bin/warren", "the warren binary to run")
	flag.IntVar(&o.jobs, "jobs", 200, "jobs in the step load")
	flag.IntVar(&o.ms, "ms", 100, "CPU milliseconds per job (sys.spin)")
	flag.IntVar(&o.min, "min", 1, "the pool's min replicas")
	flag.IntVar(&o.max, "max", 4, "the pool's max replicas")
	flag.IntVar(&o.target, "target", 10, "target backlog per replica of the autoscaled pool")
	flag.IntVar(&o.concurrency, "concurrency", 1, "jobs one worker process runs at once")
	flag.DurationVar(&o.window, "window", 45*time.Second, "how long after the submission replica-seconds are counted")
	flag.StringVar(&o.out, "out", "bench/out/autoscale.json", "where to write the results as JSON")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-autoscale:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	fmt.Printf("step load: %d sys.spin jobs of %d ms CPU, pool %d..%d processes of concurrency %d, on %d CPUs; replica-seconds over %s\n",
		o.jobs, o.ms, o.min, o.max, o.concurrency, runtime.NumCPU(), o.window)
	scenarios := []struct {
		name     string
		min, max int
	}{
		{"fixed-min", o.min, o.min},
		{"fixed-max", o.max, o.max},
		{"autoscaled", o.min, o.max},
	}
	var results []result
	for _, sc := range scenarios {
		fmt.Printf("running %s...\n", sc.name)
		r, err := scenario(ctx, o, sc.name, sc.min, sc.max)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		results = append(results, r)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "scenario\treplicas\tdrain (s)\tjobs/s\treplica-s to drain\treplica-s in %s\tat rest after (s)\tpeak\t\n", o.window)
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d..%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t\n", r.Scenario, r.Min, r.Max,
			r.DrainSeconds, r.JobsPerSecond, r.DrainReplicaSeconds, r.ReplicaSeconds, r.SettleSeconds, r.PeakReplicas)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(map[string]any{
		"jobs": o.jobs, "ms": o.ms, "concurrency": o.concurrency, "cpus": runtime.NumCPU(),
		"window_seconds": o.window.Seconds(), "results": results,
	}, "", "  ")
	if err != nil {
		return err
	}
	fmt.Println("results written to", o.out)
	return os.WriteFile(o.out, append(b, '\n'), 0o644)
}

// scenario runs the API and the supervisor in a fresh namespace, waits for
// the pool to rest at its min, submits the step load and samples the
// supervisor until the load is done and the pool is back at its min.
func scenario(ctx context.Context, o options, name string, minR, maxR int) (result, error) {
	res := result{Scenario: name, Min: minR, Max: maxR}
	ns := jobs.Namespace(fmt.Sprintf("bench-as-%s-%06d", name, rand.IntN(1e6)))
	dir, err := os.MkdirTemp("", "warren-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := testenv.Remove(rctx, ns); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup of %s: %v\n", ns, err)
		}
	}()
	cfg := fmt.Sprintf(`namespace: %s
pools:
  sys:
    concurrency: %d
    autoscale:
      min_replicas: %d
      max_replicas: %d
      target_backlog: %d
      interval: 1s
      scale_down_window: 10s
`, ns, o.concurrency, minR, maxR, o.target)
	cfgPath := filepath.Join(dir, "warren.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return res, err
	}

	env := []string{"WARREN_CONFIG=" + cfgPath, "WARREN_LOG_LEVEL=info", "WARREN_SHUTDOWN_GRACE=5s"}
	api, err := launch.Start(ctx, o.warren, env, []string{"api listening"}, "api", "--addr", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	defer api.Stop()
	sup, err := launch.Start(ctx, o.warren, env, []string{"supervisor endpoints listening"}, "autoscale", "sys", "--addr", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	defer sup.Stop()

	c, err := client.New(client.Config{BaseURL: "http://" + api.Addr("api listening")})
	if err != nil {
		return res, err
	}
	statusURL := "http://" + sup.Addr("supervisor endpoints listening") + "/status"
	// The pool's first worker declares its types; until then the API
	// refuses its jobs.
	if err := until(ctx, 60*time.Second, "the sys types declared", func() (bool, error) {
		_, _, err := c.Enqueue(ctx, client.JobRequest{Type: "sys.echo", Payload: json.RawMessage(`{}`)})
		return err == nil, nil
	}); err != nil {
		return res, err
	}
	if err := until(ctx, 60*time.Second, "the pool at rest", func() (bool, error) {
		running, stopping, err := sysStatus(ctx, statusURL)
		return err == nil && running == minR && stopping == 0, nil
	}); err != nil {
		return res, err
	}

	start := time.Now()
	var ids []string
	for len(ids) < o.jobs {
		reqs := make([]client.JobRequest, min(o.jobs-len(ids), 500))
		for i := range reqs {
			reqs[i] = client.JobRequest{Type: "sys.spin", Payload: json.RawMessage(fmt.Sprintf(`{"ms":%d}`, o.ms))}
		}
		out, err := c.EnqueueBatch(ctx, reqs)
		if err != nil {
			return res, fmt.Errorf("enqueue: %w", err)
		}
		for _, r := range out {
			if r.Error != nil {
				return res, fmt.Errorf("enqueue: %v", r.Error)
			}
			ids = append(ids, r.Job.ID)
		}
	}

	// The load is drained when its last job has finished: wait for each in
	// submission order, which is about the order they finish in.
	type outcome struct {
		at  time.Time
		err error
	}
	finished := make(chan outcome, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the waiting below if the scenario fails first
	go func() {
		for _, id := range ids {
			j, err := c.WaitDone(wctx, id)
			if err == nil && j.Status != jobs.StatusSucceeded {
				err = fmt.Errorf("job %s ended %s", id, j.Status)
			}
			if err != nil {
				finished <- outcome{err: err}
				return
			}
		}
		finished <- outcome{at: time.Now()}
	}()

	// Sample the processes every 100ms until the load is drained, the pool
	// is back at its min with no process draining, and the window is over.
	last, end := time.Now(), start.Add(o.window)
	var drained, settled time.Time
	err = until(ctx, 30*time.Minute, "the load drained and the pool settled", func() (bool, error) {
		running, stopping, err := sysStatus(ctx, statusURL)
		if err != nil {
			return false, err
		}
		now := time.Now()
		procs := float64(running + stopping)
		if now.Before(end) {
			res.ReplicaSeconds += procs * now.Sub(last).Seconds()
		} else if last.Before(end) {
			res.ReplicaSeconds += procs * end.Sub(last).Seconds()
		}
		if drained.IsZero() {
			res.DrainReplicaSeconds += procs * now.Sub(last).Seconds()
		}
		last = now
		res.PeakReplicas = max(res.PeakReplicas, running+stopping)
		select {
		case o := <-finished:
			if o.err != nil {
				return false, o.err
			}
			drained = o.at
		default:
		}
		if settled.IsZero() && !drained.IsZero() && running == minR && stopping == 0 {
			settled = now
		}
		return !settled.IsZero() && !now.Before(end), nil
	})
	if err != nil {
		return res, err
	}
	res.DrainSeconds = drained.Sub(start).Seconds()
	res.SettleSeconds = settled.Sub(start).Seconds()
	res.JobsPerSecond = float64(len(ids)) / res.DrainSeconds
	return res, nil
}

// sysStatus reads the sys pool's running and stopping processes from the
// supervisor.
func sysStatus(ctx context.Context, url string) (running, stopping int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var st struct {
		Pools []autoscale.PoolStatus `json:"pools"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, 0, err
	}
	for _, p := range st.Pools {
		if p.Pool == "sys" {
			return p.Running, p.Stopping, nil
		}
	}
	return 0, 0, errors.New("the supervisor does not report the sys pool")
}

func until(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s", what, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
