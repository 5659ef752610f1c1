package testenv

// Private servers for outage tests: a RabbitMQ node or a Redis of one test's
// own, which the test may stop, kill and start again while the rest of the
// suite goes on using the shared servers.

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Bounds on the waits for a private server.
const (
	serverBootTimeout = 60 * time.Second // until a started server answers
	serverStopTimeout = 60 * time.Second // until a stopped server has exited
	serverGoneTimeout = 10 * time.Second // until a dead server's port and epmd name are released
)

// ---------------------------------------------------------------------------
// RabbitMQ

// ServerOptions are what a private server has beyond the defaults.
type ServerOptions struct {
	// TLS, when set, makes the server speak TLS only: it shows the
	// server certificate of TLS and requires a client certificate signed
	// by its CA. URL then gives an amqps:// or rediss:// URL.
	TLS *Certs
	// Management enables RabbitMQ's management API on a port of its own
	// (ManagementURL), over HTTPS with TLS's certificates (a client
	// certificate required) when TLS is set. It makes a graceful Stop five
	// seconds slower. RabbitMQ only.
	Management bool
}

// RabbitMQ is a private RabbitMQ node for one test: its own node name, ports
// and data directory, on loopback. The test may Stop, Kill and Start it; the
// data directory outlives those, so durable queues and persistent messages
// come back. The node has no plugins unless asked for (the management API
// adds five seconds to every graceful stop). Its methods take turns, but
// they fail the test with t.Fatalf, so call them from the test's goroutine.
type RabbitMQ struct {
	node     string // warren-test-…@localhost
	port     int    // AMQP, or AMQP over TLS alone with opts.TLS
	distPort int    // Erlang distribution
	mgmtPort int    // management API, with opts.Management
	opts     ServerOptions
	dir      string // config, data, logs; owned by the user the node runs as
	bin      string
	env      []string
	cred     *syscall.Credential // nil: run as ourselves

	mu   sync.Mutex
	proc *serverProc // nil while stopped
}

// StartRabbitMQ starts a private RabbitMQ node and returns once an AMQP login
// to it works. When the test ends the node is killed and its data deleted.
// Under -short the test is skipped. Options, if given, are opts[0].
func StartRabbitMQ(t testing.TB, opts ...ServerOptions) *RabbitMQ {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a private RabbitMQ node; skipped under -short")
	}
	// The Debian package's /usr/sbin/rabbitmq-server is a wrapper that
	// re-runs this script through su, which would put a process between
	// us and the node; run the script itself, as the rabbitmq user.
	bin := "/usr/lib/rabbitmq/bin/rabbitmq-server"
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("rabbitmq-server"); err != nil {
			t.Fatalf("private RabbitMQ: rabbitmq-server is not installed (apt-get install rabbitmq-server): %v", err)
		}
	}
	r := &RabbitMQ{
		node:     "warren-test-" + randomHex(4) + "@localhost",
		port:     freePort(t),
		distPort: freePort(t),
		bin:      bin,
	}
	if len(opts) > 0 {
		r.opts = opts[0]
	}
	if r.opts.Management {
		r.mgmtPort = freePort(t)
	}
	home := os.Getenv("HOME")
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		// As root the node runs as rabbitmq, like the shared one, with its
		// home (and Erlang cookie) in /var/lib/rabbitmq.
		u, err := user.Lookup("rabbitmq")
		if err != nil {
			t.Fatalf("private RabbitMQ: running as root, but there is no rabbitmq user to run the node as: %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		home = u.HomeDir
		r.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}

	dir, err := os.MkdirTemp("", "warren-rabbitmq-")
	if err != nil {
		t.Fatalf("private RabbitMQ: create data directory: %v", err)
	}
	r.dir = dir
	t.Cleanup(func() { r.cleanup(t) })

	conf := "loopback_users.guest = true\nlog.console = false\nlog.file.level = info\n"
	plugins := "[].\n"
	files := map[string]string{}
	if c := r.opts.TLS; c != nil {
		// Copies the node can read, as whatever user it runs as.
		files["ca.pem"], files["server.pem"], files["server.key"] = readFile(t, c.CAFile), readFile(t, c.ServerCertFile), readFile(t, c.ServerKeyFile)
		conf += "listeners.tcp = none\n" + fmt.Sprintf("listeners.ssl.default = 127.0.0.1:%d\n", r.port) +
			sslOptions(dir, "ssl_options")
	} else {
		conf += fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\n", r.port)
	}
	if r.opts.Management {
		plugins = "[rabbitmq_management].\n"
		if r.opts.TLS != nil {
			conf += fmt.Sprintf("management.ssl.ip = 127.0.0.1\nmanagement.ssl.port = %d\n", r.mgmtPort) +
				sslOptions(dir, "management.ssl")
		} else {
			conf += fmt.Sprintf("management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %d\n", r.mgmtPort)
		}
	}
	files["rabbitmq.conf"] = conf
	files["enabled_plugins"] = plugins
	files["rabbitmq-env.conf"] = "" // instead of /etc/rabbitmq/rabbitmq-env.conf, which is the shared node's
	for name, body := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			t.Fatalf("private RabbitMQ: write %s: %v", name, err)
		}
	}
	for _, sub := range []string{"mnesia", "log"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatalf("private RabbitMQ: create %s directory: %v", sub, err)
		}
	}
	if r.cred != nil {
		err := filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, uid, gid)
		})
		if err != nil {
			t.Fatalf("private RabbitMQ: hand %s to the rabbitmq user: %v", dir, err)
		}
	}

	r.env = append(cleanEnv("RABBITMQ_", "ERL_", "HOME="),
		"HOME="+home,
		// epmd is shared with the shared node: keep it, and our
		// distribution listener, on loopback.
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		"RABBITMQ_NODENAME="+r.node,
		"RABBITMQ_DIST_PORT="+strconv.Itoa(r.distPort),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "rabbitmq.pid"),
	)
	if r.opts.TLS == nil {
		// The node's port for AMQP in clear text (with TLS the config
		// file names the TLS listener, and there is none in clear).
		r.env = append(r.env, "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1", "RABBITMQ_NODE_PORT="+strconv.Itoa(r.port))
	}
	r.Start(t)
	return r
}

