package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/jobs"
)

// staleIntervals is how many of its own intervals a pool's replica counts
// stay current: an autoscaler that has not written for that long stopped,
// and what it last wrote must not be shown as if it still held.
const staleIntervals = 3

// Replicas is an autoscaler's latest word on one pool, as it publishes it
// for the API and the CLI to show.
type Replicas struct {
	// Current is how many replicas the pool had when the autoscaler looked.
	Current int `json:"current"`
	// Desired is how many it decided the pool should have.
	Desired int `json:"desired"`
	// Reason says why, for people; empty when nothing changed.
	Reason string `json:"reason,omitempty"`
	// At is when the autoscaler decided; zero means now (the store's clock)
	// to PutReplicas.
	At time.Time `json:"at"`
	// Interval is how often the autoscaler decides; it must be positive.
	// The counts are stale, and dropped, once At is more than three
	// intervals old. It is Go duration text in JSON ("15s"), as every
	// duration warren writes.
	Interval time.Duration `json:"interval"`
}

// MarshalJSON writes r with Interval as duration text.
func (r Replicas) MarshalJSON() ([]byte, error) {
	type plain Replicas // no methods: no recursion
	return json.Marshal(struct {
		plain
		Interval jobs.Duration `json:"interval"`
	}{plain(r), jobs.Duration(r.Interval)})
}

// UnmarshalJSON reads what MarshalJSON writes (Interval also as a number of
// seconds, as jobs.Duration reads it).
func (r *Replicas) UnmarshalJSON(b []byte) error {
	type plain Replicas
	v := struct {
		*plain
		Interval jobs.Duration `json:"interval"`
	}{plain: (*plain)(r)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	r.Interval = v.Interval.Std()
	return nil
}

// dropStaleLua deletes fields of a hash only if they still hold the values
// the caller judged stale, so that counts an autoscaler wrote in between
// survive. KEYS[1]: the hash. ARGV: field/value pairs. Returns the number
// of fields deleted.
const dropStaleLua = `
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n
`

var dropStaleScript = redis.NewScript(dropStaleLua)

// PutReplicas publishes an autoscaler's replica counts for pool, replacing
// the pool's earlier ones.
func (s *Store) PutReplicas(ctx context.Context, pool string, r Replicas) error {
	if !jobs.ValidPoolName(pool) {
		return fmt.Errorf("replicas of pool %q: want a pool name", pool)
	}
	if r.Interval <= 0 {
		return fmt.Errorf("replicas of pool %s: interval %s: want a positive interval", pool, r.Interval)
	}
	if r.At.IsZero() {
		r.At = s.now()
	}
	r.At = r.At.UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("replicas of pool %s: encode: %w", pool, err)
	}
	if err := s.rdb.HSet(ctx, s.ns.AutoscaleKey(), pool, b).Err(); err != nil {
		return unavailable("replicas of pool "+pool, err)
	}
	return nil
}

// Replicas returns the current replica counts of every pool an autoscaler
// publishes, by pool. Counts older than three of their intervals are left
// out and deleted: their autoscaler stopped. So are counts that cannot be
// read.
func (s *Store) Replicas(ctx context.Context) (map[string]Replicas, error) {
	key := s.ns.AutoscaleKey()
	h, err := s.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, unavailable("read replicas", err)
	}
	now := s.now()
	out := make(map[string]Replicas, len(h))
	var stale []any // field, value pairs
	for pool, v := range h {
		var r Replicas
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			s.log.Warn("dropping unreadable replica counts", "pool", pool, "err", err)
			stale = append(stale, pool, v)
			continue
		}
		if r.Interval <= 0 || now.Sub(r.At) > staleIntervals*r.Interval {
			stale = append(stale, pool, v)
			continue
		}
		out[pool] = r
	}
	if len(stale) > 0 {
		// The answer is right without the cleanup; a failed one is tried
		// again by the next call.
		if err := s.run(ctx, dropStaleScript, []string{key}, stale...).Err(); err != nil {
			s.log.Warn("cannot delete stale replica counts", "err", unavailable("delete stale replicas", err))
		}
	}
	return out, nil
}
