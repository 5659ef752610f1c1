package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/bench/launch"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// httpClient keeps a connection per client goroutine.
var httpClient = &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}}

// startWarren runs `warren args…` in ns with the benchmark's servers and a
// profiler, and waits until it has logged each of the messages in want.
func startWarren(ctx context.Context, o options, ns jobs.Namespace, want []string, args ...string) (*launch.Process, error) {
	return launch.Start(ctx, o.warren, []string{
		"WARREN_NAMESPACE=" + string(ns),
		"WARREN_AMQP_URL=" + o.amqpURL,
		"WARREN_REDIS_URL=" + o.redisURL,
		"WARREN_LOG_LEVEL=info",
		"WARREN_DEBUG_ADDR=127.0.0.1:0",
		"WARREN_SHUTDOWN_GRACE=10s",
	}, want, args...)
}

// tracker hears every job reach a terminal state on the jobs' done
// channels (the finish script publishes each job's status on its own, so
// the tracker subscribes to their pattern), and keeps each job's times: when
// it was submitted (or due), when the API answered, and when it was done.
type tracker struct {
	mu        sync.Mutex
	times     map[string]*jobTimes
	done      int
	want      int
	first     time.Time
	last      time.Time
	reached   chan struct{}
	countOnly bool // no times: a soak's millions of ids are not kept
	ps        *redis.PubSub
	stopped   chan struct{}
}

// jobTimes are what the benchmark itself sees of a job, on its own clock:
// when it was due (its submission started, or was meant to), when the
// API's answer arrived, and when the job's end was heard.
type jobTimes struct{ due, answered, done time.Time }

func newTracker(ctx context.Context, rdb *redis.Client, ns jobs.Namespace) (*tracker, error) {
	prefix := ns.DoneChannel("")
	ps := rdb.PSubscribe(ctx, prefix+"*")
	if _, err := ps.Receive(ctx); err != nil {
		return nil, fmt.Errorf("subscribe to %s*: %w", prefix, err)
	}
	t := &tracker{ps: ps, stopped: make(chan struct{})}
	t.reset(0)
	go func() {
		defer close(t.stopped)
		for msg := range ps.Channel(redis.WithChannelSize(1 << 16)) {
			if id, ok := strings.CutPrefix(msg.Channel, prefix); ok {
				t.finished(id, time.Now())
			}
		}
	}()
	return t, nil
}

func (t *tracker) close() {
	_ = t.ps.Close()
	<-t.stopped
}

// reset starts a new measurement that ends when want jobs are done.
func (t *tracker) reset(want int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.times, t.done, t.want = map[string]*jobTimes{}, 0, want
	t.first, t.last = time.Time{}, time.Time{}
	t.reached = make(chan struct{})
	t.countOnly = false
}

// job returns the times of id, new if need be; t.mu is held.
func (t *tracker) job(id string) *jobTimes {
	j := t.times[id]
	if j == nil {
		j = &jobTimes{}
		t.times[id] = j
	}
	return j
}

// count starts a measurement that only counts jobs done.
func (t *tracker) count(want int) {
	t.reset(want)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.countOnly = true
}

// doneSoFar is how many jobs are done in this measurement.
func (t *tracker) doneSoFar() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.done
}

// accepted records when a job was submitted (or due), as the API's answer
// arrives.
func (t *tracker) accepted(id string, at time.Time) {
	answered := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.countOnly {
		j := t.job(id)
		j.due, j.answered = at, answered
	}
}

func (t *tracker) finished(id string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.countOnly {
		t.job(id).done = at
	}
	if t.first.IsZero() {
		t.first = at
	}
	t.last = at
	t.done++
	if t.done == t.want {
		close(t.reached)
	}
}

// wait waits until the measurement's jobs are done.
func (t *tracker) wait(ctx context.Context, timeout time.Duration) error {
	t.mu.Lock()
	reached := t.reached
	t.mu.Unlock()
	select {
	case <-reached:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		t.mu.Lock()
		defer t.mu.Unlock()
		return fmt.Errorf("%d of %d jobs done after %s", t.done, t.want, timeout)
	}
}

// window returns when the first and the last job of the measurement were
// done, and each job's latency from its submission (or due time) to then.
func (t *tracker) window() (first, last time.Time, lat []time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, j := range t.times {
		if !j.due.IsZero() && !j.done.IsZero() {
			lat = append(lat, j.done.Sub(j.due))
		}
	}
	return t.first, t.last, lat
}

