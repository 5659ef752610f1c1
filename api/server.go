// Package api is warren's producer HTTP API: it validates jobs against the
// types worker services declared, records them in Redis, publishes them to
// RabbitMQ with publisher confirms, and answers 202 only once the broker has
// them. It also serves job records, long-polls for their outcome, the
// backlog of each pool's queue (as JSON, and as Prometheus metrics), and
// health endpoints.
package api

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/warrenhq/warren/apikey"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/metrics"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/schedule"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/ui"
	"github.com/warrenhq/warren/workflow"
)

// Config configures a Server. Zero fields take the defaults noted.
type Config struct {
	// Addr is the listen address; zero means 127.0.0.1:8080. Port 0 picks a
	// free port; Addr() tells which.
	Addr string
	// TLSCert and TLSKey are PEM files of the server's certificate chain
	// and its key: both set, the server speaks HTTPS only (HTTP/1.1); both
	// empty, plain HTTP. One without the other fails Start.
	TLSCert, TLSKey string
	// MaxBodyBytes bounds a request body; zero means 1 MiB.
	MaxBodyBytes int64
	// MaxWait bounds a long-poll (?wait=); zero means 60s.
	MaxWait time.Duration
	// MaxBatch bounds the jobs of one batch request; zero means 1000.
	MaxBatch int
	// ReadTimeout bounds the reading of a request, headers and body, from
	// its first byte: a body still arriving then gets 408 and its
	// connection is closed. Zero means 30s.
	ReadTimeout time.Duration
	// MaxConnections bounds the connections the server holds at once;
	// further ones wait to be accepted until one closes. Zero means 1024.
	MaxConnections int
	// MaxJSONDepth bounds how deeply the arrays and objects of a request
	// body nest (a body that is one object is 1 deep; each job of a batch
	// counts as if sent alone). Zero means 64.
	MaxJSONDepth int
	// MaxDelay bounds how far ahead a job may be due (its delay or run_at)
	// and its backoff's waits, since its record is kept until then; at most
	// jobs.MaxDelay. Zero means 30 days.
	MaxDelay time.Duration
	// TenantKey is the metadata key of a rate limit's tenant rate that
	// names none (docs/ratelimits.md); empty, a tenant rate must name it.
	TenantKey string
	// Logger receives request and error logs; nil means slog.Default().
	Logger *slog.Logger
	// Now tells the time; nil means time.Now.
	Now func() time.Time
	// Management is RabbitMQ's management API, which GET /v1/queues and
	// GET /metrics ask for each queue's unacknowledged messages as well as
	// its ready ones; nil means AMQP alone (ready messages and consumers).
	Management *queue.Management
	// Collectors are more figures GET /metrics serves, the process's own
	// (such as its rescuer's counter); nil means none.
	Collectors []prometheus.Collector
	// Keys are the API keys callers must present; nil or empty means none
	// are asked for, and the API then serves loopback only.
	Keys *apikey.Ring
	// InsecureNoAuth lets an API without keys listen beyond loopback.
	InsecureNoAuth bool
	// MetricsAddr, when set, also serves GET /metrics there, without keys.
	MetricsAddr string
	// TracerProvider, if set, traces each submission: a server span for
	// the request (the child of its traceparent, if any) and a producer
	// span for the publish, whose traceparent the jobs' messages carry to
	// the worker. Nil means no spans, and the request's traceparent goes on
	// the messages as it came.
	TracerProvider trace.TracerProvider
	// AllowedHosts are Host header values answered besides addresses and
	// loopback names ("*": any). They are checked only where set, or where
	// the API runs without keys.
	AllowedHosts []string
	// AllowedOrigins are the browser origins allowed besides the API's own.
	AllowedOrigins []string
	// RequestsPerSecond is a key's default sustained request rate (bursts
	// of twice as many); zero means 100, negative no limit.
	RequestsPerSecond float64
	// JobsPerMinute is a key's default bound on the jobs it submits in any
	// minute; zero means 60000, negative no limit.
	JobsPerMinute int
}

