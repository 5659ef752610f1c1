package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/warrenhq/warren/store"
)

// loadLevels are the paced loads latency is measured at, as percentages of
// warren's full-load end-to-end rate of the same round; warren and the
// baseline are paced alike. The 2% level is nearly idle: it shows each
// path's own latency, which the higher levels add queueing for the CPU to.
var loadLevels = []int{2, 25, 50, 75}

// levelNames are loadLevels as the keys of Results.Latency.
var levelNames = func() []string {
	var out []string
	for _, p := range loadLevels {
		out = append(out, strconv.Itoa(p))
	}
	return out
}()

// breakdownLevel is the level whose jobs' own timestamps are broken down.
const breakdownLevel = "50"

// LoadLevel is latency at one paced load, warren's beside the baseline's,
// each from when a job (a message) was due.
type LoadLevel struct {
	Rate float64 `json:"rate_per_s"`
	Jobs int     `json:"jobs"`
	// Warren is from a job's due time to its result stored (heard on its
	// done channel); Baseline from a message's due time to its Redis SET.
	Warren   Latencies `json:"warren"`
	Baseline Latencies `json:"baseline"`
	P50Ratio float64   `json:"p50_ratio"`
	P95Ratio float64   `json:"p95_ratio"`
	P99Ratio float64   `json:"p99_ratio"`
	// WarrenAnswered is until the API answered (the broker confirmed);
	// BaselineConfirmed until the raw publisher's confirm.
	WarrenAnswered    Latencies `json:"warren_answered"`
	BaselineConfirmed Latencies `json:"baseline_confirmed"`
	// WarrenAOF and BaselineAOF are what each run appended to Redis's
	// append-only file, and the rewrites of it that ran meanwhile.
	WarrenAOF   AOF `json:"warren_aof"`
	BaselineAOF AOF `json:"baseline_aof"`
	// WarrenBusy and BaselineBusy are the share of the machine's CPU (all
	// its cores) that each run's processes used while it ran: RabbitMQ,
	// Redis and this program, and warren's API and worker. At a share near
	// one everything queues for the CPU, whoever's latency it is.
	WarrenBusy   float64 `json:"warren_busy"`
	BaselineBusy float64 `json:"baseline_busy"`
	// Breakdown is where warren's time went, at breakdownLevel only.
	Breakdown *Breakdown `json:"breakdown,omitempty"`
}

// ratios fills the ratios of warren's percentiles to the baseline's.
func (l *LoadLevel) ratios() {
	l.P50Ratio = ratio(l.Warren.P50, l.Baseline.P50)
	l.P95Ratio = ratio(l.Warren.P95, l.Baseline.P95)
	l.P99Ratio = ratio(l.Warren.P99, l.Baseline.P99)
}

// newLevels returns the load levels at rates of full, warren's full-load
// end-to-end rate, each with as many jobs as ten seconds of its rate (five
// below 10%, whose few jobs a second need no longer), at most n/2.
func newLevels(full float64, n int) map[string]*LoadLevel {
	out := map[string]*LoadLevel{}
	for i, p := range loadLevels {
		rate, secs := round(full*float64(p)/100, 0), 10.0
		if p < 10 {
			secs = 5
		}
		out[levelNames[i]] = &LoadLevel{Rate: rate, Jobs: max(1, min(n/2, int(rate*secs)))}
	}
	return out
}

// busy returns the share of the machine's CPU that cpu, the seconds per
// 10,000 jobs of a run of n jobs, makes over took.
func busy(cpu float64, n int, took time.Duration) float64 {
	if took <= 0 {
		return 0
	}
	return round(cpu*float64(n)/10000/took.Seconds()/float64(runtime.NumCPU()), 3)
}

// paced returns the due times of jobs sent evenly at rate per second,
// from shortly after now.
func paced(rate float64) func(k int) time.Time {
	start := time.Now().Add(50 * time.Millisecond)
	interval := time.Duration(float64(time.Second) / max(rate, 1))
	return func(k int) time.Time { return start.Add(time.Duration(k) * interval) }
}

