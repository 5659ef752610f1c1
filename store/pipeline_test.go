package store

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// tripCounter counts the round trips a client makes.
type tripCounter struct{ trips atomic.Int64 }

func (c *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.trips.Add(1)
		return next(ctx, cmd)
	}
}

func (c *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.trips.Add(1)
		return next(ctx, cmds)
	}
}

// Concurrent callers share round trips, and each gets the reply to its own
// command: every INCR of one counter from 64 goroutines sees a different
// value, all of them seen, in far fewer round trips than commands.
func TestPipelineSharesRoundTrips(t *testing.T) {
	t.Parallel()
	// testenv imports this package, so this test reads the address itself.
	opts, err := redis.ParseURL(cmp.Or(os.Getenv("WARREN_REDIS_URL"), "redis://127.0.0.1:6379/0"))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	// Cleanups run last in, first out, after the test's defers: the key's
	// removal below runs before this, on an open client.
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis at %s: %v (make test starts it)", opts.Addr, err)
	}
	key := fmt.Sprintf("pipeline-test-%d", rand.Int64())
	t.Cleanup(func() {
		if err := rdb.Del(context.Background(), key).Err(); err != nil {
			t.Errorf("remove %s: %v", key, err)
		}
	})
	var counter tripCounter
	rdb.AddHook(&counter)

	p := newPipeline(rdb, 0, 0)
	const callers, each = 64, 100
	var (
		mu   sync.Mutex
		seen = map[int64]bool{}
		wg   sync.WaitGroup
	)
	for range callers {
		wg.Go(func() {
			for range each {
				var cmd *redis.IntCmd
				p.Do(func(pl *trip) { cmd = pl.Incr(ctx, key) })
				n, err := cmd.Result()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[n] {
					t.Errorf("two callers got the reply %d", n)
				}
				seen[n] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != callers*each {
		t.Errorf("%d distinct replies, want %d", len(seen), callers*each)
	}
	for n := int64(1); n <= callers*each; n++ {
		if !seen[n] {
			t.Fatalf("no caller got the reply %d", n)
		}
	}
	trips := counter.trips.Load()
	t.Logf("%d commands in %d round trips", callers*each, trips)
	if trips > callers*each/2 {
		t.Errorf("%d round trips for %d commands: calls are not sharing them", trips, callers*each)
	}
}
