package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/jobs"
)

// ErrNotRetryable means a job asked to run again is neither failed nor
// canceled: it has not ended (queued, scheduled, running, retrying), or it
// succeeded, whose result and artifact a second run would overwrite.
var ErrNotRetryable = errors.New("only a failed or canceled job can be retried")

// retryLua makes a failed or canceled job queued again, for a retry asked
// for by its id (POST /v1/jobs/{id}/retry): its attempt count is reset to
// 0 and its outcome cleared, its record is kept the retention (ARGV[4] ms)
// from now, and it enters its pool's index of waiting jobs, due now, and
// moves to its pool's list of queued jobs. The history of its attempts
// stays, with a mark (attempt 0, outcome "retried", at now) after which the
// attempts count from 1 again. ARGV: id, a token naming this retry, now ms, retention ms, waiting
// index key prefix, types registry key, list key prefix.
//
// It returns {'missing', ""} without a record; {'again', status} when the
// record already holds this token (this very retry, repeated: nothing
// changes); {'refused', status} for a job that is not failed or canceled
// (nothing changes); and {'ok', status before, ms the record had left (-1:
// no expiry), then the field/value pairs it cleared}, which is what the
// undo script needs to put the record back as it was if the job's message
// cannot be published.
const retryLua = terminalLua + declaredPoolLua + `
local r = redis.call('HMGET', KEYS[1], 'status', 'retry_token')
local st = r[1]
if not st then return {'missing', ''} end
if r[2] == ARGV[2] then return {'again', st} end -- this very retry, repeated
if st ~= 'failed' and st ~= 'canceled' then return {'refused', st} end
local cleared = {'attempt', 'error', 'result', 'progress', 'worker', 'started_at', 'finished_at', 'scheduled_at', 'parked_until', 'artifact', 'retry_token', 'attempts'}
local was = redis.call('HMGET', KEYS[1], unpack(cleared))
local out = {'ok', st, redis.call('PTTL', KEYS[1])}
for i, field in ipairs(cleared) do
  if was[i] then
    out[#out + 1] = field
    out[#out + 1] = was[i]
  end
end
redis.call('HDEL', KEYS[1], unpack(cleared))
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempt', 0, 'retry_token', ARGV[2],
  'attempts', add_attempt(was[12], attempt_entry(0, nil, nil, ARGV[3], 'retried', nil)))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local pool = redis.call('HGET', KEYS[1], 'pool') or declared_pool(ARGV[6], redis.call('HGET', KEYS[1], 'type'))
if pool then
  redis.call('HSET', KEYS[1], 'pool', pool)
  redis.call('ZADD', ARGV[5] .. pool, ARGV[3], ARGV[1])
  relist(ARGV[7], pool, st, 'queued', ARGV[1], redis.call('HGET', KEYS[1], 'created_at'))
end
return out
`

var retryScript = redis.NewScript(retryLua)

// unretryLua puts back a record the retry script changed, when the job's
// message could not be published: only while the record is still queued
// under the same token (a worker that took the job anyway, its confirm
// lost, makes it real, and it stays). The job leaves the index of waiting
// jobs and returns to its list, and its done channel hears its status
// again, for whoever began to wait in between. ARGV: id, the retry's
// token, the status to restore, the expiry ms to restore (-1: leave the
// retention), waiting index key prefix, list key prefix, the job's done
// channel, then the field/value pairs to restore. Returns 1 when it put
// the record back.
const unretryLua = terminalLua + `
local r = redis.call('HMGET', KEYS[1], 'status', 'retry_token', 'pool', 'created_at')
if r[1] ~= 'queued' or r[2] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], 'retry_token', 'attempt', 'attempts')
redis.call('HSET', KEYS[1], 'status', ARGV[3], unpack(ARGV, 8))
if tonumber(ARGV[4]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
if r[3] then
  redis.call('ZREM', ARGV[5] .. r[3], ARGV[1])
  relist(ARGV[6], r[3], 'queued', ARGV[3], ARGV[1], r[4])
end
redis.call('PUBLISH', ARGV[7], ARGV[3])
return 1
`

var unretryScript = redis.NewScript(unretryLua)

