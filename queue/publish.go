package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenhq/warren/internal/combine"
	"github.com/warrenhq/warren/jobs"
)

// Publish sends messages to the namespace's exchange, persistent and
// mandatory, and waits until the broker has confirmed every one. It returns
// one error per message (nil where the broker took responsibility for it):
// ErrUnroutable where no queue is bound for its type, ErrNacked where the
// broker refused it, ErrUnavailable where the connection dropped before the
// confirm. The error is non-nil, and the slice nil, when nothing could be
// sent: the broker is unreachable now (ErrUnavailable) or ctx ended.
//
// Messages of one call are pipelined: all are written, then all confirms are
// awaited together. Concurrent calls share one channel, and those that
// arrive while another's messages are being written are written together
// next, in one write to the socket (see send).
//
// A message for a pool's high lane (Message.Priority) that the broker
// returns is sent again to the pool's normal lane (withoutHighLane).
func (b *Broker) Publish(ctx context.Context, msgs []Message) ([]error, error) {
	s, err := b.live()
	if err != nil {
		return nil, err
	}
	errs, err := s.publisher().publish(ctx, b.cfg.Namespace, msgs)
	if err != nil {
		return errs, err
	}
	b.withoutHighLane(ctx, s, msgs, errs)
	return errs, nil
}

// withoutHighLane publishes again, to their pools' normal lanes, the
// high-priority messages the broker returned for want of a queue (errs[k]
// is ErrUnroutable): their pools were declared by workers older than
// priorities, which bound no high lane. During a rolling upgrade such a job
// is better run without its priority's precedence than refused; the first
// worker of this version to start declares the lane (DeclarePool). The body
// keeps the priority, so a retry made by a newer worker takes the high
// lane. A message still returned keeps ErrUnroutable; one that cannot be
// sent again gets the error that stopped it.
func (b *Broker) withoutHighLane(ctx context.Context, s *session, msgs []Message, errs []error) {
	var again []Message
	var at []int
	for k, perr := range errs {
		if m := msgs[k]; errors.Is(perr, ErrUnroutable) && jobs.Lane(m.Priority) && m.DeadPool == "" && m.Delay < jobs.DelayUnit {
			m.Priority = 0
			again, at = append(again, m), append(at, k)
		}
	}
	if len(again) == 0 {
		return
	}
	errs2, err := s.publisher().publish(ctx, b.cfg.Namespace, again)
	if err != nil {
		// The others were confirmed: only these failed.
		for _, k := range at {
			errs[k] = err
		}
		return
	}
	for i, k := range at {
		errs[k] = errs2[i]
		if errs2[i] != nil {
			continue
		}
		if _, logged := b.noHighLane.LoadOrStore(again[i].Type, true); !logged {
			b.log.Warn("the type's pool has no high-priority lane yet (its workers are older than priorities): its high-priority jobs run in the normal lane until a worker of this version starts",
				"type", again[i].Type)
		}
	}
}

// publisher owns a channel in confirm mode and matches the broker's confirms
// and returns to the calls waiting for them.
type publisher struct {
	ch   *amqp.Channel
	wire *corkedConn // nil: writes are never held back

	// sender writes the messages of concurrent calls together, one batch
	// at a time, so sequence numbers stay ours (see send).
	sender *combine.Combiner[*publishCall]

	pmu     sync.Mutex
	pending map[uint64]pendingConfirm
	closed  error

	done chan struct{}
}

// publishCall is one call's messages on their way to the channel.
type publishCall struct {
	ctx  context.Context
	ns   jobs.Namespace
	msgs []Message
	bt   *batch
}

type pendingConfirm struct {
	id    string
	batch *batch
	i     int
}

// batch collects the outcome of one publish call.
type batch struct {
	errs []error
	left atomic.Int64
	done chan struct{}
}

func (b *batch) finish(i int, err error) {
	b.errs[i] = err
	if b.left.Add(-1) == 0 {
		close(b.done)
	}
}

