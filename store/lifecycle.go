package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/jobs"
)

// terminalLua holds the functions the scripts that change a job's state
// share: terminal, the test for a final state, with which every one starts,
// so no job leaves a terminal state; relist, which moves a job from its
// pool's list of one status to another's (jobs.ListOfStatus: the prefix,
// nil from a caller that keeps no lists, then s:POOL:STATUS); and
// add_attempt and attempt_entry, which add an ended attempt to the JSON
// array of the record's attempts (its error is already JSON).
const terminalLua = `
local function terminal(st)
  return st == 'succeeded' or st == 'failed' or st == 'canceled'
end
local function relist(prefix, pool, from, to, id, score)
  if not prefix or not pool then return end
  if from then redis.call('ZREM', prefix .. 's:' .. pool .. ':' .. from, id) end
  if to and score then redis.call('ZADD', prefix .. 's:' .. pool .. ':' .. to, score, id) end
end
local function attempt_entry(n, worker, started, ended, outcome, err)
  local e = '{"attempt":' .. (tonumber(n) or 0) .. ',"outcome":"' .. outcome .. '"'
  if worker then e = e .. ',"worker":' .. cjson.encode(worker) end
  if tonumber(started) then e = e .. ',"started_at":' .. tonumber(started) end
  if tonumber(ended) then e = e .. ',"ended_at":' .. tonumber(ended) end
  if err and err ~= '' then e = e .. ',"error":' .. err end
  return e .. '}'
end
local function add_attempt(attempts, entry)
  if not attempts or attempts == '' then return '[' .. entry .. ']' end
  return string.sub(attempts, 1, -2) .. ',' .. entry .. ']'
end
`

// declaredPoolLua finds the pool a type is declared in, for a revive of a
// job that does not name its pool (one accepted before jobs did): the
// record then names its pool, so every later script finds the job's index
// of waiting jobs (jobs.Namespace.WaitingKey) without reading the registry.
// A type missing from the registry gives nil, and the job is not indexed;
// OldestWaiting only ever undercounts such a job, never overcounts it.
const declaredPoolLua = `
local function declared_pool(types, jt)
  local decl = jt and redis.call('HGET', types, jt)
  if not decl then return nil end
  local ok, t = pcall(cjson.decode, decl)
  if ok and type(t) == 'table' and type(t.pool) == 'string' and t.pool ~= '' then
    return t.pool
  end
  return nil
end
`

// createScript writes a new record unless the idempotency key (KEYS[2];
// empty: none) already names a job that still has a record, in which case it
// returns that job's id: {0, id} when that job was submitted with the same
// fingerprint (type and payload), {2, id} when not (a conflict: the key was
// used for another job). The job enters its pool's index of waiting jobs,
// due at ARGV[6], and its record expires ARGV[7] ms from now: the retention
// after it is due, so that a job nobody ever runs does not stay for ever.
// ARGV: id, idempotency window ms, job key prefix, pool (empty: none, and no
// index), waiting index key prefix, due ms, expiry ms, fingerprint,
// creation ms, the unique key's window ms, now ms, how long a holder not
// yet confirmed is waited for (ms), then field/value pairs. KEYS[3] is the
// unique key (jobs.Namespace.UniqueKey; empty: none), and KEYS from the
// fourth are the lists (jobs.Namespace.ListKey) the new job enters, scored
// by its creation.
//
// A unique key (docs/unique.md), checked after the idempotency key, is held
// while the job it names has a record in a status its unique_while holds
// (unique_held; jobs.UniqueWhile.Holds says the same): then nothing is
// written and the script returns {3, holder}, or {4, holder} when the
// holder is still waiting and marked unique_pending (its creator has not
// yet seen its publish confirmed, and may discard it) within the wait: the
// caller asks again shortly, so that no submission is answered with a job
// that is then discarded. Otherwise the new job takes the key for its
// window. The key is evaluated here, at creation, so the start and finish
// scripts need not know of it.
//
// The index's key is derived from a prefix, as an earlier job's key is
// from ARGV[3], so that the other scripts, which learn the pool from the
// record, build it the same way: warren runs on one Redis, not a cluster.
const createLua = `
local function unique_held(st, mode)
  if not st or st == 'canceled' then return false end
  if mode == 'always' or st == 'scheduled' or st == 'queued' then return true end
  if st == 'running' then return mode == 'running' or mode == 'until_done' end
  return st == 'retrying' and mode == 'until_done'
end
if KEYS[2] ~= '' then
  local existing = redis.call('GET', KEYS[2])
  if existing == ARGV[1] then return {1, ARGV[1]} end -- this very create, repeated
  if existing then
    local r = redis.call('HMGET', ARGV[3] .. existing, 'status', 'idempotency_fp')
    if r[1] and r[2] ~= ARGV[8] then return {2, existing} end
    if r[1] then return {0, existing} end
  end
end
if KEYS[3] ~= '' then
  local holder = redis.call('GET', KEYS[3])
  if holder == ARGV[1] then return {1, ARGV[1]} end -- this very create, repeated
  if holder then
    local r = redis.call('HMGET', ARGV[3] .. holder, 'status', 'unique_while', 'unique_pending', 'created_at')
    if unique_held(r[1], r[2]) then
      if r[3] and (r[1] == 'queued' or r[1] == 'scheduled')
          and tonumber(ARGV[11]) - (tonumber(r[4]) or 0) < tonumber(ARGV[12]) then
        return {4, holder}
      end
      return {3, holder}
    end
  end
  redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[10])
end
if KEYS[2] ~= '' then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 13))
redis.call('PEXPIRE', KEYS[1], ARGV[7])
if ARGV[4] ~= '' then redis.call('ZADD', ARGV[5] .. ARGV[4], ARGV[6], ARGV[1]) end
for i = 4, #KEYS do redis.call('ZADD', KEYS[i], ARGV[9], ARGV[1]) end
return {1, ARGV[1]}
`