// Breakdown splits warren's latency at one load into the parts the
// timestamps already kept tell apart: the benchmark's own (due, answer
// heard, end heard) and the job record's (created_at, set by the API as it
// builds the job; started_at, by the worker as a handler takes the
// delivery; finished_at, by the worker once the handler returned). The
// record's times are whole milliseconds (each taken as the middle of its
// millisecond), so each part is known to about ±1 ms; the percentiles of
// the parts do not add up to those of the whole. Nothing records when the
// broker delivered a message to the worker or when the worker acked it.
type Breakdown struct {
	Sampled int `json:"jobs_sampled"`
	// Request: due → created_at: the HTTP request, JSON decoding and
	// validation against the type's schema (and a late client's delay).
	Request Latencies `json:"request"`
	// ToWorker: created_at → started_at: the record written, the publish,
	// the quorum queue, the delivery and the wait in the worker's prefetch
	// buffer until a handler was free.
	ToWorker Latencies `json:"to_worker"`
	// Run: started_at → finished_at: the start script's round trip and the
	// handler.
	Run Latencies `json:"start_and_run"`
	// Store: finished_at → end heard: the finish script's round trip and
	// its done message reaching the benchmark.
	Store Latencies `json:"store"`
	// Answer: created_at → the API's answer heard: the record written, the
	// publish and its confirm, the HTTP answer. It runs beside ToWorker.
	Answer Latencies `json:"answer"`
	// Total: due → end heard, of the same jobs.
	Total Latencies `json:"total"`
}

// breakdownSample bounds the records a breakdown reads.
const breakdownSample = 2000

// breakdown reads the records of up to breakdownSample of the jobs timed
// and splits their latencies.
func breakdown(ctx context.Context, st *store.Store, timed map[string]jobTimes) (*Breakdown, error) {
	ids := slices.Sorted(maps.Keys(timed)) // ids are UUIDv7: in order of creation
	if step := len(ids)/breakdownSample + 1; step > 1 {
		var every []string
		for i := 0; i < len(ids); i += step {
			every = append(every, ids[i])
		}
		ids = every
	}
	var (
		mu    sync.Mutex
		parts [6][]time.Duration
		next  int
	)
	err := fanOut(ctx, 8, func(ctx context.Context) error {
		for {
			mu.Lock()
			if next == len(ids) {
				mu.Unlock()
				return nil
			}
			id := ids[next]
			next++
			mu.Unlock()
			j, err := st.Get(ctx, id)
			if err != nil {
				return err
			}
			if j.StartedAt == nil || j.FinishedAt == nil || j.Attempt != 1 {
				continue // a retried job would mix attempts
			}
			p, ok := split(timed[id], j.CreatedAt, *j.StartedAt, *j.FinishedAt)
			if !ok {
				continue
			}
			mu.Lock()
			for i := range parts {
				parts[i] = append(parts[i], p[i])
			}
			mu.Unlock()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read the records: %w", err)
	}
	if len(parts[0]) == 0 {
		return nil, errors.New("no record had the times of one attempt")
	}
	return &Breakdown{Sampled: len(parts[0]), Request: latencies(parts[0]), ToWorker: latencies(parts[1]),
		Run: latencies(parts[2]), Store: latencies(parts[3]), Answer: latencies(parts[4]), Total: latencies(parts[5])}, nil
}

// split returns a job's parts, in Breakdown's order, from the
// benchmark's times and the record's (whole milliseconds, taken as the
// middle of theirs).
func split(b jobTimes, created, started, finished time.Time) ([6]time.Duration, bool) {
	mid := func(t time.Time) time.Time { return t.Truncate(time.Millisecond).Add(time.Millisecond / 2) }
	if b.due.IsZero() || b.answered.IsZero() || b.done.IsZero() || created.IsZero() {
		return [6]time.Duration{}, false
	}
	c, s, f := mid(created), mid(started), mid(finished)
	return [6]time.Duration{c.Sub(b.due), s.Sub(c), f.Sub(s), b.done.Sub(f), b.answered.Sub(c), b.done.Sub(b.due)}, true
}
