package main_test

// Transport security end to end: warren's real processes against a private
// RabbitMQ that speaks amqps:// alone and a private Redis that speaks
// rediss:// alone, both requiring a client certificate, with an API that
// serves HTTPS; every certificate made by the test. These tests live here,
// beside the other end-to-end tests, because what they check is the program
// as deployed: settings read from the environment and files, handed to
// every connection each process makes, and what its logs and errors show.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
)

// logged is a warren process whose whole standard error the test reads.
type logged struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (l *logged) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.out.Write(p)
}

func (l *logged) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.out.String()
}

// runLogged starts `warren args…` with env added to the test's environment
// (WARREN_* variables of the test process are left out, so only env
// speaks); it is stopped with SIGTERM when the test ends.
func runLogged(t *testing.T, env []string, args ...string) *logged {
	t.Helper()
	return runProgram(t, env, binary, args...)
}

// runProgram is runLogged for another program, such as a worker service.
func runProgram(t *testing.T, env []string, program string, args ...string) *logged {
	t.Helper()
	cmd := exec.Command(program, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WARREN_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	l := &logged{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = l, l
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { l.err = cmd.Wait(); close(l.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-l.done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-l.done
		}
		t.Logf("[%s]\n%s", strings.Join(append([]string{filepath.Base(program)}, args...), " "), l.String())
	})
	return l
}

// waitLog waits until the process has written s, and fails the test if it
// exits first.
func (l *logged) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(l.String(), s) {
		select {
		case <-l.done:
			t.Fatalf("%s exited (%v) before writing %q:\n%s", l.cmd.Path, l.err, s, l.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not write %q within 30s:\n%s", l.cmd.Path, s, l.String())
		}
	}
}

// addr returns the address of the first JSON log line with message msg.
func (l *logged) addr(t *testing.T, msg string) string {
	t.Helper()
	l.waitLog(t, `"msg":"`+msg+`"`)
	for _, line := range strings.Split(l.String(), "\n") {
		var v struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &v) == nil && v.Msg == msg && v.Addr != "" {
			return v.Addr
		}
	}
	t.Fatalf("no address in the %q line", msg)
	return ""
}

// cli runs a client command with env (and none of the caller's WARREN_*
// variables) and returns its output and status.
func cli(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return cliIn(t, env, "", args...)
}

