package autoscale_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warrenhq/warren/autoscale"
	"github.com/warrenhq/warren/internal/testenv"
)

// The test binary doubles as the worker processes the supervisor runs and,
// for the orphan test, as a supervisor of its own: TestMain looks at
// CHILD_MODE before running any test.
func TestMain(m *testing.M) {
	switch os.Getenv("CHILD_MODE") {
	case "worker":
		worker()
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		worker()
	case "crash":
		time.Sleep(50 * time.Millisecond)
		os.Exit(3)
	case "supervisor":
		superviseChild()
	}
	goleak.VerifyTestMain(m)
}

// worker records its pid in $PID_DIR while it runs and exits 0 on SIGTERM,
// like `warren worker` after draining.
func worker() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	path := filepath.Join(os.Getenv("PID_DIR"), strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		os.Exit(2)
	}
	<-sig
	_ = os.Remove(path)
	os.Exit(0)
}

// superviseChild runs a supervisor of two workers until it is killed.
func superviseChild() {
	s, err := autoscale.NewSupervisor(autoscale.SupervisorConfig{
		Pools:    []autoscale.PoolSpec{childPool("p", "worker", autoscale.Policy{Min: 2, Max: 2})},
		Observer: &observer{},
	})
	if err != nil {
		os.Exit(2)
	}
	_ = s.Run(context.Background())
	os.Exit(0)
}

func childPool(name, mode string, p autoscale.Policy) autoscale.PoolSpec {
	return autoscale.PoolSpec{
		Name:    name,
		Policy:  p,
		Command: []string{os.Args[0]},
		Env:     append(os.Environ(), "CHILD_MODE="+mode),
	}
}

// observer reports a backlog the test sets.
type observer struct {
	mu      sync.Mutex
	backlog map[string]int
	err     error
}

func (o *observer) set(pool string, backlog int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.backlog == nil {
		o.backlog = map[string]int{}
	}
	o.backlog[pool] = backlog
}

func (o *observer) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.err = err
}

func (o *observer) Observe(_ context.Context, pool string) (autoscale.Observation, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return autoscale.Observation{Backlog: o.backlog[pool]}, o.err
}

// pids lists the worker processes alive by their pid files.
func pids(t *testing.T, dir string) []int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err == nil {
			out = append(out, pid)
		}
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func status(s *autoscale.Supervisor, pool string) autoscale.PoolStatus {
	for _, st := range s.Status() {
		if st.Pool == pool {
			return st
		}
	}
	return autoscale.PoolStatus{}
}

