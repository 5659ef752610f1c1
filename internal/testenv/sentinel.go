package testenv

// Redis on more than one node, for failover tests: a primary, its replica
// and three Sentinels, and a Redis Cluster node.

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name the Sentinels of a SentinelSet monitor the
// primary by.
const SentinelMaster = "warren"

// Sentinel timings: short, so that a failover takes seconds. A primary is
// subjectively down after down-after; the Sentinels then agree it is down,
// elect a leader and promote the replica (a random wait of up to a second
// comes first), and the whole failover must finish within the failover
// timeout, which also spaces out retries.
const (
	sentinelDownAfter       = 1000 * time.Millisecond
	sentinelFailoverTimeout = 4000 * time.Millisecond
	// sentinelReadyTimeout bounds the wait for the set to be watched: the
	// replica in sync, and each Sentinel knowing the replica and the
	// other two (they announce themselves every two seconds).
	sentinelReadyTimeout = 30 * time.Second
)

// SentinelSet is a primary and one replica watched by three Sentinels
// (quorum two), all on loopback on ports of their own, with the private
// Redis servers' durability (StartRedis). Which node is the primary
// changes with a failover: ask PrimaryAddr. Its methods fail the test with
// t.Fatalf: call them from the test's goroutine.
type SentinelSet struct {
	nodes     []*Redis // the data nodes: the first primary, then the replica
	sentinels []*Redis
}

