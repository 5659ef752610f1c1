package queue_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/queue"
)

func TestConsumeConcurrency(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                  string
		concurrency, prefetch int
		wantPrefetch          int
	}{
		{name: "default", concurrency: 0, prefetch: 0, wantPrefetch: 1},
		{name: "prefetch follows concurrency", concurrency: 4, prefetch: 0, wantPrefetch: 4},
		{name: "prefetch above concurrency", concurrency: 3, prefetch: 12, wantPrefetch: 12},
		{name: "prefetch below concurrency", concurrency: 5, prefetch: 2, wantPrefetch: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := testenv.New(t)
			const pool = "conc"
			const total = 30
			declarePool(t, env.Broker, pool, "conc.job")
			msgs := make([]queue.Message, total)
			for i := range msgs {
				msgs[i] = message(t, newJob("conc.job", i), "")
			}
			publishAll(t, env.Broker, msgs)
			ready(t, env, pool, total)

			wantMax := min(max(tt.concurrency, 1), tt.wantPrefetch)
			var (
				inFlight, maxInFlight atomic.Int64
				handled               atomic.Int64
				full                  = make(chan struct{}, 1)
				gate                  = make(chan struct{})
				allDone               = make(chan struct{})
			)
			consume(t, env.Broker, queue.ConsumeOptions{
				Pool: pool, Concurrency: tt.concurrency, Prefetch: tt.prefetch,
			}, func(d queue.Delivery) {
				n := inFlight.Add(1)
				for {
					m := maxInFlight.Load()
					if n <= m || maxInFlight.CompareAndSwap(m, n) {
						break
					}
				}
				if n == int64(wantMax) {
					select {
					case full <- struct{}{}:
					default:
					}
				}
				<-gate
				inFlight.Add(-1)
				if err := d.Ack(); err != nil {
					t.Errorf("Ack: %v", err)
				}
				if handled.Add(1) == total {
					close(allDone)
				}
			})

			var once sync.Once
			release := func() { once.Do(func() { close(gate) }) }
			t.Cleanup(release) // runs before the consumer is stopped
			recv(t, full, fmt.Sprintf("%d handlers in flight", wantMax))
			if got := consumerPrefetch(t, env.NS.Queue(pool)); got != tt.wantPrefetch {
				t.Fatalf("consumer prefetch = %d, want %d", got, tt.wantPrefetch)
			}
			// The broker hands out no more than the prefetch: what it keeps
			// is ready.
			ready(t, env, pool, total-tt.wantPrefetch)
			if got := inFlight.Load(); got != int64(wantMax) {
				t.Errorf("%d handlers in flight with every delivery blocked, want %d", got, wantMax)
			}
			release()
			recv(t, allDone, "every message handled")
			if got := maxInFlight.Load(); got != int64(wantMax) {
				t.Errorf("at most %d handlers ran at once, want %d", got, wantMax)
			}
		})
	}
}

// consumerPrefetch returns the prefetch of the one consumer of a queue, as
// the management API reports it.
func consumerPrefetch(t *testing.T, q string) int {
	t.Helper()
	type consumer struct {
		Prefetch int `json:"prefetch_count"`
		Queue    struct {
			Name string `json:"name"`
		} `json:"queue"`
	}
	var mine []consumer
	// The management API learns of consumers a moment after they start.
	testenv.Eventually(t, wait, "the consumer to show in the management API", func() bool {
		var all []consumer
		mgmt(t, http.MethodGet, "/api/consumers/%2F", &all)
		mine = mine[:0]
		for _, c := range all {
			if c.Queue.Name == q {
				mine = append(mine, c)
			}
		}
		return len(mine) > 0
	})
	if len(mine) != 1 {
		t.Fatalf("%d consumers on %s, want 1", len(mine), q)
	}
	return mine[0].Prefetch
}

