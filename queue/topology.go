package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenhq/warren/jobs"
)

// DeliveryLimit is how many times a quorum queue delivers a message before
// dead-lettering it: the backstop for a message that kills its worker every
// time. Returns on shutdown count too, so it is generous.
const DeliveryLimit = 20

// declareExchange declares the namespace's durable job exchange. It is a
// direct exchange: pool queues are bound to it by exact type names, and
// direct routing costs the broker about a quarter less per message than
// topic routing (bench/rabbitcost, docs/performance.md).
func declareExchange(ch *amqp.Channel, ns jobs.Namespace) error {
	if err := ch.ExchangeDeclare(ns.Exchange(), amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", ns.Exchange(), err)
	}
	return nil
}

// declareDelays declares the delay levels. Level n is a queue whose every
// message waits DelayUnit·2ⁿ (one TTL for the whole queue, so the head is
// always the first due) and then dead-letters to level n-1's exchange; each
// level's exchange passes a message to its queue if bit n of the routing key
// is 1, else straight on to the next level. Level 0 ends at the deliver
// exchange, where pool queues are bound by type.
//
// The levels are quorum queues that dead-letter at least once: the broker
// keeps an expired message in its level until the next level (or the pool
// queue) has confirmed it, so a broker restart or crash in the hand-over
// cannot drop it, and a message due for a pool whose queue is gone waits in
// its level and is retried until the queue is back. Classic queues
// dead-letter at most once and lost messages in exactly that hand-over.
func declareDelays(ch *amqp.Channel, ns jobs.Namespace, qq quorum) error {
	deliver, unrouted := ns.DelayDeliverExchange(), ns.DelayUnrouted()
	if err := ch.ExchangeDeclare(unrouted, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", unrouted, err)
	}
	if err := ch.ExchangeDeclare(deliver, amqp.ExchangeTopic, true, false, false, false,
		amqp.Table{"alternate-exchange": unrouted}); err != nil {
		return fmt.Errorf("declare exchange %s: %w", deliver, err)
	}
	if err := qq.declare(ch, unrouted, delayArgs(UnroutedWait, deliver)); err != nil {
		return fmt.Errorf("declare queue %s: %w", unrouted, err)
	}
	if err := ch.QueueBind(unrouted, "", unrouted, false, nil); err != nil {
		return fmt.Errorf("bind %s: %w", unrouted, err)
	}
	next := deliver
	for level := 0; level < jobs.DelayLevels; level++ {
		ex, q := ns.DelayExchange(level), ns.DelayQueue(level)
		if err := ch.ExchangeDeclare(ex, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare exchange %s: %w", ex, err)
		}
		if err := qq.declare(ch, q, delayQueueArgs(level, next)); err != nil {
			return fmt.Errorf("declare queue %s: %w", q, err)
		}
		if err := ch.QueueBind(q, jobs.DelayBitPattern(level, '1'), ex, false, nil); err != nil {
			return fmt.Errorf("bind %s: %w", q, err)
		}
		if err := ch.ExchangeBind(next, jobs.DelayBitPattern(level, '0'), ex, false, nil); err != nil {
			return fmt.Errorf("bind %s to %s: %w", next, ex, err)
		}
		next = ex
	}
	return nil
}

// UnroutedWait is how long a delayed message that no pool queue was bound
// for waits in the unrouted queue (jobs.Namespace.DelayUnrouted) before it
// is offered to the pools again.
const UnroutedWait = time.Minute

// delayQueueArgs are the arguments of delay level n's quorum queue, whose
// messages dead-letter to the exchange next when their TTL ends.
func delayQueueArgs(level int, next string) amqp.Table {
	return delayArgs(jobs.DelayUnit<<level, next)
}

// delayArgs are the arguments of a quorum queue whose every message waits
// ttl and then dead-letters, at least once, to the exchange next.
func delayArgs(ttl time.Duration, next string) amqp.Table {
	return amqp.Table{
		amqp.QueueTypeArg:        amqp.QueueTypeQuorum,
		"x-message-ttl":          ttl.Milliseconds(),
		"x-dead-letter-exchange": next,
		"x-dead-letter-strategy": "at-least-once",
		"x-overflow":             "reject-publish", // required by at-least-once dead-lettering
	}
}

