package conformance_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
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

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/config"
	"github.com/warrenhq/warren/conformance"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
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
		cfg := config.Default()
		cfg.AMQPURL, cfg.RedisURL, cfg.Namespace = testenv.AMQPURL(), testenv.RedisURL(), env.NS
		return runPython(t, script, "py-"+string(env.NS), cfg, nil)
	})
}

// runPython starts the Python worker with cfg's settings as the supervisor
// hands them to a worker process it starts (so that it reads the names Go
// writes), its log in the test's (each line also given to line, unless
// nil), and returns what stops it: SIGTERM, and the test fails unless it
// exits 0 within 20s.
func runPython(t *testing.T, script, id string, cfg config.Config, line func(string)) (stop func()) {
	t.Helper()
	cfg.Pools = map[string]config.Pool{conformance.Pool: {Concurrency: 4}}
	cmd := exec.Command(python, script)
	cmd.Env = append(os.Environ(), "WARREN_WORKER_ID="+id)
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
			if line != nil {
				line(sc.Text())
			}
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
	// The messages the Go processes give for the same settings.
	halfSentinel := config.Default()
	halfSentinel.Redis.Sentinel.Addrs = []string{"127.0.0.1:26379"}
	mixed := "amqp://guest:s3cr@127.0.0.1:1/,amqps://guest:s3cr@127.0.0.1:5671/"
	_, mixedErr := queue.ParseURLs(mixed)
	if halfSentinel.Validate() == nil || mixedErr == nil {
		t.Fatalf("Go takes sentinel addrs without a master, or mixed schemes (%v)", mixedErr)
	}
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
		"sentinel addrs without master": {
			[]string{"WARREN_REDIS_SENTINEL_ADDRS=127.0.0.1:26379"}, halfSentinel.Validate().Error(),
		},
		"sentinel master without addrs": {
			[]string{"WARREN_REDIS_SENTINEL_MASTER=warren"}, halfSentinel.Validate().Error(),
		},
		"a sentinel addr without a port": {
			[]string{"WARREN_REDIS_SENTINEL_ADDRS=127.0.0.1:26379,s2", "WARREN_REDIS_SENTINEL_MASTER=warren"},
			`WARREN_REDIS_SENTINEL_ADDRS: "s2": want host:port`,
		},
		"sentinel over TLS": {
			[]string{"WARREN_REDIS_SENTINEL_ADDRS=127.0.0.1:26379", "WARREN_REDIS_SENTINEL_MASTER=warren",
				"WARREN_REDIS_URL=rediss://127.0.0.1:1/0"},
			"cannot reach Redis through Sentinel over TLS",
		},
		// A comma in a password cuts the list into pieces that are not URLs.
		"a malformed AMQP list": {
			[]string{"WARREN_AMQP_URL=amqp://guest:s3cr,et@127.0.0.1:5672/"},
			"WARREN_AMQP_URL: URL 1 is not a valid amqp:// or amqps:// URL (a comma separates the URLs of a cluster's nodes: write one in a password as %2C)",
		},
		"mixed schemes":   {[]string{"WARREN_AMQP_URL=" + mixed}, "WARREN_AMQP_URL: " + mixedErr.Error()},
		"a negative wait": {[]string{"WARREN_REDIS_WAIT_REPLICAS=-1"}, "WARREN_REDIS_WAIT_REPLICAS must be at least 0"},
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
			if strings.Contains(string(out), "guest:guest") || strings.Contains(string(out), "s3cr") {
				t.Errorf("the output shows the password: %q", out)
			}
		})
	}
}

