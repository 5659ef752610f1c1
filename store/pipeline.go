package store

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// pipeline gathers the commands of concurrent callers into shared round
// trips. A worker runs many jobs at once, each sending a script at its
// start and at its end; sent one by one, each costs a write and a read on
// both sides, and those system calls were about half of a worker's CPU
// (bench/out/worker-process.cpu.pprof). A caller that finds fewer than
// maxFlights round trips in flight sends at once, with whatever is queued;
// one that finds them busy queues its commands and waits, and the first
// round trip to end hands the queue to it to send. So a lone call goes out
// at once, as it would unbatched, and under load one write and one read
// carry the scripts of many jobs. Callers do the sending on their own
// goroutines: nothing runs in the background.
type pipeline struct {
	rdb *redis.Client

	mu      sync.Mutex
	queued  []*pipelineCall
	flights int
}

// maxFlights is how many round trips may be in flight at once: two, so that
// calls queue behind a round trip only while another is also under way.
const maxFlights = 2

type pipelineCall struct {
	fill func(redis.Pipeliner)
	done chan struct{} // closed once its commands have their replies
	lead chan struct{} // closed when this queued call is to send the queue
}

// do adds fill's commands to a round trip and returns once they have their
// replies (or errors), which fill's commands carry. A round trip does not
// end with ctx: once queued, the commands are sent, and the client's read
// and write timeouts bound the wait.
func (p *pipeline) do(ctx context.Context, fill func(redis.Pipeliner)) {
	c := &pipelineCall{fill: fill, done: make(chan struct{})}
	p.mu.Lock()
	if p.flights < maxFlights {
		p.flights++
		p.fly(ctx, c)
		return
	}
	c.lead = make(chan struct{})
	p.queued = append(p.queued, c)
	p.mu.Unlock()
	select {
	case <-c.done: // sent with another's round trip
	case <-c.lead:
		p.mu.Lock()
		p.fly(ctx, c)
	}
}

// fly sends c and everything queued in one round trip, then hands the
// flight on to the oldest call queued meanwhile, if any. Called with mu
// held; it releases it.
func (p *pipeline) fly(ctx context.Context, c *pipelineCall) {
	batch := append([]*pipelineCall{c}, p.queued...)
	p.queued = nil
	p.mu.Unlock()
	// Each command carries its own error; Pipelined's is the first of them.
	_, _ = p.rdb.Pipelined(context.WithoutCancel(ctx), func(pl redis.Pipeliner) error {
		for _, b := range batch {
			b.fill(pl)
		}
		return nil
	})
	for _, b := range batch {
		close(b.done)
	}
	p.mu.Lock()
	if len(p.queued) > 0 {
		next := p.queued[0]
		p.queued = p.queued[1:]
		close(next.lead) // the flight passes to it, so the count stays
	} else {
		p.flights--
	}
	p.mu.Unlock()
}

// run evaluates a script by its hash in a shared round trip, loading it if
// Redis lost it.
func (s *Store) run(ctx context.Context, sc *redis.Script, keys []string, args ...any) *redis.Cmd {
	var cmd *redis.Cmd
	s.pipe.do(ctx, func(p redis.Pipeliner) { cmd = sc.EvalSha(ctx, p, keys, args...) })
	if isNoScript(cmd.Err()) {
		// A restart or SCRIPT FLUSH: Run loads it (EVAL) and runs it.
		return sc.Run(ctx, s.rdb, keys, args...)
	}
	return cmd
}
