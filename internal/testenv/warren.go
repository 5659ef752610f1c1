package testenv

// The warren program as end-to-end tests run it: built once by a package's
// TestMain, then started as real processes whose JSON log is read for the
// addresses they listen on and the messages they logged.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BuildAndRun is the body of a TestMain whose tests run programs built for
// them: it calls build with a fresh directory to build into (with
// BuildWarren, say), runs the tests unless build failed, removes the
// directory, and returns the exit code for os.Exit.
func BuildAndRun(m *testing.M, build func(dir string) error) int {
	dir, err := os.MkdirTemp("", "warren-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// BuildWarren builds the warren program into dir and returns its path; with
// race, under the race detector.
func BuildWarren(dir string, race bool) (string, error) {
	return Build(dir, "github.com/warrenhq/warren/cmd/warren", race)
}

// Build builds the main package pkg (an import path, or a directory
// relative to the test's) into dir, named for the package's last element,
// and returns its path; with race, under the race detector.
func Build(dir, pkg string, race bool) (string, error) {
	out := filepath.Join(dir, path.Base(pkg))
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	b, err := exec.Command("go", append(args, pkg)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// Proc is a running warren process. Each line it writes to stderr goes to
// the test's log; its JSON log lines are read for the addresses it listens
// on and the messages it logged. A data race the race detector reports in
// it fails the test.
type Proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{} // closed once it has exited and its log is read
	err    error         // what Wait returned, once exited

	mu    sync.Mutex
	out   strings.Builder   // every line it wrote to stderr
	addrs map[string]string // log message → addr
	msgs  map[string]int    // log message → times logged
	found chan struct{}     // a message with an addr was logged
}

// StartWarren runs `binary args…` with env added to this process's
// environment (env wins). When the test ends it must exit 0 on SIGTERM,
// unless it has exited already (the test killed it or saw it exit).
func StartWarren(t testing.TB, binary string, env []string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc{cmd: cmd, exited: make(chan struct{}), addrs: map[string]string{}, msgs: map[string]int{}, found: make(chan struct{}, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.name = fmt.Sprintf("%s pid %d", strings.Join(args, " "), cmd.Process.Pid)
	// Owned by the process: it ends when the process's stderr closes, and
	// the cleanup below waits for it (through exited).
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.read(t, sc.Bytes())
		}
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.Stop(t) })
	return p
}

// read takes in one line of the process's stderr.
func (p *Proc) read(t testing.TB, text []byte) {
	t.Logf("[%s] %s", p.name, text)
	if bytes.Contains(text, []byte("WARNING: DATA RACE")) {
		t.Errorf("[%s] the race detector found a data race; see the log above", p.name)
	}
	var line struct{ Msg, Addr string }
	isJSON := json.Unmarshal(text, &line) == nil
	p.mu.Lock()
	defer p.mu.Unlock()
	p.out.Write(text)
	p.out.WriteByte('\n')
	if !isJSON {
		return
	}
	p.msgs[line.Msg]++
	if line.Addr != "" {
		p.addrs[line.Msg] = line.Addr
		select {
		case p.found <- struct{}{}:
		default:
		}
	}
}

// Name is the process's command line and pid, as its log lines show it.
func (p *Proc) Name() string { return p.name }

// Pid is the process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Addr waits up to a minute for the process to log msg with an address
// ("api listening", say) and returns the address.
func (p *Proc) Addr(t testing.TB, msg string) string {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		p.mu.Lock()
		a := p.addrs[msg]
		p.mu.Unlock()
		if a != "" {
			return a
		}
		select {
		case <-p.found:
		case <-p.exited:
			t.Fatalf("[%s] exited before logging %q: %v", p.name, msg, p.err)
		case <-deadline:
			t.Fatalf("[%s] did not log %q within a minute", p.name, msg)
		}
	}
}

// Logged returns how often the process has logged msg.
func (p *Proc) Logged(msg string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.msgs[msg]
}

// Output is what the process has written to stderr.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Signal sends sig to the process and returns at once; an error means it
// had exited already.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill kills the process with SIGKILL, as a crash would, and waits for it
// to exit; it fails the test if the process had exited already.
func (p *Proc) Kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill -9 %s: %v", p.name, err)
	}
	<-p.exited
}

// Stop sends SIGTERM and requires a clean exit within 30 seconds; a process
// that already exited is left as it is.
func (p *Proc) Stop(t testing.TB) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("[%s] exited with %v after SIGTERM, want status 0", p.name, p.err)
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("[%s] did not stop within 30s of SIGTERM", p.name)
	}
}

// Wait waits up to timeout for the process to exit and returns what it
// exited with; it fails the test if the process still runs then.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("[%s] still runs after %s", p.name, timeout)
		return nil
	}
}