// Retried is the outcome of Retry.
type Retried struct {
	// Job is the job as it stands after the call: queued for its new run,
	// or, for a repeated retry, wherever that run has got to.
	Job *jobs.Job
	// Was is the status the job had: failed or canceled; for a job that
	// could not be retried (ErrNotRetryable), or a repeated retry, its
	// status now.
	Was jobs.Status
	// Repeated is true when the token's retry had already been made: the
	// job was not changed again.
	Repeated bool
}

// Retry runs a failed or canceled job again as a new job run: its record
// becomes queued with its attempts reset, then publish sends its message
// (with confirms). If publish fails the record is put back as it was, so a
// failed retry changes nothing; should that fail too (Redis lost in
// between), the job waits queued in its pool's index of waiting jobs and
// the rescuer publishes it.
//
// token names this retry: a second call with the same token (a request
// repeated after its answer was lost) changes nothing and reports
// Repeated; it publishes the job's message again while the job is still
// queued, since the first call may have died before it published (the
// start script runs one of two such copies, docs/protocol.md §7.1). An
// empty token means a new one.
//
// It returns an error wrapping ErrNotFound for an unknown job and
// ErrNotRetryable for one that is not failed or canceled (Retried.Was
// says what it is), or publish's error.
func (s *Store) Retry(ctx context.Context, id, token string, publish func(context.Context, *jobs.Job) error) (Retried, error) {
	if token == "" {
		token = jobs.NewID()
	}
	res, err := s.run(ctx, retryScript, []string{s.ns.JobKey(id)},
		id, token, ms(s.now()), s.cfg.Retention.Milliseconds(), s.ns.WaitingKey(""), s.ns.TypesKey(), s.ns.ListKey()).Slice()
	if err != nil {
		return Retried{}, unavailable("retry job "+id, err)
	}
	if len(res) < 2 {
		return Retried{}, fmt.Errorf("retry job %s: unexpected reply %v", id, res)
	}
	outcome, _ := res[0].(string)
	was, _ := res[1].(string)
	out := Retried{Was: jobs.Status(was)}
	switch outcome {
	case "missing":
		return out, fmt.Errorf("retry job %s: %w", id, ErrNotFound)
	case "refused":
		return out, fmt.Errorf("retry job %s: %w (it is %s)", id, ErrNotRetryable, was)
	case "again":
		out.Repeated = true
		if out.Job, err = s.Get(ctx, id); err != nil {
			return out, fmt.Errorf("retry job %s: %w", id, err)
		}
		if out.Job.Status == jobs.StatusQueued {
			// No undo: the first call may have published, and its run
			// must not be taken back.
			if err := publish(ctx, out.Job); err != nil {
				return out, fmt.Errorf("retry job %s: publish again: %w", id, err)
			}
		}
		return out, nil
	case "ok":
	default:
		return out, fmt.Errorf("retry job %s: unexpected reply %v", id, res)
	}
	restore := func(cause error) error {
		if uerr := s.unretry(context.WithoutCancel(ctx), id, token, res[1:]); uerr != nil {
			s.log.Error("a retry failed and the job's record could not be put back; the rescuer will publish it",
				"job", id, "err", uerr, "cause", cause)
		}
		return fmt.Errorf("retry job %s: %w", id, cause)
	}
	if out.Job, err = s.Get(ctx, id); err != nil {
		return out, restore(err)
	}
	if err := publish(ctx, out.Job); err != nil {
		return out, restore(err)
	}
	return out, nil
}

// unretry runs the undo script with what the retry script returned: the
// status before, the expiry left, and the fields it cleared.
func (s *Store) unretry(ctx context.Context, id, token string, was []any) error {
	if len(was) < 2 {
		return fmt.Errorf("undo retry of job %s: nothing to restore", id)
	}
	ttl, _ := was[1].(int64)
	args := []any{id, token, was[0], strconv.FormatInt(ttl, 10), s.ns.WaitingKey(""), s.ns.ListKey(), s.ns.DoneChannel(id)}
	args = append(args, was[2:]...)
	if err := s.run(ctx, unretryScript, []string{s.ns.JobKey(id)}, args...).Err(); err != nil {
		return unavailable("undo retry of job "+id, err)
	}
	return nil
}
