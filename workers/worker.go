// Package workers is the runtime that runs jobs: it consumes each pool's
// queue with manual acks, runs the registered handler with the job's timeout,
// records running and the outcome in Redis, and acknowledges a message only
// once its outcome is stored. Specialised services (workers/sys and others)
// register their types with a Worker through jobs.Registrar.
package workers

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/warrenhq/warren/internal/backoff"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/metrics"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/schema"
	"github.com/warrenhq/warren/store"
)

// Config configures a Worker. Zero fields take the defaults noted.
type Config struct {
	// ID identifies this process in job records and names its lease; it
	// must be unique among the live processes of a namespace. Zero means
	// jobs.NewProcessID() ("HOST-PID-RANDOM").
	ID string
	// Pools sets concurrency and prefetch per pool; a pool not listed runs
	// with DefaultConcurrency.
	Pools map[string]PoolConfig
	// ShutdownGrace is how long running jobs may finish after Stop before
	// their contexts are cancelled; zero means 30s.
	ShutdownGrace time.Duration
	// Logger receives job events; nil means slog.Default().
	Logger *slog.Logger
	// Now tells the time; nil means time.Now.
	Now func() time.Time
	// RedeclareEvery is how often type declarations are re-asserted,
	// restoring them if Redis lost its data; zero means 15s.
	RedeclareEvery time.Duration
	// Rand returns numbers in [0, 1) to jitter retry delays; nil means
	// math/rand/v2's Float64.
	Rand func() float64
	// Metrics, if set, is served at GET /metrics by HealthHandler (the
	// process's own figures, such as a metrics.Collector of its pools);
	// nil means no /metrics.
	Metrics http.Handler
	// Runs counts the jobs the worker runs (serve it with Metrics); nil
	// means the worker counts into one of its own, which Runs returns.
	Runs *metrics.Runs
	// TracerProvider, if set, traces each attempt's run as a span (the
	// child of the span that published the job, carried by the message's
	// traceparent), in the handler's context; nil means no spans.
	TracerProvider trace.TracerProvider
	// Version is the program's version, which the lease reports (GET
	// /v1/workers); zero means the main module's version from the build
	// information, or "dev".
	Version string
	// LimitsEvery is how often the types' rate limits are read again
	// (docs/ratelimits.md); zero means DefaultLimitsEvery.
	LimitsEvery time.Duration
}

// PoolConfig sizes one pool in one process.
type PoolConfig struct {
	// Concurrency is how many jobs run at once; zero means
	// DefaultConcurrency.
	Concurrency int
	// Prefetch is how many unacknowledged messages the broker may hand this
	// process; zero means adaptive (queue.ConsumeOptions.Prefetch): the
	// concurrency, raised while jobs take only milliseconds.
	Prefetch int
	// Fairness is how many jobs of the pool's high lane start in a row
	// while one of its normal lane waits; zero means
	// queue.DefaultFairness (docs/priorities.md).
	Fairness int
}

// DefaultConcurrency is a pool's concurrency when none is configured.
const DefaultConcurrency = 10

// Broker is what the runtime needs of RabbitMQ.
type Broker interface {
	Consume(ctx context.Context, opts queue.ConsumeOptions, handle func(queue.Delivery)) error
	Publish(ctx context.Context, msgs []queue.Message) ([]error, error)
	Connected() bool
}

// Store is what the runtime needs of Redis.
type Store interface {
	Start(ctx context.Context, id, worker string, made int, token string, now time.Time) (store.Started, error)
	Finish(ctx context.Context, id string, o store.Outcome, now time.Time) error
	Progress(ctx context.Context, id string, p jobs.Progress) error
	DeclareTypes(ctx context.Context, ts []jobs.Type) error
	NewNotifier(on store.Handlers) *store.Notifier
	PutArtifact(ctx context.Context, id string, a jobs.Artifact) error
	KeepLease(ctx context.Context, w store.WorkerInfo, ttl time.Duration) (map[string]store.Pause, error)
	Release(ctx context.Context, worker string) error
	MarkStarted(ctx context.Context, due map[string]time.Time) error
	Limits(ctx context.Context) ([]store.LimitRecord, error)
	TakeToken(ctx context.Context, l store.LimitRecord, j *jobs.Job, made int, jitter float64) (store.Admission, error)
}

// LeaseTTL is how long a worker's lease lasts without renewal; it renews
// every third of it. When a worker dies, its running jobs show as queued
// again within this time (their messages are back in the queue at once).
const LeaseTTL = 10 * time.Second

var (
	_ Broker = (*queue.Broker)(nil)
	_ Store  = (*store.Store)(nil)
)

type registration struct {
	t jobs.Type
	h jobs.Handler
}

