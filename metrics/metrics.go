// Package metrics measures each worker pool's backlog — the ready and
// unacknowledged messages of its queue, its consumers, the age of its oldest
// waiting job and its dead letters — and exports the figures to Prometheus,
// where autoscalers (warren's own, or KEDA) and dashboards read them.
//
// A Collector measures when scraped, caches the figures briefly so that
// several scrapers at once cost one measurement, and leaves out what it could
// not measure: one pool's failure never fails the scrape.
package metrics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
)

// Label names of every pool metric.
const (
	// LabelPool is the pool's name, such as "sys".
	LabelPool = "pool"
	// LabelNamespace is the warren namespace. It is not "namespace": a
	// Prometheus scraping Kubernetes gives every series a "namespace" label
	// of its own (the pod's), which would rename ours to
	// "exported_namespace".
	LabelNamespace = "warren_namespace"
)

// Names of the pool metrics, all gauges labelled LabelPool and
// LabelNamespace.
const (
	// MetricBacklog is ready + unacknowledged messages of the pool's queue:
	// what autoscalers size the pool on. Measured over AMQP (no
	// management API), it is the ready messages alone.
	MetricBacklog = "warren_queue_backlog"
	// MetricReady is the messages waiting for a worker.
	MetricReady = "warren_queue_ready"
	// MetricUnacked is the messages delivered and not yet settled (running
	// or prefetched); left out when only AMQP measured the queue, which
	// cannot count them.
	MetricUnacked = "warren_queue_unacked"
	// MetricConsumers is the consumers of the pool's queue.
	MetricConsumers = "warren_queue_consumers"
	// MetricOldestAge is how long the pool's oldest waiting job has waited,
	// in seconds; 0 when none waits.
	MetricOldestAge = "warren_oldest_job_age_seconds"
	// MetricDead is the messages in the pool's dead-letter queue.
	MetricDead = "warren_dead_letters"
)

// Broker is what measuring needs of RabbitMQ.
type Broker interface {
	PoolDepth(ctx context.Context, pool string, m *queue.Management) (queue.Depth, error)
	InspectDead(ctx context.Context, pool string) (queue.QueueInfo, error)
}

// Store is what measuring needs of Redis.
type Store interface {
	OldestWaiting(ctx context.Context, pool string) (time.Duration, error)
}

var _ Broker = (*queue.Broker)(nil)

