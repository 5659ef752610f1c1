package queue_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
)

// prioJob is a job of typ with priority p.
func prioJob(typ string, n, p int) *jobs.Job {
	j := newJob(typ, n)
	j.Priority = p
	return j
}

// With both lanes backlogged, a handler starts high deliveries first, and
// never more than fairness of them in a row while a normal one waits; every
// delivery of both lanes is acknowledged on its own channel.
func TestPriorityHighFirstWithinFairness(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const (
		pool     = "prioq"
		typ      = "prioq.job"
		normal   = 30
		high     = 30
		fairness = 3
	)
	declarePool(t, env.Broker, pool, typ)
	var msgs []queue.Message
	for i := range normal {
		msgs = append(msgs, message(t, prioJob(typ, i, i%5), "")) // 0–4: the normal lane
	}
	for i := range high {
		msgs = append(msgs, message(t, prioJob(typ, i, 5+i%5), "")) // 5–9: the high lane
	}
	publishAll(t, env.Broker, msgs)
	ready(t, env, pool, normal+high) // both lanes: InspectPool sums them

	var (
		mu    sync.Mutex
		order []bool // high?
		done  = make(chan struct{})
	)
	c := consume(t, env.Broker, queue.ConsumeOptions{Pool: pool, Types: []string{typ}, Concurrency: 1, Prefetch: 2, Fairness: fairness},
		func(d queue.Delivery) {
			j, err := queue.DecodeJob(d.Body())
			if err != nil {
				t.Errorf("decode: %v", err)
			}
			// A job's work: a worker records its start and its end in
			// Redis, a round trip or two. A handler that did nothing
			// would outrun the broker's refill of the high lane, which
			// comes once an ack frees a place in its prefetch.
			time.Sleep(2 * time.Millisecond)
			if err := d.Ack(); err != nil {
				t.Errorf("Ack: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			order = append(order, jobs.Lane(j.Priority))
			if len(order) == normal+high {
				close(done)
			}
		})
	recv(t, done, "every delivery handled")
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	lastHigh, normalsBefore, run := 0, 0, 0
	for i, h := range order {
		if h {
			lastHigh = i
		}
	}
	for i, h := range order[:lastHigh+1] {
		if !h {
			normalsBefore++
			run = 0
			continue
		}
		if run++; run > fairness {
			t.Errorf("start %d: %d high starts in a row while normal ones waited, fairness %d", i, run, fairness)
		}
	}
	// A normal one per fairness high ones, and a few more: those the
	// normal lane hands over before the high lane's consumer has begun,
	// and one where a refill of the high lane came late.
	if most := high/fairness + 4; normalsBefore > most {
		t.Errorf("%d normal jobs started before the last high one, want at most %d; order %v", normalsBefore, most, order)
	}
	t.Logf("%d of %d normal jobs started before the last of %d high ones (fairness %d)", normalsBefore, normal, high, fairness)
	// Every ack reached the broker on its lane's channel: nothing comes back.
	if n := env.Messages(t, pool); n != 0 {
		t.Errorf("%d messages back in the lanes after the consumer stopped, want 0", n)
	}
}

// A retry of a high job goes through the delay levels and comes back to
// the high lane; a normal one to the normal lane.
func TestPriorityRetryKeepsLane(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const pool, typ = "prior", "prior.job"
	declarePool(t, env.Broker, pool, typ)
	hj, nj := prioJob(typ, 1, 7), prioJob(typ, 2, 0)
	hm, nm := message(t, hj, ""), message(t, nj, "")
	hm.Delay, nm.Delay = 300*time.Millisecond, 300*time.Millisecond
	publishAll(t, env.Broker, []queue.Message{hm, nm})

	ns := env.Broker.Namespace()
	ch := rawChannel(t)
	got := map[string]string{} // job id → queue
	testenv.Eventually(t, wait, "both delayed messages in their lanes", func() bool {
		for _, q := range []string{ns.Queue(pool), ns.HighQueue(pool)} {
			d, ok, err := ch.Get(q, true)
			if err != nil {
				t.Fatalf("get from %s: %v", q, err)
			}
			if ok {
				got[d.MessageId] = q
			}
		}
		return len(got) == 2
	})
	if got[hj.ID] != ns.HighQueue(pool) || got[nj.ID] != ns.Queue(pool) {
		t.Errorf("delayed high job went to %q, normal one to %q; want %q and %q",
			got[hj.ID], got[nj.ID], ns.HighQueue(pool), ns.Queue(pool))
	}
}

// A type no pool is bound for is refused in either lane.
func TestPriorityUnboundTypeRefused(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declarePool(t, env.Broker, "priou", "priou.job")
	errs := publish(t, env.Broker, []queue.Message{
		message(t, prioJob("priou.other", 1, 0), ""),
		message(t, prioJob("priou.other", 2, 9), ""),
		message(t, prioJob("priou.job", 3, 9), ""),
	})
	for i, want := range []error{queue.ErrUnroutable, queue.ErrUnroutable, nil} {
		if !errors.Is(errs[i], want) && !(want == nil && errs[i] == nil) {
			t.Errorf("message %d: %v, want %v", i, errs[i], want)
		}
	}
}

// A pool declared before priorities (no high lane) gets its high lane at
// the next declaration, and its queue is measured as before meanwhile.
func TestPriorityHighLaneDeclaredLater(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const pool = "priol"
	declarePool(t, env.Broker, pool, "priol.job")
	ns := env.Broker.Namespace()
	ch := rawChannel(t)
	if _, err := ch.QueueDelete(ns.HighQueue(pool), false, false, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if info, err := env.Broker.InspectPool(ctx, pool); err != nil || info.High != 0 {
		t.Fatalf("InspectPool without a high lane: %+v, %v", info, err)
	}
	if err := env.Broker.DeclarePool(ctx, pool, []string{"priol.job"}); err != nil {
		t.Fatal(err)
	}
	publishAll(t, env.Broker, []queue.Message{message(t, prioJob("priol.job", 1, 5), "")})
	testenv.Eventually(t, wait, "the high job in the high lane", func() bool {
		info, err := env.Broker.InspectPool(ctx, pool)
		return err == nil && info.High == 1 && info.Messages == 1
	})
	if _, err := ch.QueueDeclarePassive(ns.HighQueue(pool), true, false, false, false, nil); err != nil {
		t.Errorf("high lane not declared: %v", err)
	}
}
