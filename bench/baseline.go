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

// raw is the baseline's own namespace: a quorum queue, a connection to
// the broker and a Redis client.
type raw struct {
	ns    jobs.Namespace
	queue string
	conn  *amqp.Connection
	rdb   *redis.Client
}

func newRaw(o options) (*raw, error) {
	r := &raw{ns: jobs.Namespace(fmt.Sprintf("bench-raw-%06d", rand.IntN(1e6)))}
	r.queue = string(r.ns) + ".q"
	opts, err := redis.ParseURL(o.redisURL)
	if err != nil {
		return nil, err
	}
	opts.PoolSize = baselineHandlers + 4
	r.rdb = redis.NewClient(opts)
	if r.conn, err = amqp.Dial(o.amqpURL); err != nil {
		r.close()
		return nil, err
	}
	ch, err := r.conn.Channel()
	if err != nil {
		r.close()
		return nil, err
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(r.queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *raw) close() {
	if r.conn != nil {
		_ = r.conn.Close()
	}
	_ = r.rdb.Close()
	cleanup(r.ns)
}

// consumed is what a consumer running beside a publisher reports.
type consumed struct {
	took time.Duration
	lat  []time.Duration
	err  error
}

// endToEnd publishes n messages (paced by due, if given) while a consumer
// takes them, and returns the time from the first publish to the last SET,
// each message's latency from its publish (or due time) to its SET, and
// each one's until its confirm.
func (r *raw) endToEnd(ctx context.Context, o options, n int, due func(k int) time.Time) (took time.Duration, lat, confirmed []time.Duration, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan consumed, 1)
	ready := make(chan struct{})
	go func() {
		took, lat, err := rawConsume(ctx, r.conn, r.rdb, r.ns, r.queue, n, o.prefetch, ready)
		done <- consumed{took, lat, err}
	}()
	select {
	case <-ready:
	case c := <-done: // it could not start
		return 0, nil, nil, c.err
	}
	start := time.Now()
	if _, confirmed, err = rawPublish(r.conn, r.queue, n, due); err != nil {
		cancel() // what was published is never all consumed
		<-done
		return 0, nil, nil, err
	}
	c := <-done
	return time.Since(start), c.lat, confirmed, c.err
}

func runBaseline(ctx context.Context, o options, srv servers, cpu map[string]CPUPer10k) (Baseline, error) {
	var b Baseline
	r, err := newRaw(o)
	if err != nil {
		return b, err
	}
	defer r.close()

	// Publish alone, into the empty queue.
	m := startMeter(srv)
	took, _, err := rawPublish(r.conn, r.queue, o.n, nil)
	if err != nil {
		return b, fmt.Errorf("publish: %w", err)
	}
	cpu["baseline_publish"], _ = m.per10k(o.n)
	b.Publish = round(float64(o.n)/took.Seconds(), 0)
	fmt.Printf("  publish (confirmed, pipelined): %8.0f msgs/s\n", b.Publish)

	// Consume alone, what was published.
	m = startMeter(srv)
	took, _, err = rawConsume(ctx, r.conn, r.rdb, r.ns, r.queue, o.n, o.prefetch, nil)
	if err != nil {
		return b, fmt.Errorf("consume: %w", err)
	}
	cpu["baseline_consume"], _ = m.per10k(o.n)
	b.Consume = round(float64(o.n)/took.Seconds(), 0)
	fmt.Printf("  consume + Redis SET + ack:     %8.0f msgs/s\n", b.Consume)

	// Both at once: from the first publish to the last SET.
	m = startMeter(srv)
	took, lat, _, err := r.endToEnd(ctx, o, o.n, nil)
	if err != nil {
		return b, fmt.Errorf("end to end: %w", err)
	}
	b.E2E = round(float64(o.n)/took.Seconds(), 0)
	cpu["baseline_e2e"], _ = m.per10k(o.n)
	b.Latency = latencies(lat)
	fmt.Printf("  end to end:                    %8.0f msgs/s  (latency p50 %.1f ms, p99 %.1f ms)\n",
		b.E2E, b.Latency.P50, b.Latency.P99)
	return b, nil
}

// runBaselinePaced measures the baseline's latency at each of warren's load
// levels: the raw publisher sends one message at a time at the level's
// rate, and each latency counts from when its message was due.
func runBaselinePaced(ctx context.Context, o options, srv servers, levels map[string]*LoadLevel) error {
	r, err := newRaw(o)
	if err != nil {
		return err
	}
	defer r.close()
	for _, name := range levelNames {
		l := levels[name]
		if l == nil {
			continue
		}
		before, err := readAOF(ctx, r.rdb)
		if err != nil {
			return err
		}
		m, start := startMeter(srv), time.Now()
		_, lat, confirmed, err := r.endToEnd(ctx, o, l.Jobs, paced(l.Rate))
		if err != nil {
			return fmt.Errorf("%s%% load: %w", name, err)
		}
		used, _ := m.per10k(l.Jobs)
		l.BaselineBusy = busy(used.Total(), l.Jobs, time.Since(start))
		after, err := readAOF(ctx, r.rdb)
		if err != nil {
			return err
		}
		l.BaselineAOF = after.since(before, l.Jobs)
		l.Baseline, l.BaselineConfirmed = latencies(lat), latencies(confirmed)
		fmt.Printf("  %s%% load (%.0f msgs/s): latency p50 %.1f ms, p99 %.1f ms (confirmed: p50 %.1f, p99 %.1f; CPU busy %.0f%%; Redis AOF rewrites %d)\n",
			name, l.Rate, l.Baseline.P50, l.Baseline.P99, l.BaselineConfirmed.P50, l.BaselineConfirmed.P99, 100*l.BaselineBusy, l.BaselineAOF.Rewrites)
	}
	return nil
}

// rawPublish publishes n persistent messages, keeping up to confirmWindow
// unconfirmed, and returns once all are confirmed, with each one's time
// from its publish until its confirm. Each body starts with its publish
// time, for the consumer's latency. due, if not nil, paces them as
// submitSingle does: message k is sent at due(k), and its latencies count
// from then, even if the publisher was late.
func rawPublish(conn *amqp.Connection, queue string, n int, due func(k int) time.Time) (time.Duration, []time.Duration, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, nil, err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return 0, nil, err
	}
	type sent struct {
		dc *amqp.DeferredConfirmation
		at time.Time
	}
	// The window: the publisher blocks while confirmWindow messages wait
	// for their confirms, which one goroutine settles in order.
	window := make(chan sent, confirmWindow)
	confirmed := make([]time.Duration, 0, n)
	var nacked error
	settled := make(chan struct{})
	go func() {
		defer close(settled)
		for s := range window {
			if !s.dc.Wait() && nacked == nil {
				nacked = fmt.Errorf("message %d nacked", s.dc.DeliveryTag)
			}
			confirmed = append(confirmed, time.Since(s.at))
		}
	}()
	start := time.Now()
	for i := range n {
		at := time.Now()
		if due != nil {
			at = due(i)
			if wait := time.Until(at); wait > 0 {
				time.Sleep(wait)
			}
		}
		body := make([]byte, bodySize)
		binary.BigEndian.PutUint64(body, uint64(at.UnixNano()))
		dc, err := ch.PublishWithDeferredConfirm("", queue, false, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent,
			ContentType:  "application/json",
			MessageId:    fmt.Sprintf("m%d", i),
			Body:         body,
		})
		if err != nil {
			close(window)
			<-settled
			return 0, nil, err
		}
		window <- sent{dc, at}
	}
	close(window)
	<-settled
	return time.Since(start), confirmed, nacked
}

// rawConsume takes n messages with baselineHandlers handlers, each writing
// one Redis key per message and then acking it. It closes ready (if given)
// once it consumes. It returns the time from the first delivery to the
// last ack, and each message's latency from its publish (the time its body
// starts with) to its Redis write.
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
					stored := time.Now()
					if err := d.Ack(false); err != nil {
						fail(err)
						return
					}
					if len(d.Body) >= 8 {
						sent := time.Unix(0, int64(binary.BigEndian.Uint64(d.Body)))
						mu.Lock()
						lat = append(lat, stored.Sub(sent))
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
