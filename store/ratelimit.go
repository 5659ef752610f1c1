package store

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"
)

// Rate is a token bucket's refill: Per tokens each second, holding at most
// Burst. A Per of zero or less means no limit.
type Rate struct {
	Per   float64
	Burst float64
}

// Allowance is what Take decided.
type Allowance struct {
	// OK means the tokens were taken.
	OK bool
	// RetryAfter, when not OK, is how long until enough tokens are back.
	RetryAfter time.Duration
	// Never means more jobs were asked for than the jobs bucket ever
	// holds: waiting will not help.
	Never bool
}

// takeLua takes one token from a request bucket (KEYS[1]) and ARGV[5]
// tokens from a jobs bucket (KEYS[2]), both or neither. ARGV: request
// refill per ms, request burst, jobs refill per ms, jobs burst, jobs. A
// refill of 0 means that bucket is not limited. The time is Redis's, so
// that API replicas with drifting clocks share one bucket fairly. Replies
// {1} when taken, {0, wait ms} when not yet, {-1} when never.
const takeLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function level(key, rate, burst)
  local v = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(v[1]) or burst
  local at = tonumber(v[2]) or now
  if now > at then tokens = math.min(burst, tokens + (now - at) * rate) end
  return tokens
end
local rrate, rburst = tonumber(ARGV[1]), tonumber(ARGV[2])
local jrate, jburst, cost = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local wait = 0
local rt, jt
if rrate > 0 then
  rt = level(KEYS[1], rrate, rburst)
  if rt < 1 then wait = math.max(wait, (1 - rt) / rrate) end
end
if jrate > 0 and cost > 0 then
  if cost > jburst then return {-1} end
  jt = level(KEYS[2], jrate, jburst)
  if jt < cost then wait = math.max(wait, (cost - jt) / jrate) end
end
if wait > 0 then return {0, math.ceil(wait)} end
if rt then
  redis.call('HSET', KEYS[1], 'tokens', tostring(rt - 1), 'at', now)
  redis.call('PEXPIRE', KEYS[1], math.ceil(rburst / rrate) + 1000)
end
if jt then
  redis.call('HSET', KEYS[2], 'tokens', tostring(jt - cost), 'at', now)
  redis.call('PEXPIRE', KEYS[2], math.ceil(jburst / jrate) + 1000)
end
return {1}
`

var takeScript = redis.NewScript(takeLua)

// Take takes, for the API key named name, one request from its request
// bucket and n jobs from its jobs bucket, in one round trip: both or
// neither. A bucket's key expires once it would be full again, so idle
// keys leave nothing behind.
func (s *Store) Take(ctx context.Context, name string, requests, jobs Rate, n int) (Allowance, error) {
	perMS := func(r Rate) float64 { return max(r.Per, 0) / 1000 }
	keys := []string{s.ns.RateLimitKey(name, "requests"), s.ns.RateLimitKey(name, "jobs")}
	v, err := takeScript.Run(ctx, s.rdb, keys,
		perMS(requests), requests.Burst, perMS(jobs), jobs.Burst, n).Int64Slice()
	if err != nil {
		return Allowance{}, unavailable(fmt.Sprintf("rate limit of key %s", name), err)
	}
	switch {
	case len(v) == 0:
		return Allowance{}, fmt.Errorf("rate limit of key %s: empty reply", name)
	case v[0] == 1:
		return Allowance{OK: true}, nil
	case v[0] < 0:
		return Allowance{Never: true}, nil
	case len(v) < 2:
		return Allowance{}, fmt.Errorf("rate limit of key %s: reply %v", name, v)
	}
	wait := time.Duration(min(v[1], math.MaxInt64/int64(time.Millisecond))) * time.Millisecond
	return Allowance{RetryAfter: wait}, nil
}