// Worker runs the handlers registered with it, one consumer per pool.
type Worker struct {
	cfg    Config
	broker Broker
	store  Store
	log    *slog.Logger
	obs    instruments

	mu         sync.Mutex
	types      map[string]registration
	middleware []jobs.Middleware
	ready      map[string]bool
	running    *running
	marks      marks
	notifier   *store.Notifier
	started    bool
	stopTaking context.CancelFunc // phase 1: stop consuming
	cancelJobs context.CancelFunc // phase 2: cancel running jobs
	done       chan struct{}
	// Set by Start, for the lease: the pools' counters, which pools are
	// paused, and when the worker started.
	load      load
	pauses    *pauses
	limits    *limits
	startedAt time.Time
}

var _ jobs.Registrar = (*Worker)(nil)

// New returns a Worker with no handlers; register some with Handle, then
// Start it.
func New(cfg Config, broker Broker, st Store) *Worker {
	if cfg.ID == "" {
		cfg.ID = jobs.NewProcessID()
	}
	cfg.ShutdownGrace = cmp.Or(cfg.ShutdownGrace, 30*time.Second)
	cfg.RedeclareEvery = cmp.Or(cfg.RedeclareEvery, 15*time.Second)
	cfg.LimitsEvery = cmp.Or(cfg.LimitsEvery, DefaultLimitsEvery)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Version == "" {
		cfg.Version = buildVersion()
	}
	return &Worker{
		cfg:     cfg,
		broker:  broker,
		store:   st,
		log:     cfg.Logger.With("component", "worker", "worker", cfg.ID),
		obs:     newInstruments(cfg),
		types:   map[string]registration{},
		ready:   map[string]bool{},
		running: newRunning(),
	}
}

// ID returns the identity this worker records on the jobs it runs.
func (w *Worker) ID() string { return w.cfg.ID }

// Handle registers the handler of a job type. The type is declared (queue
// bound, schema published to the API) when the worker starts.
func (w *Worker) Handle(t jobs.Type, h jobs.Handler) error {
	t = t.WithDefaults()
	if err := t.Validate(); err != nil {
		return fmt.Errorf("register type: %w", err)
	}
	if h == nil {
		return fmt.Errorf("register type %s: nil handler", t.Name)
	}
	if len(t.Schema) > 0 {
		if _, err := schema.Compile(t.Name, t.Schema); err != nil {
			return fmt.Errorf("register type: %w", err)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return fmt.Errorf("register type %s: worker already started", t.Name)
	}
	if _, dup := w.types[t.Name]; dup {
		return fmt.Errorf("register type %s: registered twice", t.Name)
	}
	w.types[t.Name] = registration{t: t, h: h}
	w.obs.declare(t)
	return nil
}

// Use adds middleware around every handler; the first added is outermost.
func (w *Worker) Use(mw ...jobs.Middleware) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.middleware = append(w.middleware, mw...)
}

// Pools returns the names of the pools with registered types, sorted.
func (w *Worker) Pools() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.poolsLocked()
}

func (w *Worker) poolsLocked() []string {
	var pools []string
	for _, r := range w.types {
		if !slices.Contains(pools, r.t.Pool) {
			pools = append(pools, r.t.Pool)
		}
	}
	sort.Strings(pools)
	return pools
}

// Start begins consuming every pool with registered types and returns at
// once; the worker connects, declares its types and starts taking jobs in
// the background, and keeps doing so across broker and Redis outages.
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return nil
	}
	if len(w.types) == 0 {
		return errors.New("start worker: no handlers registered")
	}
	w.started = true
	w.wrapHandlers()
	w.startedAt = w.cfg.Now()
	w.load = load{}
	for _, pool := range w.poolsLocked() {
		w.load[pool] = &poolLoad{concurrency: cmp.Or(w.cfg.Pools[pool].Concurrency, DefaultConcurrency)}
	}
	w.pauses = newPauses(w.poolsLocked())
	w.limits = newLimits()

	// Three lifetimes, ended in order by Stop: taking new jobs, the jobs
	// running, and the lease, which outlives both.
	base := context.WithoutCancel(ctx)
	takeCtx, stopTaking := context.WithCancel(base)
	jobCtx, cancelJobs := context.WithCancel(base)
	w.stopTaking, w.cancelJobs = stopTaking, cancelJobs
	w.done = make(chan struct{})
	endLease := w.startLease(base)
	endLimits := w.startLimits(base)
	var wg sync.WaitGroup
	w.startPools(&wg, takeCtx, jobCtx)
	notifier, err := w.startNotifier(ctx)
	if err != nil {
		stopTaking()
		cancelJobs()
		wg.Wait()
		endLimits()
		endLease()
		return fmt.Errorf("start worker: %w", err)
	}
	// Once the pools have stopped taking jobs and the last one has ended,
	// the lease goes, then the notifier, and Stop returns.
	go func() {
		wg.Wait()
		cancelJobs()
		endLimits()
		endLease()
		_ = notifier.Stop(context.Background())
		close(w.done)
	}()
	return nil
}

