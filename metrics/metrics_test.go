package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/metrics"
	"github.com/warrenhq/warren/queue"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis keeps one background goroutine per process for its
		// connection-pool clock, started with the first client and tied to
		// none.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

// wait bounds every wait for the servers in these tests.
const wait = 30 * time.Second

// poolMetrics are the names of the pool metrics.
var poolMetrics = []string{
	metrics.MetricBacklog, metrics.MetricReady, metrics.MetricUnacked,
	metrics.MetricConsumers, metrics.MetricOldestAge, metrics.MetricDead,
}

// scrape asks h for /metrics as Prometheus would and parses the answer.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// poolValues returns metric name → pool → value of the pool metrics,
// checking that each is a gauge in namespace ns.
func poolValues(t *testing.T, fams map[string]*dto.MetricFamily, ns jobs.Namespace) map[string]map[string]float64 {
	t.Helper()
	out := map[string]map[string]float64{}
	for _, name := range poolMetrics {
		f := fams[name]
		if f == nil {
			continue
		}
		if f.GetType() != dto.MetricType_GAUGE {
			t.Errorf("%s is a %s, want a gauge", name, f.GetType())
		}
		out[name] = map[string]float64{}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if got := labels[metrics.LabelNamespace]; got != string(ns) || len(labels) != 2 {
				t.Errorf("%s labels %v, want %s=%s and %s", name, labels, metrics.LabelNamespace, ns, metrics.LabelPool)
			}
			out[name][labels[metrics.LabelPool]] = m.GetGauge().GetValue()
		}
	}
	return out
}

// eventually scrapes until the figures are want, for figures that settle
// (queue counts after publishing, the management API's after its refresh).
func eventually(t *testing.T, what string, want map[string]map[string]float64, figures func() map[string]map[string]float64) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		got := figures()
		d := cmp.Diff(want, got)
		if d == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (-want +got):\n%s", wait, what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inMinutes turns the ages of v into whole minutes, which stay put while a
// test runs.
func inMinutes(v map[string]map[string]float64) map[string]map[string]float64 {
	for pool, age := range v[metrics.MetricOldestAge] {
		v[metrics.MetricOldestAge][pool] = math.Floor(age / 60)
	}
	return v
}

