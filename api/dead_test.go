package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
)

// The dead-letter calls answer 503 unavailable when RabbitMQ goes away: a
// replay whose connection is closed under it at once (it answered 500
// internal before), and every call made while the node is away once it
// has waited 10 seconds for it.
func TestDeadLettersWhileRabbitMQIsAway(t *testing.T) {
	t.Parallel()
	env := testenv.New(t) // the namespace and Redis
	rmq := testenv.StartRabbitMQ(t)
	ctx := context.Background()
	b, err := queue.New(queue.Config{URL: rmq.URL(), Namespace: env.NS, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop(context.Background()) })
	if err := b.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclarePool(ctx, "sys", []string{"sys.echo"}); err != nil {
		t.Fatal(err)
	}
	const n = 300
	msgs := make([]queue.Message, n)
	for i := range msgs {
		j := &jobs.Job{ID: jobs.NewID(), Type: "sys.echo", Pool: "sys", Status: jobs.StatusFailed,
			Payload: []byte(fmt.Sprintf(`{"i":%d}`, i)), MaxAttempts: 1, CreatedAt: time.Now()}
		m, err := queue.NewMessage(j, "")
		if err != nil {
			t.Fatal(err)
		}
		m.DeadLetterOf("sys", "handler", "failed for the test", time.Now())
		msgs[i] = m
	}
	if errs, err := b.Publish(ctx, msgs); err != nil || errs[0] != nil {
		t.Fatalf("publish dead letters: %v %v", err, errs[0])
	}
	url := start(t, api.Config{}, b, env.Store)

	// A replay of an id no dead letter has takes every dead letter and
	// looks for it again for 2 seconds, holding them: the node stops
	// while it does.
	replayed := make(chan response, 1)
	go func() {
		replayed <- do(t, "POST", url+"/v1/dead/replay", nil, `{"pool":"sys","ids":["0190c5a0-7b1e-7cc3-8f0e-2d1b6c3c9f10"]}`)
	}()
	testenv.Eventually(t, 10*time.Second, "the replay to hold every dead letter", func() bool {
		q, err := b.InspectDead(ctx, "sys")
		if err != nil {
			t.Fatal(err)
		}
		return q.Messages == 0 // ready ones: those the replay holds are not
	})
	rmq.Stop(t)
	if r := <-replayed; r.status != 503 || r.apiError(t).Code != "unavailable" || r.header.Get("Retry-After") == "" {
		t.Errorf("replay cut short by the node's stop: %d %s, want 503 unavailable with Retry-After", r.status, r.body)
	}

	// While the node is away each call waits 10 seconds for it, then
	// answers 503.
	type call struct{ method, path, body string }
	calls := []call{
		{"GET", "/v1/dead?pool=sys", ""},
		{"POST", "/v1/dead/replay", `{"pool":"sys","all":true}`},
		{"DELETE", "/v1/dead?pool=sys", ""},
	}
	answers := make(chan string, len(calls))
	for _, c := range calls {
		go func() {
			began := time.Now()
			r := do(t, c.method, url+c.path, nil, c.body)
			took := time.Since(began)
			if r.status != 503 || errorCode(r) != "unavailable" || took < 9*time.Second {
				answers <- fmt.Sprintf("%s %s while the node is away: %d %s after %s, want 503 unavailable after 10s", c.method, c.path, r.status, r.body, took.Round(time.Millisecond))
				return
			}
			answers <- ""
		}()
	}
	for range calls {
		if a := <-answers; a != "" {
			t.Error(a)
		}
	}
}

// errorCode is the code of an error response, or "" (apiError for other
// goroutines than the test's).
func errorCode(r response) string {
	var e struct{ Error *apiError }
	if json.Unmarshal(r.body, &e) != nil || e.Error == nil {
		return ""
	}
	return e.Error.Code
}