var createScript = redis.NewScript(createLua)

// discardScript removes a record that was never accepted (its publish
// failed), its entry in the index of waiting jobs and its list of status,
// and the keys from KEYS[2] on (its idempotency key, its unique key) that
// still name it (an empty name is none). ARGV: id, waiting index key prefix, list key prefix (its
// other lists drop it when next read).
const discardLua = `
local st = redis.call('HGET', KEYS[1], 'status')
if st and st ~= 'queued' and st ~= 'scheduled' then
  -- A worker took the message although its confirm never arrived: the
  -- job is real, so it and its key stay.
  return 0
end
local pool = redis.call('HGET', KEYS[1], 'pool')
redis.call('DEL', KEYS[1])
if pool and st and ARGV[3] then redis.pcall('ZREM', ARGV[3] .. 's:' .. pool .. ':' .. st, ARGV[1]) end
for i = 2, #KEYS do
  if KEYS[i] ~= '' and redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
-- Last, and unable to stop the rest: the record is what must go; an entry
-- left in the index is healed by the oldest-waiting script.
if pool then redis.pcall('ZREM', ARGV[2] .. pool, ARGV[1]) end
return 1
`

var discardScript = redis.NewScript(discardLua)

// startScript marks a job running for a new attempt. It returns the job's
// status after the call and its attempt number; a missing, terminal or
// stale job is left as it is. ARGV: worker, now ms, and the attempts the
// message says were made before it was published (-1: unknown, no check).
// A message whose count disagrees with the record is a stale copy ("stale")
// and must not run, except when the record shows that very attempt still
// running: then either its worker was lost and the broker redelivered the
// message, or this is a second copy of the message (one the rescuer
// republished, say) while the first runs. The worker's lease tells them
// apart: while it lasts the attempt is in live hands and this copy is
// "busy", with the milliseconds to wait before offering it again (until
// the lease would lapse, or a tenth of the time the attempt has run, up to
// a minute, so an attempt that runs for hours is not asked after every few
// seconds), which the record keeps as parked_until, so that the rescuer
// does not publish another copy while this one is on its way back; once
// the lease has lapsed the attempt was lost and this one runs.
// ARGV[4] is a token unique to this delivery: a repeat of the same start
// (a reply lost on the way) finds its own token and changes nothing.
// ARGV[5] and [6], the job id and the waiting index key prefix, take the
// job out of its pool's index of waiting jobs; [7] is the worker lease key
// prefix and [8] the running index key prefix, which the job enters. A
// running job also returns when it was due (Unix ms: when it was scheduled
// for, or created), which tells a worker how far its pool's queue has come.
// ARGV[9] is the retention ms and [10] the longest timeout ms: a started
// record expires the retention after its attempt's deadline (its
// timeout_ms, or the longest timeout when it has none), and a parked copy
// keeps it at least the retention after the copy is due back. Without
// them (an older worker's call) the expiry stays as it was. ARGV[11] is
// the list key prefix: the job moves to its pool's list of running jobs.
// An attempt still running when the next starts (its worker was lost) is
// added to the record's attempts as lost.
//
// Every job runs this and the finish script, so both read the record with
// one HMGET and write it with one HSET: each redis.call costs Redis about
// as much as a small command of its own.
const startLua = terminalLua + `
local r = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'start_token', 'pool', 'worker', 'started_at', 'scheduled_at', 'created_at', 'timeout_ms', 'attempts')
local st = r[1]
if not st then return {'missing', 0} end
local attempt = tonumber(r[2]) or 0
if terminal(st) then return {st, attempt} end
if st == 'running' and r[3] == ARGV[4] then
  return {'running', attempt, tonumber(r[7] or r[8]) or 0}
end
local made = tonumber(ARGV[3])
if made >= 0 and attempt ~= made then
  if not (st == 'running' and attempt == made + 1) then
    return {'stale', attempt}
  end
  if ARGV[7] and r[5] then
    local left = redis.call('PTTL', ARGV[7] .. r[5])
    if left ~= -2 then
      local ran = tonumber(ARGV[2]) - (tonumber(r[6]) or tonumber(ARGV[2]))
      local wait = math.max(left + 1000, math.min(math.floor(ran / 10), 60000))
      redis.call('HSET', KEYS[1], 'parked_until', tonumber(ARGV[2]) + wait)
      if ARGV[9] and redis.call('PTTL', KEYS[1]) < wait + tonumber(ARGV[9]) then
        redis.call('PEXPIRE', KEYS[1], wait + tonumber(ARGV[9]))
      end
      return {'busy', attempt, wait}
    end
  end
end
attempt = attempt + 1
local set = {'attempt', attempt, 'status', 'running', 'worker', ARGV[1], 'started_at', ARGV[2], 'start_token', ARGV[4]}
if st == 'running' then
  set[#set + 1] = 'attempts'
  set[#set + 1] = add_attempt(r[10], attempt_entry(attempt - 1, r[5], r[6], nil, 'lost', nil))
end
redis.call('HSET', KEYS[1], unpack(set))
redis.call('HDEL', KEYS[1], 'progress', 'finished_at', 'parked_until', 'limited_until', 'limited_by')
relist(ARGV[11], r[4], st, 'running', ARGV[5], r[8])
if ARGV[9] then
  local timeout = tonumber(r[9]) or 0
  if timeout <= 0 then timeout = tonumber(ARGV[10]) end
  redis.call('PEXPIRE', KEYS[1], timeout + tonumber(ARGV[9]))
end
if r[4] then
  redis.call('ZREM', ARGV[6] .. r[4], ARGV[5])
  if ARGV[8] then redis.call('ZADD', ARGV[8] .. r[4], ARGV[2], ARGV[5]) end
end
return {'running', attempt, tonumber(r[7] or r[8]) or 0}
`