// StartSentinelRedis starts a primary, its replica and three Sentinels and
// returns once the replica is in sync and every Sentinel knows the replica
// and the other Sentinels, so that a failover can happen. All of it is
// killed and deleted when the test ends. Under -short the test is skipped;
// without redis-server it fails.
func StartSentinelRedis(t testing.TB) *SentinelSet {
	t.Helper()
	s := &SentinelSet{}
	primary := newRedis(t)
	primary.args = dataNodeArgs
	primary.Start(t)
	replica := newRedis(t)
	replica.args = append(append([]string{}, dataNodeArgs...), "--replicaof", "127.0.0.1", strconv.Itoa(primary.port))
	replica.Start(t)
	s.nodes = []*Redis{primary, replica}
	for range 3 {
		sen := newRedis(t)
		sen.conf = filepath.Join(sen.dir, "sentinel.conf")
		conf := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 2\n"+
			"sentinel down-after-milliseconds %[1]s %[3]d\n"+
			"sentinel failover-timeout %[1]s %[4]d\n"+
			"sentinel parallel-syncs %[1]s 1\n",
			SentinelMaster, primary.port, sentinelDownAfter.Milliseconds(), sentinelFailoverTimeout.Milliseconds())
		// Sentinel rewrites its file with what it learns: it must be writable.
		if err := os.WriteFile(sen.conf, []byte(conf), 0o600); err != nil {
			t.Fatalf("sentinel config: %v", err)
		}
		sen.args = []string{"--sentinel"}
		sen.Start(t)
		s.sentinels = append(s.sentinels, sen)
	}
	s.waitReplica(t, replica)
	err := waitFor(sentinelReadyTimeout, func() bool {
		for _, sen := range s.sentinels {
			c := sentinelClient(sen)
			replicas, err1 := c.Replicas(context.Background(), SentinelMaster).Result()
			others, err2 := c.Sentinels(context.Background(), SentinelMaster).Result()
			_ = c.Close()
			if err1 != nil || err2 != nil || len(replicas) != 1 || len(others) != len(s.sentinels)-1 {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("sentinels: not watching the primary and its replica within %s%s", sentinelReadyTimeout, s.sentinels[0].logTail())
	}
	return s
}

// dataNodeArgs are what the primary and the replica run with beyond the
// private servers' defaults: a full sync starts at once rather than after
// the default five seconds' wait for more replicas to join it.
var dataNodeArgs = []string{"--repl-diskless-sync-delay", "0"}

// Addrs are the Sentinels' host:port addresses.
func (s *SentinelSet) Addrs() []string {
	out := make([]string, len(s.sentinels))
	for i, sen := range s.sentinels {
		out[i] = sen.Addr()
	}
	return out
}

// Master is the name the Sentinels know the primary by.
func (s *SentinelSet) Master() string { return SentinelMaster }

// Nodes are the data nodes, the first primary first.
func (s *SentinelSet) Nodes() []*Redis { return s.nodes }

// PrimaryAddr is the primary's host:port as the Sentinels that answer
// agree on it; "" while they disagree (during a failover) or none answers.
func (s *SentinelSet) PrimaryAddr() string {
	addr := ""
	for _, sen := range s.sentinels {
		c := sentinelClient(sen)
		got, err := c.GetMasterAddrByName(context.Background(), SentinelMaster).Result()
		_ = c.Close()
		if err != nil {
			continue // a Sentinel that is down has no say
		}
		a := net.JoinHostPort(got[0], got[1])
		if addr != "" && a != addr {
			return ""
		}
		addr = a
	}
	return addr
}

// KillPrimary kills the primary with SIGKILL, as a crash would, and
// returns it.
func (s *SentinelSet) KillPrimary(t testing.TB) *Redis {
	t.Helper()
	addr := s.PrimaryAddr()
	for _, n := range s.nodes {
		if n.Addr() == addr {
			n.Kill(t)
			return n
		}
	}
	t.Fatalf("sentinels: no data node is the primary %q", addr)
	return nil
}

// WaitFailover waits until every Sentinel names a primary other than old
// and that node says it is the primary, and returns its address.
func (s *SentinelSet) WaitFailover(t testing.TB, old string, timeout time.Duration) string {
	t.Helper()
	var addr string
	err := waitFor(timeout, func() bool {
		addr = s.PrimaryAddr()
		if addr == "" || addr == old {
			return false
		}
		n := s.node(addr)
		return n != nil && strings.Contains(n.info(t, "replication"), "role:master")
	})
	if err != nil {
		t.Fatalf("sentinels: no failover from %s within %s%s", old, timeout, s.sentinels[0].logTail())
	}
	return addr
}

// Rejoin starts a stopped data node again as a replica of the primary, as
// an operator brings back a crashed primary, and returns once it is in
// sync. (The Sentinels would turn it into a replica themselves, but only
// after it has been back for some ten seconds or more.)
func (s *SentinelSet) Rejoin(t testing.TB, r *Redis) {
	t.Helper()
	host, port, err := net.SplitHostPort(s.PrimaryAddr())
	if err != nil {
		t.Fatalf("sentinels: no primary to rejoin: %v", err)
	}
	r.args = append(append([]string{}, dataNodeArgs...), "--replicaof", host, port)
	r.Start(t)
	s.waitReplica(t, r)
}

// node is the data node at addr, or nil.
func (s *SentinelSet) node(addr string) *Redis {
	for _, n := range s.nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// waitReplica waits until r replicates its primary.
func (s *SentinelSet) waitReplica(t testing.TB, r *Redis) {
	t.Helper()
	if err := waitFor(sentinelReadyTimeout, func() bool {
		return strings.Contains(r.info(t, "replication"), "master_link_status:up")
	}); err != nil {
		t.Fatalf("private Redis on port %d: not in sync with its primary within %s%s", r.port, sentinelReadyTimeout, r.logTail())
	}
}

// StartRedisCluster starts a private redis-server in cluster mode: one
// node, no slots assigned, enough for INFO to say cluster_enabled:1.
func StartRedisCluster(t testing.TB) *Redis {
	t.Helper()
	r := newRedis(t)
	// The cluster bus listens on a port of its own, by default the
	// client port + 10000, which another test may hold: name a free one.
	r.args = []string{"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(r.dir, "nodes.conf"),
		"--cluster-port", strconv.Itoa(freePort(t))}
	r.Start(t)
	return r
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// info returns a section of the server's INFO, or "" when it does not
// answer.
func (r *Redis) info(t testing.TB, section string) string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), DialTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	s, _ := c.Info(context.Background(), section).Result()
	return s
}

// sentinelClient is a client of one Sentinel, which fails fast when the
// Sentinel is down.
func sentinelClient(sen *Redis) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: sen.Addr(), DialTimeout: time.Second, MaxRetries: -1})
}
