package queue

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
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
	// Prefetch is how many unacknowledged messages the broker may hand over;
	// zero means Concurrency, so a worker never hoards messages that a newly
	// started one could take.
	Prefetch int
	// Ready, if set, is called each time consuming has begun on a fresh
	// connection.
	Ready func()
	// Intake consumes the pool's dead-letter intake queue instead of the
	// pool's queue: the messages the broker dead-lettered.
	Intake bool
}

// Delivery is one message handed to a consumer. The handler must settle it
// with exactly one of Ack, Requeue or Drop.
type Delivery struct {
	d amqp.Delivery
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
	switch v := d.d.Headers[HeaderDeliveryCount].(type) {
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
	switch v := d.d.Headers[HeaderAttempts].(type) {
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

// Header returns a message header as text, or "".
func (d Delivery) Header(name string) string {
	switch v := d.d.Headers[name].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// Ack tells the broker the message is done with.
func (d Delivery) Ack() error { return d.d.Ack(false) }

// Requeue returns the message to its queue for another delivery.
func (d Delivery) Requeue() error { return d.d.Nack(false, true) }

// Drop rejects the message without requeueing it.
func (d Delivery) Drop() error { return d.d.Nack(false, false) }

var consumerSeq atomic.Uint64

// Consume hands the pool's messages to handle, up to opts.Concurrency at
// once, until ctx ends, reopening its channel whenever the connection comes
// back. handle runs on a fixed set of goroutines, never one per message.
//
// When ctx ends Consume stops taking work: it cancels the consumer, requeues
// the messages it had received but not handed out, waits for running handle
// calls to return, and closes its channel (anything still unacknowledged goes
// back to the queue). It returns nil then, or an error if it could never
// consume.
func (b *Broker) Consume(ctx context.Context, opts ConsumeOptions, handle func(Delivery)) error {
	opts.Concurrency = max(opts.Concurrency, 1)
	opts.Prefetch = cmp.Or(opts.Prefetch, opts.Concurrency)
	delay := b.cfg.ReconnectMin
	for {
		ch, s, err := b.channel(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		err = b.consumeSession(ctx, ch, opts, handle)
		_ = ch.Close()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			b.log.Warn("consumer stopped; starting again", "pool", opts.Pool, "err", err)
		} else {
			delay = b.cfg.ReconnectMin // it consumed; only repeated failures back off
		}
		// Wait for a new connection, or back off if the connection survived
		// and only the channel failed.
		select {
		case <-s.lost:
		case <-time.After(delay):
			delay = min(delay*2, b.cfg.ReconnectMax)
		case <-ctx.Done():
			return nil
		}
	}
}

func (b *Broker) consumeSession(ctx context.Context, ch *amqp.Channel, opts ConsumeOptions, handle func(Delivery)) error {
	ns := b.cfg.Namespace
	q := ns.Queue(opts.Pool)
	if opts.Intake {
		q = ns.DeadIntakeQueue(opts.Pool)
	}
	if err := declarePool(ch, ns, opts.Pool, opts.Types); err != nil {
		return err
	}
	if err := ch.Qos(opts.Prefetch, 0, false); err != nil {
		return fmt.Errorf("set prefetch on %s: %w", q, err)
	}
	tag := b.cfg.Name + "-" + q + "-" + strconv.FormatUint(consumerSeq.Add(1), 10)
	deliveries, err := ch.Consume(q, tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %s: %w", q, err)
	}
	if opts.Ready != nil {
		opts.Ready()
	}

	var handlers sync.WaitGroup
	for range opts.Concurrency {
		handlers.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case d, ok := <-deliveries:
					if !ok {
						return
					}
					if ctx.Err() != nil {
						_ = d.Nack(false, true)
						return
					}
					handle(Delivery{d: d})
				}
			}
		})
	}

	// When ctx ends, stop the broker from sending more and give back what
	// was prefetched but not started, while running handlers finish.
	stop, cancelled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(cancelled)
		select {
		case <-ctx.Done():
		case <-stop:
			return
		}
		if err := ch.Cancel(tag, false); err != nil {
			return // the channel is gone; the broker requeues everything
		}
		for d := range deliveries {
			_ = d.Nack(false, true)
		}
	}()
	// Handlers end on ctx, or when deliveries close because the channel or
	// connection was lost.
	handlers.Wait()
	close(stop)
	<-cancelled
	return nil
}