// retireClassicDelays drains the classic delay queues of a namespace made
// before the levels were quorum queues into the quorum levels, which
// declareDelays has declared by then. An empty classic level is deleted. One
// that still holds messages is unbound, so nothing new enters it, and kept:
// its messages wait out their TTL there and then dead-letter, as they always
// did, to the next level's exchange, which now leads to the quorum levels;
// a later start deletes it once it is empty. Nothing it holds is lost, and
// nothing waits longer than it was meant to.
//
// Deleting with if-empty is what tells the cases apart in one call per
// level: a queue that does not exist is deleted without complaint, and one
// that holds messages refuses (406) and closes the channel, so each refusal
// costs a new channel.
func retireClassicDelays(conn *amqp.Connection, ns jobs.Namespace, log *slog.Logger) error {
	var (
		ch   *amqp.Channel
		kept bool // a classic level still holds messages
	)
	defer func() {
		if ch != nil {
			_ = ch.Close()
		}
	}()
	for level := 0; level < jobs.DelayLevels; level++ {
		if ch == nil {
			var err error
			if ch, err = conn.Channel(); err != nil {
				return fmt.Errorf("open channel: %w", err)
			}
		}
		q := ns.ClassicDelayQueue(level)
		_, err := ch.QueueDelete(q, false, true, false)
		var aerr *amqp.Error
		if err == nil || !errors.As(err, &aerr) || aerr.Code != amqp.PreconditionFailed {
			if err != nil {
				return fmt.Errorf("retire classic delay queue %s: %w", q, err)
			}
			continue
		}
		// Not empty: the refusal closed the channel.
		if ch, err = conn.Channel(); err != nil {
			return fmt.Errorf("open channel: %w", err)
		}
		if err := ch.QueueUnbind(q, jobs.DelayBitPattern(level, '1'), ns.DelayExchange(level), nil); err != nil {
			return fmt.Errorf("unbind classic delay queue %s: %w", q, err)
		}
		log.Info("a classic delay queue still holds messages: unbound, it drains into the quorum delay levels and is deleted once empty",
			"queue", q)
		kept = true
	}
	return retireClassicDeliver(conn, ns, kept)
}

// retireClassicDeliver takes the classic deliver exchange out of the path
// of delayed messages: level 0's exchange no longer passes messages on to
// it (they go to the new deliver exchange), and once no classic level is
// left to drain through it, it is deleted. Asking whether it exists costs a
// channel when it does not.
func retireClassicDeliver(conn *amqp.Connection, ns jobs.Namespace, kept bool) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	old := ns.ClassicDelayDeliverExchange()
	if err := ch.ExchangeDeclarePassive(old, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		if notFound(err) {
			return nil
		}
		return fmt.Errorf("retire classic deliver exchange %s: %w", old, err)
	}
	if err := ch.ExchangeUnbind(old, jobs.DelayBitPattern(0, '0'), ns.DelayExchange(0), false, nil); err != nil {
		return fmt.Errorf("retire classic deliver exchange %s: %w", old, err)
	}
	if kept {
		return nil
	}
	if err := ch.ExchangeDelete(old, false, false); err != nil {
		return fmt.Errorf("retire classic deliver exchange %s: %w", old, err)
	}
	return nil
}

// poolQueueArgs are the arguments of a pool's quorum queue: a delivery limit,
// past which the broker dead-letters the message (at least once) to the
// pool's dead-letter and intake queues.
func poolQueueArgs(ns jobs.Namespace, pool string) amqp.Table {
	return limitedQueueArgs(ns, jobs.DeadRoutingKey("limit", pool))
}

// limitedQueueArgs are the arguments of a quorum queue with the delivery
// limit, past which the broker dead-letters a message at least once with
// the routing key deadKey.
func limitedQueueArgs(ns jobs.Namespace, deadKey string) amqp.Table {
	return amqp.Table{
		amqp.QueueTypeArg:           amqp.QueueTypeQuorum,
		"x-delivery-limit":          int64(DeliveryLimit),
		"x-dead-letter-exchange":    ns.DeadExchange(),
		"x-dead-letter-routing-key": deadKey,
		"x-dead-letter-strategy":    "at-least-once",
		"x-overflow":                "reject-publish", // required by at-least-once dead-lettering
	}
}

