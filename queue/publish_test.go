package queue_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
)

// received is what a consumer saw of one message.
type received struct {
	Job         *jobs.Job
	MessageID   string
	MaxAttempts string
	TimeoutMS   string
	TraceParent string
	Redelivered bool
	Count       int
}

func TestPublishConsumeRoundTrip(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const pool = "rt"
	declarePool(t, env.Broker, pool, "rt.alpha", "rt.beta")

	const n = 20
	var msgs []queue.Message
	want := map[string]received{}
	for i := range n {
		j := newJob([]string{"rt.alpha", "rt.beta"}[i%2], i)
		tp := ""
		if i%3 == 0 {
			tp = fmt.Sprintf("00-%032x-%016x-01", i+1, i+1)
		}
		msgs = append(msgs, message(t, j, tp))
		want[j.ID] = received{
			Job: j, MessageID: j.ID,
			MaxAttempts: fmt.Sprint(j.MaxAttempts),
			TimeoutMS:   fmt.Sprint(j.Timeout.Std().Milliseconds()),
			TraceParent: tp,
		}
	}
	errs, err := env.Broker.Publish(context.Background(), msgs)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if diff := cmp.Diff(make([]error, n), errs, cmp.Comparer(func(a, b error) bool { return errors.Is(a, b) })); diff != "" {
		t.Fatalf("Publish errors (-want +got):\n%s", diff)
	}

	got := make(chan received, n)
	consume(t, env.Broker, queue.ConsumeOptions{Pool: pool, Concurrency: 4}, func(d queue.Delivery) {
		j, err := queue.DecodeJob(d.Body())
		if err != nil {
			t.Errorf("DecodeJob(%s): %v", d.Body(), err)
		}
		got <- received{
			Job: j, MessageID: d.MessageID(),
			MaxAttempts: queue.DeliveryHeader(d, "x-warren-max-attempts"),
			TimeoutMS:   queue.DeliveryHeader(d, "x-warren-timeout-ms"),
			TraceParent: d.TraceParent(),
			Redelivered: d.Redelivered(),
			Count:       d.DeliveryCount(),
		}
		if err := d.Ack(); err != nil {
			t.Errorf("Ack: %v", err)
		}
	})
	all := map[string]received{}
	for range n {
		r := recv(t, got, "a delivery")
		if _, dup := all[r.MessageID]; dup {
			t.Errorf("message %s delivered twice", r.MessageID)
		}
		all[r.MessageID] = r
	}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("consumed (-published +consumed):\n%s", diff)
	}
	ready(t, env, pool, 0)
}

func TestPublishedMessageProperties(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const pool = "props"
	declarePool(t, env.Broker, pool, "props.check")
	j := newJob("props.check", 4)
	j.CreatedAt = time.Date(2026, 11, 25, 20, 57, 43, 363_000_000, time.UTC)
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	publishAll(t, env.Broker, []queue.Message{message(t, j, tp)})

	// queue.Delivery has no accessors for the AMQP properties, so read the
	// message with a client of our own.
	ch := rawChannel(t)
	var d amqp.Delivery
	testenv.Eventually(t, wait, "the published message", func() bool {
		var ok bool
		var err error
		d, ok, err = ch.Get(env.NS.Queue(pool), true)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	})
	type props struct {
		ContentType  string
		DeliveryMode uint8
		MessageID    string
		Type         string
		Timestamp    time.Time
		Headers      amqp.Table
	}
	want := props{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageID:    j.ID,
		Type:         "props.check",
		Timestamp:    time.Date(2026, 11, 25, 20, 57, 43, 0, time.UTC),
		Headers: amqp.Table{
			"x-warren-attempts":     int32(0),
			"x-warren-max-attempts": int32(j.MaxAttempts),
			"x-warren-timeout-ms":   int64(7500),
			"traceparent":           tp,
		},
	}
	// RabbitMQ's quorum queue adds its own count; the rest is ours.
	delete(d.Headers, "x-delivery-count")
	got := props{d.ContentType, d.DeliveryMode, d.MessageId, d.Type, d.Timestamp.UTC(), d.Headers}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("message properties (-want +got):\n%s", diff)
	}
	wantBody := fmt.Sprintf(`{"id":%q,"type":"props.check","payload":{"n":4},"max_attempts":5,"timeout_ms":7500,"metadata":{"n":"4","team":"queue"},"created_at":"2026-11-25T20:57:43.363Z"}`, j.ID)
	if string(d.Body) != wantBody {
		t.Errorf("body\n got %s\nwant %s", d.Body, wantBody)
	}
	if d.Exchange != env.NS.Exchange() || d.RoutingKey != "props.check" {
		t.Errorf("published to %q with key %q, want %q with key props.check", d.Exchange, d.RoutingKey, env.NS.Exchange())
	}
}

