package queue

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenhq/warren/jobs"
)

// declareExchange declares the namespace's durable topic exchange.
func declareExchange(ch *amqp.Channel, ns jobs.Namespace) error {
	if err := ch.ExchangeDeclare(ns.Exchange(), amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", ns.Exchange(), err)
	}
	return nil
}

// DeclarePool declares a pool's durable quorum queue and binds it to the
// exchange for each job type, so that jobs of those types wait in the queue
// even while no worker runs. Declaring what exists already is harmless.
func (b *Broker) DeclarePool(ctx context.Context, pool string, types []string) error {
	ch, _, err := b.channel(ctx)
	if err != nil {
		return fmt.Errorf("declare pool %s: %w", pool, err)
	}
	defer ch.Close()
	ns := b.cfg.Namespace
	q := ns.Queue(pool)
	if err := declareExchange(ch, ns); err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg: amqp.QueueTypeQuorum,
	}); err != nil {
		return fmt.Errorf("declare queue %s: %w", q, err)
	}
	for _, t := range types {
		if err := ch.QueueBind(q, ns.RoutingKey(t), ns.Exchange(), false, nil); err != nil {
			return fmt.Errorf("bind %s to %s: %w", t, q, err)
		}
	}
	return nil
}

// QueueInfo is what the broker says of a queue.
type QueueInfo struct {
	Name      string
	Messages  int // ready to deliver
	Consumers int
}

// InspectPool reports a pool's queue; the error wraps amqp's 404 when the
// queue does not exist.
func (b *Broker) InspectPool(ctx context.Context, pool string) (QueueInfo, error) {
	ch, _, err := b.channel(ctx)
	if err != nil {
		return QueueInfo{}, fmt.Errorf("inspect pool %s: %w", pool, err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(b.cfg.Namespace.Queue(pool), true, false, false, false, amqp.Table{
		amqp.QueueTypeArg: amqp.QueueTypeQuorum,
	})
	if err != nil {
		return QueueInfo{}, fmt.Errorf("inspect pool %s: %w", pool, err)
	}
	return QueueInfo{Name: q.Name, Messages: q.Messages, Consumers: q.Consumers}, nil
}

// DeleteNamespace deletes the exchange and the given pools' queues, for
// tests and for tearing a stack down.
func (b *Broker) DeleteNamespace(ctx context.Context, pools []string) error {
	ch, _, err := b.channel(ctx)
	if err != nil {
		return fmt.Errorf("delete namespace: %w", err)
	}
	defer ch.Close()
	ns := b.cfg.Namespace
	for _, p := range pools {
		if _, err := ch.QueueDelete(ns.Queue(p), false, false, false); err != nil {
			return fmt.Errorf("delete queue %s: %w", ns.Queue(p), err)
		}
	}
	if err := ch.ExchangeDelete(ns.Exchange(), false, false); err != nil {
		return fmt.Errorf("delete exchange %s: %w", ns.Exchange(), err)
	}
	return nil
}