// cliIn is cli with stdin.
func cliIn(t *testing.T, env []string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WARREN_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

func writeSecret(t *testing.T, dir, name, value string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// A job submitted to an https API, published over amqps://, recorded over
// rediss:// and run by a worker that connects over TLS too, succeeds; the
// URLs come from files (WARREN_*_URL_FILE). A wrong CA or server name
// fails, saying so, without a password.
func TestTLSEverywhere(t *testing.T) {
	t.Parallel()
	certs := testenv.NewCerts(t)
	rmq := testenv.StartRabbitMQ(t, testenv.ServerOptions{TLS: certs, Management: true})
	rds := testenv.StartRedis(t, testenv.ServerOptions{TLS: certs})
	secrets := t.TempDir()

	// What every server process is given: the broker and Redis over TLS
	// with the test's CA and client certificate, the URLs in files.
	tlsEnv := func(prefix string) []string {
		return []string{
			prefix + "CA_FILE=" + certs.CAFile,
			prefix + "CERT_FILE=" + certs.ClientCertFile,
			prefix + "KEY_FILE=" + certs.ClientKeyFile,
			// The certificates name localhost; the URLs have 127.0.0.1.
			prefix + "SERVER_NAME=localhost",
		}
	}
	server := append(append([]string{
		"WARREN_NAMESPACE=tls",
		"WARREN_LOG_LEVEL=info",
		"WARREN_SHUTDOWN_GRACE=5s",
		"WARREN_AMQP_URL_FILE=" + writeSecret(t, secrets, "amqp_url", rmq.URL()),
		"WARREN_REDIS_URL_FILE=" + writeSecret(t, secrets, "redis_url", rds.URL()),
		"WARREN_MANAGEMENT_URL=" + rmq.ManagementURL(),
	}, tlsEnv("WARREN_AMQP_TLS_")...), tlsEnv("WARREN_REDIS_TLS_")...)

	worker := runLogged(t, server, "worker", "sys", "--health-addr", "127.0.0.1:0")
	health := "http://" + worker.addr(t, "health endpoints listening")
	testenv.Eventually(t, 30*time.Second, "the worker to be ready", func() bool {
		resp, err := http.Get(health + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	api := runLogged(t, append(server,
		"WARREN_API_TLS_CERT="+certs.ServerCertFile,
		"WARREN_API_TLS_KEY="+certs.ServerKeyFile,
	), "api", "--addr", "127.0.0.1:0")
	apiURL := "https://" + api.addr(t, "api listening")

	clientTLS := certs.ClientTLS(t)
	clientTLS.Certificates = nil
	c, err := client.New(client.Config{BaseURL: apiURL, TLS: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the API to be ready", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Queues(ctx)
		return err == nil
	})

	clientEnv := []string{"WARREN_API_URL=" + apiURL, "WARREN_API_CA_FILE=" + certs.CAFile}
	t.Run("a job runs", func(t *testing.T) {
		out, errOut, code := cli(t, clientEnv, "enqueue", "sys.echo", `{"over":"tls"}`, "--wait")
		if code != 0 || compact(t, out) != `{"over":"tls"}` {
			t.Fatalf("enqueue --wait over https: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		// The management API, over https with the client certificate,
		// counts the queue (its figures come within seconds).
		testenv.Eventually(t, 30*time.Second, "the management API to measure the sys queue", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			qs, err := c.Queues(ctx)
			for _, q := range qs {
				if q.Pool == "sys" && q.Source == "management" {
					return true
				}
			}
			_ = err
			return false
		})
	})

	// Worker services that are not warren's own, given the settings
	// warren's processes are given, reach both servers over TLS too.
	python, err := filepath.Abs("../../workers/python/wordcount.py")
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range []struct {
		name, ready, typ, want string
		command                []string
	}{
		{"the Python worker", "pool text consuming", "text.wordcount", `{"words":2,"lines":1,"chars":8}`,
			[]string{"/usr/bin/python3", python}},
		{"examples/upper", `"msg":"pool consuming"`, "text.upper", `{"text":"OVER TLS"}`, []string{exampleBinary}},
	} {
		t.Run(svc.name+" runs a job", func(t *testing.T) {
			p := runProgram(t, server, svc.command[0], svc.command[1:]...)
			p.waitLog(t, svc.ready)
			out, errOut, code := cli(t, clientEnv, "enqueue", svc.typ, `{"text":"over tls"}`, "--wait")
			if code != 0 || compact(t, out) != svc.want {
				t.Fatalf("enqueue %s --wait: exit %d, stdout %q, stderr %q; want %s", svc.typ, code, out, errOut, svc.want)
			}
		})
	}

	t.Run("the CLI needs the CA", func(t *testing.T) {
		_, errOut, code := cli(t, []string{"WARREN_API_URL=" + apiURL}, "queues")
		if code != 1 || !strings.Contains(errOut, "certificate signed by unknown authority") || !strings.Contains(errOut, "api_ca_file") {
			t.Errorf("queues without api_ca_file: exit %d, stderr %q; want the unknown authority and a word on api_ca_file", code, errOut)
		}
		_, errOut, code = cli(t, []string{"WARREN_API_URL=" + strings.Replace(apiURL, "https", "http", 1), "WARREN_API_CA_FILE=" + certs.CAFile}, "queues")
		if code != 1 || !strings.Contains(errOut, "not https://") {
			t.Errorf("queues with api_ca_file and an http URL: exit %d, stderr %q", code, errOut)
		}
	})

	other := testenv.NewCerts(t)
	for name, tc := range map[string]struct {
		env  []string
		want string
	}{
		"wrong CA for RabbitMQ": {[]string{"WARREN_AMQP_TLS_CA_FILE=" + other.CAFile}, "certificate signed by unknown authority"},
		"wrong server name for RabbitMQ": {
			[]string{"WARREN_AMQP_TLS_SERVER_NAME=rabbit.wrong.example"}, "not rabbit.wrong.example",
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := runLogged(t, append(append([]string{}, server...), tc.env...), "api", "--addr", "127.0.0.1:0")
			p.waitLog(t, "cannot reach RabbitMQ")
			p.waitLog(t, tc.want)
			if strings.Contains(p.String(), "guest:guest") {
				t.Error("the log shows the AMQP password")
			}
		})
	}
	t.Run("wrong CA for Redis", func(t *testing.T) {
		env := append(append([]string{}, server...), "WARREN_REDIS_TLS_CA_FILE="+other.CAFile)
		// The worker cannot declare its types, and says why.
		p := runLogged(t, env, "worker", "sys")
		p.waitLog(t, "certificate signed by unknown authority")
	})
	// The Python worker uses each setting, and names what it cannot
	// verify in its log, without the password.
	for name, tc := range map[string]struct{ env, want string }{
		"wrong CA for Redis":             {"WARREN_REDIS_TLS_CA_FILE=" + other.CAFile, "certificate verify failed"},
		"wrong server name for RabbitMQ": {"WARREN_AMQP_TLS_SERVER_NAME=rabbit.wrong.example", "rabbit.wrong.example"},
		"wrong server name for Redis":    {"WARREN_REDIS_TLS_SERVER_NAME=redis.wrong.example", "redis.wrong.example"},
	} {
		t.Run("the Python worker: "+name, func(t *testing.T) {
			p := runProgram(t, append(append([]string{}, server...), tc.env), "/usr/bin/python3", python)
			p.waitLog(t, tc.want)
			if strings.Contains(p.String(), "guest:guest") {
				t.Error("the log shows the AMQP password")
			}
		})
	}
	t.Run("half a key pair for the API", func(t *testing.T) {
		_, errOut, code := cli(t, append(append([]string{}, server...), "WARREN_API_TLS_CERT="+certs.ServerCertFile), "api")
		if code != 1 || !strings.Contains(errOut, "api.tls_cert and api.tls_key: set both") {
			t.Errorf("api with a certificate and no key: exit %d, stderr %q", code, errOut)
		}
	})

	// The job's record, read back over the https API.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j, _, err := c.Enqueue(ctx, client.JobRequest{Type: "sys.echo", Payload: json.RawMessage(`{"n":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	done, err := c.WaitDone(ctx, j.ID)
	if err != nil || done.Status != jobs.StatusSucceeded {
		t.Errorf("job %s over TLS: %v, %v", j.ID, done, err)
	}
}

// Passwords in the servers' URLs show in no log line, error or /readyz
// answer: not while the servers are away, not when a URL is malformed.
func TestCredentialsNeverShown(t *testing.T) {
	t.Parallel()
	const pw = "s3cretpw"
	env := []string{
		"WARREN_NAMESPACE=redact",
		"WARREN_LOG_LEVEL=debug",
		"WARREN_AMQP_URL=amqp://guest:" + pw + "@127.0.0.1:1/",
		"WARREN_REDIS_URL=redis://:" + pw + "@127.0.0.1:1/0",
		"WARREN_MANAGEMENT_URL=http://admin:" + pw + "@127.0.0.1:1",
		"WARREN_RESCUE_INTERVAL=-1s",
	}
	p := runLogged(t, env, "api", "--addr", "127.0.0.1:0")
	base := "http://" + p.addr(t, "api listening")
	p.waitLog(t, "RabbitMQ is not reachable yet")
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(body.String(), pw) {
		t.Errorf("/readyz: %s %s; want 503 without the password", resp.Status, body.String())
	}
	if strings.Contains(p.String(), pw) {
		t.Errorf("the log shows the password:\n%s", p.String())
	}
	if !strings.Contains(p.String(), "amqp://guest:xxxxx@127.0.0.1:1/") {
		t.Errorf("the log does not name the broker it cannot reach, redacted:\n%s", p.String())
	}

	for name, bad := range map[string]string{
		"WARREN_AMQP_URL":       "amqp://guest:s3cr/etpw@127.0.0.1:port/",
		"WARREN_REDIS_URL":      "redis://:s3cr/etpw@127.0.0.1:port/0",
		"WARREN_MANAGEMENT_URL": "http://admin:s3cr/etpw@127.0.0.1:port",
	} {
		_, errOut, code := cli(t, append(append([]string{}, env...), name+"="+bad), "api", "--addr", "127.0.0.1:0")
		if code != 1 || strings.Contains(errOut, "s3cr") {
			t.Errorf("%s malformed: exit %d, stderr %q; want 1 and no password", name, code, errOut)
		}
	}
}
