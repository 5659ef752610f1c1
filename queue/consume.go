package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenhq/warren/internal/backoff"
)

// ConsumeOptions configures Consume.
type ConsumeOptions struct {
	// Pool names the queue to consume; required.
	Pool string
	// Types are bound to the pool's queue each time a connection opens, so
	// the queue exists even if the broker lost it.
	Types []string
	// Concurrency is how many deliveries are handled at once; zero means 1.
	Concurrency int
	// Prefetch is how many unacknowledged messages the broker may hand over.
	// Zero means adaptive: Concurrency while messages take long to handle,
	// so a busy worker does not hoard what an idle one could run, and up to
	// AdaptivePrefetchFactor times that while they are handled in under
	// ShortHandling, when waiting on the broker for each next message would
	// cost more than the hoarding (see prefetchTuner).
	Prefetch int
	// PrefetchChanged, if set, is called when adaptive prefetch changes the
	// prefetch, for logs and tests.
	PrefetchChanged func(prefetch int)
	// Ready, if set, is called each time consuming has begun on a fresh
	// connection.
	Ready func()
	// Intake consumes the pool's dead-letter intake queue instead of the
	// pool's queue: the messages the broker dead-lettered. On each new
	// connection it first drains the pool's intake queue of an older
	// version, which had no delivery limit, into it.
	Intake bool
	// Paused, if set, pauses and resumes consuming while Consume goes on.
	// While it reports true there is no consumer: a consumer that was
	// running is cancelled, the deliveries it had received but not handed
	// to a handler go back to the queue (each once), and the handlers
	// finish what they run. When it reports false again a new consumer
	// starts. It is read as each session starts and whenever PauseChanged
	// receives; nil means never paused.
	Paused func() bool
	// PauseChanged receives a value whenever Paused may have changed. A
	// buffer of one is enough: a change seen late is still seen.
	PauseChanged <-chan struct{}
	// Fairness bounds how many jobs of the pool's high lane start in a row
	// while one of its normal lane waits (docs/priorities.md); zero means
	// DefaultFairness.
	Fairness int
}

// Delivery is one message handed to a consumer. The handler must settle it
// with exactly one of Ack, Requeue or Drop.
type Delivery struct {
	d    amqp.Delivery
	acks *acker
}

// Body is the message body.
func (d Delivery) Body() []byte { return d.d.Body }

// MessageID is the job id the producer set.
func (d Delivery) MessageID() string { return d.d.MessageId }

// Redelivered reports whether the broker delivered this message before.
func (d Delivery) Redelivered() bool { return d.d.Redelivered }

// DeliveryCount is how many times the message was delivered before this
// delivery (quorum queues count it); 0 on the first delivery.
func (d Delivery) DeliveryCount() int {
	switch v := d.d.Headers[headerDeliveryCount].(type) {
	case int64:
		return int(v)
	case int32:
		return int(v)
	}
	return 0
}

// Attempts is the x-warren-attempts header: attempts made before this
// message was published, or -1 when the header is missing (a message from
// a producer that does not set it).
func (d Delivery) Attempts() int {
	switch v := d.d.Headers[headerAttempts].(type) {
	case int32:
		return int(v)
	case int64:
		return int(v)
	case int16:
		return int(v)
	case int8:
		return int(v)
	}
	return -1
}

// TraceParent returns the W3C trace context the job was submitted under,
// or "".
func (d Delivery) TraceParent() string { return d.header(headerTraceParent) }

