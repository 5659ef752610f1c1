package cli

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/warrenhq/warren/config"
	"github.com/warrenhq/warren/internal/redact"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// openStore opens the store of namespace ns with the settings' Redis: the
// one translation of redis_url, redis_tls.*, redis.* and store.* into a
// store.Config, for every command that reaches Redis. It refuses a Redis
// it must not use (a Redis Cluster node) when the server answers; one
// that does not answer yet is left to the store's retries, as a server
// command starts without RabbitMQ too.
func openStore(ctx context.Context, cfg config.Config, ns jobs.Namespace, log *slog.Logger) (*store.Store, error) {
	tlsConfig, err := cfg.RedisTLSConfig()
	if err != nil {
		return nil, err
	}
	addrs := make([]string, 0, len(cfg.Redis.Sentinel.Addrs))
	for _, a := range cfg.Redis.Sentinel.Addrs {
		addrs = append(addrs, strings.TrimSpace(a))
	}
	st, err := store.New(store.Config{
		URL: cfg.RedisURL,
		TLS: tlsConfig,
		Sentinel: store.Sentinel{
			Addrs:    addrs,
			Master:   cfg.Redis.Sentinel.Master,
			Password: cfg.Redis.Sentinel.Password,
		},
		WaitReplicas:      cfg.Redis.WaitReplicas,
		WaitTimeout:       cfg.Redis.WaitTimeout.Std(),
		Namespace:         ns,
		Retention:         cfg.Store.Retention.Std(),
		IdempotencyWindow: cfg.Store.IdempotencyWindow.Std(),
		Logger:            log,
	})
	if err != nil {
		return nil, err
	}
	check, cancel := context.WithTimeout(ctx, firstConnectWait)
	defer cancel()
	switch err := st.CheckServer(check); {
	case errors.Is(err, store.ErrCluster):
		_ = st.Close()
		return nil, err
	case err != nil:
		log.Warn("Redis is not reachable yet; starting anyway and retrying", "url", redact.URL(cfg.RedisURL), "err", err)
	}
	return st, nil
}
