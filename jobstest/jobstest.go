// Package jobstest runs job handlers in tests as warren's worker runtime
// runs them, and returns the job as the runtime records it: its status
// (succeeded, retrying, failed, canceled), its result and artifact, its
// error with the code, the retry decision and a panic's stack, and every
// progress report. It is to a jobs.Handler what net/http/httptest is to an
// http.Handler.
//
// A run builds a job of a registered type from a payload (with the type's
// timeout and attempts unless Options say otherwise) and runs one attempt.
// By default the attempt runs in the test's process, without RabbitMQ or
// Redis, through the runtime's own decisions (workers.RunAttempt); with
// Options.Servers it runs on a real worker against RabbitMQ and Redis, in a
// namespace of its own.
//
// A Registry is the jobs.Registrar a service's Register function takes in a
// test, checking each registration as a worker does; Run is for a single
// type and handler.
package jobstest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/workers"
)

// worker is the name of the worker recorded on jobs run in process.
const worker = "jobstest"

// Options are the settings of one run. The zero value runs attempt 1 of a
// job with its type's defaults, in the test's process.
type Options struct {
	// ID is the job's id; zero means a new one (jobs.NewID).
	ID string
	// Attempt is the attempt to run, 1-based; zero means 1. It must be at
	// most MaxAttempts.
	Attempt int
	// MaxAttempts is how many attempts the job may take; zero means the
	// type's. Whether a failure is retried depends on it.
	MaxAttempts int
	// Timeout bounds the attempt; zero means the type's.
	Timeout time.Duration
	// Backoff overrides fields of the type's retry policy; nil overrides
	// none.
	Backoff *jobs.Backoff
	// Metadata is the job's labels; nil means none.
	Metadata map[string]string
	// Servers, when true, runs the job on a real worker (workers.New with a
	// queue.Broker and a store.Store) against RabbitMQ and Redis at
	// WARREN_AMQP_URL and WARREN_REDIS_URL (loopback by default), in a
	// namespace of its own that is removed when the test ends (through the
	// RabbitMQ management API): the job is recorded and published as the
	// API records and publishes it (without checking the payload against
	// the type's schema), and its record is read back once the attempt has
	// ended. The test is skipped under -short, and fails when the servers
	// do not answer. False runs the job in the test's process.
	Servers bool
}

// Result is how a run ended.
type Result struct {
	// Job is the job after the attempt, as the runtime records it: Status
	// (succeeded, retrying, failed or canceled), Result (JSON), Artifact,
	// Error (code, message, Retryable, a panic's Stack), Progress,
	// Attempt and the settings it ran with. With Options.Servers it is the
	// record read back from Redis. In process, it holds what the runtime
	// decides, and Progress is the last report; what only the store writes
	// is left out: the Attempts history, the error "canceled by request" of
	// a canceled job, the progress of 100 a succeeded job that reported
	// progress ends with, a retry's ScheduledAt.
	Job *jobs.Job
	// Artifact is the bytes the handler kept beside its result (a
	// jobs.Output), if any.
	Artifact *jobs.Artifact
	// Err is the error the handler returned, for errors.Is and errors.As;
	// nil when it returned none, panicked, or did not run (it was
	// canceled before it started).
	Err error
	// Progress is every progress report the handler made, in order, with
	// percent clamped to 0..100.
	Progress []jobs.Progress
}

// Registry collects the types and handlers a service registers, checked as
// a worker checks them (the type's declaration, its schema, a type
// registered twice), so that a test can run them by type name. Pass it to a
// service's Register function as its jobs.Registrar. The zero value is ready
// to use.
type Registry struct {
	mu sync.Mutex
	// check is a worker that is never started: registering with it checks
	// a registration as a worker does.
	check *workers.Worker
	regs  []registration
}

type registration struct {
	t jobs.Type
	h jobs.Handler
}

var _ jobs.Registrar = (*Registry)(nil)

// Handle registers the handler of a type; it refuses what a worker refuses.
func (r *Registry) Handle(t jobs.Type, h jobs.Handler) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.check == nil {
		r.check = workers.New(workers.Config{Logger: slog.New(slog.DiscardHandler)}, nil, nil)
	}
	if err := r.check.Handle(t, h); err != nil {
		return err
	}
	r.regs = append(r.regs, registration{t: t.WithDefaults(), h: h})
	return nil
}

// Type returns the registered type of that name, with its defaults filled
// in, as a worker declares it.
func (r *Registry) Type(name string) (jobs.Type, bool) {
	reg, ok := r.lookup(name)
	return reg.t, ok
}

