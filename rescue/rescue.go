// Package rescue finds accepted jobs whose messages the broker no longer
// holds, and publishes them again. A job's record says what should happen
// next; its message is what makes it happen. When the message is gone (a
// queue purged or deleted, a node lost, an API killed between recording a
// job and publishing it, a worker lost after its copy was set aside), the
// record would wait or run for ever. The rescuer notices.
//
// Every process that can publish and reach Redis (the API, workers) runs a
// Rescuer; a lease in Redis lets one of them at a time look, every
// Interval. It looks only through the indexes the lifecycle scripts keep
// (each pool's waiting and running jobs), never by scanning the keyspace:
//
//   - a job waiting (queued, scheduled or retrying) since before now minus
//     the grace, when its pool's queue is empty or the pool's workers have
//     started jobs that became due more than the grace after it: either
//     way its message is not in the queue, which hands jobs out in about
//     the order they became due;
//   - a job running since before now minus the grace whose worker's lease
//     is gone: the worker died, and no copy of its message came back.
//
// A rescued job's message is published again as the record stands; the
// start script fences the copies, so a republished copy and a surviving
// original never run the same attempt twice (docs/protocol.md §7.1).
package rescue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/internal/lifecycle"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
)

// Reasons a job is rescued, the values of the metric's reason label.
const (
	// ReasonWaiting is a job that waited past its due time plus the grace
	// while its message was not in its pool's queue.
	ReasonWaiting = "waiting"
	// ReasonRunning is a running job whose worker's lease is gone.
	ReasonRunning = "running"
)

// MetricRescued is the counter of rescued jobs, labelled pool and reason.
const MetricRescued = "warren_jobs_rescued_total"

// Config configures a Rescuer. Zero fields take the defaults noted.
type Config struct {
	// Interval is how often the rescuer looks; zero means 30s, and a
	// negative one means never (the Rescuer does nothing).
	Interval time.Duration
	// Grace is how long past its due time a job may wait, or run without
	// its worker's lease, before it is rescued; zero means 1m.
	Grace time.Duration
	// Holder names this process in the lease; zero means
	// jobs.NewProcessID().
	Holder string
	// Batch bounds the jobs of one pool and kind examined per look; zero
	// means 1000.
	Batch int
	// Namespace is the metric's warren_namespace label; zero means
	// jobs.DefaultNamespace.
	Namespace jobs.Namespace
	// Logger receives rescues and failures; nil means slog.Default().
	Logger *slog.Logger
	// Now tells the time; nil means time.Now.
	Now func() time.Time
}

// Broker is what rescuing needs of RabbitMQ.
type Broker interface {
	Publish(ctx context.Context, msgs []queue.Message) ([]error, error)
	InspectPool(ctx context.Context, pool string) (queue.QueueInfo, error)
	ConnectedSince() time.Time
}

// Store is what rescuing needs of Redis.
type Store interface {
	Types(ctx context.Context) ([]jobs.Type, error)
	HoldRescuer(ctx context.Context, holder string, ttl time.Duration) (bool, error)
	ReleaseRescuer(ctx context.Context, holder string) error
	Overdue(ctx context.Context, pool string, cutoff time.Time, limit int) ([]store.Overdue, error)
	Orphaned(ctx context.Context, pool string, cutoff time.Time, limit int, cursor string) ([]store.Overdue, string, error)
	StartedMark(ctx context.Context, pool string) (time.Time, error)
	Rescue(ctx context.Context, pool string, found []store.Overdue, running bool, now time.Time) ([]*jobs.Job, error)
	CountRescued(ctx context.Context, pool string, n int, now time.Time) error
	TrimLists(ctx context.Context, batch int) (int, error)
}

var (
	_ Broker = (*queue.Broker)(nil)
	_ Store  = (*store.Store)(nil)
)

// Rescuer looks for lost jobs and publishes them again. Start it, Stop it.
type Rescuer struct {
	cfg     Config
	broker  Broker
	store   Store
	log     *slog.Logger
	rescued *prometheus.CounterVec

	// cursors says where the last look at each pool's running jobs
	// stopped; only the goroutine that looks touches it.
	cursors map[string]string

	loop lifecycle.Loop
}

