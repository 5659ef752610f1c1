package config_test

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/apikey"
	"github.com/warrenhq/warren/autoscale"
	"github.com/warrenhq/warren/config"
	"github.com/warrenhq/warren/egress"
	"github.com/warrenhq/warren/jobs"
)

// writeFile writes a config file in a fresh directory and returns its path.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefault(t *testing.T) {
	t.Parallel()
	want := config.Config{
		AMQPURL:   "amqp://guest:guest@127.0.0.1:5672/",
		RedisURL:  "redis://127.0.0.1:6379/0",
		Namespace: "warren",
		LogLevel:  "info",
		APIURL:    "http://127.0.0.1:8080",
		API: config.API{
			Addr: "127.0.0.1:8080", MaxBodyBytes: 1 << 20,
			ReadTimeout: config.Duration(30 * time.Second), MaxConnections: 1024, MaxJSONDepth: 64,
			MaxDelay:          config.Duration(30 * 24 * time.Hour),
			RequestsPerSecond: 100, JobsPerMinute: 60000,
		},
		Store: config.Store{
			Retention:         config.Duration(168 * time.Hour),
			IdempotencyWindow: config.Duration(24 * time.Hour),
		},
		Supervisor: config.Supervisor{
			LeaseTTL: config.Duration(10 * time.Second),
		},
		Worker:   config.Worker{ShutdownGrace: config.Duration(30 * time.Second)},
		Rescue:   config.Rescue{Interval: config.Duration(30 * time.Second), Grace: config.Duration(time.Minute)},
		Schedule: config.Schedule{Grace: config.Duration(30 * time.Second)},
		Workflow: config.Workflow{Sweep: config.Duration(5 * time.Second), PendingGrace: config.Duration(time.Minute)},
		Redis:    config.Redis{WaitTimeout: config.Duration(time.Second)},
	}
	got := config.Default()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Default() (-want +got):\n%s", diff)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

const fullYAML = `
amqp_url: amqp://u:p@mq.example:5673/vh
redis_url: redis://cache.example:6380/2
redis:
  sentinel:
    addrs: [s1.example:26379, s2.example:26379]
    master: warren
  wait_replicas: 1
  wait_timeout: 500ms
namespace: staging
log_level: debug
api_url: http://api.example:9000
api:
  addr: 0.0.0.0:9000
  max_body_bytes: 2048
  read_timeout: 5s
  max_connections: 50
  max_json_depth: 32
  max_delay: 72h
  metrics_addr: 0.0.0.0:9102
  allowed_hosts: [warren.internal]
  allowed_origins: [https://ops.example.com]
  requests_per_second: 50.5
  jobs_per_minute: 6000
store:
  retention: 1h
  idempotency_window: 90m
worker:
  health_addr: 127.0.0.1:9091
  shutdown_grace: 45s
supervisor:
  lease_ttl: 4s
rescue:
  interval: 10s
  grace: 45s
pools:
  sys:
    concurrency: 8
    prefetch: 16
  image:
    concurrency: 2
`