// sslOptions are the TLS settings of a RabbitMQ listener, under prefix
// (ssl_options, management.ssl), for the certificates copied into dir: a
// client certificate signed by the CA is required.
func sslOptions(dir, prefix string) string {
	var b strings.Builder
	for _, kv := range [][2]string{
		{"cacertfile", filepath.Join(dir, "ca.pem")},
		{"certfile", filepath.Join(dir, "server.pem")},
		{"keyfile", filepath.Join(dir, "server.key")},
		{"verify", "verify_peer"},
		{"fail_if_no_peer_cert", "true"},
	} {
		fmt.Fprintf(&b, "%s.%s = %s\n", prefix, kv[0], kv[1])
	}
	return b.String()
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// URL is the node's AMQP URL, amqp://guest:guest@127.0.0.1:PORT/, or
// amqps:// with ServerOptions.TLS.
func (r *RabbitMQ) URL() string {
	scheme := "amqp"
	if r.opts.TLS != nil {
		scheme = "amqps"
	}
	return fmt.Sprintf("%s://guest:guest@127.0.0.1:%d/", scheme, r.port)
}

// ManagementURL is the node's management API, http://127.0.0.1:PORT, or
// https:// with ServerOptions.TLS; "" without ServerOptions.Management.
func (r *RabbitMQ) ManagementURL() string {
	switch {
	case !r.opts.Management:
		return ""
	case r.opts.TLS != nil:
		return fmt.Sprintf("https://127.0.0.1:%d", r.mgmtPort)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", r.mgmtPort)
}

// dialConfig is how the harness logs in to see that the node answers: as a
// client of the node's CA, with its client certificate, under TLS.
func (r *RabbitMQ) dialConfig(t testing.TB) amqp.Config {
	cfg := amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)}
	if r.opts.TLS != nil {
		cfg.TLSClientConfig = r.opts.TLS.ClientTLS(t)
	}
	return cfg
}

// Node is the node's Erlang name, for rabbitmqctl -n.
func (r *RabbitMQ) Node() string { return r.node }