// New returns a Rescuer over the given broker and store.
func New(cfg Config, b Broker, st Store) *Rescuer {
	cfg.Interval = cmp.Or(cfg.Interval, 30*time.Second)
	cfg.Grace = cmp.Or(cfg.Grace, time.Minute)
	cfg.Batch = cmp.Or(cfg.Batch, 1000)
	cfg.Namespace = cmp.Or(cfg.Namespace, jobs.DefaultNamespace)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.Holder = cmp.Or(cfg.Holder, jobs.NewProcessID())
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Rescuer{
		cfg:    cfg,
		broker: b,
		store:  st,
		log:    cfg.Logger.With("component", "rescuer"),
		rescued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        MetricRescued,
			Help:        "Jobs published again because their messages were lost, by pool and reason (waiting or running).",
			ConstLabels: prometheus.Labels{"warren_namespace": string(cfg.Namespace)},
		}, []string{"pool", "reason"}),
		cursors: map[string]string{},
	}
}

// Collector returns the rescue counter, for a process's /metrics.
func (r *Rescuer) Collector() prometheus.Collector { return r.rescued }

// Start begins looking every Interval, in the background; it returns at
// once. A second Start does nothing.
func (r *Rescuer) Start(ctx context.Context) error {
	if r.cfg.Interval >= 0 {
		r.loop.Start(ctx, r.run)
	}
	return nil
}

// Stop stops looking, waits for a look under way to end (or for ctx), and
// gives the lease up so another process takes over at once. It is safe to
// call twice, and without Start.
func (r *Rescuer) Stop(ctx context.Context) error {
	if !r.loop.Started() {
		return nil
	}
	if err := r.loop.Stop(ctx); err != nil {
		return fmt.Errorf("stop rescuer: %w", err)
	}
	if err := r.store.ReleaseRescuer(ctx, r.cfg.Holder); err != nil {
		r.log.Debug("cannot release the rescuer lease", "err", err)
	}
	return nil
}

// minLook is the least time one look may take, however short the interval:
// a look publishes what it found, and waits for the broker's confirms.
const minLook = 10 * time.Second

// trimBatch is how many of each job list's oldest entries the rescuer
// checks each time it looks.
const trimBatch = 1000

func (r *Rescuer) run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// The lease outlasts a look and two intervals, so a holder that
		// stalls briefly keeps it, and one that died hands it on soon.
		lookFor := max(r.cfg.Interval, minLook)
		held, err := r.store.HoldRescuer(ctx, r.cfg.Holder, 2*r.cfg.Interval+lookFor)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Debug("cannot take the rescuer lease", "err", err)
			}
			continue
		}
		if !held {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, lookFor)
		if _, err := r.Look(lctx); err != nil && ctx.Err() == nil {
			r.log.Warn("looking for lost jobs failed", "err", err)
		}
		// The holder also keeps the job lists from growing with entries
		// of expired records.
		if n, err := r.store.TrimLists(lctx, trimBatch); err != nil && ctx.Err() == nil {
			r.log.Warn("trimming the job lists failed", "err", err)
		} else if n > 0 {
			r.log.Debug("trimmed the job lists", "dropped", n)
		}
		cancel()
	}
}

// Look looks once for lost jobs in every pool of the type registry and
// publishes them again, whoever holds the lease; it returns how many it
// rescued. It does not look until the broker connection is a grace old. A
// pool that cannot be looked at is skipped, and the errors are joined.
func (r *Rescuer) Look(ctx context.Context) (int, error) {
	// A broker that has just come back (or this process's connection to
	// it) may still be handing on what it held: delayed messages that came
	// due while it was away, messages returned from connections it lost.
	// Jobs are late only a grace after that.
	if since := r.broker.ConnectedSince(); since.IsZero() || r.cfg.Now().Sub(since) < r.cfg.Grace {
		r.log.Debug("not looking for lost jobs: the broker connection is younger than the grace", "since", since)
		return 0, nil
	}
	ts, err := r.store.Types(ctx)
	if err != nil {
		return 0, fmt.Errorf("look for lost jobs: %w", err)
	}
	var pools []string
	for _, t := range ts {
		pools = append(pools, t.Pool)
	}
	slices.Sort(pools)
	var (
		n    int
		errs []error
	)
	for _, pool := range slices.Compact(pools) {
		k, err := r.lookPool(ctx, pool)
		n += k
		if err != nil {
			errs = append(errs, fmt.Errorf("pool %s: %w", pool, err))
		}
	}
	return n, errors.Join(errs...)
}

func (r *Rescuer) lookPool(ctx context.Context, pool string) (int, error) {
	now := r.cfg.Now()
	cutoff := now.Add(-r.cfg.Grace)
	n := 0

	waiting, err := r.store.Overdue(ctx, pool, cutoff, r.cfg.Batch)
	if err != nil {
		return 0, err
	}
	if len(waiting) > 0 {
		lost, err := r.notQueued(ctx, pool, waiting)
		if err != nil {
			return 0, err
		}
		if n, err = r.rescue(ctx, pool, lost, false, now); err != nil {
			return n, err
		}
	}

	running, next, err := r.store.Orphaned(ctx, pool, cutoff, r.cfg.Batch, r.cursors[pool])
	if err != nil {
		return n, err
	}
	r.cursors[pool] = next
	k, err := r.rescue(ctx, pool, running, true, now)
	return n + k, err
}

