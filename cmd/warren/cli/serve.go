package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/apikey"
	"github.com/warrenhq/warren/config"
	"github.com/warrenhq/warren/internal/redact"
	"github.com/warrenhq/warren/metrics"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/rescue"
	"github.com/warrenhq/warren/schedule"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/telemetry"
	"github.com/warrenhq/warren/ui"
	"github.com/warrenhq/warren/workers"
	"github.com/warrenhq/warren/workers/builtin"
	"github.com/warrenhq/warren/workflow"
)

// stack is the connections a server command shares.
type stack struct {
	cfg    config.Config
	log    *slog.Logger
	broker *queue.Broker
	store  *store.Store
	// mgmt is RabbitMQ's management API, for queue figures AMQP cannot
	// give; nil when management_url is "off".
	mgmt *queue.Management
	// rescuer publishes again the jobs whose messages were lost; every
	// server process runs one, and one at a time per namespace looks.
	rescuer *rescue.Rescuer
	// scheduler fires the schedules' ticks; every server process runs one,
	// and one at a time per namespace fires.
	scheduler *schedule.Scheduler
	// advancer moves workflows on; every server process runs one, and one
	// at a time per namespace advances.
	advancer *workflow.Advancer
	// stopDebug stops the profiler's server, if debug_addr started one.
	stopDebug func()
	// tracing exports the process's spans, if the OTEL_* variables ask.
	tracing *telemetry.Tracing
	// socketDirs are the directories of supervised workers' sockets, for
	// close to remove.
	socketDirs []string
	// collectors are more figures the API serves (warren dev's supervisor
	// and its workers).
	collectors []prometheus.Collector
}

func (a *app) openStack(ctx context.Context, cfg config.Config, name string) (*stack, error) {
	log := a.logger(cfg)
	amqpTLS, err := cfg.AMQPTLSConfig()
	if err != nil {
		return nil, err
	}
	mgmt, err := queue.NewManagementTLS(cfg.ManagementURL, cfg.AMQPURL, amqpTLS)
	if err != nil {
		return nil, fmt.Errorf("management_url: %w", err)
	}
	b, err := queue.New(queue.Config{URL: cfg.AMQPURL, TLS: amqpTLS, Namespace: cfg.Namespace, Logger: log, Name: "warren-" + name, QuorumGroupSize: cfg.AMQPQuorumGroupSize})
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg, cfg.Namespace, log)
	if err != nil {
		return nil, err
	}
	if err := b.Start(ctx); err != nil {
		return nil, err
	}
	// Give the first connection a moment, so a process that is up is also
	// ready in the common case; past that it serves and keeps trying (the
	// API answers 503 and /readyz says why meanwhile).
	wait, cancel := context.WithTimeout(ctx, firstConnectWait)
	defer cancel()
	if err := b.WaitConnected(wait); err != nil {
		log.Warn("RabbitMQ is not reachable yet; starting anyway and retrying", "url", redact.URLs(cfg.AMQPURL))
	}
	tracing, err := a.setupTracing(ctx, name, log)
	if err != nil {
		return nil, err
	}
	s := &stack{cfg: cfg, log: log, broker: b, store: st, mgmt: mgmt, tracing: tracing}
	s.rescuer = rescue.New(rescue.Config{
		Interval:  cfg.Rescue.Interval.Std(),
		Grace:     cfg.Rescue.Grace.Std(),
		Namespace: cfg.Namespace,
		Logger:    log,
	}, b, st)
	if err := s.rescuer.Start(ctx); err != nil {
		return nil, err
	}
	s.scheduler = schedule.New(schedule.Config{
		Grace:     cfg.Schedule.Grace.Std(),
		Namespace: cfg.Namespace,
		Logger:    log,
	}, st, producer.New(producer.Config{Logger: log, MaxDelay: cfg.API.MaxDelay.Std(), TracerProvider: tracing.Provider()}, b, st))
	if err := s.scheduler.Start(ctx); err != nil {
		return nil, err
	}
	s.advancer = workflow.NewAdvancer(workflow.AdvancerConfig{Interval: cfg.Workflow.Sweep.Std(), PendingGrace: cfg.Workflow.PendingGrace.Std(),
		Config: workflow.Config{Logger: log}},
		producer.New(producer.Config{Logger: log, MaxDelay: cfg.API.MaxDelay.Std(), TracerProvider: tracing.Provider()}, b, st), st)
	if err := s.advancer.Start(ctx); err != nil {
		return nil, err
	}
	if cfg.DebugAddr != "" {
		// Not fatal: a worker started by a supervisor inherits the address
		// its siblings already listen on.
		if s.stopDebug, err = serveDebug(cfg.DebugAddr, log); err != nil {
			log.Warn("no debug endpoints", "err", err)
		}
	}
	return s, nil
}

