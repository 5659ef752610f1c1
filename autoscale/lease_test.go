package autoscale_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/autoscale"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// leaseTTL is short, so that the tests see leases lapse and change hands
// within seconds.
const leaseTTL = time.Second

// leaseFixture is a namespace in a Redis, where supervisors keep their
// leases, and a pool whose backlog the test sets.
type leaseFixture struct {
	ns    jobs.Namespace
	store *store.Store
	rdb   *redis.Client // to read and write the leases as a test
	obs   *observer
}

func newLeaseFixture(t *testing.T, redisURL string) *leaseFixture {
	t.Helper()
	ns := testenv.Namespace(t)
	st, err := store.New(store.Config{URL: redisURL, Namespace: ns, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return &leaseFixture{ns: ns, store: st, rdb: rdb, obs: &observer{}}
}

// supervisor returns a supervisor of pool p, named holder, whose worker
// processes keep their pid files in a directory of their own.
func (f *leaseFixture) supervisor(t *testing.T, holder string, policy autoscale.Policy) *autoscale.Supervisor {
	t.Helper()
	p := childPool("p", "worker", policy)
	p.Env = append(p.Env, "PID_DIR="+t.TempDir())
	s, err := autoscale.NewSupervisor(autoscale.SupervisorConfig{
		Pools: []autoscale.PoolSpec{p}, Observer: f.obs,
		Leases: f.store, Holder: holder, LeaseTTL: leaseTTL,
		Logger: testenv.Logger(t).With("supervisor", holder),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// holderOf reads who holds the pool's lease straight from Redis.
func (f *leaseFixture) holderOf(t *testing.T, pool string) string {
	t.Helper()
	h, err := f.rdb.Get(context.Background(), f.ns.SupervisorKey(pool)).Result()
	if err != nil && err != redis.Nil {
		t.Fatalf("read the lease: %v", err)
	}
	return h
}

// running counts a supervisor's processes of pool that run and were not
// told to stop.
func running(s *autoscale.Supervisor, pool string) int {
	n := 0
	for _, p := range s.Processes() {
		if p.Pool == pool && !p.Stopping {
			n++
		}
	}
	return n
}

// overlap watches supervisors of one pool until stopped and counts the
// looks at which more than one of them ran processes of it.
type overlap struct {
	mu     sync.Mutex
	looks  int
	both   int
	cancel context.CancelFunc
	done   chan struct{}
}

func watchOverlap(t *testing.T, pool string, sups ...*autoscale.Supervisor) *overlap {
	ctx, cancel := context.WithCancel(context.Background())
	o := &overlap{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(o.done)
		for ctx.Err() == nil {
			runners := 0
			for _, s := range sups {
				if running(s, pool) > 0 {
					runners++
				}
			}
			o.mu.Lock()
			o.looks++
			if runners > 1 {
				o.both++
			}
			o.mu.Unlock()
			time.Sleep(2 * time.Millisecond) // a sampling rate, not a wait
		}
	}()
	t.Cleanup(func() { o.stop() })
	return o
}

// stop ends the watch and returns how many looks it took and at how many
// more than one supervisor ran the pool.
func (o *overlap) stop() (looks, both int) {
	o.cancel()
	<-o.done
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.looks, o.both
}

// Two supervisors of one pool: the one holding the pool's lease runs its
// processes, the other stands by saying whom it waits for; when the holder
// stops it gives the lease up, and the other takes the pool over. At no
// look did both run processes of it.
func TestSupervisorsOfOnePoolTakeTurnsByLease(t *testing.T) {
	testenv.RequireServices(t)
	f := newLeaseFixture(t, testenv.RedisURL())
	f.obs.set("p", 25)
	policy := autoscale.Policy{Min: 1, Max: 3, TargetBacklog: 10, Interval: 30 * time.Millisecond, ScaleDownWindow: -1}
	a, b := f.supervisor(t, "sup-a", policy), f.supervisor(t, "sup-b", policy)
	watch := watchOverlap(t, "p", a, b)

	stopA := supervise(t, a)
	eventually(t, "a holds the lease and runs three workers", func() bool {
		return status(a, "p").Lease == autoscale.LeaseHeld && running(a, "p") == 3
	})
	supervise(t, b)
	eventually(t, "b waits for a", func() bool {
		st := status(b, "p")
		return st.Lease == autoscale.LeaseWaiting && st.LeaseHolder == "sup-a"
	})
	// Over a few of b's tries, a keeps the pool and b runs nothing.
	time.Sleep(2 * leaseTTL)
	if n := running(b, "p"); n != 0 || status(a, "p").Lease != autoscale.LeaseHeld {
		t.Fatalf("standing by, b runs %d processes; a's lease is %q", n, status(a, "p").Lease)
	}
	// b has decided nothing for the pool, so its /status gives no time of
	// a decision (not year 1).
	if js, err := json.Marshal(status(b, "p")); err != nil || strings.Contains(string(js), `"at"`) {
		t.Errorf("standby's status = %s, %v; want no \"at\"", js, err)
	}
	if js, _ := json.Marshal(status(a, "p")); !strings.Contains(string(js), `"at"`) {
		t.Errorf("holder's status = %s; want the time of its last decision", js)
	}

	start := time.Now()
	stopA()
	// a gave the lease up as it stopped, rather than leaving it to lapse.
	if h := f.holderOf(t, "p"); h == "sup-a" {
		t.Errorf("the lease still names a after its Run returned")
	}
	eventually(t, "b takes the pool over and runs three workers", func() bool {
		return status(b, "p").Lease == autoscale.LeaseHeld && running(b, "p") == 3
	})
	took := time.Since(start)
	looks, both := watch.stop()
	if both != 0 {
		t.Errorf("both supervisors ran the pool's processes at %d of %d looks", both, looks)
	}
	testenv.Summary(t, "handover=%s looks=%d both=%d", took.Round(time.Millisecond), looks, both)
}

// A holder whose lease another took (here written over in Redis, as a
// supervisor would after the lease lapsed) stops its processes at its next
// renewal and waits, naming the new holder.
func TestSupervisorStopsAPoolWhoseLeaseAnotherTook(t *testing.T) {
	testenv.RequireServices(t)
	f := newLeaseFixture(t, testenv.RedisURL())
	a := f.supervisor(t, "sup-a", autoscale.Policy{Min: 2, Max: 2, Interval: 30 * time.Millisecond})
	supervise(t, a)
	eventually(t, "a runs two workers", func() bool { return running(a, "p") == 2 })

	if err := f.rdb.Set(context.Background(), f.ns.SupervisorKey("p"), "sup-other", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a stops its workers and waits for the other", func() bool {
		st := status(a, "p")
		return running(a, "p") == 0 && st.Lease == autoscale.LeaseWaiting && st.LeaseHolder == "sup-other"
	})
}

// While Redis is away the holder cannot renew its lease: once it must take
// it as lost it stops its processes, and the standby, which cannot take the
// lease either, runs none; when Redis is back one of them takes the pool
// again. At no look did both run it.
func TestSupervisorsWithoutRedisRunNoPool(t *testing.T) {
	srv := testenv.StartRedis(t)
	f := newLeaseFixture(t, srv.URL())
	policy := autoscale.Policy{Min: 2, Max: 2, Interval: 30 * time.Millisecond}
	a, b := f.supervisor(t, "sup-a", policy), f.supervisor(t, "sup-b", policy)
	watch := watchOverlap(t, "p", a, b)
	supervise(t, a)
	eventually(t, "a runs two workers", func() bool { return running(a, "p") == 2 })
	supervise(t, b)
	eventually(t, "b waits for a", func() bool { return status(b, "p").LeaseHolder == "sup-a" })

	srv.Stop(t)
	start := time.Now()
	eventually(t, "a stops its workers", func() bool {
		return running(a, "p") == 0 && status(a, "p").Lease == autoscale.LeaseWaiting
	})
	stopped := time.Since(start)
	// Meanwhile, and for a while after, neither runs the pool.
	time.Sleep(2 * leaseTTL)
	if na, nb := running(a, "p"), running(b, "p"); na+nb != 0 {
		t.Fatalf("without Redis a runs %d processes and b %d, want none", na, nb)
	}

	srv.Start(t)
	eventually(t, "one supervisor runs the pool again", func() bool {
		return running(a, "p")+running(b, "p") == 2
	})
	looks, both := watch.stop()
	if both != 0 {
		t.Errorf("both supervisors ran the pool's processes at %d of %d looks", both, looks)
	}
	testenv.Summary(t, "stopped_after=%s looks=%d both=%d", stopped.Round(time.Millisecond), looks, both)
}
