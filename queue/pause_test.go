package queue_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/queue"
)

// gate is a pause switch as the worker runtime keeps one per pool.
type gate struct {
	paused  atomic.Bool
	changed chan struct{}
}

func newGate(paused bool) *gate {
	g := &gate{changed: make(chan struct{}, 1)}
	g.paused.Store(paused)
	return g
}

func (g *gate) set(paused bool) {
	g.paused.Store(paused)
	select {
	case g.changed <- struct{}{}:
	default:
	}
}

// deliveries records what a handler was handed.
type deliveries struct {
	mu          sync.Mutex
	seen        map[string]int // message id → deliveries handed to the handler
	redelivered int
	maxCount    int // the highest x-delivery-count seen
}

func (r *deliveries) add(d queue.Delivery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]int{}
	}
	r.seen[d.MessageID()]++
	if d.Redelivered() {
		r.redelivered++
	}
	r.maxCount = max(r.maxCount, d.DeliveryCount())
}

func (r *deliveries) handled() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// Pausing cancels the consumer: the handler running a delivery finishes it
// (and its ack reaches the broker), the deliveries prefetched and not
// started go back to the queue, once each, and nothing more is handed out
// until the pool is resumed; then every message is handled once.
func TestConsumePauseResume(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const pool = "pause"
	const total = 20
	declarePool(t, env.Broker, pool, "pause.job")
	msgs := make([]queue.Message, total)
	for i := range msgs {
		msgs[i] = message(t, newJob("pause.job", i), "")
	}
	publishAll(t, env.Broker, msgs)
	ready(t, env, pool, total)

	g := newGate(false)
	var (
		got     deliveries
		started = make(chan string, total)
		release = make(chan struct{})
		ackErr  = make(chan error, 1)
		first   atomic.Bool
	)
	consume(t, env.Broker, queue.ConsumeOptions{Pool: pool, Concurrency: 1, Prefetch: 10, Paused: g.paused.Load, PauseChanged: g.changed},
		func(d queue.Delivery) {
			got.add(d)
			if first.CompareAndSwap(false, true) {
				started <- d.MessageID()
				<-release
				ackErr <- d.Ack()
				return
			}
			_ = d.Ack()
		})
	recv(t, started, "the first delivery")
	ready(t, env, pool, total-10) // 1 running, 9 prefetched

	g.set(true)
	// The 9 prefetched go back; the running one is still in hand.
	ready(t, env, pool, total-1)
	close(release)
	if err := recv(t, ackErr, "the running delivery's ack"); err != nil {
		t.Errorf("ack of the delivery that ran through the pause: %v", err)
	}
	// A quorum queue counts a cancelled consumer until what it holds is
	// settled.
	testenv.Eventually(t, wait, "no consumer of the paused pool", func() bool {
		q, err := env.Broker.InspectPool(context.Background(), pool)
		return err == nil && q.Consumers == 0
	})
	// Nothing new starts while paused. There is no signal for what must
	// not happen; give it a moment to go wrong.
	time.Sleep(300 * time.Millisecond)
	if n := got.handled(); n != 1 {
		t.Fatalf("%d messages handed out while paused, want only the one running before", n)
	}
	ready(t, env, pool, total-1)

	g.set(false)
	testenv.Eventually(t, wait, "every message handled after the resume", func() bool { return got.handled() == total })
	ready(t, env, pool, 0)
	got.mu.Lock()
	defer got.mu.Unlock()
	for id, n := range got.seen {
		if n != 1 {
			t.Errorf("message %s handed to the handler %d times, want once", id, n)
		}
	}
	// The 9 prefetched went back to the queue once each: they come again
	// marked redelivered, with a delivery count of 1 at most.
	if got.redelivered != 9 || got.maxCount > 1 {
		t.Errorf("%d redelivered (highest delivery count %d), want the 9 prefetched, returned once each", got.redelivered, got.maxCount)
	}
}

// A consumer that starts while its pool is paused declares the queue, says
// it is ready, and consumes nothing until the pool is resumed.
func TestConsumeStartsPaused(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const pool = "startpaused"
	declarePool(t, env.Broker, pool, "startpaused.job")
	msgs := []queue.Message{message(t, newJob("startpaused.job", 0), ""), message(t, newJob("startpaused.job", 1), "")}
	publishAll(t, env.Broker, msgs)
	ready(t, env, pool, 2)

	g := newGate(true)
	var got deliveries
	consume(t, env.Broker, queue.ConsumeOptions{Pool: pool, Types: []string{"startpaused.job"}, Concurrency: 2, Paused: g.paused.Load, PauseChanged: g.changed},
		func(d queue.Delivery) {
			got.add(d)
			_ = d.Ack()
		})
	time.Sleep(300 * time.Millisecond)
	if n := got.handled(); n != 0 {
		t.Fatalf("%d messages handled by a consumer that started paused", n)
	}
	if q, err := env.Broker.InspectPool(context.Background(), pool); err != nil || q.Consumers != 0 || q.Messages != 2 {
		t.Errorf("paused from the start: %+v (%v), want 2 ready and no consumer", q, err)
	}
	g.set(false)
	testenv.Eventually(t, wait, "both messages handled after the resume", func() bool { return got.handled() == 2 })
	if got.redelivered != 0 {
		t.Errorf("%d redelivered, want none: nothing was delivered while paused", got.redelivered)
	}
	// Pausing and resuming again, quickly, leaves one consumer per lane.
	g.set(true)
	g.set(false)
	testenv.Eventually(t, wait, "one consumer per lane after a pause and resume", func() bool {
		q, err := env.Broker.InspectPool(context.Background(), pool)
		return err == nil && q.Consumers == 2
	})
}