// header returns a message header as text, or "".
func (d Delivery) header(name string) string {
	switch v := d.d.Headers[name].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// Ack tells the broker the message is done with. The acknowledgement is
// sent with others within a few milliseconds (see acker), and before the
// consumer's channel closes; an error means the channel is gone, and the
// broker will deliver the message again.
func (d Delivery) Ack() error { return d.acks.ack(d.d.DeliveryTag) }

// Requeue returns the message to its queue for another delivery.
func (d Delivery) Requeue() error { return d.acks.nack(d.d.DeliveryTag, true) }

// Drop rejects the message without requeueing it.
func (d Delivery) Drop() error { return d.acks.nack(d.d.DeliveryTag, false) }

// errAckerStopped is what an ack after the end of its consuming session
// returns: the channel is closing, and the broker redelivers the message.
var errAckerStopped = errors.New("ack after the consumer stopped; the message will be redelivered")

var consumerSeq atomic.Uint64

// Consume hands the pool's messages to handle, up to opts.Concurrency at
// once, until ctx ends. It consumes both of the pool's lanes, each with a
// consumer of its own and the prefetch, and hands out the high lane's
// deliveries first within the fairness bound (lanePicker); reopening its channel whenever the connection comes
// back. handle runs on a fixed set of goroutines, never one per message.
//
// When ctx ends Consume stops taking work: it cancels the consumer, requeues
// the messages it had received but not handed out, waits for running handle
// calls to return, and closes its channel (anything still unacknowledged goes
// back to the queue). It returns nil then, or an error if it could never
// consume.
func (b *Broker) Consume(ctx context.Context, opts ConsumeOptions, handle func(Delivery)) error {
	opts.Concurrency = max(opts.Concurrency, 1)
	opts.Fairness = cmp.Or(opts.Fairness, DefaultFairness)
	// A tuner per lane: each lane's consumer has a prefetch of its own,
	// and each is tuned on the handling times of its own deliveries.
	var tuners []*prefetchTuner
	if opts.Prefetch == 0 {
		tuners = []*prefetchTuner{newPrefetchTuner(opts.Concurrency), newPrefetchTuner(opts.Concurrency)}
	}
	wait := backoff.New(b.cfg.ReconnectMin, b.cfg.ReconnectMax)
	for {
		ch, s, err := b.channel(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		err = b.consumeSession(ctx, s, ch, opts, tuners, handle)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			b.log.Warn("consumer stopped; starting again", "pool", opts.Pool, "err", err)
		} else {
			wait.Reset() // it consumed; only repeated failures back off
		}
		// Wait for a new connection, or back off if the connection survived
		// and only the channel failed.
		select {
		case <-s.lost:
		case <-time.After(wait.Next()):
		case <-ctx.Done():
			return nil
		}
	}
}

// DefaultFairness is ConsumeOptions.Fairness when none is set.
const DefaultFairness = 8

// lane is one queue a session consumes: a pool's high or normal lane, or
// its intake queue.
type lane struct {
	q      string
	tuner  *prefetchTuner // nil: fixed prefetch
	first  *subscription  // nil when the session starts paused
	merged chan Delivery  // the handlers take its deliveries from here
	pause  chan struct{}  // this lane's copy of opts.PauseChanged
	subs   []*subscription
	// full says the lane's last delivery came with its prefetch used up:
	// the broker may hold more for it, which it sends as acks go out.
	full atomic.Bool
}

func (b *Broker) consumeSession(ctx context.Context, s *session, ch *amqp.Channel, opts ConsumeOptions, tuners []*prefetchTuner, handle func(Delivery)) error {
	ns := b.cfg.Namespace
	// The high lane comes first: it subscribes first, and handlers look
	// at it first.
	var lanes []*lane
	if opts.Intake {
		lanes = []*lane{{q: ns.DeadIntakeQueue(opts.Pool)}}
	} else {
		lanes = []*lane{{q: ns.HighQueue(opts.Pool)}, {q: ns.Queue(opts.Pool)}}
	}
	for i, l := range lanes {
		if tuners != nil {
			l.tuner = tuners[i]
		}
		l.merged = make(chan Delivery)
		l.pause = make(chan struct{}, 1)
	}
	if err := declarePool(ch, ns, opts.Pool, opts.Types, b.quorum(s.conn)); err != nil {
		_ = ch.Close()
		return err
	}
	if opts.Intake {
		// Best effort: what it leaves is retired on a later connection, and
		// meanwhile the new intake queue is consumed all the same.
		if err := retireUnlimitedIntake(ctx, s.conn, ns, opts.Pool, b.log); err != nil {
			b.log.Warn("cannot retire the intake queue of an older version; trying again on the next connection",
				"pool", opts.Pool, "err", err)
		}
	}
	if opts.Paused != nil && opts.Paused() {
		// Declared, and consuming nothing until resumed (runSubscriptions
		// subscribes then, on a channel of its own).
		_ = ch.Close()
		b.log.Info("pool paused; not consuming", "pool", opts.Pool)
	} else {
		// Each lane on a channel of its own: acks are per channel, and
		// each lane's acker batches its own.
		for i, l := range lanes {
			lch := ch
			if i > 0 {
				var err error
				if lch, err = s.conn.Channel(); err != nil {
					closeFirsts(lanes)
					return fmt.Errorf("open channel: %w", err)
				}
			}
			var err error
			if l.first, err = b.subscribe(lch, l.q, prefetchOf(opts, l.tuner), opts.Concurrency); err != nil {
				_ = lch.Close()
				closeFirsts(lanes)
				return err
			}
		}
	}
	if opts.Ready != nil {
		opts.Ready()
	}

	// The session ends when ctx does or when any lane's consumer is lost:
	// the other lane then stops too, and the next session starts both.
	sctx, endSession := context.WithCancel(ctx)
	defer endSession()
	var lanesDone sync.WaitGroup
	if opts.PauseChanged != nil {
		// Each lane hears every pause and resume.
		lanesDone.Go(func() {
			for {
				select {
				case <-sctx.Done():
					return
				case <-opts.PauseChanged:
					for _, l := range lanes {
						select {
						case l.pause <- struct{}{}:
						default:
						}
					}
				}
			}
		})
	}

	picker := &lanePicker{fairness: opts.Fairness}
	var handlers sync.WaitGroup
	for range opts.Concurrency {
		handlers.Go(func() {
			for {
				d, i, ok := picker.take(sctx, lanes)
				if !ok {
					endSession() // a lane is gone: the session starts again
					return
				}
				if sctx.Err() != nil {
					_ = d.Requeue()
					return
				}
				tuner := lanes[i].tuner
				if tuner == nil {
					handle(d)
					continue
				}
				start := tuner.begin()
				handle(d)
				tuner.end(start)
			}
		})
	}
	for _, l := range lanes {
		lanesDone.Go(func() {
			lopts := opts
			lopts.PauseChanged = l.pause
			l.subs = b.runSubscriptions(sctx, s, l.q, lopts, l.tuner, l.first, l.merged, &l.full)
			endSession()
		})
	}
	// Handlers end on ctx (finishing what they run), or when a lane's
	// deliveries close because the channel or connection was lost.
	handlers.Wait()
	endSession()
	lanesDone.Wait()
	// Every ack is sent before its channel closes; anything still
	// unacknowledged then goes back to the queue.
	for _, l := range lanes {
		for _, sub := range l.subs {
			sub.close()
		}
	}
	return nil
}

// closeFirsts closes the subscriptions a session made before it failed.
func closeFirsts(lanes []*lane) {
	for _, l := range lanes {
		if l.first != nil {
			l.first.close()
		}
	}
}

// lanePicker chooses which lane a free handler takes its next delivery
// from: the high lane (lanes[0]) whenever it has one waiting, except that
// after fairness high starts in a row it takes a normal one if one waits,
// so that under a backlog in both lanes at least one start in fairness+1
// is a normal one and low priorities do not starve (docs/priorities.md).
type lanePicker struct {
	fairness int

	mu     sync.Mutex
	streak int // high starts since the last normal one
}

// refillWait bounds how long a handler that finds no high delivery in hand
// waits for one the broker owes the high lane (lane.full) before it takes
// a normal one. The broker sends the high lane's next message only once
// an acknowledgement frees a place in its prefetch; without this wait, a
// handler done with a high job would find the lane empty in the moment
// before the refill and start a normal job instead, and under a backlog
// in both lanes short jobs would alternate between them. When the high
// queue is in fact empty, the wait is spent once and the lane is then no
// longer taken for full.
const refillWait = 50 * time.Millisecond

// take returns the next delivery and the index of its lane, or false when
// ctx ends or a lane's deliveries have closed.
func (p *lanePicker) take(ctx context.Context, lanes []*lane) (Delivery, int, bool) {
	if len(lanes) == 1 {
		select {
		case <-ctx.Done():
			return Delivery{}, 0, false
		case d, ok := <-lanes[0].merged:
			return d, 0, ok
		}
	}
	high, normal := lanes[0].merged, lanes[1].merged
	p.mu.Lock()
	order := [2]int{0, 1}
	if p.streak >= p.fairness {
		order = [2]int{1, 0}
	}
	for n, i := range order {
		select {
		case d, ok := <-lanes[i].merged:
			p.tookLocked(i)
			p.mu.Unlock()
			return d, i, ok
		default:
		}
		if n > 0 || i != 0 || !lanes[0].full.Load() {
			continue
		}
		// No high delivery in hand, but the high lane may be about to be
		// refilled: wait for it a little before taking a normal one.
		p.mu.Unlock()
		t := time.NewTimer(refillWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Delivery{}, 0, false
		case d, ok := <-high:
			t.Stop()
			p.mu.Lock()
			p.tookLocked(0)
			p.mu.Unlock()
			return d, 0, ok
		case <-t.C:
			lanes[0].full.Store(false) // nothing came: the queue is empty
		}
		p.mu.Lock()
	}
	p.mu.Unlock()
	// Neither lane has a delivery waiting: the first to come is taken.
	var (
		d  Delivery
		i  int
		ok bool
	)
	select {
	case <-ctx.Done():
		return Delivery{}, 0, false
	case d, ok = <-high:
	case d, ok = <-normal:
		i = 1
	}
	p.mu.Lock()
	p.tookLocked(i)
	p.mu.Unlock()
	return d, i, ok
}

func (p *lanePicker) tookLocked(i int) {
	if i == 0 {
		p.streak++
	} else {
		p.streak = 0
	}
}

// subscription is one basic.consume, on a channel of its own with the
// consumer's prefetch, and the acker of that channel.
type subscription struct {
	ch         *amqp.Channel
	tag        string
	prefetch   int
	deliveries <-chan amqp.Delivery
	acks       *acker
	stopAcks   chan struct{}
	acksDone   chan struct{}
	closeOnce  sync.Once
	// held is closed when the pool is paused: what the consumer still
	// receives or has not handed to a handler goes back to the queue.
	held chan struct{}
}

// prefetchOf is the prefetch a new consumer starts with.
func prefetchOf(opts ConsumeOptions, tuner *prefetchTuner) int {
	if tuner != nil {
		return tuner.current
	}
	return opts.Prefetch
}

// subscribe sets the prefetch on ch and consumes q on it.
func (b *Broker) subscribe(ch *amqp.Channel, q string, prefetch, concurrency int) (*subscription, error) {
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("set prefetch on %s: %w", q, err)
	}
	tag := b.cfg.Name + "-" + q + "-" + strconv.FormatUint(consumerSeq.Add(1), 10)
	deliveries, err := ch.Consume(q, tag, false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", q, err)
	}
	sub := &subscription{ch: ch, tag: tag, prefetch: prefetch, deliveries: deliveries, acks: newAcker(ch, prefetch, concurrency),
		stopAcks: make(chan struct{}), acksDone: make(chan struct{}), held: make(chan struct{})}
	go func() {
		defer close(sub.acksDone)
		sub.acks.run(sub.stopAcks)
	}()
	return sub, nil
}

