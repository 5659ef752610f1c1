package producer_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/workers/sys"
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

// declared is a producer over a namespace where sys.echo and sys.sleep are
// declared and bound.
func declared(t *testing.T) (*testenv.Env, *producer.Producer) {
	t.Helper()
	env := testenv.New(t)
	ctx := context.Background()
	if err := env.Broker.DeclarePool(ctx, sys.Pool, []string{"sys.echo", "sys.sleep"}); err != nil {
		t.Fatal(err)
	}
	if err := env.Store.DeclareTypes(ctx, []jobs.Type{sys.Echo.WithDefaults(), sys.Sleep.WithDefaults()}); err != nil {
		t.Fatal(err)
	}
	return env, producer.New(producer.Config{Logger: env.Log, MaxDelay: time.Hour}, env.Broker, env.Store)
}

func TestSubmitInProcess(t *testing.T) {
	t.Parallel()
	env, p := declared(t)
	ctx := context.Background()
	res, err := p.Submit(ctx, producer.Request{Type: "sys.sleep", Payload: json.RawMessage(`{"ms":5}`),
		MaxAttempts: 2, Metadata: map[string]string{"team": "go"}, Delay: time.Minute, SubmittedBy: "billing"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := env.Store.Get(ctx, res.Job.ID)
	if err != nil || got.Status != jobs.StatusScheduled || got.MaxAttempts != 2 || got.Metadata["team"] != "go" ||
		got.SubmittedBy != "billing" || got.Pool != sys.Pool || got.ScheduledAt == nil {
		t.Fatalf("recorded %+v, %v", got, err)
	}
	if _, err := p.Submit(ctx, producer.Request{Type: "sys.echo"}); err != nil {
		t.Errorf("a job with no payload: %v", err)
	}
	if n := env.Messages(t, sys.Pool); n != 1 {
		t.Errorf("%d messages ready in sys, want 1 (the other is delayed)", n)
	}
}

func TestSubmitRefusesWhatAWorkerWouldNot(t *testing.T) {
	t.Parallel()
	env, p := declared(t)
	ctx := context.Background()
	tests := []struct {
		name        string
		req         producer.Request
		code, field string
	}{
		{"no type", producer.Request{}, "missing_field", "type"},
		{"bad type name", producer.Request{Type: "Sys Echo"}, "invalid_field", "type"},
		{"unknown type", producer.Request{Type: "sys.nothing"}, "unknown_type", "type"},
		{"payload not an object", producer.Request{Type: "sys.echo", Payload: json.RawMessage(`[1]`)}, "invalid_field", "payload"},
		{"payload not JSON", producer.Request{Type: "sys.echo", Payload: json.RawMessage(`{"a":`)}, "invalid_field", "payload"},
		{"payload not UTF-8", producer.Request{Type: "sys.echo", Payload: json.RawMessage("{\"a\":\"\xff\"}")}, "invalid_encoding", "payload"},
		{"payload against the schema", producer.Request{Type: "sys.sleep", Payload: json.RawMessage(`{"ms":"long"}`)}, "invalid_payload", "payload.ms"},
		{"too many attempts", producer.Request{Type: "sys.echo", MaxAttempts: 1000}, "invalid_field", "max_attempts"},
		{"timeout under 1s", producer.Request{Type: "sys.echo", Timeout: time.Millisecond}, "invalid_field", "timeout"},
		{"delay over the most", producer.Request{Type: "sys.echo", Delay: 2 * time.Hour}, "invalid_field", "delay"},
		{"delay and run_at", producer.Request{Type: "sys.echo", Delay: time.Second, RunAt: time.Now()}, "invalid_field", "run_at"},
		{"long key", producer.Request{Type: "sys.echo", IdempotencyKey: strings.Repeat("k", 256)}, "invalid_field", "idempotency_key"},
		{"empty metadata key", producer.Request{Type: "sys.echo", Metadata: map[string]string{"": "v"}}, "invalid_field", "metadata."},
	}
	for _, tt := range tests {
		_, err := p.Submit(ctx, tt.req)
		var pe *producer.Error
		if !errors.As(err, &pe) || pe.Code != tt.code || pe.Field != tt.field {
			t.Errorf("%s: %v, want %s on %s", tt.name, err, tt.code, tt.field)
		}
	}
	if keys := env.JobKeys(t); len(keys) != 0 {
		t.Errorf("refused requests left records: %v", keys)
	}

	// In a batch a refusal stops nothing else.
	res, err := p.SubmitMany(ctx, []producer.Request{{Type: "sys.echo"}, {Type: "sys.nothing"}, {Type: "sys.echo"}})
	if err != nil || res[0].Err != nil || res[2].Err != nil || res[1].Err == nil || res[1].Job != nil {
		t.Fatalf("batch: %+v, %v", res, err)
	}
	if n := env.Messages(t, sys.Pool); n != 2 {
		t.Errorf("%d messages after the batch, want 2", n)
	}
}

// A pool declared by workers older than priorities has no high lane: a new
// API's high-priority job is not refused during the upgrade but runs in the
// normal lane, its body keeping the priority; a type with no queue at all
// is still refused.
func TestAcceptHighPriorityWithoutAHighLane(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	if err := env.Broker.DeclarePool(ctx, "sys", []string{"sys.echo"}); err != nil {
		t.Fatal(err)
	}
	ch := testenv.Channel(t)
	if _, err := ch.QueueDelete(env.NS.HighQueue("sys"), false, false, false); err != nil {
		t.Fatal(err)
	}
	p := producer.New(producer.Config{Logger: env.Log}, env.Broker, env.Store)
	high, normal, ghost := newJob("sys.echo", "sys", ""), newJob("sys.echo", "sys", ""), newJob("ghost.thing", "ghost", "")
	high.Priority, ghost.Priority = 9, 9
	res, err := p.Accept(ctx, []*jobs.Job{high, normal, ghost}, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if res[i].Err != nil || res[i].Job == nil {
			t.Errorf("job %d: %+v, want accepted", i, res[i])
		}
	}
	if !errors.Is(res[2].Err, producer.ErrNoRoute) {
		t.Errorf("a high job nobody would take: %v, want ErrNoRoute", res[2].Err)
	}
	if _, err := env.Store.Get(ctx, ghost.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused job kept a record: %v", err)
	}
	q, err := ch.QueueDeclarePassive(env.NS.Queue("sys"), true, false, false, false, nil)
	if err != nil || q.Messages != 2 {
		t.Fatalf("normal lane: %+v, %v; want both jobs", q, err)
	}
	priorities := map[string]int{}
	for range 2 {
		d, ok, err := ch.Get(q.Name, true)
		if err != nil || !ok {
			t.Fatalf("get: %v, %v", ok, err)
		}
		var b struct {
			ID       string `json:"id"`
			Priority int    `json:"priority"`
		}
		if err := json.Unmarshal(d.Body, &b); err != nil {
			t.Fatal(err)
		}
		priorities[b.ID] = b.Priority
	}
	if priorities[high.ID] != 9 || priorities[normal.ID] != 0 {
		t.Errorf("priorities in the bodies: %v, want %s: 9 and %s: 0", priorities, high.ID, normal.ID)
	}
	// Once a worker of this version declares the pool, high jobs take the high lane.
	if err := env.Broker.DeclarePool(ctx, "sys", []string{"sys.echo"}); err != nil {
		t.Fatal(err)
	}
	later := newJob("sys.echo", "sys", "")
	later.Priority = 7
	if res, err := p.Accept(ctx, []*jobs.Job{later}, ""); err != nil || res[0].Err != nil {
		t.Fatalf("after the lane's declaration: %+v, %v", res, err)
	}
	if q, err := ch.QueueDeclarePassive(env.NS.HighQueue("sys"), true, false, false, false, nil); err != nil || q.Messages != 1 {
		t.Errorf("high lane after its declaration: %+v, %v; want the later job", q, err)
	}
}