func (r *Registry) lookup(name string) (registration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, reg := range r.regs {
		if reg.t.Name == name {
			return reg, true
		}
	}
	return registration{}, false
}

// Run runs one attempt of a job of the registered type name with payload:
// json.RawMessage, []byte and string are taken as the payload's JSON text;
// any other value is marshalled to JSON. opts may be nil. The end of ctx
// cancels the job, as a cancel request through the API does. Run fails the
// test only when it cannot run the job (no such type, a payload that does
// not marshal, the servers unreachable); what the handler did is in the
// Result.
func (r *Registry) Run(ctx context.Context, tb testing.TB, name string, payload any, opts *Options) *Result {
	tb.Helper()
	reg, ok := r.lookup(name)
	if !ok {
		tb.Fatalf("jobstest: no handler is registered for type %s", name)
	}
	o := Options{}
	if opts != nil {
		o = *opts
	}
	job := newJob(tb, reg.t, payload, o)
	if o.Servers {
		r.mu.Lock()
		regs := append([]registration(nil), r.regs...)
		r.mu.Unlock()
		return runOnServers(ctx, tb, regs, job)
	}
	return runInProcess(ctx, reg, job)
}

// Run runs one attempt of a job of type t with handler h; see Registry.Run.
func Run(ctx context.Context, tb testing.TB, t jobs.Type, h jobs.Handler, payload any, opts *Options) *Result {
	tb.Helper()
	var r Registry
	if err := r.Handle(t, h); err != nil {
		tb.Fatalf("jobstest: %v", err)
	}
	return r.Run(ctx, tb, t.Name, payload, opts)
}

// newJob builds the job as the API accepts it, queued, with the attempt
// to run in Attempt.
func newJob(tb testing.TB, t jobs.Type, payload any, o Options) *jobs.Job {
	tb.Helper()
	var raw json.RawMessage
	switch p := payload.(type) {
	case json.RawMessage:
		raw = p
	case []byte:
		raw = p
	case string:
		raw = json.RawMessage(p)
	default:
		var err error
		if raw, err = json.Marshal(p); err != nil {
			tb.Fatalf("jobstest: payload of %s: %v", t.Name, err)
		}
	}
	j := &jobs.Job{
		ID:          cmp.Or(o.ID, jobs.NewID()),
		Type:        t.Name,
		Pool:        t.Pool,
		Status:      jobs.StatusQueued,
		Payload:     raw,
		Attempt:     cmp.Or(o.Attempt, 1),
		MaxAttempts: cmp.Or(o.MaxAttempts, t.MaxAttempts),
		Timeout:     cmp.Or(jobs.Duration(o.Timeout), t.Timeout),
		Backoff:     o.Backoff,
		Metadata:    o.Metadata,
		CreatedAt:   time.Now().UTC().Truncate(time.Millisecond),
	}
	if j.Attempt < 1 || j.Attempt > j.MaxAttempts {
		tb.Fatalf("jobstest: attempt %d of %d: want 1 to max attempts", j.Attempt, j.MaxAttempts)
	}
	return j
}

// runInProcess runs the attempt through the runtime's decisions, with
// neither broker nor store.
func runInProcess(ctx context.Context, reg registration, job *jobs.Job) *Result {
	started := time.Now().UTC()
	job.Status, job.Worker, job.StartedAt = jobs.StatusRunning, worker, &started
	rec := newRecorder()
	record := *job // as it was handed over, whatever the handler does to its copy
	o := workers.RunAttempt(ctx, reg.t, rec.wrap(reg.h), job)
	record.Timeout = job.Timeout
	record.Status, record.Result, record.Error = o.Status, o.Result, o.Error
	if o.Artifact != nil {
		record.Artifact = &jobs.ArtifactInfo{ContentType: o.Artifact.ContentType, Bytes: len(o.Artifact.Data)}
	}
	if o.Status.Terminal() {
		ended := time.Now().UTC()
		record.FinishedAt = &ended
	}
	res := rec.result()
	if n := len(res.Progress); n > 0 {
		last := res.Progress[n-1]
		record.Progress = &last
	}
	res.Job, res.Artifact = &record, o.Artifact
	return res
}

