package store

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/jobs"
)

// Inventory is what a namespace holds in Redis, for tearing it down.
type Inventory struct {
	// Keys is how many keys the namespace has.
	Keys int
	// Pools are the pools its records name, sorted: those of declared
	// types, of the indexes of waiting and running jobs, of replica counts
	// and scaling decisions, pauses and started marks. The broker's names for them follow
	// (queue.NamespaceNames).
	Pools []string
	// Workers are the worker processes whose leases are current, those
	// listed in WorkersKey and those of older versions, found by their
	// lease alone (with the id only).
	Workers []WorkerInfo
}

// Inventory scans the namespace's keys, so it is not for hot paths: it is
// what `warren namespace delete` shows and checks before it deletes.
func (s *Store) Inventory(ctx context.Context) (Inventory, error) {
	var inv Inventory
	pools := map[string]bool{}
	leases := map[string]bool{}
	prefix := s.ns.KeyPrefix()
	// Keys whose next part names a pool (jobs.Namespace.WaitingKey and the
	// like): what comes before the pool, found by naming a marker pool.
	const marker = "\x00"
	var byPool []string
	for _, k := range []string{s.ns.WaitingKey(marker), s.ns.RunningKey(marker), s.ns.RescuedKey(marker, 0), s.ns.AutoscaleDecisionsKey(marker)} {
		before, _, _ := strings.Cut(strings.TrimPrefix(k, prefix), marker)
		byPool = append(byPool, before)
	}
	worker := strings.TrimPrefix(s.ns.WorkerKey(""), prefix)
	var cursor uint64
	for {
		keys, next, err := s.rdb.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return Inventory{}, unavailable("scan namespace", err)
		}
		inv.Keys += len(keys)
		for _, k := range keys {
			rest := strings.TrimPrefix(k, prefix)
			if id, ok := strings.CutPrefix(rest, worker); ok {
				leases[id] = true
				continue
			}
			for _, p := range byPool {
				if after, ok := strings.CutPrefix(rest, p); ok {
					name, _, _ := strings.Cut(after, ":")
					if jobs.ValidPoolName(name) {
						pools[name] = true
					}
				}
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}

	var types, replicas, paused *redis.MapStringStringCmd
	var started *redis.StringSliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		types = p.HGetAll(ctx, s.ns.TypesKey())
		replicas = p.HGetAll(ctx, s.ns.AutoscaleKey())
		paused = p.HGetAll(ctx, s.ns.PausedKey())
		started = p.ZRange(ctx, s.ns.StartedKey(), 0, -1)
		return nil
	})
	if err != nil {
		return Inventory{}, unavailable("read namespace pools", err)
	}
	for _, decl := range types.Val() {
		var t jobs.Type
		if json.Unmarshal([]byte(decl), &t) == nil && jobs.ValidPoolName(t.Pool) {
			pools[t.Pool] = true
		}
	}
	for _, h := range []map[string]string{replicas.Val(), paused.Val()} {
		for pool := range h {
			if jobs.ValidPoolName(pool) {
				pools[pool] = true
			}
		}
	}
	for _, pool := range started.Val() {
		if jobs.ValidPoolName(pool) {
			pools[pool] = true
		}
	}
	for p := range pools {
		inv.Pools = append(inv.Pools, p)
	}
	slices.Sort(inv.Pools)

	if inv.Workers, err = s.Workers(ctx); err != nil {
		return Inventory{}, err
	}
	for _, w := range inv.Workers {
		delete(leases, w.ID)
	}
	for id := range leases {
		inv.Workers = append(inv.Workers, WorkerInfo{ID: id})
	}
	slices.SortFunc(inv.Workers, func(a, b WorkerInfo) int { return strings.Compare(a.ID, b.ID) })
	return inv, nil
}
