package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/autoscale"
	"github.com/warrenhq/warren/config"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/workers/builtin"
)

func (a *app) autoscaleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "autoscale [POOL...]",
		Short: "Run and scale the worker processes of every pool from its backlog",
		Long: `Run the worker processes of each pool and size every pool on its own from
its backlog (ready + unacknowledged messages) and, where a target age is set,
the age of its oldest waiting job, by the policy in pools.NAME.autoscale of
warren.yaml (see docs/autoscaling.md). Pools without a policy run between 1
and 4 processes, one per 100 jobs of backlog.

Without arguments it runs the built-in pools (` + strings.Join(builtin.Pools(), ", ") + `) and every pool
of warren.yaml that names a command, leaving out any with enabled: false, and
sys unless pools.sys.enabled is true (its sys.spin burns a CPU for whoever
submits it); with arguments, only those pools.
A built-in pool's process is 'warren worker POOL'; another pool's is its
pools.NAME.command, started with the WARREN_* settings in its environment.

Surplus processes get SIGTERM and drain; a process that exits on its own is
restarted with backoff; SIGTERM or Ctrl-C stops them all, and if the
supervisor is killed they get SIGTERM from the kernel.

Several supervisors may run for the same pools, on one machine or many:
each pool's processes run under the one that holds the pool's lease in
Redis (supervisor.lease_ttl), and the others wait to take it over. Each decision is
logged with its inputs and shown by 'warren queues'; 'warren scaling' shows
the policies and the recent decisions with their reasons.`,
		Example: `  warren autoscale
  warren autoscale sys image --addr 127.0.0.1:9090`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.config(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := a.openStack(ctx, cfg, "autoscale")
			if err != nil {
				return err
			}
			defer s.close()
			if len(args) == 0 {
				args = s.defaultPools(false)
			}
			sup, err := s.newSupervisor(a, args)
			if err != nil {
				return err
			}
			if cfg.Supervisor.Addr != "" {
				m, err := s.supervisorMetrics(sup, args)
				if err != nil {
					return err
				}
				stop, err := serveSupervisor(cfg.Supervisor.Addr, sup, s.log, m)
				if err != nil {
					return err
				}
				defer stop()
			}
			return sup.Run(ctx)
		},
	}
	addSettingFlags(cmd.Flags(), cmd.Name())
	return cmd
}

// defaultPools are the pools a supervisor runs when none is named: the
// built-in pools and every configured pool with a command, those that are
// enabled (config.Config.PoolEnabled), and sys as well when withSys.
func (s *stack) defaultPools(withSys bool) []string {
	var names []string
	for _, name := range builtin.Pools() {
		if s.cfg.PoolEnabled(name) || (withSys && name == config.SysPool) {
			names = append(names, name)
		}
	}
	for name, p := range s.cfg.Pools {
		if len(p.Command) > 0 && s.cfg.PoolEnabled(name) && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// newSupervisor builds the supervisor of the named pools.
func (s *stack) newSupervisor(a *app, names []string) (*autoscale.Supervisor, error) {
	cfg := s.cfg
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the warren executable: %w", err)
	}
	env := a.workerEnv(cfg)
	// Each worker process serves its metrics on a socket of its own
	// there, which the supervisor's /metrics gathers.
	sockets := s.socketDir()
	var pools []autoscale.PoolSpec
	for _, name := range names {
		command := cfg.Pools[name].Command
		if len(command) == 0 {
			if !slices.Contains(builtin.Pools(), name) {
				return nil, fmt.Errorf("pool %q is not built in and has no pools.%s.command in warren.yaml", name, name)
			}
			// The supervisor's processes must not compete for one health
			// address: each gets a socket of its own in its environment,
			// or, without sockets, none.
			command = []string{self, "worker", name}
			if sockets == "" {
				command = append(command, "--health-addr=")
			}
		}
		pools = append(pools, autoscale.PoolSpec{
			Name:    name,
			Policy:  cfg.AutoscaleOf(name).Policy(),
			Command: command,
			Env:     env,
		})
	}
	return autoscale.NewSupervisor(autoscale.SupervisorConfig{
		Pools:    pools,
		Observer: &poolObserver{broker: s.broker, store: s.store, mgmt: s.mgmt, cfg: cfg},
		Reporter: replicaReporter{s.store},
		// Other supervisors of the namespace may be configured for the
		// same pools: each pool runs under whoever holds its lease.
		Leases:    s.store,
		LeaseTTL:  cfg.Supervisor.LeaseTTL.Std(),
		Logger:    s.log.With("component", "autoscale"),
		StopGrace: cfg.Worker.ShutdownGrace.Std() + shutdownTimeout,
		SocketDir: sockets,
		// Read by the worker as worker.health_addr (config.go).
		HealthAddrEnv: "WARREN_HEALTH_ADDR",
	})
}

// workerEnv is the environment of worker processes: the supervisor's own,
// with the settings it resolved from its flags and config file, so the
// workers join the same stack.
func (a *app) workerEnv(cfg config.Config) []string {
	env := slices.Clone(a.environ)
	set := cfg.ChildEnv()
	if a.configPath != "" {
		set["WARREN_CONFIG"] = a.configPath
	}
	// A secret resolved here from X_FILE goes to the worker as X; the
	// worker would refuse X and X_FILE both set as ambiguous.
	env = slices.DeleteFunc(env, func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		base, ok := strings.CutSuffix(name, "_FILE")
		_, resolved := set[base]
		return ok && resolved
	})
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return env
}

