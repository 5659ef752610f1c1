package autoscale

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/warrenhq/warren/jobs"
)

// Observer measures a pool for a decision.
type Observer interface {
	Observe(ctx context.Context, pool string) (Observation, error)
}

// Reporter is told every decision, so that other processes (the API,
// `warren queues`) can show current and desired replicas, the policy, and
// what each decision was made from (PoolStatus's Current, Backlog,
// OldestAge and Recommended).
type Reporter interface {
	Report(ctx context.Context, pool string, s PoolStatus) error
}

// PoolSpec is one pool the supervisor runs.
type PoolSpec struct {
	Name   string
	Policy Policy
	// Command is the argv of one worker process of the pool.
	Command []string
	// Env is the environment of the worker processes; nil means the
	// supervisor's own.
	Env []string
}

// SupervisorConfig configures a Supervisor.
type SupervisorConfig struct {
	Pools    []PoolSpec
	Observer Observer
	// Reporter, if set, is told each decision; its errors are logged.
	Reporter Reporter
	// Logger receives decisions and process events; nil means
	// slog.Default().
	Logger *slog.Logger
	// StopGrace is how long a worker told to stop (SIGTERM) may drain
	// before it is killed; zero means 40s, above the worker's default
	// shutdown grace of 30s.
	StopGrace time.Duration
	// RestartMin and RestartMax bound the wait before a crashed worker is
	// restarted, doubling with each crash in a row; zero means 1s and 30s.
	RestartMin, RestartMax time.Duration
	// Stdout and Stderr receive the workers' output; nil means the
	// supervisor's own.
	Stdout, Stderr *os.File
	// SocketDir, if set with HealthAddrEnv, is a private directory (the
	// caller's to make and remove) in which each worker process gets a
	// Unix socket of its own to serve /metrics, /healthz and /readyz on:
	// the supervisor sets HealthAddrEnv to "unix:DIR/N.sock" in its
	// environment, and Processes lists the addresses. Empty means none.
	// Its path must leave room for the names: see MaxSocketPath.
	SocketDir string
	// HealthAddrEnv is the environment variable that tells a worker
	// process where to serve, such as WARREN_HEALTH_ADDR.
	HealthAddrEnv string
	// Leases, if set, lets the supervisor run a pool's processes only while
	// it holds the pool's lease there, so that several supervisors can be
	// configured for the same pools (see Leases). Nil means it runs every
	// pool it is given, as their only supervisor.
	Leases Leases
	// Holder names the supervisor in the leases; it must be unique among
	// the supervisors of a namespace. Empty means jobs.NewProcessID().
	Holder string
	// LeaseTTL is how long a pool's lease lasts unless renewed; zero means
	// 10s. A standby takes a dead holder's pools over within 4/3 of it, and
	// a holder that cannot renew stops its processes 3/4 of it after the
	// last renewal it sent that succeeded.
	LeaseTTL time.Duration
}

// PoolStatus is what the supervisor last did for a pool.
type PoolStatus struct {
	Pool string `json:"pool"`
	// Running is how many worker processes run and are not stopping.
	Running int `json:"running"`
	// Stopping is how many were told to stop and are draining.
	Stopping int `json:"stopping"`
	// Current and Desired are the size before and after the last
	// decision; Running follows Desired as processes start and stop.
	Current   int           `json:"current"`
	Desired   int           `json:"desired"`
	Backlog   int           `json:"backlog"`
	OldestAge time.Duration `json:"oldest_age"`
	Reason    string        `json:"reason"`
	// At is when the last decision was made; zero (and left out of the
	// JSON) before the first, as on a standby that has never held the
	// pool's lease.
	At          time.Time     `json:"at,omitzero"`
	Interval    time.Duration `json:"interval"`
	Restarts    int           `json:"restarts"`
	LastError   string        `json:"last_error,omitempty"`
	Min         int           `json:"min"`
	Max         int           `json:"max"`
	Recommended int           `json:"recommended"`
	// Lease is LeaseHeld or LeaseWaiting when the supervisor keeps leases
	// (SupervisorConfig.Leases), and empty when it does not.
	Lease string `json:"lease,omitempty"`
	// LeaseHolder is who holds the pool's lease, as last seen: this
	// supervisor, or the one it waits for.
	LeaseHolder string `json:"lease_holder,omitempty"`
	// Policy is the pool's policy, defaults filled in, for a Reporter to
	// publish; /status shows its Min, Max and Interval above.
	Policy Policy `json:"-"`
}

