package producer_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
)

// newJob is a built job of type typ in pool.
func newJob(typ, pool, key string) *jobs.Job {
	return &jobs.Job{ID: jobs.NewID(), Type: typ, Pool: pool, Status: jobs.StatusQueued,
		Payload: json.RawMessage(`{"n":1}`), MaxAttempts: 3, Timeout: jobs.Duration(30 * time.Second),
		IdempotencyKey: key, CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
}

func TestAcceptRecordsAndPublishesOrLeavesNothing(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	if err := env.Broker.DeclarePool(ctx, "sys", []string{"sys.echo"}); err != nil {
		t.Fatal(err)
	}
	p := producer.New(producer.Config{Logger: env.Log}, env.Broker, env.Store)

	keyed, ghost := newJob("sys.echo", "sys", "order-1"), newJob("ghost.thing", "ghost", "")
	res, err := p.Accept(ctx, []*jobs.Job{newJob("sys.echo", "sys", ""), keyed, ghost}, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if res[i].Err != nil || res[i].Existing || res[i].Job == nil {
			t.Errorf("job %d: %+v, want accepted", i, res[i])
		}
	}
	// No queue is bound for ghost.thing: refused, and its record removed.
	if !errors.Is(res[2].Err, producer.ErrNoRoute) {
		t.Errorf("a job nobody would take: %v, want ErrNoRoute", res[2].Err)
	}
	if _, err := env.Store.Get(ctx, ghost.ID); res[2].Job != nil || !errors.Is(err, store.ErrNotFound) {
		t.Error("the refused job kept a record")
	}
	if n := env.Messages(t, "sys"); n != 2 {
		t.Errorf("%d messages in the sys queue, want 2", n)
	}

	// The same idempotency key: the earlier job, nothing new.
	again, err := p.Accept(ctx, []*jobs.Job{newJob("sys.echo", "sys", "order-1")}, "")
	if err != nil || !again[0].Existing || again[0].Job.ID != keyed.ID {
		t.Fatalf("the same key again: %+v, %v; want the earlier job %s", again, err, keyed.ID)
	}
	if n := env.Messages(t, "sys"); n != 2 {
		t.Errorf("%d messages after a repeat, want 2", n)
	}
	if _, err := env.Store.Get(ctx, keyed.ID); err != nil {
		t.Errorf("the accepted job's record: %v", err)
	}
}

func TestAcceptWithoutABrokerKeepsNothing(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	// A broker that never connects: nothing listens on port 1.
	away, err := queue.New(queue.Config{URL: "amqp://guest:guest@127.0.0.1:1/", Namespace: env.NS, Logger: env.Log})
	if err != nil {
		t.Fatal(err)
	}
	p := producer.New(producer.Config{Logger: env.Log}, away, env.Store)
	j := newJob("sys.echo", "sys", "k")
	if _, err := p.Accept(context.Background(), []*jobs.Job{j}, ""); !errors.Is(err, queue.ErrUnavailable) {
		t.Fatalf("accept without a broker: %v, want queue.ErrUnavailable", err)
	}
	if _, err := env.Store.Get(context.Background(), j.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the job has a record: %v", err)
	}
}
