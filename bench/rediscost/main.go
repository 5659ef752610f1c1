// Command rediscost measures what Redis spends per job on warren's record
// keeping, through the real store: creating a job without an idempotency key
// (HSET and ZADD) and with one (the create script), and starting and
// finishing jobs from one caller at a time (a round trip each) and from 32
// at once (sharing round trips, as a worker's handlers do); then the floor
// (floor.go), the least that warren's contract asks of Redis per job,
// measured the same way. It reads Redis's own CPU time (INFO cpu), so it
// needs nothing on this machine but Redis, and it counts whatever any other
// client makes that Redis do meanwhile: point it at a Redis of its own for
// figures to trust. docs/performance.md cites its figures:
//
//	go run ./bench/rediscost
//	WARREN_REDIS_URL=redis://127.0.0.1:6399/0 go run ./bench/rediscost
package main

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

const n = 20000

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "rediscost:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	url := cmp.Or(os.Getenv("WARREN_REDIS_URL"), "redis://127.0.0.1:6379/0")
	opts, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ns := jobs.Namespace(fmt.Sprintf("rediscost-%06d", rand.IntN(1e6)))
	st, err := store.New(store.Config{URL: url, Namespace: ns})
	if err != nil {
		return err
	}
	defer st.Close()
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := testenv.Remove(cctx, ns); err != nil {
			fmt.Fprintln(os.Stderr, "rediscost: cleanup:", err)
		}
	}()

	newJobs := func(idempotent bool) []*jobs.Job {
		js := make([]*jobs.Job, n)
		for i := range js {
			js[i] = &jobs.Job{ID: jobs.NewID(), Type: "sys.echo", Pool: "sys", Status: jobs.StatusQueued,
				Payload: []byte(`{"bench":true,"text":"the quick brown fox"}`), MaxAttempts: 3,
				Timeout: jobs.Duration(30 * time.Second), CreatedAt: time.Now()}
			if idempotent {
				js[i].IdempotencyKey = "k-" + js[i].ID
			}
		}
		return js
	}
	measure := func(what string, jobs int, f func() error) error {
		before, err := redisCPU(ctx, rdb)
		if err != nil {
			return err
		}
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		after, err := redisCPU(ctx, rdb)
		if err != nil {
			return err
		}
		fmt.Printf("%-64s Redis %.3f s per 10,000 jobs\n", what, (after-before).Seconds()*10000/float64(jobs))
		return nil
	}
	create := func(js []*jobs.Job) func() error {
		return func() error {
			for b := 0; b < len(js); b += 100 {
				if _, err := st.Create(ctx, js[b:min(b+100, len(js))]); err != nil {
					return err
				}
			}
			return nil
		}
	}
	plain, scripted := newJobs(false), newJobs(true)
	if err := measure("create, no idempotency key (HSET, ZADD), batches of 100", n, create(plain)); err != nil {
		return err
	}
	if err := measure("create, idempotency key (script, with the key), batches of 100", n, create(scripted)); err != nil {
		return err
	}
	// Start and finish, from 1 caller and from 32 (a worker's handlers).
	for _, c := range []struct {
		callers int
		js      []*jobs.Job
	}{{1, plain[:n/2]}, {32, plain[n/2:]}} {
		lifecycle := func() error {
			var (
				next atomic.Int64
				wg   sync.WaitGroup
				mu   sync.Mutex
				fail error
			)
			for range c.callers {
				wg.Go(func() {
					for {
						i := int(next.Add(1)) - 1
						if i >= len(c.js) {
							return
						}
						id := c.js[i].ID
						err := func() error {
							if _, err := st.Start(ctx, id, "rediscost", 0, "t-"+id, time.Now()); err != nil {
								return err
							}
							return st.Finish(ctx, id, store.Outcome{Status: jobs.StatusSucceeded, Result: []byte(`{"ok":true}`), Attempt: 1}, time.Now())
						}()
						if err != nil {
							mu.Lock()
							fail = cmp.Or(fail, err)
							mu.Unlock()
							return
						}
					}
				})
			}
			wg.Wait()
			return fail
		}
		what := fmt.Sprintf("start and finish, %d caller(s) at once", c.callers)
		if err := measure(what, len(c.js), lifecycle); err != nil {
			return err
		}
	}
	return floor(ctx, rdb, ns, measure)
}

// redisCPU reads Redis's own CPU time, user and system.
func redisCPU(ctx context.Context, rdb *redis.Client) (time.Duration, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		for _, k := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(line, k); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return 0, err
				}
				total += f
			}
		}
	}
	return time.Duration(total * float64(time.Second)), nil
}