// The Python worker in a clustered deployment: WARREN_AMQP_URL lists a node
// that is down besides the live one (in a random order), Redis is found
// through Sentinel (WARREN_REDIS_URL names a port nothing listens on: only
// its database counts), quorum queues it creates have a group size, and
// outcomes wait for a replica (WARREN_REDIS_WAIT_REPLICAS=1). Jobs succeed;
// after the primary is killed and its replica promoted, the outcome of a job
// run while no replica is connected is stored but its message is held
// unacknowledged until the old primary rejoins as a replica; then jobs
// succeed again.
//
// The API is warren's api.Server in this process, on a queue.Broker and a
// store.Store given the same AMQP list and Sentinel settings as `warren api`
// gives them (cmd/warren/cli), rather than conformance.Run's fixture, whose
// Env is bound to the shared servers. It waits for no replica, so that a job
// is accepted while none is connected and the worker's own WAIT is what
// holds it.
func TestPythonWorkerSentinel(t *testing.T) {
	testenv.RequireServices(t)
	script := requirePython(t)
	t.Parallel()
	set := testenv.StartSentinelRedis(t)
	ns := testenv.Namespace(t)
	log := testenv.Logger(t)
	nodes := []string{"amqp://guest:guest@127.0.0.1:1/", testenv.AMQPURL()}
	rand.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	amqpURL := strings.Join(nodes, ",")
	const redisURL = "redis://127.0.0.1:1/0"
	sentinel := config.RedisSentinel{Addrs: set.Addrs(), Master: set.Master()}

	b, err := queue.New(queue.Config{URL: amqpURL, Namespace: ns, Logger: log, Name: "test-" + string(ns)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New(store.Config{URL: redisURL, Sentinel: store.Sentinel{Addrs: sentinel.Addrs, Master: sentinel.Master},
		Namespace: ns, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The broker, first, declares the delay levels without a group size:
	// the worker must take them as they are.
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := b.Stop(ctx); err != nil {
			t.Error(err)
		}
		_ = st.Close()
	})
	if err := b.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.AMQPURL, cfg.RedisURL, cfg.Namespace = amqpURL, redisURL, ns
	cfg.AMQPQuorumGroupSize = 1
	cfg.Redis.Sentinel, cfg.Redis.WaitReplicas = sentinel, 1
	held := make(chan struct{}, 1)
	t.Cleanup(runPython(t, script, "py-"+string(ns), cfg, func(line string) {
		if strings.Contains(line, "cannot record the outcome") && strings.Contains(line, "0 of 1 replicas acknowledged") {
			select {
			case held <- struct{}{}:
			default:
			}
		}
	}))
	c, err := client.New(client.Config{BaseURL: conformance.ServeAPI(t, b, st, log)})
	if err != nil {
		t.Fatal(err)
	}

	// submit submits a job, again while the API answers 503 (the store
	// finding the new primary), and returns its id.
	submit := func() string {
		t.Helper()
		var id string
		testenv.Eventually(t, 20*time.Second, "the API to take a job", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			j, _, err := c.Enqueue(ctx, client.JobRequest{Type: conformance.TypeName, Payload: json.RawMessage(`{"text":"a b c"}`)})
			if err != nil {
				t.Logf("submit: %v", err)
				return false
			}
			id = j.ID
			return true
		})
		return id
	}
	succeeded := func(id string) {
		t.Helper()
		var j *jobs.Job
		testenv.Eventually(t, 30*time.Second, "job "+id+" to end", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			j, err = c.Get(ctx, id)
			return err == nil && j.Status.Terminal()
		})
		var got conformance.Result
		if j.Status != jobs.StatusSucceeded || json.Unmarshal(j.Result, &got) != nil || got != (conformance.Result{Words: 3, Lines: 1, Chars: 5}) {
			t.Errorf("job %s: %s with result %s (error %+v), want succeeded with 3 words", id, j.Status, j.Result, j.Error)
		}
	}
	batch := func() {
		t.Helper()
		var ids []string
		for range 3 {
			ids = append(ids, submit())
		}
		for _, id := range ids {
			succeeded(id)
		}
	}

	batch()
	if got := managedQueue(t, ns.Queue(conformance.Pool)).Arguments["x-quorum-initial-group-size"]; got != float64(1) {
		t.Errorf("the pool queue the worker created has group size %v, want 1", got)
	}
	if got, ok := managedQueue(t, ns.DelayQueue(0)).Arguments["x-quorum-initial-group-size"]; ok {
		t.Errorf("the delay level the broker created has group size %v, want it left without", got)
	}

	old := set.PrimaryAddr()
	killed := set.KillPrimary(t)
	now := set.WaitFailover(t, old, 30*time.Second)
	t.Logf("failover from %s to %s", old, now)
	// The new primary has no replica: the outcome is stored, and held.
	id := submit()
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not say it holds an outcome that no replica acknowledged")
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if j, err := st.Get(ctx, id); err != nil || j.Status != jobs.StatusSucceeded {
		t.Fatalf("job %s held by the worker: %v (%v), want its outcome stored on the primary", id, j, err)
	}
	testenv.Eventually(t, 15*time.Second, "the held job's message to show unacknowledged", func() bool {
		q := managedQueue(t, ns.Queue(conformance.Pool))
		return q.Unacked == 1
	})
	set.Rejoin(t, killed)
	testenv.Eventually(t, 30*time.Second, "the held job's message to be acknowledged once a replica is back", func() bool {
		q := managedQueue(t, ns.Queue(conformance.Pool))
		return q.Messages == 0 && q.Unacked == 0
	})
	succeeded(id)
	batch()
}

// queueState is what the management API says of a queue (its message
// counts are sampled every few seconds).
type queueState struct {
	Arguments map[string]any `json:"arguments"`
	Messages  int            `json:"messages"`
	Unacked   int            `json:"messages_unacknowledged"`
}

// managedQueue asks the shared broker's management API about a queue.
func managedQueue(t *testing.T, name string) queueState {
	t.Helper()
	base, err := url.Parse(testenv.ManagementURL())
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := base.User.Password()
	user := base.User.Username()
	base.User = nil
	req, err := http.NewRequest(http.MethodGet, base.String()+"/api/queues/%2F/"+url.PathEscape(name), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, pw)
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("management API: %v", err)
	}
	defer resp.Body.Close()
	var q queueState
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("management API: queue %s: %s", name, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&q); err != nil {
		t.Fatalf("management API: queue %s: %v", name, err)
	}
	return q
}
