package ha_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
)

// redisEnv is the environment of a warren process that finds Redis
// through set's Sentinels, in env's namespace, on the shared RabbitMQ. The
// rescuer looks every second and takes a job for lost after 3 seconds, so
// that a job whose state a failover lost comes back within the test.
func redisEnv(env *testenv.Env, set *testenv.SentinelSet, extra ...string) []string {
	return append([]string{
		"WARREN_NAMESPACE=" + string(env.NS),
		"WARREN_AMQP_URL=" + testenv.AMQPURL(),
		// With Sentinel only the URL's scheme, database and credentials
		// count; the host is the first primary's, for the reader.
		"WARREN_REDIS_URL=redis://" + set.Nodes()[0].Addr() + "/0",
		"WARREN_REDIS_SENTINEL_ADDRS=" + strings.Join(set.Addrs(), ","),
		"WARREN_REDIS_SENTINEL_MASTER=" + set.Master(),
		"WARREN_RESCUE_INTERVAL=1s",
		"WARREN_RESCUE_GRACE=3s",
		"WARREN_MANAGEMENT_URL=off",
		"WARREN_LOG_LEVEL=info",
		"WARREN_SHUTDOWN_GRACE=5s",
	}, extra...)
}

// failoverTimeout bounds the Sentinels' failover: a second until the
// primary is down, a second of random wait, the election and the promotion.
const failoverTimeout = 30 * time.Second

// TestRedisSentinelFailover kills the Redis primary under a steady load of
// submissions: an API and two workers find Redis through three Sentinels.
// The Sentinels promote the replica; the old primary is brought back as
// the new one's replica. The stack must take jobs again after the failover
// without a restart, and answer nothing but 202 and 503 meanwhile.
//
// With WARREN_REDIS_WAIT_REPLICAS=1 (each job's record and each outcome
// acknowledged by the replica) every job the API accepted must end
// succeeded, and the API refuses jobs (503) from the kill until the old
// primary is back as a replica, since no replica can acknowledge them.
// Without the wait the figures are measured for docs/guarantees.md, and an
// accepted job may be lost: the test says how many were.
//
//	go test ./ha -run TestRedisSentinelFailover -v
func TestRedisSentinelFailover(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		wait int
	}{{"wait_replicas=1", 1}, {"wait_replicas=0", 0}} {
		// One after the other: on two cores, two stacks under load at once
		// would measure each other.
		t.Run(tt.name, func(t *testing.T) {
			f := redisFailover(t, tt.wait)
			if tt.wait > 0 {
				f.check(t)
			} else if len(f.other) > 0 || f.unanswered > 0 {
				t.Errorf("the API answered other than 202 and 503: %v, %d unanswered (last: %v)", f.other, f.unanswered, f.lastErr)
			}
		})
	}
}

// redisFailover runs one failover under load with the given
// WARREN_REDIS_WAIT_REPLICAS, prints its summary line and returns its
// figures.
func redisFailover(t *testing.T, wait int) figures {
	t.Helper()
	began := time.Now()
	env := testenv.New(t)
	set := testenv.StartSentinelRedis(t)
	penv := redisEnv(env, set, fmt.Sprintf("WARREN_REDIS_WAIT_REPLICAS=%d", wait))
	st := startStack(t, penv)
	l := startLoad(t, st.client, 4, 25*time.Millisecond)
	l.waitAccepted(t, 200, "before the failover", time.Minute)

	old := set.PrimaryAddr()
	killedAt := time.Now()
	dead := set.KillPrimary(t)
	promoted := set.WaitFailover(t, old, failoverTimeout)
	failover := time.Since(killedAt)
	t.Logf("failover: %s promoted %s after the kill of %s", promoted, failover.Round(time.Millisecond), old)
	set.Rejoin(t, dead)
	rejoined := time.Since(killedAt)
	t.Logf("failover: %s back as a replica %s after the kill", old, rejoined.Round(time.Millisecond))
	l.waitAccepted(t, 200, "after the failover", time.Minute)

	f := l.settle(t, 2*time.Minute)
	testenv.Summary(t, "%s failover_seconds=%.1f rejoin_seconds=%.1f dropped_messages=%d rescued=%d test_seconds=%.0f",
		f.summary(), failover.Seconds(), rejoined.Seconds(), st.logged("no record for job; dropping message"),
		st.logged("rescued a lost job: published it again"), time.Since(began).Seconds())
	if f.refused == 0 && f.withoutService < failover {
		t.Errorf("the API took jobs all through a failover of %s (longest gap %s): the load did not reach Redis", failover, f.withoutService)
	}
	return f
}

// A Redis Cluster node is refused as a process starts, with the reason.
func TestRedisClusterRefused(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	node := testenv.StartRedisCluster(t)
	p := testenv.StartWarren(t, binary, []string{
		"WARREN_NAMESPACE=" + string(env.NS),
		"WARREN_AMQP_URL=" + testenv.AMQPURL(),
		"WARREN_REDIS_URL=" + node.URL(),
	}, "api", "--addr", "127.0.0.1:0")
	if err := p.Wait(t, time.Minute); err == nil {
		t.Fatal("warren api started on a Redis Cluster node")
	}
	for _, want := range []string{"redis cluster is not supported", "CROSSSLOT", "Sentinel"} {
		if !strings.Contains(p.Output(), want) {
			t.Errorf("warren api's refusal does not say %q:\n%s", want, p.Output())
		}
	}
}
