package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// What the schedules keep in Redis (docs/schedules.md). A schedule is a
// hash (jobs.Namespace.ScheduleKey) holding its definition, as JSON that
// package schedule owns, and its state; a sorted set
// (jobs.Namespace.SchedulesKey) names every schedule of the namespace,
// scored by when it is next due, so that the scheduler reads only what is
// due. The scripts here keep the two together, and make the firing of a
// tick a claim: of all the processes that may try to fire one tick, the
// first claim names the job (pending_tick, pending_job), and every later
// one is handed that same job.

var (
	// ErrScheduleNotFound means no schedule has the name.
	ErrScheduleNotFound = errors.New("schedule not found")
	// ErrScheduleExists means a schedule already has the name.
	ErrScheduleExists = errors.New("a schedule with this name already exists")
	// ErrScheduleLimit means the namespace holds as many schedules as it
	// may.
	ErrScheduleLimit = errors.New("the namespace has as many schedules as it may hold")
)

// ScheduleRecord is a schedule as Redis keeps it.
type ScheduleRecord struct {
	// Name is the schedule's name.
	Name string
	// Def is its definition, as JSON (package schedule reads it).
	Def []byte
	// CreatedAt and CreatedBy say when and by whom (an API key's name, ""
	// without keys) it was made; its jobs are submitted in that name.
	CreatedAt time.Time
	CreatedBy string
	// Paused is set while the schedule is paused.
	Paused *Pause
	// After is the last tick handled (fired or skipped), or the time of its
	// creation or last resume: the ticks after it are to come.
	After time.Time
	// LastTick and LastJob are the last tick fired and its job; LastFired
	// when it was fired. Zero before the first.
	LastTick  time.Time
	LastJob   string
	LastFired time.Time
	// SkipTick and SkipReason are the last tick skipped and why
	// ("overlap", "missed", "refused"); SkipError says more for a refused
	// one.
	SkipTick   time.Time
	SkipReason string
	SkipError  string
	// PendingTick and PendingJob are a tick claimed and not yet recorded as
	// fired: its job may or may not exist.
	PendingTick time.Time
	PendingJob  string
	// Due is when the scheduler next looks at it; zero while paused.
	Due time.Time
}

// Fields of a schedule's hash.
const (
	sfDef         = "def"
	sfCreatedAt   = "created_at"
	sfCreatedBy   = "created_by"
	sfPausedAt    = "paused_at"
	sfPausedBy    = "paused_by"
	sfAfter       = "after"
	sfLastTick    = "last_tick"
	sfLastJob     = "last_job"
	sfLastFired   = "last_fired_at"
	sfSkipTick    = "skip_tick"
	sfSkipReason  = "skip_reason"
	sfSkipError   = "skip_error"
	sfPendingTick = "pending_tick"
	sfPendingJob  = "pending_job"
)