// Start starts the node again on the same ports and data directory and
// returns once an AMQP login works. The node must be stopped.
func (r *RabbitMQ) Start(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		t.Fatalf("private RabbitMQ %s: Start while it runs", r.node)
	}
	// A node killed a moment ago may still be registered with epmd, and a
	// node of the same name would then refuse to start.
	if err := waitFor(serverGoneTimeout, func() bool { return !epmdHas(r.node) }); err != nil {
		t.Fatalf("private RabbitMQ %s: epmd still lists the node's name %s after it stopped", r.node, serverGoneTimeout)
	}
	cmd := exec.Command(r.bin)
	cmd.Dir = r.dir
	cmd.Env = r.env
	if r.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred}
	}
	// The script runs the VM in the background and waits for it: SIGTERM
	// to the script, or to the VM, stops the node gracefully, and the
	// script exits when the VM does.
	proc, err := startProc(cmd, filepath.Join(r.dir, "console.log"))
	if err != nil {
		t.Fatalf("private RabbitMQ %s: %v", r.node, err)
	}
	r.proc = proc
	start := time.Now()
	for {
		conn, err := amqp.DialConfig(r.URL(), r.dialConfig(t))
		if err == nil {
			_ = conn.Close()
			// The management API starts with the node's plugins, after
			// the AMQP listener may already answer.
			if r.mgmtPort == 0 || listening(r.mgmtPort) {
				break
			}
			err = fmt.Errorf("AMQP answers, the management API on port %d not yet", r.mgmtPort)
		}
		select {
		case <-proc.done:
			r.proc = nil
			// The script exits 0 whatever the VM did; the log says why.
			t.Fatalf("private RabbitMQ %s exited while starting%s", r.node, r.logTail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(start) > serverBootTimeout {
			r.killLocked()
			t.Fatalf("private RabbitMQ %s did not answer on port %d within %s (last error: %v)%s",
				r.node, r.port, serverBootTimeout, err, r.logTail())
		}
	}
	t.Logf("private RabbitMQ %s answers at %s (started in %s)", r.node, r.URL(), time.Since(start).Round(time.Millisecond))
}

// Stop stops the node gracefully, as a shutdown of the host would, and
// returns once it has exited and its port is closed.
func (r *RabbitMQ) Stop(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		t.Fatalf("private RabbitMQ %s: Stop while it is stopped", r.node)
	}
	// The VM handles SIGTERM as `rabbitmqctl stop` does, without the
	// second or two the CLI takes to start.
	pid, err := r.beamPID()
	if err != nil {
		t.Fatalf("private RabbitMQ %s: %v", r.node, err)
	}
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("private RabbitMQ %s: SIGTERM to pid %d: %v", r.node, pid, err)
	}
	select {
	case <-r.proc.done:
	case <-time.After(serverStopTimeout):
		r.killLocked()
		t.Fatalf("private RabbitMQ %s did not stop within %s of SIGTERM; killed it%s", r.node, serverStopTimeout, r.logTail())
	}
	r.proc = nil
	r.waitClosed(t)
	t.Logf("private RabbitMQ %s stopped (in %s)", r.node, time.Since(start).Round(time.Millisecond))
}

// Kill kills the node's VM with SIGKILL, as a crash would, and returns once
// it has exited and its port is closed.
func (r *RabbitMQ) Kill(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		t.Fatalf("private RabbitMQ %s: Kill while it is stopped", r.node)
	}
	start := time.Now()
	if err := r.killLocked(); err != nil {
		t.Fatalf("private RabbitMQ %s: %v", r.node, err)
	}
	r.waitClosed(t)
	t.Logf("private RabbitMQ %s killed (in %s)", r.node, time.Since(start).Round(time.Millisecond))
}

// killLocked kills the VM and its helper processes (erl_child_setup,
// inet_gethost), then the script, and waits for the script to exit.
func (r *RabbitMQ) killLocked() error {
	if r.proc == nil {
		return nil
	}
	var errs []error
	if pid, err := r.beamPID(); err != nil {
		errs = append(errs, err)
	} else {
		// Find the helpers first: once the VM is dead they belong to init.
		pids := append([]int{pid}, descendants(pid)...)
		for _, p := range pids {
			if err := syscall.Kill(p, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("SIGKILL to pid %d: %w", p, err))
			}
		}
	}
	// Without a VM the script exits by itself; kill it in case there was
	// none to find.
	select {
	case <-r.proc.done:
	case <-time.After(5 * time.Second):
		_ = r.proc.cmd.Process.Kill()
		<-r.proc.done
	}
	r.proc = nil
	return errors.Join(errs...)
}