// notQueued returns the overdue jobs whose messages cannot be in their
// pool's queue. A job overdue because it waits behind a backlog is not
// lost; the broker cannot say which messages a queue holds, but it hands
// them out in about the order they became due. So a job is taken for lost
// when its lane's queue holds nothing ready (whatever it had went to
// workers, which start a job as soon as it arrives), or when the pool's
// workers have started a job of its lane that became due more than the
// grace after it. The lanes are judged apart (docs/priorities.md): the
// high lane's jobs start before normal ones due long before them.
func (r *Rescuer) notQueued(ctx context.Context, pool string, waiting []store.Overdue) ([]store.Overdue, error) {
	q, err := r.broker.InspectPool(ctx, pool)
	if errors.Is(err, queue.ErrNoPool) {
		// No queue to publish to: the publish would be refused. The
		// jobs wait in the index until a worker of the pool declares it.
		r.log.Debug("jobs are overdue in a pool without a queue", "pool", pool, "jobs", len(waiting))
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var lost []store.Overdue
	for _, high := range []bool{false, true} {
		ready := q.Messages - q.High
		if high {
			ready = q.High
		}
		var mark time.Time
		for _, o := range waiting {
			if jobs.Lane(o.Priority) != high {
				continue
			}
			if ready == 0 {
				lost = append(lost, o)
				continue
			}
			if mark.IsZero() {
				if mark, err = r.store.StartedMark(ctx, jobs.StartedMember(pool, high)); err != nil {
					return nil, err
				}
			}
			if mark.After(o.Since.Add(r.cfg.Grace)) {
				lost = append(lost, o)
			}
		}
	}
	return lost, nil
}

// rescue marks the jobs found rescued and publishes them again; it
// returns how many it published. A job whose record moved on in between is
// left alone.
func (r *Rescuer) rescue(ctx context.Context, pool string, found []store.Overdue, running bool, now time.Time) (int, error) {
	if len(found) == 0 {
		return 0, nil
	}
	reason := ReasonWaiting
	if running {
		reason = ReasonRunning
	}
	marked, err := r.store.Rescue(ctx, pool, found, running, now)
	if err != nil {
		return 0, err
	}
	var (
		msgs []queue.Message
		sent []*jobs.Job
		seen []store.Overdue
	)
	for i, j := range marked {
		if j == nil {
			continue
		}
		// The copy says how many attempts the record has counted before
		// the one it is for: all of them for a waiting job; for a running
		// one, all but the lost attempt, so that the start script takes it
		// for that attempt's redelivery and counts the lost one.
		made := j.Attempt
		if running {
			made = max(j.Attempt-1, 0)
		}
		copyOf := *j
		copyOf.Attempt = made
		m, err := queue.NewMessage(&copyOf, "")
		if err != nil {
			r.log.Error("cannot encode a rescued job", "job_id", j.ID, "err", err)
			continue
		}
		msgs, sent, seen = append(msgs, m), append(sent, j), append(seen, found[i])
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	errs, err := r.broker.Publish(ctx, msgs)
	if err != nil {
		// Marked but not published: looked at again after the grace.
		return 0, fmt.Errorf("publish %d rescued jobs (tried again after the grace): %w", len(msgs), err)
	}
	published := 0
	for i, j := range sent {
		if errs[i] != nil {
			r.log.Warn("cannot publish a rescued job; trying again after the grace", "job_id", j.ID, "pool", pool, "err", errs[i])
			continue
		}
		published++
		why := fmt.Sprintf("%s since %s with no message in its queue", j.Status, seen[i].Since.UTC().Format(time.RFC3339))
		if running {
			why = fmt.Sprintf("running attempt %d since %s, and its worker %s is gone", j.Attempt, seen[i].Since.UTC().Format(time.RFC3339), j.Worker)
		}
		r.log.Warn("rescued a lost job: published it again", "job_id", j.ID, "type", j.Type, "pool", pool, "reason", reason, "why", why)
	}
	if published == 0 {
		return 0, nil
	}
	r.rescued.WithLabelValues(pool, reason).Add(float64(published))
	if err := r.store.CountRescued(ctx, pool, published, now); err != nil {
		return published, err
	}
	return published, nil
}