// addScheduleLua writes a new schedule unless one has the name (1) or the
// namespace holds ARGV[2] already (2). KEYS: the hash, the set. ARGV: name,
// most schedules, due ms, then field/value pairs.
const addScheduleLua = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 2 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 0
`

var addScheduleScript = redis.NewScript(addScheduleLua)

// AddSchedule records a new schedule, due at once (the scheduler then
// works out its first tick): ErrScheduleExists when the name is taken,
// ErrScheduleLimit when the namespace already holds max schedules.
func (s *Store) AddSchedule(ctx context.Context, rec ScheduleRecord, max int) error {
	f := []any{sfDef, string(rec.Def), sfCreatedAt, ms(rec.CreatedAt), sfCreatedBy, rec.CreatedBy, sfAfter, ms(rec.CreatedAt)}
	n, err := addScheduleScript.Run(ctx, s.rdb, []string{s.ns.ScheduleKey(rec.Name), s.ns.SchedulesKey()},
		append([]any{rec.Name, max, ms(rec.CreatedAt)}, f...)...).Int()
	switch {
	case err != nil:
		return unavailable("add schedule "+rec.Name, err)
	case n == 1:
		return ErrScheduleExists
	case n == 2:
		return ErrScheduleLimit
	}
	return nil
}

// Schedule reads one schedule; ErrScheduleNotFound when there is none.
func (s *Store) Schedule(ctx context.Context, name string) (ScheduleRecord, error) {
	var (
		h   *redis.MapStringStringCmd
		due *redis.FloatCmd
	)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		h = p.HGetAll(ctx, s.ns.ScheduleKey(name))
		due = p.ZScore(ctx, s.ns.SchedulesKey(), name)
		return nil
	})
	if err != nil && err != redis.Nil {
		return ScheduleRecord{}, unavailable("read schedule "+name, err)
	}
	if len(h.Val()) == 0 {
		return ScheduleRecord{}, ErrScheduleNotFound
	}
	return scheduleRecord(name, h.Val(), due.Val()), nil
}

// Schedules reads every schedule of the namespace, sorted by name, in two
// round trips.
func (s *Store) Schedules(ctx context.Context) ([]ScheduleRecord, error) {
	names, err := s.rdb.ZRangeWithScores(ctx, s.ns.SchedulesKey(), 0, -1).Result()
	if err != nil {
		return nil, unavailable("list schedules", err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(names))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, z := range names {
			cmds[i] = p.HGetAll(ctx, s.ns.ScheduleKey(z.Member.(string)))
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("list schedules", err)
	}
	out := make([]ScheduleRecord, 0, len(names))
	for i, z := range names {
		if h := cmds[i].Val(); len(h) > 0 {
			out = append(out, scheduleRecord(z.Member.(string), h, z.Score))
		}
	}
	slices.SortFunc(out, func(a, b ScheduleRecord) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func scheduleRecord(name string, h map[string]string, due float64) ScheduleRecord {
	t := func(f string) time.Time {
		if v := h[f]; v != "" {
			return msTime(v)
		}
		return time.Time{}
	}
	r := ScheduleRecord{
		Name: name, Def: []byte(h[sfDef]), CreatedAt: t(sfCreatedAt), CreatedBy: h[sfCreatedBy],
		After: t(sfAfter), LastTick: t(sfLastTick), LastJob: h[sfLastJob], LastFired: t(sfLastFired),
		SkipTick: t(sfSkipTick), SkipReason: h[sfSkipReason], SkipError: h[sfSkipError],
		PendingTick: t(sfPendingTick), PendingJob: h[sfPendingJob],
	}
	if h[sfPausedAt] != "" {
		r.Paused = &Pause{At: t(sfPausedAt), By: h[sfPausedBy]}
	}
	if !math.IsInf(due, 1) && due > 0 {
		r.Due = time.UnixMilli(int64(due))
	}
	return r
}

// deleteScheduleLua removes a schedule. KEYS: the hash, the set. ARGV: name.
const deleteScheduleLua = `
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
`

var deleteScheduleScript = redis.NewScript(deleteScheduleLua)

// DeleteSchedule removes a schedule; ErrScheduleNotFound when there was
// none. A tick being fired as it goes is not recorded anywhere (its job,
// if made, runs).
func (s *Store) DeleteSchedule(ctx context.Context, name string) error {
	n, err := deleteScheduleScript.Run(ctx, s.rdb, []string{s.ns.ScheduleKey(name), s.ns.SchedulesKey()}, name).Int()
	if err != nil {
		return unavailable("delete schedule "+name, err)
	}
	if n == 0 {
		return ErrScheduleNotFound
	}
	return nil
}

// pauseScheduleLua pauses a schedule: 0 when there is none, 2 when it was
// paused already (the first pause stands), 1 when it is paused now; while
// paused it is due never. KEYS: the hash, the set. ARGV: name, now ms, by.
const pauseScheduleLua = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'paused_at') == 1 then return 2 end
redis.call('HSET', KEYS[1], 'paused_at', ARGV[2], 'paused_by', ARGV[3])
redis.call('ZADD', KEYS[2], 'XX', '+inf', ARGV[1])
return 1
`

var pauseScheduleScript = redis.NewScript(pauseScheduleLua)

// PauseSchedule pauses a schedule, by the API key named by; it reports
// whether this call paused it (false: it was paused already).
func (s *Store) PauseSchedule(ctx context.Context, name, by string, now time.Time) (bool, error) {
	n, err := pauseScheduleScript.Run(ctx, s.rdb, []string{s.ns.ScheduleKey(name), s.ns.SchedulesKey()}, name, ms(now), by).Int()
	if err != nil {
		return false, unavailable("pause schedule "+name, err)
	}
	if n == 0 {
		return false, ErrScheduleNotFound
	}
	return n == 1, nil
}

