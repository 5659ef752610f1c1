package schedule

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/internal/lifecycle"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/store"
)

// MetricTicks is the counter of ticks handled, labelled outcome: fired, or
// the reason it was skipped.
const MetricTicks = "warren_schedule_ticks_total"

// Config configures a Scheduler. Zero fields take the defaults noted.
type Config struct {
	// Grace is how late a tick may still be fired on its own: a tick whose
	// time (plus the schedule's jitter) is further past than this when a
	// process comes to it passed while nothing fired, and the schedule's
	// catch_up says what becomes of it. Zero means 30s. It must outlast a
	// lease's handover (LeaseTTL and a second), so that a process taking
	// over from one that died fires the ticks in between, each once.
	Grace time.Duration
	// LeaseTTL is how long the lease lasts unless renewed; the holder
	// renews it at least every third of it. Zero means 5s.
	LeaseTTL time.Duration
	// Holder names this process in the lease; zero means
	// jobs.NewProcessID().
	Holder string
	// Namespace is the metric's warren_namespace label; zero means
	// jobs.DefaultNamespace.
	Namespace jobs.Namespace
	// Logger receives ticks and failures; nil means slog.Default().
	Logger *slog.Logger
	// Now tells the time; nil means time.Now.
	Now func() time.Time
}

// Store is what firing needs of Redis.
type Store interface {
	HoldScheduler(ctx context.Context, holder string, ttl time.Duration) (bool, error)
	ReleaseScheduler(ctx context.Context, holder string) error
	DueSchedules(ctx context.Context, now time.Time, limit int) ([]string, time.Time, error)
	Schedule(ctx context.Context, name string) (store.ScheduleRecord, error)
	SetScheduleDue(ctx context.Context, name string, due time.Time) error
	ClaimTick(ctx context.Context, name string, tick time.Time, job string) (store.Claim, error)
	DropPending(ctx context.Context, name string, tick time.Time) error
	CompleteTick(ctx context.Context, name string, o store.TickOutcome) (bool, error)
	Get(ctx context.Context, id string) (*jobs.Job, error)
}

// Submitter builds and accepts jobs (producer.Producer).
type Submitter interface {
	Builder
	Accept(ctx context.Context, js []*jobs.Job, traceparent string) ([]producer.Result, error)
}

var (
	_ Store     = (*store.Store)(nil)
	_ Submitter = (*producer.Producer)(nil)
)

// Scheduler fires the ticks of a namespace's schedules, while it holds the
// scheduler's lease. Start it, Stop it.
type Scheduler struct {
	cfg   Config
	st    Store
	sub   Submitter
	log   *slog.Logger
	ticks *prometheus.CounterVec
	loop  lifecycle.Loop
}

// New returns a Scheduler that fires through sub.
func New(cfg Config, st Store, sub Submitter) *Scheduler {
	cfg.Grace = cmp.Or(cfg.Grace, 30*time.Second)
	cfg.LeaseTTL = cmp.Or(cfg.LeaseTTL, 5*time.Second)
	cfg.Holder = cmp.Or(cfg.Holder, jobs.NewProcessID())
	cfg.Namespace = cmp.Or(cfg.Namespace, jobs.DefaultNamespace)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Scheduler{
		cfg: cfg, st: st, sub: sub,
		log: cfg.Logger.With("component", "scheduler"),
		ticks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        MetricTicks,
			Help:        "Schedule ticks handled by this process, by outcome: fired, or why skipped (overlap, missed, refused).",
			ConstLabels: prometheus.Labels{"warren_namespace": string(cfg.Namespace)},
		}, []string{"outcome"}),
	}
}

// Collector returns the tick counter, for a process's /metrics.
func (s *Scheduler) Collector() prometheus.Collector { return s.ticks }

// Start begins firing in the background, whenever this process holds the
// lease; it returns at once. A second Start does nothing.
func (s *Scheduler) Start(ctx context.Context) error {
	s.loop.Start(ctx, s.run)
	return nil
}

// Stop stops firing, waits for a pass under way to end (or for ctx), and
// gives the lease up so that another process takes over at once. It is
// safe to call twice, and without Start.
func (s *Scheduler) Stop(ctx context.Context) error {
	if !s.loop.Started() {
		return nil
	}
	if err := s.loop.Stop(ctx); err != nil {
		return fmt.Errorf("stop scheduler: %w", err)
	}
	if err := s.st.ReleaseScheduler(ctx, s.cfg.Holder); err != nil {
		s.log.Debug("cannot release the scheduler lease", "err", err)
	}
	return nil
}