// answered returns each job's time from its submission to the API's
// answer, the first part of its latency.
func (t *tracker) answered() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []time.Duration
	for _, j := range t.times {
		if !j.due.IsZero() {
			out = append(out, j.answered.Sub(j.due))
		}
	}
	return out
}

// byJob returns the times of the jobs both submitted and done.
func (t *tracker) byJob() map[string]jobTimes {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]jobTimes, len(t.times))
	for id, j := range t.times {
		if !j.due.IsZero() && !j.done.IsZero() {
			out[id] = *j
		}
	}
	return out
}

// echoPayload is the payload of the benchmark's k-th sys.echo job.
func echoPayload(k int) string {
	return fmt.Sprintf(`{"bench":true,"i":%d,"text":"the quick brown fox"}`, k)
}

// echoBody is the request body of one sys.echo job.
func echoBody(k int) string {
	return `{"type":"sys.echo","payload":` + echoPayload(k) + `}`
}

// submitSingle posts n jobs one per request from clients goroutines. due,
// if not nil, paces them: job k is sent at due(k), and its latency counts
// from then, even if the client was late.
func submitSingle(ctx context.Context, base string, n, clients int, due func(k int) time.Time, accepted func(id string, at time.Time)) (time.Duration, error) {
	var next atomic.Int64
	start := time.Now()
	err := fanOut(ctx, clients, func(ctx context.Context) error {
		for {
			k := int(next.Add(1)) - 1
			if k >= n {
				return nil
			}
			at := time.Now()
			if due != nil {
				at = due(k)
				if wait := time.Until(at); wait > 0 {
					time.Sleep(wait)
				}
			}
			body, err := post(ctx, base+"/v1/jobs", echoBody(k), http.StatusAccepted)
			if err != nil {
				return err
			}
			id, err := jobID(body)
			if err != nil {
				return err
			}
			accepted(id, at)
		}
	})
	return time.Since(start), err
}

// submitBatch posts n jobs in batches of size from clients goroutines.
func submitBatch(ctx context.Context, base string, n, size, clients int, accepted func(id string, at time.Time)) (time.Duration, error) {
	var next atomic.Int64
	start := time.Now()
	err := fanOut(ctx, clients, func(ctx context.Context) error {
		var b strings.Builder
		for {
			from := int(next.Add(int64(size))) - size
			if from >= n {
				return nil
			}
			to := min(n, from+size)
			b.Reset()
			b.WriteString(`{"jobs":[`)
			for k := from; k < to; k++ {
				if k > from {
					b.WriteByte(',')
				}
				b.WriteString(echoBody(k))
			}
			b.WriteString(`]}`)
			at := time.Now()
			body, err := post(ctx, base+"/v1/jobs/batch", b.String(), http.StatusOK)
			if err != nil {
				return err
			}
			var res struct {
				Jobs []struct {
					Job   *struct{ ID string }
					Error *struct{ Code, Message string }
				}
			}
			if err := json.Unmarshal(body, &res); err != nil {
				return fmt.Errorf("batch answer: %w", err)
			}
			for _, j := range res.Jobs {
				if j.Error != nil || j.Job == nil {
					return fmt.Errorf("batch entry refused: %+v", j.Error)
				}
				accepted(j.Job.ID, at)
			}
		}
	})
	return time.Since(start), err
}

func post(ctx context.Context, url, body string, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("POST %s: %s: %s", url, resp.Status, b)
	}
	return b, nil
}

// jobID finds the id in a job's JSON without decoding all of it: the
// client's CPU is the server's too on one machine.
func jobID(body []byte) (string, error) {
	const key = `"id":"`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return "", fmt.Errorf("no id in %s", body)
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return "", fmt.Errorf("no id in %s", body)
	}
	return string(rest[:j]), nil
}

// fanOut runs f in k goroutines and returns the first error; the others
// see their context cancelled.
func fanOut(ctx context.Context, k int, f func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	return first
}

// stack is a namespace with the API running and the sys pool declared.
type stack struct {
	o     options
	ns    jobs.Namespace
	api   *launch.Process
	base  string
	rdb   *redis.Client
	st    *store.Store // the namespace's records, as warren reads them
	track *tracker
}

