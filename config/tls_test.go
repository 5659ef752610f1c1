package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warrenhq/warren/config"
	"github.com/warrenhq/warren/internal/testenv"
)

// A secret variable X may be read from the file X_FILE names.
func TestSecretFromFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	amqpFile := write("amqp", "amqps://bob:s3cret@mq.example:5671/\n")
	redisFile := write("redis", "rediss://:hunter2@cache.example:6380/0\r\n")
	mgmtFile := write("mgmt", "https://admin:pw@mq.example:15671")
	hooksFile := write("hooks", "billing=abc,ops=def\n\n")
	empty := write("empty", "\n")

	c, err := config.Load("", []string{
		"WARREN_AMQP_URL_FILE=" + amqpFile,
		"WARREN_REDIS_URL_FILE=" + redisFile,
		"WARREN_MANAGEMENT_URL_FILE=" + mgmtFile,
		"WARREN_WEBHOOK_SECRETS_FILE=" + hooksFile,
		"WARREN_CONFIG=" + write("warren.yaml", ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		c.AMQPURL:                           "amqps://bob:s3cret@mq.example:5671/",
		c.RedisURL:                          "rediss://:hunter2@cache.example:6380/0",
		c.ManagementURL:                     "https://admin:pw@mq.example:15671",
		c.Webhook.Secrets["billing"].Secret: "abc",
		c.Webhook.Secrets["ops"].Secret:     "def",
	} {
		if got != want {
			t.Errorf("read %q, want %q", got, want)
		}
	}

	for name, tc := range map[string]struct {
		environ []string
		want    string
	}{
		"both set": {
			[]string{"WARREN_AMQP_URL=amqp://a/", "WARREN_AMQP_URL_FILE=" + amqpFile},
			"WARREN_AMQP_URL and WARREN_AMQP_URL_FILE are both set",
		},
		"missing file": {
			[]string{"WARREN_REDIS_URL_FILE=" + filepath.Join(dir, "nope")},
			"WARREN_REDIS_URL_FILE: open",
		},
		"empty file": {
			[]string{"WARREN_MANAGEMENT_URL_FILE=" + empty},
			"WARREN_MANAGEMENT_URL_FILE: " + empty + " is empty",
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := config.Load(filepath.Join(dir, "warren.yaml"), tc.environ)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want an error containing %q", err, tc.want)
			}
		})
	}

	// Not a secret: _FILE means nothing for it.
	c, err = config.Load(filepath.Join(dir, "warren.yaml"), []string{"WARREN_NAMESPACE_FILE=" + amqpFile})
	if err != nil || c.Namespace != config.Default().Namespace {
		t.Errorf("WARREN_NAMESPACE_FILE: namespace %q, err %v; want it ignored", c.Namespace, err)
	}
}

func TestTLSSettings(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "warren.yaml", `
amqp_url: amqps://guest:guest@127.0.0.1:5671/
redis_url: rediss://127.0.0.1:6380/0
api_ca_file: /ca/api.pem
amqp_tls:
  ca_file: /ca/amqp.pem
  server_name: rabbit.internal
redis_tls:
  cert_file: /c/client.pem
  key_file: /c/client.key
api:
  tls_cert: /c/api.pem
  tls_key: /c/api.key
`)
	c, err := config.Load(path, []string{
		"WARREN_AMQP_TLS_CERT_FILE=/c/a.pem",
		"WARREN_AMQP_TLS_KEY_FILE=/c/a.key",
		"WARREN_REDIS_TLS_CA_FILE=/ca/redis.pem",
		"WARREN_REDIS_TLS_SERVER_NAME=redis.internal",
		"WARREN_API_TLS_KEY=/c/api2.key",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := config.Config{
		AMQPTLS:   config.TLS{CAFile: "/ca/amqp.pem", CertFile: "/c/a.pem", KeyFile: "/c/a.key", ServerName: "rabbit.internal"},
		RedisTLS:  config.TLS{CAFile: "/ca/redis.pem", CertFile: "/c/client.pem", KeyFile: "/c/client.key", ServerName: "redis.internal"},
		APICAFile: "/ca/api.pem",
		API:       config.API{TLSCert: "/c/api.pem", TLSKey: "/c/api2.key"},
	}
	if c.AMQPTLS != want.AMQPTLS || c.RedisTLS != want.RedisTLS || c.APICAFile != want.APICAFile ||
		c.API.TLSCert != want.API.TLSCert || c.API.TLSKey != want.API.TLSKey {
		t.Errorf("got amqp_tls %+v, redis_tls %+v, api_ca_file %q, api.tls_cert %q, api.tls_key %q; want %+v, %+v, %q, %q, %q",
			c.AMQPTLS, c.RedisTLS, c.APICAFile, c.API.TLSCert, c.API.TLSKey,
			want.AMQPTLS, want.RedisTLS, want.APICAFile, want.API.TLSCert, want.API.TLSKey)
	}
	if err := c.Set("amqp_tls.server_name", "other"); err != nil || c.AMQPTLS.ServerName != "other" {
		t.Errorf("Set amqp_tls.server_name: %v, %q", err, c.AMQPTLS.ServerName)
	}
}

func TestValidateTLS(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		change func(*config.Config)
		want   string
	}{
		"api cert without key": {func(c *config.Config) { c.API.TLSCert = "/c.pem" }, "api.tls_cert and api.tls_key: set both"},
		"api key without cert": {func(c *config.Config) { c.API.TLSKey = "/c.key" }, "api.tls_cert and api.tls_key: set both"},
		"amqp client cert without key": {func(c *config.Config) {
			c.AMQPURL = "amqps://h/"
			c.AMQPTLS.CertFile = "/c.pem"
		}, "amqp_tls.cert_file and amqp_tls.key_file: set both or neither"},
		"amqp_tls with amqp://": {func(c *config.Config) {
			c.AMQPTLS.CAFile = "/ca.pem"
		}, "amqp_tls is set, but the URL is not amqps://"},
		"redis_tls with redis://": {func(c *config.Config) {
			c.RedisURL = "redis://:pw@h:6379/0"
			c.RedisTLS.ServerName = "x"
		}, "redis_tls is set, but the URL is not rediss://"},
	} {
		t.Run(name, func(t *testing.T) {
			c := config.Default()
			tc.change(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "pw") {
				t.Errorf("the error shows the URL's password: %v", err)
			}
		})
	}
	c := config.Default()
	c.AMQPURL, c.RedisURL = "AMQPS://h/", "rediss://h:6380/0"
	c.AMQPTLS.CAFile, c.RedisTLS.CAFile = "/a", "/b"
	if err := c.Validate(); err != nil {
		t.Errorf("TLS settings with TLS URLs: %v", err)
	}
}