func TestPublishUnroutable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		publishers int
		batch      int
	}{
		{name: "one mixed batch", publishers: 1, batch: 200},
		{name: "concurrent mixed batches", publishers: 8, batch: 50},
		{name: "many small batches", publishers: 4, batch: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := testenv.New(t)
			const pool = "routed"
			declarePool(t, env.Broker, pool, "routed.job")

			var (
				mu     sync.Mutex
				wantOK []string
				wg     sync.WaitGroup
			)
			batches := make([][]queue.Message, tt.publishers)
			for p := range batches {
				for i := range tt.batch {
					typ := "routed.job"
					if i%2 == 1 {
						typ = "nobody.listens" // no queue is bound for this
					}
					batches[p] = append(batches[p], message(t, newJob(typ, p*tt.batch+i), ""))
				}
			}
			for p, msgs := range batches {
				wg.Go(func() {
					errs, err := env.Broker.Publish(context.Background(), msgs)
					if err != nil {
						t.Errorf("publisher %d: Publish: %v", p, err)
						return
					}
					for i, err := range errs {
						switch {
						case i%2 == 0 && err != nil:
							t.Errorf("publisher %d: routable message %d: %v", p, i, err)
						case i%2 == 1 && !errors.Is(err, queue.ErrUnroutable):
							t.Errorf("publisher %d: unroutable message %d: %v, want ErrUnroutable", p, i, err)
						}
					}
					mu.Lock()
					for i, m := range msgs {
						if i%2 == 0 {
							wantOK = append(wantOK, m.ID)
						}
					}
					mu.Unlock()
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			slices.Sort(wantOK)
			ready(t, env, pool, len(wantOK))
			if diff := cmp.Diff(wantOK, drain(t, env.NS, pool)); diff != "" {
				t.Errorf("queued message ids (-routable +queued):\n%s", diff)
			}
		})
	}
}

func TestPublishAllUnroutable(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	var msgs []queue.Message
	for i := range 10 {
		msgs = append(msgs, message(t, newJob("nobody.listens", i), ""))
	}
	for i, err := range publish(t, env.Broker, msgs) {
		if !errors.Is(err, queue.ErrUnroutable) {
			t.Errorf("message %d: %v, want ErrUnroutable", i, err)
		}
	}
	// The publisher is still good for routable messages afterwards.
	declarePool(t, env.Broker, "late", "late.job")
	publishAll(t, env.Broker, []queue.Message{message(t, newJob("late.job", 1), "")})
	ready(t, env, "late", 1)
}

func TestPublishEmpty(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	errs, err := env.Broker.Publish(context.Background(), nil)
	if err != nil || len(errs) != 0 {
		t.Errorf("Publish(nil) = %v, %v; want no errors", errs, err)
	}
}

func TestPublishConcurrent(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const pool = "busy"
	declarePool(t, env.Broker, pool, "busy.job")
	const publishers, each = 8, 250
	var wg sync.WaitGroup
	var confirmed atomic.Int64
	batches := make([][]queue.Message, publishers)
	for p := range batches {
		for i := range each {
			batches[p] = append(batches[p], message(t, newJob("busy.job", p*each+i), ""))
		}
	}
	for p, msgs := range batches {
		wg.Go(func() {
			errs, err := env.Broker.Publish(context.Background(), msgs)
			if err != nil {
				t.Errorf("publisher %d: %v", p, err)
				return
			}
			for i, err := range errs {
				if err != nil {
					t.Errorf("publisher %d message %d: %v", p, i, err)
					continue
				}
				confirmed.Add(1)
			}
		})
	}
	wg.Wait()
	if got := confirmed.Load(); got != publishers*each {
		t.Fatalf("%d messages confirmed, want %d", got, publishers*each)
	}
	ready(t, env, pool, publishers*each)
}

func TestPublishUnavailable(t *testing.T) {
	t.Parallel()
	testenv.RequireServices(t)
	// Port 1 on loopback: nothing listens, so the broker never connects.
	b, err := queue.New(queue.Config{
		URL:       "amqp://guest:guest@127.0.0.1:1/",
		Namespace: testenv.Namespace(t),
		Logger:    testenv.Logger(t),
		Name:      "test-unavailable",
	})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []queue.Message{message(t, newJob("a.b", 1), ""), message(t, newJob("a.b", 2), "")}

	// Before Start, and after: ErrUnavailable at once.
	for _, started := range []bool{false, true} {
		if started {
			if err := b.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		errs, err := b.Publish(context.Background(), msgs)
		if !errors.Is(err, queue.ErrUnavailable) {
			t.Errorf("started %v: Publish = %v, want ErrUnavailable", started, err)
		}
		if errs != nil {
			t.Errorf("started %v: Publish gave per-message errors %v, want none", started, errs)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("started %v: Publish took %s, want at once", started, d)
		}
		if b.Connected() {
			t.Errorf("started %v: Connected() = true", started)
		}
	}

	// Calls that wait for a connection give up with ctx, as ErrUnavailable.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := b.DeclarePool(ctx, "p", []string{"a.b"}); !errors.Is(err, queue.ErrUnavailable) {
		t.Errorf("DeclarePool = %v, want ErrUnavailable", err)
	}
	if _, err := b.InspectPool(ctx, "p"); !errors.Is(err, queue.ErrUnavailable) {
		t.Errorf("InspectPool = %v, want ErrUnavailable", err)
	}

	stopCtx, stopCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer stopCancel()
	if err := b.Stop(stopCtx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if err := b.Stop(stopCtx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// A channel-level error on the publishing channel (here: the exchange was
// deleted under the broker, so the publish draws 404 NOT_FOUND and the broker
// closes the channel) must not end publishing for good while the connection
// lives: once the exchange is back, Publish works again.
func TestPublishRecoversFromChannelError(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const pool = "gone"
	declarePool(t, env.Broker, pool, "gone.job")
	publishAll(t, env.Broker, []queue.Message{message(t, newJob("gone.job", 1), "")})

	if err := rawChannel(t).ExchangeDelete(env.NS.Exchange(), false, false); err != nil {
		t.Fatal(err)
	}
	errs, err := env.Broker.Publish(context.Background(), []queue.Message{message(t, newJob("gone.job", 2), "")})
	if err == nil && errs[0] == nil {
		t.Fatal("Publish to a deleted exchange succeeded")
	}
	t.Logf("Publish to the deleted exchange: %v %v", errs, err)

	// Declaring the pool declares the exchange again.
	declarePool(t, env.Broker, pool, "gone.job")
	var last error
	const patience = 10 * time.Second
	deadline := time.Now().Add(patience)
	for {
		errs, err := env.Broker.Publish(context.Background(), []queue.Message{message(t, newJob("gone.job", 3), "")})
		last = errors.Join(err, errors.Join(errs...))
		if last == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Publish still fails %s after the exchange came back (Connected() = %v): %v", patience, env.Broker.Connected(), last)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ready(t, env, pool, 2)
}

// Concurrent calls of one message each are written together (see
// publisher.send); each call still gets its own outcome: a call whose type
// has no binding gets ErrUnroutable, its neighbours in the same write do
// not, and exactly the routable messages reach the queue.
func TestPublishConcurrentSingles(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	const pool = "singles"
	declarePool(t, env.Broker, pool, "singles.job")
	const callers, each = 32, 40
	var (
		wg                    sync.WaitGroup
		confirmed, unroutable atomic.Int64
	)
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				typ := "singles.job"
				if (c*each+i)%7 == 0 {
					typ = "singles.unbound"
				}
				errs, err := env.Broker.Publish(context.Background(), []queue.Message{message(t, newJob(typ, i), "")})
				if err != nil {
					t.Errorf("caller %d: %v", c, err)
					return
				}
				switch {
				case typ == "singles.unbound" && errors.Is(errs[0], queue.ErrUnroutable):
					unroutable.Add(1)
				case typ == "singles.job" && errs[0] == nil:
					confirmed.Add(1)
				default:
					t.Errorf("caller %d: a %s message: %v", c, typ, errs[0])
				}
			}
		})
	}
	wg.Wait()
	wantUnroutable := int64(0)
	for n := range callers * each {
		if n%7 == 0 {
			wantUnroutable++
		}
	}
	if got := unroutable.Load(); got != wantUnroutable {
		t.Errorf("%d calls refused as unroutable, want %d", got, wantUnroutable)
	}
	ready(t, env, pool, int(confirmed.Load()))
	if confirmed.Load() != callers*each-wantUnroutable {
		t.Errorf("%d confirmed, want %d", confirmed.Load(), callers*each-wantUnroutable)
	}
}
