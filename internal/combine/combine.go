// Package combine gathers the work of concurrent callers into shared
// batches, so that what costs a system call (a write to Redis or to the
// broker) is paid once per batch instead of once per caller, without a
// timer and without a goroutine of its own.
//
// A caller that finds fewer than the allowed number of batches in flight
// sends at once, with whatever others have queued; one that finds them busy
// queues its item and waits, and the first batch to end hands the queue to
// it to send. So a lone call goes out at once, as it would alone, and under
// load each batch carries what arrived while the last one was on its way.
package combine

import "sync"

// Combiner batches items of type T for Send. The zero value is not usable;
// set Send (and Flights) before the first Do.
type Combiner[T any] struct {
	// Send does the work of one batch, in the order the items came; it runs
	// on the goroutine of one of the callers, never two at once beyond
	// Flights.
	Send func(batch []T)
	// Flights is how many batches may be sent at once; zero means 1.
	Flights int

	mu      sync.Mutex
	queued  []*call[T]
	flights int
}

type call[T any] struct {
	item T
	done chan struct{} // closed once its batch was sent
	lead chan struct{} // closed when this queued call is to send the queue
}

// Do sends item in a batch, and returns once that batch was sent.
func (c *Combiner[T]) Do(item T) {
	me := &call[T]{item: item, done: make(chan struct{})}
	c.mu.Lock()
	if c.flights < max(c.Flights, 1) {
		c.flights++
		c.fly(me)
		return
	}
	me.lead = make(chan struct{})
	c.queued = append(c.queued, me)
	c.mu.Unlock()
	select {
	case <-me.done: // sent in another caller's batch
	case <-me.lead:
		c.mu.Lock()
		c.fly(me)
	}
}

// fly sends me and everything queued, then hands the flight on to the
// oldest call queued meanwhile, if any. Called with mu held; it releases
// it.
func (c *Combiner[T]) fly(me *call[T]) {
	calls := append([]*call[T]{me}, c.queued...)
	c.queued = nil
	c.mu.Unlock()
	items := make([]T, len(calls))
	for i, k := range calls {
		items[i] = k.item
	}
	c.Send(items)
	for _, k := range calls {
		close(k.done)
	}
	c.mu.Lock()
	if len(c.queued) > 0 {
		next := c.queued[0]
		c.queued = c.queued[1:]
		close(next.lead) // the flight passes to it, so the count stays
	} else {
		c.flights--
	}
	c.mu.Unlock()
}