var startScript = redis.NewScript(startLua)

// finishScript records an attempt's outcome. A terminal outcome sets the
// record's expiry to the retention and publishes the status on the job's
// own done channel (jobs.Namespace.DoneChannel), where only those waiting
// for this job listen. "retrying" records when the next attempt is due;
// "queued" (an attempt interrupted by shutdown) takes the attempt back,
// since it did not count; either keeps the record the retention after the
// job is next due. It returns {'ok', status} when it recorded the outcome,
// {'terminal', status} when the job had already ended (nothing changed),
// {'missing', ""} without a record. ARGV: status, now ms, retention ms,
// result (empty for none), error JSON (empty for none), the job's done
// channel, id, next attempt due ms (empty for none), the attempt this
// outcome belongs to (-1: any), and for "queued" the attempt count to
// restore (the attempts made before the interrupted one), and the waiting
// index key prefix, and the running index key prefix. An outcome of an
// attempt the record has moved past (a run that overlapped a redelivery of
// its message) is "superseded" and changes nothing. A retrying or queued
// outcome puts the job back in its pool's index of waiting jobs, due when
// the next attempt is (or now); any other takes it out (a running job is
// not in it: the start script took it out). A job that was running leaves
// its pool's index of running jobs. ARGV[13] is the list key prefix: the
// job moves to its pool's list of its new status; [14] the prefix of the
// per-minute counts of outcomes (jobs.Namespace.OutcomesKey), which a
// succeeded or failed job adds to. An attempt that was running is added to
// the record's attempts, a retried one as failed and an interrupted one as
// interrupted.
const finishLua = terminalLua + `
local r = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'pool', 'error', 'progress', 'worker', 'started_at', 'created_at', 'attempts')
local st = r[1]
if not st then return {'missing', ''} end
if terminal(st) then return {'terminal', st} end
local of = tonumber(ARGV[9])
if of >= 0 and (tonumber(r[2]) or 0) ~= of then
  return {'superseded', st}
end
local set = {'status', ARGV[1]}
local function put(field, value) set[#set + 1] = field; set[#set + 1] = value end
if ARGV[4] ~= '' then put('result', ARGV[4]) end
if ARGV[5] ~= '' then
  put('error', ARGV[5])
elseif r[4] then
  redis.call('HDEL', KEYS[1], 'error')
end
if ARGV[8] ~= '' then put('scheduled_at', ARGV[8]) end
if ARGV[1] == 'queued' then put('attempt', ARGV[10]) end
if ARGV[1] == 'succeeded' and r[5] then put('progress', '{"percent":100}') end
if st == 'running' then
  local outcome = ARGV[1]
  if outcome == 'retrying' then outcome = 'failed' elseif outcome == 'queued' then outcome = 'interrupted' end
  put('attempts', add_attempt(r[9], attempt_entry(r[2], r[6], r[7], ARGV[2], outcome, ARGV[5])))
end
local ended = terminal(ARGV[1])
if ended then put('finished_at', ARGV[2]) end
redis.call('HSET', KEYS[1], unpack(set))
if ended then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PUBLISH', ARGV[6], ARGV[1])
else
  local due = tonumber(ARGV[8]) or tonumber(ARGV[2])
  redis.call('PEXPIRE', KEYS[1], math.max(due - tonumber(ARGV[2]), 0) + tonumber(ARGV[3]))
end
local pool = r[3]
if pool and (ARGV[1] == 'retrying' or ARGV[1] == 'queued') then
  redis.call('ZADD', ARGV[11] .. pool, ARGV[8] ~= '' and ARGV[8] or ARGV[2], ARGV[7])
elseif pool and st ~= 'running' then
  redis.call('ZREM', ARGV[11] .. pool, ARGV[7])
end
if pool and st == 'running' and ARGV[12] then redis.call('ZREM', ARGV[12] .. pool, ARGV[7]) end
relist(ARGV[13], pool, st, ARGV[1], ARGV[7], r[8])
if ARGV[14] and pool and (ARGV[1] == 'succeeded' or ARGV[1] == 'failed') then
  local counts = ARGV[14] .. pool .. ':' .. math.floor(tonumber(ARGV[2]) / 60000)
  redis.call('HINCRBY', counts, ARGV[1], 1)
  redis.call('EXPIRE', counts, 7200)
end
return {'ok', ARGV[1]}
`