// beamPID finds the node's Erlang VM: the pid file it writes at boot, checked
// against the node name in the process's environment, else a search of /proc.
func (r *RabbitMQ) beamPID() (int, error) {
	isOurs := func(pid int) bool {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) != "beam.smp" {
			return false
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		return bytes.Contains(env, []byte("\x00RABBITMQ_NODENAME="+r.node+"\x00"))
	}
	if b, err := os.ReadFile(filepath.Join(r.dir, "rabbitmq.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && isOurs(pid) {
			return pid, nil
		}
	}
	for _, pid := range procPIDs() {
		if isOurs(pid) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no beam.smp process of node %s", r.node)
}

// waitClosed waits until nothing listens on the node's ports and epmd has
// forgotten its name.
func (r *RabbitMQ) waitClosed(t testing.TB) {
	t.Helper()
	err := waitFor(serverGoneTimeout, func() bool {
		return !listening(r.port) && !listening(r.distPort) && (r.mgmtPort == 0 || !listening(r.mgmtPort)) && !epmdHas(r.node)
	})
	if err != nil {
		t.Fatalf("private RabbitMQ %s: its ports %d, %d or its epmd name were still taken %s after it exited",
			r.node, r.port, r.distPort, serverGoneTimeout)
	}
}

// cleanup kills the node if it runs and deletes its directory.
func (r *RabbitMQ) cleanup(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.killLocked(); err != nil {
		t.Errorf("cleanup of private RabbitMQ %s: %v", r.node, err)
	}
	releasePort(r.port)
	releasePort(r.distPort)
	if r.mgmtPort != 0 {
		releasePort(r.mgmtPort)
	}
	if err := os.RemoveAll(r.dir); err != nil {
		t.Errorf("cleanup of private RabbitMQ %s: %v", r.node, err)
	}
}

// logTail returns the end of the node's log and console output, to explain
// a failure.
func (r *RabbitMQ) logTail() string {
	return tail(filepath.Join(r.dir, "log", r.node+".log"), 30) +
		tail(filepath.Join(r.dir, "console.log"), 15)
}

// ---------------------------------------------------------------------------
// Redis

// Redis is a private redis-server for one test, on loopback, with an
// append-only file written through on every command (appendfsync always), so
// what a client was told is stored survives Stop, Kill and Start. Its methods
// take turns, but fail the test with t.Fatalf: call them from the test's
// goroutine.
type Redis struct {
	port int // clear text, or TLS alone with ServerOptions.TLS
	dir  string
	bin  string
	tls  *Certs
	// conf is a config file redis-server reads first ("" for none), and
	// args are arguments given after the defaults (sentinel.go: a
	// replica's --replicaof, a Sentinel's --sentinel, a cluster node's).
	conf string
	args []string

	mu   sync.Mutex
	proc *serverProc // nil while stopped
}

// StartRedis starts a private redis-server and returns once it answers PING.
// When the test ends it is killed and its data deleted. Under -short the
// test is skipped. Options, if given, are opts[0]; Management means nothing
// here.
func StartRedis(t testing.TB, opts ...ServerOptions) *Redis {
	t.Helper()
	r := newRedis(t)
	if len(opts) > 0 {
		r.tls = opts[0].TLS
	}
	r.Start(t)
	return r
}

// newRedis returns a private redis-server, not started yet, that is killed
// and deleted when the test ends. Under -short the test is skipped; without
// redis-server it fails.
func newRedis(t testing.TB) *Redis {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a private Redis; skipped under -short")
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("private Redis: redis-server is not installed (apt-get install redis-server): %v", err)
	}
	r := &Redis{port: freePort(t), dir: t.TempDir(), bin: bin}
	t.Cleanup(func() { r.cleanup(t) })
	return r
}

// URL is the server's URL, redis://127.0.0.1:PORT/0, or rediss:// with
// ServerOptions.TLS.
func (r *Redis) URL() string {
	if r.tls != nil {
		return fmt.Sprintf("rediss://127.0.0.1:%d/0", r.port)
	}
	return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port)
}

