package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/jobs"
)

// What the rescuer reads and writes. A job whose message the broker lost
// (a queue purged or deleted, a node lost, an API killed between recording
// a job and publishing it) has a record that waits or runs for ever. The
// rescuer finds such records through the indexes the lifecycle scripts keep
// (waiting and running jobs per pool), never by scanning the keyspace, and
// marks each one it republishes here, in one script, only if the record is
// still as it saw it.

// Overdue is a job found by a rescuer's look at its pool's indexes.
type Overdue struct {
	// ID is the job's id.
	ID string
	// Since is when it became due (a waiting job) or started its attempt
	// (a running one), or when it was last rescued.
	Since time.Time
	// Attempt is the record's attempt count: the attempts made (a waiting
	// job), or the attempt running (a running one).
	Attempt int
	// Priority is the job's priority (Overdue only): it tells which lane
	// of the pool its message waits in.
	Priority int
}

// overdueLua lists the entries of a pool's index of waiting jobs due at or
// before ARGV[1] whose records still wait, oldest first, at most ARGV[3];
// an entry whose record is gone or no longer waiting is removed on the way,
// as OldestWaiting does. KEYS[1]: the index. ARGV: cutoff ms, job key
// prefix, limit. Returns id, score, attempt, priority quadruples.
const overdueLua = `
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for i = 1, #due, 2 do
  local r = redis.call('HMGET', ARGV[2] .. due[i], 'status', 'attempt', 'priority')
  local st = r[1]
  if st == 'queued' or st == 'scheduled' or st == 'retrying' then
    out[#out + 1] = due[i]
    out[#out + 1] = due[i + 1]
    out[#out + 1] = r[2] or '0'
    out[#out + 1] = r[3] or '0'
  else
    redis.call('ZREM', KEYS[1], due[i])
  end
end
return out
`

var overdueScript = redis.NewScript(overdueLua)

// Overdue returns up to limit jobs of pool that have waited since before
// cutoff, oldest first.
func (s *Store) Overdue(ctx context.Context, pool string, cutoff time.Time, limit int) ([]Overdue, error) {
	res, err := s.run(ctx, overdueScript, []string{s.ns.WaitingKey(pool)}, ms(cutoff), s.ns.JobKey(""), limit).StringSlice()
	if err != nil {
		return nil, unavailable("overdue jobs of pool "+pool, err)
	}
	out := make([]Overdue, 0, len(res)/4)
	for i := 0; i+3 < len(res); i += 4 {
		n, _ := strconv.Atoi(res[i+2])
		p, _ := strconv.Atoi(res[i+3])
		out = append(out, Overdue{ID: res[i], Since: msTime(res[i+1]), Attempt: n, Priority: p})
	}
	return out, nil
}

