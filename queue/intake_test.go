package queue_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
)

// A message on the intake queue that its consumer always returns (one that
// kills the worker each time, say) is delivered DeliveryLimit times more,
// then the broker dead-letters it into the pool's dead-letter queue, where
// it is listed; it does not go round the intake for ever.
func TestIntakeDeliveryLimit(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const pool = "loop"
	declarePool(t, env.Broker, pool, "loop.job")
	m := message(t, newJob("loop.job", 1), "")
	// As the broker dead-letters it from the pool queue: straight into the
	// intake queue (the dead-letter queue would have its own copy).
	ch := rawChannel(t)
	must(t, ch.PublishWithContext(context.Background(), "", env.NS.DeadIntakeQueue(pool), true, false,
		amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: m.ID, Headers: queue.WireHeaders(m), Body: m.Body}))

	var (
		mu    sync.Mutex
		count int
	)
	c := consume(t, env.Broker, queue.ConsumeOptions{Pool: pool, Intake: true}, func(d queue.Delivery) {
		mu.Lock()
		count++
		mu.Unlock()
		if err := d.Requeue(); err != nil {
			t.Errorf("requeue: %v", err)
		}
	})
	testenv.Eventually(t, wait, "the message in the dead-letter queue", func() bool {
		q, err := env.Broker.InspectDead(context.Background(), pool)
		return err == nil && q.Messages == 1
	})
	time.Sleep(500 * time.Millisecond) // long enough for a loop to show
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if count != queue.DeliveryLimit+1 {
		t.Errorf("delivered %d times on the intake, want %d (the first and %d more)", count, queue.DeliveryLimit+1, queue.DeliveryLimit)
	}
	mu.Unlock()
	if q, err := ch.QueueDeclarePassive(env.NS.DeadIntakeQueue(pool), true, false, false, false, nil); err != nil || q.Messages != 0 {
		t.Errorf("intake queue: %+v %v, want it empty", q, err)
	}
	total, dead, err := env.Broker.DeadLetters(context.Background(), pool, 10)
	if err != nil {
		t.Fatal(err)
	}
	if total != 1 || len(dead) != 1 {
		t.Fatalf("%d dead letters (%d listed), want 1", total, len(dead))
	}
	dl := dead[0]
	if dl.Job.ID != m.ID || dl.Reason != "limit" || dl.ErrorCode != "delivery_limit" ||
		!strings.Contains(dl.Error, "intake") || dl.FailedAt.IsZero() {
		t.Errorf("dead letter %+v (job %s), want job %s, reason limit, code delivery_limit, an error naming the intake and a time",
			dl, dl.Job.ID, m.ID)
	}
}

// A namespace made when intake queues had no delivery limit is migrated by
// the next intake consumer that connects: an empty old intake queue is
// deleted; one that holds messages is unbound and its messages are moved
// to the new intake queue, each delivered there once, and it is deleted
// once it is empty and no consumer (a worker of the old version) holds it,
// by that connection or a later one.
func TestUnlimitedIntakeIsRetired(t *testing.T) {
	t.Parallel()
	testenv.RequireServices(t)
	ns := testenv.Namespace(t)
	ctx := context.Background()
	ch := testenv.Channel(t)
	// The old topology, as protocol.md described it: pool "empty" with an
	// empty old intake queue, pool "old" with three messages in its, one of
	// them held by a consumer of the old version.
	must(t, ch.ExchangeDeclare(ns.DeadExchange(), "topic", true, false, false, false, nil))
	for _, pool := range []string{"empty", "old"} {
		q := ns.UnlimitedIntakeQueue(pool)
		_, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
		must(t, err)
		must(t, ch.QueueBind(q, jobs.DeadRoutingKey("limit", pool), ns.DeadExchange(), false, nil))
	}
	var ids []string
	for i := range 3 {
		m := message(t, newJob("old.job", i), "")
		ids = append(ids, m.ID)
		must(t, ch.PublishWithContext(ctx, ns.DeadExchange(), jobs.DeadRoutingKey("limit", "old"), true, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: m.ID, Headers: queue.WireHeaders(m), Body: m.Body}))
	}
	oldWorker := testenv.Channel(t)
	must(t, oldWorker.Qos(1, 0, false))
	held, err := oldWorker.Consume(ns.UnlimitedIntakeQueue("old"), "old-worker", false, false, false, false, nil)
	must(t, err)
	first := recv(t, held, "the old worker's delivery")
	exists := func(name string) bool {
		// A missing queue closes the channel it was asked on.
		_, err := testenv.Channel(t).QueueDeclarePassive(name, true, false, false, false, nil)
		return err == nil
	}

	var (
		mu  sync.Mutex
		got = map[string]int{}
	)
	intake := func(pool string) *consumer {
		return consume(t, connect(t, ns), queue.ConsumeOptions{Pool: pool, Intake: true}, func(d queue.Delivery) {
			mu.Lock()
			got[d.MessageID()]++
			mu.Unlock()
			if err := d.Ack(); err != nil {
				t.Errorf("ack: %v", err)
			}
		})
	}
	received := func(n int) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) == n
		}
	}
	intake("empty")
	if exists(ns.UnlimitedIntakeQueue("empty")) {
		t.Error("the empty old intake queue was not deleted")
	}
	c := intake("old")
	testenv.Eventually(t, wait, "the two ready messages in the new intake", received(2))
	if !exists(ns.UnlimitedIntakeQueue("old")) {
		t.Fatal("the old intake queue was deleted while a consumer held a message")
	}
	// Nothing new enters the old queue: a dead letter now reaches the new
	// intake alone.
	m := message(t, newJob("old.job", 3), "")
	ids = append(ids, m.ID)
	must(t, ch.PublishWithContext(ctx, ns.DeadExchange(), jobs.DeadRoutingKey("limit", "old"), true, false,
		amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: m.ID, Headers: queue.WireHeaders(m), Body: m.Body}))
	testenv.Eventually(t, wait, "the new dead letter in the new intake", received(3))
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}

	// The old worker stops without acknowledging: its message goes back to
	// the old queue, and the next connection moves it and deletes the queue.
	must(t, oldWorker.Close())
	testenv.Eventually(t, wait, "the old worker's message back in the old queue", func() bool {
		q, err := testenv.Channel(t).QueueDeclarePassive(ns.UnlimitedIntakeQueue("old"), true, false, false, false, nil)
		return err == nil && q.Messages == 1
	})
	intake("old")
	testenv.Eventually(t, wait, "every message in the new intake", received(4))
	if exists(ns.UnlimitedIntakeQueue("old")) {
		t.Error("the drained old intake queue was not deleted by the next connection")
	}
	time.Sleep(time.Second) // long enough for a second copy to arrive, were there one
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("message %s arrived %d times in the new intake, want once (first held: %s)", id, got[id], first.MessageId)
		}
	}
}
