package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

func TestMain(m *testing.M) {
	// go-redis logs every refused dial to stderr; TestRedisUnavailable makes
	// dozens on purpose.
	redis.SetLogger(quiet{})
	goleak.VerifyTestMain(m,
		// go-redis keeps one background goroutine per process for its
		// connection-pool clock, started with the first client and tied to
		// none, so Close cannot end it.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// wait bounds every wait for Redis in these tests.
const wait = 10 * time.Second

// retention is the record lifetime of the stores these tests make.
const retention = time.Hour

// fixture is a test's Store, in its own namespace, and a raw client on the
// same Redis to look at what the Store wrote.
type fixture struct {
	ns  jobs.Namespace
	st  *store.Store
	rdb *redis.Client
}

func setup(t testing.TB) *fixture {
	t.Helper()
	testenv.RequireServices(t)
	ns := testenv.Namespace(t)
	st, err := store.New(store.Config{
		URL: testenv.RedisURL(), Namespace: ns, Retention: retention,
		IdempotencyWindow: time.Hour, Logger: testenv.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ns: ns, st: st, rdb: rawClient(t)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := st.DeleteNamespace(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		_ = st.Close()
	})
	return f
}

func rawClient(t testing.TB) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return c
}

// newJob returns a queued job with every field Create writes, at the
// millisecond precision the store keeps.
func newJob(n int) *jobs.Job {
	return &jobs.Job{
		ID:          jobs.NewID(),
		Type:        "store.test",
		Pool:        pool,
		Status:      jobs.StatusQueued,
		Payload:     json.RawMessage(fmt.Sprintf(`{"n":%d,"s":"caf\u00e9 \"quoted\""}`, n)),
		MaxAttempts: 4,
		Timeout:     jobs.Duration(90*time.Second + 250*time.Millisecond),
		Metadata:    map[string]string{"team": "store", "n": fmt.Sprint(n)},
		CreatedAt:   time.Now().UTC().Truncate(time.Millisecond),
	}
}

func (f *fixture) create(t *testing.T, js ...*jobs.Job) []store.Created {
	t.Helper()
	out, err := f.st.Create(ctx(t), js)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if len(out) != len(js) {
		t.Fatalf("Create of %d jobs gave %d outcomes", len(js), len(out))
	}
	for i, c := range out {
		if c.Err != nil {
			t.Fatalf("Create job %d: %v", i, c.Err)
		}
	}
	return out
}

func (f *fixture) get(t *testing.T, id string) *jobs.Job {
	t.Helper()
	j, err := f.st.Get(ctx(t), id)
	if err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	return j
}

// raw returns a record's hash as Redis holds it.
func (f *fixture) raw(t *testing.T, id string) map[string]string {
	t.Helper()
	h, err := f.rdb.HGetAll(ctx(t), f.ns.JobKey(id)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (f *fixture) pttl(t *testing.T, key string) time.Duration {
	t.Helper()
	d, err := f.rdb.PTTL(ctx(t), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *fixture) start(t *testing.T, id string) store.Started {
	t.Helper()
	s, err := f.st.Start(ctx(t), id, "worker-1", -1, "token-"+jobs.NewID(), time.Now())
	if err != nil {
		t.Fatalf("Start %s: %v", id, err)
	}
	return s
}

func (f *fixture) finish(t *testing.T, id string, o store.Outcome) {
	t.Helper()
	if err := f.st.Finish(ctx(t), id, o, time.Now()); err != nil {
		t.Fatalf("Finish %s as %s: %v", id, o.Status, err)
	}
}

func TestRedisUnavailable(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback: nothing listens.
	st, err := store.New(store.Config{URL: "redis://127.0.0.1:1/0", Namespace: testenv.Namespace(t), Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = st.Close()
		// After as many failed dials as its pool has connections, go-redis
		// starts a prober that retries each second until the pool closes.
		// It must end with Close; wait for that here, so goleak stays
		// strict about everything else.
		testenv.Eventually(t, 5*time.Second, "go-redis's dial prober to end after Close", func() bool {
			buf := make([]byte, 1<<20)
			return !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "(*ConnPool).tryDial")
		})
	})
	j := newJob(1)
	j.IdempotencyKey = "k"
	calls := map[string]func(context.Context) error{
		"Create": func(c context.Context) error { _, err := st.Create(c, []*jobs.Job{j}); return err },
		"Get":    func(c context.Context) error { _, err := st.Get(c, j.ID); return err },
		"Start": func(c context.Context) error {
			_, err := st.Start(c, j.ID, "w", -1, "token-"+jobs.NewID(), time.Now())
			return err
		},
		"Finish": func(c context.Context) error {
			return st.Finish(c, j.ID, store.Outcome{Status: jobs.StatusSucceeded}, time.Now())
		},
		"Progress":        func(c context.Context) error { return st.Progress(c, j.ID, jobs.Progress{Percent: 1}) },
		"Discard":         func(c context.Context) error { return st.Discard(c, []*jobs.Job{j}) },
		"Ping":            func(c context.Context) error { return st.Ping(c) },
		"DeclareTypes":    func(c context.Context) error { return st.DeclareTypes(c, []jobs.Type{{Name: "a.b", Pool: "a"}}) },
		"Type":            func(c context.Context) error { _, err := st.Type(c, "a.b"); return err },
		"Types":           func(c context.Context) error { _, err := st.Types(c); return err },
		"DeleteNamespace": func(c context.Context) error { return st.DeleteNamespace(c) },
		"OldestWaiting":   func(c context.Context) error { _, err := st.OldestWaiting(c, "p"); return err },
		"PutReplicas": func(c context.Context) error {
			return st.PutReplicas(c, "p", store.Replicas{Interval: time.Second})
		},
		"Replicas": func(c context.Context) error { _, err := st.Replicas(c); return err },
		"Scaling":  func(c context.Context) error { _, err := st.Scaling(c, "p"); return err },
		"KeepLease": func(c context.Context) error {
			_, err := st.KeepLease(c, store.WorkerInfo{ID: "w"}, time.Second)
			return err
		},
		"Release":    func(c context.Context) error { return st.Release(c, "w") },
		"Workers":    func(c context.Context) error { _, err := st.Workers(c); return err },
		"PausePool":  func(c context.Context) error { _, _, err := st.PausePool(c, "p", ""); return err },
		"ResumePool": func(c context.Context) error { _, err := st.ResumePool(c, "p"); return err },
		"Paused":     func(c context.Context) error { _, err := st.Paused(c); return err },
		"Inventory":  func(c context.Context) error { _, err := st.Inventory(c); return err },
	}
	for name, call := range calls {
		c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		start := time.Now()
		err := call(c)
		cancel()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s = %v, want ErrUnavailable", name, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %s, want a quick failure", name, d)
		}
	}
}

func TestNewConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]store.Config{
		"bad URL":       {URL: "http://127.0.0.1:6379"},
		"bad namespace": {URL: "redis://127.0.0.1:6379/0", Namespace: "a:b"},
	} {
		if st, err := store.New(cfg); err == nil {
			_ = st.Close()
			t.Errorf("%s: New gave no error", name)
		}
	}
	st, err := store.New(store.Config{URL: "redis://127.0.0.1:6379/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Namespace() != jobs.DefaultNamespace {
		t.Errorf("Namespace() = %q, want the default", st.Namespace())
	}
}