// wrapHandlers puts each type's handler inside the middleware, the first
// registered outermost.
func (w *Worker) wrapHandlers() {
	for name, r := range w.types {
		for i := len(w.middleware) - 1; i >= 0; i-- {
			r.h = w.middleware[i](r.h)
		}
		w.types[name] = r
	}
}

// startLease keeps the process's lease until the returned func is called,
// which ends it and waits for it to be released. It starts before the
// consumers, so that a job this worker starts never names a worker without
// a lease (a second copy of its message would take the attempt for lost),
// and it outlives taking work, so that jobs finishing during the grace
// period still show running.
func (w *Worker) startLease(base context.Context) (end func()) {
	ctx, cancel := context.WithCancel(base)
	done := make(chan struct{})
	go func() { defer close(done); w.lease(ctx) }()
	return func() { cancel(); <-done }
}

// startLimits keeps the types' rate limits until the returned func is
// called, which ends it and waits for it.
func (w *Worker) startLimits(base context.Context) (end func()) {
	ctx, cancel := context.WithCancel(base)
	done := make(chan struct{})
	go func() { defer close(done); w.keepLimits(ctx) }()
	return func() { cancel(); <-done }
}

// startPools starts, for each pool, its consumer (which runs the jobs under
// jobCtx) and its dead-letter intake, both taking until takeCtx ends, and
// the loop that re-asserts the types' declarations; wg waits for them all.
func (w *Worker) startPools(wg *sync.WaitGroup, takeCtx, jobCtx context.Context) {
	var all []jobs.Type
	for _, pool := range w.poolsLocked() {
		var types []jobs.Type
		for _, r := range w.types {
			if r.t.Pool == pool {
				types = append(types, r.t)
			}
		}
		sort.Slice(types, func(i, j int) bool { return types[i].Name < types[j].Name })
		all = append(all, types...)
		pc := w.cfg.Pools[pool]
		opts := queue.ConsumeOptions{
			Pool:        pool,
			Types:       typeNames(types),
			Concurrency: cmp.Or(pc.Concurrency, DefaultConcurrency),
			Prefetch:    pc.Prefetch,
			Fairness:    pc.Fairness,
			Ready:       func() { w.declare(takeCtx, pool, types) },
			// A paused pool takes no new jobs (docs/workers.md).
			Paused:       func() bool { return w.pauses.is(pool) },
			PauseChanged: w.pauses.changed[pool],
		}
		log := w.log.With("pool", pool)
		wg.Go(func() {
			// Whether the pool is paused is known before it consumes: a
			// worker started while its pool is paused takes nothing.
			select {
			case <-w.pauses.ready:
			case <-takeCtx.Done():
				return
			}
			// So are the rate limits of its types.
			select {
			case <-w.limits.ready:
			case <-takeCtx.Done():
				return
			}
			log.Info("pool starting", "types", opts.Types, "concurrency", opts.Concurrency, "paused", w.pauses.is(pool))
			if err := w.broker.Consume(takeCtx, opts, func(d queue.Delivery) {
				defer w.load.begin(pool)()
				w.process(jobCtx, log, pool, d)
			}); err != nil {
				log.Error("pool stopped", "err", err)
			}
			w.setReady(pool, false)
		})
		intake := queue.ConsumeOptions{Pool: pool, Types: opts.Types, Concurrency: 1, Intake: true}
		wg.Go(func() {
			if err := w.broker.Consume(takeCtx, intake, func(d queue.Delivery) { w.deadLettered(jobCtx, log, d) }); err != nil {
				log.Error("dead-letter intake stopped", "err", err)
			}
		})
	}
	wg.Go(func() { w.redeclare(takeCtx, all) })
}

// startNotifier subscribes to the namespace's events: cancel requests and
// pauses, one subscription for every pool of the process.
func (w *Worker) startNotifier(ctx context.Context) (*store.Notifier, error) {
	w.notifier = w.store.NewNotifier(store.Handlers{Cancel: w.running.cancel, Pause: w.pauses.heardEvent, Limits: w.limits.heard})
	if err := w.notifier.Start(ctx); err != nil {
		return nil, err
	}
	return w.notifier, nil
}