// intakeQueueArgs are the arguments of a pool's dead-letter intake queue:
// the same delivery limit as the pool queue's, past which the broker
// dead-letters the message (at least once) with "intake.POOL", which only
// the pool's dead-letter queue is bound for. A message its workers cannot
// settle (one that kills them, say) is kept there for operators to see,
// instead of going round the intake thousands of times a second. In the
// usual course the dead-letter queue then holds it twice: the copy from the
// pool queue, and this one, which says (deadLetter) that the job's record
// was never marked failed.
func intakeQueueArgs(ns jobs.Namespace, pool string) amqp.Table {
	return limitedQueueArgs(ns, jobs.DeadRoutingKey("intake", pool))
}

// retireUnlimitedIntake drains the intake queue of a namespace made before
// intake queues had a delivery limit (jobs.Namespace.UnlimitedIntakeQueue)
// into the current one, which declarePool has declared by then. Such a
// queue is unbound, so nothing new enters it; its ready messages are moved,
// each published to the new intake queue and confirmed before it is
// acknowledged, so none is lost (one moved twice, by two workers at once or
// across a crash, only marks its job failed twice, which the finish script
// allows); and once it holds nothing and no consumer (a worker of the old
// version) it is deleted, by this call or a later one.
//
// Unlike the classic delay levels it cannot be deleted with if-empty: quorum
// queues refuse that flag (540 NOT_IMPLEMENTED, which closes the
// connection), so the counts of a passive declaration stand in for it. A
// queue that does not exist, or that another worker deletes meanwhile,
// answers 404, which closes the channel and ends the retirement.
func retireUnlimitedIntake(ctx context.Context, conn *amqp.Connection, ns jobs.Namespace, pool string, log *slog.Logger) error {
	old, intake := ns.UnlimitedIntakeQueue(pool), ns.DeadIntakeQueue(pool)
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if _, err := ch.QueueDeclarePassive(old, true, false, false, false, nil); err != nil {
		if notFound(err) {
			return nil
		}
		return fmt.Errorf("retire intake queue %s: %w", old, err)
	}
	moved, err := moveMessages(ctx, ch, old, jobs.DeadRoutingKey("limit", pool), ns.DeadExchange(), intake)
	if moved > 0 {
		log.Info("moved the messages of an intake queue without a delivery limit to the new intake queue",
			"queue", old, "to", intake, "moved", moved)
	}
	if err != nil {
		if notFound(err) {
			return nil
		}
		return fmt.Errorf("retire intake queue %s: %w", old, err)
	}
	q, err := ch.QueueDeclarePassive(old, true, false, false, false, nil)
	if err != nil {
		if notFound(err) {
			return nil
		}
		return fmt.Errorf("retire intake queue %s: %w", old, err)
	}
	if q.Messages > 0 || q.Consumers > 0 {
		log.Info("an intake queue without a delivery limit is still in use: unbound, it is deleted on a later start once empty and unused",
			"queue", old, "messages", q.Messages, "consumers", q.Consumers)
		return nil
	}
	if _, err := ch.QueueDelete(old, false, false, false); err != nil && !notFound(err) {
		return fmt.Errorf("retire intake queue %s: %w", old, err)
	}
	return nil
}