// newCollector returns a Collector over env's broker and store with cfg's
// other settings.
func newCollector(t *testing.T, env *testenv.Env, cfg metrics.Config) *metrics.Collector {
	t.Helper()
	if cfg.Broker == nil {
		cfg.Broker = env.Broker
	}
	if cfg.Store == nil {
		cfg.Store = env.Store
	}
	cfg.Namespace = env.NS
	cfg.Logger = env.Log
	c, err := metrics.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pools(names ...string) func(context.Context) ([]string, error) {
	return func(context.Context) ([]string, error) { return names, nil }
}

// rawChannel opens a channel beside the Broker, closed when the test ends.
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

// seed declares pool alpha (type alpha.job) and pool beta, records and
// publishes three alpha jobs created an hour ago, holds one of them
// unacknowledged, and puts two dead letters in alpha's dead-letter queue.
func seed(t *testing.T, env *testenv.Env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	alpha := jobs.Type{Name: "alpha.job", Pool: "alpha"}.WithDefaults()
	beta := jobs.Type{Name: "beta.job", Pool: "beta"}.WithDefaults()
	for _, typ := range []jobs.Type{alpha, beta} {
		if err := env.Broker.DeclarePool(ctx, typ.Pool, []string{typ.Name}); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Store.DeclareTypes(ctx, []jobs.Type{alpha, beta}); err != nil {
		t.Fatal(err)
	}
	created := time.Now().Add(-time.Hour - time.Second).UTC().Truncate(time.Millisecond)
	var (
		js   []*jobs.Job
		msgs []queue.Message
	)
	for i := range 3 {
		j := &jobs.Job{ID: jobs.NewID(), Type: alpha.Name, Pool: alpha.Pool, Status: jobs.StatusQueued, Payload: []byte(fmt.Sprintf(`{"i":%d}`, i)),
			MaxAttempts: 3, Timeout: alpha.Timeout, CreatedAt: created}
		m, err := queue.NewMessage(j, "")
		if err != nil {
			t.Fatal(err)
		}
		js, msgs = append(js, j), append(msgs, m)
	}
	if _, err := env.Store.Create(ctx, js); err != nil {
		t.Fatal(err)
	}
	errs, err := env.Broker.Publish(ctx, msgs)
	if err = errors.Join(append(errs, err)...); err != nil {
		t.Fatal(err)
	}
	ch := rawChannel(t)
	for i := range 2 {
		if err := ch.PublishWithContext(ctx, env.NS.DeadExchange(), jobs.DeadRoutingKey("failed", "alpha"), false, false,
			amqp.Publishing{Body: []byte(fmt.Sprintf("dead %d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	hold := rawChannel(t)
	if err := hold.Qos(1, 0, false); err != nil {
		t.Fatal(err)
	}
	deliveries, err := hold.Consume(env.NS.Queue("alpha"), "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-deliveries:
	case <-time.After(wait):
		t.Fatal("no delivery to hold unacknowledged")
	}
}

func TestCollectorExportsPools(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	seed(t, env)

	// Over AMQP: the unacknowledged job is not seen, and there is no
	// warren_queue_unacked. Pool gamma has no queue: it holds nothing.
	c := newCollector(t, env, metrics.Config{Pools: pools("beta", "alpha", "gamma", "alpha"), CacheFor: time.Nanosecond})
	want := map[string]map[string]float64{
		metrics.MetricBacklog:   {"alpha": 2, "beta": 0, "gamma": 0},
		metrics.MetricReady:     {"alpha": 2, "beta": 0, "gamma": 0},
		metrics.MetricConsumers: {"alpha": 1, "beta": 0, "gamma": 0},
		metrics.MetricOldestAge: {"alpha": 60, "beta": 0, "gamma": 0},
		metrics.MetricDead:      {"alpha": 2, "beta": 0, "gamma": 0},
	}
	var fams map[string]*dto.MetricFamily
	eventually(t, "the AMQP figures", want, func() map[string]map[string]float64 {
		fams = scrape(t, c.Handler())
		return inMinutes(poolValues(t, fams, env.NS))
	})
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total"} {
		if fams[name] == nil {
			t.Errorf("no %s: the Go and process collectors are missing", name)
		}
	}

	// The management API counts the unacknowledged job too, once its
	// figures (refreshed every few seconds) catch up.
	m, err := queue.NewManagement("", testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	c = newCollector(t, env, metrics.Config{Pools: pools("alpha", "beta"), Management: m, CacheFor: time.Nanosecond})
	want = map[string]map[string]float64{
		metrics.MetricBacklog:   {"alpha": 3, "beta": 0},
		metrics.MetricReady:     {"alpha": 2, "beta": 0},
		metrics.MetricUnacked:   {"alpha": 1, "beta": 0},
		metrics.MetricConsumers: {"alpha": 1, "beta": 0},
		metrics.MetricOldestAge: {"alpha": 60, "beta": 0},
		metrics.MetricDead:      {"alpha": 2, "beta": 0},
	}
	eventually(t, "the management API's figures", want, func() map[string]map[string]float64 {
		return inMinutes(poolValues(t, scrape(t, c.Handler()), env.NS))
	})
}

// faultyBroker fails PoolDepth for one pool and counts the calls.
type faultyBroker struct {
	metrics.Broker
	fail  string
	calls atomic.Int64
}

var _ metrics.Broker = (*faultyBroker)(nil)

func (b *faultyBroker) PoolDepth(ctx context.Context, pool string, m *queue.Management) (queue.Depth, error) {
	b.calls.Add(1)
	if pool == b.fail {
		return queue.Depth{}, fmt.Errorf("measure pool %s: %w", pool, queue.ErrUnavailable)
	}
	return b.Broker.PoolDepth(ctx, pool, m)
}

// faultyStore fails OldestWaiting for one pool.
type faultyStore struct {
	metrics.Store
	fail string
}

var _ metrics.Store = faultyStore{}

func (s faultyStore) OldestWaiting(ctx context.Context, pool string) (time.Duration, error) {
	if pool == s.fail {
		return 0, errors.New("redis is away")
	}
	return s.Store.OldestWaiting(ctx, pool)
}

// What cannot be measured is left out; the rest is served, with 200.
func TestCollectorLeavesOutWhatFails(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	seed(t, env)
	c := newCollector(t, env, metrics.Config{
		Broker:   &faultyBroker{Broker: env.Broker, fail: "beta"},
		Store:    faultyStore{Store: env.Store, fail: "alpha"},
		Pools:    pools("alpha", "beta"),
		CacheFor: time.Nanosecond,
	})
	want := map[string]map[string]float64{
		metrics.MetricBacklog:   {"alpha": 2},
		metrics.MetricReady:     {"alpha": 2},
		metrics.MetricConsumers: {"alpha": 1},
		metrics.MetricOldestAge: {"beta": 0},
		metrics.MetricDead:      {"alpha": 2, "beta": 0},
	}
	eventually(t, "the figures that can be measured", want, func() map[string]map[string]float64 {
		return poolValues(t, scrape(t, c.Handler()), env.NS)
	})

	// No list of pools: no pool figures, and still the Go metrics.
	c = newCollector(t, env, metrics.Config{Pools: func(context.Context) ([]string, error) {
		return nil, errors.New("the registry is away")
	}})
	fams := scrape(t, c.Handler())
	if got := poolValues(t, fams, env.NS); len(got) != 0 {
		t.Errorf("pool figures without a list of pools: %v", got)
	}
	if fams["go_goroutines"] == nil {
		t.Error("no go_goroutines")
	}
}

// Scrapes within CacheFor share one measurement.
func TestCollectorCaches(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	if err := env.Broker.DeclarePool(context.Background(), "alpha", []string{"alpha.job"}); err != nil {
		t.Fatal(err)
	}
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	b := &faultyBroker{Broker: env.Broker}
	c := newCollector(t, env, metrics.Config{
		Broker: b,
		Pools:  pools("alpha"),
		Now:    func() time.Time { return time.Unix(0, now.Load()) },
	})
	h := c.Handler()
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { scrape(t, h) })
	}
	wg.Wait()
	if n := b.calls.Load(); n != 1 {
		t.Errorf("5 scrapes at once measured %d times, want 1", n)
	}
	now.Add(int64(999 * time.Millisecond))
	scrape(t, h)
	if n := b.calls.Load(); n != 1 {
		t.Errorf("a scrape within the second measured again (%d measurements)", n)
	}
	now.Add(int64(time.Millisecond))
	scrape(t, h)
	if n := b.calls.Load(); n != 2 {
		t.Errorf("a scrape a second later: %d measurements, want 2", n)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  metrics.Config
	}{
		{"no broker", metrics.Config{Pools: pools("sys")}},
		{"no pools", metrics.Config{Broker: &faultyBroker{}}},
		{"bad namespace", metrics.Config{Broker: &faultyBroker{}, Pools: pools("sys"), Namespace: "a b"}},
	} {
		if _, err := metrics.New(tc.cfg); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}