// Start starts the server again on the same port and data directory and
// returns once it answers PING (after loading its data). The server must be
// stopped.
func (r *Redis) Start(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		t.Fatalf("private Redis on port %d: Start while it runs", r.port)
	}
	ports := []string{"--port", strconv.Itoa(r.port)}
	if c := r.tls; c != nil {
		ports = []string{
			"--port", "0", "--tls-port", strconv.Itoa(r.port),
			"--tls-cert-file", c.ServerCertFile, "--tls-key-file", c.ServerKeyFile,
			"--tls-ca-cert-file", c.CAFile, "--tls-auth-clients", "yes",
		}
	}
	if r.conf != "" {
		ports = append([]string{r.conf}, ports...)
	}
	cmd := exec.Command(r.bin, append(append(ports,
		"--bind", "127.0.0.1",
		"--protected-mode", "yes",
		"--dir", r.dir,
		"--appendonly", "yes",
		"--appendfsync", "always",
		"--save", "",
		"--daemonize", "no",
		"--logfile", "",
	), r.args...)...)
	cmd.Dir = r.dir
	proc, err := startProc(cmd, filepath.Join(r.dir, "redis.log"))
	if err != nil {
		t.Fatalf("private Redis on port %d: %v", r.port, err)
	}
	r.proc = proc
	start := time.Now()
	for {
		reply, err := r.command("PING")
		if err == nil && reply == "+PONG" {
			break
		}
		if err == nil {
			err = fmt.Errorf("PING answered %q", reply) // -LOADING while it reads its data
		}
		select {
		case <-proc.done:
			r.proc = nil
			t.Fatalf("private Redis on port %d exited while starting (%v)%s", r.port, cmp.Or(proc.err, errors.New("exit status 0")), r.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(start) > serverBootTimeout {
			r.killLocked()
			t.Fatalf("private Redis on port %d did not answer within %s (last error: %v)%s", r.port, serverBootTimeout, err, r.logTail())
		}
	}
}

// Stop shuts the server down with SHUTDOWN SAVE and returns once it has
// exited and its port is closed.
func (r *Redis) Stop(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		t.Fatalf("private Redis on port %d: Stop while it is stopped", r.port)
	}
	// A successful SHUTDOWN closes the connection without a reply.
	if reply, err := r.command("SHUTDOWN", "SAVE"); err == nil {
		r.killLocked()
		t.Fatalf("private Redis on port %d: SHUTDOWN SAVE answered %q", r.port, reply)
	}
	select {
	case <-r.proc.done:
	case <-time.After(serverStopTimeout):
		r.killLocked()
		t.Fatalf("private Redis on port %d did not exit within %s of SHUTDOWN; killed it%s", r.port, serverStopTimeout, r.logTail())
	}
	if err := r.proc.err; err != nil {
		t.Errorf("private Redis on port %d: after SHUTDOWN: %v%s", r.port, err, r.logTail())
	}
	r.proc = nil
	r.waitClosed(t)
}

// Freeze stops the server's process with SIGSTOP, as a hung machine would:
// it keeps its connections and answers nothing, until the returned func
// continues it (the test's end does too).
func (r *Redis) Freeze(t testing.TB) (thaw func()) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		t.Fatalf("private Redis on port %d: Freeze while it is stopped", r.port)
	}
	p := r.proc.cmd.Process
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("private Redis on port %d: SIGSTOP: %v", r.port, err)
	}
	var once sync.Once
	thaw = func() { once.Do(func() { _ = p.Signal(syscall.SIGCONT) }) }
	t.Cleanup(thaw)
	return thaw
}

// Kill kills the server with SIGKILL, as a crash would, and returns once it
// has exited and its port is closed.
func (r *Redis) Kill(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		t.Fatalf("private Redis on port %d: Kill while it is stopped", r.port)
	}
	r.killLocked()
	r.waitClosed(t)
}

func (r *Redis) killLocked() {
	if r.proc == nil {
		return
	}
	_ = r.proc.cmd.Process.Kill()
	<-r.proc.done
	r.proc = nil
}

