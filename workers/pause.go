package workers

import (
	"slices"
	"sync"

	"github.com/warrenhq/warren/store"
)

// pauses is what this process knows of which of its pools are paused
// (store.PausedKey), and tells each pool's consumer of changes.
//
// Two sources feed it: the events channel ("pause <pool>", "resume <pool>"),
// which is prompt, and the paused pools every lease renewal reads, which
// catches what the channel missed. A renewal's reply may be older than an
// event heard while it was under way, so a snapshot is applied only if no
// event came between the request and the reply: events arrive in the order
// they were published, so any event published after the snapshot was read
// arrives after the request was sent, and then the snapshot is skipped (the
// next renewal brings a newer one).
type pauses struct {
	mu     sync.Mutex
	paused map[string]bool
	// heard counts the events applied, so a snapshot can tell whether one
	// came while it was read.
	heard uint64
	known bool          // a snapshot was applied: consuming may begin
	ready chan struct{} // closed when known becomes true
	// changed has a channel per pool (buffered, one value), which the
	// pool's consumer reads as queue.ConsumeOptions.PauseChanged.
	changed map[string]chan struct{}
	// refresh asks the lease loop for a snapshot now (after a reconnect of
	// the events subscription); buffered, one value.
	refresh chan struct{}
}

func newPauses(pools []string) *pauses {
	p := &pauses{
		paused:  map[string]bool{},
		ready:   make(chan struct{}),
		changed: map[string]chan struct{}{},
		refresh: make(chan struct{}, 1),
	}
	for _, pool := range pools {
		p.changed[pool] = make(chan struct{}, 1)
	}
	return p
}

// is reports whether pool is paused now.
// learned reports whether the pause state has been read once.
func (p *pauses) learned() bool {
	select {
	case <-p.ready:
		return true
	default:
		return false
	}
}

func (p *pauses) is(pool string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused[pool]
}

// mark returns the count of events heard, to pass to apply with the
// snapshot read after it.
func (p *pauses) mark() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.heard
}

// apply takes a snapshot of the paused pools read after mark returned
// since; it is skipped if an event was heard meanwhile. Until a snapshot
// is applied no pool consumes (the events channel cannot tell of pools
// paused before it was subscribed), so a skipped first one asks for
// another at once.
func (p *pauses) apply(since uint64, snapshot map[string]store.Pause) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.heard != since {
		if !p.known {
			select {
			case p.refresh <- struct{}{}:
			default:
			}
		}
		return
	}
	for pool, ch := range p.changed {
		_, paused := snapshot[pool]
		p.set(pool, ch, paused)
	}
	if !p.known {
		p.known = true
		close(p.ready)
	}
}

// heardEvent applies a pause or resume heard on the events channel; pool ""
// (the subscription came back, and events may have been missed) asks for a
// snapshot. It does not block, as store.Handlers must not.
func (p *pauses) heardEvent(pool string, paused bool) {
	if pool == "" {
		select {
		case p.refresh <- struct{}{}:
		default:
		}
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.heard++
	if ch, ok := p.changed[pool]; ok {
		p.set(pool, ch, paused)
	}
}

// set records a pool's state and, on a change, tells its consumer. Called
// with mu held.
func (p *pauses) set(pool string, ch chan struct{}, paused bool) {
	if p.paused[pool] == paused {
		return
	}
	p.paused[pool] = paused
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Paused returns the pools of this worker that are paused now (their
// consumers cancelled, or about to be), sorted; nil before Start.
func (w *Worker) Paused() []string {
	w.mu.Lock()
	p := w.pauses
	w.mu.Unlock()
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for pool, paused := range p.paused {
		if paused {
			out = append(out, pool)
		}
	}
	slices.Sort(out)
	return out
}
