package queue_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/queue"
)

// holdUnacked consumes n messages of a pool's queue on a channel of its own
// and keeps them unacknowledged until the test ends.
func holdUnacked(t *testing.T, queueName string, n int) {
	t.Helper()
	ch := rawChannel(t)
	if err := ch.Qos(n, 0, false); err != nil {
		t.Fatalf("qos: %v", err)
	}
	deliveries, err := ch.Consume(queueName, "", false, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume %s: %v", queueName, err)
	}
	for i := range n {
		recv(t, deliveries, fmt.Sprintf("delivery %d of %s", i+1, queueName))
	}
}

// depthOf measures a pool with PoolDepth, failing the test on error.
func depthOf(t *testing.T, b *queue.Broker, pool string, m *queue.Management) queue.Depth {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	d, err := b.PoolDepth(ctx, pool, m)
	if err != nil {
		t.Fatalf("PoolDepth(%s): %v", pool, err)
	}
	return d
}

func TestPoolDepth(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const pool = "depth"
	declarePool(t, env.Broker, pool, "depth.job")
	var msgs []queue.Message
	for i := range 5 {
		msgs = append(msgs, message(t, newJob("depth.job", i), ""))
	}
	publishAll(t, env.Broker, msgs)
	holdUnacked(t, env.NS.Queue(pool), 2)

	// AMQP sees the three ready messages and the consumer, not the two it
	// holds.
	want := queue.Depth{Ready: 3, Consumers: 1, Source: queue.SourceAMQP}
	testenv.Eventually(t, wait, "3 ready messages over AMQP", func() bool {
		return depthOf(t, env.Broker, pool, nil) == want
	})
	if got := want.Backlog(); got != 3 {
		t.Errorf("AMQP backlog %d, want 3", got)
	}

	// The management API counts the unacknowledged too, once its figures
	// (refreshed every few seconds) catch up.
	m, err := queue.NewManagement("", testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	want = queue.Depth{Ready: 3, Unacked: 2, Consumers: 1, Source: queue.SourceManagement}
	var got queue.Depth
	testenv.Eventually(t, wait, "the management API to count 3 ready and 2 unacked", func() bool {
		got = depthOf(t, env.Broker, pool, m)
		return got == want
	})
	if got.Backlog() != 5 {
		t.Errorf("management backlog %d, want 5", got.Backlog())
	}

	// A burst is seen at once: ready messages and consumers come from AMQP,
	// not from the management API's sample, which lags by seconds (here a
	// sample from before the burst).
	stale := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, ".high") { // the pool's high lane holds nothing
			_, _ = w.Write([]byte(`{"messages_ready":0,"messages_unacknowledged":0,"consumers":0}`))
			return
		}
		_, _ = w.Write([]byte(`{"messages_ready":0,"messages_unacknowledged":2,"consumers":0}`))
	}))
	t.Cleanup(stale.Close)
	sampled, err := queue.NewManagement(stale.URL, testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	var burst []queue.Message
	for i := range 7 {
		burst = append(burst, message(t, newJob("depth.job", 10+i), ""))
	}
	publishAll(t, env.Broker, burst)
	want = queue.Depth{Ready: 10, Unacked: 2, Consumers: 1, Source: queue.SourceManagement}
	testenv.Eventually(t, wait, "the burst counted", func() bool {
		got = depthOf(t, env.Broker, pool, sampled)
		return got == want
	})

	// The high lane's messages count in the pool's depth, and apart.
	publishAll(t, env.Broker, []queue.Message{message(t, prioJob("depth.job", 20, 9), "")})
	want = queue.Depth{Ready: 11, Consumers: 1, Source: queue.SourceAMQP, High: 1}
	testenv.Eventually(t, wait, "the high message counted", func() bool {
		got = depthOf(t, env.Broker, pool, nil)
		return got == want
	})
}