func (c Config) withDefaults() Config {
	c.Addr = cmp.Or(c.Addr, "127.0.0.1:8080")
	c.MaxBodyBytes = cmp.Or(c.MaxBodyBytes, 1<<20)
	c.MaxWait = cmp.Or(c.MaxWait, 60*time.Second)
	c.MaxBatch = cmp.Or(c.MaxBatch, 1000)
	c.ReadTimeout = cmp.Or(c.ReadTimeout, 30*time.Second)
	c.MaxConnections = cmp.Or(c.MaxConnections, 1024)
	c.MaxJSONDepth = cmp.Or(c.MaxJSONDepth, 64)
	c.MaxDelay = cmp.Or(c.MaxDelay, 30*24*time.Hour)
	c.RequestsPerSecond = cmp.Or(c.RequestsPerSecond, 100)
	c.JobsPerMinute = cmp.Or(c.JobsPerMinute, 60000)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.MaxBodyBytes < 0, c.MaxWait < 0, c.MaxBatch < 0, c.ReadTimeout < 0, c.MaxConnections < 0, c.MaxJSONDepth < 0:
		return errors.New("api: limits must not be negative")
	case c.MaxJSONDepth > MaxJSONDepth:
		return fmt.Errorf("api: the JSON nesting limit (api.max_json_depth) is %d, over the most allowed, %d", c.MaxJSONDepth, MaxJSONDepth)
	case c.MaxDelay < 0 || c.MaxDelay > jobs.MaxDelay:
		return fmt.Errorf("api: the longest delay (api.max_delay) is %s, out of range (0 to %s)", c.MaxDelay, jobs.MaxDelay)
	case c.TenantKey != "" && jobs.ValidTenantKey(c.TenantKey) != nil:
		return fmt.Errorf("api: the default tenant key (api.tenant_key): %w", jobs.ValidTenantKey(c.TenantKey))
	}
	return nil
}

// MaxJSONDepth is the deepest nesting Config.MaxJSONDepth may allow. A
// worker must be able to read what the API accepts: Python's json module
// stops at its recursion limit (1000 levels by default, fewer when called
// deep in a stack), and a message wraps the payload in one more level.
const MaxJSONDepth = 500

// Broker is what the API needs of RabbitMQ, by who needs it: submission
// (the producer's), the queue figures (metrics'), and the dead-letter
// endpoints.
type Broker interface {
	producer.Broker
	metrics.Broker
	deadLetters
}

// deadLetters is what the dead-letter endpoints need of RabbitMQ.
type deadLetters interface {
	DeadLetters(ctx context.Context, pool string, limit int) (int, []queue.DeadLetter, error)
	ReplayDead(ctx context.Context, pool string, ids []string, records queue.Records) ([]string, error)
	PurgeDead(ctx context.Context, pool string) (int, error)
}

// Store is what the API needs of Redis, by who needs it: submission (the
// producer's), replays (queue.Records), the job endpoints, the pool
// endpoints and /metrics, and the server itself.
type Store interface {
	producer.Store
	queue.Records
	jobRecords
	poolRecords
	schedule.Records
	workflow.Store
	limitRecords
	// Take takes from a key's rate-limit buckets (admit).
	Take(ctx context.Context, name string, requests, jobs store.Rate, n int) (store.Allowance, error)
	// Ping answers /readyz.
	Ping(ctx context.Context) error
	// NewNotifier serves long-polls and hears declarations.
	NewNotifier(on store.Handlers) *store.Notifier
}

// jobRecords is what the job endpoints read and change.
type jobRecords interface {
	Get(ctx context.Context, id string) (*jobs.Job, error)
	Present(ctx context.Context, j *jobs.Job) *jobs.Job
	List(ctx context.Context, q store.Query) (store.Page, error)
	Artifact(ctx context.Context, id string) (jobs.Artifact, error)
	Cancel(ctx context.Context, id string, now time.Time) (jobs.Status, error)
	Retry(ctx context.Context, id, token string, publish func(context.Context, *jobs.Job) error) (store.Retried, error)
}

