package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/warrenhq/warren/config"
)

// A worker process gets the supervisor's resolved settings: a secret read
// from X_FILE goes on as X (never both, which the worker would refuse), and
// the TLS settings go along for workers that read no warren.yaml.
func TestWorkerEnv(t *testing.T) {
	t.Parallel()
	hooks := filepath.Join(t.TempDir(), "hooks")
	if err := os.WriteFile(hooks, []byte("billing=abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &app{environ: []string{
		"WARREN_AMQP_URL_FILE=/run/secrets/amqp",
		"WARREN_WEBHOOK_SECRETS_FILE=" + hooks,
		"PATH=/bin",
	}}
	cfg := config.Default()
	cfg.AMQPURL = "amqps://u:p@rabbit/"
	cfg.AMQPTLS = config.TLS{CAFile: "/ca.pem", ServerName: "rabbit.internal"}
	cfg.RedisTLS = config.TLS{CertFile: "/c.pem", KeyFile: "/c.key"}
	env := a.workerEnv(cfg)
	for _, want := range []string{
		"WARREN_AMQP_URL=amqps://u:p@rabbit/",
		"WARREN_AMQP_TLS_CA_FILE=/ca.pem",
		"WARREN_AMQP_TLS_SERVER_NAME=rabbit.internal",
		"WARREN_REDIS_TLS_CERT_FILE=/c.pem",
		"WARREN_REDIS_TLS_KEY_FILE=/c.key",
		// Not resolved here: the worker reads it itself.
		"WARREN_WEBHOOK_SECRETS_FILE=" + hooks,
		"PATH=/bin",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("worker environment lacks %s:\n%s", want, strings.Join(env, "\n"))
		}
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "WARREN_AMQP_URL_FILE=") || strings.HasPrefix(kv, "WARREN_AMQP_TLS_KEY_FILE=") {
			t.Errorf("worker environment has %s", kv)
		}
	}
	// The worker reads it back as the supervisor resolved it.
	got, err := config.Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	if got.AMQPURL != cfg.AMQPURL || got.AMQPTLS != cfg.AMQPTLS || got.RedisTLS != cfg.RedisTLS || got.Webhook.Secrets["billing"].Secret != "abc" {
		t.Errorf("the worker reads amqp_url %q, amqp_tls %+v, redis_tls %+v, webhook secrets %v", got.AMQPURL, got.AMQPTLS, got.RedisTLS, got.Webhook.Secrets)
	}
}