// resumeScheduleLua resumes a paused schedule: the ticks it missed while
// paused are skipped (after moves to now), and it is due at once, so that
// the scheduler works out its next tick. Returns as pauseScheduleLua.
// KEYS: the hash, the set. ARGV: name, now ms.
const resumeScheduleLua = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'paused_at') == 0 then return 2 end
redis.call('HDEL', KEYS[1], 'paused_at', 'paused_by')
if tonumber(redis.call('HGET', KEYS[1], 'after') or '0') < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'after', ARGV[2])
end
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[1])
return 1
`

var resumeScheduleScript = redis.NewScript(resumeScheduleLua)

// ResumeSchedule resumes a paused schedule from now: the ticks that passed
// while it was paused are not fired. It reports whether this call resumed
// it (false: it was not paused).
func (s *Store) ResumeSchedule(ctx context.Context, name string, now time.Time) (bool, error) {
	n, err := resumeScheduleScript.Run(ctx, s.rdb, []string{s.ns.ScheduleKey(name), s.ns.SchedulesKey()}, name, ms(now)).Int()
	if err != nil {
		return false, unavailable("resume schedule "+name, err)
	}
	if n == 0 {
		return false, ErrScheduleNotFound
	}
	return n == 1, nil
}

// DueSchedules returns up to limit schedules due at or before now, most
// overdue first, and when the first schedule is due (zero when none is
// due ever: none, or all paused), in one round trip.
func (s *Store) DueSchedules(ctx context.Context, now time.Time, limit int) (names []string, next time.Time, err error) {
	var (
		due   *redis.StringSliceCmd
		first *redis.ZSliceCmd
	)
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		due = p.ZRangeByScore(ctx, s.ns.SchedulesKey(), &redis.ZRangeBy{Min: "-inf", Max: ms(now), Count: int64(limit)})
		first = p.ZRangeWithScores(ctx, s.ns.SchedulesKey(), 0, 0)
		return nil
	})
	if err != nil {
		return nil, time.Time{}, unavailable("due schedules", err)
	}
	if f := first.Val(); len(f) == 1 && !math.IsInf(f[0].Score, 1) {
		next = time.UnixMilli(int64(f[0].Score))
	}
	return due.Val(), next, nil
}

// setScheduleDueLua sets when a schedule is next due, unless it is gone or
// paused. KEYS: the hash, the set. ARGV: name, due ms.
const setScheduleDueLua = `
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'paused_at') == 1 then return 0 end
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[1])
return 1
`

var setScheduleDueScript = redis.NewScript(setScheduleDueLua)

// SetScheduleDue says when the scheduler should next look at a schedule;
// a zero due means never (a schedule with no tick to come). A paused or
// deleted schedule is left alone.
func (s *Store) SetScheduleDue(ctx context.Context, name string, due time.Time) error {
	score := "+inf"
	if !due.IsZero() {
		score = ms(due)
	}
	if err := setScheduleDueScript.Run(ctx, s.rdb, []string{s.ns.ScheduleKey(name), s.ns.SchedulesKey()}, name, score).Err(); err != nil {
		return unavailable("set schedule due "+name, err)
	}
	return nil
}

// ClaimState is what a claim of a tick found.
type ClaimState int

const (
	// Claimed: the tick is this caller's, with the job id it proposed.
	Claimed ClaimState = iota
	// ClaimPending: the tick was claimed before (by this or another
	// process, which may have died): Claim.Job is its job's id.
	ClaimPending
	// ClaimDone: the tick was handled already.
	ClaimDone
	// ClaimBusy: another tick is in flight; read the schedule again.
	ClaimBusy
	// ClaimGone: the schedule was deleted or paused.
	ClaimGone
)

// Claim is the outcome of ClaimTick.
type Claim struct {
	State ClaimState
	// Job is the id of the job the tick fires, for Claimed and
	// ClaimPending.
	Job string
}

// claimTickLua claims a tick: unless the schedule is gone or paused
// ({4}), the tick was handled ({2}) or another tick is in flight ({3}), it
// records the tick and the job id proposed as pending ({0, id}), or hands
// back the job of an earlier claim of the same tick ({1, id}). KEYS: the
// hash. ARGV: tick ms, job id.
const claimTickLua = `
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'paused_at') == 1 then return {4, ''} end
if tonumber(ARGV[1]) <= tonumber(redis.call('HGET', KEYS[1], 'after') or '0') then return {2, ''} end
local r = redis.call('HMGET', KEYS[1], 'pending_tick', 'pending_job')
if r[1] then
  if r[1] == ARGV[1] then return {1, r[2]} end
  return {3, ''}
end
redis.call('HSET', KEYS[1], 'pending_tick', ARGV[1], 'pending_job', ARGV[2])
return {0, ARGV[2]}
`

var claimTickScript = redis.NewScript(claimTickLua)

// ClaimTick claims tick of a schedule for a job with id job: see
// ClaimState.
func (s *Store) ClaimTick(ctx context.Context, name string, tick time.Time, job string) (Claim, error) {
	res, err := claimTickScript.Run(ctx, s.rdb, []string{s.ns.ScheduleKey(name)}, ms(tick), job).Slice()
	if err != nil {
		return Claim{}, unavailable("claim a tick of schedule "+name, err)
	}
	if len(res) != 2 {
		return Claim{}, fmt.Errorf("claim a tick of schedule %s: unexpected reply %v", name, res)
	}
	n, _ := res[0].(int64)
	id, _ := res[1].(string)
	return Claim{State: ClaimState(n), Job: id}, nil
}

// dropPendingLua forgets a claimed tick, if it is still the one in flight.
// KEYS: the hash. ARGV: tick ms.
const dropPendingLua = `
if redis.call('HGET', KEYS[1], 'pending_tick') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'pending_tick', 'pending_job')
  return 1
