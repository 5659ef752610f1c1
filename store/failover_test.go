package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// sentinelStore is a store of the primary the set's Sentinels name, whose
// writes wait for replicas acknowledgements.
func sentinelStore(t *testing.T, set *testenv.SentinelSet, ns jobs.Namespace, replicas int, timeout time.Duration) *store.Store {
	t.Helper()
	st, err := store.New(store.Config{
		URL:          "redis://127.0.0.1:1/0", // with Sentinel, the host is not used
		Sentinel:     store.Sentinel{Addrs: set.Addrs(), Master: set.Master()},
		WaitReplicas: replicas, WaitTimeout: timeout,
		Namespace: ns, Logger: testenv.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// With WaitReplicas, a record Create reports written is on the replica
// when Create returns, and an outcome Finish reports is too; asked to wait
// for more replicas than there are, both fail as an outage
// (ErrUnavailable) that says why (ErrNotReplicated). The store reaches the
// primary through the Sentinels: the URL's host is a port nothing serves.
func TestWaitReplicas(t *testing.T) {
	t.Parallel()
	set := testenv.StartSentinelRedis(t)
	ns := testenv.Namespace(t) // the stores' alike: they share the jobs
	replica := redis.NewClient(&redis.Options{Addr: set.Nodes()[1].Addr()})
	defer replica.Close()

	one := sentinelStore(t, set, ns, 1, 2*time.Second)
	j := newJob(1)
	if _, err := one.Create(ctx(t), []*jobs.Job{j}); err != nil {
		t.Fatalf("Create waiting for the one replica: %v", err)
	}
	key := one.Namespace().JobKey(j.ID)
	if n, err := replica.Exists(ctx(t), key).Result(); err != nil || n != 1 {
		t.Fatalf("the replica does not hold the record Create reported: %d, %v", n, err)
	}
	if _, err := one.Start(ctx(t), j.ID, "w", -1, "token", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := one.Finish(ctx(t), j.ID, store.Outcome{Status: jobs.StatusSucceeded}, time.Now()); err != nil {
		t.Fatalf("Finish waiting for the one replica: %v", err)
	}
	if got, err := replica.HGet(ctx(t), key, "status").Result(); err != nil || got != string(jobs.StatusSucceeded) {
		t.Fatalf("the replica says the job is %q (%v), after Finish reported it succeeded", got, err)
	}

	two := sentinelStore(t, set, ns, 2, 100*time.Millisecond)
	_, err := two.Create(ctx(t), []*jobs.Job{newJob(2)})
	if !errors.Is(err, store.ErrNotReplicated) || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Create waiting for two replicas of one = %v, want ErrNotReplicated and ErrUnavailable", err)
	}
	k := newJob(3)
	if _, err := one.Create(ctx(t), []*jobs.Job{k}); err != nil {
		t.Fatal(err)
	}
	if _, err := two.Start(ctx(t), k.ID, "w", -1, "token", time.Now()); err != nil {
		t.Fatal(err)
	}
	err = two.Finish(ctx(t), k.ID, store.Outcome{Status: jobs.StatusSucceeded}, time.Now())
	if !errors.Is(err, store.ErrNotReplicated) || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Finish waiting for two replicas of one = %v, want ErrNotReplicated and ErrUnavailable", err)
	}
	// Written again once the wait can be met (as a worker does), the
	// outcome settles, and is on the replica.
	err = one.Finish(ctx(t), k.ID, store.Outcome{Status: jobs.StatusSucceeded}, time.Now())
	if err != nil && !errors.Is(err, store.ErrTerminal) {
		t.Fatalf("Finish again = %v, want nil or ErrTerminal", err)
	}
	if got, err := replica.HGet(ctx(t), one.Namespace().JobKey(k.ID), "status").Result(); err != nil || got != string(jobs.StatusSucceeded) {
		t.Fatalf("the replica says the job is %q (%v), after Finish settled it", got, err)
	}
}

// A Finish that finds its job ended may repeat one whose reply was lost, on
// another connection: it reports the end only once the replicas have every
// write before it, not at once because its own connection wrote nothing.
func TestFinishOfAnEndedJobWaitsForReplicas(t *testing.T) {
	t.Parallel()
	set := testenv.StartSentinelRedis(t)
	ns := testenv.Namespace(t)
	one := sentinelStore(t, set, ns, 1, 300*time.Millisecond)
	j := newJob(1)
	if _, err := one.Create(ctx(t), []*jobs.Job{j}); err != nil {
		t.Fatal(err)
	}
	if _, err := one.Start(ctx(t), j.ID, "w", -1, "token", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := one.Finish(ctx(t), j.ID, store.Outcome{Status: jobs.StatusSucceeded}, time.Now()); err != nil {
		t.Fatal(err)
	}
	// A store of its own: its connection has written nothing.
	again := sentinelStore(t, set, ns, 1, 300*time.Millisecond)
	if err := again.Ping(ctx(t)); err != nil {
		t.Fatal(err)
	}
	thaw := set.Nodes()[1].Freeze(t) // the replica acknowledges nothing now
	err := again.Finish(ctx(t), j.ID, store.Outcome{Status: jobs.StatusSucceeded}, time.Now())
	thaw()
	if !errors.Is(err, store.ErrNotReplicated) || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Finish of an ended job with the replica frozen = %v, want ErrNotReplicated and ErrUnavailable", err)
	}
	err = again.Finish(ctx(t), j.ID, store.Outcome{Status: jobs.StatusSucceeded}, time.Now())
	if !errors.Is(err, store.ErrTerminal) {
		t.Fatalf("Finish of an ended job with the replica back = %v, want ErrTerminal", err)
	}
}

// A Redis Cluster node is refused with a reason; a plain Redis is not.
func TestCheckServerRefusesCluster(t *testing.T) {
	t.Parallel()
	node := testenv.StartRedisCluster(t)
	st, err := store.New(store.Config{URL: node.URL(), Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CheckServer(ctx(t)); !errors.Is(err, store.ErrCluster) {
		t.Fatalf("CheckServer of a cluster node = %v, want ErrCluster", err)
	}
	f := setup(t)
	if err := f.st.CheckServer(ctx(t)); err != nil {
		t.Fatalf("CheckServer of a plain Redis = %v", err)
	}
}