// runOnServers runs the attempt on a real worker, with every type of the
// registry registered, in a namespace of its own.
func runOnServers(ctx context.Context, tb testing.TB, regs []registration, job *jobs.Job) *Result {
	tb.Helper()
	env := testenv.New(tb)
	rec := newRecorder()
	w := workers.New(workers.Config{ID: "jobstest-" + string(env.NS), Logger: env.Log}, env.Broker, env.Store)
	w.Use(rec.wrap)
	for _, reg := range regs {
		if err := w.Handle(reg.t, reg.h); err != nil {
			tb.Fatalf("jobstest: %v", err)
		}
	}
	if err := w.Start(context.Background()); err != nil {
		tb.Fatalf("jobstest: %v", err)
	}
	var stopOnce sync.Once
	stop := func() {
		stopOnce.Do(func() {
			sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := w.Stop(sctx); err != nil {
				tb.Errorf("jobstest: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	testenv.Eventually(tb, time.Minute, "the worker to consume", w.Ready)

	// Recorded, then published with confirms, as the API does; the
	// message says how many attempts were made before this one.
	job.Attempt--
	if err := submit(env, job); err != nil {
		tb.Fatalf("jobstest: submit %s: %v", job.Type, err)
	}
	cancelled := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := env.Store.Cancel(cctx, job.ID, time.Now()); err != nil && !errors.Is(err, store.ErrTerminal) {
				tb.Errorf("jobstest: cancel %s: %v", job.ID, err)
			}
		case <-cancelled:
		}
	}()
	defer func() {
		close(cancelled)
		<-watched
	}()

	// The attempt has ended when its handler has returned, or when the job
	// ended without running (canceled before it started, say). Stopping
	// the worker then waits for the outcome to be recorded, and takes no
	// further attempt.
	limit := time.NewTimer(job.Timeout.Std() + time.Minute)
	defer limit.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-rec.returned:
			break wait
		case <-tick.C:
			if j, err := env.Store.Get(context.Background(), job.ID); err == nil && j.Status.Terminal() {
				break wait
			}
		case <-limit.C:
			tb.Fatalf("jobstest: job %s of %s did not end within its timeout (%s) and a minute", job.ID, job.Type, job.Timeout.Std())
		}
	}
	stop()

	gctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	record, err := env.Store.Get(gctx, job.ID)
	if err != nil {
		tb.Fatalf("jobstest: read the record of %s: %v", job.ID, err)
	}
	res := rec.result()
	res.Job = record
	if record.Artifact != nil {
		a, err := env.Store.Artifact(gctx, job.ID)
		if err != nil {
			tb.Fatalf("jobstest: read the artifact of %s: %v", job.ID, err)
		}
		res.Artifact = &a
	}
	return res
}

// submit records the job and publishes its message.
func submit(env *testenv.Env, job *jobs.Job) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := queue.NewMessage(job, "")
	if err != nil {
		return err
	}
	created, err := env.Store.Create(ctx, []*jobs.Job{job})
	if err != nil {
		return err
	}
	if err := created[0].Err; err != nil {
		return err
	}
	errs, err := env.Broker.Publish(ctx, []queue.Message{m})
	if err != nil {
		return err
	}
	if errs[0] != nil {
		return fmt.Errorf("publish: %w", errs[0])
	}
	return nil
}

// recorder keeps what the handler did in the first attempt it wraps: its
// progress reports and the error it returned. Further attempts (there are
// none unless a retry overtakes a worker's stop) run unrecorded.
type recorder struct {
	mu       sync.Mutex
	began    bool
	progress []jobs.Progress
	err      error
	// returned is closed when the handler has returned or panicked.
	returned chan struct{}
}

func newRecorder() *recorder { return &recorder{returned: make(chan struct{})} }

// wrap is middleware (jobs.Middleware) that records into rec.
func (rec *recorder) wrap(h jobs.Handler) jobs.Handler {
	return jobs.HandlerFunc(func(ctx context.Context, job *jobs.Job) (any, error) {
		rec.mu.Lock()
		first := !rec.began
		rec.began = true
		rec.mu.Unlock()
		if !first {
			return h.Run(ctx, job)
		}
		defer close(rec.returned)
		outer := ctx // where the runtime takes progress reports
		ctx = jobs.WithProgress(ctx, func(_ context.Context, percent int, msg string) error {
			rec.mu.Lock()
			rec.progress = append(rec.progress, jobs.Progress{Percent: percent, Message: msg})
			rec.mu.Unlock()
			return jobs.ReportProgress(outer, percent, msg)
		})
		result, err := h.Run(ctx, job)
		rec.mu.Lock()
		rec.err = err
		rec.mu.Unlock()
		return result, err
	})
}

func (rec *recorder) result() *Result {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return &Result{Err: rec.err, Progress: rec.progress}
}
