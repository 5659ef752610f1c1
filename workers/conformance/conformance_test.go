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

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/workers"
	"github.com/warrenhq/warren/workers/conformance"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis keeps one background goroutine per process for its
		// connection-pool clock; it is not tied to any client.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

// wordcount is the Go implementation of text.wordcount.
func wordcount(_ context.Context, j *jobs.Job) (any, error) {
	var p conformance.Payload
	if err := j.Decode(&p); err != nil {
		return nil, jobs.Permanent(&jobs.CodedError{Code: "payload", Err: err})
	}
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
	return conformance.Result{
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
		if err := w.Handle(conformance.Type, jobs.HandlerFunc(wordcount)); err != nil {
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
	script := filepath.Join(filepath.Dir(file), "..", "python", "wordcount.py")
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
		cmd.Env = append(os.Environ(),
			"WARREN_AMQP_URL="+testenv.AMQPURL(),
			"WARREN_REDIS_URL="+testenv.RedisURL(),
			"WARREN_NAMESPACE="+string(env.NS),
			"WARREN_POOL_TEXT_CONCURRENCY=4",
			"WARREN_WORKER_ID=py-"+string(env.NS),
		)
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
