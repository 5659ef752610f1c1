package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/jobs"
)

// declareLua records one declaration unless the registry already holds
// exactly it, and announces a change on the events channel. KEYS[1]: the
// registry. ARGV: name, declaration JSON, events channel. Returns 1 when it
// changed the registry.
const declareLua = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], 'types ' .. ARGV[1])
return 1
`

var declareScript = redis.NewScript(declareLua)

// DeclareTypes records job type declarations, replacing earlier ones of the
// same names, and announces each change on the events channel so running
// APIs pick it up at once. Declaring what is already recorded changes
// nothing and announces nothing, so workers may repeat it to restore a
// registry that Redis lost.
func (s *Store) DeclareTypes(ctx context.Context, ts []jobs.Type) error {
	for _, t := range ts {
		b, err := json.Marshal(t)
		if err != nil {
			return fmt.Errorf("encode type %s: %w", t.Name, err)
		}
		err = s.run(ctx, declareScript, []string{s.ns.TypesKey()}, t.Name, string(b), s.ns.EventsChannel()).Err()
		if err != nil {
			return unavailable("declare type "+t.Name, err)
		}
	}
	return nil
}

// Type returns the declaration of one type, or ErrNotFound.
func (s *Store) Type(ctx context.Context, name string) (jobs.Type, error) {
	b, err := s.rdb.HGet(ctx, s.ns.TypesKey(), name).Bytes()
	if err == redis.Nil {
		return jobs.Type{}, fmt.Errorf("type %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return jobs.Type{}, unavailable("get type "+name, err)
	}
	var t jobs.Type
	if err := json.Unmarshal(b, &t); err != nil {
		return jobs.Type{}, fmt.Errorf("decode type %s: %w", name, err)
	}
	return t, nil
}

// Types returns every declared type, sorted by name.
func (s *Store) Types(ctx context.Context) ([]jobs.Type, error) {
	h, err := s.rdb.HGetAll(ctx, s.ns.TypesKey()).Result()
	if err != nil {
		return nil, unavailable("list types", err)
	}
	out := make([]jobs.Type, 0, len(h))
	for name, b := range h {
		var t jobs.Type
		if err := json.Unmarshal([]byte(b), &t); err != nil {
			return nil, fmt.Errorf("decode type %s: %w", name, err)
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DeleteNamespace removes every key of the namespace, for tests and for
// tearing a stack down. It scans, so it is not for hot paths.
func (s *Store) DeleteNamespace(ctx context.Context) error {
	iter := s.rdb.Scan(ctx, 0, s.ns.KeyPrefix()+"*", 500).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return unavailable("scan namespace", err)
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := s.rdb.Unlink(ctx, keys[:n]...).Err(); err != nil {
			return unavailable("delete namespace", err)
		}
		keys = keys[n:]
	}
	return nil
}

// Alive reports whether a worker's lease is current.
func (s *Store) Alive(ctx context.Context, worker string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.ns.WorkerKey(worker)).Result()
	if err != nil {
		return false, unavailable("lease of worker "+worker, err)
	}
	return n == 1, nil
}