// orphanedLua lists the entries of a pool's index of running jobs that
// started at or before ARGV[1] (and after ARGV[5], a cursor: '-inf' or
// '(score') whose record still runs but whose worker's lease is gone, and
// whose parked copy (parked_until, written by the start script) was not
// due back after ARGV[1] either: one that was is on its way and will run
// the attempt. An entry whose record no longer runs is removed on the way. KEYS[1]: the
// index. ARGV: cutoff ms, job key prefix, worker lease key prefix, limit,
// cursor. Returns {id, attempt pairs, entries examined, last score}.
const orphanedLua = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[5], ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for i = 1, #ids, 2 do
  local r = redis.call('HMGET', ARGV[2] .. ids[i], 'status', 'worker', 'attempt', 'parked_until')
  if r[1] ~= 'running' then
    redis.call('ZREM', KEYS[1], ids[i])
  elseif (tonumber(r[4]) or 0) <= tonumber(ARGV[1]) and (not r[2] or redis.call('EXISTS', ARGV[3] .. r[2]) == 0) then
    out[#out + 1] = ids[i]
    out[#out + 1] = ids[i + 1]
    out[#out + 1] = r[3] or '0'
  end
end
return {out, #ids / 2, ids[#ids] or ''}
`

var orphanedScript = redis.NewScript(orphanedLua)

// Orphaned returns up to limit running jobs of pool that started before
// cutoff and whose worker's lease is gone. A pool may run more jobs than
// one call examines: cursor says where the previous call stopped ("" for
// the start), and next where this one did ("" once it reached the end).
func (s *Store) Orphaned(ctx context.Context, pool string, cutoff time.Time, limit int, cursor string) (found []Overdue, next string, err error) {
	from := "-inf"
	if cursor != "" {
		from = "(" + cursor
	}
	res, err := s.run(ctx, orphanedScript, []string{s.ns.RunningKey(pool)},
		ms(cutoff), s.ns.JobKey(""), s.ns.WorkerKey(""), limit, from).Slice()
	if err != nil {
		return nil, "", unavailable("orphaned jobs of pool "+pool, err)
	}
	if len(res) != 3 {
		return nil, "", fmt.Errorf("orphaned jobs of pool %s: unexpected reply %v", pool, res)
	}
	list, _ := res[0].([]any)
	for i := 0; i+2 < len(list); i += 3 {
		id, _ := list[i].(string)
		since, _ := list[i+1].(string)
		attempt, _ := list[i+2].(string)
		n, _ := strconv.Atoi(attempt)
		found = append(found, Overdue{ID: id, Since: msTime(since), Attempt: n})
	}
	if examined, _ := res[1].(int64); examined >= int64(limit) {
		next, _ = res[2].(string)
	}
	return found, next, nil
}

// rescueLua marks a job the rescuer is about to republish, only if its
// record is still as the rescuer saw it: waiting (ARGV[1] 'waiting') with
// attempt ARGV[2], or running (ARGV[1] 'running') attempt ARGV[2] for a
// worker whose lease (ARGV[6] .. worker) is still gone. Its entry in the
// index (ARGV[4]: the waiting or running index of its pool) moves to now
// (ARGV[3]), so it is looked at again only after the grace, and the record,
// whose job is due again now, is kept at least the retention (ARGV[7] ms)
// from now. Returns the record's fields, or nil when the record has moved
// on.
const rescueLua = `
local r = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'worker')
local st = r[1]
if not st or (tonumber(r[2]) or 0) ~= tonumber(ARGV[2]) then return nil end
if ARGV[1] == 'waiting' then
  if st ~= 'queued' and st ~= 'scheduled' and st ~= 'retrying' then return nil end
elseif st ~= 'running' or (r[3] and redis.call('EXISTS', ARGV[6] .. r[3]) == 1) then
  return nil
end
redis.call('ZADD', ARGV[4], 'XX', ARGV[3], ARGV[5])
if ARGV[7] and redis.call('PTTL', KEYS[1]) < tonumber(ARGV[7]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
end
return redis.call('HGETALL', KEYS[1])
`

var rescueScript = redis.NewScript(rescueLua)

// Rescue marks the jobs found as found, in pool, as rescued now, in one
// round trip, and returns their records, from which the rescuer builds the
// messages to publish again. A job whose record has moved on since (it
// started, ended, or was retried) has nothing to rescue: its entry is nil.
func (s *Store) Rescue(ctx context.Context, pool string, found []Overdue, running bool, now time.Time) ([]*jobs.Job, error) {
	kind, index := "waiting", s.ns.WaitingKey(pool)
	if running {
		kind, index = "running", s.ns.RunningKey(pool)
	}
	cmds := make([]*redis.Cmd, len(found))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, o := range found {
			cmds[i] = rescueScript.EvalSha(ctx, p, []string{s.ns.JobKey(o.ID)}, kind, o.Attempt, ms(now), index, o.ID, s.ns.WorkerKey(""),
				s.cfg.Retention.Milliseconds())
		}
		return nil
	})
	if isNoScript(err) {
		if err := rescueScript.Load(ctx, s.rdb).Err(); err != nil {
			return nil, unavailable("load scripts", err)
		}
		return s.Rescue(ctx, pool, found, running, now)
	}
	if err != nil && err != redis.Nil {
		return nil, unavailable("rescue jobs of pool "+pool, err)
	}
	out := make([]*jobs.Job, len(found))
	for i, c := range cmds {
		res, err := c.StringSlice()
		if err == redis.Nil {
			continue
		}
		if err != nil {
			return nil, unavailable("rescue job "+found[i].ID, err)
		}
		h := make(map[string]string, len(res)/2)
		for k := 0; k+1 < len(res); k += 2 {
			h[res[k]] = res[k+1]
		}
		if out[i], err = decode(h); err != nil {
			return nil, fmt.Errorf("rescue job %s: %w", found[i].ID, err)
		}
	}
	return out, nil
}

// rescuedKeep is how long a minute's count of rescues is kept: the hour
// that Rescued reads, and some.
const rescuedKeep = 2 * time.Hour

// CountRescued adds n to the count of pool's jobs rescued in the minute of
// now, which Rescued reads.
func (s *Store) CountRescued(ctx context.Context, pool string, n int, now time.Time) error {
	key := s.ns.RescuedKey(pool, now.Unix()/60)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.IncrBy(ctx, key, int64(n))
		p.PExpire(ctx, key, rescuedKeep)
		return nil
	})
	if err != nil {
		return unavailable("count rescued jobs of pool "+pool, err)
	}
	return nil
}

// Rescued returns how many jobs of each pool were rescued in the hour
// before now, in one round trip.
func (s *Store) Rescued(ctx context.Context, pools []string, now time.Time) (map[string]int, error) {
	out := make(map[string]int, len(pools))
	if len(pools) == 0 {
		return out, nil
	}
	minute := now.Unix() / 60
	cmds := make(map[string]*redis.SliceCmd, len(pools))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, pool := range pools {
			keys := make([]string, 60)
			for i := range keys {
				keys[i] = s.ns.RescuedKey(pool, minute-int64(i))
			}
			cmds[pool] = p.MGet(ctx, keys...)
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("rescued jobs", err)
	}
	for pool, c := range cmds {
		out[pool] = 0
		for _, v := range c.Val() {
			if str, ok := v.(string); ok {
				n, _ := strconv.Atoi(str)
				out[pool] += n
			}
		}
	}
	return out, nil
}

// MarkStarted records, for each pool, the latest due time of a job a
// worker of the pool started (jobs.Namespace.StartedKey); an earlier time
// than the one recorded changes nothing.
func (s *Store) MarkStarted(ctx context.Context, due map[string]time.Time) error {
	if len(due) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for pool, t := range due {
			p.ZAddGT(ctx, s.ns.StartedKey(), redis.Z{Score: float64(t.UnixMilli()), Member: pool})
		}
		return nil
	})
	if err != nil {
		return unavailable("mark started jobs", err)
	}
	return nil
}

// StartedMark returns the latest due time of a job a worker of pool
// started, as MarkStarted recorded it; zero when none was recorded.
func (s *Store) StartedMark(ctx context.Context, pool string) (time.Time, error) {
	v, err := s.rdb.ZScore(ctx, s.ns.StartedKey(), pool).Result()
	if err == redis.Nil {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, unavailable("started mark of pool "+pool, err)
	}
	return time.UnixMilli(int64(v)), nil
}

// leaseLua takes or keeps a lease: KEYS[1] is the lease, ARGV[1] the
// holder, ARGV[2] its time to live in ms. Returns 1 when the holder holds it
// now.
const leaseLua = `
local h = redis.call('GET', KEYS[1])
if not h then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if h == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`

var leaseScript = redis.NewScript(leaseLua)

// HoldRescuer takes the namespace's rescuer lease for holder, or keeps it
// if holder has it, for ttl; it reports whether holder holds it now.
func (s *Store) HoldRescuer(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	n, err := s.run(ctx, leaseScript, []string{s.ns.RescuerKey()}, holder, ttl.Milliseconds()).Int()
	if err != nil {
		return false, unavailable("rescuer lease", err)
	}
	return n == 1, nil
}

// ReleaseRescuer gives the lease up if holder has it, so another process
// takes over without waiting for it to lapse.
func (s *Store) ReleaseRescuer(ctx context.Context, holder string) error {
	if err := releaseScript.Run(ctx, s.rdb, []string{s.ns.RescuerKey()}, holder).Err(); err != nil && err != redis.Nil {
		return unavailable("release rescuer lease", err)
	}
	return nil
}

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// msTime reads Unix milliseconds, which Redis may write as a float score.
func msTime(s string) time.Time {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(int64(f))
}
