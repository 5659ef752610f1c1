package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/jobs"
)

// Names of the job metrics, which the processes count as they go (the pool
// gauges above are measured at each scrape instead). docs/metrics.md lists
// every one with its labels and the process that serves it.
const (
	// MetricSubmitted counts the jobs the API accepted (recorded and
	// confirmed by the broker), labelled LabelType. A submission that an
	// idempotency key answered with an earlier job is not counted again.
	MetricSubmitted = "warren_jobs_submitted_total"
	// MetricCompleted counts the attempts a worker ended, labelled
	// LabelType and LabelOutcome.
	MetricCompleted = "warren_jobs_completed_total"
	// MetricRunSeconds is a histogram of how long handlers ran, labelled
	// LabelType.
	MetricRunSeconds = "warren_job_run_seconds"
	// MetricWaitSeconds is a histogram of how long jobs waited from when
	// they were due (their run time, else their creation) until a worker
	// started them, labelled LabelType.
	MetricWaitSeconds = "warren_job_wait_seconds"
	// MetricRunning is the jobs a worker process runs now, labelled
	// LabelPool.
	MetricRunning = "warren_jobs_running"
	// MetricLimited counts jobs a worker held back because their type's
	// rate limit was reached (docs/ratelimits.md), by type.
	MetricLimited = "warren_jobs_limited_total"
	// MetricDeadLettered counts the jobs a worker process sent to (or, for
	// the broker's delivery limit, found in) the pool's dead-letter queue,
	// labelled LabelPool.
	MetricDeadLettered = "warren_dead_letters_total"
	// MetricReplicas is a supervisor's worker processes per pool, labelled
	// LabelPool and LabelKind.
	MetricReplicas = "warren_replicas"
)

// More label names of the job metrics.
const (
	// LabelType is the job type, such as "image.thumbnail".
	LabelType = "type"
	// LabelOutcome is how an attempt ended: one of the Outcome values.
	LabelOutcome = "outcome"
	// LabelKind tells the current replicas from the desired ones.
	LabelKind = "kind"
	// LabelPID is the process id of a supervisor's worker process, which
	// the supervisor adds to the figures it gathers from it.
	LabelPID = "pid"
)

// Outcomes of an attempt, the values of LabelOutcome.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed" // for good; see OutcomeRetried
	OutcomeRetried   = "retried"
	OutcomeCanceled  = "canceled"
)

// Kinds of replica count, the values of LabelKind.
const (
	KindCurrent = "current"
	KindDesired = "desired"
)

// DurationBuckets are the upper bounds, in seconds, of the run and wait
// histograms: from 5ms to an hour, since a job may be a thumbnail or an
// hour-long export.
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

func nsLabels(ns jobs.Namespace) prometheus.Labels {
	if ns == "" {
		ns = jobs.DefaultNamespace
	}
	return prometheus.Labels{LabelNamespace: string(ns)}
}

// Submissions counts the jobs an API accepted, by type. It is a
// prometheus.Collector; Add is safe for concurrent use and allocates
// nothing once a type has been seen.
type Submissions struct {
	vec    *prometheus.CounterVec
	byType sync.Map // type → prometheus.Counter
}

var _ prometheus.Collector = (*Submissions)(nil)

// NewSubmissions returns a Submissions labelled with the namespace.
func NewSubmissions(ns jobs.Namespace) *Submissions {
	return &Submissions{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        MetricSubmitted,
		Help:        "Jobs the API accepted (recorded, and confirmed by the broker), by type.",
		ConstLabels: nsLabels(ns),
	}, []string{LabelType})}
}

// Add counts n jobs of type typ.
func (s *Submissions) Add(typ string, n int) {
	c, ok := s.byType.Load(typ)
	if !ok {
		c, _ = s.byType.LoadOrStore(typ, s.vec.WithLabelValues(typ))
	}
	c.(prometheus.Counter).Add(float64(n))
}

// Describe sends the counter's description.
func (s *Submissions) Describe(ch chan<- *prometheus.Desc) { s.vec.Describe(ch) }

// Collect sends the counts.
func (s *Submissions) Collect(ch chan<- prometheus.Metric) { s.vec.Collect(ch) }

// Runs counts what a worker process runs: attempts by outcome, run and
// wait times, jobs running and dead letters. It is a prometheus.Collector.
// Type and Pool return handles whose labels are resolved once, so that
// counting an attempt allocates nothing.
type Runs struct {
	completed *prometheus.CounterVec
	run, wait *prometheus.HistogramVec
	running   *prometheus.GaugeVec
	dead      *prometheus.CounterVec
	limited   *prometheus.CounterVec

	mu    sync.RWMutex
	types map[string]*TypeRuns
	pools map[string]*PoolRuns
}

var _ prometheus.Collector = (*Runs)(nil)

// TypeRuns are the figures of one job type.
type TypeRuns struct {
	Succeeded, Failed, Retried, Canceled prometheus.Counter
	Run, Wait                            prometheus.Observer
	// Limited counts the type's jobs held back by its rate limit.
	Limited prometheus.Counter
}

// Outcome counts an attempt that ended as status: succeeded, failed,
// retrying (as OutcomeRetried) or canceled. Other statuses are not
// outcomes (a job interrupted by shutdown goes back to its queue) and are
// not counted.
func (t *TypeRuns) Outcome(status jobs.Status) {
	switch status {
	case jobs.StatusSucceeded:
		t.Succeeded.Inc()
	case jobs.StatusFailed:
		t.Failed.Inc()
	case jobs.StatusRetrying:
		t.Retried.Inc()
	case jobs.StatusCanceled:
		t.Canceled.Inc()
	}
}