// poolRecords is what the pool endpoints (queues, workers, autoscale,
// pause) and /metrics read and change.
type poolRecords interface {
	metrics.Store
	Replicas(ctx context.Context) (map[string]store.Replicas, error)
	Scaling(ctx context.Context, pools ...string) (map[string]store.PoolScaling, error)
	Rescued(ctx context.Context, pools []string, now time.Time) (map[string]int, error)
	Counts(ctx context.Context, pools []string, now time.Time) (map[string]store.Counts, error)
	Workers(ctx context.Context) ([]store.WorkerInfo, error)
	Paused(ctx context.Context) (map[string]store.Pause, error)
	PausePool(ctx context.Context, pool, by string) (store.Pause, bool, error)
	ResumePool(ctx context.Context, pool string) (bool, error)
}

var (
	_ Broker = (*queue.Broker)(nil)
	_ Store  = (*store.Store)(nil)
)

// Server is the HTTP API. Start it, Stop it.
type Server struct {
	cfg      Config
	broker   Broker
	store    Store
	notifier *store.Notifier
	producer *producer.Producer
	// schedules adds, reads and changes the namespace's schedules.
	schedules *schedule.Book
	// workflows submits, reads and cancels workflows.
	workflows *workflow.Service
	decode    *decoder
	metrics   *metrics.Collector
	obs       instruments
	log       *slog.Logger
	auditLog  *slog.Logger
	handler   http.Handler

	mu       sync.Mutex
	srv      *http.Server
	ln       net.Listener
	cancel   context.CancelFunc
	serveErr chan error
	mserver  *metricsServer // nil unless Config.MetricsAddr
}

// New returns a Server over the given broker and store.
func New(cfg Config, b Broker, st Store) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:    cfg,
		broker: b,
		store:  st,
		log:    cfg.Logger.With("component", "api"),
	}
	s.auditLog = cfg.Logger.With("component", "audit")
	m, err := s.newMetrics()
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.obs = newInstruments(cfg, b.Namespace())
	s.producer = producer.New(producer.Config{Logger: s.log, TracerProvider: cfg.TracerProvider, Submissions: s.obs.submitted,
		MaxDelay: cfg.MaxDelay, Now: cfg.Now}, b, st)
	// Workers announce their declarations: the producer reads a changed
	// type at once.
	s.schedules = schedule.NewBook(st, s.producer, cfg.Now)
	s.workflows = workflow.NewService(workflow.Config{Logger: cfg.Logger, Now: cfg.Now}, s.producer, st)
	s.notifier = st.NewNotifier(store.Handlers{Type: s.producer.Forget})
	s.decode = &decoder{maxDepth: cfg.MaxJSONDepth, maxBatch: cfg.MaxBatch, buildJob: s.producer.Build}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the API's HTTP handler, for embedding in another server.