// close sends the subscription's last acks and closes its channel, which
// returns whatever is still unacknowledged on it to the queue. Called once
// no handler holds one of its deliveries (or they failed to settle).
func (s *subscription) close() {
	s.closeOnce.Do(func() {
		close(s.stopAcks)
		<-s.acksDone
		_ = s.ch.Close()
	})
}

// runSubscriptions forwards the deliveries of the session's consumer to
// merged until ctx ends or the channel is lost, then closes merged and
// returns every subscription it opened, for the caller to close once the
// handlers are done. When ctx ends it cancels the consumer, so the broker
// sends no more, and gives back what arrived but was not started.
//
// With a tuner it replaces the consumer when the prefetch should change,
// with a new one on a channel of its own: RabbitMQ applies a per-consumer
// prefetch (the only kind quorum queues have) to consumers started after
// it. The old consumer is cancelled; what it holds is handled and
// acknowledged as usual, not requeued, and once none of its deliveries is
// in a handler's hands its channel is closed. Closing it matters: RabbitMQ
// may still send a delivery for a consumer it has just cancelled, which
// amqp091-go drops as addressed to no consumer; the message would then
// stay unacknowledged on the channel, and only closing the channel returns
// it to the queue.
//
// A pause (opts.Paused) cancels the consumer the same way, except that
// what it holds and has not handed to a handler is requeued: a paused pool
// starts nothing new. Its channel stays open until the handlers have
// settled the deliveries they run, then retires as above. cur is nil when
// the session starts paused; a resume subscribes on a new channel.
func (b *Broker) runSubscriptions(ctx context.Context, s *session, q string, opts ConsumeOptions, tuner *prefetchTuner, cur *subscription, merged chan<- Delivery, full *atomic.Bool) []*subscription {
	var all []*subscription
	var forwarders sync.WaitGroup
	ended := make(chan *subscription, 2)
	forward := func(sub *subscription) {
		forwarders.Go(func() {
			// A pause's: never handed out, they go back to the queue once
			// the deliveries end (the broker's cancel-ok). Requeued
			// before, one could be delivered to this consumer again, its
			// cancel not yet taken, and go back twice.
			var back []uint64
			for d := range sub.deliveries {
				sub.acks.delivered()
				full.Store(sub.acks.unsent() >= sub.prefetch)
				select {
				case <-sub.held:
					back = append(back, d.DeliveryTag)
					continue
				default:
				}
				select {
				case merged <- Delivery{d: d, acks: sub.acks}:
				case <-sub.held:
					back = append(back, d.DeliveryTag)
				case <-ctx.Done(): // the handlers take no more
					_ = sub.acks.nack(d.DeliveryTag, true)
				}
			}
			for _, tag := range back {
				_ = sub.acks.nack(tag, true)
			}
			ended <- sub
		})
	}
	live := 0 // forwarders running
	if cur != nil {
		all = append(all, cur)
		forward(cur)
		live++
	}
	var tick <-chan time.Time
	if tuner != nil {
		t := time.NewTicker(tuneEvery)
		defer t.Stop()
		tick = t.C
	}
	// Replaced subscriptions whose forwarders have ended, waiting for the
	// deliveries they handed out to be settled.
	var retiring []*subscription
	finish := func() []*subscription {
		for ; live > 0; live-- {
			<-ended
		}
		forwarders.Wait()
		close(merged)
		return all
	}
	for {
		var retire <-chan time.Time
		if len(retiring) > 0 {
			retire = time.After(retireEvery)
		}
		// While paused no consumer tells of a lost connection; the
		// session's end does.
		var lost <-chan struct{}
		if cur == nil {
			lost = s.lost
		}
		select {
		case <-ctx.Done():
			if cur != nil {
				if err := cur.ch.Cancel(cur.tag, false); err != nil {
					b.log.Debug("cancel consumer", "queue", q, "err", err) // the channel is gone: its deliveries close
				}
			}
			return finish()
		case <-lost:
			return finish()
		case <-opts.PauseChanged:
			paused := opts.Paused != nil && opts.Paused()
			switch {
			case paused && cur != nil:
				// Its deliveries close once the broker confirms; the
				// forwarder requeues what it still gets, then it retires.
				close(cur.held)
				if err := cur.ch.Cancel(cur.tag, false); err != nil {
					b.log.Debug("cancel consumer", "queue", q, "err", err)
				}
				cur = nil
				b.log.Info("pool paused; stopped consuming, running jobs go on", "queue", q)
			case !paused && cur == nil:
				ch, err := s.conn.Channel()
				if err != nil {
					return finish() // the connection is failing: the next session resumes
				}
				next, err := b.subscribe(ch, q, prefetchOf(opts, tuner), opts.Concurrency)
				if err != nil {
					_ = ch.Close()
					b.log.Warn("cannot resume consuming; starting again", "queue", q, "err", err)
					return finish()
				}
				cur = next
				all = append(all, next)
				forward(cur)
				live++
				b.log.Info("pool resumed; consuming", "queue", q)
			}
		case sub := <-ended:
			live--
			if sub == cur {
				// Not cancelled by us: the channel or connection is gone,
				// or the broker cancelled the consumer (queue deleted).
				return finish()
			}
			retiring = append(retiring, sub)
		case <-retire:
			kept := retiring[:0]
			for _, sub := range retiring {
				if sub.acks.inHand() > 0 {
					kept = append(kept, sub)
					continue
				}
				sub.close()
				all = slices.DeleteFunc(all, func(x *subscription) bool { return x == sub })
			}
			retiring = kept
		case <-tick:
			if cur == nil {
				continue // paused: nothing to tune
			}
			want := tuner.next()
			if want == tuner.current {
				continue
			}
			ch, err := s.conn.Channel()
			if err != nil {
				continue // the connection is failing; the deliveries will close
			}
			next, err := b.subscribe(ch, q, want, opts.Concurrency)
			if err != nil {
				_ = ch.Close()
				continue
			}
			old := cur
			cur = next
			all = append(all, next)
			forward(cur)
			live++
			b.log.Debug("prefetch changed", "queue", q, "from", tuner.current, "to", want)
			tuner.current = want
			if opts.PrefetchChanged != nil {
				opts.PrefetchChanged(want)
			}
			// The old consumer's deliveries close once the broker confirms;
			// its forwarder hands on what it still holds, then it retires.
			// If its channel is failing instead, its deliveries close and
			// it retires all the same; what it held is redelivered.
			_ = old.ch.Cancel(old.tag, false)
		}
	}
}

