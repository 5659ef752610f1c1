package ha_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
)

// rabbitEnv is the environment of a warren process on the RabbitMQ cluster
// of nodes, in env's namespace, on the shared Redis: every node's AMQP URL
// and management API, quorum queues on all three. The rescuer looks every
// second and takes a job for lost after 3 seconds, so that a message a
// node took with it would come back within the test.
func rabbitEnv(env *testenv.Env, nodes []*testenv.RabbitMQ) []string {
	var mgmt []string
	for _, n := range nodes {
		mgmt = append(mgmt, n.ManagementURL())
	}
	return []string{
		"WARREN_NAMESPACE=" + string(env.NS),
		"WARREN_AMQP_URL=" + strings.Join(testenv.URLs(nodes), ","),
		"WARREN_MANAGEMENT_URL=" + strings.Join(mgmt, ","),
		"WARREN_AMQP_QUORUM_GROUP_SIZE=3",
		"WARREN_REDIS_URL=" + testenv.RedisURL(),
		"WARREN_RESCUE_INTERVAL=1s",
		"WARREN_RESCUE_GRACE=3s",
		"WARREN_LOG_LEVEL=info",
		"WARREN_SHUTDOWN_GRACE=5s",
	}
}

// TestRabbitMQClusterNodeLoss runs an API and two workers on a three-node
// RabbitMQ cluster under a steady load of submissions, stops the node the
// API is connected to and starts it again, then does the same to the node
// a worker is connected to. Every process must move to a node that runs,
// without a restart; every job the API accepted must end succeeded; the
// API may answer 503 while it moves, and nothing else.
//
// A job's record counts the attempts it started: a stopped node returns
// the messages its consumers held, and a worker that kept running the
// attempt (its lease alive) holds the copy back until the attempt ends, so
// no job should run twice; duplicated counts those that did.
//
//	go test ./ha -run TestRabbitMQClusterNodeLoss -v
func TestRabbitMQClusterNodeLoss(t *testing.T) {
	t.Parallel()
	began := time.Now()
	env := testenv.New(t)
	nodes := testenv.StartRabbitMQCluster(t, 3)
	penv := rabbitEnv(env, nodes)
	st := startStack(t, penv)
	l := startLoad(t, st.client, 4, 25*time.Millisecond)
	l.waitAccepted(t, 200, "before a node stops", time.Minute)

	// up is a node that runs, to ask the cluster through.
	up := func(except int) *testenv.RabbitMQ { return nodes[(except+1)%len(nodes)] }
	// nodeOf is the node the connection named name is on, as an index.
	nodeOf := func(name string, except int) int {
		t.Helper()
		at := -1
		testenv.Eventually(t, time.Minute, name+"'s connection on a running node", func() bool {
			conns, err := up(except).Connections()
			if err != nil || len(conns[name]) == 0 {
				return false
			}
			at = slices.IndexFunc(nodes, func(n *testenv.RabbitMQ) bool { return n.Node() == conns[name][0] })
			return at >= 0 && at != except
		})
		return at
	}
	var outages []string
	// cycle stops the node of the connection named name, waits for the
	// processes to carry on without it, and starts it again.
	cycle := func(name string) {
		t.Helper()
		at := nodeOf(name, -1)
		stopped := time.Now()
		nodes[at].Stop(t)
		moved := nodeOf(name, at)
		l.waitAccepted(t, 100, fmt.Sprintf("with node %d stopped", at), time.Minute)
		nodes[at].Start(t)
		outages = append(outages, fmt.Sprintf("%s:%d->%d:%.1fs", name, at, moved, time.Since(stopped).Seconds()))
		testenv.Eventually(t, time.Minute, "the node back in the cluster", func() bool {
			running, err := nodes[at].RunningNodes()
			return err == nil && len(running) == len(nodes)
		})
		l.waitAccepted(t, 100, fmt.Sprintf("with node %d back", at), time.Minute)
	}
	cycle("warren-api")
	cycle("warren-worker-sys")

	f := l.settle(t, 2*time.Minute)
	testenv.Summary(t, "%s connections=%d rescued=%d outages=%s test_seconds=%.0f",
		f.summary(), st.logged("connected to RabbitMQ"), st.logged("rescued a lost job: published it again"),
		strings.Join(outages, ","), time.Since(began).Seconds())
	f.check(t)
	if f.duplicated > 0 {
		t.Errorf("%d jobs took more than one attempt: a node's stop ran them twice", f.duplicated)
	}
}
