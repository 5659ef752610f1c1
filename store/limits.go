package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/jobs"
)

// What the rate limits of job types keep in Redis (docs/ratelimits.md): the
// limits themselves, in one hash (jobs.Namespace.LimitsKey) that every
// worker reads; a token bucket per type and per tenant
// (jobs.Namespace.LimitBucketKey); and per type the jobs its limit holds
// back (jobs.Namespace.LimitedKey). The token script decides, for one
// message, whether its job may start now, and when it may not, notes on the
// record when it comes back (limited_until).

var (
	// ErrLimitNotFound means the type has no limit.
	ErrLimitNotFound = errors.New("the type has no rate limit")
	// ErrLimitsFull means the namespace has as many limits as it may.
	ErrLimitsFull = errors.New("the namespace has as many rate limits as it may hold")
)

// LimitRecord is a limit as Redis keeps it: the limit, and who set it and
// when.
type LimitRecord struct {
	jobs.Limit
	// SetAt is when the limit was last set; SetBy the name of the API key
	// that set it ("" without keys).
	SetAt time.Time `json:"set_at"`
	SetBy string    `json:"set_by,omitempty"`
}

// putLimitLua writes a type's limit unless it is new and the namespace
// holds ARGV[3] already (then 2), resets the type's own bucket (its rate
// may have changed), and announces it on the events channel. KEYS: the
// limits hash, the type's bucket. ARGV: type, the record as JSON, most
// limits, events channel. Returns 1 when it replaced a limit, 0 when new.
const putLimitLua = `
local had = redis.call('HEXISTS', KEYS[1], ARGV[1])
if had == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 2 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[4], 'limits ' .. ARGV[1])
return had
`