// supervise starts s and returns a function that stops it and waits.
func supervise(t *testing.T, s *autoscale.Supervisor) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestSupervisorFollowsEachPoolsBacklog(t *testing.T) {
	busyDir, idleDir := t.TempDir(), t.TempDir()
	obs := &observer{}
	fast := autoscale.Policy{Min: 1, Max: 3, TargetBacklog: 10, Interval: 30 * time.Millisecond, ScaleDownWindow: -1}
	busy := childPool("busy", "worker", fast)
	busy.Env = append(busy.Env, "PID_DIR="+busyDir)
	idle := childPool("idle", "worker", fast)
	idle.Env = append(idle.Env, "PID_DIR="+idleDir)
	var reports sync.Map
	s, err := autoscale.NewSupervisor(autoscale.SupervisorConfig{
		Pools:    []autoscale.PoolSpec{busy, idle},
		Observer: obs,
		Reporter: reporterFunc(func(pool string, st autoscale.PoolStatus) { reports.Store(pool, st) }),
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := supervise(t, s)

	eventually(t, "each pool runs its minimum", func() bool {
		return len(pids(t, busyDir)) == 1 && len(pids(t, idleDir)) == 1
	})
	obs.set("busy", 30)
	eventually(t, "the busy pool runs three workers", func() bool { return len(pids(t, busyDir)) == 3 })
	if st := status(s, "busy"); st.Desired != 3 || !strings.Contains(st.Reason, "backlog 30") {
		t.Errorf("busy status = %+v, want desired 3 for a backlog of 30", st)
	}
	obs.set("busy", 1000)
	time.Sleep(10 * fast.Interval)
	if n := len(pids(t, busyDir)); n != 3 {
		t.Errorf("busy pool runs %d workers with a huge backlog, want its max 3", n)
	}
	if n := len(pids(t, idleDir)); n != 1 {
		t.Errorf("idle pool runs %d workers, want its min 1", n)
	}
	eventually(t, "a report of the busy pool at three running", func() bool {
		st, ok := reports.Load("busy")
		return ok && st.(autoscale.PoolStatus).Running == 3
	})
	// A report carries the policy and what the decision was made from.
	if v, _ := reports.Load("busy"); v.(autoscale.PoolStatus).Policy != fast.WithDefaults() || v.(autoscale.PoolStatus).Backlog == 0 {
		t.Errorf("report %+v, want the policy %+v and the backlog measured", v, fast.WithDefaults())
	}

	obs.set("busy", 0)
	eventually(t, "the busy pool is back at its min", func() bool { return len(pids(t, busyDir)) == 1 })
	eventually(t, "the stopped workers are waited for", func() bool {
		st := status(s, "busy")
		return st.Running == 1 && st.Stopping == 0
	})
	if st := status(s, "busy"); st.Restarts != 0 {
		t.Errorf("restarts = %d after a clean scale-down, want 0 (SIGTERMed workers are not crashes)", st.Restarts)
	}

	stop()
	if n := len(pids(t, busyDir)) + len(pids(t, idleDir)); n != 0 {
		t.Errorf("%d workers still running after Run returned", n)
	}
}

type reporterFunc func(pool string, st autoscale.PoolStatus)

func (f reporterFunc) Report(_ context.Context, pool string, st autoscale.PoolStatus) error {
	f(pool, st)
	return nil
}

func TestSupervisorScalesToAndFromZero(t *testing.T) {
	dir := t.TempDir()
	obs := &observer{}
	p := childPool("lazy", "worker", autoscale.Policy{Min: 0, Max: 2, TargetBacklog: 5, ActivationBacklog: 3,
		Interval: 30 * time.Millisecond, ScaleDownWindow: -1})
	p.Env = append(p.Env, "PID_DIR="+dir)
	s, err := autoscale.NewSupervisor(autoscale.SupervisorConfig{Pools: []autoscale.PoolSpec{p}, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	supervise(t, s)
	obs.set("lazy", 3) // not above the activation backlog
	time.Sleep(10 * 30 * time.Millisecond)
	if n := len(pids(t, dir)); n != 0 {
		t.Fatalf("%d workers for a backlog at the activation threshold, want 0", n)
	}
	obs.set("lazy", 4)
	eventually(t, "the pool activates", func() bool { return len(pids(t, dir)) == 1 })
	obs.set("lazy", 0)
	eventually(t, "the pool returns to zero", func() bool { return len(pids(t, dir)) == 0 })
}

func TestSupervisorKeepsSizeWhenItCannotMeasure(t *testing.T) {
	dir := t.TempDir()
	obs := &observer{}
	p := childPool("p", "worker", autoscale.Policy{Min: 1, Max: 3, TargetBacklog: 10,
		Interval: 30 * time.Millisecond, ScaleDownWindow: -1})
	p.Env = append(p.Env, "PID_DIR="+dir)
	s, err := autoscale.NewSupervisor(autoscale.SupervisorConfig{Pools: []autoscale.PoolSpec{p}, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	supervise(t, s)
	obs.set("p", 25)
	eventually(t, "three workers", func() bool { return len(pids(t, dir)) == 3 })
	obs.fail(errors.New("broker unreachable"))
	eventually(t, "the error is shown", func() bool { return status(s, "p").LastError == "broker unreachable" })
	time.Sleep(5 * 30 * time.Millisecond)
	if n := len(pids(t, dir)); n != 3 {
		t.Errorf("%d workers while the pool cannot be measured, want the 3 it had", n)
	}
}

func TestSupervisorRestartsCrashedWorkersWithBackoff(t *testing.T) {
	p := childPool("crashy", "crash", autoscale.Policy{Min: 1, Max: 1, Interval: time.Second})
	s, err := autoscale.NewSupervisor(autoscale.SupervisorConfig{
		Pools: []autoscale.PoolSpec{p}, Observer: &observer{},
		RestartMin: 100 * time.Millisecond, RestartMax: 400 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stop := supervise(t, s)
	eventually(t, "four restarts", func() bool { return status(s, "crashy").Restarts >= 4 })
	// The waits double up to the maximum: 100+200+400 ms between the four
	// runs, on top of the 50 ms each lasts.
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("four crashes took %s, want the backoff between them (at least 0.9s)", took)
	}
	stop()
	if st := status(s, "crashy"); st.Running != 0 || st.Stopping != 0 {
		t.Errorf("after Run: %+v, want nothing running", st)
	}
}

func TestSupervisorKillsWorkersThatDoNotDrain(t *testing.T) {
	dir := t.TempDir()
	p := childPool("stubborn", "stubborn", autoscale.Policy{Min: 1, Max: 1})
	p.Env = append(p.Env, "PID_DIR="+dir)
	s, err := autoscale.NewSupervisor(autoscale.SupervisorConfig{
		Pools: []autoscale.PoolSpec{p}, Observer: &observer{}, StopGrace: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := supervise(t, s)
	eventually(t, "the worker runs", func() bool { return len(pids(t, dir)) == 1 })
	pid := pids(t, dir)[0]
	stop()
	if testenv.Alive(pid) {
		t.Errorf("worker %d ignoring SIGTERM is still alive after Run returned", pid)
	}
}

func TestSupervisorKilledLeavesNoOrphans(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "CHILD_MODE=supervisor", "PID_DIR="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	eventually(t, "two workers run", func() bool { return len(pids(t, dir)) == 2 })
	workers := pids(t, dir)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	eventually(t, "the workers of the killed supervisor exit", func() bool {
		for _, pid := range workers {
			if testenv.Alive(pid) {
				return false
			}
		}
		return true
	})
	// They drained as on SIGTERM: each removed its pid file.
	if left := pids(t, dir); len(left) != 0 {
		t.Errorf("pid files left %v: the workers did not get SIGTERM", left)
	}
}

func TestNewSupervisorRejects(t *testing.T) {
	good := autoscale.PoolSpec{Name: "a", Command: []string{"true"}, Policy: autoscale.Policy{Min: 1}}
	for name, cfg := range map[string]autoscale.SupervisorConfig{
		"no observer":  {Pools: []autoscale.PoolSpec{good}},
		"no command":   {Observer: &observer{}, Pools: []autoscale.PoolSpec{{Name: "a", Policy: autoscale.Policy{Min: 1}}}},
		"repeated":     {Observer: &observer{}, Pools: []autoscale.PoolSpec{good, good}},
		"bad policy":   {Observer: &observer{}, Pools: []autoscale.PoolSpec{{Name: "a", Command: []string{"true"}, Policy: autoscale.Policy{Min: 2, Max: 1}}}},
		"unnamed pool": {Observer: &observer{}, Pools: []autoscale.PoolSpec{{Command: []string{"true"}}}},
	} {
		if _, err := autoscale.NewSupervisor(cfg); err == nil {
			t.Errorf("%s: NewSupervisor accepted it", name)
		}
	}
}
