package store

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/internal/combine"
)

// newPipeline gathers the commands of concurrent callers into shared round
// trips (see package combine). A worker runs many jobs at once, each sending
// a script at its start and at its end; sent one by one, each costs a write
// and a read on both sides, and those system calls were about half of a
// worker's CPU (bench/out/worker-process.cpu.pprof). Two round trips may be
// in flight, so that calls queue behind one only while another is also
// under way. A round trip does not end with a caller's context: once
// queued, commands are sent, and the client's read and write timeouts bound
// the wait.
func newPipeline(rdb *redis.Client) *combine.Combiner[func(redis.Pipeliner)] {
	return &combine.Combiner[func(redis.Pipeliner)]{
		Flights: 2,
		Send: func(fills []func(redis.Pipeliner)) {
			// Each command carries its own error; Pipelined's is the first.
			_, _ = rdb.Pipelined(context.Background(), func(p redis.Pipeliner) error {
				for _, fill := range fills {
					fill(p)
				}
				return nil
			})
		},
	}
}

// run evaluates a script by its hash in a shared round trip, loading it if
// Redis lost it.
func (s *Store) run(ctx context.Context, sc *redis.Script, keys []string, args ...any) *redis.Cmd {
	var cmd *redis.Cmd
	s.pipe.Do(func(p redis.Pipeliner) { cmd = sc.EvalSha(ctx, p, keys, args...) })
	if isNoScript(cmd.Err()) {
		// A restart or SCRIPT FLUSH: Run loads it (EVAL) and runs it.
		return sc.Run(ctx, s.rdb, keys, args...)
	}
	return cmd
}