// deleteLimitLua removes a type's limit, its own bucket and its index of
// limited jobs (those held back start when they check back; a limit set
// later must not count them), and announces it. KEYS: the limits hash, the
// type's bucket, its index of limited jobs. ARGV: type, events channel.
// Returns the record removed, or nil.
const deleteLimitLua = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return nil end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('PUBLISH', ARGV[2], 'limits ' .. ARGV[1])
return v
`

var (
	putLimitScript    = redis.NewScript(putLimitLua)
	deleteLimitScript = redis.NewScript(deleteLimitLua)
)

// PutLimit sets a type's limit, replacing the one it had (replaced true);
// ErrLimitsFull when the type had none and the namespace holds max.
func (s *Store) PutLimit(ctx context.Context, rec LimitRecord, max int) (replaced bool, err error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("encode limit of %s: %w", rec.Type, err)
	}
	n, err := s.run(ctx, putLimitScript, []string{s.ns.LimitsKey(), s.ns.LimitBucketKey(rec.Type, false, "")},
		rec.Type, string(b), max, s.ns.EventsChannel()).Int()
	switch {
	case err != nil:
		return false, unavailable("set the limit of "+rec.Type, err)
	case n == 2:
		return false, ErrLimitsFull
	}
	return n == 1, nil
}

// DeleteLimit removes a type's limit and returns it; ErrLimitNotFound when
// it had none. Its jobs held back start when they next check back (within
// a quarter of what was left of their wait, or LimitCheckBack).
func (s *Store) DeleteLimit(ctx context.Context, typ string) (LimitRecord, error) {
	v, err := s.run(ctx, deleteLimitScript, []string{s.ns.LimitsKey(), s.ns.LimitBucketKey(typ, false, ""), s.ns.LimitedKey(typ)},
		typ, s.ns.EventsChannel()).Text()
	switch {
	case errors.Is(err, redis.Nil):
		return LimitRecord{}, ErrLimitNotFound
	case err != nil:
		return LimitRecord{}, unavailable("delete the limit of "+typ, err)
	}
	return decodeLimit(typ, v)
}

// Limit reads one type's limit; ErrLimitNotFound when it has none.
func (s *Store) Limit(ctx context.Context, typ string) (LimitRecord, error) {
	v, err := s.rdb.HGet(ctx, s.ns.LimitsKey(), typ).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return LimitRecord{}, ErrLimitNotFound
	case err != nil:
		return LimitRecord{}, unavailable("read the limit of "+typ, err)
	}
	return decodeLimit(typ, v)
}

// Limits reads every limit of the namespace, sorted by type. A record that
// does not decode (written by hand, say) is skipped and logged: one bad
// entry must not lift every other limit.
func (s *Store) Limits(ctx context.Context) ([]LimitRecord, error) {
	h, err := s.rdb.HGetAll(ctx, s.ns.LimitsKey()).Result()
	if err != nil {
		return nil, unavailable("read the limits", err)
	}
	out := make([]LimitRecord, 0, len(h))
	for typ, v := range h {
		rec, err := decodeLimit(typ, v)
		if err != nil {
			s.log.Warn("skipping an unreadable rate limit", "type", typ, "err", err)
			continue
		}
		out = append(out, rec)
	}
	slices.SortFunc(out, func(a, b LimitRecord) int { return strings.Compare(a.Type, b.Type) })
	return out, nil
}

func decodeLimit(typ, v string) (LimitRecord, error) {
	var rec LimitRecord
	if err := json.Unmarshal([]byte(v), &rec); err != nil {
		return LimitRecord{}, fmt.Errorf("decode the limit of %s: %w", typ, err)
	}
	rec.Type = typ
	if err := rec.Validate(); err != nil {
		return LimitRecord{}, fmt.Errorf("the limit of %s: %w", typ, err)
	}
	return rec, nil
}

// LimitedSlack is how long past its limited_until a job held back still
// counts as limited: the time its message takes to come back round the
// delay levels and be taken again. A job that then starts, or is canceled,
// leaves the count at once.
const LimitedSlack = 30 * time.Second

// Limited counts, per type, the jobs its limit holds back now (those whose
// limited_until is after now minus LimitedSlack), in one round trip.
func (s *Store) Limited(ctx context.Context, types []string, now time.Time) (map[string]int, error) {
	if len(types) == 0 {
		return map[string]int{}, nil
	}
	cmds := make([]*redis.IntCmd, len(types))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		from := ms(now.Add(-LimitedSlack))
		for i, t := range types {
			cmds[i] = p.ZCount(ctx, s.ns.LimitedKey(t), from, "+inf")
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("count limited jobs", err)
	}
	out := make(map[string]int, len(types))
	for i, t := range types {
		out[t] = int(cmds[i].Val())
	}
	return out, nil
}

// takeTokenLua decides whether one message's job may start now under its
// type's limit, by Redis's clock (so that workers with drifting clocks share
// the buckets fairly). Only a message that would start a new attempt of a
// waiting job takes a token: for a job without record or ended, a stale
// copy, or a copy of an attempt that runs or ran (the record running with
// the next attempt), it answers {2} and changes nothing, and the start
// script says what to do with the message.
//
// Buckets: KEYS[2] is the type's, KEYS[3] the tenant's; a rate (tokens per
// ms) of 0 means that bucket does not apply. A bucket holds at most its
// capacity (1 + burst) and gains rate tokens each ms; it notes the version
// of the limit that last wrote it ('v'), and one written under an older
// version than ARGV[10] starts again full, its slots forgotten. A token is
// taken from each bucket that applies, all or none: {1}. When one lacks a
// whole token the job is held back: each short bucket hands it the next
// free slot (the time its next token comes, or after the slots it handed
// out before, kept in 'next', so that jobs held back together come back
// spread out, not all at once), the slot is the latest, plus ARGV[7] (a
// number in [0, 1) the caller draws) times a tenth of the wait, at most a
// second; the record notes it (limited_until) and the limit's version
// (limited_by), the type's index of limited jobs (KEYS[4]) and the pool's
// index of waiting jobs (re-scored, so the rescuer does not take a job
// held back for lost) say when it is due, and the record is kept at least
// the wait plus the retention. Reply {0, wait ms, due ms, 0}.
//
// The message does not wait the whole way: it checks back after a quarter
// of the wait (at least ARGV[11] ms, all of it when shorter). A job that
// comes back over a second before its slot, under the same limit (or one
// newer than the caller knows), keeps its slot and waits again, a quarter
// of what is left (reply {0, wait ms, due ms, 1}); under a changed limit
// it is decided afresh, and with the limit removed it starts. So a change
// frees held jobs within a quarter of their wait, and a long wait costs a
// few round trips.
//
// KEYS: the job record, the type's bucket, the tenant's bucket, the type's
// index of limited jobs. ARGV: [1] the message's x-warren-attempts (-1:
// none), [2] the job id, [3] the type's rate per ms, [4] its capacity, [5]
// the tenant's rate per ms, [6] its capacity, [7] the jitter draw, [8] the
// waiting prefix, [9] the retention in ms, [10] the limit's version (its
// set_at in Unix ms), [11] the shortest check-back in ms.
const takeTokenLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local r = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'pool', 'limited_until', 'limited_by')
local st = r[1]
if st ~= 'queued' and st ~= 'scheduled' and st ~= 'retrying' then return {2} end
local made = tonumber(ARGV[1])
if made >= 0 and (tonumber(r[2]) or 0) ~= made then return {2} end
local version, least = tonumber(ARGV[10]), tonumber(ARGV[11])
local function checkback(w)
  if w <= least then return w end
  return math.max(least, math.ceil(w / 4))
end
local due = tonumber(r[4])
if due and due - now > 1000 and (tonumber(r[5]) or -1) >= version then
  return {0, checkback(due - now), due, 1}
end
local b = {}
for i = 0, 1 do
  local rate = tonumber(ARGV[3 + 2 * i])
  if rate > 0 then
    local key, cap = KEYS[2 + i], tonumber(ARGV[4 + 2 * i])
    local v = redis.call('HMGET', key, 'tokens', 'at', 'next', 'v')
    local tokens = tonumber(v[1]) or cap
    local at = tonumber(v[2]) or now
    local nxt = tonumber(v[3]) or 0
    local kv = tonumber(v[4]) or 0
    if kv < version then tokens, at, nxt, kv = cap, now, 0, version end
    if now > at then tokens = math.min(cap, tokens + (now - at) * rate) end
    b[#b + 1] = {key, rate, cap, tokens, nxt, kv}
  end
end
local short = false
for _, k in ipairs(b) do
  if k[4] < 1 then short = true end
end
if not short then
  for _, k in ipairs(b) do
    redis.call('HSET', k[1], 'tokens', tostring(k[4] - 1), 'at', now, 'next', tostring(k[5]), 'v', k[6])
    redis.call('PEXPIRE', k[1], math.ceil(math.max((k[3] - k[4] + 1) / k[2], k[5] - now)) + 1000)
  end
  redis.call('HDEL', KEYS[1], 'limited_until', 'limited_by')
  redis.call('ZREM', KEYS[4], ARGV[2])
  return {1}
end
local wait = 0
for _, k in ipairs(b) do
  if k[4] < 1 then
    local slot = math.max(now + math.ceil((1 - k[4]) / k[2]), k[5])
    redis.call('HSET', k[1], 'next', tostring(slot + 1 / k[2]), 'v', k[6])
    redis.call('PEXPIRE', k[1], math.ceil(slot - now + (k[3] + 1) / k[2]) + 1000)
    wait = math.max(wait, slot - now)
  end
end
wait = math.ceil(wait + tonumber(ARGV[7]) * math.min(wait / 10, 1000))
due = now + wait
redis.call('HSET', KEYS[1], 'limited_until', due, 'limited_by', ARGV[10])
redis.call('ZADD', KEYS[4], due, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - 3600000)
if r[3] then redis.call('ZADD', ARGV[8] .. r[3], 'XX', due, ARGV[2]) end
if redis.call('PTTL', KEYS[1]) < wait + tonumber(ARGV[9]) then
  redis.call('PEXPIRE', KEYS[1], wait + tonumber(ARGV[9]))
end
return {0, checkback(wait), due, 0}
`