// moveMessages unbinds queue src from exchange (binding key key), then
// moves its ready messages, one at a time, to queue dst: each is published
// with its properties and headers through the default exchange, mandatory,
// and acknowledged in src only once the broker has confirmed it. It puts ch
// in confirm mode and returns how many it moved; when ctx ends it stops, and
// the message in hand goes back to src when ch closes.
func moveMessages(ctx context.Context, ch *amqp.Channel, src, key, exchange, dst string) (int, error) {
	if err := ch.QueueUnbind(src, key, exchange, nil); err != nil {
		return 0, fmt.Errorf("unbind: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return 0, fmt.Errorf("confirm mode: %w", err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	for moved := 0; ; moved++ {
		d, ok, err := ch.Get(src, false)
		if err != nil || !ok {
			return moved, err
		}
		headers := amqp.Table{}
		for k, v := range d.Headers {
			if k != headerDeliveryCount { // the new queue counts afresh
				headers[k] = v
			}
		}
		err = ch.PublishWithContext(ctx, "", dst, true, false, amqp.Publishing{
			Headers: headers, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding,
			DeliveryMode: amqp.Persistent, Priority: d.Priority, CorrelationId: d.CorrelationId,
			ReplyTo: d.ReplyTo, MessageId: d.MessageId, Timestamp: d.Timestamp, Type: d.Type,
			AppId: d.AppId, Body: d.Body,
		})
		if err != nil {
			return moved, fmt.Errorf("move to %s: %w", dst, err)
		}
		var c amqp.Confirmation
		select {
		case c, ok = <-confirms:
			if !ok {
				return moved, fmt.Errorf("move to %s: %w", dst, amqp.ErrClosed)
			}
		case <-ctx.Done():
			return moved, fmt.Errorf("move to %s: %w", dst, context.Cause(ctx))
		}
		if !c.Ack {
			return moved, fmt.Errorf("move to %s: %w", dst, ErrNacked)
		}
		// The broker confirms a message it returned (no queue named dst),
		// and returns it first: by now the return has been handed over.
		select {
		case r := <-returns:
			return moved, fmt.Errorf("move to %s: %w: %s", dst, ErrUnroutable, r.ReplyText)
		default:
		}
		if err := d.Ack(false); err != nil {
			return moved, fmt.Errorf("move to %s: %w", dst, err)
		}
	}
}

// declarePool declares everything of one pool and binds its queue for each
// type, both for immediate jobs and for delayed ones. Declaring what exists
// already is harmless.
func declarePool(ch *amqp.Channel, ns jobs.Namespace, pool string, types []string, qq quorum) error {
	if err := declareExchange(ch, ns); err != nil {
		return err
	}
	dead := ns.DeadExchange()
	if err := ch.ExchangeDeclare(dead, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", dead, err)
	}
	for _, dq := range []struct {
		name, key string
		args      amqp.Table
	}{
		{ns.DeadQueue(pool), "*." + pool, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}},
		{ns.DeadIntakeQueue(pool), jobs.DeadRoutingKey("limit", pool), intakeQueueArgs(ns, pool)},
	} {
		if err := qq.declare(ch, dq.name, dq.args); err != nil {
			return fmt.Errorf("declare queue %s: %w", dq.name, err)
		}
		if err := ch.QueueBind(dq.name, dq.key, dead, false, nil); err != nil {
			return fmt.Errorf("bind %s: %w", dq.name, err)
		}
	}
	// The pool's two lanes (docs/priorities.md): the same arguments, each
	// bound for its own routing key of every type. A namespace made before
	// priorities gets its high lane here, at the next declaration.
	for _, high := range []bool{false, true} {
		q, p := ns.LaneQueue(pool, high), 0
		if high {
			p = jobs.HighPriority
		}
		if err := qq.declare(ch, q, poolQueueArgs(ns, pool)); err != nil {
			return fmt.Errorf("declare queue %s: %w", q, err)
		}
		for _, t := range types {
			key := ns.RoutingKey(t, p)
			if err := ch.QueueBind(q, key, ns.Exchange(), false, nil); err != nil {
				return fmt.Errorf("bind %s to %s: %w", key, q, err)
			}
			if err := ch.QueueBind(q, jobs.DelayDeliverPattern(key), ns.DelayDeliverExchange(), false, nil); err != nil {
				return fmt.Errorf("bind delayed %s to %s: %w", key, q, err)
			}
		}
	}
	return nil
}