// Supervisor runs the worker processes of every pool and sizes each pool
// from its own observations. Create it with NewSupervisor and call Run.
type Supervisor struct {
	cfg SupervisorConfig
	log *slog.Logger

	mu     sync.Mutex
	status map[string]PoolStatus
	procs  map[*process]Process // the processes running, for Processes
	seq    int                  // numbers the processes' sockets
}

// NewSupervisor checks cfg and returns a Supervisor.
func NewSupervisor(cfg SupervisorConfig) (*Supervisor, error) {
	if cfg.Observer == nil {
		return nil, errors.New("supervisor: no observer")
	}
	seen := map[string]bool{}
	for i, p := range cfg.Pools {
		if p.Name == "" || seen[p.Name] {
			return nil, fmt.Errorf("supervisor: pool %d: empty or repeated name %q", i, p.Name)
		}
		seen[p.Name] = true
		if len(p.Command) == 0 {
			return nil, fmt.Errorf("supervisor: pool %s: no command", p.Name)
		}
		if err := p.Policy.Validate(); err != nil {
			return nil, fmt.Errorf("supervisor: pool %s: %w", p.Name, err)
		}
		cfg.Pools[i].Policy = p.Policy.WithDefaults()
	}
	if cfg.LeaseTTL < 0 {
		return nil, fmt.Errorf("supervisor: lease TTL %s is negative", cfg.LeaseTTL)
	}
	cfg.LeaseTTL = cmp.Or(cfg.LeaseTTL, 10*time.Second)
	cfg.Holder = cmp.Or(cfg.Holder, jobs.NewProcessID())
	cfg.StopGrace = cmp.Or(cfg.StopGrace, 40*time.Second)
	cfg.RestartMin = cmp.Or(cfg.RestartMin, time.Second)
	cfg.RestartMax = cmp.Or(cfg.RestartMax, 30*time.Second)
	cfg.Stdout = cmp.Or(cfg.Stdout, os.Stdout)
	cfg.Stderr = cmp.Or(cfg.Stderr, os.Stderr)
	s := &Supervisor{cfg: cfg, log: cmp.Or(cfg.Logger, slog.Default()), status: map[string]PoolStatus{}, procs: map[*process]Process{}}
	lease := ""
	if cfg.Leases != nil {
		lease = LeaseWaiting
	}
	for _, p := range cfg.Pools {
		s.status[p.Name] = PoolStatus{Pool: p.Name, Min: p.Policy.Min, Max: p.Policy.Max, Interval: p.Policy.Interval, Policy: p.Policy, Lease: lease}
	}
	return s, nil
}

// Run supervises until ctx is done, then stops every worker process
// (SIGTERM, then SIGKILL after StopGrace), gives up the pools' leases, and
// returns once all have exited.
func (s *Supervisor) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, p := range s.cfg.Pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			(&poolRunner{s: s, spec: p, log: s.log.With("pool", p.Name)}).run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// Status returns every pool's status, sorted by pool.
func (s *Supervisor) Status() []PoolStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PoolStatus, 0, len(s.status))
	for _, st := range s.status {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b PoolStatus) int { return cmp.Compare(a.Pool, b.Pool) })
	return out
}

func (s *Supervisor) update(pool string, f func(*PoolStatus)) PoolStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status[pool]
	f(&st)
	s.status[pool] = st
	return st
}

// process is one worker process.
type process struct {
	cmd      *exec.Cmd
	started  time.Time
	stopping bool
	done     chan struct{} // closed once the process has been waited for
	err      error         // its exit, valid after done
}

// poolRunner owns one pool's processes; only its goroutine touches them.
// That goroutine never waits on the network: the measurements, the reports
// and the lease run beside it (bg, keepLease) and hand it their outcomes, so
// that it acts on a lost lease in time, whatever hangs.
type poolRunner struct {
	s    *Supervisor
	spec PoolSpec
	log  *slog.Logger

	scaler  *Scaler
	size    int // the size decided, which the processes follow
	procs   []*process
	exits   chan *process
	crashes int       // crashes in a row, for the restart backoff
	restart time.Time // no start before this, after a crash

	bg        sync.WaitGroup   // the measurement and the report under way
	measured  chan measurement // the measurement's outcome; room for one
	measuring bool
	reported  chan struct{} // the report's end; room for one
	reporting bool
	again     bool // a decision was made while a report was under way

	holding      bool      // the runner holds the pool's lease (or keeps none)
	until        time.Time // when a held lease must be taken as lost, unless renewed
	waitingFor   string    // the holder a standby last saw
	leaseFailing bool      // the last attempt on the lease failed
}