var takeTokenScript = redis.NewScript(takeTokenLua)

// LimitCheckBack is the shortest wait after which a job held back comes
// back to check whether its limit changed (docs/protocol.md, section 18):
// a wait up to it is waited whole, a longer one a quarter at a time.
const LimitCheckBack = 10 * time.Second

// Admission is what TakeToken decided for one message.
type Admission struct {
	// Limited is set when the job is held back: its message is to come
	// back after Wait, to start or to check back, and the job may start
	// at Until (by Redis's clock).
	Limited bool
	Wait    time.Duration
	Until   time.Time
	// CheckedBack says the job came back early to check its limit, which
	// has not changed: it keeps the slot it was given before.
	CheckedBack bool
}

// TakeToken takes a token for job j, whose message says made attempts were
// made before it (-1: it does not say), from the buckets of the limit rec
// that apply: the type's and j's tenant's, both or neither. rec.SetAt is
// the limit's version: a job held back under it keeps its slot when it
// checks back early. jitter, in [0, 1), spreads the waits of jobs held
// back at the same moment.
func (s *Store) TakeToken(ctx context.Context, rec LimitRecord, j *jobs.Job, made int, jitter float64) (Admission, error) {
	l := rec.Limit
	var typeRate, tenantRate float64
	var typeCap, tenantCap int
	if r := l.Rate; r != nil {
		typeRate, typeCap = perMS(*r), 1+r.Burst
	}
	tenant, byTenant := l.TenantOf(j)
	if byTenant {
		tenantRate, tenantCap = perMS(l.Tenant.Rate), 1+l.Tenant.Burst
	}
	keys := []string{s.ns.JobKey(j.ID), s.ns.LimitBucketKey(j.Type, false, ""),
		s.ns.LimitBucketKey(j.Type, true, tenant), s.ns.LimitedKey(j.Type)}
	v, err := s.run(ctx, takeTokenScript, keys, made, j.ID,
		strconv.FormatFloat(typeRate, 'g', -1, 64), typeCap,
		strconv.FormatFloat(tenantRate, 'g', -1, 64), tenantCap,
		strconv.FormatFloat(min(max(jitter, 0), 1), 'g', -1, 64),
		s.ns.WaitingKey(""), s.cfg.Retention.Milliseconds(), rec.SetAt.UnixMilli(), LimitCheckBack.Milliseconds()).Int64Slice()
	if err != nil {
		return Admission{}, unavailable("take a rate-limit token for job "+j.ID, err)
	}
	if len(v) == 4 && v[0] == 0 {
		return Admission{Limited: true, Wait: time.Duration(v[1]) * time.Millisecond, Until: time.UnixMilli(v[2]).UTC(),
			CheckedBack: v[3] == 1}, nil
	}
	return Admission{}, nil
}

// perMS is a rate's refill in tokens per millisecond.
func perMS(r jobs.Rate) float64 {
	if r.Limit <= 0 || r.Per <= 0 {
		return 0
	}
	return float64(r.Limit) / float64(r.Per.Std().Milliseconds())
}