// DeclarePool declares a pool's queues and binds them for each job type, so
// that jobs of those types wait in the queue even while no worker runs.
func (b *Broker) DeclarePool(ctx context.Context, pool string, types []string) error {
	ch, s, err := b.channel(ctx)
	if err != nil {
		return fmt.Errorf("declare pool %s: %w", pool, err)
	}
	defer ch.Close()
	return declarePool(ch, b.cfg.Namespace, pool, types, b.quorum(s.conn))
}

// QueueInfo is what the broker says of a queue.
type QueueInfo struct {
	Name      string
	Messages  int // ready to deliver
	Consumers int
	// High is the part of Messages in the pool's high lane (InspectPool).
	High int
}

// InspectPool reports a pool's queues, both lanes together: Messages and
// Consumers are their sums, High the high lane's ready messages. The error
// wraps ErrNoPool where the normal lane does not exist; a high lane not
// declared yet (a pool of a version before priorities) counts as empty.
func (b *Broker) InspectPool(ctx context.Context, pool string) (QueueInfo, error) {
	info, err := b.inspect(ctx, pool, b.cfg.Namespace.Queue(pool))
	if err != nil {
		return info, err
	}
	high, err := b.inspect(ctx, pool, b.cfg.Namespace.HighQueue(pool))
	switch {
	case errors.Is(err, ErrNoPool):
	case err != nil:
		return QueueInfo{}, err
	default:
		info.Messages += high.Messages
		info.Consumers += high.Consumers
		info.High = high.Messages
	}
	return info, nil
}

// InspectDead reports a pool's dead-letter queue; the error wraps ErrNoPool
// where it does not exist.
func (b *Broker) InspectDead(ctx context.Context, pool string) (QueueInfo, error) {
	return b.inspect(ctx, pool, b.cfg.Namespace.DeadQueue(pool))
}

func (b *Broker) inspect(ctx context.Context, pool, name string) (QueueInfo, error) {
	ch, _, err := b.channel(ctx)
	if err != nil {
		return QueueInfo{}, fmt.Errorf("inspect %s: %w", name, err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
	if err != nil {
		return QueueInfo{}, poolErr("inspect "+name, pool, err)
	}
	return QueueInfo{Name: q.Name, Messages: q.Messages, Consumers: q.Consumers}, nil
}

// DeleteNamespace deletes the exchanges, the delay levels and the given
// pools' queues (NamespaceNames), for tearing a stack down; a Sweeper
// finds and deletes whatever else the namespace holds.
func (b *Broker) DeleteNamespace(ctx context.Context, pools []string) error {
	ch, _, err := b.channel(ctx)
	if err != nil {
		return fmt.Errorf("delete namespace: %w", err)
	}
	defer ch.Close()
	return deleteObjects(ch, b.cfg.Namespace, NamespaceNames(b.cfg.Namespace, pools))
}

// quorum declares the quorum queues of a connection with the configured
// initial group size.
type quorum struct {
	conn *amqp.Connection
	size int // 0: the broker's default
}

func (b *Broker) quorum(conn *amqp.Connection) quorum {
	return quorum{conn: conn, size: b.cfg.QuorumGroupSize}
}

// declare declares the quorum queue name with args, and with the group
// size when one is set. A queue that exists with another size (or with none,
// made before the setting, or with one where the setting is now 0) refuses a
// declaration that names a different one, and the refusal closes the
// channel it came on; so the declaration goes on a channel of its own, and
// such a queue, whose size RabbitMQ cannot change by declaration, is taken
// as it is with a passive declaration on ch.
func (q quorum) declare(ch *amqp.Channel, name string, args amqp.Table) error {
	if q.size > 0 {
		args = maps.Clone(args)
		args["x-quorum-initial-group-size"] = int64(q.size)
	}
	own, err := q.conn.Channel()
	if err != nil {
		return fmt.Errorf("declare queue %s: open channel: %w", name, err)
	}
	_, err = own.QueueDeclare(name, true, false, false, false, args)
	_ = own.Close()
	var ae *amqp.Error
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed || !strings.Contains(ae.Reason, "x-quorum-initial-group-size"):
		return fmt.Errorf("declare queue %s: %w", name, err)
	}
	if _, err := ch.QueueDeclarePassive(name, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare queue %s: %w", name, err)
	}
	return nil
}