// cancelLua cancels a job that has not ended: it becomes canceled at once,
// workers hear "cancel <id>" on the events channel, so one running it
// cancels its context, and its done channel says "canceled". Returns {'ok',
// previous status}, {'terminal', status} or {'missing', ""}. ARGV: now ms,
// retention ms, error JSON, events channel, id, waiting index key prefix,
// the job's done channel, running index key prefix, list key prefix, the
// prefix of the types' indexes of limited jobs. A running attempt is added
// to the record's attempts as canceled. A job its rate limit held back
// leaves its type's index of limited jobs, so it no longer counts as
// limited (its message, checking back, finds it ended).
const cancelLua = terminalLua + `
local r = redis.call('HMGET', KEYS[1], 'status', 'pool', 'attempt', 'worker', 'started_at', 'created_at', 'attempts', 'type', 'limited_until')
local st = r[1]
if not st then return {'missing', ''} end
if terminal(st) then return {'terminal', st} end
redis.call('HSET', KEYS[1], 'status', 'canceled', 'finished_at', ARGV[1], 'error', ARGV[3])
if r[9] then
  redis.call('HDEL', KEYS[1], 'limited_until', 'limited_by')
  if ARGV[10] and r[8] then redis.call('ZREM', ARGV[10] .. r[8], ARGV[5]) end
end
if st == 'running' then
  redis.call('HSET', KEYS[1], 'attempts', add_attempt(r[7], attempt_entry(r[3], r[4], r[5], ARGV[1], 'canceled', ARGV[3])))
end
relist(ARGV[9], r[2], st, 'canceled', ARGV[5], r[6])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if r[2] then
  redis.call('ZREM', ARGV[6] .. r[2], ARGV[5])
  if st == 'running' and ARGV[8] then redis.call('ZREM', ARGV[8] .. r[2], ARGV[5]) end
end
redis.call('PUBLISH', ARGV[4], 'cancel ' .. ARGV[5])
redis.call('PUBLISH', ARGV[7], 'canceled')
return {'ok', st}
`

var cancelScript = redis.NewScript(cancelLua)

var finishScript = redis.NewScript(finishLua)

// progressScript records progress of a running job. ARGV: progress JSON.
const progressLua = `
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[1])
return 1
`

var progressScript = redis.NewScript(progressLua)

// Created is the outcome of creating one job.
type Created struct {
	// Job is the job as recorded: the new one, or for a known idempotency
	// key or a held unique key the earlier job (Existing is true then).
	Job      *jobs.Job
	Existing bool
	// Unique says the earlier job is the holder of the job's unique key
	// (not the job its idempotency key names).
	Unique bool
	Err    error
}

// uniquePendingWait is how long a submission that finds its unique key
// held by a job not yet confirmed (created, its publish not yet confirmed
// or discarded) waits for the holder's fate, counted from the holder's
// creation. A holder still unconfirmed after it is taken as accepted: its
// creator died before publishing, and the rescuer publishes such a job.
const uniquePendingWait = 10 * time.Second

// Create records new jobs, in one round trip for the whole slice. A job whose
// idempotency key its submitter already used is not written: its entry
// names the earlier job when that job had the same type and payload, and
// has an error wrapping ErrIdempotencyConflict when not. A job whose unique
// key is held (docs/unique.md) is not written either: its entry names the
// holder, with Unique set; a holder whose creation is not yet confirmed
// (Confirm) is waited for, so that no job is answered with one that is then
// discarded. Each record expires the retention after the job is due. The
// error is non-nil when Redis could not be reached; per-job problems are in
// the entries.
func (s *Store) Create(ctx context.Context, js []*jobs.Job) ([]Created, error) {
	out, err := s.createWaiting(ctx, js)
	if err != nil {
		return nil, unavailable("create jobs", err)
	}
	return out, nil
}

// createWaiting creates js, and creates again those whose unique key's
// holder was not yet confirmed, until it is (or is gone).
func (s *Store) createWaiting(ctx context.Context, js []*jobs.Job) ([]Created, error) {
	out, pending, err := s.createOnce(ctx, js)
	pause := 10 * time.Millisecond
	for err == nil && len(pending) > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 200*time.Millisecond)
		again := make([]*jobs.Job, len(pending))
		for k, i := range pending {
			again[k] = js[i]
		}
		var res []Created
		var still []int
		res, still, err = s.createOnce(ctx, again)
		for k, r := range res {
			out[pending[k]] = r
		}
		for k := range still {
			still[k] = pending[still[k]]
		}
		pending = still
	}
	return out, err
}

