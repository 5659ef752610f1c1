// Package testenv gives tests real RabbitMQ and Redis connections, each test
// in its own namespace, cleaned up when the test ends. Addresses come from
// WARREN_AMQP_URL and WARREN_REDIS_URL with loopback defaults. Under -short
// the tests that need servers are skipped; otherwise a missing server fails
// the test with a message saying how to start one.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
)

// AMQPURL is the RabbitMQ the tests use.
func AMQPURL() string {
	if v := os.Getenv("WARREN_AMQP_URL"); v != "" {
		return v
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// RedisURL is the Redis the tests use.
func RedisURL() string {
	if v := os.Getenv("WARREN_REDIS_URL"); v != "" {
		return v
	}
	return "redis://127.0.0.1:6379/0"
}

var (
	checkOnce sync.Once
	checkErr  error
)

// RequireServices skips the test under -short, and fails it when RabbitMQ
// or Redis does not answer.
func RequireServices(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs RabbitMQ and Redis; skipped under -short")
	}
	checkOnce.Do(func() {
		for _, u := range []string{AMQPURL(), RedisURL()} {
			pu, err := url.Parse(u)
			if err != nil {
				checkErr = err
				return
			}
			c, err := net.DialTimeout("tcp", pu.Host, 2*time.Second)
			if err != nil {
				checkErr = fmt.Errorf("%s does not answer (%v): run 'make services-up' or 'scripts/services.sh up', or set WARREN_AMQP_URL / WARREN_REDIS_URL", pu.Host, err)
				return
			}
			c.Close()
		}
	})
	if checkErr != nil {
		t.Fatal(checkErr)
	}
}

var nameRE = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// Namespace returns a namespace unique to this test run of t. When the test
// ends, everything in it is deleted (see Sweep), whatever declared it.
func Namespace(t testing.TB) jobs.Namespace {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := strings.ToLower(nameRE.ReplaceAllString(t.Name(), "-"))
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	ns := jobs.Namespace("t-" + strings.Trim(name, "-") + "-" + hex.EncodeToString(b))
	// Registered first, so it runs last: after the test's brokers, workers
	// and processes have stopped and can declare nothing more.
	t.Cleanup(func() { Sweep(t, ns) })
	return ns
}

// ManagementURL is the RabbitMQ management API the tests use to find what a
// namespace left: WARREN_MANAGEMENT_URL, else port 15672 on the AMQP host
// with the AMQP URL's credentials.
func ManagementURL() string {
	if v := os.Getenv("WARREN_MANAGEMENT_URL"); v != "" {
		return v
	}
	u, err := url.Parse(AMQPURL())
	if err != nil {
		return "http://guest:guest@127.0.0.1:15672"
	}
	return (&url.URL{Scheme: "http", User: u.User, Host: u.Hostname() + ":15672"}).String()
}

// Sweep deletes every queue and exchange named "{ns}.…" on the broker and
// every key "{ns}:…" in Redis. Tests do not need to call it: Namespace
// arranges it.
func Sweep(t testing.TB, ns jobs.Namespace) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sweepBroker(ctx, ns); err != nil {
		t.Errorf("cleanup of namespace %s: %v", ns, err)
	}
	if err := sweepRedis(ctx, ns); err != nil {
		// Redis being down is the test's own business (some stop it);
		// report anything else.
		var ne net.Error
		if !errors.As(err, &ne) {
			t.Errorf("cleanup of namespace %s: %v", ns, err)
		}
	}
}

// Remove is Sweep for programs other than tests, such as benchmarks.
func Remove(ctx context.Context, ns jobs.Namespace) error {
	return errors.Join(sweepBroker(ctx, ns), sweepRedis(ctx, ns))
}

