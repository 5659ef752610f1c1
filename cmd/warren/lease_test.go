package main_test

// Many API and supervisor processes in one namespace: two `warren autoscale`
// for the same pool take turns by the pool's lease in Redis, and two `warren
// api` behind one address share idempotency keys and lose no accepted job
// when one of them is killed.

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/internal/testenv"
)

// leaseView is what a test reads of a supervisor's /status: each pool's
// lease and the processes it runs.
type leaseView struct {
	Pools []struct {
		Pool        string `json:"pool"`
		Lease       string `json:"lease"`
		LeaseHolder string `json:"lease_holder"`
	} `json:"pools"`
	Processes []struct {
		Pool     string `json:"pool"`
		Stopping bool   `json:"stopping"`
	} `json:"processes"`
}

// leaseStatus reads a supervisor's /status; a supervisor that does not
// answer (it was killed) shows nothing.
func leaseStatus(base string) leaseView {
	var v leaseView
	resp, err := probeClient.Get(base + "/status")
	if err != nil {
		return v
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return v
}

// runs counts the processes of pool a supervisor says it runs and did not
// tell to stop.
func (v leaseView) runs(pool string) int {
	n := 0
	for _, p := range v.Processes {
		if p.Pool == pool && !p.Stopping {
			n++
		}
	}
	return n
}

// lease returns the pool's lease state and holder as the supervisor sees it.
func (v leaseView) lease(pool string) (state, holder string) {
	for _, p := range v.Pools {
		if p.Pool == pool {
			return p.Lease, p.LeaseHolder
		}
	}
	return "", ""
}

// Two `warren autoscale sys` in one namespace: the holder of the pool's
// lease scales it with a backlog while the other stands by, naming it;
// killed with SIGKILL, its workers get SIGTERM from the kernel and drain,
// and the other takes the pool over once the lease lapses, not before.
// Throughout, the two never both report processes of the pool, and every
// job succeeds.
func TestAutoscaleSupervisorsShareAPoolByLease(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	cfgPath := filepath.Join(t.TempDir(), "warren.yaml")
	yml := "pools:\n  sys:\n    concurrency: 2\n" +
		"    autoscale: {min_replicas: 1, max_replicas: 3, target_backlog: 10, interval: 300ms, scale_down_window: 2s}\n"
	if err := os.WriteFile(cfgPath, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	const ttl = 2 * time.Second
	extra := []string{"WARREN_CONFIG=" + cfgPath, "WARREN_SUPERVISOR_LEASE_TTL=" + ttl.String()}
	api := startProcWith(t, env, extra, "api", "--addr", "127.0.0.1:0")
	apiURL := "http://" + api.Addr(t, "api listening")
	c := newClient(t, apiURL)

	a := startProcWith(t, env, extra, "autoscale", "sys", "--addr", "127.0.0.1:0")
	aURL := "http://" + a.Addr(t, "supervisor endpoints listening")
	var holderA string
	testenv.Eventually(t, 30*time.Second, "a to hold the sys lease, with sys types declared", func() bool {
		v := leaseStatus(aURL)
		state, holder := v.lease("sys")
		holderA = holder
		_, err := env.Store.Type(context.Background(), "sys.sleep")
		return state == "held" && err == nil
	})
	b := startProcWith(t, env, extra, "autoscale", "sys", "--addr", "127.0.0.1:0")
	bURL := "http://" + b.Addr(t, "supervisor endpoints listening")
	testenv.Eventually(t, 30*time.Second, "b to wait for a's lease", func() bool {
		v := leaseStatus(bURL)
		state, holder := v.lease("sys")
		return state == "waiting" && holder == holderA
	})

	// Both are watched from here to the end: at no look may both say they
	// run processes of sys.
	var looks, both, maxA, maxB atomic.Int64
	watchCtx, stopWatch := context.WithCancel(context.Background())
	var watching sync.WaitGroup
	watching.Go(func() {
		for watchCtx.Err() == nil {
			va := leaseStatus(aURL)
			vb := leaseStatus(bURL)
			na, nb := va.runs("sys"), vb.runs("sys")
			maxA.Store(max(maxA.Load(), int64(na)))
			maxB.Store(max(maxB.Load(), int64(nb)))
			looks.Add(1)
			if na > 0 && nb > 0 {
				both.Add(1)
			}
			time.Sleep(20 * time.Millisecond) // a sampling rate, not a wait
		}
	})
	t.Cleanup(func() { stopWatch(); watching.Wait() })

	// 120 jobs of 300ms: a scales sys to its max of 3.
	ids := enqueueSleeps(t, c, 120, 300)
	testenv.Eventually(t, 30*time.Second, "a to run sys at its max of 3", func() bool {
		v := leaseStatus(aURL)
		return v.runs("sys") == 3
	})
	children := workerPids(t, a.Pid())["sys"]

	// How long the lease has left bounds the takeover from below.
	opts, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	before := time.Now()
	left, err := rdb.PTTL(context.Background(), env.NS.SupervisorKey("sys")).Result()
	if err != nil || left <= 0 {
		t.Fatalf("the sys lease's time to live: %v, %v", left, err)
	}
	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Not a.Kill: that waits for a's stderr to close, which its
	// draining workers, who share it, hold open until they exit.
	killed := time.Now()
	testenv.Eventually(t, 30*time.Second, "b to take sys over and run it", func() bool {
		v := leaseStatus(bURL)
		state, _ := v.lease("sys")
		return state == "held" && v.runs("sys") > 0
	})
	takeover := time.Since(killed)
	if sinceRead := time.Since(before); sinceRead < left {
		t.Errorf("b took the pool over %s after the lease had %s left: before it lapsed", sinceRead, left)
	}
	testenv.Eventually(t, 30*time.Second, "the killed supervisor's workers to exit", func() bool {
		for _, pid := range children {
			if testenv.Alive(pid) {
				return false
			}
		}
		return true
	})
	_ = a.Wait(t, time.Minute) // killed: it exits with the signal

	done := waitDone(t, c, ids, 2*time.Minute)
	succeeded, lost, duplicated, bad := tally(ids, done)
	if lost != 0 {
		t.Errorf("%d of %d jobs did not succeed, for example %v", lost, len(ids), bad)
	}
	// `warren scaling` shows b's decisions once it holds the pool.
	testenv.Eventually(t, 30*time.Second, "warren scaling to show a decision made after the takeover", func() bool {
		out, _, code := warren(t, apiURL, "", "scaling", "sys", "-o", "json")
		var s struct {
			Pools []struct{ Decisions []struct{ At time.Time } }
		}
		return code == 0 && json.Unmarshal([]byte(out), &s) == nil && len(s.Pools) == 1 &&
			len(s.Pools[0].Decisions) > 0 && s.Pools[0].Decisions[0].At.After(killed)
	})
	stopWatch()
	watching.Wait()
	if both.Load() != 0 {
		t.Errorf("both supervisors reported sys processes at %d of %d looks", both.Load(), looks.Load())
	}
	summary(t, "jobs=%d succeeded=%d lost=%d duplicated=%d lease_left=%s takeover=%s a_max=%d b_max=%d looks=%d both=%d children_killed=%d",
		len(ids), succeeded, lost, duplicated, left, takeover.Round(time.Millisecond), maxA.Load(), maxB.Load(), looks.Load(), both.Load(), len(children))
}

// roundRobin is one address in front of several APIs, as a load balancer
// would be: each request goes to the next, and one that cannot be reached
// gets 502. served counts the requests each backend answered.
func roundRobin(t *testing.T, backends ...string) (string, []*atomic.Int64) {
	t.Helper()
	var next atomic.Uint64
	proxies := make([]*httputil.ReverseProxy, len(backends))
	served := make([]*atomic.Int64, len(backends))
	for i, b := range backends {
		u, err := url.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		proxies[i] = httputil.NewSingleHostReverseProxy(u)
		proxies[i].ErrorLog = nil
		proxies[i].ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) }
		served[i] = &atomic.Int64{}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(next.Add(1) % uint64(len(proxies)))
		served[i].Add(1)
		proxies[i].ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, served
}

// Two `warren api` behind one address share Redis: an idempotency key sent
// to each of them (one after the other, and then at once) gives one job;
// while one is killed with SIGKILL under a steady stream of submissions
// through the address, every job answered 202 succeeds.
func TestTwoAPIsBehindOneAddress(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	s := shared(env)
	_, urlA := startAPI(t, s)
	apiB, urlB := startAPI(t, s)
	startWorker(t, s, nil)
	ca, cb := newClient(t, urlA), newClient(t, urlB)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// One key, to each API in turn: the second answers the first's job.
	req := client.JobRequest{Type: "sys.echo", Payload: json.RawMessage(`{"n":1}`), IdempotencyKey: "order-1"}
	first, created, err := ca.Enqueue(ctx, req)
	if err != nil || !created {
		t.Fatalf("first submission to API a: created %v, %v", created, err)
	}
	again, created, err := cb.Enqueue(ctx, req)
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("the same key to API b: created %v, job %v, %v; want 200 with job %s", created, again, err, first.ID)
	}

	// One key, to both APIs at once: one job, one 202.
	const senders = 16
	var (
		mu         sync.Mutex
		ids        = map[string]int{}
		created202 int
		errs       []error
	)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range senders {
		c := ca
		if i%2 == 1 {
			c = cb
		}
		wg.Go(func() {
			<-start
			j, created, err := c.Enqueue(ctx, client.JobRequest{Type: "sys.echo", Payload: json.RawMessage(`{"n":2}`), IdempotencyKey: "order-2"})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ids[j.ID]++
			if created {
				created202++
			}
		})
	}
	close(start)
	wg.Wait()
	if len(errs) != 0 || len(ids) != 1 || created202 != 1 {
		t.Fatalf("%d concurrent submissions of one key to two APIs: jobs %v, %d answered 202, errors %v; want one job, one 202", senders, ids, created202, errs)
	}

	// Submissions without pause through one address in front of both; API
	// b is killed midway.
	front, served := roundRobin(t, urlA, urlB)
	sub := &submitter{c: newClient(t, front)}
	subCtx, stopSub := context.WithCancel(context.Background())
	waitSub := sub.run(subCtx, 4, 20*time.Millisecond)
	defer func() { stopSub(); waitSub() }()
	sub.waitCounts(t, "jobs accepted through both APIs", 40, 0)
	if served[0].Load() == 0 || served[1].Load() == 0 {
		t.Fatalf("the front served %d and %d requests; want both APIs used", served[0].Load(), served[1].Load())
	}
	acceptedBefore, _ := sub.counts()
	apiB.Kill(t)
	sub.waitCounts(t, "jobs accepted by the API left", acceptedBefore+60, 0)
	stopSub()
	waitSub()

	sub.mu.Lock()
	accepted, statuses := slices.Clone(sub.accepted), maps.Clone(sub.statuses)
	sub.mu.Unlock()
	for status, n := range statuses {
		// 502: the front could not reach the killed API; 503: an API
		// refused; 0: no answer at all.
		if status != 0 && status != http.StatusBadGateway && status != http.StatusServiceUnavailable {
			t.Errorf("%d requests answered %d (last error %v)", n, status, sub.lastErr)
		}
	}
	done := waitDone(t, ca, accepted, 2*time.Minute)
	succeeded, lost, duplicated, bad := tally(accepted, done)
	if lost != 0 {
		t.Errorf("%d of %d accepted jobs did not succeed, for example %v", lost, len(accepted), bad)
	}
	summary(t, "submitted=%d succeeded=%d lost=%d duplicated=%d accepted_before_kill=%d refused=%v idempotent_concurrent=%d",
		len(accepted), succeeded, lost, duplicated, acceptedBefore, statuses, senders)
}