func TestConsumeGracefulStop(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const pool = "grace"
	const total = 20
	declarePool(t, env.Broker, pool, "grace.job")
	msgs := make([]queue.Message, total)
	for i := range msgs {
		msgs[i] = message(t, newJob("grace.job", i), "")
	}
	publishAll(t, env.Broker, msgs)
	ready(t, env, pool, total)

	var (
		started  = make(chan string, total)
		release  = make(chan struct{})
		returned atomic.Bool
		calls    atomic.Int64
		ackErr   = make(chan error, 1)
	)
	c := consume(t, env.Broker, queue.ConsumeOptions{Pool: pool, Concurrency: 1, Prefetch: 10}, func(d queue.Delivery) {
		if calls.Add(1) > 1 {
			t.Errorf("handler called for %s after the first delivery; Consume should have stopped taking work", d.MessageID())
			_ = d.Requeue()
			return
		}
		started <- d.MessageID()
		<-release
		ackErr <- d.Ack()
		returned.Store(true)
	})
	first := recv(t, started, "the first delivery")
	// The broker has handed over the prefetch: 1 running, 9 waiting in the
	// client.
	ready(t, env, pool, total-10)

	stopped := make(chan error, 1)
	go func() { stopped <- c.stop() }()
	// Consume must not return while the handler runs. There is no signal
	// for something that must not happen; give it a moment to go wrong.
	select {
	case err := <-stopped:
		t.Fatalf("Consume returned (%v) while a handler was still running", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := recv(t, stopped, "Consume to return"); err != nil {
		t.Errorf("Consume = %v, want nil after its context ended", err)
	}
	if !returned.Load() {
		t.Error("Consume returned before the running handler did")
	}
	if err := recv(t, ackErr, "the handler's Ack"); err != nil {
		t.Errorf("Ack after the context ended = %v, want nil", err)
	}

	// The running message was acked; the 9 prefetched but unstarted ones went
	// back: 19 ready, and the first is not among them.
	ready(t, env, pool, total-1)
	var want []string
	for _, m := range msgs {
		if m.ID != first {
			want = append(want, m.ID)
		}
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, drain(t, env.NS, pool)); diff != "" {
		t.Errorf("messages left (-want +got):\n%s", diff)
	}
}

func TestConsumeRequeueAndDrop(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const pool = "settle"
	declarePool(t, env.Broker, pool, "settle.requeue", "settle.drop")
	req := newJob("settle.requeue", 1)
	drop := newJob("settle.drop", 2)
	publishAll(t, env.Broker, []queue.Message{message(t, req, ""), message(t, drop, "")})

	type seen struct {
		ID          string
		Redelivered bool
		Count       int
	}
	got := make(chan seen, 10)
	consume(t, env.Broker, queue.ConsumeOptions{Pool: pool}, func(d queue.Delivery) {
		got <- seen{d.MessageID(), d.Redelivered(), d.DeliveryCount()}
		var err error
		switch {
		case d.MessageID() == drop.ID:
			err = d.Drop()
		case !d.Redelivered():
			err = d.Requeue()
		default:
			err = d.Ack()
		}
		if err != nil {
			t.Errorf("settle %s: %v", d.MessageID(), err)
		}
	})
	var all []seen
	for range 3 {
		all = append(all, recv(t, got, "a delivery"))
	}
	want := []seen{{req.ID, false, 0}, {drop.ID, false, 0}, {req.ID, true, 1}}
	byRedeliveryAndID := cmpopts.SortSlices(func(a, b seen) bool {
		if a.Redelivered != b.Redelivered {
			return !a.Redelivered
		}
		return a.ID < b.ID
	})
	if diff := cmp.Diff(want, all, byRedeliveryAndID); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
	ready(t, env, pool, 0)
	select {
	case s := <-got:
		t.Errorf("unexpected delivery %+v after requeue, ack and drop", s)
	default:
	}
}

func TestConsumeEndedContext(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() {
		done <- env.Broker.Consume(ctx, queue.ConsumeOptions{Pool: "never"}, func(queue.Delivery) {
			t.Error("handler called with an ended context")
		})
	}()
	if err := recv(t, done, "Consume with an ended context to return"); err != nil {
		t.Errorf("Consume = %v, want nil", err)
	}
}

// Acks are batched (multiple=true over runs of settled deliveries) on the
// real broker: with jobs finishing out of order, some long, some requeued
// and some dropped, every message is handled to its end exactly once, the
// channel never fails (a wrong multiple ack would close it, and the
// consumer would start again), and when Consume returns every ack has
// reached the broker: the queue is empty, nothing went back to it.
func TestBatchedAcks(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const pool = "acks"
	const total = 2000
	declarePool(t, env.Broker, pool, "acks.job")
	msgs := make([]queue.Message, total)
	number := map[string]int{}
	for i := range msgs {
		msgs[i] = message(t, newJob("acks.job", i), "")
		number[msgs[i].ID] = i
	}
	publishAll(t, env.Broker, msgs)

	var (
		mu       sync.Mutex
		acked    = map[string]int{}
		dropped  = map[string]bool{}
		requeued = map[string]bool{}
		ended    atomic.Int64 // acked or dropped
		allDone  = make(chan struct{})
	)
	c := consume(t, env.Broker, queue.ConsumeOptions{Pool: pool, Concurrency: 8, Prefetch: 32}, func(d queue.Delivery) {
		id := d.MessageID()
		n := number[id]
		mu.Lock()
		again := requeued[id]
		mu.Unlock()
		var err error
		switch {
		case n%97 == 1:
			time.Sleep(200 * time.Millisecond) // a long job holds a gap open
			err = d.Ack()
		case n%89 == 2 && !again:
			mu.Lock()
			requeued[id] = true
			mu.Unlock()
			if err = d.Requeue(); err != nil {
				t.Errorf("requeue %s: %v", id, err)
			}
			return
		case n%83 == 3:
			mu.Lock()
			dropped[id] = true
			mu.Unlock()
			err = d.Drop()
		default:
			if n%3 == 0 {
				time.Sleep(time.Duration(n%7) * time.Millisecond)
			}
			err = d.Ack()
		}
		if err != nil {
			t.Errorf("settle %s: %v", id, err)
		}
		mu.Lock()
		if !dropped[id] {
			acked[id]++
		}
		mu.Unlock()
		if ended.Add(1) == total {
			close(allDone)
		}
	})
	recv(t, allDone, "every message handled")
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.ready:
		t.Error("the consumer started again: its channel failed")
	default:
	}
	mu.Lock()
	defer mu.Unlock()
	for id, n := range acked {
		if n != 1 {
			t.Errorf("message %s acked after %d runs, want 1", id, n)
		}
	}
	if len(acked)+len(dropped) != total {
		t.Errorf("%d acked + %d dropped, want %d", len(acked), len(dropped), total)
	}
	if len(requeued) == 0 || len(dropped) == 0 {
		t.Errorf("requeued %d, dropped %d: the test lost its rejections", len(requeued), len(dropped))
	}
	// Nothing unacknowledged went back when the channel closed.
	if n := env.Messages(t, pool); n != 0 {
		t.Errorf("%d messages back in the queue after Consume returned, want 0", n)
	}
}