// Bounds of the wait between passes.
const (
	minWait = 20 * time.Millisecond
	// errWait is the wait after a pass that failed.
	errWait = time.Second
)

func (s *Scheduler) run(ctx context.Context) {
	wait := time.Duration(0)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		wait = s.turn(ctx)
		timer.Reset(wait)
	}
}

// turn takes or keeps the lease and, holding it, fires what is due; it
// returns how long to wait before the next turn.
func (s *Scheduler) turn(ctx context.Context) time.Duration {
	renew := s.cfg.LeaseTTL / 3
	held, err := s.st.HoldScheduler(ctx, s.cfg.Holder, s.cfg.LeaseTTL)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Debug("cannot take the scheduler lease", "err", err)
		}
		return renew
	}
	if !held {
		return renew
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.LeaseTTL)
	defer cancel()
	next, err := s.Pass(pctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("firing schedules failed; trying again", "err", err)
		}
		return errWait
	}
	wait := renew
	if !next.IsZero() {
		wait = min(wait, next.Sub(s.cfg.Now()))
	}
	return max(wait, minWait)
}

// passBatch bounds the schedules handled in one pass, and maxTicks the
// ticks of one schedule.
const (
	passBatch = 100
	maxTicks  = 100
)

// Pass fires the ticks that are due, whoever holds the lease, and returns
// when the next schedule is due (zero when none is). A schedule that
// cannot be handled is left due, and the errors are joined.
func (s *Scheduler) Pass(ctx context.Context) (time.Time, error) {
	names, _, err := s.st.DueSchedules(ctx, s.cfg.Now(), passBatch)
	if err != nil {
		return time.Time{}, err
	}
	var errs []error
	for _, name := range names {
		if err := s.handle(ctx, name); err != nil {
			errs = append(errs, fmt.Errorf("schedule %s: %w", name, err))
		}
	}
	_, next, err := s.st.DueSchedules(ctx, s.cfg.Now(), 1)
	return next, errors.Join(append(errs, err)...)
}