// Ran observes how long a handler ran.
func (t *TypeRuns) Ran(d time.Duration) { t.Run.Observe(d.Seconds()) }

// Waited observes how long a job waited from due to start; a negative
// wait (clocks apart) counts as none.
func (t *TypeRuns) Waited(d time.Duration) { t.Wait.Observe(max(d, 0).Seconds()) }

// PoolRuns are the figures of one pool.
type PoolRuns struct {
	Running     prometheus.Gauge
	DeadLetters prometheus.Counter
}

// NewRuns returns a Runs labelled with the namespace.
func NewRuns(ns jobs.Namespace) *Runs {
	l := nsLabels(ns)
	return &Runs{
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        MetricCompleted,
			Help:        "Attempts a worker ended, by type and outcome (succeeded, failed, retried, canceled).",
			ConstLabels: l,
		}, []string{LabelType, LabelOutcome}),
		run: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        MetricRunSeconds,
			Help:        "How long handlers ran, in seconds, by type.",
			ConstLabels: l,
			Buckets:     DurationBuckets,
		}, []string{LabelType}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        MetricWaitSeconds,
			Help:        "How long jobs waited from due (their run time, else their creation) until a worker started them, in seconds, by type.",
			ConstLabels: l,
			Buckets:     DurationBuckets,
		}, []string{LabelType}),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name:        MetricRunning,
			Help:        "Jobs this worker process runs now, by pool.",
			ConstLabels: l,
		}, []string{LabelPool}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        MetricDeadLettered,
			Help:        "Jobs this worker process dead-lettered (failed for good, unreadable, or past the delivery limit), by pool.",
			ConstLabels: l,
		}, []string{LabelPool}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        MetricLimited,
			Help:        "Jobs this worker process held back (parked, to come back later) because their type's rate limit was reached, by type.",
			ConstLabels: l,
		}, []string{LabelType}),
		types: map[string]*TypeRuns{},
		pools: map[string]*PoolRuns{},
	}
}

// Type returns the figures of a job type, made at the first call.
func (r *Runs) Type(name string) *TypeRuns {
	r.mu.RLock()
	t := r.types[name]
	r.mu.RUnlock()
	if t != nil {
		return t
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := r.types[name]; t != nil {
		return t
	}
	t = &TypeRuns{
		Succeeded: r.completed.WithLabelValues(name, OutcomeSucceeded),
		Failed:    r.completed.WithLabelValues(name, OutcomeFailed),
		Retried:   r.completed.WithLabelValues(name, OutcomeRetried),
		Canceled:  r.completed.WithLabelValues(name, OutcomeCanceled),
		Run:       r.run.WithLabelValues(name),
		Wait:      r.wait.WithLabelValues(name),
		Limited:   r.limited.WithLabelValues(name),
	}
	r.types[name] = t
	return t
}

// Pool returns the figures of a pool, made at the first call.
func (r *Runs) Pool(name string) *PoolRuns {
	r.mu.RLock()
	p := r.pools[name]
	r.mu.RUnlock()
	if p != nil {
		return p
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.pools[name]; p != nil {
		return p
	}
	p = &PoolRuns{Running: r.running.WithLabelValues(name), DeadLetters: r.dead.WithLabelValues(name)}
	r.pools[name] = p
	return p
}

// Describe sends the descriptions of the figures.
func (r *Runs) Describe(ch chan<- *prometheus.Desc) {
	r.completed.Describe(ch)
	r.run.Describe(ch)
	r.wait.Describe(ch)
	r.running.Describe(ch)
	r.dead.Describe(ch)
	r.limited.Describe(ch)
}

// Collect sends the figures.
func (r *Runs) Collect(ch chan<- prometheus.Metric) {
	r.completed.Collect(ch)
	r.run.Collect(ch)
	r.wait.Collect(ch)
	r.running.Collect(ch)
	r.dead.Collect(ch)
	r.limited.Collect(ch)
}

// PoolReplicas is a pool's worker processes as a supervisor counts them.
type PoolReplicas struct {
	Pool string
	// Current is the processes running and not told to stop.
	Current int
	// Desired is the size the last scaling decision asked for.
	Desired int
}

// Replicas is a prometheus.Collector of a supervisor's replica counts,
// read from status at each scrape.
type Replicas struct {
	desc   *prometheus.Desc
	status func() []PoolReplicas
}

var _ prometheus.Collector = (*Replicas)(nil)

// NewReplicas returns the collector of the counts status returns.
func NewReplicas(ns jobs.Namespace, status func() []PoolReplicas) *Replicas {
	return &Replicas{
		desc: prometheus.NewDesc(MetricReplicas,
			"A supervisor's worker processes of the pool: current (running, not stopping) and desired (the last scaling decision).",
			[]string{LabelPool, LabelKind}, nsLabels(ns)),
		status: status,
	}
}

// Describe sends the gauge's description.
func (r *Replicas) Describe(ch chan<- *prometheus.Desc) { ch <- r.desc }

// Collect sends the counts.
func (r *Replicas) Collect(ch chan<- prometheus.Metric) {
	for _, p := range r.status() {
		ch <- prometheus.MustNewConstMetric(r.desc, prometheus.GaugeValue, float64(p.Current), p.Pool, KindCurrent)
		ch <- prometheus.MustNewConstMetric(r.desc, prometheus.GaugeValue, float64(p.Desired), p.Pool, KindDesired)
	}
}
