// Package launch runs warren processes for the benchmarks: it starts the
// binary with extra environment, learns from its JSON log where it listens,
// and stops it the way an operator would (SIGTERM, then SIGKILL).
package launch

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a running warren process.
type Process struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	addrs map[string]string // log message → addr
	found chan struct{}
	done  chan struct{}
}

// Start runs `binary args…` with env added to this process's environment
// and waits until it has logged each message in want with an address (as
// "api listening" does). Its warnings and errors are copied to stderr.
func Start(ctx context.Context, binary string, env, want []string, args ...string) (*Process, error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	p := &Process{cmd: cmd, addrs: map[string]string{}, found: make(chan struct{}, 16), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line struct{ Msg, Addr, Level string }
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			if line.Addr != "" {
				p.mu.Lock()
				p.addrs[line.Msg] = line.Addr
				p.mu.Unlock()
				select {
				case p.found <- struct{}{}:
				default:
				}
			}
			if line.Level == "ERROR" || line.Level == "WARN" {
				fmt.Fprintf(os.Stderr, "  [warren %s] %s\n", args[0], sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
	}()
	deadline := time.After(30 * time.Second)
	for _, msg := range want {
		for p.Addr(msg) == "" {
			select {
			case <-p.found:
			case <-p.done:
				return nil, fmt.Errorf("warren %s exited before logging %q", strings.Join(args, " "), msg)
			case <-deadline:
				p.Stop()
				return nil, fmt.Errorf("warren %s did not log %q within 30s", strings.Join(args, " "), msg)
			case <-ctx.Done():
				p.Stop()
				return nil, ctx.Err()
			}
		}
	}
	return p, nil
}

// Addr is the address the process logged with msg, or "".
func (p *Process) Addr(msg string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[msg]
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM, waits for the process to drain and exit, and kills
// it after a minute.
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Profile saves the process's pprof profile kind (with query, such as
// "?seconds=5") to path; the process must serve them (debug_addr).
func (p *Process) Profile(ctx context.Context, kind, query, path string) error {
	addr := p.Addr("debug endpoints listening")
	if addr == "" {
		return errors.New("no debug endpoints")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/"+kind+query, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s", kind, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
