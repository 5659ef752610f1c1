package store

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// poolLeaseLua takes a pool's supervisor lease (jobs.Namespace.SupervisorKey)
// for a holder if nobody holds it, or extends it if the holder does, and
// returns who holds it now, so that a supervisor standing by learns whom it
// waits for in the same round trip. KEYS[1]: the lease. ARGV: the holder, the
// time to live in ms.
const poolLeaseLua = `
local h = redis.call('GET', KEYS[1])
if h and h ~= ARGV[1] then return h end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
`

var poolLeaseScript = redis.NewScript(poolLeaseLua)

// HoldPool takes pool's supervisor lease for holder, or extends it if holder
// holds it, for ttl, and returns who holds it now: holder itself, or the
// supervisor it waits for.
//
// It does not join the round trips shared with other callers (Store.run):
// a renewal must not queue behind other commands while its lease runs out,
// and those round trips do not end with the caller's context.
func (s *Store) HoldPool(ctx context.Context, pool, holder string, ttl time.Duration) (string, error) {
	h, err := poolLeaseScript.Run(ctx, s.rdb, []string{s.ns.SupervisorKey(pool)}, holder, ttl.Milliseconds()).Text()
	if err != nil {
		return "", unavailable("supervisor lease of pool "+pool, err)
	}
	return h, nil
}

// ReleasePool gives pool's supervisor lease up if holder holds it, so that a
// supervisor standing by takes over without waiting for it to lapse.
func (s *Store) ReleasePool(ctx context.Context, pool, holder string) error {
	if err := releaseScript.Run(ctx, s.rdb, []string{s.ns.SupervisorKey(pool)}, holder).Err(); err != nil && err != redis.Nil {
		return unavailable("release supervisor lease of pool "+pool, err)
	}
	return nil
}
