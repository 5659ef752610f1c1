package queue_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
)

func TestReconnect(t *testing.T) {
	t.Parallel()
	testenv.RequireServices(t)
	ns := testenv.Namespace(t)
	name := "warren-test-reconnect-" + string(ns)
	b, err := queue.New(queue.Config{
		URL: testenv.AMQPURL(), Namespace: ns, Logger: testenv.Logger(t), Name: name,
		// A wide gap between losing the connection and the next attempt, so
		// that the disconnected state can be seen.
		ReconnectMin: 300 * time.Millisecond, ReconnectMax: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	const pool = "phoenix"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := b.WaitConnected(ctx); err == nil {
			if err := b.DeleteNamespace(ctx, []string{pool}); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if err := b.Stop(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclarePool(ctx, pool, []string{"phoenix.job"}); err != nil {
		t.Fatal(err)
	}

	got := make(chan string, 10)
	c := consume(t, b, queue.ConsumeOptions{Pool: pool}, func(d queue.Delivery) {
		if err := d.Ack(); err != nil {
			t.Errorf("Ack: %v", err)
		}
		got <- d.MessageID()
	})
	before := newJob("phoenix.job", 1)
	publishAll(t, b, []queue.Message{message(t, before, "")})
	if id := recv(t, got, "a delivery before the outage"); id != before.ID {
		t.Fatalf("delivered %s, want %s", id, before.ID)
	}

	// Find our connection by its name and have the broker close it.
	type conn struct {
		Name  string `json:"name"`
		Props struct {
			ConnectionName string `json:"connection_name"`
		} `json:"client_properties"`
	}
	var mine []string
	testenv.Eventually(t, wait, "connection "+name+" in the management API", func() bool {
		var all []conn
		mgmt(t, http.MethodGet, "/api/connections", &all)
		mine = mine[:0]
		for _, c := range all {
			if c.Props.ConnectionName == name {
				mine = append(mine, c.Name)
			}
		}
		return len(mine) > 0
	})
	if len(mine) != 1 {
		t.Fatalf("%d connections named %s, want 1", len(mine), name)
	}
	mgmt(t, http.MethodDelete, "/api/connections/"+url.PathEscape(mine[0]), nil)

	// Connected() turns false (it is false for at least ReconnectMin), then
	// true again.
	deadline := time.Now().Add(wait)
	for b.Connected() {
		if time.Now().After(deadline) {
			t.Fatal("Connected() stayed true after the connection was closed")
		}
		time.Sleep(time.Millisecond)
	}
	if err := b.WaitConnected(ctx); err != nil {
		t.Fatalf("no reconnection: %v", err)
	}
	// The consumer comes back on the new connection.
	recv(t, c.ready, "Consume to resume on the new connection")

	after := newJob("phoenix.job", 2)
	publishAll(t, b, []queue.Message{message(t, after, "")})
	if id := recv(t, got, "a delivery after the reconnection"); id != after.ID {
		t.Fatalf("delivered %s, want %s", id, after.ID)
	}
	if err := c.stop(); err != nil {
		t.Errorf("Consume = %v", err)
	}
}

func TestStartStopTwice(t *testing.T) {
	t.Parallel()
	testenv.RequireServices(t)
	b, err := queue.New(queue.Config{URL: testenv.AMQPURL(), Namespace: testenv.Namespace(t), Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := b.Stop(ctx); err != nil {
		t.Errorf("Stop before Start: %v", err)
	}
	for range 2 {
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := b.Stop(ctx); err != nil {
			t.Errorf("Stop %d: %v", i+1, err)
		}
	}
	if b.Connected() {
		t.Error("Connected() after Stop")
	}
	if _, err := b.Publish(ctx, []queue.Message{message(t, newJob("a.b", 1), "")}); !errors.Is(err, queue.ErrUnavailable) {
		t.Errorf("Publish after Stop = %v, want ErrUnavailable", err)
	}
}

func TestNewConfig(t *testing.T) {
	t.Parallel()
	if _, err := queue.New(queue.Config{}); err == nil {
		t.Error("New without URL: no error")
	}
	if _, err := queue.New(queue.Config{URL: "amqp://x/", Namespace: "bad name"}); err == nil {
		t.Error("New with a bad namespace: no error")
	}
	b, err := queue.New(queue.Config{URL: "amqp://x/"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Namespace() != jobs.DefaultNamespace {
		t.Errorf("Namespace() = %q, want the default", b.Namespace())
	}
}

func TestInspectMissingPool(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	// queue's own sentinel, not the broker's 404, which callers outside
	// queue would have to know amqp091-go to read.
	for name, inspect := range map[string]func(context.Context, string) (queue.QueueInfo, error){
		"InspectPool": env.Broker.InspectPool, "InspectDead": env.Broker.InspectDead,
	} {
		if _, err := inspect(context.Background(), "nosuchpool"); !errors.Is(err, queue.ErrNoPool) {
			t.Errorf("%s of a missing pool = %v, want ErrNoPool", name, err)
		}
	}
	if _, _, err := env.Broker.DeadLetters(context.Background(), "nosuchpool", 10); !errors.Is(err, queue.ErrNoPool) {
		t.Errorf("DeadLetters of a missing pool = %v, want ErrNoPool", err)
	}
}
