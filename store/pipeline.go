package store

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/internal/combine"
)

// trip is one shared round trip as its callers fill it: the pipeline, and
// the WAIT that ends it when some caller's writes must reach the replicas
// before it goes on (Config.WaitReplicas).
type trip struct {
	redis.Pipeliner
	replicas int           // what WAIT asks for; 0: the store waits for none
	timeout  time.Duration // how long WAIT may block
	asked    bool          // a fill wants the WAIT
	wait     *redis.Cmd    // the WAIT, queued after every fill
}

// replicate asks for the WAIT that ends the round trip and returns what
// checks its answer once the round trip is back: nil when enough replicas
// acknowledged, or when the store waits for none. WAIT covers every write
// its connection made before it, so one at the end covers all the fills;
// on another connection it would cover none of them.
func (t *trip) replicate() func() error {
	if t.replicas <= 0 {
		return noWait
	}
	t.asked = true
	return func() error { return replicated(t.wait, t.replicas, t.timeout) }
}

// noWait is the check of a write that waits for no replica.
func noWait() error { return nil }

// replicated reads a WAIT's answer: nil when at least want replicas
// acknowledged, else an error wrapping ErrNotReplicated (or the round
// trip's).
func replicated(wait *redis.Cmd, want int, timeout time.Duration) error {
	n, err := wait.Int64()
	if err != nil {
		return fmt.Errorf("wait for replicas: %w", err)
	}
	if n < int64(want) {
		return fmt.Errorf("%d of %d replicas acknowledged within %s: %w", n, want, timeout, ErrNotReplicated)
	}
	return nil
}

// newPipeline gathers the commands of concurrent callers into shared round
// trips (see package combine). A worker runs many jobs at once, each sending
// a script at its start and at its end; sent one by one, each costs a write
// and a read on both sides, and those system calls were about half of a
// worker's CPU (bench/out/worker-process.cpu.pprof). Two round trips may be
// in flight, so that calls queue behind one only while another is also
// under way. A round trip does not end with a caller's context: once
// queued, commands are sent, and the client's read and write timeouts bound
// the wait. A round trip that some caller asked to replicate ends with one
// WAIT for all of them, so the wait costs no round trip of its own.
func newPipeline(rdb redis.UniversalClient, replicas int, timeout time.Duration) *combine.Combiner[func(*trip)] {
	return &combine.Combiner[func(*trip)]{
		Flights: 2,
		Send: func(fills []func(*trip)) {
			// Each command carries its own error; Pipelined's is the first.
			_, _ = rdb.Pipelined(context.Background(), func(p redis.Pipeliner) error {
				t := &trip{Pipeliner: p, replicas: replicas, timeout: timeout}
				for _, fill := range fills {
					fill(t)
				}
				if t.asked {
					t.wait = p.Do(context.Background(), "WAIT", replicas, timeout.Milliseconds())
				}
				return nil
			})
		},
	}
}

// run evaluates a script by its hash in a shared round trip, loading it if
// Redis lost it.
func (s *Store) run(ctx context.Context, sc *redis.Script, keys []string, args ...any) *redis.Cmd {
	cmd, _ := s.eval(ctx, false, sc, keys, args...)
	return cmd
}

// runReplicated is run for a script whose writes must reach the replicas
// before its caller goes on (Config.WaitReplicas): besides the script's
// reply it returns nil, or why the writes may not have reached them.
func (s *Store) runReplicated(ctx context.Context, sc *redis.Script, keys []string, args ...any) (*redis.Cmd, error) {
	return s.eval(ctx, true, sc, keys, args...)
}

func (s *Store) eval(ctx context.Context, replicate bool, sc *redis.Script, keys []string, args ...any) (*redis.Cmd, error) {
	var cmd *redis.Cmd
	check := noWait
	s.pipe.Do(func(t *trip) {
		cmd = sc.EvalSha(ctx, t, keys, args...)
		if replicate {
			check = t.replicate()
		}
	})
	if !isNoScript(cmd.Err()) {
		return cmd, check()
	}
	// A restart or SCRIPT FLUSH (or a failover to a replica that never ran
	// it): EVAL loads it and runs it, with the WAIT on the same connection.
	var wait *redis.Cmd
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmd = sc.Eval(ctx, p, keys, args...)
		if replicate && s.cfg.WaitReplicas > 0 {
			wait = p.Do(ctx, "WAIT", s.cfg.WaitReplicas, s.cfg.WaitTimeout.Milliseconds())
		}
		return nil
	})
	if wait == nil {
		return cmd, nil
	}
	return cmd, replicated(wait, s.cfg.WaitReplicas, s.cfg.WaitTimeout)
}
