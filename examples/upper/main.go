// Command upper is a complete worker service in one file: it declares the
// type text.upper in its own pool, "text-upper", and runs it with the same
// settings as warren itself (warren.yaml, WARREN_* variables, TLS).
// docs/workers.md explains it.
package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/warrenhq/warren/config"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/workers"
)

// Upper is the type this service handles.
var Upper = jobs.Type{
	Name: "text.upper", Pool: "text-upper",
	Timeout: jobs.Duration(10 * time.Second),
	Schema: json.RawMessage(`{"type":"object","required":["text"],
		"properties":{"text":{"type":"string","maxLength":100000}},"additionalProperties":false}`),
	Description: "Returns the text in upper case.",
}

// UpperPayload is the payload of text.upper.
type UpperPayload struct {
	Text string `json:"text"`
}

// upper handles text.upper, through jobs.Typed: the payload comes decoded,
// and one that does not decode fails the job for good (bad_payload).
func upper(ctx context.Context, _ *jobs.Job, p UpperPayload) (map[string]string, error) {
	_ = jobs.ReportProgress(ctx, 50, "shouting")
	return map[string]string{"text": strings.ToUpper(p.Text)}, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(ctx, log); err != nil {
		log.Error("upper stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	// The settings of warren's own processes: warren.yaml, then WARREN_*
	// variables (WARREN_AMQP_URL_FILE and the like for secrets), and TLS
	// for amqps:// and rediss:// URLs (amqp_tls, redis_tls).
	cfg, err := config.Load("", os.Environ())
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	amqpTLS, err := cfg.AMQPTLSConfig()
	if err != nil {
		return err
	}
	redisTLS, err := cfg.RedisTLSConfig()
	if err != nil {
		return err
	}
	broker, err := queue.New(queue.Config{URL: cfg.AMQPURL, TLS: amqpTLS, Namespace: cfg.Namespace, Logger: log, Name: "upper", QuorumGroupSize: cfg.AMQPQuorumGroupSize})
	if err != nil {
		return err
	}
	st, err := store.New(store.Config{
		URL: cfg.RedisURL, TLS: redisTLS, Namespace: cfg.Namespace, Logger: log,
		Retention: cfg.Store.Retention.Std(), IdempotencyWindow: cfg.Store.IdempotencyWindow.Std(),
		Sentinel:     store.Sentinel{Addrs: cfg.Redis.Sentinel.Addrs, Master: cfg.Redis.Sentinel.Master, Password: cfg.Redis.Sentinel.Password},
		WaitReplicas: cfg.Redis.WaitReplicas, WaitTimeout: cfg.Redis.WaitTimeout.Std(),
	})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := broker.Start(ctx); err != nil {
		return err
	}
	defer broker.Stop(context.Background())

	w := workers.New(workers.Config{
		Logger:        log,
		Pools:         map[string]workers.PoolConfig{"text-upper": {Concurrency: 8}},
		ShutdownGrace: cfg.Worker.ShutdownGrace.Std(),
	}, broker, st)
	if err := w.Handle(Upper, jobs.Typed(upper)); err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	// Stop taking jobs, let running ones finish (worker.shutdown_grace, 30s
	// by default), requeue the rest.
	return w.Stop(context.Background())
}
