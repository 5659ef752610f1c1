package autoscale

import (
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Process is one of a supervisor's worker processes.
type Process struct {
	Pool string `json:"pool"`
	PID  int    `json:"pid"`
	// HealthAddr is where the process was told to serve its /metrics,
	// /healthz and /readyz ("unix:PATH"); "" when SupervisorConfig names no
	// SocketDir. A process that ignores the variable serves nothing there.
	HealthAddr string `json:"health_addr,omitempty"`
	// Stopping says it was told to stop and is draining.
	Stopping bool `json:"stopping,omitempty"`
}

// MaxSocketPath is the longest Unix socket path every platform accepts
// (sun_path is 104 bytes on macOS and the BSDs, 108 on Linux); a
// SocketDir must leave room for the socket names in it.
const MaxSocketPath = 103

// childEnv returns the environment of a new process of the pool and the
// health address it names.
func (s *Supervisor) childEnv(env []string) ([]string, string) {
	if s.cfg.SocketDir == "" || s.cfg.HealthAddrEnv == "" {
		return env, ""
	}
	s.mu.Lock()
	s.seq++
	n := s.seq
	s.mu.Unlock()
	addr := "unix:" + filepath.Join(s.cfg.SocketDir, strconv.Itoa(n)+".sock")
	if env == nil {
		env = os.Environ()
	}
	// The last of a name wins in exec.Cmd.Env.
	return append(slices.Clip(env), s.cfg.HealthAddrEnv+"="+addr), addr
}

// track records a started process for Processes.
func (s *Supervisor) track(pool string, p *process, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs[p] = Process{Pool: pool, PID: p.cmd.Process.Pid, HealthAddr: addr}
}

// stopping marks a tracked process as draining.
func (s *Supervisor) stopping(p *process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if info, ok := s.procs[p]; ok {
		info.Stopping = true
		s.procs[p] = info
	}
}

// untrack forgets an exited process and removes its socket, which a
// process killed before it could close its listener leaves behind.
func (s *Supervisor) untrack(p *process) {
	s.mu.Lock()
	info := s.procs[p]
	delete(s.procs, p)
	s.mu.Unlock()
	if path, ok := strings.CutPrefix(info.HealthAddr, "unix:"); ok {
		_ = os.Remove(path)
	}
}

// Processes returns the worker processes running now, by pool and pid.
func (s *Supervisor) Processes() []Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Process, 0, len(s.procs))
	for _, info := range s.procs {
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b Process) int { return cmp.Or(cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.PID, b.PID)) })
	return out
}