func newStack(ctx context.Context, o options, name string) (*stack, error) {
	s := &stack{o: o, ns: jobs.Namespace(fmt.Sprintf("bench-%s-%06d", name, rand.IntN(1e6)))}
	opts, err := redis.ParseURL(o.redisURL)
	if err != nil {
		return nil, err
	}
	s.rdb = redis.NewClient(opts)
	if s.st, err = store.New(store.Config{URL: o.redisURL, Namespace: s.ns}); err != nil {
		s.close()
		return nil, err
	}
	if s.track, err = newTracker(ctx, s.rdb, s.ns); err != nil {
		s.close()
		return nil, err
	}
	if s.api, err = startWarren(ctx, o, s.ns, []string{"api listening", "debug endpoints listening"}, "api", "--addr", "127.0.0.1:0"); err != nil {
		s.close()
		return nil, err
	}
	s.base = "http://" + s.api.Addr("api listening")
	return s, nil
}

// startWorker starts a sys worker process.
func (s *stack) startWorker(ctx context.Context) (*launch.Process, error) {
	return startWarren(ctx, s.o, s.ns, []string{"debug endpoints listening"}, "worker", "sys")
}

// declare runs a worker until it has declared the sys pool and run one
// job, then stops it, leaving the pool's queue empty with no consumer.
func (s *stack) declare(ctx context.Context) error {
	w, err := s.startWorker(ctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	s.track.reset(1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		body, err := post(ctx, s.base+"/v1/jobs", echoBody(-1), http.StatusAccepted)
		if err == nil {
			id, err := jobID(body)
			if err != nil {
				return err
			}
			s.track.accepted(id, time.Now())
			return s.track.wait(ctx, 30*time.Second)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the sys pool was not declared within 30s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *stack) close() {
	if s.api != nil {
		s.api.Stop()
	}
	if s.track != nil {
		s.track.close()
	}
	if s.rdb != nil {
		_ = s.rdb.Close()
	}
	if s.st != nil {
		_ = s.st.Close()
	}
	cleanup(s.ns)
}

func runWarren(ctx context.Context, o options, base Baseline, srv servers, cpu map[string]CPUPer10k) (Warren, Cost, map[string]*LoadLevel, []string, error) {
	var (
		w        Warren
		c        Cost
		profiles []string
	)
	s, err := newStack(ctx, o, "warren")
	if err != nil {
		return w, c, nil, nil, err
	}
	defer s.close()
	if err := s.declare(ctx); err != nil {
		return w, c, nil, nil, err
	}
	c.APIIdleMB, _, _ = memory(s.api.PID())
	ignore := func(string, time.Time) {}

	// Submit, with no worker: what the API alone accepts.
	nSingle := o.n / 2
	// The API's profile of single POSTs: where a request's cost goes.
	sprof := filepath.Join(o.outDir, "api-single.cpu.pprof")
	secs := int(min(10, max(1, 0.6*float64(nSingle)/max(base.Publish/6, 1))))
	singleProf := make(chan error, 1)
	go func() { singleProf <- s.api.Profile(ctx, "profile", fmt.Sprintf("?seconds=%d", secs), sprof) }()
	m := startMeter(srv, s.api.PID())
	took, err := submitSingle(ctx, s.base, nSingle, o.clients, nil, ignore)
	if err != nil {
		return w, c, nil, nil, fmt.Errorf("submit single: %w", err)
	}
	w.SubmitSingle = round(float64(nSingle)/took.Seconds(), 0)
	cs, own := m.per10k(nSingle)
	cs.API, c.APICPUPer10kSingle = own[0], own[0]
	cpu["warren_submit_single"] = cs
	if err := <-singleProf; err == nil {
		profiles = append(profiles, sprof)
	}
	fmt.Printf("  submit, single POSTs from %d clients: %8.0f jobs/s  (%.0f%% of confirmed publish)\n",
		o.clients, w.SubmitSingle, 100*ratio(w.SubmitSingle, base.Publish))

	batchClients := 4
	m = startMeter(srv, s.api.PID())
	took, err = submitBatch(ctx, s.base, o.n, o.batch, batchClients, ignore)
	if err != nil {
		return w, c, nil, nil, fmt.Errorf("submit batch: %w", err)
	}
	w.SubmitBatch = round(float64(o.n)/took.Seconds(), 0)
	cs, own = m.per10k(o.n)
	cs.API, c.APICPUPer10kBatch = own[0], own[0]
	cpu["warren_submit_batch"] = cs
	fmt.Printf("  submit, batches of %d from %d clients: %6.0f jobs/s  (%.0f%% of confirmed publish)\n",
		o.batch, batchClients, w.SubmitBatch, 100*ratio(w.SubmitBatch, base.Publish))

	// Process what waits, with one worker process.
	queued := nSingle + o.n
	s.track.reset(queued)
	worker, err := s.startWorker(ctx)
	if err != nil {
		return w, c, nil, nil, err
	}
	defer worker.Stop()
	m = startMeter(srv, worker.PID())
	c.WorkerIdleMB, _, _ = memory(worker.PID())
	profDone := make(chan error, 1)
	secs = int(min(10, max(1, 0.6*float64(queued)/max(base.Consume, 1))))
	wprof := filepath.Join(o.outDir, "worker-process.cpu.pprof")
	go func() { profDone <- worker.Profile(ctx, "profile", fmt.Sprintf("?seconds=%d", secs), wprof) }()
	if err := s.track.wait(ctx, 10*time.Minute); err != nil {
		return w, c, nil, nil, fmt.Errorf("process: %w", err)
	}
	first, last, _ := s.track.window()
	w.Process = round(float64(queued-1)/last.Sub(first).Seconds(), 0)
	cs, own = m.per10k(queued)
	cs.Worker, c.WorkerCPUPer10k = own[0], own[0]
	cpu["warren_process"] = cs
	if err := <-profDone; err == nil {
		profiles = append(profiles, wprof)
	}
	fmt.Printf("  process, one worker process:          %8.0f jobs/s  (%.0f%% of consume + SET)\n",
		w.Process, 100*ratio(w.Process, base.Consume))

	// End to end at full load: batches as fast as they are accepted.
	s.track.reset(o.n)
	aprof := filepath.Join(o.outDir, "api-e2e.cpu.pprof")
	secs = int(min(10, max(1, 0.6*float64(o.n)/max(base.E2E, 1))))
	go func() { profDone <- s.api.Profile(ctx, "profile", fmt.Sprintf("?seconds=%d", secs), aprof) }()
	m = startMeter(srv, s.api.PID(), worker.PID())
	start := time.Now()
	if _, err := submitBatch(ctx, s.base, o.n, o.batch, batchClients, s.track.accepted); err != nil {
		return w, c, nil, nil, fmt.Errorf("end to end: %w", err)
	}
	if err := s.track.wait(ctx, 10*time.Minute); err != nil {
		return w, c, nil, nil, fmt.Errorf("end to end: %w", err)
	}
	_, last, lat := s.track.window()
	w.E2E = round(float64(o.n)/last.Sub(start).Seconds(), 0)
	cs, own = m.per10k(o.n)
	cs.API, cs.Worker = own[0], own[1]
	cpu["warren_e2e"] = cs
	w.Latency = latencies(lat)
	if err := <-profDone; err == nil {
		profiles = append(profiles, aprof)
	}
	fmt.Printf("  end to end, full load (batches):      %8.0f jobs/s  (%.0f%% of raw; latency p50 %.1f ms, p99 %.1f ms)\n",
		w.E2E, 100*ratio(w.E2E, base.E2E), w.Latency.P50, w.Latency.P99)

	// End to end at shares of that load, single POSTs paced evenly.
	levels := newLevels(w.E2E, o.n)
	for _, name := range levelNames {
		l := levels[name]
		s.track.reset(l.Jobs)
		before, err := readAOF(ctx, s.rdb)
		if err != nil {
			return w, c, nil, nil, err
		}
		m := startMeter(srv, s.api.PID(), worker.PID())
		start := time.Now()
		if _, err := submitSingle(ctx, s.base, l.Jobs, o.clients, paced(l.Rate), s.track.accepted); err != nil {
			return w, c, nil, nil, fmt.Errorf("%s%% load: %w", name, err)
		}
		if err := s.track.wait(ctx, 10*time.Minute); err != nil {
			return w, c, nil, nil, fmt.Errorf("%s%% load: %w", name, err)
		}
		used, own := m.per10k(l.Jobs)
		l.WarrenBusy = busy(used.Total()+own[0]+own[1], l.Jobs, time.Since(start))
		after, err := readAOF(ctx, s.rdb)
		if err != nil {
			return w, c, nil, nil, err
		}
		l.WarrenAOF = after.since(before, l.Jobs)
		_, _, lat = s.track.window()
		l.Warren, l.WarrenAnswered = latencies(lat), latencies(s.track.answered())
		fmt.Printf("  end to end, %s%% load (%0.f jobs/s):  latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms (answered: p50 %.1f, p99 %.1f; CPU busy %.0f%%; Redis AOF rewrites %d)\n",
			name, l.Rate, l.Warren.P50, l.Warren.P95, l.Warren.P99, l.WarrenAnswered.P50, l.WarrenAnswered.P99, 100*l.WarrenBusy, l.WarrenAOF.Rewrites)
		if name == breakdownLevel {
			if l.Breakdown, err = breakdown(ctx, s.st, s.track.byJob()); err != nil {
				return w, c, nil, nil, fmt.Errorf("breakdown at %s%% load: %w", name, err)
			}
		}
	}
	half := levels["50"]
	w.HalfRate, w.HalfLatency, w.HalfSubmitLatency = half.Rate, half.Warren, half.WarrenAnswered

	_, c.APIPeakMB, _ = memory(s.api.PID())
	_, c.WorkerPeakMB, _ = memory(worker.PID())
	for _, p := range []struct {
		proc *launch.Process
		path string
	}{{s.api, "api.allocs.pprof"}, {worker, "worker.allocs.pprof"}} {
		path := filepath.Join(o.outDir, p.path)
		if err := p.proc.Profile(ctx, "allocs", "", path); err == nil {
			profiles = append(profiles, path)
		}
	}

	// Submit in-process, with the worker stopped so the jobs wait as they
	// did for the API's submissions: the producer package in this very
	// process, in batches from as many goroutines as the batch POSTs.
	worker.Stop()
	ip, err := newInProcess(ctx, o, s.ns, s.st)
	if err != nil {
		return w, c, nil, nil, fmt.Errorf("submit in-process: %w", err)
	}
	defer ip.close()
	m = startMeter(srv, s.api.PID())
	took, err = ip.submitMany(ctx, o.n, o.batch, batchClients)
	if err != nil {
		return w, c, nil, nil, fmt.Errorf("submit in-process: %w", err)
	}
	w.SubmitInProcess = round(float64(o.n)/took.Seconds(), 0)
	cs, own = m.per10k(o.n)
	cs.API = own[0] // idle, for the record
	cpu["warren_submit_inprocess"] = cs
	fmt.Printf("  submit in-process, batches of %d from %d goroutines: %6.0f jobs/s  (%.0f%% of confirmed publish)\n",
		o.batch, batchClients, w.SubmitInProcess, 100*ratio(w.SubmitInProcess, base.Publish))
	return w, c, levels, profiles, nil
}

// runScale measures processing with k worker processes for each k.
func runScale(ctx context.Context, o options) ([]ScalePoint, error) {
	var out []ScalePoint
	for _, k := range o.workers {
		rate, err := scalePoint(ctx, o, k)
		if err != nil {
			return nil, err
		}
		p := ScalePoint{Workers: k, Rate: rate}
		if len(out) > 0 && out[0].Workers == 1 {
			p.Ratio = ratio(rate, out[0].Rate)
		} else if k == 1 {
			p.Ratio = 1
		}
		fmt.Printf("  %d worker process(es): %8.0f jobs/s\n", k, rate)
		out = append(out, p)
	}
	return out, nil
}

func scalePoint(ctx context.Context, o options, k int) (float64, error) {
	s, err := newStack(ctx, o, fmt.Sprintf("scale%d", k))
	if err != nil {
		return 0, err
	}
	defer s.close()
	if err := s.declare(ctx); err != nil {
		return 0, err
	}
	if _, err := submitBatch(ctx, s.base, o.n, o.batch, 4, func(string, time.Time) {}); err != nil {
		return 0, err
	}
	s.track.reset(o.n)
	for range k {
		w, err := s.startWorker(ctx)
		if err != nil {
			return 0, err
		}
		defer w.Stop()
	}
	if err := s.track.wait(ctx, 10*time.Minute); err != nil {
		return 0, err
	}
	first, last, _ := s.track.window()
	return round(float64(o.n-1)/last.Sub(first).Seconds(), 0), nil
}