// serveDebug serves Go's profiler on addr and returns what stops it.
func serveDebug(addr string, log *slog.Logger) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return serveSide(addr, mux, log, "debug")
}

// serveSide serves one of a process's side endpoints (health, debug,
// supervisor status) on addr, logs "<what> endpoints listening" with the
// address (tests and the benchmark read it from there, for ":0"), and
// returns what stops it and waits for it.
func serveSide(addr string, h http.Handler, log *slog.Logger, what string) (stop func(), err error) {
	ln, err := listen(addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", what, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	log.Info(what+" endpoints listening", "addr", ln.Addr().String())
	return func() { _ = srv.Close(); <-served }, nil
}

// firstConnectWait bounds how long a server command waits for RabbitMQ
// before it starts serving.
const firstConnectWait = 5 * time.Second

func (s *stack) close() {
	if s.stopDebug != nil {
		s.stopDebug()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.rescuer.Stop(ctx); err != nil {
		s.log.Warn("stopping the rescuer", "err", err)
	}
	if err := s.scheduler.Stop(ctx); err != nil {
		s.log.Warn("stopping the scheduler", "err", err)
	}
	if err := s.advancer.Stop(ctx); err != nil {
		s.log.Warn("stopping the workflow advancer", "err", err)
	}
	if err := s.broker.Stop(ctx); err != nil {
		s.log.Warn("stopping broker connection", "err", err)
	}
	_ = s.store.Close()
	s.closeTracing()
	s.removeSocketDirs()
}

// newWorker builds a worker running the named built-in pools; its health
// handler serves their metrics.
func (s *stack) newWorker(pools []string) (*workers.Worker, error) {
	coll, err := metrics.New(metrics.Config{
		Broker:     s.broker,
		Store:      s.store,
		Management: s.mgmt,
		Pools:      func(context.Context) ([]string, error) { return pools, nil },
		Namespace:  s.cfg.Namespace,
		Logger:     s.log,
	})
	if err != nil {
		return nil, err
	}
	pc := map[string]workers.PoolConfig{}
	runs := metrics.NewRuns(s.cfg.Namespace)
	w := workers.New(workers.Config{
		Pools:          pc,
		ShutdownGrace:  s.cfg.Worker.ShutdownGrace.Std(),
		Logger:         s.log,
		Metrics:        coll.Handler(s.workerCollectors(runs)...),
		Runs:           runs,
		TracerProvider: s.tracing.Provider(),
		Version:        workerVersion(),
	}, s.broker, s.store)
	for _, svc := range builtin.Services {
		if !slices.Contains(pools, svc.Pool) {
			continue
		}
		c := s.cfg.Pools[svc.Pool]
		pc[svc.Pool] = workers.PoolConfig{
			Concurrency: cmp.Or(c.Concurrency, svc.Concurrency),
			Prefetch:    c.Prefetch,
			Fairness:    c.Fairness,
		}
		if err := svc.Register(w, s.cfg, s.log.With("pool", svc.Pool)); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// newAPI builds the HTTP API over the stack; its /metrics also serves the
// rescuer's counter.
func (s *stack) newAPI() (*api.Server, error) {
	keys, err := apikey.NewRing(s.cfg.API.Keys)
	if err != nil {
		return nil, fmt.Errorf("api.keys: %w", err)
	}
	return api.New(api.Config{
		Addr:              s.cfg.API.Addr,
		TLSCert:           s.cfg.API.TLSCert,
		TLSKey:            s.cfg.API.TLSKey,
		MaxBodyBytes:      s.cfg.API.MaxBodyBytes,
		ReadTimeout:       s.cfg.API.ReadTimeout.Std(),
		MaxConnections:    s.cfg.API.MaxConnections,
		MaxJSONDepth:      s.cfg.API.MaxJSONDepth,
		MaxDelay:          s.cfg.API.MaxDelay.Std(),
		TenantKey:         s.cfg.API.TenantKey,
		Logger:            s.log,
		Management:        s.mgmt,
		Collectors:        append([]prometheus.Collector{s.rescuer.Collector(), s.scheduler.Collector()}, s.collectors...),
		TracerProvider:    s.tracing.Provider(),
		Keys:              keys,
		InsecureNoAuth:    s.cfg.API.InsecureNoAuth,
		MetricsAddr:       s.cfg.API.MetricsAddr,
		AllowedHosts:      s.cfg.API.AllowedHosts,
		AllowedOrigins:    s.cfg.API.AllowedOrigins,
		RequestsPerSecond: s.cfg.API.RequestsPerSecond,
		JobsPerMinute:     s.cfg.API.JobsPerMinute,
	}, s.broker, s.store)
}

// apiScheme is how the API the settings describe is reached: https with a
// certificate, else http.
func apiScheme(cfg config.Config) string {
	if cfg.API.TLSCert != "" {
		return "https"
	}
	return "http"
}

// shutdownTimeout bounds the whole shutdown after the worker's grace.
const shutdownTimeout = 15 * time.Second

func (a *app) devCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole stack: the API and every built-in worker pool, autoscaled",
		Long: `Run the API and, under the autoscaling supervisor (as 'warren autoscale'),
the worker processes of every built-in pool (` + strings.Join(builtin.Pools(), ", ") + `) and of every pool
in warren.yaml with a command, in the foreground, for development and trying
warren out. Each pool grows and shrinks with its backlog; 'warren queues'
shows it, and so does the web dashboard at /ui/ (its address is logged at
start). RabbitMQ and Redis must be running ('make services-up' starts
them). Ctrl-C stops it: the API stops taking jobs, running jobs finish within
the shutdown grace period, and anything unfinished goes back to its queue.`,
		Example: `  warren dev
  warren dev --addr 127.0.0.1:9090 --namespace demo`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := a.openStack(ctx, cfg, "dev")
			if err != nil {
				return err
			}
			defer s.close()
			// The whole stack for development, sys (the test and load
			// types) included.
			sup, err := s.newSupervisor(a, s.defaultPools(true))
			if err != nil {
				return err
			}
			// The API's /metrics serves the supervisor's figures and its
			// workers' (docs/metrics.md).
			s.collectors = s.supervisorCollectors(sup)
			srv, err := s.newAPI()
			if err != nil {
				return err
			}
			if err := srv.Start(ctx); err != nil {
				return err
			}
			var pools []string
			for _, st := range sup.Status() {
				pools = append(pools, st.Pool)
			}
			metricsURL := apiScheme(cfg) + "://" + srv.Addr() + "/metrics"
			if addr := srv.MetricsAddr(); addr != "" {
				metricsURL = "http://" + addr + "/metrics"
			}
			base := apiScheme(cfg) + "://" + srv.Addr()
			s.log.Info("warren dev running; Ctrl-C stops it",
				"dashboard", base+ui.Prefix, "api", base, "metrics", metricsURL, "pools", pools, "namespace", string(cfg.Namespace))
			supErr := sup.Run(ctx) // returns once ctx is done and the workers have stopped
			s.log.Info("shutting down")
			stopCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			return errors.Join(supErr, srv.Stop(stopCtx))
		},
	}
	addSettingFlags(cmd.Flags(), cmd.Name())
	return cmd
}

func (a *app) apiCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Run the producer HTTP API alone",
		Long: `Run the producer HTTP API alone. With API keys configured (api.keys,
WARREN_API_KEYS or WARREN_API_KEYS_FILE; 'warren keys new' makes them) every
call but /healthz, /readyz and /openapi.json needs one. Without keys it serves
loopback only, unless started with --insecure-no-auth. It also serves the web
dashboard at /ui/, which asks for a key (read to look, admin to act) where
keys are configured.`,
		Example: `  warren api
  WARREN_API_KEYS_FILE=/etc/warren/api-keys warren api --addr 0.0.0.0:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := a.openStack(ctx, cfg, "api")
			if err != nil {
				return err
			}
			defer s.close()
			srv, err := s.newAPI()
			if err != nil {
				return err
			}
			if err := srv.Start(ctx); err != nil {
				return err
			}
			s.log.Info("dashboard", "url", apiScheme(cfg)+"://"+srv.Addr()+ui.Prefix)
			<-ctx.Done()
			stopCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			return srv.Stop(stopCtx)
		},
	}
	addSettingFlags(cmd.Flags(), cmd.Name())
	return cmd
}

func (a *app) workerCmd() *cobra.Command {
	var concurrency, prefetch int
	cmd := &cobra.Command{
		Use:   "worker POOL",
		Short: "Run one worker pool (" + strings.Join(builtin.Pools(), ", ") + ")",
		Long: `Run the worker service of one pool. It consumes the pool's queue, runs the
handlers of its job types and records outcomes in Redis. SIGTERM or Ctrl-C
stops it gracefully: it stops taking jobs, lets running ones finish within
the shutdown grace period (worker.shutdown_grace, WARREN_SHUTDOWN_GRACE),
returns the rest to the queue, and exits 0.`,
		Example: `  warren worker sys
  warren worker sys --concurrency 64 --health-addr 127.0.0.1:9091`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: builtin.Pools(),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool := args[0]
			if !slices.Contains(builtin.Pools(), pool) {
				return fmt.Errorf("unknown pool %q; built-in pools: %s", pool, strings.Join(builtin.Pools(), ", "))
			}
			if concurrency < 0 || prefetch < 0 {
				return errors.New("--concurrency and --prefetch must not be negative")
			}
			cfg, err := a.config(cmd)
			if err != nil {
				return err
			}
			if cfg.Pools == nil {
				cfg.Pools = map[string]config.Pool{}
			}
			p := cfg.Pools[pool]
			if concurrency > 0 {
				p.Concurrency = concurrency
			}
			if prefetch > 0 {
				p.Prefetch = prefetch
			}
			cfg.Pools[pool] = p
			ctx := cmd.Context()
			s, err := a.openStack(ctx, cfg, "worker-"+pool)
			if err != nil {
				return err
			}
			defer s.close()
			w, err := s.newWorker([]string{pool})
			if err != nil {
				return err
			}
			if cfg.Worker.HealthAddr != "" {
				stop, err := serveSide(cfg.Worker.HealthAddr, w.HealthHandler(), s.log, "health")
				if err != nil {
					return err
				}
				defer stop()
			}
			if err := w.Start(ctx); err != nil {
				return err
			}
			<-ctx.Done()
			s.log.Info("stopping worker", "grace", cfg.Worker.ShutdownGrace.Std())
			stopCtx, cancel := context.WithTimeout(context.Background(), cfg.Worker.ShutdownGrace.Std()+shutdownTimeout)
			defer cancel()
			return w.Stop(stopCtx)
		},
	}
	addSettingFlags(cmd.Flags(), cmd.Name())
	cmd.Flags().IntVar(&concurrency, "concurrency", 0, "jobs run at once (env WARREN_POOL_<POOL>_CONCURRENCY; default per pool)")
	cmd.Flags().IntVar(&prefetch, "prefetch", 0, "unacknowledged messages held (env WARREN_POOL_<POOL>_PREFETCH; default adaptive: the concurrency, up to 4x while jobs take under 25ms)")
	return cmd
}
