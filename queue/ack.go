package queue

import (
	"slices"
	"sync"
	"time"
)

// Acknowledgements are batched. One basic.ack with multiple=true settles
// every delivery up to its tag, and RabbitMQ spends about half as much per
// message on a run of sixteen settled that way as on sixteen single acks
// (`go run ./bench/rabbitcost`); the worker saves a write per job too. But
// multiple=true settles every outstanding delivery up to the tag, so it may
// only cover tags the handlers are done with: one long job must neither be
// acknowledged with its neighbours nor hold them back. The acker therefore
// sends a multiple ack for the run of settled tags from the lowest
// outstanding one, holds a tag past a gap for one more flush in case the
// gap closes, and then acknowledges it alone.
const (
	// ackLinger is how long a handler's ack may wait to be sent with
	// others. The message stays unacknowledged meanwhile (its outcome is
	// already recorded), holding one of the prefetch's places.
	ackLinger = 2 * time.Millisecond
	// maxAckBatch bounds how many acks are gathered before they are sent.
	maxAckBatch = 64
)

// acknowledger is the part of *amqp.Channel the acker uses.
type acknowledger interface {
	Ack(tag uint64, multiple bool) error
	Nack(tag uint64, multiple, requeue bool) error
}

// span is a run of delivery tags, both ends included.
type span struct{ from, to uint64 }

// pendingAck is a tag a handler acknowledged that is not sent yet; held is
// when a flush first passed it over because of a gap below it.
type pendingAck struct {
	tag  uint64
	held time.Time
}

// acker settles the deliveries of one channel; deliveries carry it, and
// the consuming session owns its goroutine (run), stopping it after the
// handlers return so that every ack is sent before the channel closes.
type acker struct {
	ch   acknowledger
	kick chan struct{}

	mu       sync.Mutex
	handling int          // deliveries in handlers' hands: delivered, neither acked nor rejected
	low      uint64       // every tag up to low is settled with the broker
	pending  []pendingAck // acknowledged by handlers, not sent
	settled  []span       // settled one by one above low; sorted, apart
	fresh    int          // acks that came since the last plan (none of them held yet)
	first    time.Time    // when the oldest of them came
	batch    int          // acks gathered before a flush
	holdCap  int          // acks held past a gap for as long as it lasts
	workers  int          // how many deliveries handlers take at once
	err      error        // the first failure to send; later acks report it
	stopped  bool
}

// newAcker returns an acker for a channel with the given prefetch whose
// deliveries concurrency handlers take.
func newAcker(ch acknowledger, prefetch, concurrency int) *acker {
	a := &acker{ch: ch, kick: make(chan struct{}, 1), workers: concurrency}
	a.setPrefetch(prefetch)
	return a
}

// setPrefetch sizes batches to a quarter of the prefetch, so gathered acks
// never keep many of the prefetch's places from the broker. Acks past a gap
// may take half the places the handlers do not need (the prefetch's excess
// over the concurrency) for as long as the gap lasts; past that, or when
// there is no excess, they wait one linger and go out alone, since every
// place they hold would be a handler without work.
func (a *acker) setPrefetch(prefetch int) {
	a.mu.Lock()
	a.batch = min(max(prefetch/4, 1), maxAckBatch)
	a.holdCap = max(prefetch-a.workers, 0) / 2
	a.mu.Unlock()
}

// delivered records that a delivery was handed to the handlers.
func (a *acker) delivered() {
	a.mu.Lock()
	a.handling++
	a.mu.Unlock()
}

// inHand is how many deliveries are in handlers' hands: delivered, and
// neither acknowledged nor rejected by them yet.
func (a *acker) inHand() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.handling
}

// unsent is how many deliveries the broker still counts against the
// prefetch, as far as the acker knows: those in handlers' hands and those
// acknowledged but not sent yet.
func (a *acker) unsent() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.handling + len(a.pending)
}

// ack queues tag for a batched acknowledgement.
func (a *acker) ack(tag uint64) error {
	a.mu.Lock()
	a.handling--
	if a.stopped || a.err != nil {
		err := a.err
		a.mu.Unlock()
		if err == nil {
			err = errAckerStopped
		}
		return err
	}
	if a.fresh == 0 {
		a.first = time.Now()
	}
	a.fresh++
	a.pending = append(a.pending, pendingAck{tag: tag})
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
	return nil
}

// nack rejects tag at once (requeueing it or not): rejections are rare,
// and one must reach the broker before any multiple ack whose run covers
// its tag, which only happens once it counts as settled.
func (a *acker) nack(tag uint64, requeue bool) error {
	err := a.ch.Nack(tag, false, requeue)
	a.mu.Lock()
	a.handling--
	if err == nil {
		a.settle(tag)
	}
	a.mu.Unlock()
	if err != nil {
		return err
	}
	select { // it may close the gap that held acks wait on
	case a.kick <- struct{}{}:
	default:
	}
	return nil
}

