package store

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RabbitMQ's quorum queues cannot say how long their oldest message has
// waited, so warren keeps its own index of waiting jobs per pool
// (jobs.Namespace.WaitingKey): the create and revive scripts add a job,
// due at its run time; start takes it out; finish puts a retry back, due
// when the retry is; every end takes it out. The scripts maintain it in the
// round trip that changes the record, so it costs nothing more on the hot
// path.

// oldestBatch bounds the entries one run of the oldest script examines, so
// that healing a large backlog of stale entries never blocks Redis for long.
const oldestBatch = 100

// oldestRounds bounds the runs of one OldestWaiting call: when every entry a
// run examined was stale, the next run continues behind them.
const oldestRounds = 10

// oldestLua finds the oldest entry of a pool's index of waiting jobs that
// is due (score <= now) and whose record is still waiting. Entries whose
// record is gone (expired, discarded) or no longer waiting are removed on
// the way: a worker that does not maintain the index, or a record that
// expired, cannot keep the age wrong. KEYS[1]: the index. ARGV: now ms, job
// key prefix, most entries to examine. Returns {1, age ms} for the first
// entry still waiting, or {0, entries examined} when there is none among
// them.
const oldestLua = `
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
for i = 1, #due, 2 do
  local st = redis.call('HGET', ARGV[2] .. due[i], 'status')
  if st == 'queued' or st == 'scheduled' or st == 'retrying' then
    return {1, tonumber(ARGV[1]) - tonumber(due[i + 1])}
  end
  redis.call('ZREM', KEYS[1], due[i])
end
return {0, #due / 2}
`

var oldestScript = redis.NewScript(oldestLua)

// OldestWaiting returns how long the oldest job of pool that is due to run
// has waited for a worker: now minus the time it became runnable (created,
// due after its delay, due for a retry, or replayed). It is zero when no
// job of the pool waits, and counts no job whose run time is still ahead.
// It heals the index as it reads it, removing the entries of jobs that are
// no longer waiting.
func (s *Store) OldestWaiting(ctx context.Context, pool string) (time.Duration, error) {
	now := s.now()
	for range oldestRounds {
		res, err := s.run(ctx, oldestScript, []string{s.ns.WaitingKey(pool)},
			ms(now), s.ns.JobKey(""), oldestBatch).Int64Slice()
		if err != nil {
			return 0, unavailable("oldest waiting job of pool "+pool, err)
		}
		if len(res) != 2 {
			return 0, fmt.Errorf("oldest waiting job of pool %s: unexpected reply %v", pool, res)
		}
		if res[0] == 1 {
			return max(time.Duration(res[1])*time.Millisecond, 0), nil
		}
		if res[1] < oldestBatch {
			return 0, nil
		}
	}
	// Only stale entries so far; the next call goes on healing. Zero
	// undercounts for one call, which a scaler tolerates better than a
	// call that blocks Redis.
	s.log.Warn("index of waiting jobs holds many stale entries; healing it over several calls",
		"pool", pool, "removed", oldestRounds*oldestBatch)
	return 0, nil
}