// measurement is what an Observer said of the pool.
type measurement struct {
	obs Observation
	err error
}

func (r *poolRunner) run(ctx context.Context) {
	r.exits = make(chan *process)
	r.measured = make(chan measurement, 1)
	r.reported = make(chan struct{}, 1)
	answers := make(chan leaseAnswer)
	lapse := time.NewTimer(0)
	lapse.Stop()
	defer lapse.Stop()
	keeping := make(chan struct{})
	kctx, stopKeeping := context.WithCancel(ctx)
	if r.s.cfg.Leases == nil {
		close(keeping)
		r.gain(ctx) // without leases the supervisor runs every pool it has
	} else {
		go func() {
			defer close(keeping)
			r.keepLease(kctx, answers)
		}()
	}
	defer func() {
		// The order makes the hand-over safe: the processes are told to
		// stop (they take no new jobs), the keeper ends (it would renew the
		// lease), and only then is the lease given up for a standby to
		// take while the processes drain.
		r.signalAll()
		stopKeeping()
		<-keeping
		r.release(ctx)
		r.waitAll()
		r.bg.Wait()
	}()

	tick := time.NewTicker(r.spec.Policy.Interval)
	defer tick.Stop()
	wake := time.NewTimer(0) // for restarts after a backoff
	defer wake.Stop()
	decided := false
	for {
		r.reconcile(ctx, wake)
		if decided {
			r.report(ctx)
			decided = false
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			r.measure(ctx)
		case m := <-r.measured:
			r.measuring = false
			decided = r.decide(ctx, m)
		case <-r.reported:
			r.reporting = false
			if r.again {
				r.report(ctx)
			}
		case a := <-answers:
			r.leased(ctx, a, lapse)
		case <-lapse.C:
			r.lapsed()
		case p := <-r.exits:
			r.exited(p)
		case <-wake.C:
		}
	}
}

// measure asks the Observer about the pool beside the runner's loop, unless
// a measurement is under way or the runner does not hold the pool.
func (r *poolRunner) measure(ctx context.Context) {
	if r.measuring || !r.holds() {
		return
	}
	r.measuring = true
	r.bg.Go(func() {
		octx, cancel := context.WithTimeout(ctx, max(r.spec.Policy.Interval, 2*time.Second))
		defer cancel()
		obs, err := r.s.cfg.Observer.Observe(octx, r.spec.Name)
		r.measured <- measurement{obs, err}
	})
}

// decide sets the size the pool should have from a measurement; it reports
// whether it could. A measurement that ends after the lease was lost
// decides nothing.
func (r *poolRunner) decide(ctx context.Context, m measurement) bool {
	if !r.holds() {
		return false
	}
	obs, err := m.obs, m.err
	if err != nil {
		if ctx.Err() == nil {
			// Without a measurement the size stays as it is: scaling down a
			// pool because the broker is briefly unreachable would drop
			// capacity exactly when it returns with a backlog.
			r.log.Warn("cannot measure the pool; keeping its size", "replicas", r.size, "err", err)
			r.s.update(r.spec.Name, func(st *PoolStatus) { st.LastError = err.Error() })
		}
		return false
	}
	now := time.Now()
	d := r.scaler.Decide(now, r.size, obs)
	level := slog.LevelDebug
	if d.Desired != d.Current {
		level = slog.LevelInfo
	}
	r.log.Log(ctx, level, "scaling decision", "backlog", obs.Backlog, "oldest_age", obs.OldestAge,
		"current", d.Current, "desired", d.Desired, "reason", d.Reason)
	r.size = d.Desired
	r.s.update(r.spec.Name, func(st *PoolStatus) {
		st.Current, st.Desired, st.Recommended = d.Current, d.Desired, d.Recommended
		st.Backlog, st.OldestAge, st.Reason, st.At = obs.Backlog, obs.OldestAge, d.Reason, now
		st.LastError = ""
	})
	return true
}

// report tells the Reporter the pool's status, beside the runner's loop,
// once its processes have been started or stopped after a decision. While a
// report is under way the next waits for it (one at a time, the newest
// last); a runner that does not hold the pool reports nothing, since the
// holder reports it.
func (r *poolRunner) report(ctx context.Context) {
	rep := r.s.cfg.Reporter
	r.again = false
	if rep == nil || !r.holds() {
		return
	}
	if r.reporting {
		r.again = true
		return
	}
	r.reporting = true
	r.s.mu.Lock()
	st := r.s.status[r.spec.Name]
	r.s.mu.Unlock()
	r.bg.Go(func() {
		defer func() { r.reported <- struct{}{} }()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := rep.Report(rctx, r.spec.Name, st); err != nil && ctx.Err() == nil {
			r.log.Warn("cannot report the decision", "err", err)
		}
	})
}