// createOnce is one try of create, loading the script if Redis lost it;
// pending lists the jobs whose unique key's holder is not yet confirmed.
func (s *Store) createOnce(ctx context.Context, js []*jobs.Job) ([]Created, []int, error) {
	out, pending, err := s.create(ctx, js)
	if isNoScript(err) {
		// Pipelined EvalSha cannot load a script Redis has lost (a restart
		// or SCRIPT FLUSH); load it and try once more.
		if err := createScript.Load(ctx, s.rdb).Err(); err != nil {
			return nil, nil, fmt.Errorf("load scripts: %w", err)
		}
		out, pending, err = s.create(ctx, js)
	}
	return out, pending, err
}

func (s *Store) create(ctx context.Context, js []*jobs.Job) ([]Created, []int, error) {
	out := make([]Created, len(js))
	cmds := make([]*redis.Cmd, len(js))     // the script, for a job with an idempotency or unique key
	plain := make([][]redis.Cmder, len(js)) // HSET and ZADD, for one without
	// Through the shared round trips: concurrent single-job requests to the
	// API then cost Redis one round trip between them. The records wait
	// for the replicas there too (Config.WaitReplicas), so that a job
	// accepted is one a failover keeps.
	check := noWait
	s.pipe.Do(func(p *trip) {
		defer func() { check = p.replicate() }()
		for i, j := range js {
			f, err := fields(j)
			if err != nil {
				out[i].Err = err
				continue
			}
			// A job waits from its due time, or from its creation when it
			// has none; its record is kept the retention after that.
			created := j.CreatedAt
			if created.IsZero() {
				created = s.now()
			}
			due := created
			if j.ScheduledAt != nil {
				due = *j.ScheduledAt
			}
			keep := max(due.Sub(created), 0) + s.cfg.Retention
			lists, metaLists := s.lists(j)
			if len(metaLists) > 0 {
				p.SAdd(ctx, s.ns.ListsKey(), metaLists...)
			}
			if j.IdempotencyKey == "" && j.Unique == nil {
				// Nothing to check, so no script: a script call costs Redis
				// more than the commands it would run (0.087 against 0.052 s
				// per 10,000 jobs for two of them, docs/performance.md; the
				// expiry is a third). Should one fail, Create fails and the
				// API discards the jobs it tried to create; an index entry
				// left without a record is healed by OldestWaiting.
				plain[i] = append(plain[i], p.HSet(ctx, s.ns.JobKey(j.ID), f...), p.PExpire(ctx, s.ns.JobKey(j.ID), keep))
				for _, l := range lists {
					plain[i] = append(plain[i], p.ZAdd(ctx, l, redis.Z{Score: float64(created.UnixMilli()), Member: j.ID}))
				}
				if j.Pool != "" {
					plain[i] = append(plain[i], p.ZAdd(ctx, s.ns.WaitingKey(j.Pool), redis.Z{Score: float64(due.UnixMilli()), Member: j.ID}))
				}
				continue
			}
			idem, unique, err := s.dedupKeys(j)
			if err != nil {
				out[i].Err = err
				continue
			}
			var window time.Duration
			if j.Unique != nil {
				window = j.Unique.For.Std()
				// Until Confirm: a submission finding this job holding the
				// key waits to learn whether it was accepted.
				f = append(f, fUniquePending, "1")
			}
			keys := append([]string{s.ns.JobKey(j.ID), idem, unique}, lists...)
			args := append([]any{j.ID, s.cfg.IdempotencyWindow.Milliseconds(), s.ns.JobKey(""),
				j.Pool, s.ns.WaitingKey(""), ms(due), keep.Milliseconds(), fingerprint(j), ms(created),
				window.Milliseconds(), ms(s.now()), uniquePendingWait.Milliseconds()}, f...)
			cmds[i] = createScript.EvalSha(ctx, p, keys, args...)
		}
	})
	for i, c := range cmds {
		if c != nil && c.Err() != nil {
			return nil, nil, c.Err()
		}
		for _, pc := range plain[i] {
			if err := pc.Err(); err != nil {
				return nil, nil, err
			}
		}
		if plain[i] != nil {
			out[i].Job = js[i]
		}
	}
	if err := check(); err != nil {
		return nil, nil, err
	}
	var existing, pending []int
	ids := make(map[string]bool, len(js))
	for _, j := range js {
		ids[j.ID] = true
	}
	for i, c := range cmds {
		if c == nil {
			continue
		}
		res, err := c.Slice()
		if err != nil || len(res) != 2 {
			out[i].Err = fmt.Errorf("create job %s: %w", js[i].ID, err)
			continue
		}
		switch n, _ := res[0].(int64); n {
		case 1:
			out[i].Job = js[i]
			continue
		case 2:
			// The earlier job is not read: the submitter learns only that
			// the key is taken by another job.
			out[i].Err = fmt.Errorf("create job of type %s: idempotency key %q: %w", js[i].Type, js[i].IdempotencyKey, ErrIdempotencyConflict)
			continue
		case 3:
			out[i].Unique = true
		case 4:
			// A holder created by this very call is answered at once: the
			// caller knows its fate (producer.Accept answers for both).
			if !ids[fmt.Sprint(res[1])] {
				pending = append(pending, i)
				continue
			}
			out[i].Unique = true
		}
		out[i].Existing = true
		out[i].Job = &jobs.Job{ID: fmt.Sprint(res[1])}
		existing = append(existing, i)
	}
	for _, i := range existing {
		j, err := s.Get(ctx, out[i].Job.ID)
		if err != nil {
			out[i].Err = fmt.Errorf("earlier job %s: %w", out[i].Job.ID, err)
			out[i].Job = nil
			continue
		}
		out[i].Job = j
	}
	return out, pending, nil
}

