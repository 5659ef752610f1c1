// Package builtin lists the worker services compiled into warren: the one
// list that `warren worker`, `warren dev`, `warren autoscale` and `warren
// deploy render` read, so that a new service is added in one place.
package builtin

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/warrenhq/warren/config"
	"github.com/warrenhq/warren/egress"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/workers/image"
	"github.com/warrenhq/warren/workers/sys"
	"github.com/warrenhq/warren/workers/webhook"
)

// Service is a built-in worker service.
type Service struct {
	// Pool is the pool its types are declared in.
	Pool string
	// Concurrency is how many jobs one process runs at once unless
	// pools.POOL.concurrency says otherwise.
	Concurrency int
	// CPU and Memory are what one replica asks for on Kubernetes
	// (resource requests, as Kubernetes quantities).
	CPU, Memory string
	// Register declares the service's types and handlers, configured from
	// the settings.
	Register func(r jobs.Registrar, cfg config.Config, log *slog.Logger) error
}

// Services are the built-in services, sorted by pool.
var Services = []Service{
	{Pool: image.Pool, Concurrency: image.DefaultConcurrency(), CPU: "500m", Memory: "512Mi", Register: registerImage},
	{Pool: sys.Pool, Concurrency: sys.DefaultConcurrency, CPU: "50m", Memory: "64Mi",
		Register: func(r jobs.Registrar, _ config.Config, _ *slog.Logger) error { return sys.Register(r) }},
	{Pool: webhook.Pool, Concurrency: webhook.DefaultConcurrency, CPU: "100m", Memory: "128Mi", Register: registerWebhook},
}

// Pools returns the built-in pools, sorted.
func Pools() []string {
	pools := make([]string, len(Services))
	for i, s := range Services {
		pools[i] = s.Pool
	}
	return pools
}

// Lookup returns the built-in service of pool, if there is one.
func Lookup(pool string) (Service, bool) {
	i := slices.IndexFunc(Services, func(s Service) bool { return s.Pool == pool })
	if i < 0 {
		return Service{}, false
	}
	return Services[i], true
}

func registerWebhook(r jobs.Registrar, cfg config.Config, log *slog.Logger) error {
	allow, err := egress.ParseRules(cfg.Webhook.Allow)
	if err != nil {
		return fmt.Errorf("webhook.allow: %w", err)
	}
	secrets := make(map[string]webhook.Secret, len(cfg.Webhook.Secrets))
	for name, s := range cfg.Webhook.Secrets {
		secrets[name] = webhook.Secret{Value: s.Secret, Allow: s.Allow}
	}
	return webhook.Register(r, webhook.Config{
		Secrets:          secrets,
		Allow:            allow,
		FollowRedirects:  cfg.Webhook.FollowRedirects,
		KeepResponseBody: cfg.Webhook.KeepResponseBody,
		MaxResponseBody:  cfg.Webhook.MaxResponseBody,
		Logger:           log,
	})
}

func registerImage(r jobs.Registrar, cfg config.Config, _ *slog.Logger) error {
	allow, err := config.Prefixes(cfg.Image.Allow)
	if err != nil {
		return fmt.Errorf("image.allow: %w", err)
	}
	return image.Register(r, image.Config{
		Client:         egress.NewClient(egress.Config{Allow: allow}),
		Refused:        func(err error) bool { return errors.Is(err, egress.ErrRefused) },
		MaxInputBytes:  cfg.Image.MaxInputBytes,
		MaxPixels:      cfg.Image.MaxPixels,
		MaxOutputBytes: cfg.Image.MaxOutputBytes,
		MaxMemoryBytes: cfg.Image.MaxMemoryBytes,
	})
}
