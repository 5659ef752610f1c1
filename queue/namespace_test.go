package queue_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
)

// FindNamespace finds what a namespace holds on the broker, with the
// management API everything named for it, without it what warren derives
// from the pools it is told of; DeleteObjects deletes it all.
func TestFindAndDeleteNamespace(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	ns := env.NS
	for _, p := range []string{"a", "b"} {
		if err := env.Broker.DeclarePool(ctx, p, []string{p + ".job"}); err != nil {
			t.Fatal(err)
		}
	}
	// What older versions left, and a pool no record names.
	ch := rawChannel(t)
	for _, q := range []string{ns.ClassicDelayQueue(3), ns.UnlimitedIntakeQueue("a"), ns.Queue("ghost")} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.ExchangeDeclare(ns.ClassicDelayDeliverExchange(), amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	m, err := queue.NewManagement("", testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	// The test's broker connection declared the delay levels and the job
	// exchange; it goes away now, so that nothing declares them again.
	if err := env.Broker.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	listing := sweeper(t, ns, m)
	asking := sweeper(t, ns, nil)

	all, err := listing.Find(ctx, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	derived, err := asking.Find(ctx, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{ns.Queue("a"), ns.DeadQueue("b"), ns.DeadIntakeQueue("a"), ns.UnlimitedIntakeQueue("a"),
		ns.DelayQueue(31), ns.ClassicDelayQueue(3), ns.DelayUnrouted()} {
		if !slices.Contains(all.Queues, want) || !slices.Contains(derived.Queues, want) {
			t.Errorf("queue %s: listed %v, derived %v; want it found both ways", want, slices.Contains(all.Queues, want), slices.Contains(derived.Queues, want))
		}
	}
	for _, want := range []string{ns.Exchange(), ns.DeadExchange(), ns.DelayExchange(0), ns.DelayDeliverExchange(), ns.ClassicDelayDeliverExchange()} {
		if !slices.Contains(all.Exchanges, want) || !slices.Contains(derived.Exchanges, want) {
			t.Errorf("exchange %s: not found both ways", want)
		}
	}
	if !slices.Contains(all.Queues, ns.Queue("ghost")) || slices.Contains(derived.Queues, ns.Queue("ghost")) {
		t.Errorf("the unnamed pool's queue: listed %v, derived %v; want only listed", all.Queues, derived.Queues)
	}
	// Counted: 2 pools × 4 (their lanes, dead letters and intake), the
	// old intake of one, the ghost, 32 levels + 1 classic, unrouted.
	if len(all.Queues) != 2*4+1+1+32+1+1 {
		t.Errorf("%d queues listed: %v", len(all.Queues), all.Queues)
	}
	for _, n := range slices.Concat(all.Queues, all.Exchanges) {
		if !strings.HasPrefix(n, string(ns)+".") {
			t.Errorf("%s listed as the namespace's", n)
		}
	}

	if err := listing.Delete(ctx, queue.Objects{Queues: []string{ns.Queue("a"), "other.pool.a"}}); err == nil {
		t.Error("deleting a name of another namespace: no error")
	}
	if _, err := asking.Find(ctx, []string{"a"}); err != nil {
		t.Fatalf("the refusal deleted something or broke the connection: %v", err)
	}
	if err := listing.Delete(ctx, all); err != nil {
		t.Fatal(err)
	}
	left, err := listing.Find(ctx, []string{"a", "b", "ghost"})
	if err != nil {
		t.Fatal(err)
	}
	if !left.Empty() {
		t.Errorf("left after the delete: %+v", left)
	}
	if left, err = asking.Find(ctx, []string{"a", "b", "ghost"}); err != nil || !left.Empty() {
		t.Errorf("left after the delete, asked name by name: %+v (%v)", left, err)
	}
}

// sweeper connects a Sweeper for ns until the test ends.
func sweeper(t *testing.T, ns jobs.Namespace, m *queue.Management) *queue.Sweeper {
	t.Helper()
	s, err := queue.NewSweeper(queue.Config{URL: testenv.AMQPURL(), Namespace: ns, Logger: testenv.Logger(t)}, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