// The TLS settings become *tls.Config values; unreadable files are errors
// naming the setting.
func TestTLSConfigs(t *testing.T) {
	t.Parallel()
	certs := testenv.NewCerts(t)
	c := config.Default()
	if cfg, err := c.AMQPTLSConfig(); cfg != nil || err != nil {
		t.Errorf("no amqp_tls: got %v, %v; want nil, nil", cfg, err)
	}
	if cfg, err := c.APIClientTLSConfig(); cfg != nil || err != nil {
		t.Errorf("no api_ca_file: got %v, %v; want nil, nil", cfg, err)
	}
	c.AMQPTLS = config.TLS{CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile, ServerName: "localhost"}
	cfg, err := c.AMQPTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.ServerName != "localhost" {
		t.Errorf("amqp_tls: RootCAs %v, %d certificates, ServerName %q", cfg.RootCAs, len(cfg.Certificates), cfg.ServerName)
	}
	c.APICAFile = certs.CAFile
	if cfg, err := c.APIClientTLSConfig(); err != nil || cfg.RootCAs == nil {
		t.Errorf("api_ca_file: %v, %v", cfg, err)
	}

	c.RedisTLS = config.TLS{CAFile: certs.ServerKeyFile}
	if _, err := c.RedisTLSConfig(); err == nil || !strings.Contains(err.Error(), "redis_tls.ca_file: "+certs.ServerKeyFile+" holds no PEM certificate") {
		t.Errorf("a key as the CA file: %v", err)
	}
	c.RedisTLS = config.TLS{CertFile: certs.ClientCertFile, KeyFile: certs.ServerKeyFile}
	if _, err := c.RedisTLSConfig(); err == nil || !strings.Contains(err.Error(), "redis_tls.cert_file and redis_tls.key_file:") {
		t.Errorf("a certificate with another's key: %v", err)
	}
	c.APICAFile = "/nonexistent/ca.pem"
	if _, err := c.APIClientTLSConfig(); err == nil || !strings.HasPrefix(err.Error(), "api_ca_file: open /nonexistent/ca.pem") {
		t.Errorf("a missing api_ca_file: %v", err)
	}
}

// An error in the config file quotes the lines around the fault, but not
// the passwords and secrets on them.
func TestBadYAMLHidesSecrets(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "warren.yaml", `amqp_url: amqp://bob:s3cretpw@mq.example:5672/
redis_url: redis://:r3dispw@cache.example:6379/0
webhook:
  secrets:
    billing:
      secret: wh00ksecret
      allow: [https://a.example/]
  nonsense: 1
`)
	_, err := config.Load(path, nil)
	if err == nil {
		t.Fatal("Load accepted an unknown key")
	}
	for _, secret := range []string{"s3cretpw", "r3dispw", "wh00ksecret"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows %q:\n%v", secret, err)
		}
	}
	if !strings.Contains(err.Error(), "nonsense") {
		t.Errorf("the error does not name the unknown key:\n%v", err)
	}
}
