package main

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/internal/combine"
	"github.com/warrenhq/warren/jobs"
)

// The floor is the least Redis work that warren's contract asks of one job,
// written out by hand for this measurement: a record created with its
// expiry, in its pool's index of waiting jobs (the rescuer's only way to
// find a job whose message was lost); an attempt's start and its outcome,
// each checked against the record and written with it in one script, and
// the end published for those who wait. It has none of what the real
// scripts add on top (the job lists and per-minute counts, the attempt
// history, the index of running jobs, the checks against stale and parked
// copies, the expiry of a started record), so the gap between the two is
// what those cost: docs/performance.md sets them out.
const (
	floorStartLua = `
local r = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'start_token', 'pool')
if r[1] ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'attempt', 1, 'status', 'running', 'worker', ARGV[1], 'started_at', ARGV[2], 'start_token', ARGV[3])
redis.call('ZREM', ARGV[4] .. r[4], ARGV[5])
return 1`
	floorFinishLua = `
local r = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'pool')
if r[1] ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'succeeded', 'result', ARGV[1], 'finished_at', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[3], 'succeeded')
return 1`
)

// floor measures the floor in ns, as the store's own calls are measured
// beside it: creation in batches of 100, start and finish from 32 callers
// sharing round trips (two in flight, as the store's pipeline does).
func floor(ctx context.Context, rdb *redis.Client, ns jobs.Namespace, measure func(string, int, func() error) error) error {
	start, finish := redis.NewScript(floorStartLua), redis.NewScript(floorFinishLua)
	for _, sc := range []*redis.Script{start, finish} {
		if err := sc.Load(ctx, rdb).Err(); err != nil {
			return fmt.Errorf("load the floor's scripts: %w", err)
		}
	}
	keep := strconv.FormatInt((7 * 24 * time.Hour).Milliseconds(), 10)
	ids := make([]string, n/2)
	for i := range ids {
		ids[i] = jobs.NewID()
	}
	create := func() error {
		for b := 0; b < len(ids); b += 100 {
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				now := time.Now().UnixMilli()
				for _, id := range ids[b:min(b+100, len(ids))] {
					p.HSet(ctx, ns.JobKey(id), "id", id, "type", "sys.echo", "pool", "sys", "status", "queued",
						"payload", `{"bench":true,"text":"the quick brown fox"}`, "attempt", 0, "max_attempts", 3,
						"timeout_ms", 30000, "created_at", now)
					p.PExpire(ctx, ns.JobKey(id), 7*24*time.Hour)
					p.ZAdd(ctx, ns.WaitingKey("sys"), redis.Z{Score: float64(now), Member: id})
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := measure("floor: create (HSET, PEXPIRE, ZADD), batches of 100", len(ids), create); err != nil {
		return err
	}
	pipe := &combine.Combiner[func(redis.Pipeliner)]{Flights: 2, Send: func(fills []func(redis.Pipeliner)) {
		_, _ = rdb.Pipelined(context.Background(), func(p redis.Pipeliner) error {
			for _, fill := range fills {
				fill(p)
			}
			return nil
		})
	}}
	eval := func(sc *redis.Script, id string, args ...any) error {
		var cmd *redis.Cmd
		pipe.Do(func(p redis.Pipeliner) { cmd = sc.EvalSha(ctx, p, []string{ns.JobKey(id)}, args...) })
		if n, err := cmd.Int(); err != nil || n != 1 {
			return fmt.Errorf("floor script on %s: %d, %v", id, n, err)
		}
		return nil
	}
	lifecycle := func() error {
		var (
			next atomic.Int64
			wg   sync.WaitGroup
			mu   sync.Mutex
			fail error
		)
		for range 32 {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= len(ids) {
						return
					}
					id, now := ids[i], strconv.FormatInt(time.Now().UnixMilli(), 10)
					err := eval(start, id, "rediscost", now, "t-"+id, ns.WaitingKey(""), id)
					if err == nil {
						err = eval(finish, id, `{"ok":true}`, now, ns.DoneChannel(id), keep)
					}
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
	return measure("floor: start and finish, 32 callers at once", len(ids), lifecycle)
}
