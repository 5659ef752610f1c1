package conformance_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode"

	"go.uber.org/goleak"

	"github.com/warrenhq/warren/config"
	"github.com/warrenhq/warren/conformance"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/workers"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis keeps one background goroutine per process for its
		// connection-pool clock; it is not tied to any client.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

// wordcount is the Go implementation of text.wordcount.
func wordcount(_ context.Context, j *jobs.Job, p conformance.Payload) (*conformance.Result, error) {
	if p.Permanent {
		return nil, jobs.Permanent(&jobs.CodedError{Code: "permanent", Err: errors.New("failing for good, as the payload asks")})
	}
	if j.Attempt <= p.FailTimes {
		return nil, fmt.Errorf("attempt %d fails on purpose (fail_times %d)", j.Attempt, p.FailTimes)
	}
	lines := strings.Count(p.Text, "\n")
	if p.Text != "" && !strings.HasSuffix(p.Text, "\n") {
		lines++
	}
	return &conformance.Result{
		Words: len(strings.FieldsFunc(p.Text, unicode.IsSpace)),
		Lines: lines,
		Chars: len([]rune(p.Text)),
	}, nil
}

func TestGoWorker(t *testing.T) {
	testenv.RequireServices(t)
	t.Parallel()
	conformance.Run(t, func(t *testing.T, env *testenv.Env) func() {
		w := workers.New(workers.Config{Logger: env.Log, ID: "go-" + string(env.NS)}, env.Broker, env.Store)
		if err := w.Handle(conformance.Type, jobs.Typed(wordcount)); err != nil {
			t.Fatal(err)
		}
		if err := w.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := w.Stop(ctx); err != nil {
				t.Errorf("stop worker: %v", err)
			}
		}
	})
}

const python = "/usr/bin/python3"

// requirePython fails (it does not skip) when the Python worker cannot run
// here: a missing interpreter or module is a broken test machine.
func requirePython(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "workers", "python", "wordcount.py")
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("the Python worker: %v", err)
	}
	out, err := exec.Command(python, "-c", "import pika, redis").CombinedOutput()
	if err != nil {
		t.Fatalf("%s cannot import pika and redis (%v: %s): install python3-pika python3-redis (apt-get install python3-pika python3-redis)",
			python, err, strings.TrimSpace(string(out)))
	}
	return script
}

func TestPythonWorker(t *testing.T) {
	testenv.RequireServices(t)
	script := requirePython(t)
	t.Parallel()
	conformance.Run(t, func(t *testing.T, env *testenv.Env) func() {
		cmd := exec.Command(python, script)
		// The settings as the supervisor hands them to a worker process it
		// starts, so the Python worker reads the names Go writes.
		cfg := config.Config{AMQPURL: testenv.AMQPURL(), RedisURL: testenv.RedisURL(), Namespace: env.NS,
			Pools: map[string]config.Pool{conformance.Pool: {Concurrency: 4}}}
		cmd.Env = append(os.Environ(), "WARREN_WORKER_ID=py-"+string(env.NS))
		for k, v := range cfg.ChildEnv() {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s %s: %v", python, script, err)
		}
		var logs sync.WaitGroup
		logs.Go(func() {
			sc := bufio.NewScanner(stderr)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				t.Log("python: " + sc.Text())
			}
		})
		exited := make(chan error, 1)
		go func() {
			logs.Wait() // Wait closes the pipe: read it all first
			exited <- cmd.Wait()
		}()
		return func() {
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Errorf("SIGTERM the Python worker: %v", err)
			}
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("the Python worker did not exit cleanly after SIGTERM: %v", err)
				}
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Errorf("the Python worker did not stop within 20s of SIGTERM; killed it")
			}
		}
	})
}

// The Python worker reads its settings as the Go processes do: a URL may come
// from a file (WARREN_*_URL_FILE), and it refuses at start, naming the
// variables, what config.Load and Validate refuse.
func TestPythonWorkerSettings(t *testing.T) {
	script := requirePython(t)
	t.Parallel()
	dir := t.TempDir()
	file := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	url, empty := file("url", "amqp://guest:guest@127.0.0.1:5672/\n"), file("empty", "\n")
	for name, tc := range map[string]struct {
		env  []string
		want string
	}{
		"a variable and its file": {
			[]string{"WARREN_AMQP_URL=amqp://guest:guest@127.0.0.1:1/", "WARREN_AMQP_URL_FILE=" + url},
			"WARREN_AMQP_URL and WARREN_AMQP_URL_FILE are both set: set one",
		},
		"an empty file":  {[]string{"WARREN_REDIS_URL_FILE=" + empty}, "WARREN_REDIS_URL_FILE: " + empty + " is empty"},
		"a missing file": {[]string{"WARREN_REDIS_URL_FILE=" + dir + "/none"}, "WARREN_REDIS_URL_FILE: "},
		"half a key pair": {
			[]string{"WARREN_AMQP_URL_FILE=" + url, "WARREN_AMQP_TLS_CERT_FILE=" + url},
			"WARREN_AMQP_TLS_CERT_FILE and WARREN_AMQP_TLS_KEY_FILE: set both or neither",
		},
		"TLS settings for amqp://": {
			[]string{"WARREN_AMQP_URL_FILE=" + url, "WARREN_AMQP_TLS_CA_FILE=" + url},
			"WARREN_AMQP_TLS_* is set, but WARREN_AMQP_URL is not amqps://: the connection would not use TLS",
		},
		"TLS settings for redis://": {
			[]string{"WARREN_REDIS_TLS_SERVER_NAME=localhost"},
			"WARREN_REDIS_TLS_* is set, but WARREN_REDIS_URL is not rediss://",
		},
		"a CA file without certificates": {
			[]string{"WARREN_REDIS_URL=rediss://127.0.0.1:1/0", "WARREN_REDIS_TLS_CA_FILE=" + url},
			"WARREN_REDIS_TLS_CA_FILE " + url + ":",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, python, script)
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "WARREN_") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(cmd.Env, tc.env...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
				t.Errorf("exit %v, output %q; want exit 2 and %q", err, out, tc.want)
			}
			if strings.Contains(string(out), "guest:guest") {
				t.Errorf("the output shows the password: %q", out)
			}
		})
	}
}