// run sends batched acks until stop closes, then sends what is left.
func (a *acker) run(stop <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-a.kick:
		case <-timer.C:
		case <-stop:
			a.mu.Lock()
			a.stopped = true
			a.mu.Unlock()
			a.flush(true)
			return
		}
		if wait := a.flush(false); wait > 0 {
			timer.Reset(wait)
		}
	}
}

// flush sends what is due. Without force it waits (returning how long)
// until a batch has gathered or the oldest ack has lingered long enough,
// unless no delivery is in a handler's hands, when nothing more will come
// to wait for.
func (a *acker) flush(force bool) (wait time.Duration) {
	a.mu.Lock()
	if len(a.pending) == 0 {
		a.mu.Unlock()
		return 0
	}
	if !force && a.handling > 0 && a.fresh < a.batch {
		if w := ackLinger - time.Since(a.first); w > 0 && a.fresh > 0 {
			a.mu.Unlock()
			return w
		}
	}
	multi, singles := a.plan(force)
	a.mu.Unlock()

	// Sent outside the lock so handlers never wait on the socket. plan has
	// counted these tags settled already; only this goroutine sends acks,
	// so no later multiple ack can overtake them.
	var err error
	if multi > 0 {
		err = a.ch.Ack(multi, true)
	}
	for _, tag := range singles {
		if err != nil {
			break
		}
		err = a.ch.Ack(tag, false)
	}
	if err != nil {
		// The channel is closing: the broker requeues what was not
		// acknowledged, and redeliveries of finished jobs are settled
		// unrun, so the failure needs no more than to be reported.
		a.mu.Lock()
		if a.err == nil {
			a.err = err
		}
		a.mu.Unlock()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fresh > 0 || len(a.pending) > a.holdCap {
		return ackLinger // for what came meanwhile, and what is held past its room
	}
	return 0 // held acks within their room wait for the next ack or nack
}

// plan chooses the acks to send and counts their tags settled: multi is
// the highest tag of the run of acknowledged or settled tags just above
// low, to be sent with multiple=true (0: none); singles are tags past a gap
// that were held a linger already, beyond the newest holdCap of them (all
// of them when forced). The rest are held. Called with mu held.
func (a *acker) plan(force bool) (multi uint64, singles []uint64) {
	now := time.Now()
	a.fresh = 0 // each pending ack is sent or held below
	slices.SortFunc(a.pending, func(x, y pendingAck) int {
		switch {
		case x.tag < y.tag:
			return -1
		case x.tag > y.tag:
			return 1
		}
		return 0
	})
	i := 0
	for {
		next := a.low + 1
		switch {
		case i < len(a.pending) && a.pending[i].tag == next:
			multi = next
			a.low = next
			i++
		case len(a.settled) > 0 && a.settled[0].from == next:
			a.low = a.settled[0].to
			a.settled = a.settled[1:]
		default:
			rest := a.pending[i:]
			keep := make([]bool, len(rest))
			room := a.holdCap
			for j := len(rest) - 1; j >= 0 && !force; j-- { // newest first
				if rest[j].held.IsZero() {
					rest[j].held = now
				}
				if room > 0 {
					room--
					keep[j] = true
				} else if now.Sub(rest[j].held) < ackLinger {
					keep[j] = true
				}
			}
			kept := a.pending[:0]
			for j, p := range rest {
				if keep[j] {
					kept = append(kept, p)
					continue
				}
				singles = append(singles, p.tag)
				a.settle(p.tag)
			}
			a.pending = kept
			return multi, singles
		}
	}
}

// settle counts a tag above low settled. Called with mu held.
func (a *acker) settle(tag uint64) {
	if tag <= a.low {
		return
	}
	i, _ := slices.BinarySearchFunc(a.settled, tag, func(s span, t uint64) int {
		switch {
		case s.to < t:
			return -1
		case s.from > t:
			return 1
		}
		return 0
	})
	joinsLeft := i > 0 && a.settled[i-1].to+1 == tag
	joinsRight := i < len(a.settled) && a.settled[i].from == tag+1
	switch {
	case joinsLeft && joinsRight:
		a.settled[i-1].to = a.settled[i].to
		a.settled = slices.Delete(a.settled, i, i+1)
	case joinsLeft:
		a.settled[i-1].to = tag
	case joinsRight:
		a.settled[i].from = tag
	default:
		a.settled = slices.Insert(a.settled, i, span{tag, tag})
	}
	if len(a.settled) > 0 && a.settled[0].from == a.low+1 {
		a.low = a.settled[0].to
		a.settled = a.settled[1:]
	}
}
