package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// testenv gives every test a Store as well; go-redis keeps one
		// background goroutine per process for its connection-pool clock,
		// started with the first client and tied to none.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

// wait bounds every wait for the broker in these tests.
const wait = 30 * time.Second

// newJob returns a queued job of type typ, with times at the millisecond
// precision that survives the trip.
func newJob(typ string, n int) *jobs.Job {
	j := &jobs.Job{
		ID:          jobs.NewID(),
		Type:        typ,
		Status:      jobs.StatusQueued,
		Payload:     json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)),
		MaxAttempts: 1 + n%5,
		Timeout:     jobs.Duration(time.Duration(n+1) * 1500 * time.Millisecond),
		CreatedAt:   time.Now().UTC().Truncate(time.Millisecond),
	}
	if n%2 == 0 {
		j.Metadata = map[string]string{"n": fmt.Sprint(n), "team": "queue"}
	}
	return j
}

func message(t *testing.T, j *jobs.Job, traceparent string) queue.Message {
	t.Helper()
	m, err := queue.NewMessage(j, traceparent)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// declarePool declares a pool bound to types and deletes its queue when the
// test ends (before testenv stops the broker).
func declarePool(t *testing.T, b *queue.Broker, pool string, types ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := b.DeclarePool(ctx, pool, types); err != nil {
		t.Fatalf("declare pool %s: %v", pool, err)
	}
	ns := b.Namespace()
	t.Cleanup(func() {
		ch := rawChannel(t)
		for _, q := range []string{ns.Queue(pool), ns.HighQueue(pool)} {
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				t.Errorf("cleanup: delete queue %s: %v", q, err)
			}
		}
	})
}

// rawChannel opens a channel of its own on RabbitMQ, beside the Broker, to
// look at what the Broker did; it closes when the test ends.
func rawChannel(t *testing.T) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(testenv.AMQPURL())
	if err != nil {
		t.Fatalf("raw AMQP connection: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("raw AMQP channel: %v", err)
	}
	return ch
}

// drain takes every ready message from a pool's queue with basic.get and
// returns their message ids, sorted.
func drain(t *testing.T, ns jobs.Namespace, pool string) []string {
	t.Helper()
	ch := rawChannel(t)
	var ids []string
	for {
		d, ok, err := ch.Get(ns.Queue(pool), true)
		if err != nil {
			t.Fatalf("get from %s: %v", ns.Queue(pool), err)
		}
		if !ok {
			break
		}
		ids = append(ids, d.MessageId)
	}
	slices.Sort(ids)
	return ids
}

// ready waits until the pool's queue holds want ready messages.
func ready(t *testing.T, env *testenv.Env, pool string, want int) {
	t.Helper()
	testenv.Eventually(t, wait, fmt.Sprintf("%d ready messages in pool %s", want, pool), func() bool {
		return env.Messages(t, pool) == want
	})
}

func publish(t *testing.T, b *queue.Broker, msgs []queue.Message) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	errs, err := b.Publish(ctx, msgs)
	if err != nil {
		t.Fatalf("publish %d messages: %v", len(msgs), err)
	}
	if len(errs) != len(msgs) {
		t.Fatalf("publish of %d messages gave %d errors", len(msgs), len(errs))
	}
	return errs
}

func publishAll(t *testing.T, b *queue.Broker, msgs []queue.Message) {
	t.Helper()
	for i, err := range publish(t, b, msgs) {
		if err != nil {
			t.Fatalf("message %d (%s): %v", i, msgs[i].Type, err)
		}
	}
}

// consumer runs Consume in the background until the test ends, or until
// stop is called.
type consumer struct {
	cancel context.CancelFunc
	done   chan error
	ready  chan struct{} // receives each time consuming begins

	once sync.Once
	err  error
}

func consume(t *testing.T, b *queue.Broker, opts queue.ConsumeOptions, handle func(queue.Delivery)) *consumer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{cancel: cancel, done: make(chan error, 1), ready: make(chan struct{}, 16)}
	opts.Ready = func() {
		select {
		case c.ready <- struct{}{}:
		default:
		}
	}
	go func() { c.done <- b.Consume(ctx, opts, handle) }()
	t.Cleanup(func() {
		if err := c.stop(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	select {
	case <-c.ready:
	case err := <-c.done:
		t.Fatalf("Consume returned before consuming: %v", err)
	case <-time.After(wait):
		t.Fatal("Consume did not begin consuming")
	}
	return c
}

// stop cancels Consume and returns what it returned; it may be called from
// any goroutine, and more than once.
func (c *consumer) stop() error {
	c.cancel()
	c.once.Do(func() {
		select {
		case c.err = <-c.done:
		case <-time.After(wait):
			c.err = errors.New("Consume did not return after its context ended")
		}
	})
	return c.err
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("timed out after %s waiting for %s", wait, what)
		var zero T
		return zero
	}
}

// mgmt calls RabbitMQ's management HTTP API, which `make test` enables. It
// fails the test if the API does not answer: the tests that use it cannot
// run without it.
func mgmt(t *testing.T, method, path string, out any) {
	t.Helper()
	u, err := url.Parse(testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	user := u.User.Username()
	pass, _ := u.User.Password()
	base := "http://" + u.Hostname() + ":15672"
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, pass)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// No keep-alive: an idle connection's goroutines would outlive the test.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("RabbitMQ management API at %s does not answer (%v); enable it with 'rabbitmq-plugins enable rabbitmq_management' (scripts/services.sh does)", base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("management API %s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("management API %s %s: %v", method, path, err)
		}
	}
}