// lease keeps this process's lease in Redis until ctx ends, then releases
// it, so the API can tell a job whose worker is gone. Each renewal records
// what the pools are doing (GET /v1/workers) and reads which are paused.
func (w *Worker) lease(ctx context.Context) {
	t := time.NewTicker(LeaseTTL / 3)
	defer t.Stop()
	for {
		since := w.pauses.mark()
		paused, err := w.store.KeepLease(ctx, w.load.info(w.cfg.ID, w.cfg.Version, w.startedAt), LeaseTTL)
		switch {
		case err == nil:
			w.pauses.apply(since, paused)
		case ctx.Err() == nil && !w.pauses.learned():
			// Until Redis answers once, no pool consumes (it may be
			// paused): say why, or the worker would look stuck.
			w.log.Warn("cannot reach Redis to learn whether the pools are paused; not taking jobs until it answers", "err", err)
		case ctx.Err() == nil:
			w.log.Debug("cannot renew the worker lease", "err", err)
		}
		if err := w.store.MarkStarted(ctx, w.marks.take()); err != nil && ctx.Err() == nil {
			w.log.Debug("cannot record how far the pools' queues have come", "err", err)
		}
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
			defer cancel()
			_ = w.store.Release(rctx, w.cfg.ID)
			return
		case <-t.C:
		case <-w.pauses.refresh:
		}
	}
}

// redeclare re-asserts the declarations until ctx ends. The store announces
// only real changes, so this is one cheap round trip when nothing was lost.
func (w *Worker) redeclare(ctx context.Context, types []jobs.Type) {
	t := time.NewTicker(w.cfg.RedeclareEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !w.Ready() {
			continue // a pool is between connections; its Ready hook declares
		}
		if err := w.store.DeclareTypes(ctx, types); err != nil {
			w.log.Debug("cannot re-declare types", "err", err)
		}
	}
}

// declare publishes a pool's type declarations once its queue is bound, so
// the API never accepts a type whose queue does not exist. Redis being down
// delays it; consuming waits meanwhile.
func (w *Worker) declare(ctx context.Context, pool string, types []jobs.Type) {
	wait := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		err := w.store.DeclareTypes(ctx, types)
		if err == nil {
			w.setReady(pool, true)
			w.log.Info("pool consuming", "pool", pool)
			return
		}
		w.log.Warn("cannot declare types; retrying", "pool", pool, "err", err)
		select {
		case <-time.After(wait.Next()):
		case <-ctx.Done():
			return
		}
	}
}

func (w *Worker) setReady(pool string, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ready[pool] = ok
}

// Ready reports whether every pool is consuming on a live connection.
func (w *Worker) Ready() bool {
	if !w.broker.Connected() {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.poolsLocked() {
		if !w.ready[p] {
			return false
		}
	}
	return w.started
}

// Stop shuts down in two phases: it stops taking jobs at once (messages
// received but not started go back to the queue), lets running jobs finish
// within the shutdown grace period, then cancels their contexts; a job
// cancelled that way is requeued for another worker. It returns when every
// pool has stopped, or with an error when ctx ends first. Calling it again
// does nothing more.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	stopTaking, cancelJobs, done := w.stopTaking, w.cancelJobs, w.done
	w.mu.Unlock()
	if done == nil {
		return nil
	}
	stopTaking()
	grace := time.NewTimer(w.cfg.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
		return nil
	case <-grace.C:
		w.log.Warn("shutdown grace period over; cancelling running jobs", "grace", w.cfg.ShutdownGrace)
	case <-ctx.Done():
	}
	cancelJobs()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop worker: %w", ctx.Err())
	}
}

func typeNames(ts []jobs.Type) []string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.Name
	}
	return names
}

// encodeResult turns a handler's result into the JSON stored with the job.
func encodeResult(v any) (json.RawMessage, error) {
	switch r := v.(type) {
	case nil:
		return json.RawMessage("null"), nil
	case json.RawMessage:
		if json.Valid(r) {
			return r, nil
		}
	case []byte:
		if json.Valid(r) {
			return r, nil
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	return b, nil
}

// recovered is the error recorded when a handler panics.
type recovered struct {
	value any
	stack []byte
}

func (r *recovered) Error() string { return fmt.Sprintf("handler panicked: %v", r.value) }

// safeRun calls the handler, turning a panic into an error.
func safeRun(ctx context.Context, h jobs.Handler, j *jobs.Job) (result any, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &recovered{value: v, stack: debug.Stack()}
		}
	}()
	return h.Run(ctx, j)
}

// marks keeps, per pool, the latest due time of a job this process started
// since the lease last reported it: how far the pool's queue has come,
// which the rescuer compares with jobs that have waited long (a job due
// well before it that has not started is not in the queue).
type marks struct {
	mu  sync.Mutex
	due map[string]time.Time
}

func (m *marks) add(pool string, due time.Time) {
	if due.IsZero() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.due == nil {
		m.due = map[string]time.Time{}
	}
	if due.After(m.due[pool]) {
		m.due[pool] = due
	}
}

// take returns the marks gathered and starts anew.
func (m *marks) take() map[string]time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	due := m.due
	m.due = nil
	return due
}