func newPublisher(ch *amqp.Channel, wire *corkedConn) (*publisher, error) {
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("confirm mode: %w", err)
	}
	p := &publisher{ch: ch, wire: wire, pending: map[uint64]pendingConfirm{}, done: make(chan struct{})}
	p.sender = &combine.Combiner[*publishCall]{Send: p.send}
	// Both channels are drained by loop at all times: amqp091 blocks its
	// reader while they are full.
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1024))
	returns := ch.NotifyReturn(make(chan amqp.Return, 64))
	go p.loop(confirms, returns)
	return p, nil
}

func (p *publisher) publish(ctx context.Context, ns jobs.Namespace, msgs []Message) ([]error, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	bt := &batch{errs: make([]error, len(msgs)), done: make(chan struct{})}
	bt.left.Store(int64(len(msgs)))
	p.sender.Do(&publishCall{ctx: ctx, ns: ns, msgs: msgs, bt: bt})

	select {
	case <-bt.done:
		return bt.errs, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for confirms: %w", context.Cause(ctx))
	}
}

// send writes the messages of calls that came together, with the
// connection corked so they leave in one write. A lone call is written at
// once, as before; under load each write carries the calls that came while
// the last one was made.
func (p *publisher) send(calls []*publishCall) {
	if p.wire != nil {
		p.wire.cork()
		defer p.wire.uncork()
	}
	for _, c := range calls {
		p.write(c)
	}
}

// write publishes one call's messages, registering each for its confirm
// first. Only the sender calls it.
func (p *publisher) write(c *publishCall) {
	for i, m := range c.msgs {
		seq := p.ch.GetNextPublishSeqNo()
		p.pmu.Lock()
		err := p.closed
		if err == nil {
			p.pending[seq] = pendingConfirm{id: m.ID, batch: c.bt, i: i}
		}
		p.pmu.Unlock()
		if err == nil {
			exchange, key := m.route(c.ns)
			err = p.ch.PublishWithContext(c.ctx, exchange, key, true, false, m.publishing())
			if err != nil {
				p.pmu.Lock()
				_, stillPending := p.pending[seq]
				delete(p.pending, seq)
				p.pmu.Unlock()
				if !stillPending { // close() already failed it
					continue
				}
				err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
		}
		if err != nil {
			c.bt.finish(i, err)
		}
	}
}

// loop resolves confirms until the channel closes.
func (p *publisher) loop(confirms <-chan amqp.Confirmation, returns <-chan amqp.Return) {
	defer close(p.done)
	returned := map[string]bool{}
	takeReturn := func(r amqp.Return) { returned[r.MessageId] = true }
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			takeReturn(r)
		case c, ok := <-confirms:
			if !ok {
				p.close(ErrUnavailable)
				return
			}
			// The broker sends basic.return before the ack of the same
			// message, and amqp091 hands both over from one goroutine in
			// that order, so any return for this message is buffered now.
		drain:
			for returns != nil {
				select {
				case r, ok := <-returns:
					if !ok {
						returns = nil
						break drain
					}
					takeReturn(r)
				default:
					break drain
				}
			}
			p.resolve(c, returned)
		}
	}
}

func (p *publisher) resolve(c amqp.Confirmation, returned map[string]bool) {
	p.pmu.Lock()
	pc, ok := p.pending[c.DeliveryTag]
	delete(p.pending, c.DeliveryTag)
	p.pmu.Unlock()
	if !ok {
		return
	}
	var err error
	switch {
	case returned[pc.id]:
		delete(returned, pc.id)
		err = ErrUnroutable
	case !c.Ack:
		err = ErrNacked
	}
	pc.batch.finish(pc.i, err)
}

// close fails every message still waiting for a confirm.
func (p *publisher) close(err error) {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	if p.closed != nil {
		return
	}
	p.closed = err
	for seq, pc := range p.pending {
		delete(p.pending, seq)
		pc.batch.finish(pc.i, err)
	}
}

// wait returns once the confirm loop has ended (the channel closed).
func (p *publisher) wait() { <-p.done }