end
return 0
`

var dropPendingScript = redis.NewScript(dropPendingLua)

// DropPending forgets tick as the one in flight, if it still is: the
// caller found that its job was never made and that the tick is too late
// to fire now.
func (s *Store) DropPending(ctx context.Context, name string, tick time.Time) error {
	if err := dropPendingScript.Run(ctx, s.rdb, []string{s.ns.ScheduleKey(name)}, ms(tick)).Err(); err != nil {
		return unavailable("drop the pending tick of schedule "+name, err)
	}
	return nil
}

// TickOutcome is what became of one tick.
type TickOutcome struct {
	// Tick is the tick.
	Tick time.Time
	// Job is the job it fired; empty for a skipped tick.
	Job string
	// Reason and Error say why a tick was skipped.
	Reason, Error string
	// Next is when the schedule is next due; zero for never.
	Next time.Time
	// Now is the time of the outcome.
	Now time.Time
}

// completeTickLua records a tick's outcome. A fired tick must be the one in
// flight (pending_tick), which it clears; a skipped one must come after
// the last tick handled and no tick be in flight, unless it is the one in
// flight. The last tick handled (after) moves forward only, and the
// schedule is next due at ARGV[6] unless paused. Returns 1 when recorded,
// 0 when not (another process recorded it, or the schedule is gone).
// KEYS: the hash, the set. ARGV: name, tick ms, job id (” when skipped),
// reason, error, next due ms or '+inf', now ms.
const completeTickLua = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local pt = redis.call('HGET', KEYS[1], 'pending_tick')
local ours = pt == ARGV[2]
if pt and not ours then return 0 end
local after = tonumber(redis.call('HGET', KEYS[1], 'after') or '0')
if not ours and tonumber(ARGV[2]) <= after then return 0 end
if ours then redis.call('HDEL', KEYS[1], 'pending_tick', 'pending_job') end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'last_tick', ARGV[2], 'last_job', ARGV[3], 'last_fired_at', ARGV[7])
else
  redis.call('HSET', KEYS[1], 'skip_tick', ARGV[2], 'skip_reason', ARGV[4], 'skip_error', ARGV[5])
end
if tonumber(ARGV[2]) > after then redis.call('HSET', KEYS[1], 'after', ARGV[2]) end
if redis.call('HEXISTS', KEYS[1], 'paused_at') == 0 then
  redis.call('ZADD', KEYS[2], 'XX', ARGV[6], ARGV[1])
end
return 1
`

var completeTickScript = redis.NewScript(completeTickLua)

// CompleteTick records what became of a tick; it reports whether it did
// (false: another process recorded it first, or the schedule is gone).
func (s *Store) CompleteTick(ctx context.Context, name string, o TickOutcome) (bool, error) {
	next := "+inf"
	if !o.Next.IsZero() {
		next = ms(o.Next)
	}
	n, err := completeTickScript.Run(ctx, s.rdb, []string{s.ns.ScheduleKey(name), s.ns.SchedulesKey()},
		name, ms(o.Tick), o.Job, o.Reason, o.Error, next, ms(o.Now)).Int()
	if err != nil {
		return false, unavailable("record a tick of schedule "+name, err)
	}
	return n == 1, nil
}

// HoldScheduler takes the namespace's scheduler lease for holder, or
// keeps it if holder has it, for ttl; it reports whether holder holds it
// now. Like HoldPool, it does not join the shared round trips.
func (s *Store) HoldScheduler(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	n, err := leaseScript.Run(ctx, s.rdb, []string{s.ns.SchedulerKey()}, holder, ttl.Milliseconds()).Int()
	if err != nil {
		return false, unavailable("scheduler lease", err)
	}
	return n == 1, nil
}

// ReleaseScheduler gives the scheduler lease up if holder has it, so that
// another process takes over without waiting for it to lapse.
func (s *Store) ReleaseScheduler(ctx context.Context, holder string) error {
	if err := releaseScript.Run(ctx, s.rdb, []string{s.ns.SchedulerKey()}, holder).Err(); err != nil && err != redis.Nil {
		return unavailable("release scheduler lease", err)
	}
	return nil
}
