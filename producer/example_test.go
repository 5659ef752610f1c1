package producer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/warrenhq/warren/config"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
)

// A Go program enqueues in-process, with the API's checks and guarantee:
// the job is accepted only once Redis holds it and RabbitMQ confirmed it.
// docs/workers.md shows the same lines.
func Example() {
	ctx := context.Background()
	cfg, err := config.Load("", nil) // warren.yaml and WARREN_* as every warren process reads them
	if err != nil {
		log.Fatal(err)
	}
	broker, err := queue.New(queue.Config{URL: cfg.AMQPURL, Namespace: cfg.Namespace})
	if err != nil {
		log.Fatal(err)
	}
	st, err := store.New(store.Config{URL: cfg.RedisURL, Namespace: cfg.Namespace})
	if err != nil {
		log.Fatal(err)
	}
	if err := broker.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer broker.Stop(context.Background())
	if err := broker.WaitConnected(ctx); err != nil {
		log.Fatal(err)
	}

	// readme:begin
	p := producer.New(producer.Config{}, broker, st)
	res, err := p.Submit(ctx, producer.Request{
		Type:           "sys.echo",
		Payload:        json.RawMessage(`{"order":42}`),
		IdempotencyKey: "order-42", // a repeat answers with the first job
		Delay:          time.Minute,
	})
	var refused *producer.Error
	switch {
	case errors.As(err, &refused): // the request itself is wrong: fix it
		log.Fatalf("%s: %s", refused.Field, refused.Message)
	case err != nil: // RabbitMQ or Redis away: nothing was kept, try again
		log.Fatal(err)
	}
	fmt.Println(res.Job.ID, res.Job.Status, res.Existing)
	// readme:end
}