func fullConfig() config.Config {
	return config.Config{
		AMQPURL:   "amqp://u:p@mq.example:5673/vh",
		RedisURL:  "redis://cache.example:6380/2",
		Namespace: "staging",
		LogLevel:  "debug",
		APIURL:    "http://api.example:9000",
		API: config.API{
			Addr: "0.0.0.0:9000", MaxBodyBytes: 2048,
			ReadTimeout: config.Duration(5 * time.Second), MaxConnections: 50, MaxJSONDepth: 32,
			MaxDelay: config.Duration(72 * time.Hour), MetricsAddr: "0.0.0.0:9102",
			AllowedHosts: []string{"warren.internal"}, AllowedOrigins: []string{"https://ops.example.com"},
			RequestsPerSecond: 50.5, JobsPerMinute: 6000,
		},
		Store: config.Store{
			Retention:         config.Duration(time.Hour),
			IdempotencyWindow: config.Duration(90 * time.Minute),
		},
		Supervisor: config.Supervisor{
			LeaseTTL: config.Duration(4 * time.Second),
		},
		Worker:   config.Worker{HealthAddr: "127.0.0.1:9091", ShutdownGrace: config.Duration(45 * time.Second)},
		Rescue:   config.Rescue{Interval: config.Duration(10 * time.Second), Grace: config.Duration(45 * time.Second)},
		Schedule: config.Schedule{Grace: config.Duration(30 * time.Second)},
		Workflow: config.Workflow{Sweep: config.Duration(5 * time.Second), PendingGrace: config.Duration(time.Minute)},
		Redis: config.Redis{
			Sentinel:     config.RedisSentinel{Addrs: []string{"s1.example:26379", "s2.example:26379"}, Master: "warren"},
			WaitReplicas: 1, WaitTimeout: config.Duration(500 * time.Millisecond),
		},
		Pools: map[string]config.Pool{
			"sys":   {Concurrency: 8, Prefetch: 16},
			"image": {Concurrency: 2},
		},
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "warren.yaml", fullYAML)
	tests := []struct {
		name    string
		path    string
		environ []string
		want    func(*config.Config)
	}{
		{
			name: "yaml only",
			path: path,
			want: func(*config.Config) {},
		},
		{
			name:    "yaml named by WARREN_CONFIG",
			environ: []string{"WARREN_CONFIG=" + path},
			want:    func(*config.Config) {},
		},
		{
			name: "env overrides yaml",
			path: path,
			environ: []string{
				"WARREN_AMQP_URL=amqp://env/",
				"WARREN_REDIS_URL=redis://env:6379/1",
				"WARREN_NAMESPACE=fromenv",
				"WARREN_LOG_LEVEL=warn",
				"WARREN_API_URL=http://env:1",
				"WARREN_HTTP_ADDR=127.0.0.1:1",
				"WARREN_MAX_BODY_BYTES=99",
				"WARREN_API_READ_TIMEOUT=7s",
				"WARREN_API_MAX_CONNECTIONS=9",
				"WARREN_API_MAX_JSON_DEPTH=10",
				"WARREN_API_MAX_DELAY=48h",
				"WARREN_API_METRICS_ADDR=127.0.0.1:3",
				"WARREN_API_ALLOWED_HOSTS=x.internal",
				"WARREN_API_ALLOWED_ORIGINS=https://x.example",
				"WARREN_API_REQUESTS_PER_SECOND=-1",
				"WARREN_API_JOBS_PER_MINUTE=5",
				"WARREN_API_INSECURE_NO_AUTH=1",
				"WARREN_RETENTION=2h",
				"WARREN_IDEMPOTENCY_WINDOW=3h",
				"WARREN_HEALTH_ADDR=127.0.0.1:2",
				"WARREN_SHUTDOWN_GRACE=5s",
				"UNRELATED=1",
			},
			want: func(c *config.Config) {
				c.AMQPURL = "amqp://env/"
				c.RedisURL = "redis://env:6379/1"
				c.Namespace = "fromenv"
				c.LogLevel = "warn"
				c.APIURL = "http://env:1"
				c.API = config.API{Addr: "127.0.0.1:1", MaxBodyBytes: 99, ReadTimeout: config.Duration(7 * time.Second), MaxConnections: 9, MaxJSONDepth: 10, MaxDelay: config.Duration(48 * time.Hour),
					MetricsAddr: "127.0.0.1:3", AllowedHosts: []string{"x.internal"}, AllowedOrigins: []string{"https://x.example"},
					RequestsPerSecond: -1, JobsPerMinute: 5, InsecureNoAuth: true}
				c.Store = config.Store{Retention: config.Duration(2 * time.Hour), IdempotencyWindow: config.Duration(3 * time.Hour)}
				c.Worker = config.Worker{HealthAddr: "127.0.0.1:2", ShutdownGrace: config.Duration(5 * time.Second)}
			},
		},
		{
			name:    "empty env value counts as unset",
			path:    path,
			environ: []string{"WARREN_NAMESPACE=", "WARREN_HTTP_ADDR=", "WARREN_POOL_SYS_CONCURRENCY="},
			want:    func(*config.Config) {},
		},
		{
			name: "pool env overrides one field of a yaml pool",
			path: path,
			environ: []string{
				"WARREN_POOL_SYS_CONCURRENCY=64",
				"WARREN_POOL_IMAGE_PREFETCH=5",
			},
			want: func(c *config.Config) {
				c.Pools["sys"] = config.Pool{Concurrency: 64, Prefetch: 16}
				c.Pools["image"] = config.Pool{Concurrency: 2, Prefetch: 5}
			},
		},
		{
			name: "pool env adds a pool",
			path: path,
			environ: []string{
				"WARREN_POOL_WEB_HOOKS_CONCURRENCY=3",
				"WARREN_POOL_WEB_HOOKS_PREFETCH=6",
			},
			want: func(c *config.Config) {
				c.Pools["web_hooks"] = config.Pool{Concurrency: 3, Prefetch: 6}
			},
		},
		{
			name:    "pool env with neither suffix is ignored",
			path:    path,
			environ: []string{"WARREN_POOL_SYS_SIZE=3", "WARREN_POOL__CONCURRENCY=3"},
			want:    func(*config.Config) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := config.Load(tt.path, tt.environ)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := fullConfig()
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Load (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadEnvWithoutFile(t *testing.T) {
	// t.Chdir: no t.Parallel.
	t.Chdir(t.TempDir())
	got, err := config.Load("", []string{
		"WARREN_POOL_SYS_CONCURRENCY=64",
		"WARREN_POOL_SYS_PREFETCH=128",
		"WARREN_RETENTION=10m",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.Pools = map[string]config.Pool{"sys": {Concurrency: 64, Prefetch: 128}}
	want.Store.Retention = config.Duration(10 * time.Minute)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
}

func TestLoadDefaultFile(t *testing.T) {
	// t.Chdir: no t.Parallel.
	dir := t.TempDir()
	t.Chdir(dir)

	// A missing default file is fine: the defaults stand.
	got, err := config.Load("", nil)
	if err != nil {
		t.Fatalf("Load without ./warren.yaml: %v", err)
	}
	if diff := cmp.Diff(config.Default(), got); diff != "" {
		t.Errorf("Load without a file (-want +got):\n%s", diff)
	}

	// ./warren.yaml is read when it exists.
	if err := os.WriteFile(filepath.Join(dir, config.DefaultFile), []byte("namespace: fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err = config.Load("", nil)
	if err != nil {
		t.Fatalf("Load with ./warren.yaml: %v", err)
	}
	if got.Namespace != "fromfile" {
		t.Errorf("namespace = %q, want fromfile from ./warren.yaml", got.Namespace)
	}
}

func TestLoadNamedMissingFile(t *testing.T) {
	// t.Chdir: no t.Parallel.
	dir := t.TempDir()
	t.Chdir(dir)
	missing := filepath.Join(dir, "nope.yaml")
	for name, load := range map[string]func() (config.Config, error){
		"path":          func() (config.Config, error) { return config.Load(missing, nil) },
		"WARREN_CONFIG": func() (config.Config, error) { return config.Load("", []string{"WARREN_CONFIG=" + missing}) },
		// A named file must exist even when it is the default name.
		"path warren.yaml": func() (config.Config, error) { return config.Load(config.DefaultFile, nil) },
	} {
		_, err := load()
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: Load of a missing named file = %v, want an error wrapping fs.ErrNotExist", name, err)
		}
	}
}

func TestLoadBadYAML(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"unknown top-level key", "namespace: x\nnamesapce: y\n", "namesapce"},
		{"unknown nested key", "api:\n  adr: 1.2.3.4:80\n", "adr"},
		{"unknown pool field", "pools:\n  sys:\n    concurency: 3\n", "concurency"},
		{"bad duration", "store:\n  retention: 7d\n", "7d"},
		{"wrong type", "api:\n  max_body_bytes: lots\n", "max_body_bytes"},
		{"not yaml", "namespace: [unclosed\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, "warren.yaml", tt.yaml)
			_, err := config.Load(path, nil)
			if err == nil {
				t.Fatalf("Load of %q: no error", tt.yaml)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Load of %q = %v, want it to mention %q", tt.yaml, err, tt.wantErr)
			}
		})
	}
}

func TestLoadBadEnv(t *testing.T) {
	t.Parallel()
	for _, kv := range []string{
		"WARREN_RETENTION=7d",
		"WARREN_SHUTDOWN_GRACE=soon",
		"WARREN_MAX_BODY_BYTES=1MB",
		"WARREN_API_READ_TIMEOUT=30",
		"WARREN_API_MAX_CONNECTIONS=lots",
		"WARREN_API_MAX_JSON_DEPTH=6.4",
		"WARREN_POOL_SYS_CONCURRENCY=many",
		"WARREN_POOL_SYS_PREFETCH=1.5",
	} {
		name, _, _ := strings.Cut(kv, "=")
		_, err := config.Load(writeFile(t, "warren.yaml", "{}\n"), []string{kv})
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Load with %s = %v, want an error naming %s", kv, err, name)
		}
	}
}

func TestSet(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(writeFile(t, "warren.yaml", "api:\n  addr: 127.0.0.1:7000\n"),
		[]string{"WARREN_HTTP_ADDR=127.0.0.1:8000", "WARREN_SHUTDOWN_GRACE=5s"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.API.Addr != "127.0.0.1:8000" {
		t.Fatalf("api.addr from env = %q, want 127.0.0.1:8000", cfg.API.Addr)
	}
	// A flag (Set) overrides the environment.
	for key, value := range map[string]string{
		"api.addr":                 "127.0.0.1:9000",
		"worker.shutdown_grace":    "1m",
		"api.max_body_bytes":       "10",
		"api.read_timeout":         "2s",
		"api.max_connections":      "20",
		"api.max_json_depth":       "16",
		"api.max_delay":            "12h",
		"namespace":                "flagged",
		"store.retention":          "2h",
		"store.idempotency_window": "3h",
		"redis.sentinel.addrs":     "a:26379,b:26379",
		"redis.sentinel.master":    "m",
		"redis.wait_replicas":      "2",
		"redis.wait_timeout":       "250ms",
		"amqp_url":                 "amqp://flag/",
		"redis_url":                "redis://flag/0",
		"log_level":                "error",
		"api_url":                  "http://flag",
		"worker.health_addr":       ":1",
		"supervisor.addr":          ":2",
		"supervisor.lease_ttl":     "3s",
		"management_url":           "off",
		"debug_addr":               "127.0.0.1:6060",
		"rescue.interval":          "5s",
		"rescue.grace":             "20s",
		"api_key":                  "wrn_flag",
		"api.insecure_no_auth":     "true",
		"api.metrics_addr":         "127.0.0.1:9102",
		"api.allowed_hosts":        "a.internal,b.internal",
		"api.allowed_origins":      "https://ops.example.com",
		"api.requests_per_second":  "0.5",
		"api.jobs_per_minute":      "-1",
	} {
		if err := cfg.Set(key, value); err != nil {
			t.Errorf("Set(%q, %q) = %v", key, value, err)
		}
	}
	want := config.Config{
		AMQPURL:   "amqp://flag/",
		RedisURL:  "redis://flag/0",
		Namespace: "flagged",
		LogLevel:  "error",
		APIURL:    "http://flag",
		API: config.API{
			Addr: "127.0.0.1:9000", MaxBodyBytes: 10,
			ReadTimeout: config.Duration(2 * time.Second), MaxConnections: 20, MaxJSONDepth: 16,
			MaxDelay: config.Duration(12 * time.Hour), InsecureNoAuth: true, MetricsAddr: "127.0.0.1:9102",
			AllowedHosts: []string{"a.internal", "b.internal"}, AllowedOrigins: []string{"https://ops.example.com"},
			RequestsPerSecond: 0.5, JobsPerMinute: -1,
		},
		APIKey:        "wrn_flag",
		Store:         config.Store{Retention: config.Duration(2 * time.Hour), IdempotencyWindow: config.Duration(3 * time.Hour)},
		Worker:        config.Worker{HealthAddr: ":1", ShutdownGrace: config.Duration(time.Minute)},
		Supervisor:    config.Supervisor{Addr: ":2", LeaseTTL: config.Duration(3 * time.Second)},
		Rescue:        config.Rescue{Interval: config.Duration(5 * time.Second), Grace: config.Duration(20 * time.Second)},
		Schedule:      config.Schedule{Grace: config.Duration(30 * time.Second)},
		Workflow:      config.Workflow{Sweep: config.Duration(5 * time.Second), PendingGrace: config.Duration(time.Minute)},
		ManagementURL: "off",
		DebugAddr:     "127.0.0.1:6060",
		Redis: config.Redis{Sentinel: config.RedisSentinel{Addrs: []string{"a:26379", "b:26379"}, Master: "m"},
			WaitReplicas: 2, WaitTimeout: config.Duration(250 * time.Millisecond)},
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("after Set (-want +got):\n%s", diff)
	}

	for _, tt := range []struct{ key, value string }{
		{"api.adr", "x"},
		{"pools.sys.concurrency", "3"},
		{"store.retention", "7d"},
		{"api.max_body_bytes", "big"},
	} {
		before := cfg
		if err := cfg.Set(tt.key, tt.value); err == nil {
			t.Errorf("Set(%q, %q) = nil, want an error", tt.key, tt.value)
		}
		if diff := cmp.Diff(before, cfg); diff != "" {
			t.Errorf("failed Set(%q, %q) changed the config (-before +after):\n%s", tt.key, tt.value, diff)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		edit    func(*config.Config)
		wantErr string // substring; "" means valid
	}{
		{name: "default", edit: func(*config.Config) {}},
		{name: "full", edit: func(c *config.Config) { *c = fullConfig() }},
		{name: "zero pool settings", edit: func(c *config.Config) { c.Pools = map[string]config.Pool{"sys": {}} }},
		{name: "negative quorum group size", edit: func(c *config.Config) { c.AMQPQuorumGroupSize = -1 }, wantErr: "amqp_quorum_group_size"},
		{name: "empty namespace", edit: func(c *config.Config) { c.Namespace = "" }, wantErr: "namespace"},
		{name: "bad namespace", edit: func(c *config.Config) { c.Namespace = "a:b" }, wantErr: "namespace"},
		{name: "long namespace", edit: func(c *config.Config) { c.Namespace = jobs.Namespace(strings.Repeat("n", 64)) }, wantErr: "namespace"},
		{name: "bad log level", edit: func(c *config.Config) { c.LogLevel = "loud" }, wantErr: "log level"},
		{name: "empty log level", edit: func(c *config.Config) { c.LogLevel = "" }, wantErr: "log level"},
		{name: "zero body", edit: func(c *config.Config) { c.API.MaxBodyBytes = 0 }, wantErr: "max_body_bytes"},
		{name: "negative body", edit: func(c *config.Config) { c.API.MaxBodyBytes = -1 }, wantErr: "max_body_bytes"},
		{name: "zero read timeout", edit: func(c *config.Config) { c.API.ReadTimeout = 0 }, wantErr: "api.read_timeout"},
		{name: "negative read timeout", edit: func(c *config.Config) { c.API.ReadTimeout = config.Duration(-time.Second) }, wantErr: "api.read_timeout"},
		{name: "zero connections", edit: func(c *config.Config) { c.API.MaxConnections = 0 }, wantErr: "api.max_connections"},
		{name: "negative connections", edit: func(c *config.Config) { c.API.MaxConnections = -1 }, wantErr: "api.max_connections"},
		{name: "zero json depth", edit: func(c *config.Config) { c.API.MaxJSONDepth = 0 }, wantErr: "api.max_json_depth"},
		{name: "negative json depth", edit: func(c *config.Config) { c.API.MaxJSONDepth = -1 }, wantErr: "api.max_json_depth"},
		{name: "tenant key with a control character", edit: func(c *config.Config) { c.API.TenantKey = "cust\tomer" }, wantErr: "api.tenant_key"},
		{name: "workflow sweep under a second", edit: func(c *config.Config) { c.Workflow.Sweep = config.Duration(500 * time.Millisecond) }, wantErr: "workflow.sweep"},
		{name: "workflow sweep over 10m", edit: func(c *config.Config) { c.Workflow.Sweep = config.Duration(11 * time.Minute) }, wantErr: "workflow.sweep"},
		{name: "workflow pending grace under 10s", edit: func(c *config.Config) { c.Workflow.PendingGrace = config.Duration(time.Second) }, wantErr: "workflow.pending_grace"},
		{name: "workflow pending grace over an hour", edit: func(c *config.Config) { c.Workflow.PendingGrace = config.Duration(2 * time.Hour) }, wantErr: "workflow.pending_grace"},
		{name: "zero max delay", edit: func(c *config.Config) { c.API.MaxDelay = 0 }, wantErr: "api.max_delay"},
		{name: "negative max delay", edit: func(c *config.Config) { c.API.MaxDelay = config.Duration(-time.Hour) }, wantErr: "api.max_delay"},
		{name: "max delay over the delay levels", edit: func(c *config.Config) { c.API.MaxDelay = config.Duration(jobs.MaxDelay + time.Second) }, wantErr: "api.max_delay"},
		{name: "max delay at the delay levels", edit: func(c *config.Config) { c.API.MaxDelay = config.Duration(jobs.MaxDelay) }},
		{name: "zero retention", edit: func(c *config.Config) { c.Store.Retention = 0 }, wantErr: "retention"},
		{name: "negative retention", edit: func(c *config.Config) { c.Store.Retention = config.Duration(-time.Hour) }, wantErr: "retention"},
		{name: "negative idempotency window", edit: func(c *config.Config) { c.Store.IdempotencyWindow = config.Duration(-time.Hour) }, wantErr: "idempotency_window"},
		{name: "zero idempotency window", edit: func(c *config.Config) { c.Store.IdempotencyWindow = 0 }, wantErr: "idempotency_window"},
		{name: "negative grace", edit: func(c *config.Config) { c.Worker.ShutdownGrace = config.Duration(-time.Second) }, wantErr: "shutdown_grace"},
		{name: "zero grace", edit: func(c *config.Config) { c.Worker.ShutdownGrace = 0 }, wantErr: "shutdown_grace"},
		{name: "rescuer off", edit: func(c *config.Config) { c.Rescue.Interval = config.Duration(-time.Second) }},
		{name: "zero rescue interval", edit: func(c *config.Config) { c.Rescue.Interval = 0 }, wantErr: "rescue.interval"},
		{name: "zero rescue grace", edit: func(c *config.Config) { c.Rescue.Grace = 0 }, wantErr: "rescue.grace"},
		{name: "zero lease ttl", edit: func(c *config.Config) { c.Supervisor.LeaseTTL = 0 }},
		{name: "short lease ttl", edit: func(c *config.Config) { c.Supervisor.LeaseTTL = config.Duration(500 * time.Millisecond) }, wantErr: "supervisor.lease_ttl"},
		{name: "negative lease ttl", edit: func(c *config.Config) { c.Supervisor.LeaseTTL = config.Duration(-time.Second) }, wantErr: "supervisor.lease_ttl"},
		{name: "sentinel addrs without master", edit: func(c *config.Config) { c.Redis.Sentinel.Addrs = []string{"s:26379"} }, wantErr: "WARREN_REDIS_SENTINEL_MASTER"},
		{name: "sentinel master without addrs", edit: func(c *config.Config) { c.Redis.Sentinel.Master = "m" }, wantErr: "WARREN_REDIS_SENTINEL_ADDRS"},
		{name: "sentinel addr without port", edit: func(c *config.Config) {
			c.Redis.Sentinel = config.RedisSentinel{Addrs: []string{"s:26379", "s2"}, Master: "m"}
		}, wantErr: `redis.sentinel.addrs: "s2"`},
		{name: "negative wait replicas", edit: func(c *config.Config) { c.Redis.WaitReplicas = -1 }, wantErr: "redis.wait_replicas"},
		{name: "zero wait timeout", edit: func(c *config.Config) { c.Redis.WaitTimeout = 0 }, wantErr: "redis.wait_timeout"},
		{name: "bad pool name", edit: func(c *config.Config) { c.Pools = map[string]config.Pool{"Sys": {Concurrency: 1}} }, wantErr: "pools.Sys"},
		{name: "negative concurrency", edit: func(c *config.Config) { c.Pools = map[string]config.Pool{"sys": {Concurrency: -1}} }, wantErr: "pools.sys"},
		{name: "negative prefetch", edit: func(c *config.Config) { c.Pools = map[string]config.Pool{"sys": {Prefetch: -1}} }, wantErr: "pools.sys"},
		{name: "autoscale to zero", edit: func(c *config.Config) {
			c.Pools = map[string]config.Pool{"image": {Autoscale: &config.Autoscale{Max: 3}}}
		}},
		{name: "autoscale max below min", edit: func(c *config.Config) {
			c.Pools = map[string]config.Pool{"image": {Autoscale: &config.Autoscale{Min: 3, Max: 2}}}
		}, wantErr: "pools.image.autoscale: replicas"},
		{name: "autoscale negative target", edit: func(c *config.Config) {
			c.Pools = map[string]config.Pool{"image": {Autoscale: &config.Autoscale{Max: 2, TargetBacklog: -1}}}
		}, wantErr: "pools.image.autoscale"},
		{name: "autoscale negative age", edit: func(c *config.Config) {
			c.Pools = map[string]config.Pool{"image": {Autoscale: &config.Autoscale{Max: 2, TargetAge: config.Duration(-time.Second)}}}
		}, wantErr: "pools.image.autoscale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := config.Default()
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("Validate() = nil, want an error about %s", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("Validate() = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseLevel(t *testing.T) {
	t.Parallel()
	tests := map[string]slog.Level{
		"debug": slog.LevelDebug,
		"info":  slog.LevelInfo,
		"warn":  slog.LevelWarn,
		"error": slog.LevelError,
		"INFO":  slog.LevelInfo,
	}
	for s, want := range tests {
		got, err := config.ParseLevel(s)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "loud", "verbose"} {
		if _, err := config.ParseLevel(s); err == nil {
			t.Errorf("ParseLevel(%q): no error", s)
		}
	}
}

func TestDurationText(t *testing.T) {
	t.Parallel()
	d := config.Duration(90 * time.Minute)
	b, err := d.MarshalText()
	if err != nil || string(b) != "1h30m0s" {
		t.Fatalf("MarshalText = %q, %v; want 1h30m0s", b, err)
	}
	var back config.Duration
	if err := back.UnmarshalText(b); err != nil || back != d {
		t.Errorf("UnmarshalText(%q) = %v, %v; want %v", b, back.Std(), err, d.Std())
	}
	if err := back.UnmarshalText([]byte("7d")); err == nil {
		t.Error("UnmarshalText(7d): no error")
	}
}

func TestServiceSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := dir + "/warren.yaml"
	if err := os.WriteFile(path, []byte(`
webhook:
  secrets:
    billing: {secret: s3cret, allow: ["https://billing.example/hooks/"]}
    a: {allow: ["https://a.example/"]}
  allow: [127.0.0.1, 10.1.0.0/16, "10.2.3.4:8080", "[fd00::/8]:443", "hooks.internal:8443"]
  max_response_body: 100
image:
  allow: ["::1"]
  max_pixels: 1000
`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path, []string{"WARREN_WEBHOOK_SECRETS=a=1,b=2", "WARREN_IMAGE_MAX_INPUT_BYTES=512",
		"WARREN_IMAGE_MAX_OUTPUT_BYTES=2048", "WARREN_WEBHOOK_MAX_RESPONSE_BODY=64",
		"WARREN_WEBHOOK_FOLLOW_REDIRECTS=true", "WARREN_WEBHOOK_KEEP_RESPONSE_BODY=1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// The environment sets values and keeps the file's allow lists.
	want := map[string]config.WebhookSecret{
		"billing": {Secret: "s3cret", Allow: []string{"https://billing.example/hooks/"}},
		"a":       {Secret: "1", Allow: []string{"https://a.example/"}},
		"b":       {Secret: "2"},
	}
	if d := cmp.Diff(want, c.Webhook.Secrets); d != "" {
		t.Errorf("secrets (-want +got):\n%s", d)
	}
	r, err := egress.ParseRules(c.Webhook.Allow)
	if err != nil || fmt.Sprint(r) != "[127.0.0.1 10.1.0.0/16 10.2.3.4:8080 [fd00::/8]:443 hooks.internal:8443]" {
		t.Errorf("webhook allow list: %v %v", r, err)
	}
	if !c.Webhook.FollowRedirects || !c.Webhook.KeepResponseBody || c.Webhook.MaxResponseBody != 64 {
		t.Errorf("webhook settings: %+v", c.Webhook)
	}
	if c.Image.MaxPixels != 1000 || c.Image.MaxInputBytes != 512 || c.Image.MaxOutputBytes != 2048 {
		t.Errorf("image limits: %+v", c.Image)
	}
	c.Image.Allow = []string{"not-an-address"}
	if err := c.Validate(); err == nil {
		t.Error("a bad allow list entry passed validation")
	}
}

func TestWebhookSettings(t *testing.T) {
	t.Parallel()
	load := func(t *testing.T, yml string, env ...string) (config.Config, error) {
		t.Helper()
		path := t.TempDir() + "/warren.yaml"
		if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(path, env)
		if err == nil {
			err = c.Validate()
		}
		return c, err
	}

	// Off unless asked for.
	c, err := load(t, "webhook: {}\n")
	if err != nil || c.Webhook.FollowRedirects || c.Webhook.KeepResponseBody || c.Webhook.Secrets != nil {
		t.Errorf("defaults: %+v, %v", c.Webhook, err)
	}

	// The old form, a plain string, still loads: as a secret with no allow
	// list, which signs for nothing (the webhook pool warns, and says what
	// to add).
	c, err = load(t, "webhook:\n  secrets: {billing: s3cret}\n")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]config.WebhookSecret{"billing": {Secret: "s3cret"}}, c.Webhook.Secrets); d != "" {
		t.Errorf("old form (-want +got):\n%s", d)
	}

	// A file holding only allow lists, the values coming from the
	// environment of the webhook pool alone (as deploy does), is valid.
	c, err = load(t, "webhook:\n  secrets:\n    billing:\n      allow: [\"https://b.example/\"]\n")
	if err != nil || c.Webhook.Secrets["billing"].Secret != "" {
		t.Errorf("allow lists alone: %+v, %v", c.Webhook.Secrets, err)
	}
	c, err = load(t, "webhook: {follow_redirects: true, keep_response_body: true}\n", "WARREN_WEBHOOK_FOLLOW_REDIRECTS=false")
	if err != nil || c.Webhook.FollowRedirects || !c.Webhook.KeepResponseBody {
		t.Errorf("booleans: %+v, %v", c.Webhook, err)
	}

	for _, tt := range []struct {
		name string
		yml  string
		env  []string
		want string
	}{
		{"unknown key in a secret", "webhook:\n  secrets:\n    billing: {secret: s, alow: [\"https://b.example/\"]}\n", nil, "alow"},
		{"a list as a secret", "webhook:\n  secrets:\n    billing: [s]\n", nil, "billing"},
		{"allow list entry", "webhook: {allow: [\"127.1\"]}\n", nil, "webhook.allow"},
		{"allow list port", "webhook: {allow: [\"10.0.0.1:http\"]}\n", nil, "webhook.allow"},
		{"allow list from the environment", "webhook: {}\n", []string{"WARREN_WEBHOOK_ALLOW=10.0.0.0/8:99999"}, "webhook.allow"},
		{"secrets from the environment", "webhook: {}\n", []string{"WARREN_WEBHOOK_SECRETS=novalue"}, "name=secret"},
		{"a boolean", "webhook: {}\n", []string{"WARREN_WEBHOOK_KEEP_RESPONSE_BODY=yes please"}, "true or false"},
	} {
		if _, err := load(t, tt.yml, tt.env...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err %v, want one naming %q", tt.name, err, tt.want)
		}
	}
}

// The complete example in docs/configuration.md is a valid config file.
func TestAutoscaleBlock(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/warren.yaml"
	yml := `pools:
  image:
    command: [python3, worker.py]
    image: registry.example/image-worker:1
    autoscale:
      min_replicas: 0
      max_replicas: 6
      target_backlog: 20
      activation_backlog: 5
      target_age: 30s
      interval: 2s
      scale_up_window: 10s
      scale_down_window: 2m
      max_step: 2
`
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Pools["image"].Command, []string{"python3", "worker.py"}; !slices.Equal(got, want) {
		t.Errorf("command = %q, want %q", got, want)
	}
	want := autoscale.Policy{Min: 0, Max: 6, TargetBacklog: 20, ActivationBacklog: 5, TargetAge: 30 * time.Second,
		Interval: 2 * time.Second, ScaleUpWindow: 10 * time.Second, ScaleDownWindow: 2 * time.Minute, MaxStep: 2}
	if d := cmp.Diff(want, c.AutoscaleOf("image").Policy()); d != "" {
		t.Errorf("policy (-want +got):\n%s", d)
	}
	// A pool without a block gets the default policy, with the policy
	// package's defaults filled in.
	if d := cmp.Diff(config.DefaultAutoscale.Policy(), c.AutoscaleOf("sys").Policy()); d != "" {
		t.Errorf("default policy (-want +got):\n%s", d)
	}
	if p := c.AutoscaleOf("sys").Policy(); p.Interval != 5*time.Second || p.ScaleDownWindow != time.Minute || p.Min != 1 {
		t.Errorf("default policy = %+v, want min 1, 5s interval and a 60s scale-down window", p)
	}

	// A misspelt key is an error naming it.
	if err := os.WriteFile(path, []byte("pools:\n  image:\n    autoscale:\n      max: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path, nil); err == nil || !strings.Contains(err.Error(), "max") {
		t.Errorf("Load with autoscale.max = %v, want an unknown-field error", err)
	}
}

func TestDocumentedExampleLoads(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n# warren.yaml\n")
	example, _, closed := strings.Cut(rest, "```")
	if !ok || !closed {
		t.Fatal("docs/configuration.md has no warren.yaml example")
	}
	path := t.TempDir() + "/warren.yaml"
	if err := os.WriteFile(path, []byte(example), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path, nil)
	if err == nil {
		err = c.Validate()
	}
	if err != nil {
		t.Errorf("the documented example does not load: %v", err)
	}
	if d := cmp.Diff(config.Default().Rescue, c.Rescue); d != "" {
		t.Errorf("the example's rescue block differs from the defaults it claims (-default +example):\n%s", d)
	}
	if d := cmp.Diff(config.Default().API, c.API); d != "" {
		t.Errorf("the example's api block differs from the defaults it claims (-default +example):\n%s", d)
	}
	if d := cmp.Diff(config.DefaultAutoscale.Policy(), c.AutoscaleOf("sys").Policy()); d != "" {
		t.Errorf("the example's autoscale block differs from the default policy it claims (-default +example):\n%s", d)
	}
}

// image.max_memory_bytes comes from the file or the environment; zero (the
// image pool's default) when unset, and negative (no budget) is valid.
func TestImageMemoryBudget(t *testing.T) {
	t.Parallel()
	if got := config.Default().Image.MaxMemoryBytes; got != 0 {
		t.Errorf("default image.max_memory_bytes = %d, want 0 (the image pool's default)", got)
	}
	path := t.TempDir() + "/warren.yaml"
	if err := os.WriteFile(path, []byte("image:\n  max_memory_bytes: 536870912\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		env  []string
		want int64
	}{
		{nil, 512 << 20},
		{[]string{"WARREN_IMAGE_MAX_MEMORY_BYTES=268435456"}, 256 << 20},
		{[]string{"WARREN_IMAGE_MAX_MEMORY_BYTES=-1"}, -1},
	} {
		c, err := config.Load(path, tt.env)
		if err == nil {
			err = c.Validate()
		}
		if err != nil || c.Image.MaxMemoryBytes != tt.want {
			t.Errorf("with %q: image.max_memory_bytes = %d, %v; want %d", tt.env, c.Image.MaxMemoryBytes, err, tt.want)
		}
	}
	if _, err := config.Load(path, []string{"WARREN_IMAGE_MAX_MEMORY_BYTES=1GiB"}); err == nil {
		t.Error("WARREN_IMAGE_MAX_MEMORY_BYTES=1GiB loaded; want a whole number of bytes")
	}
}

// A warren.yaml of comments only (a template, say) keeps every default.
func TestEmptyFileKeepsDefaults(t *testing.T) {
	t.Parallel()
	for _, body := range []string{"", "\n", "# nothing yet\n\n# really\n", "---\n# x\n"} {
		cfg, err := config.Load(writeFile(t, "warren.yaml", body), nil)
		if err != nil {
			t.Fatalf("Load of %q: %v", body, err)
		}
		if d := cmp.Diff(config.Default(), cfg); d != "" {
			t.Errorf("Load of %q (-defaults +got):\n%s", body, d)
		}
	}
}

// API keys come from api.keys, WARREN_API_KEYS or the file
// WARREN_API_KEYS_FILE names; bad entries are refused.
func TestAPIKeys(t *testing.T) {
	t.Parallel()
	a, b := apikey.Sum("a"), apikey.Sum("b")
	path := writeFile(t, "warren.yaml", `
api:
  keys:
    - name: billing
      sha256: `+a+`
      scopes: [submit, read]
      types: ["webhook.*"]
      jobs_per_minute: 600
`)
	c, err := config.Load(path, nil)
	if err == nil {
		err = c.Validate()
	}
	if err != nil {
		t.Fatal(err)
	}
	want := []apikey.Key{{Name: "billing", SHA256: a, Scopes: []apikey.Scope{apikey.Submit, apikey.Read}, Types: []string{"webhook.*"}, JobsPerMinute: 600}}
	if d := cmp.Diff(want, c.API.Keys); d != "" {
		t.Errorf("api.keys from YAML (-want +got):\n%s", d)
	}

	env := []string{"WARREN_API_KEYS=ci:submit:" + a + ",ops:admin:" + b}
	if c, err = config.Load(path, env); err != nil {
		t.Fatal(err)
	}
	if len(c.API.Keys) != 2 || c.API.Keys[0].Name != "ci" || c.API.Keys[1].Name != "ops" {
		t.Errorf("WARREN_API_KEYS does not replace the file's keys: %+v", c.API.Keys)
	}

	file := writeFile(t, "keys", "# the API's keys\nci:submit:"+a+"\n\nops:admin:"+b+"\n")
	if c, err = config.Load(path, []string{"WARREN_API_KEYS_FILE=" + file, "WARREN_API_KEY_FILE=" + writeFile(t, "key", "wrn_secret\n")}); err != nil {
		t.Fatal(err)
	}
	if len(c.API.Keys) != 2 || c.API.Keys[1].Name != "ops" || c.APIKey != "wrn_secret" {
		t.Errorf("from files: keys %+v, api key %q", c.API.Keys, c.APIKey)
	}

	for name, env := range map[string][]string{
		"malformed":      {"WARREN_API_KEYS=ci:submit"},
		"unknown scope":  {"WARREN_API_KEYS=ci:write:" + a},
		"secret as hash": {"WARREN_API_KEYS=ci:submit:wrn_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		"duplicate name": {"WARREN_API_KEYS=ci:submit:" + a + ",ci:read:" + b},
		"same secret":    {"WARREN_API_KEYS=ci:submit:" + a + ",ops:read:" + a},
	} {
		c, err := config.Load("", env)
		if err == nil {
			err = c.Validate()
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "wrn_AAAA") {
			t.Errorf("%s: the error repeats what may be a secret: %v", name, err)
		}
	}
}

// A cluster's nodes are given as amqp_urls, a YAML list, or as one
// comma-separated amqp_url; either way AMQPURL holds them, and the
// environment still overrides the file.
func TestAMQPURLs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	list := write("list.yaml", "amqp_urls:\n  - amqp://u:p@rabbit-0:5672/\n  - amqp://u:p@rabbit-1:5672/\namqp_quorum_group_size: 3\n")
	got, err := config.Load(list, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.AMQPURL != "amqp://u:p@rabbit-0:5672/,amqp://u:p@rabbit-1:5672/" || got.AMQPURLs != nil || got.AMQPQuorumGroupSize != 3 {
		t.Errorf("amqp_urls: AMQPURL %q, AMQPURLs %q, group size %d", got.AMQPURL, got.AMQPURLs, got.AMQPQuorumGroupSize)
	}
	if env := got.ChildEnv(); env["WARREN_AMQP_URL"] != got.AMQPURL || env["WARREN_AMQP_QUORUM_GROUP_SIZE"] != "3" {
		t.Errorf("a child process would get %q and group size %q", env["WARREN_AMQP_URL"], env["WARREN_AMQP_QUORUM_GROUP_SIZE"])
	}
	got, err = config.Load(list, []string{"WARREN_AMQP_URL=amqp://u:p@other:5672/"})
	if err != nil || got.AMQPURL != "amqp://u:p@other:5672/" {
		t.Errorf("with WARREN_AMQP_URL set: AMQPURL %q, %v; want the variable's", got.AMQPURL, err)
	}
	_, err = config.Load(write("both.yaml", "amqp_url: amqp://a/\namqp_urls: [amqp://b/]\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "amqp_url and amqp_urls are both set") {
		t.Errorf("both keys: %v", err)
	}
	got, err = config.Load(write("none.yaml", "namespace: n\n"), nil)
	if err != nil || got.AMQPURL != config.Default().AMQPURL {
		t.Errorf("neither key: AMQPURL %q, %v; want the default", got.AMQPURL, err)
	}
}