// retireEvery is how often a replaced subscription is checked for
// deliveries still in a handler's hands.
const retireEvery = 100 * time.Millisecond

// Adaptive prefetch. A consumer whose prefetch equals its concurrency waits
// on the broker for each next message as it acks one; for jobs of a few
// milliseconds that round trip halves what a worker and the broker get
// through (docs/performance.md). A larger prefetch hides it, at the price
// of messages held by a busy worker that an idle one could run: each held
// message waits about (factor-1) handling times. While handling takes less
// than ShortHandling that wait is too short to matter, so the prefetch
// rises; once it takes more than LongHandling, or a window ends with
// messages in hand and none finished, it falls back to the concurrency.
const (
	// AdaptivePrefetchFactor bounds adaptive prefetch at this many times
	// the concurrency.
	AdaptivePrefetchFactor = 4
	// ShortHandling is the mean handling time under which prefetch rises.
	ShortHandling = 25 * time.Millisecond
	// LongHandling is the mean handling time over which it falls.
	LongHandling = 100 * time.Millisecond
	// maxAdaptivePrefetch bounds the prefetch of a very concurrent pool.
	maxAdaptivePrefetch = 1000
	// tuneEvery is the window over which handling times are averaged.
	tuneEvery = time.Second
)

// prefetchTuner measures how long messages take to handle and chooses the
// prefetch. It lives as long as Consume, across reconnects.
type prefetchTuner struct {
	low, high int
	current   int // read and written by one session's tuning goroutine at a time

	handled  atomic.Int64 // in this window
	nanos    atomic.Int64 // spent handling them
	inFlight atomic.Int64
}

func newPrefetchTuner(concurrency int) *prefetchTuner {
	high := min(concurrency*AdaptivePrefetchFactor, max(maxAdaptivePrefetch, concurrency))
	return &prefetchTuner{low: concurrency, high: high, current: concurrency}
}

func (t *prefetchTuner) begin() time.Time {
	t.inFlight.Add(1)
	return time.Now()
}

func (t *prefetchTuner) end(start time.Time) {
	t.nanos.Add(int64(time.Since(start)))
	t.handled.Add(1)
	t.inFlight.Add(-1)
}

// next ends a window and returns the prefetch for the next one.
func (t *prefetchTuner) next() int {
	n, spent := t.handled.Swap(0), time.Duration(t.nanos.Swap(0))
	switch {
	case n == 0 && t.inFlight.Load() > 0:
		return t.low // messages in hand and none finished: long jobs
	case n == 0:
		return t.current // idle: nothing to learn
	}
	mean := spent / time.Duration(n)
	switch {
	case mean > LongHandling:
		return t.low
	case mean < ShortHandling && n >= int64(t.low):
		return t.high
	}
	return t.current
}
