package queue_test

import (
	"context"
	"sync"
	"testing"
	"time"

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