func sweepRedis(ctx context.Context, ns jobs.Namespace) error {
	opts, err := redis.ParseURL(RedisURL())
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	// A page of keys at a time: a benchmark leaves a million.
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, string(ns)+":*", 1000).Result()
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		if len(keys) > 0 {
			if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// sweepClient keeps no idle connections, which goleak would see as leaked
// goroutines.
var sweepClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// sweepBroker deletes the namespace's queues and exchanges through the
// management API, which can list them by name.
func sweepBroker(ctx context.Context, ns jobs.Namespace) error {
	base, err := url.Parse(ManagementURL())
	if err != nil {
		return fmt.Errorf("management URL: %w", err)
	}
	amqpURL, err := url.Parse(AMQPURL())
	if err != nil {
		return err
	}
	vhost := strings.TrimPrefix(amqpURL.Path, "/")
	if vhost == "" {
		vhost = "/"
	}
	call := func(method, path string, out any) error {
		u := *base
		u.User = nil
		u.Path = ""
		req, err := http.NewRequestWithContext(ctx, method, u.String()+path, nil)
		if err != nil {
			return err
		}
		if base.User != nil {
			pw, _ := base.User.Password()
			req.SetBasicAuth(base.User.Username(), pw)
		}
		resp, err := sweepClient.Do(req)
		if err != nil {
			return fmt.Errorf("management API at %s (enable rabbitmq_management or set WARREN_MANAGEMENT_URL): %w", base.Host, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotFound {
			return fmt.Errorf("management API %s %s: %s", method, path, resp.Status)
		}
		if out != nil {
			return json.NewDecoder(resp.Body).Decode(out)
		}
		return nil
	}
	prefix := string(ns) + "."
	for _, kind := range []string{"queues", "exchanges"} {
		var items []struct{ Name string }
		if err := call("GET", "/api/"+kind+"/"+url.PathEscape(vhost)+"?columns=name", &items); err != nil {
			return err
		}
		for _, it := range items {
			if strings.HasPrefix(it.Name, prefix) {
				if err := call("DELETE", "/api/"+kind+"/"+url.PathEscape(vhost)+"/"+url.PathEscape(it.Name), nil); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Logger returns a logger that writes to the test's log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Env is a test's connections, in its own namespace.
type Env struct {
	NS     jobs.Namespace
	Broker *queue.Broker
	Store  *store.Store
	Log    *slog.Logger
}

// New connects to RabbitMQ and Redis in a fresh namespace and removes the
// namespace's queues, exchange and keys when the test ends.
func New(t testing.TB) *Env {
	t.Helper()
	RequireServices(t)
	ns := Namespace(t)
	log := Logger(t)
	b, err := queue.New(queue.Config{URL: AMQPURL(), Namespace: ns, Logger: log, Name: "test-" + string(ns)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New(store.Config{URL: RedisURL(), Namespace: ns, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	// A minute: with the whole suite running on two cores, dozens of
	// tests declare their quorum queues at once, and a handshake has been
	// seen to wait over 20 seconds for the broker.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitConnected(ctx); err != nil {
		t.Fatalf("connect to RabbitMQ at %s: %v", AMQPURL(), err)
	}
	env := &Env{NS: ns, Broker: b, Store: st, Log: log}
	t.Cleanup(func() { env.close(t) })
	return env
}

// close stops the broker and closes the store; Namespace's sweep then
// removes what they left.
func (e *Env) close(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Broker.Stop(ctx); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	_ = e.Store.Close()
}

// JobKeys returns the job records of the namespace, read straight from
// Redis, so tests can assert that nothing was written.
func (e *Env) JobKeys(t testing.TB) []string {
	t.Helper()
	opts, err := redis.ParseURL(RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), e.NS.JobKey("*")).Result()
	if err != nil {
		t.Fatalf("list job keys: %v", err)
	}
	return keys
}

// Messages returns how many messages wait in a pool's queue, so tests can
// assert that nothing was published.
func (e *Env) Messages(t testing.TB, pool string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := e.Broker.InspectPool(ctx, pool)
	if err != nil {
		t.Fatalf("inspect pool %s: %v", pool, err)
	}
	return q.Messages
}

// Eventually polls cond until it holds or the timeout passes, for state that
// has no signal to wait on (a record in Redis written by another process).
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Summary logs a test's summary line (such as "submitted=2000 succeeded=2000
// lost=0 duplicated=0") and, when WARREN_TEST_SUMMARY names a file, appends
// it there too: go test shows nothing of a passing package, and `make test`
// prints that file at the end so the figures can be read from a CI log.
func Summary(t testing.TB, format string, args ...any) {
	t.Helper()
	line := t.Name() + ": " + fmt.Sprintf(format, args...)
	t.Log(line)
	path := os.Getenv("WARREN_TEST_SUMMARY")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("summary file: %v", err)
		return
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, line); err != nil {
		t.Errorf("summary file: %v", err)
	}
}

// Channel opens an AMQP channel on a connection of its own to the shared
// broker, for tests that act behind warren's back (purge a queue, read one
// without consuming it); both close when the test ends. A broker error on
// the channel (a 404, say) closes it: open another.
func Channel(t testing.TB) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(AMQPURL())
	if err != nil {
		t.Fatalf("connect to RabbitMQ at %s: %v", AMQPURL(), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}