// Long-polls need the notifier, which Start starts.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/jobs", s.traced("POST /v1/jobs", s.need(apikey.Submit, s.submit)))
	mux.Handle("POST /v1/jobs/batch", s.traced("POST /v1/jobs/batch", s.need(apikey.Submit, s.submitBatch)))
	mux.Handle("GET /v1/jobs", s.need(apikey.Read, s.listJobs))
	mux.Handle("GET /v1/jobs/{id}", s.need(apikey.Read, s.getJob))
	mux.Handle("POST /v1/jobs/{id}/cancel", s.need(apikey.Admin, s.cancelJob))
	mux.Handle("POST /v1/jobs/{id}/retry", s.need(apikey.Admin, s.retryJob))
	mux.Handle("GET /v1/jobs/{id}/artifact", s.need(apikey.Read, s.artifact))
	mux.Handle("GET /v1/dead", s.need(apikey.Admin, s.listDead))
	mux.Handle("POST /v1/dead/replay", s.need(apikey.Admin, s.replayDead))
	mux.Handle("DELETE /v1/dead", s.need(apikey.Admin, s.purgeDead))
	mux.Handle("GET /v1/queues", s.need(apikey.Read, s.listQueues))
	mux.Handle("POST /v1/queues/{pool}/pause", s.need(apikey.Admin, s.pausePool))
	mux.Handle("POST /v1/queues/{pool}/resume", s.need(apikey.Admin, s.resumePool))
	mux.Handle("GET /v1/workers", s.need(apikey.Read, s.listWorkers))
	mux.Handle("GET /v1/autoscale", s.need(apikey.Read, s.listAutoscale))
	mux.Handle("GET /v1/types", s.need(apikey.Read, s.listTypes))
	mux.Handle("GET /v1/limits", s.need(apikey.Read, s.listLimits))
	mux.Handle("GET /v1/limits/{type}", s.need(apikey.Read, s.getLimit))
	mux.Handle("PUT /v1/limits/{type}", s.need(apikey.Admin, s.putLimit))
	mux.Handle("DELETE /v1/limits/{type}", s.need(apikey.Admin, s.deleteLimit))
	mux.Handle("POST /v1/schedules", s.need(apikey.Admin, s.addSchedule))
	mux.Handle("GET /v1/schedules", s.need(apikey.Read, s.listSchedules))
	mux.Handle("GET /v1/schedules/{name}", s.need(apikey.Read, s.getSchedule))
	mux.Handle("DELETE /v1/schedules/{name}", s.need(apikey.Admin, s.deleteSchedule))
	mux.Handle("POST /v1/schedules/{name}/pause", s.need(apikey.Admin, s.pauseSchedule))
	mux.Handle("POST /v1/schedules/{name}/resume", s.need(apikey.Admin, s.resumeSchedule))
	mux.Handle("POST /v1/workflows", s.need(apikey.Submit, s.submitWorkflow))
	mux.Handle("GET /v1/workflows", s.need(apikey.Read, s.listWorkflows))
	mux.Handle("GET /v1/workflows/{id}", s.need(apikey.Read, s.getWorkflow))
	mux.Handle("POST /v1/workflows/{id}/cancel", s.need(apikey.Admin, s.cancelWorkflow))
	mux.Handle("GET /metrics", s.need(apikey.Read, s.metrics.Handler(s.moreCollectors()...).ServeHTTP))
	// The dashboard: its page and sign-in are open (the page holds no
	// data; it reads the endpoints above with the session's key).
	mux.Handle("GET /ui/", ui.Handler())
	mux.HandleFunc("GET /ui/session", s.getSession)
	mux.HandleFunc("POST /ui/login", s.login)
	mux.HandleFunc("POST /ui/logout", s.logout)
	mux.Handle("GET /{$}", http.RedirectHandler(ui.Prefix, http.StatusFound))
	mux.Handle("GET /dashboard", http.RedirectHandler(ui.Prefix, http.StatusFound))
	// Probes and the API's description are open to all.
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /openapi.json", s.openAPI)
	// Everything else lands here: a known path asked with the wrong method
	// gets a 405 naming the methods it takes, the rest a 404, both in JSON;
	// a stranger learns neither without a key.
	mux.Handle("/", s.need("", func(w http.ResponseWriter, r *http.Request) {
		var allowed []string
		// HEAD wherever GET: ServeMux answers it with the GET handler.
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "/" {
				allowed = append(allowed, m)
			}
		}
		if len(allowed) == 0 {
			writeError(w, apiErr("not_found", "", "no such endpoint: %s %s", r.Method, r.URL.Path))
			return
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, apiErr("method_not_allowed", "", "%s %s is not allowed; use %s", r.Method, r.URL.Path, strings.Join(allowed, " or ")))
	}))
	return s.recoverer(s.guardOrigin(checkEncoding(mux)))
}