func (r *Redis) waitClosed(t testing.TB) {
	t.Helper()
	if err := waitFor(serverGoneTimeout, func() bool { return !listening(r.port) }); err != nil {
		t.Fatalf("private Redis: port %d still open %s after the server exited", r.port, serverGoneTimeout)
	}
}

func (r *Redis) cleanup(t testing.TB) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.killLocked()
	releasePort(r.port)
	// t.TempDir removes the data.
}

func (r *Redis) logTail() string { return tail(filepath.Join(r.dir, "redis.log"), 20) }

// command sends one command and reads the first line of the reply.
func (r *Redis) command(args ...string) (string, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
	dialer := &net.Dialer{Timeout: time.Second}
	var conn net.Conn
	var err error
	if r.tls != nil {
		cfg, cerr := r.tls.clientConfig()
		if cerr != nil {
			return "", cerr
		}
		conn, err = tls.DialWithDialer(dialer, "tcp", addr, cfg)
	} else {
		conn, err = dialer.Dial("tcp", addr)
	}
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// ---------------------------------------------------------------------------
// Processes and ports

// serverProc is a server process we started; done closes when it has exited
// and err is what Wait returned.
type serverProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProc starts cmd with its output appended to logPath, and a goroutine
// that waits for it to exit.
func startProc(cmd *exec.Cmd, logPath string) (*serverProc, error) {
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", logPath, err)
	}
	defer out.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &serverProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Private servers take ports below Linux's ephemeral range (32768–60999), so
// that no outgoing connection (clients reconnecting while a server is down,
// say) can take a stopped server's port before it starts again. The range
// leaves out the shared node's distribution port.
const (
	portLow  = 20000
	portHigh = 32767
)

// portsInUse are the ports this process has handed to private servers; a
// stopped server's port is free but still taken.
var portsInUse = struct {
	sync.Mutex
	m map[int]bool
}{m: map[int]bool{}}

// freePort returns a loopback port that nothing listens on and no other
// private server of this process holds. Another process may still take it
// before the server binds it; that race is accepted.
func freePort(t testing.TB) int {
	t.Helper()
	portsInUse.Lock()
	defer portsInUse.Unlock()
	for range 1000 {
		n, err := rand.Int(rand.Reader, big.NewInt(portHigh-portLow+1))
		if err != nil {
			t.Fatalf("pick a port: %v", err)
		}
		port := portLow + int(n.Int64())
		if port == 25672 || portsInUse.m[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		_ = l.Close()
		portsInUse.m[port] = true
		return port
	}
	t.Fatalf("found no free port in %d-%d", portLow, portHigh)
	return 0
}

func releasePort(port int) {
	portsInUse.Lock()
	delete(portsInUse.m, port)
	portsInUse.Unlock()
}

// listening reports whether something accepts connections on the port.
func listening(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// epmdHas reports whether the local epmd lists an Erlang node of that name
// ("name@host"). When epmd does not answer it lists nothing.
func epmdHas(node string) bool {
	name, _, _ := strings.Cut(node, "@")
	c, err := net.DialTimeout("tcp", "127.0.0.1:4369", time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// NAMES_REQ: a two-byte length, then 110. The reply is epmd's port
	// (four bytes), then a line "name N at port P" per node.
	if _, err := c.Write([]byte{0, 1, 110}); err != nil {
		return false
	}
	b, err := io.ReadAll(c)
	if err != nil || len(b) < 4 {
		return false
	}
	for line := range strings.Lines(string(b[4:])) {
		if strings.HasPrefix(line, "name "+name+" at port ") {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// procPIDs lists the processes in /proc.
func procPIDs() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// descendants returns the processes below pid, children before their own.
func descendants(pid int) []int {
	children := map[int][]int{}
	for _, p := range procPIDs() {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid …"; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(fields[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	queue := children[pid]
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, p)
		queue = append(queue, children[p]...)
	}
	return out
}

// cleanEnv returns this process's environment without the variables that
// start with any of the prefixes.
func cleanEnv(prefixes ...string) []string {
	var env []string
next:
	for _, kv := range os.Environ() {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		env = append(env, kv)
	}
	return env
}

// tail returns the last n lines of a file, introduced by its name, or "" if
// it cannot be read.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\n--- last lines of " + path + ":\n" + strings.Join(lines, "\n")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
