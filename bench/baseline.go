package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
)

// The baseline does warren's work with nothing of warren: persistent
// messages of a job's size, published with pipelined confirms to a quorum
// queue, and a consumer with manual acks and a prefetch that writes one
// Redis key per message before it acks. Its consumer runs as many handlers
// at once as a warren worker of the sys pool does.
const (
	baselineHandlers = 32
	confirmWindow    = 1000
	bodySize         = 220 // about a sys.echo job message
)

func serverVersions(ctx context.Context, o options) (rabbit, rdsVersion string) {
	rabbit, rdsVersion = "?", "?"
	if conn, err := amqp.Dial(o.amqpURL); err == nil {
		if v, ok := conn.Properties["version"].(string); ok {
			rabbit = v
		}
		_ = conn.Close()
	}
	opts, err := redis.ParseURL(o.redisURL)
	if err != nil {
		return rabbit, rdsVersion
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	if info, err := rdb.Info(ctx, "server").Result(); err == nil {
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "redis_version:"); ok {
				rdsVersion = v
			}
		}
	}
	return rabbit, rdsVersion
}

func runBaseline(ctx context.Context, o options, srv servers, cpu map[string]CPUPer10k) (Baseline, error) {
	var b Baseline
	ns := jobs.Namespace(fmt.Sprintf("bench-raw-%06d", rand.IntN(1e6)))
	defer cleanup(ns)
	conn, err := amqp.Dial(o.amqpURL)
	if err != nil {
		return b, err
	}
	defer conn.Close()
	opts, err := redis.ParseURL(o.redisURL)
	if err != nil {
		return b, err
	}
	opts.PoolSize = baselineHandlers + 4
	rdb := redis.NewClient(opts)
	defer rdb.Close()

	queue := string(ns) + ".q"
	ch, err := conn.Channel()
	if err != nil {
		return b, err
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		return b, err
	}
	_ = ch.Close()

	// Publish alone, into the empty queue.
	m := startMeter(srv)
	took, err := rawPublish(conn, queue, o.n)
	if err != nil {
		return b, fmt.Errorf("publish: %w", err)
	}
	cpu["baseline_publish"], _ = m.per10k(o.n)
	b.Publish = round(float64(o.n)/took.Seconds(), 0)
	fmt.Printf("  publish (confirmed, pipelined): %8.0f msgs/s\n", b.Publish)

	// Consume alone, what was published.
	m = startMeter(srv)
	took, _, err = rawConsume(ctx, conn, rdb, ns, queue, o.n, o.prefetch, nil)
	if err != nil {
		return b, fmt.Errorf("consume: %w", err)
	}
	cpu["baseline_consume"], _ = m.per10k(o.n)
	b.Consume = round(float64(o.n)/took.Seconds(), 0)
	fmt.Printf("  consume + Redis SET + ack:     %8.0f msgs/s\n", b.Consume)

	// Both at once: from the first publish to the last SET.
	consumed := make(chan struct {
		took time.Duration
		lat  []time.Duration
		err  error
	}, 1)
	ready := make(chan struct{})
	go func() {
		took, lat, err := rawConsume(ctx, conn, rdb, ns, queue, o.n, o.prefetch, ready)
		consumed <- struct {
			took time.Duration
			lat  []time.Duration
			err  error
		}{took, lat, err}
	}()
	<-ready
	m = startMeter(srv)
	start := time.Now()
	if _, err := rawPublish(conn, queue, o.n); err != nil {
		return b, fmt.Errorf("end to end: %w", err)
	}
	c := <-consumed
	if c.err != nil {
		return b, fmt.Errorf("end to end: %w", c.err)
	}
	b.E2E = round(float64(o.n)/time.Since(start).Seconds(), 0)
	cpu["baseline_e2e"], _ = m.per10k(o.n)
	b.Latency = latencies(c.lat)
	fmt.Printf("  end to end:                    %8.0f msgs/s  (latency p50 %.1f ms, p99 %.1f ms)\n",
		b.E2E, b.Latency.P50, b.Latency.P99)
	return b, nil
}

// rawPublish publishes n persistent messages, keeping up to confirmWindow
// unconfirmed, and returns once all are confirmed. Each body starts with
// its publish time, for the consumer's latency.
func rawPublish(conn *amqp.Connection, queue string, n int) (time.Duration, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return 0, err
	}
	start := time.Now()
	pending := make([]*amqp.DeferredConfirmation, 0, confirmWindow)
	settle := func(dc *amqp.DeferredConfirmation) error {
		if !dc.Wait() {
			return fmt.Errorf("message %d nacked", dc.DeliveryTag)
		}
		return nil
	}
	for i := range n {
		body := make([]byte, bodySize)
		binary.BigEndian.PutUint64(body, uint64(time.Now().UnixNano()))
		dc, err := ch.PublishWithDeferredConfirm("", queue, false, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent,
			ContentType:  "application/json",
			MessageId:    fmt.Sprintf("m%d", i),
			Body:         body,
		})
		if err != nil {
			return 0, err
		}
		pending = append(pending, dc)
		if len(pending) == confirmWindow {
			// Settle the older half, so the window stays full.
			for _, dc := range pending[:confirmWindow/2] {
				if err := settle(dc); err != nil {
					return 0, err
				}
			}
			pending = append(pending[:0], pending[confirmWindow/2:]...)
		}
	}
	for _, dc := range pending {
		if err := settle(dc); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// rawConsume takes n messages with baselineHandlers handlers, each writing
// one Redis key per message and then acking it. It closes ready (if given)
// once it consumes. It returns the time from the first delivery to the
// last ack, and each message's latency from its publish.
func rawConsume(ctx context.Context, conn *amqp.Connection, rdb *redis.Client, ns jobs.Namespace, queue string, n, prefetch int, ready chan struct{}) (time.Duration, []time.Duration, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, nil, err
	}
	defer ch.Close()
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return 0, nil, err
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return 0, nil, err
	}
	if ready != nil {
		close(ready)
	}
	var (
		done    atomic.Int64
		first   atomic.Int64
		mu      sync.Mutex
		lat     = make([]time.Duration, 0, n)
		errOnce sync.Once
		failed  error
		all     = make(chan struct{})
		wg      sync.WaitGroup
	)
	fail := func(err error) { errOnce.Do(func() { failed = err; close(all) }) }
	for range baselineHandlers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-all:
					return
				case d, ok := <-deliveries:
					if !ok {
						return
					}
					first.CompareAndSwap(0, time.Now().UnixNano())
					if err := rdb.Set(ctx, string(ns)+":r:"+d.MessageId, d.Body, time.Hour).Err(); err != nil {
						fail(err)
						return
					}
					if err := d.Ack(false); err != nil {
						fail(err)
						return
					}
					if len(d.Body) >= 8 {
						sent := time.Unix(0, int64(binary.BigEndian.Uint64(d.Body)))
						mu.Lock()
						lat = append(lat, time.Since(sent))
						mu.Unlock()
					}
					if done.Add(1) == int64(n) {
						errOnce.Do(func() { close(all) })
					}
				}
			}
		}()
	}
	select {
	case <-all:
	case <-ctx.Done():
		fail(ctx.Err())
	}
	end := time.Now()
	_ = ch.Close() // stops the deliveries; unacked ones go back
	wg.Wait()
	if failed != nil {
		return 0, nil, failed
	}
	return end.Sub(time.Unix(0, first.Load())), lat, nil
}

func cleanup(ns jobs.Namespace) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := testenv.Remove(ctx, ns); err != nil {
		fmt.Printf("cleanup of %s: %v\n", ns, err)
	}
}