// dedupKeys returns the Redis keys of a job's idempotency key and unique
// key, each "" when the job has none.
func (s *Store) dedupKeys(j *jobs.Job) (idem, unique string, err error) {
	if j.IdempotencyKey != "" {
		if idem, err = s.idempotencyKey(j); err != nil {
			return "", "", err
		}
	}
	if j.Unique != nil {
		unique = s.ns.UniqueKey(j.Type, j.Unique.Key)
	}
	return idem, unique, nil
}

// Confirm marks created jobs as accepted, their publish confirmed: a
// submission that finds one holding its unique key no longer waits for
// it. Only jobs with a unique key are marked (in one round trip); if it
// fails, such a submission waits out uniquePendingWait instead.
func (s *Store) Confirm(ctx context.Context, js []*jobs.Job) error {
	var keys []string
	for _, j := range js {
		if j.Unique != nil {
			keys = append(keys, s.ns.JobKey(j.ID))
		}
	}
	if len(keys) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.HDel(ctx, k, fUniquePending)
		}
		return nil
	})
	if err != nil {
		return unavailable("confirm jobs", err)
	}
	return nil
}

// lists returns the keys of the lists a new job enters (jobs.ListAll, its
// type's, its pool's list of its status, and one per metadata label), and
// the suffixes of the metadata lists among them, which the rescuer trims.
func (s *Store) lists(j *jobs.Job) (keys []string, meta []any) {
	prefix := s.ns.ListKey()
	keys = append(make([]string, 0, 3+len(j.Metadata)), prefix+jobs.ListAll, prefix+jobs.ListOfType(j.Type))
	if j.Pool != "" {
		keys = append(keys, prefix+jobs.ListOfStatus(j.Pool, j.Status))
	}
	for k, v := range j.Metadata {
		if !jobs.Listed(k) {
			continue
		}
		m := jobs.ListOfMeta(k, v)
		keys, meta = append(keys, prefix+m), append(meta, m)
	}
	return keys, meta
}

// Discard removes the records of jobs that were created but never accepted,
// with their idempotency and unique keys, in one round trip.
func (s *Store) Discard(ctx context.Context, js []*jobs.Job) error {
	if len(js) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, j := range js {
			keys := []string{s.ns.JobKey(j.ID)}
			if idem, unique, err := s.dedupKeys(j); err == nil {
				keys = append(keys, idem, unique)
			}
			discardScript.Eval(ctx, p, keys, j.ID, s.ns.WaitingKey(""), s.ns.ListKey())
		}
		return nil
	})
	if err != nil {
		return unavailable("discard jobs", err)
	}
	return nil
}

// Started is the outcome of Start.
type Started struct {
	// Status is the job's status after the call: running when the attempt
	// may go ahead; a terminal status when the job is already done (the
	// message is a redelivery and must not run again).
	Status jobs.Status
	// Attempt is the attempt number now running (or the last one).
	Attempt int
	// Missing is true when no record exists: the API never accepted the job
	// (its publish was not confirmed) or the record expired.
	Missing bool
	// Stale is true when the record has moved past the message: another
	// copy of the job (a retry) is on its way, so this one must not run.
	Stale bool
	// Busy is true when the message is a second copy of an attempt that a
	// live worker runs: it must not run now. Offered again after Wait, it
	// finds the attempt ended (and is stale), or still running, or lost
	// with its worker (and then runs).
	Busy bool
	// Wait is how long a busy copy should wait before it is offered again.
	Wait time.Duration
	// Due is when a running job was due: when it was scheduled for, or
	// created. Zero for a record that does not say.
	Due time.Time
}

// Start marks the job running for a new attempt by worker. made is the
// number of attempts the message says were made before it (-1 if it does
// not say); see Started.Stale. token identifies this delivery: calling
// Start again with the same token (after a lost reply) changes nothing.
func (s *Store) Start(ctx context.Context, id, worker string, made int, token string, now time.Time) (Started, error) {
	res, err := s.run(ctx, startScript, []string{s.ns.JobKey(id)}, worker, ms(now), made, token, id,
		s.ns.WaitingKey(""), s.ns.WorkerKey(""), s.ns.RunningKey(""),
		s.cfg.Retention.Milliseconds(), jobs.MaxTimeout.Milliseconds(), s.ns.ListKey()).Slice()
	if err != nil {
		return Started{}, unavailable("start job "+id, err)
	}
	st, _ := res[0].(string)
	n, _ := res[1].(int64)
	var third int64
	if len(res) > 2 {
		third, _ = res[2].(int64)
	}
	switch st {
	case "missing":
		return Started{Missing: true}, nil
	case "stale":
		return Started{Stale: true, Attempt: int(n)}, nil
	case "busy":
		return Started{Busy: true, Attempt: int(n), Wait: time.Duration(third) * time.Millisecond}, nil
	}
	out := Started{Status: jobs.Status(st), Attempt: int(n)}
	if third > 0 {
		out.Due = time.UnixMilli(third)
	}
	return out, nil
}