// A management API that cannot help leaves the measuring to AMQP.
func TestPoolDepthFallsBackToAMQP(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const pool = "fallback"
	declarePool(t, env.Broker, pool, "fallback.job")
	publishAll(t, env.Broker, []queue.Message{message(t, newJob("fallback.job", 1), "")})
	ready(t, env, pool, 1)

	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	noFigures := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// A queue just declared: the API knows it, not yet its counts.
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"consumers":0}`))
	}))
	t.Cleanup(noFigures.Close)
	silent := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // until PoolDepth gives up on it
	}))
	t.Cleanup(silent.Close)

	for _, tc := range []struct{ name, url string }{
		{"unreachable", "http://127.0.0.1:1"},
		{"server error", failing.URL},
		{"no figures yet", noFigures.URL},
		{"no answer", silent.URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := queue.NewManagement(tc.url, testenv.AMQPURL())
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got := depthOf(t, env.Broker, pool, m)
			want := queue.Depth{Ready: 1, Source: queue.SourceAMQP}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("depth (-want +got):\n%s", d)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("fallback took %s", took)
			}
		})
	}
}

func TestPoolDepthMissingPool(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	m, err := queue.NewManagement("", testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*queue.Management{nil, m} {
		_, err := env.Broker.PoolDepth(context.Background(), "never", m)
		if !errors.Is(err, queue.ErrNoPool) {
			t.Errorf("PoolDepth of a pool without a queue (management %v): %v, want ErrNoPool", m != nil, err)
		}
	}
}

func TestNewManagement(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, mgmt, amqp string
		want             string // URL(); "" with no err: nil client
		err              string
	}{
		{name: "default", amqp: "amqp://guest:guest@10.1.2.3:5672/", want: "http://10.1.2.3:15672"},
		{name: "default ipv6", amqp: "amqp://u:p@[::1]:5672/", want: "http://[::1]:15672"},
		{name: "off", mgmt: "off", amqp: "amqp://guest:guest@127.0.0.1/"},
		{name: "OFF", mgmt: "OFF", amqp: "not even a URL"},
		{name: "given", mgmt: "https://admin:secret@rabbit.example.com/rabbitmq/", amqp: "amqp://127.0.0.1/", want: "https://rabbit.example.com/rabbitmq"},
		{name: "no scheme", mgmt: "rabbit:15672", amqp: "amqp://127.0.0.1/", err: "want http:// or https://"},
		{name: "bad amqp", amqp: "http://127.0.0.1/", err: "AMQP URL"},
		{name: "unparseable", mgmt: "http://admin:s3cret@rabbit:port/", amqp: "amqp://127.0.0.1/", err: "management URL"},
	} {
		m, err := queue.NewManagement(tc.mgmt, tc.amqp)
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error %q shows the password", tc.name, err)
		}
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "" && m != nil:
			t.Errorf("%s: got a client of %s, want nil", tc.name, m.URL())
		case tc.want != "" && (m == nil || m.URL() != tc.want):
			t.Errorf("%s: got %v, want a client of %s", tc.name, m, tc.want)
		}
	}
}

// Queue asks for the queue in the AMQP URL's vhost (escaped) with the
// credentials of the management URL, else of the AMQP URL.
func TestManagementQueueRequest(t *testing.T) {
	t.Parallel()
	type request struct{ URI, User, Pass string }
	var (
		mu   sync.Mutex
		seen []request
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		mu.Lock()
		seen = append(seen, request{r.RequestURI, user, pass})
		mu.Unlock()
		if strings.Contains(r.URL.Path, "missing") {
			http.Error(w, `{"error":"Object Not Found","reason":"Not Found"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"messages_ready":7,"messages_unacknowledged":4,"consumers":2}`))
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()

	m, err := queue.NewManagement(srv.URL+"/prefix/", "amqp://bob:pw@127.0.0.1:5672/")
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Queue(ctx, "", "ns.pool.sys")
	if d := cmp.Diff(queue.Depth{Ready: 7, Unacked: 4, Consumers: 2, Source: queue.SourceManagement}, got); err != nil || d != "" {
		t.Errorf("Queue: %v (-want +got):\n%s", err, d)
	}
	if _, err := m.Queue(ctx, "", "missing"); err == nil {
		t.Error("Queue of a missing queue: no error")
	}

	host := strings.TrimPrefix(srv.URL, "http://")
	m, err = queue.NewManagement("http://admin:s3cret@"+host, "amqp://bob:pw@127.0.0.1:5672/jobs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Queue(ctx, "", "ns.pool.sys"); err != nil {
		t.Error(err)
	}
	if _, err := m.Queue(ctx, "other", "ns.pool.sys"); err != nil {
		t.Error(err)
	}

	want := []request{
		{"/prefix/api/queues/%2F/ns.pool.sys", "bob", "pw"},
		{"/prefix/api/queues/%2F/missing", "bob", "pw"},
		{"/api/queues/jobs/ns.pool.sys", "admin", "s3cret"},
		{"/api/queues/other/ns.pool.sys", "admin", "s3cret"},
	}
	mu.Lock()
	defer mu.Unlock()
	if d := cmp.Diff(want, seen); d != "" {
		t.Errorf("requests (-want +got):\n%s", d)
	}
}
