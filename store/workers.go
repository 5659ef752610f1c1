package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/jobs"
)

// WorkerInfo is what a worker process's lease says of it: who it is and
// what each of its pools is doing. The lease holds it as JSON (leaseRecord;
// docs/protocol.md section 11), renewed every few seconds, so its figures
// are that old at most.
type WorkerInfo struct {
	// ID is the worker id (jobs.NewProcessID), which names the lease.
	ID string
	// Host and PID say where the process runs.
	Host string
	PID  int
	// Version is the version of the program the process runs.
	Version string
	// Started is when the process started; Seen when it last renewed its
	// lease.
	Started, Seen time.Time
	// Pools are the pools it serves, by name.
	Pools map[string]PoolLoad
}

// PoolLoad is one pool of a worker process.
type PoolLoad struct {
	// Concurrency is how many jobs of the pool the process runs at once.
	Concurrency int `json:"concurrency"`
	// Busy is how many of those slots hold a job now.
	Busy int `json:"busy"`
	// Done and Failed count the attempts the process ended since it
	// started: succeeded, and ended with an error (retried or failed).
	Done   int64 `json:"done"`
	Failed int64 `json:"failed"`
}

// leaseRecord is the JSON a lease holds; times are Unix milliseconds, as
// everywhere in Redis.
type leaseRecord struct {
	ID        string              `json:"id"`
	Host      string              `json:"host,omitempty"`
	PID       int                 `json:"pid,omitempty"`
	Version   string              `json:"version,omitempty"`
	StartedMS int64               `json:"started_ms,omitempty"`
	SeenMS    int64               `json:"seen_ms"`
	Pools     map[string]PoolLoad `json:"pools,omitempty"`
}

// KeepLease records that a worker process is alive for ttl, with what it
// is doing, and returns the paused pools, all in one round trip: the lease
// (jobs.Namespace.WorkerKey), its entry in the list of live workers
// (WorkersKey, where lapsed entries are dropped) and a read of the paused
// pools (PausedKey), so that a worker that missed a pause or a resume on
// the events channel learns of it within a renewal. Workers renew it well
// within ttl; a running job whose worker's lease has lapsed was lost with
// that worker.
func (s *Store) KeepLease(ctx context.Context, w WorkerInfo, ttl time.Duration) (map[string]Pause, error) {
	now := s.now()
	rec := leaseRecord{ID: w.ID, Host: w.Host, PID: w.PID, Version: w.Version, SeenMS: now.UnixMilli(), Pools: w.Pools}
	if !w.Started.IsZero() {
		rec.StartedMS = w.Started.UnixMilli()
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode lease of worker %s: %w", w.ID, err)
	}
	var paused *redis.MapStringStringCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.ns.WorkerKey(w.ID), b, ttl)
		p.ZAdd(ctx, s.ns.WorkersKey(), redis.Z{Score: float64(now.Add(ttl).UnixMilli()), Member: w.ID})
		p.ZRemRangeByScore(ctx, s.ns.WorkersKey(), "-inf", "("+ms(now))
		paused = p.HGetAll(ctx, s.ns.PausedKey())
		return nil
	})
	if err != nil {
		return nil, unavailable("lease of worker "+w.ID, err)
	}
	return decodePauses(paused.Val()), nil
}

// Lease is KeepLease for a worker that says nothing of itself (tests, and
// programs that only need to hold attempts alive).
func (s *Store) Lease(ctx context.Context, worker string, ttl time.Duration) error {
	_, err := s.KeepLease(ctx, WorkerInfo{ID: worker}, ttl)
	return err
}

// Release ends a worker's lease at once (it stopped cleanly).
func (s *Store) Release(ctx context.Context, worker string) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.ns.WorkerKey(worker))
		p.ZRem(ctx, s.ns.WorkersKey(), worker)
		return nil
	})
	if err != nil {
		return unavailable("release of worker "+worker, err)
	}
	return nil
}