// Config configures a Collector. Zero fields take the defaults noted.
type Config struct {
	// Broker measures queues; required.
	Broker Broker
	// Store tells the age of each pool's oldest waiting job; nil means that
	// age is not measured.
	Store Store
	// Management is RabbitMQ's management API, which also counts
	// unacknowledged messages; nil means AMQP alone.
	Management *queue.Management
	// Pools returns the pools to measure at each scrape; required. Pools
	// it names more than once are measured once.
	Pools func(ctx context.Context) ([]string, error)
	// Namespace is the LabelNamespace value; zero means
	// jobs.DefaultNamespace.
	Namespace jobs.Namespace
	// CacheFor is how long a measurement answers scrapes before the next
	// one; zero means 1s.
	CacheFor time.Duration
	// Timeout bounds one measurement of every pool; zero means 5s.
	Timeout time.Duration
	// Logger receives the failures of measurements; nil means
	// slog.Default().
	Logger *slog.Logger
	// Now tells the time; nil means time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	c.Namespace = cmp.Or(c.Namespace, jobs.DefaultNamespace)
	c.CacheFor = cmp.Or(c.CacheFor, time.Second)
	c.Timeout = cmp.Or(c.Timeout, 5*time.Second)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Sample is what was measured of one pool. A nil figure could not be
// measured, and Err says why; with Err nil every figure is set (OldestAge
// only if the Collector has a Store).
type Sample struct {
	Pool string
	// Depth is the pool queue's depth. A pool whose queue does not exist
	// holds nothing: a zero Depth, from AMQP.
	Depth *queue.Depth
	// OldestAge is how long the oldest waiting job has waited; 0 when none
	// waits; nil also when the Collector has no Store.
	OldestAge *time.Duration
	// Dead is the messages in the pool's dead-letter queue; 0 when it has
	// none.
	Dead *int
	// Err joins the errors of the figures that could not be measured.
	Err error
}

// Collector measures pools and is a prometheus.Collector of their figures.
// Register it with a registry of your own, or serve Handler.
type Collector struct {
	cfg   Config
	log   *slog.Logger
	descs map[string]*prometheus.Desc

	mu      sync.Mutex
	last    []Sample
	lastAt  time.Time
	running chan struct{} // closed when the measurement under way ends; nil if none
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a Collector of the pools cfg.Pools names.
func New(cfg Config) (*Collector, error) {
	cfg = cfg.withDefaults()
	if cfg.Broker == nil {
		return nil, errors.New("metrics: config: Broker is required")
	}
	if cfg.Pools == nil {
		return nil, errors.New("metrics: config: Pools is required")
	}
	if err := cfg.Namespace.Validate(); err != nil {
		return nil, fmt.Errorf("metrics: config: %w", err)
	}
	c := &Collector{cfg: cfg, log: cfg.Logger.With("component", "metrics"), descs: map[string]*prometheus.Desc{}}
	for name, help := range map[string]string{
		MetricBacklog:   "Ready plus unacknowledged messages of the pool's queue (ready alone when measured over AMQP).",
		MetricReady:     "Messages of the pool's queue waiting for a worker.",
		MetricUnacked:   "Messages of the pool's queue delivered to a worker and not yet settled (needs the management API).",
		MetricConsumers: "Consumers of the pool's queue.",
		MetricOldestAge: "How long the pool's oldest waiting job has waited, in seconds (0 when none waits).",
		MetricDead:      "Messages in the pool's dead-letter queue.",
	} {
		c.descs[name] = prometheus.NewDesc(name, help, []string{LabelPool},
			prometheus.Labels{LabelNamespace: string(cfg.Namespace)})
	}
	return c, nil
}

// Handler serves the pools' figures, the Go runtime's and process's
// standard metrics and those of more, the process's own (such as its
// rescuer's counter), in Prometheus's text format, for GET /metrics.
func (c *Collector) Handler(more ...prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		c,
	)
	reg.MustRegister(more...)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(c.log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// Describe sends the descriptions of the pool metrics.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect measures the pools, or reuses a measurement younger than
// CacheFor, and sends the figures measured.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	// prometheus.Collector gives Collect no context; Timeout bounds the
	// measurement instead.
	for _, s := range c.samples(context.Background()) {
		gauge := func(name string, v float64) {
			ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, s.Pool)
		}
		if d := s.Depth; d != nil {
			gauge(MetricBacklog, float64(d.Backlog()))
			gauge(MetricReady, float64(d.Ready))
			if d.Source == queue.SourceManagement {
				gauge(MetricUnacked, float64(d.Unacked))
			}
			gauge(MetricConsumers, float64(d.Consumers))
		}
		if s.OldestAge != nil {
			gauge(MetricOldestAge, s.OldestAge.Seconds())
		}
		if s.Dead != nil {
			gauge(MetricDead, float64(*s.Dead))
		}
	}
}

// samples returns the last measurement if it is fresh, else waits for the
// one under way, else measures. The measurement is shared by every scrape
// waiting on it, so it runs on a context of its own, not the caller's.
func (c *Collector) samples(ctx context.Context) []Sample {
	for {
		c.mu.Lock()
		if c.last != nil && c.cfg.Now().Sub(c.lastAt) < c.cfg.CacheFor {
			s := c.last
			c.mu.Unlock()
			return s
		}
		if running := c.running; running != nil {
			c.mu.Unlock()
			select {
			case <-running:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		done := make(chan struct{})
		c.running = done
		c.mu.Unlock()

		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
		s := c.measureAll(mctx)
		cancel()

		c.mu.Lock()
		c.last, c.lastAt, c.running = s, c.cfg.Now(), nil
		c.mu.Unlock()
		close(done)
		return s
	}
}

// measureAll measures the pools Pools names and logs what failed.
func (c *Collector) measureAll(ctx context.Context) []Sample {
	pools, err := c.cfg.Pools(ctx)
	if err != nil {
		c.log.Warn("cannot list the pools to measure", "err", err)
		return []Sample{}
	}
	samples := c.Measure(ctx, pools)
	for _, s := range samples {
		if s.Err != nil {
			c.log.Warn("cannot measure pool; the figures that failed are left out", "pool", s.Pool, "err", s.Err)
		}
	}
	return samples
}

// parallel bounds the pools measured at once.
const parallel = 8

// Measure measures the given pools now, several at once, and returns one
// Sample per pool, sorted by pool, without caching. A failure leaves the
// figure nil and is in the Sample's Err.
func (c *Collector) Measure(ctx context.Context, pools []string) []Sample {
	pools = slices.Clone(pools)
	slices.Sort(pools)
	pools = slices.Compact(pools)
	out := make([]Sample, len(pools))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, pool := range pools {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i] = c.measure(ctx, pool)
		})
	}
	wg.Wait()
	return out
}

// measure measures one pool.
func (c *Collector) measure(ctx context.Context, pool string) Sample {
	s := Sample{Pool: pool}
	var errs []error
	d, err := c.cfg.Broker.PoolDepth(ctx, pool, c.cfg.Management)
	switch {
	case errors.Is(err, queue.ErrNoPool):
		d, err = queue.Depth{Source: queue.SourceAMQP}, nil
		fallthrough
	case err == nil:
		s.Depth = &d
	default:
		errs = append(errs, err)
	}
	if c.cfg.Store != nil {
		if age, err := c.cfg.Store.OldestWaiting(ctx, pool); err == nil {
			s.OldestAge = &age
		} else {
			errs = append(errs, fmt.Errorf("oldest waiting job of pool %s: %w", pool, err))
		}
	}
	info, err := c.cfg.Broker.InspectDead(ctx, pool)
	switch {
	case errors.Is(err, queue.ErrNoPool):
		info, err = queue.QueueInfo{}, nil
		fallthrough
	case err == nil:
		s.Dead = &info.Messages
	default:
		errs = append(errs, fmt.Errorf("dead letters of pool %s: %w", pool, err))
	}
	s.Err = errors.Join(errs...)
	return s
}
