package queue_test

import (
	"context"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
)

// Delayed messages arrive after their delay, in order of due time, whatever
// the order they were published in: a long delay never holds back a short
// one behind it.
func TestDelayedMessagesArriveWhenDue(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	if err := env.Broker.DeclarePool(ctx, "delayed", []string{"d.job"}); err != nil {
		t.Fatal(err)
	}
	delays := []time.Duration{2500 * time.Millisecond, 1300 * time.Millisecond, 0, 700 * time.Millisecond}
	var msgs []queue.Message
	want := map[string]time.Duration{}
	for i, d := range delays {
		m := message(t, newJob("d.job", i), "")
		m.Delay = d
		msgs = append(msgs, m)
		want[m.ID] = d
	}
	start := time.Now()
	errs, err := env.Broker.Publish(ctx, msgs)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	type arrival struct {
		id string
		at time.Duration
	}
	var (
		mu   sync.Mutex
		got  []arrival
		done = make(chan struct{})
	)
	cctx, cancel := context.WithCancel(ctx)
	consumed := make(chan error, 1)
	go func() {
		consumed <- env.Broker.Consume(cctx, queue.ConsumeOptions{Pool: "delayed", Types: []string{"d.job"}}, func(d queue.Delivery) {
			_ = d.Ack()
			mu.Lock()
			defer mu.Unlock()
			got = append(got, arrival{d.MessageID(), time.Since(start)})
			if len(got) == len(delays) {
				close(done)
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("not every delayed message arrived")
	}
	cancel()
	if err := <-consumed; err != nil {
		t.Fatal(err)
	}
	for i, a := range got {
		d := want[a.id]
		// Never early; late by at most a generous margin for a busy machine.
		if a.at < d-jobs.DelayUnit || a.at > d+2*time.Second {
			t.Errorf("message delayed %s arrived after %s", d, a.at)
		}
		if i > 0 && want[got[i-1].id] > d {
			t.Errorf("message delayed %s arrived after one delayed %s", d, want[got[i-1].id])
		}
	}
}

func TestDelayRoutingKey(t *testing.T) {
	t.Parallel()
	ns := jobs.Namespace("w")
	key := ns.DelayRoutingKey(1300*time.Millisecond, "a.b") // 13 units = 1101
	want := "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.1.0.1.a.b"
	if key != want {
		t.Errorf("key %s, want %s", key, want)
	}
	if got := ns.DelayRoutingKey(100*365*24*time.Hour, "a.b"); got[:2] != "1." {
		t.Errorf("a delay past the maximum is capped: %s", got)
	}
	if len(ns.DelayRoutingKey(time.Hour, "a."+string(make([]byte, jobs.MaxTypeName-2)))) > 255 {
		t.Error("longest routing key is over AMQP's 255 bytes")
	}
}

// A namespace made when the delay levels were classic queues (named as
// their exchanges) is migrated by the next process that connects: its empty
// classic levels are deleted, and one that holds a delayed message is
// unbound and kept, so the message waits out its time there, then travels
// on through the quorum levels to its pool, once, not early; a later connection
// deletes that level once it is empty. A message delayed after the
// migration travels through the quorum levels alone.
func TestClassicDelayLevelsAreRetired(t *testing.T) {
	t.Parallel()
	testenv.RequireServices(t)
	ns := testenv.Namespace(t)
	ctx := context.Background()
	ch := testenv.Channel(t)
	// The old topology, as protocol.md described it, with a message 3.1 s
	// away (31 units: levels 4 to 0) waiting in it.
	below := ns.ClassicDelayDeliverExchange()
	must(t, ch.ExchangeDeclare(below, "topic", true, false, false, false, nil))
	for level := range jobs.DelayLevels {
		ex := ns.DelayExchange(level)
		must(t, ch.ExchangeDeclare(ex, "topic", true, false, false, false, nil))
		_, err := ch.QueueDeclare(ns.ClassicDelayQueue(level), true, false, false, false, amqp.Table{
			"x-message-ttl": int64(100) << level, "x-dead-letter-exchange": below})
		must(t, err)
		must(t, ch.QueueBind(ns.ClassicDelayQueue(level), jobs.DelayBitPattern(level, '1'), ex, false, nil))
		must(t, ch.ExchangeBind(below, jobs.DelayBitPattern(level, '0'), ex, false, nil))
		below = ex
	}
	old := message(t, newJob("mig.job", 1), "")
	must(t, ch.PublishWithContext(ctx, ns.DelayExchange(jobs.DelayLevels-1), ns.DelayRoutingKey(3100*time.Millisecond, "mig.job"),
		false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: old.ID, Body: old.Body, Headers: queue.WireHeaders(old)}))
	published := time.Now()
	testenv.Eventually(t, 5*time.Second, "the old message in classic level 4", func() bool {
		q, err := ch.QueueDeclarePassive(ns.ClassicDelayQueue(4), true, false, false, false, nil)
		return err == nil && q.Messages == 1
	})

	b := connect(t, ns)
	declarePool(t, b, "mig", "mig.job")
	// The pool as a worker of the old version bound it, too.
	must(t, ch.QueueBind(ns.Queue("mig"), jobs.DelayDeliverPattern("mig.job"), ns.ClassicDelayDeliverExchange(), false, nil))
	exists := func(name string) bool {
		// A missing queue closes the channel it was asked on.
		_, err := testenv.Channel(t).QueueDeclarePassive(name, true, false, false, false, nil)
		return err == nil
	}
	// The message is in one of the levels 4 to 0 when the broker connects
	// (connecting takes a while: the quorum levels are declared first);
	// that one level stays, and it alone: the message leaves it for the
	// quorum levels, never for another classic one.
	var kept []int
	for level := range jobs.DelayLevels {
		if exists(ns.ClassicDelayQueue(level)) {
			kept = append(kept, level)
		}
	}
	if len(kept) != 1 || kept[0] > 4 {
		t.Fatalf("classic levels left after the migration: %v; want the one that held the message", kept)
	}
	fresh := message(t, newJob("mig.job", 2), "")
	fresh.Delay = 1500 * time.Millisecond
	if errs, err := b.Publish(ctx, []queue.Message{fresh}); err != nil || errs[0] != nil {
		t.Fatalf("publish after the migration: %v %v", err, errs)
	}

	got := map[string]int{}
	var mu sync.Mutex
	cctx, cancel := context.WithCancel(ctx)
	consumed := make(chan error, 1)
	go func() {
		consumed <- b.Consume(cctx, queue.ConsumeOptions{Pool: "mig", Types: []string{"mig.job"}}, func(d queue.Delivery) {
			_ = d.Ack()
			mu.Lock()
			got[d.MessageID()]++
			mu.Unlock()
		})
	}()
	testenv.Eventually(t, 20*time.Second, "both messages to arrive", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got[old.ID] > 0 && got[fresh.ID] > 0
	})
	if took := time.Since(published); took < 3*time.Second {
		t.Errorf("the old message arrived after %s, before its delay of 3.1s", took)
	}
	// Long enough for a second copy to arrive, were there one.
	time.Sleep(2 * time.Second)
	cancel()
	if err := <-consumed; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if got[old.ID] != 1 || got[fresh.ID] != 1 {
		t.Errorf("arrivals: old %d, fresh %d; want each once", got[old.ID], got[fresh.ID])
	}
	mu.Unlock()

	// The next connection deletes the drained classic level, and with the
	// last of them the classic deliver exchange.
	connect(t, ns)
	if exists(ns.ClassicDelayQueue(kept[0])) {
		t.Errorf("the drained classic level %d was not deleted by the next connection", kept[0])
	}
	if err := testenv.Channel(t).ExchangeDeclarePassive(ns.ClassicDelayDeliverExchange(), "topic", true, false, false, false, nil); err == nil {
		t.Error("the classic deliver exchange outlived the classic levels")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// connect starts a broker of namespace ns and stops it when the test ends.
func connect(t *testing.T, ns jobs.Namespace) *queue.Broker {
	t.Helper()
	b, err := queue.New(queue.Config{URL: testenv.AMQPURL(), Namespace: ns, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop(context.Background()) })
	return b
}

// Delayed messages that come due for a type no pool queue is bound for
// (its queue was deleted, say) wait in the unrouted queue, and do not hold
// up the delay level they left: at-least-once dead-lettering keeps an
// unroutable message with its level, and enough of them (the broker
// settles about 32 at a time) would stop the level for every pool.
func TestUnroutedDelayedMessagesDoNotBlock(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	declarePool(t, env.Broker, "bound", "bound.job")
	// A pool bound for orphan.job, then deleted, as an operator might.
	declarePool(t, env.Broker, "gone", "orphan.job")
	if _, err := testenv.Channel(t).QueueDelete(env.NS.Queue("gone"), false, false, false); err != nil {
		t.Fatal(err)
	}
	var msgs []queue.Message
	for i := range 60 {
		m := message(t, newJob("orphan.job", i), "")
		m.Delay = 300 * time.Millisecond
		msgs = append(msgs, m)
	}
	late := message(t, newJob("bound.job", 1), "")
	late.Delay = 500 * time.Millisecond
	msgs = append(msgs, late)
	errs, err := env.Broker.Publish(ctx, msgs)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Held up, it would wait minutes: the broker retries unroutable
	// dead letters every few minutes.
	testenv.Eventually(t, 10*time.Second, "the routable message to arrive", func() bool {
		return env.Messages(t, "bound") == 1
	})
	testenv.Eventually(t, 10*time.Second, "the unroutable messages to wait in the unrouted queue", func() bool {
		q, err := testenv.Channel(t).QueueDeclarePassive(env.NS.DelayUnrouted(), true, false, false, false, nil)
		return err == nil && q.Messages == 60
	})
}