// Workers returns the worker processes whose leases are current, sorted by
// id. A lease that does not hold a record this version can read (an older
// worker's, which held a time) gives a WorkerInfo with the id alone.
func (s *Store) Workers(ctx context.Context) ([]WorkerInfo, error) {
	ids, err := s.rdb.ZRangeByScore(ctx, s.ns.WorkersKey(), &redis.ZRangeBy{Min: ms(s.now()), Max: "+inf"}).Result()
	if err != nil {
		return nil, unavailable("list workers", err)
	}
	if len(ids) == 0 {
		return []WorkerInfo{}, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.ns.WorkerKey(id)
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, unavailable("read worker leases", err)
	}
	out := make([]WorkerInfo, 0, len(ids))
	for i, v := range vals {
		text, ok := v.(string)
		if !ok {
			continue // released or lapsed since the list was read
		}
		out = append(out, decodeLease(ids[i], text))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// decodeLease reads a lease's value, written by a worker in any language:
// what does not fit the record (a lease of an older worker, which held a
// time; a field of the wrong type; a negative count) is left out, and the
// id is always the one the lease is named by.
func decodeLease(id, text string) WorkerInfo {
	w := WorkerInfo{ID: id}
	var rec leaseRecord
	if json.Unmarshal([]byte(text), &rec) != nil {
		return w
	}
	w.Host, w.Version = rec.Host, rec.Version
	if rec.PID > 0 {
		w.PID = rec.PID
	}
	// Unix ms within the years 1970 to 9999, which time and JSON handle.
	const maxMS = 253402300799999
	if rec.StartedMS > 0 && rec.StartedMS <= maxMS {
		w.Started = time.UnixMilli(rec.StartedMS).UTC()
	}
	if rec.SeenMS > 0 && rec.SeenMS <= maxMS {
		w.Seen = time.UnixMilli(rec.SeenMS).UTC()
	}
	for pool, l := range rec.Pools {
		if !jobs.ValidPoolName(pool) || l.Concurrency < 0 || l.Busy < 0 || l.Done < 0 || l.Failed < 0 {
			continue
		}
		if w.Pools == nil {
			w.Pools = map[string]PoolLoad{}
		}
		w.Pools[pool] = l
	}
	return w
}

// Pause is a paused pool's record.
type Pause struct {
	// At is when the pool was paused.
	At time.Time
	// By names who paused it: the API key's name, or "" without keys.
	By string
}

// pauseRecord is the JSON of a PausedKey entry.
type pauseRecord struct {
	AtMS int64  `json:"at_ms"`
	By   string `json:"by,omitempty"`
}

func decodePauses(h map[string]string) map[string]Pause {
	out := make(map[string]Pause, len(h))
	for pool, v := range h {
		var rec pauseRecord
		_ = json.Unmarshal([]byte(v), &rec) // an unreadable entry still pauses its pool
		p := Pause{By: rec.By}
		if rec.AtMS > 0 {
			p.At = time.UnixMilli(rec.AtMS).UTC()
		}
		out[pool] = p
	}
	return out
}

// pauseLua records a pool's pause unless it is paused already, and
// announces it on the events channel. KEYS[1]: the paused pools. ARGV: the
// pool, the record, the events channel. Returns 1 when it paused the pool,
// else 0, and the pool's record.
const pauseLua = `
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return {0, redis.call('HGET', KEYS[1], ARGV[1])}
end
redis.call('PUBLISH', ARGV[3], 'pause ' .. ARGV[1])
return {1, ARGV[2]}
`

// resumeLua ends a pool's pause, if any, and announces it. KEYS[1]: the
// paused pools. ARGV: the pool, the events channel. Returns 1 when the pool
// was paused.
const resumeLua = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[2], 'resume ' .. ARGV[1])
return 1
`

var (
	pauseScript  = redis.NewScript(pauseLua)
	resumeScript = redis.NewScript(resumeLua)
)

// PausePool pauses a pool: its workers stop taking new jobs (they let the
// running ones finish), and workers that start later do not take any,
// until ResumePool. It returns the pool's pause record, and whether this
// call paused it (false: it was paused already, and keeps its record). The
// workers hear of it at once on the events channel, and at their next
// lease renewal in any case.
func (s *Store) PausePool(ctx context.Context, pool, by string) (Pause, bool, error) {
	b, err := json.Marshal(pauseRecord{AtMS: s.now().UnixMilli(), By: by})
	if err != nil {
		return Pause{}, false, fmt.Errorf("encode pause of pool %s: %w", pool, err)
	}
	res, err := s.run(ctx, pauseScript, []string{s.ns.PausedKey()}, pool, string(b), s.ns.EventsChannel()).Slice()
	if err != nil {
		return Pause{}, false, unavailable("pause pool "+pool, err)
	}
	n, _ := res[0].(int64)
	rec, _ := res[1].(string)
	return decodePauses(map[string]string{pool: rec})[pool], n == 1, nil
}

// ResumePool ends a pool's pause; it reports whether the pool was paused.
func (s *Store) ResumePool(ctx context.Context, pool string) (bool, error) {
	n, err := s.run(ctx, resumeScript, []string{s.ns.PausedKey()}, pool, s.ns.EventsChannel()).Int()
	if err != nil {
		return false, unavailable("resume pool "+pool, err)
	}
	return n == 1, nil
}

// Paused returns the paused pools.
func (s *Store) Paused(ctx context.Context) (map[string]Pause, error) {
	h, err := s.rdb.HGetAll(ctx, s.ns.PausedKey()).Result()
	if err != nil {
		return nil, unavailable("read paused pools", err)
	}
	return decodePauses(h), nil
}
