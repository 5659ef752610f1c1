package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
)

// inProcess is a producer in the benchmark's own process, over the same
// broker and Redis as the API's: submission with the API's checks and
// guarantee, without HTTP.
type inProcess struct {
	p      *producer.Producer
	broker *queue.Broker
}

// newInProcess connects a producer to ns and submits one job, so that it
// knows the type as the API, which has submitted before, does.
func newInProcess(ctx context.Context, o options, ns jobs.Namespace, st *store.Store) (*inProcess, error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := queue.New(queue.Config{URL: o.amqpURL, Namespace: ns, Logger: log, Name: "bench-producer"})
	if err != nil {
		return nil, err
	}
	if err := b.Start(ctx); err != nil {
		return nil, err
	}
	ip := &inProcess{p: producer.New(producer.Config{Logger: log}, b, st), broker: b}
	if err := b.WaitConnected(ctx); err != nil {
		ip.close()
		return nil, err
	}
	if _, err := ip.p.Submit(ctx, echoRequest(-1)); err != nil {
		ip.close()
		return nil, fmt.Errorf("first job: %w", err)
	}
	return ip, nil
}

func (ip *inProcess) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = ip.broker.Stop(ctx)
}

// echoRequest is the request of one sys.echo job, as echoBody posts it.
func echoRequest(k int) producer.Request {
	return producer.Request{Type: "sys.echo", Payload: json.RawMessage(echoPayload(k))}
}

// submitMany submits n jobs with SubmitMany in batches of size from
// clients goroutines, as submitBatch posts them.
func (ip *inProcess) submitMany(ctx context.Context, n, size, clients int) (time.Duration, error) {
	var next atomic.Int64
	start := time.Now()
	err := fanOut(ctx, clients, func(ctx context.Context) error {
		reqs := make([]producer.Request, 0, size)
		for {
			from := int(next.Add(int64(size))) - size
			if from >= n {
				return nil
			}
			reqs = reqs[:0]
			for k := from; k < min(n, from+size); k++ {
				reqs = append(reqs, echoRequest(k))
			}
			res, err := ip.p.SubmitMany(ctx, reqs)
			if err != nil {
				return err
			}
			for _, r := range res {
				if r.Err != nil {
					return fmt.Errorf("job refused: %w", r.Err)
				}
			}
		}
	})
	return time.Since(start), err
}