// reconcile starts or stops processes until as many run as the size says.
func (r *poolRunner) reconcile(ctx context.Context, wake *time.Timer) {
	if ctx.Err() != nil {
		return
	}
	running := r.running()
	for ; running > r.size; running-- {
		// Stop the newest: the older ones have warmed up, and a process
		// that just started holds the least work to drain.
		for i := len(r.procs) - 1; i >= 0; i-- {
			if p := r.procs[i]; !p.stopping {
				r.stop(p)
				break
			}
		}
	}
	for ; running < r.size; running++ {
		if !r.holds() {
			// The lease ran out and the lapse timer has not fired yet:
			// start nothing, lose() follows.
			break
		}
		if wait := time.Until(r.restart); wait > 0 {
			wake.Reset(wait)
			break
		}
		if err := r.start(); err != nil {
			r.log.Error("cannot start a worker process", "command", r.spec.Command, "err", err)
			r.crashed()
			wake.Reset(time.Until(r.restart))
			break
		}
	}
	r.publish()
}

func (r *poolRunner) running() int {
	n := 0
	for _, p := range r.procs {
		if !p.stopping {
			n++
		}
	}
	return n
}

func (r *poolRunner) publish() {
	running := r.running()
	r.s.update(r.spec.Name, func(st *PoolStatus) {
		st.Running, st.Stopping = running, len(r.procs)-running
	})
}

func (r *poolRunner) start() error {
	cmd := exec.Command(r.spec.Command[0], r.spec.Command[1:]...)
	var healthAddr string
	cmd.Env, healthAddr = r.s.childEnv(r.spec.Env)
	cmd.Stdout, cmd.Stderr = r.s.cfg.Stdout, r.s.cfg.Stderr
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, started: time.Now(), done: make(chan struct{})}
	r.procs = append(r.procs, p)
	r.s.track(r.spec.Name, p, healthAddr)
	r.log.Info("started worker process", "pid", cmd.Process.Pid)
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		r.exits <- p // run reads exits until every process is done
	}()
	return nil
}

func (r *poolRunner) stop(p *process) {
	p.stopping = true
	r.s.stopping(p)
	r.log.Info("stopping worker process", "pid", p.cmd.Process.Pid)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	go func() {
		select {
		case <-p.done:
		case <-time.After(r.s.cfg.StopGrace):
			_ = p.cmd.Process.Kill()
		}
	}()
}

// exited removes an exited process; one not told to stop crashed.
func (r *poolRunner) exited(p *process) {
	r.procs = slices.DeleteFunc(r.procs, func(q *process) bool { return q == p })
	r.s.untrack(p)
	if p.stopping {
		r.log.Info("worker process stopped", "pid", p.cmd.Process.Pid, "exit", exitText(p.err))
		r.publish()
		return
	}
	if time.Since(p.started) > 30*time.Second {
		r.crashes = 0 // it had been running well
	}
	r.crashed()
	r.log.Error("worker process exited unexpectedly; restarting", "pid", p.cmd.Process.Pid,
		"exit", exitText(p.err), "after", time.Until(r.restart).Round(time.Millisecond))
	r.s.update(r.spec.Name, func(st *PoolStatus) { st.Restarts++ })
}

// crashed sets when the pool may start a process again: the wait doubles
// with each crash in a row. Unlike a reconnect (internal/backoff), it has
// no jitter: one supervisor restarts its own children, so there is no
// fleet to spread, and an operator reads the waits in the logs.
func (r *poolRunner) crashed() {
	wait := r.s.cfg.RestartMin << min(r.crashes, 16)
	r.restart = time.Now().Add(min(wait, r.s.cfg.RestartMax))
	r.crashes++
}

// signalAll tells every process to stop.
func (r *poolRunner) signalAll() {
	for _, p := range r.procs {
		if !p.stopping {
			r.stop(p)
		}
	}
}

// waitAll waits until every process has exited.
func (r *poolRunner) waitAll() {
	for len(r.procs) > 0 {
		p := <-r.exits
		r.procs = slices.DeleteFunc(r.procs, func(q *process) bool { return q == p })
		r.s.untrack(p)
		r.log.Info("worker process stopped", "pid", p.cmd.Process.Pid, "exit", exitText(p.err))
	}
	r.publish()
}

func exitText(err error) string {
	if err == nil {
		return "0"
	}
	return err.Error()
}
