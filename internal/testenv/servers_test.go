package testenv_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/internal/testenv"
)

// outage is one way a server goes down: gracefully or by a crash.
type outage struct {
	name string
	down func(testing.TB)
}

func TestPrivateRabbitMQSurvivesRestart(t *testing.T) {
	t.Parallel()
	testenv.RequireServices(t)
	rmq := testenv.StartRabbitMQ(t)
	const queue = "private-restart"

	for _, o := range []outage{{"stop", rmq.Stop}, {"kill", rmq.Kill}} {
		// The publisher stays connected through the outage, as a client
		// would: the node must start again on its port all the same.
		conn := publish(t, rmq.URL(), queue, o.name, 10)
		o.down(t)
		if c, err := amqp.Dial(rmq.URL()); err == nil {
			_ = c.Close()
			t.Fatalf("after %s: AMQP login to the private node still works", o.name)
		}
		_ = conn.Close() // fails: the node closed it
		rmq.Start(t)

		got := drain(t, rmq.URL(), queue)
		var want []string
		for i := range 10 {
			want = append(want, fmt.Sprintf("%s-%d", o.name, i))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("after %s and Start, the queue holds %q, want %q", o.name, got, want)
		}
	}
	requireSharedServers(t)
}

// publish declares a durable quorum queue and publishes n persistent
// messages "{prefix}-{i}" to it, each confirmed. It returns the connection,
// still open.
func publish(t *testing.T, url, queue, prefix string, n int) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial private RabbitMQ: %v", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("open channel: %v", err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatalf("declare queue %s: %v", queue, err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("confirm mode: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range n {
		body := fmt.Sprintf("%s-%d", prefix, i)
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent,
			Body:         []byte(body),
		})
		if err != nil {
			t.Fatalf("publish %s: %v", body, err)
		}
		if ok, err := dc.WaitContext(ctx); !ok || err != nil {
			t.Fatalf("publish %s: not confirmed (acked %v, %v)", body, ok, err)
		}
	}
	return conn
}

// drain takes every message from the queue with basic.get and returns their
// bodies in order.
func drain(t *testing.T, url, queue string) []string {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial private RabbitMQ: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("open channel: %v", err)
	}
	var bodies []string
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			return bodies
		}
		bodies = append(bodies, string(d.Body))
	}
}

func TestPrivateRedisSurvivesRestart(t *testing.T) {
	t.Parallel()
	testenv.RequireServices(t)
	srv := testenv.StartRedis(t)
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var keys []string
	for _, o := range []outage{{"stop", srv.Stop}, {"kill", srv.Kill}} {
		rdb := redis.NewClient(opts)
		key := "private-restart:" + o.name
		if err := rdb.Set(ctx, key, o.name, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		keys = append(keys, key)
		o.down(t)
		// One attempt, rather than the client's retries and back-off.
		probe := redis.NewClient(&redis.Options{Addr: opts.Addr, MaxRetries: -1, DialerRetries: 1})
		if err := probe.Ping(ctx).Err(); err == nil {
			t.Fatalf("after %s: the private Redis still answers PING", o.name)
		}
		_ = probe.Close()
		srv.Start(t)
		// Every key written so far survived every outage so far.
		for _, k := range keys {
			v, err := rdb.Get(ctx, k).Result()
			if err != nil {
				t.Fatalf("after %s and Start: GET %s: %v", o.name, k, err)
			}
			if want := k[len("private-restart:"):]; v != want {
				t.Fatalf("after %s and Start: GET %s = %q, want %q", o.name, k, v, want)
			}
		}
		_ = rdb.Close()
	}
	requireSharedServers(t)
}

// requireSharedServers fails the test unless the shared RabbitMQ takes a
// login and the shared Redis answers PING: the private servers must leave
// them alone.
func requireSharedServers(t *testing.T) {
	t.Helper()
	conn, err := amqp.Dial(testenv.AMQPURL())
	if err != nil {
		t.Fatalf("the shared RabbitMQ at %s no longer takes a login: %v", testenv.AMQPURL(), err)
	}
	_ = conn.Close()
	opts, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("the shared Redis at %s no longer answers PING: %v", testenv.RedisURL(), err)
	}
}