// Outcome is the end of an attempt, as Finish records it.
type Outcome struct {
	// Status is succeeded, failed or canceled, or retrying when another
	// attempt follows.
	Status jobs.Status
	// Result is the handler's result as JSON (succeeded only).
	Result json.RawMessage
	// Error is the failure (failed, canceled or retrying).
	Error *jobs.Error
	// Next is when the next attempt is due (retrying only).
	Next time.Time
	// Attempt is the attempt the outcome belongs to; an outcome of an
	// attempt the record has moved past is not recorded (ErrTerminal). Zero
	// means any attempt.
	Attempt int
	// Restore is, for a queued outcome (an interrupted attempt), the
	// attempt count to put back: the attempts made before it.
	Restore int
}

// ErrTerminal means the job had already reached a terminal state, so the
// outcome was not recorded.
var ErrTerminal = errors.New("job already finished")

// Finish records the outcome of the job's attempt. It returns ErrTerminal,
// wrapped, when the job was already terminal, and ErrNotFound when there is
// no record.
func (s *Store) Finish(ctx context.Context, id string, o Outcome, now time.Time) error {
	var errJSON []byte
	if o.Error != nil {
		var err error
		if errJSON, err = json.Marshal(o.Error); err != nil {
			return fmt.Errorf("finish job %s: encode error: %w", id, err)
		}
	}
	next := ""
	if !o.Next.IsZero() {
		next = ms(o.Next)
	}
	of := -1
	if o.Attempt > 0 {
		of = o.Attempt
	}
	// The outcome waits for the replicas (when the store waits at all):
	// the worker acknowledges the message once Finish returns, and an
	// outcome a failover then lost would leave the record running under
	// the worker's live lease, which no rescuer takes back while the
	// worker lives. Whatever the script answered, a failed wait is an
	// outage: the worker tries again, and the script's second answer
	// (terminal, once this one is on the replicas) settles it.
	cmd, waitErr := s.runReplicated(ctx, finishScript, []string{s.ns.JobKey(id)},
		string(o.Status), ms(now), s.cfg.Retention.Milliseconds(),
		string(o.Result), string(errJSON), s.ns.DoneChannel(id), id, next, of, o.Restore, s.ns.WaitingKey(""), s.ns.RunningKey(""),
		s.ns.ListKey(), s.ns.OutcomesPrefix())
	res, err := cmd.StringSlice()
	if err == nil {
		err = waitErr
	}
	if err != nil {
		return unavailable("finish job "+id, err)
	}
	switch res[0] {
	case "missing":
		return fmt.Errorf("finish job %s: %w", id, ErrNotFound)
	case "terminal":
		if err := s.fence(ctx, id, res[1]); err != nil {
			return unavailable("finish job "+id, err)
		}
		return fmt.Errorf("finish job %s: %w (%s)", id, ErrTerminal, res[1])
	case "superseded":
		return fmt.Errorf("finish job %s: attempt %d was superseded: %w", id, o.Attempt, ErrTerminal)
	}
	return nil
}

// fence waits, when the store waits for replicas, until they have every
// write made before now, on any connection. A Finish that finds its job
// ended may be the repeat of one whose round trip broke after its script
// ran: that outcome is this process's, written on another connection, and
// WAIT covers only the writes of its own. So fence writes once more, on
// the WAIT's connection: it announces the job's end again on its done
// channel (a repeat waiters take as the first), which Redis passes to the
// replicas like a write, and a replica that has it has everything before.
// (Redis 7.0 makes a WAIT on a connection that wrote nothing wait as well,
// but its documentation promises only a connection's own writes.)
func (s *Store) fence(ctx context.Context, id, status string) error {
	if s.cfg.WaitReplicas <= 0 {
		return nil
	}
	var wait *redis.Cmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Publish(ctx, s.ns.DoneChannel(id), status)
		wait = p.Do(ctx, "WAIT", s.cfg.WaitReplicas, s.cfg.WaitTimeout.Milliseconds())
		return nil
	})
	if err != nil {
		return fmt.Errorf("wait for replicas: %w", err)
	}
	return replicated(wait, s.cfg.WaitReplicas, s.cfg.WaitTimeout)
}

// Progress records a running job's progress; it does nothing once the job
// is no longer running.
func (s *Store) Progress(ctx context.Context, id string, p jobs.Progress) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("progress of job %s: %w", id, err)
	}
	if err := s.run(ctx, progressScript, []string{s.ns.JobKey(id)}, string(b)).Err(); err != nil {
		return unavailable("progress of job "+id, err)
	}
	return nil
}

func isNoScript(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT")
}

// canceledError is the error recorded on a job canceled by request.
var canceledError = &jobs.Error{Code: "canceled", Message: "canceled by request"}

