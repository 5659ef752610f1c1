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
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

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

// Namespace returns a namespace unique to this test run of t.
func Namespace(t testing.TB) jobs.Namespace {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := strings.ToLower(nameRE.ReplaceAllString(t.Name(), "-"))
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	return jobs.Namespace("t-" + strings.Trim(name, "-") + "-" + hex.EncodeToString(b))
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
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitConnected(ctx); err != nil {
		t.Fatalf("connect to RabbitMQ at %s: %v", AMQPURL(), err)
	}
	t.Cleanup(func() { Cleanup(t, ns, b, st) })
	return &Env{NS: ns, Broker: b, Store: st, Log: log}
}

// Cleanup deletes what the namespace left: the queues of every pool whose
// types were declared (plus any named in extraPools), the exchange and all
// keys; then it stops the broker and closes the store.
func Cleanup(t testing.TB, ns jobs.Namespace, b *queue.Broker, st *store.Store, extraPools ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pools := append([]string{}, extraPools...)
	if types, err := st.Types(ctx); err == nil {
		for _, ty := range types {
			pools = append(pools, ty.Pool)
		}
	}
	if b.Connected() {
		if err := b.DeleteNamespace(ctx, pools); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	if err := st.DeleteNamespace(ctx); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if err := b.Stop(ctx); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	_ = st.Close()
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