// handle fires or skips the due ticks of one schedule, one at a time,
// reading its record again after each, and says when it is next due.
func (s *Scheduler) handle(ctx context.Context, name string) error {
	for range maxTicks {
		now := s.cfg.Now()
		rec, err := s.st.Schedule(ctx, name)
		if errors.Is(err, store.ErrScheduleNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if rec.Paused != nil {
			return nil
		}
		p, err := PlanOf(rec)
		if err != nil {
			// Not written by this version: look again in an hour.
			s.log.Error("cannot read a schedule", "schedule", name, "err", err)
			return s.st.SetScheduleDue(ctx, name, now.Add(time.Hour))
		}
		// A tick at or before late passed while nothing fired it.
		late := now.Add(-s.cfg.Grace - p.Def.Jitter.Std())
		if !rec.PendingTick.IsZero() {
			if err := s.settlePending(ctx, rec, p, late); err != nil {
				return err
			}
			continue
		}
		tick := p.Next(rec.After)
		switch {
		case tick.IsZero():
			return s.st.SetScheduleDue(ctx, name, time.Time{})
		case p.FireAt(tick).After(now):
			return s.st.SetScheduleDue(ctx, name, p.FireAt(tick))
		case !tick.After(late):
			// Missed: fire the last of the missed ticks once, or skip them.
			last := p.LastBy(tick, late)
			if p.Def.CatchUp {
				err = s.fire(ctx, rec, p, last)
			} else {
				err = s.skip(ctx, p, last, SkipMissed, fmt.Sprintf("the ticks from %s passed while nothing fired them", tick.Format(time.RFC3339)))
			}
		default:
			var busy bool
			if busy, err = s.overlaps(ctx, rec, p); err == nil {
				if busy {
					err = s.skip(ctx, p, tick, SkipOverlap, "job "+rec.LastJob+" of the previous tick has not ended")
				} else {
					err = s.fire(ctx, rec, p, tick)
				}
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// overlaps reports whether the schedule skips overlaps and the job of its
// last tick has not ended.
func (s *Scheduler) overlaps(ctx context.Context, rec store.ScheduleRecord, p *Plan) (bool, error) {
	if p.Def.Overlap != OverlapSkip || rec.LastJob == "" {
		return false, nil
	}
	j, err := s.st.Get(ctx, rec.LastJob)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !j.Status.Terminal(), nil
}

// fire claims tick and submits its job: the job named by the claim, its
// own or an earlier one's.
func (s *Scheduler) fire(ctx context.Context, rec store.ScheduleRecord, p *Plan, tick time.Time) error {
	c, err := s.st.ClaimTick(ctx, p.Def.Name, tick, jobs.NewID())
	if err != nil {
		return err
	}
	if c.State != store.Claimed && c.State != store.ClaimPending {
		return nil // handled, or another tick in flight, or gone: read again
	}
	return s.settle(ctx, rec, p, tick, c.Job)
}

// settlePending finishes the tick a claim left in flight. Its job exists:
// the tick fired, record it. It does not, and the tick is still on time:
// submit it now, under the id the claim chose. It does not and the tick
// has passed: forget the claim, and the tick is treated as missed.
func (s *Scheduler) settlePending(ctx context.Context, rec store.ScheduleRecord, p *Plan, late time.Time) error {
	tick := rec.PendingTick
	if tick.After(late) {
		return s.settle(ctx, rec, p, tick, rec.PendingJob)
	}
	_, err := s.st.Get(ctx, rec.PendingJob)
	switch {
	case err == nil:
		return s.record(ctx, p, tick, rec.PendingJob)
	case errors.Is(err, store.ErrNotFound):
		s.log.Info("a claimed tick's job was never made, and its time has passed", "schedule", p.Def.Name, "tick", tick)
		return s.st.DropPending(ctx, p.Def.Name, tick)
	}
	return err
}

// settle makes sure the job with id exists for tick, and records the tick
// as fired. The job may exist already: a process that claimed the tick
// died, or is still at work (two that believe they hold the lease). The
// job's idempotency key, derived from the tick, makes concurrent
// submissions one job.
func (s *Scheduler) settle(ctx context.Context, rec store.ScheduleRecord, p *Plan, tick time.Time, id string) error {
	if _, err := s.st.Get(ctx, id); err == nil {
		return s.record(ctx, p, tick, id)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	j, err := s.sub.Build(ctx, p.Request(tick, rec.CreatedBy))
	var refused *producer.Error
	if errors.As(err, &refused) {
		return s.skip(ctx, p, tick, SkipRefused, refused.Message)
	}
	if err != nil {
		return err
	}
	j.ID = id
	res, err := s.sub.Accept(ctx, []*jobs.Job{j}, "")
	if err != nil {
		return err // the claim stays: tried again on the next pass
	}
	switch r := res[0]; {
	case r.Err == nil:
		id = r.Job.ID // an earlier job's, if the key named one
	case errors.Is(r.Err, producer.ErrNoRoute), errors.Is(r.Err, store.ErrIdempotencyConflict):
		return s.skip(ctx, p, tick, SkipRefused, r.Err.Error())
	default:
		return r.Err
	}
	return s.record(ctx, p, tick, id)
}

// record records tick as fired with job id.
func (s *Scheduler) record(ctx context.Context, p *Plan, tick time.Time, id string) error {
	ok, err := s.st.CompleteTick(ctx, p.Def.Name, s.outcome(p, tick, id, "", ""))
	if err != nil {
		return err
	}
	if ok {
		s.ticks.WithLabelValues("fired").Inc()
		s.log.Debug("fired a tick", "schedule", p.Def.Name, "tick", tick, "job_id", id)
	}
	return nil
}

// skip records tick as skipped, for reason.
func (s *Scheduler) skip(ctx context.Context, p *Plan, tick time.Time, reason, why string) error {
	ok, err := s.st.CompleteTick(ctx, p.Def.Name, s.outcome(p, tick, "", reason, why))
	if err != nil {
		return err
	}
	if ok {
		s.ticks.WithLabelValues(reason).Inc()
		level := slog.LevelInfo
		if reason == SkipRefused {
			level = slog.LevelWarn
		}
		s.log.Log(ctx, level, "skipped a tick", "schedule", p.Def.Name, "tick", tick, "reason", reason, "why", why)
	}
	return nil
}

func (s *Scheduler) outcome(p *Plan, tick time.Time, job, reason, why string) store.TickOutcome {
	o := store.TickOutcome{Tick: tick, Job: job, Reason: reason, Error: why, Now: s.cfg.Now()}
	if n := p.Next(tick); !n.IsZero() {
		o.Next = p.FireAt(n)
	}
	return o
}