// Cancel ends a job that has not ended yet as canceled and tells the worker
// running it, if any. It returns the status the job had, ErrTerminal
// (wrapped) when it had already ended, or ErrNotFound.
func (s *Store) Cancel(ctx context.Context, id string, now time.Time) (jobs.Status, error) {
	errJSON, _ := json.Marshal(canceledError)
	res, err := s.run(ctx, cancelScript, []string{s.ns.JobKey(id)},
		ms(now), s.cfg.Retention.Milliseconds(), string(errJSON), s.ns.EventsChannel(), id, s.ns.WaitingKey(""), s.ns.DoneChannel(id), s.ns.RunningKey(""),
		s.ns.ListKey(), s.ns.LimitedKey("")).StringSlice()
	if err != nil {
		return "", unavailable("cancel job "+id, err)
	}
	switch res[0] {
	case "missing":
		return "", fmt.Errorf("cancel job %s: %w", id, ErrNotFound)
	case "terminal":
		return jobs.Status(res[1]), fmt.Errorf("cancel job %s: %w (%s)", id, ErrTerminal, res[1])
	}
	return jobs.Status(res[1]), nil
}

// reviveLua makes a failed job queued again for a replay from its pool's
// dead letters: attempts reset, outcome cleared, expiring the retention
// (ARGV[7] ms) from now, when it is due again. A record that expired is
// written anew from the dead letter (ARGV from 8: field/value pairs).
// Either way the job enters its pool's index of waiting jobs, due now. Any other status means the job lives already (replayed before), and
// nothing changes. Returns 1 when the job should be published again.
// ARGV: events channel, id, a token unique to this replay (a repeat of the
// same revive after a lost reply finds it and returns 1 again), now ms,
// types registry key, waiting index key prefix, retention ms, list key
// prefix, then the fields of a new record. The job moves from its pool's
// list of failed jobs to that of queued ones; a record written anew enters
// the lists of all jobs and of its type again. A record that lived keeps
// its attempts, with a mark (attempt 0, outcome "replayed") after which
// they count from 1 again.
const reviveLua = terminalLua + declaredPoolLua + `
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'queued' and redis.call('HGET', KEYS[1], 'revive_token') == ARGV[3] then
  return 1 -- this very revive, repeated
end
if st and st ~= 'failed' then return 0 end
if st then
  local attempts = redis.call('HGET', KEYS[1], 'attempts')
  redis.call('HSET', KEYS[1], 'status', 'queued', 'attempt', 0, 'revive_token', ARGV[3],
    'attempts', add_attempt(attempts, attempt_entry(0, nil, nil, ARGV[4], 'replayed', nil)))
  redis.call('HDEL', KEYS[1], 'error', 'result', 'progress', 'worker', 'started_at', 'finished_at', 'scheduled_at')
else
  redis.call('HSET', KEYS[1], 'revive_token', ARGV[3], unpack(ARGV, 9))
end
local created = redis.call('HGET', KEYS[1], 'created_at')
redis.call('PEXPIRE', KEYS[1], ARGV[7])
local pool = redis.call('HGET', KEYS[1], 'pool') or declared_pool(ARGV[5], redis.call('HGET', KEYS[1], 'type'))
if pool then
  redis.call('HSET', KEYS[1], 'pool', pool)
  redis.call('ZADD', ARGV[6] .. pool, ARGV[4], ARGV[2])
  if st then
    redis.call('ZREM', ARGV[8] .. 's:' .. pool .. ':failed', ARGV[2])
  end
  if created then redis.call('ZADD', ARGV[8] .. 's:' .. pool .. ':queued', created, ARGV[2]) end
end
if not st and created then
  redis.call('ZADD', ARGV[8] .. 'all', created, ARGV[2])
  redis.call('ZADD', ARGV[8] .. 't:' .. redis.call('HGET', KEYS[1], 'type'), created, ARGV[2])
end
return 1
`

var reviveScript = redis.NewScript(reviveLua)

// Refail sets a revived job back to failed with the error it had, when its
// replay could not publish it: the job's dead letter stays, and a later
// replay finds it failed again.
func (s *Store) Refail(ctx context.Context, id string, e *jobs.Error) error {
	return s.Finish(ctx, id, Outcome{Status: jobs.StatusFailed, Error: e}, s.now())
}

// Revive makes a failed job queued again, with its attempts reset, so its
// dead letter can be replayed; j is the job as the dead letter carries it,
// used when the record has expired. The job waits again from now (the
// store's clock: Revive's signature is the callback queue.Broker.ReplayDead
// takes). It reports false when the job is not failed (already replayed):
// its dead letter is then a leftover.
func (s *Store) Revive(ctx context.Context, j *jobs.Job) (bool, error) {
	fresh := *j
	fresh.Status, fresh.Attempt = jobs.StatusQueued, 0
	fresh.ScheduledAt = nil
	f, err := fields(&fresh)
	if err != nil {
		return false, fmt.Errorf("revive job %s: %w", j.ID, err)
	}
	args := append([]any{s.ns.EventsChannel(), j.ID, jobs.NewID(), ms(s.now()), s.ns.TypesKey(), s.ns.WaitingKey(""),
		s.cfg.Retention.Milliseconds(), s.ns.ListKey()}, f...)
	n, err := s.run(ctx, reviveScript, []string{s.ns.JobKey(j.ID)}, args...).Int()
	if err != nil {
		return false, unavailable("revive job "+j.ID, err)
	}
	return n == 1, nil
}
