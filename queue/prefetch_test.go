package queue_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/queue"
)

// A consumer with the default (adaptive) prefetch raises it while messages
// are quick to handle, and the broker then hands it more than its
// concurrency, and lowers it again once they are slow.
func TestAdaptivePrefetch(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const pool = "adapt"
	const concurrency = 2
	declarePool(t, env.Broker, pool, "adapt.job")
	var slow atomic.Bool
	changes := make(chan int, 16)
	var handled atomic.Int64
	consume(t, env.Broker, queue.ConsumeOptions{
		Pool: pool, Concurrency: concurrency,
		PrefetchChanged: func(n int) { changes <- n },
	}, func(d queue.Delivery) {
		if slow.Load() {
			time.Sleep(300 * time.Millisecond)
		}
		handled.Add(1)
		_ = d.Ack()
	})
	// Quick messages: within a window the tuner sees many, each handled
	// at once.
	burst := func(n, from int) {
		msgs := make([]queue.Message, n)
		for i := range msgs {
			msgs[i] = message(t, newJob("adapt.job", from+i), "")
		}
		publishAll(t, env.Broker, msgs)
	}
	burst(3000, 0)
	select {
	case n := <-changes:
		if n != concurrency*queue.AdaptivePrefetchFactor {
			t.Errorf("prefetch raised to %d, want %d", n, concurrency*queue.AdaptivePrefetchFactor)
		}
	case <-time.After(wait):
		t.Fatal("prefetch never rose while messages took no time to handle")
	}
	testenv.Eventually(t, wait, "the consumer's prefetch to show as raised", func() bool {
		return consumerPrefetch(t, env.NS.Queue(pool)) == concurrency*queue.AdaptivePrefetchFactor
	})
	// Only then are messages slow: a quick one left when they turn slow
	// would take 300 ms too, and enough of them (a slow run, -race) would
	// outlast the wait below.
	testenv.Eventually(t, wait, "the quick messages handled", func() bool { return handled.Load() == 3000 })
	slow.Store(true)
	burst(10, 3000)
	select {
	case n := <-changes:
		if n != concurrency {
			t.Errorf("prefetch lowered to %d, want %d", n, concurrency)
		}
	case <-time.After(wait):
		t.Fatal("prefetch never fell while messages took 300ms to handle")
	}
	// Every message was handled once, across the change of consumer.
	testenv.Eventually(t, wait, "all 3010 messages handled", func() bool { return handled.Load() == 3010 })
	time.Sleep(200 * time.Millisecond)
	if n := handled.Load(); n != 3010 {
		t.Errorf("%d messages handled, want 3010", n)
	}
	// Each replaced consumer's channel was closed once its deliveries were
	// settled: the connection keeps its publishing channel and the current
	// consumers' of both lanes.
	testenv.Eventually(t, wait, "the replaced consumers' channels to close", func() bool {
		return channelsOf(t, "test-"+string(env.NS)) == 3
	})
}

// channelsOf counts the channels of the connection a client named, or
// returns -1 while the management API does not list it.
func channelsOf(t *testing.T, client string) int {
	t.Helper()
	var conns []struct {
		Name       string `json:"name"`
		Properties struct {
			Name string `json:"connection_name"`
		} `json:"client_properties"`
	}
	mgmt(t, http.MethodGet, "/api/connections", &conns)
	for _, c := range conns {
		if c.Properties.Name != client {
			continue
		}
		var chans []json.RawMessage
		mgmt(t, http.MethodGet, "/api/connections/"+url.PathEscape(c.Name)+"/channels", &chans)
		return len(chans)
	}
	// Not listed yet: the management API learns of connections from
	// statistics it gathers every few seconds.
	t.Logf("no connection named %s listed yet", client)
	return -1
}