// checkEncoding refuses a request whose path or query is not UTF-8 text
// (after %-decoding); the body is checked where it is decoded.
func checkEncoding(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !utf8.ValidString(r.URL.Path) {
			writeError(w, apiErr("invalid_encoding", "path", "path: the request path is not UTF-8 text"))
			return
		}
		for k, vs := range r.URL.Query() {
			bad := !utf8.ValidString(k)
			for _, v := range vs {
				bad = bad || !utf8.ValidString(v)
			}
			if bad {
				field := truncateText(strings.ToValidUTF8(k, "\uFFFD"), maxFieldPath)
				writeError(w, apiErr("invalid_encoding", field, "%s: the query parameter is not UTF-8 text", field))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// recoverer turns a handler panic into a 500 and a log line.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panicked", "panic", v, "path", r.URL.Path)
				writeError(w, apiErr("internal", "", "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// Start listens and serves in the background. Calling it again does nothing.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	ln, err := s.listen()
	if err != nil {
		return fmt.Errorf("api: listen: %w", err)
	}
	if err := s.loopbackOnly(ln); err != nil {
		ln.Close()
		return err
	}
	mserver, err := s.startMetrics()
	if err != nil {
		ln.Close()
		return err
	}
	if err := s.notifier.Start(ctx); err != nil {
		ln.Close()
		_ = mserver.stop(ctx)
		return fmt.Errorf("api: %w", err)
	}
	s.mserver = mserver
	// Requests get a context that Stop cancels, so long-polls end at once.
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ln = newLimitListener(ln, s.cfg.MaxConnections)
	s.ln, s.cancel = ln, cancel
	s.srv = &http.Server{
		Handler: s.handler,
		// ReadTimeout covers the headers too, but the server gives them
		// their own deadline first: keep it no longer.
		ReadHeaderTimeout: min(10*time.Second, s.cfg.ReadTimeout),
		ReadTimeout:       s.cfg.ReadTimeout,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.serveErr = make(chan error, 1)
	srv := s.srv
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serveErr <- err
	}()
	s.log.Info("api listening", "addr", ln.Addr().String())
	return nil
}

// MetricsAddr returns the address of the metrics listener, once started
// with Config.MetricsAddr; "" otherwise.
func (s *Server) MetricsAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mserver == nil {
		return ""
	}
	return s.mserver.Addr()
}

// Addr returns the address the server listens on, once started.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Stop stops accepting requests, ends long-polls, waits for requests in
// progress until ctx ends, and stops the notifier. Calling it again does
// nothing.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	srv, cancel, serveErr, mserver := s.srv, s.cancel, s.serveErr, s.mserver
	s.cancel = nil
	s.mu.Unlock()
	if srv == nil || cancel == nil {
		return nil
	}
	cancel()
	err := srv.Shutdown(ctx)
	if serr := <-serveErr; err == nil {
		err = serr
	}
	if merr := mserver.stop(ctx); err == nil {
		err = merr
	}
	if nerr := s.notifier.Stop(ctx); err == nil {
		err = nerr
	}
	if err != nil {
		return fmt.Errorf("api: stop: %w", err)
	}
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"rabbitmq": "ok", "redis": "ok"}
	status := http.StatusOK
	if !s.broker.Connected() {
		checks["rabbitmq"], status = "unavailable", http.StatusServiceUnavailable
	}
	if err := s.store.Ping(ctx); err != nil {
		checks["redis"], status = "unavailable", http.StatusServiceUnavailable
	}
	body := map[string]any{"status": "ready", "checks": checks}
	if status != http.StatusOK {
		body["status"] = "unavailable"
	}
	writeJSON(w, status, body)
}

//go:embed openapi.json
var openAPISpec []byte

func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPISpec)
}