// poolObserver measures a pool: its backlog from the broker and, when its
// policy asks for it, its oldest waiting job's age from Redis.
type poolObserver struct {
	broker *queue.Broker
	store  *store.Store
	mgmt   *queue.Management
	cfg    config.Config
}

func (o *poolObserver) Observe(ctx context.Context, pool string) (autoscale.Observation, error) {
	d, err := o.broker.PoolDepth(ctx, pool, o.mgmt)
	if errors.Is(err, queue.ErrNoPool) {
		return autoscale.Observation{Undeclared: true}, nil
	}
	if err != nil {
		return autoscale.Observation{}, err
	}
	obs := autoscale.Observation{Backlog: d.Backlog()}
	paused, err := o.store.Paused(ctx)
	if err != nil {
		return obs, err
	}
	_, obs.Paused = paused[pool]
	if o.cfg.AutoscaleOf(pool).TargetAge > 0 {
		if obs.OldestAge, err = o.store.OldestWaiting(ctx, pool); err != nil {
			return obs, err
		}
	}
	return obs, nil
}

// replicaReporter keeps each decision in Redis, with the pool's policy and
// what the decision was made from, for the API's /v1/queues and
// /v1/autoscale.
type replicaReporter struct{ store *store.Store }

func (r replicaReporter) Report(ctx context.Context, pool string, st autoscale.PoolStatus) error {
	p := st.Policy
	return r.store.PutReplicas(ctx, pool, store.Replicas{
		Current:     st.Running,
		Desired:     st.Desired,
		Reason:      st.Reason,
		At:          st.At,
		Interval:    st.Interval,
		From:        st.Current,
		Recommended: st.Recommended,
		Backlog:     st.Backlog,
		OldestAge:   st.OldestAge,
		Policy: &store.ScalePolicy{
			Min: p.Min, Max: p.Max, TargetBacklog: p.TargetBacklog, ActivationBacklog: p.ActivationBacklog,
			TargetAge: p.TargetAge, Interval: p.Interval, ScaleUpWindow: p.ScaleUpWindow,
			ScaleDownWindow: p.ScaleDownWindow, MaxStep: p.MaxStep,
		},
	})
}

// serveSupervisor serves the supervisor's /healthz, /status (JSON) and
// /metrics (its own figures and its worker processes') on addr and returns
// what stops it.
func serveSupervisor(addr string, sup *autoscale.Supervisor, log *slog.Logger, metrics http.Handler) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"pools": sup.Status(), "processes": sup.Processes()})
	})
	mux.Handle("GET /metrics", metrics)
	return serveSide(addr, mux, log, "supervisor")
}
