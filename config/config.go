// Package config reads warren's settings. Each setting has a default that
// works on a laptop, may be set in warren.yaml, overridden by a WARREN_*
// environment variable, and overridden again by a command-line flag. The
// result is handed to each component as that component's own Config struct.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/warrenhq/warren/apikey"
	"github.com/warrenhq/warren/autoscale"
	"github.com/warrenhq/warren/egress"
	"github.com/warrenhq/warren/jobs"
)

// Config is every setting of a warren process. Field docs name the YAML key
// and the environment variable.
type Config struct {
	// AMQPURL is the RabbitMQ address (amqp_url, WARREN_AMQP_URL), or the
	// addresses of a cluster's nodes separated by commas: each process
	// connects to one that answers, and to another when it goes away.
	AMQPURL string `yaml:"amqp_url"`
	// AMQPURLs is the nodes' addresses as a YAML list (amqp_urls), in
	// place of amqp_url; Load joins them into AMQPURL and clears this.
	AMQPURLs []string `yaml:"amqp_urls"`
	// AMQPQuorumGroupSize is how many nodes each quorum queue is
	// replicated on when warren creates it (amqp_quorum_group_size,
	// WARREN_AMQP_QUORUM_GROUP_SIZE); 0 means RabbitMQ's default, every
	// node of the cluster.
	AMQPQuorumGroupSize int `yaml:"amqp_quorum_group_size"`
	// RedisURL is the Redis address (redis_url, WARREN_REDIS_URL).
	RedisURL string `yaml:"redis_url"`
	// Namespace prefixes every exchange, queue and Redis key (namespace,
	// WARREN_NAMESPACE).
	Namespace jobs.Namespace `yaml:"namespace"`
	// LogLevel is debug, info, warn or error (log_level, WARREN_LOG_LEVEL).
	LogLevel string `yaml:"log_level"`
	// APIURL is where CLI commands find the API (api_url, WARREN_API_URL).
	APIURL string `yaml:"api_url"`
	// APIKey is the key CLI commands send (api_key, WARREN_API_KEY,
	// WARREN_API_KEY_FILE, --api-key). Never printed.
	APIKey string `yaml:"api_key"`
	// ManagementURL is RabbitMQ's management API, which gives a queue's
	// unacknowledged messages as well as its ready ones (management_url,
	// WARREN_MANAGEMENT_URL). Empty means port 15672 on the AMQP host with
	// the AMQP credentials (https on 15671 for amqps://); "off" means
	// measure with AMQP alone.
	ManagementURL string `yaml:"management_url"`
	// DebugAddr, when set, serves Go's profiler (/debug/pprof/) from the
	// API, worker and supervisor processes (debug_addr, WARREN_DEBUG_ADDR).
	// Never expose it beyond loopback.
	DebugAddr string `yaml:"debug_addr"`
	// AMQPTLS is how amqps:// connections reach RabbitMQ and its
	// management API (amqp_tls.*, WARREN_AMQP_TLS_*).
	AMQPTLS TLS `yaml:"amqp_tls"`
	// RedisTLS is how rediss:// connections reach Redis (redis_tls.*,
	// WARREN_REDIS_TLS_*).
	RedisTLS TLS `yaml:"redis_tls"`
	// Redis is how warren finds its Redis beyond redis_url (Sentinel), and
	// how many replicas its writes wait for (redis.*).
	Redis Redis `yaml:"redis"`
	// APICAFile is a PEM file of the CAs that sign an https API's
	// certificate, for the client commands (api_ca_file,
	// WARREN_API_CA_FILE); empty means the system's.
	APICAFile string `yaml:"api_ca_file"`

	Rescue     Rescue          `yaml:"rescue"`
	Schedule   Schedule        `yaml:"schedule"`
	Workflow   Workflow        `yaml:"workflow"`
	API        API             `yaml:"api"`
	Store      Store           `yaml:"store"`
	Worker     Worker          `yaml:"worker"`
	Supervisor Supervisor      `yaml:"supervisor"`
	Pools      map[string]Pool `yaml:"pools"`
	Webhook    Webhook         `yaml:"webhook"`
	Image      Image           `yaml:"image"`
}

// Webhook configures the webhook delivery service (pool "webhook").
type Webhook struct {
	// Secrets are the signing secrets by name, each with the URLs it signs
	// for; a job names one, never carries it (webhook.secrets.NAME).
	// WARREN_WEBHOOK_SECRETS, "name=value,name2=value2", sets the values of
	// the secrets it names, keeping their allow lists from the file. Only
	// the webhook pool uses them: it warns at start of a secret without a
	// value (jobs naming it fail with unknown_secret) or without an allow
	// list (they fail with secret_not_allowed).
	Secrets map[string]WebhookSecret `yaml:"secrets"`
	// Allow lists targets that may be called although they are loopback,
	// private or link-local: host[:port] or CIDR[:port], host an address
	// or a name (webhook.allow; WARREN_WEBHOOK_ALLOW, comma-separated).
	// Without a port every port is allowed. Empty: none.
	Allow []string `yaml:"allow"`
	// FollowRedirects follows redirects within the origin of a delivery's
	// URL (webhook.follow_redirects, WARREN_WEBHOOK_FOLLOW_REDIRECTS); false
	// follows none.
	FollowRedirects bool `yaml:"follow_redirects"`
	// KeepResponseBody keeps the start of the receiver's answer in the
	// result and in failure messages (webhook.keep_response_body,
	// WARREN_WEBHOOK_KEEP_RESPONSE_BODY); false keeps neither.
	KeepResponseBody bool `yaml:"keep_response_body"`
	// MaxResponseBody is how many bytes of a response body the result keeps
	// when KeepResponseBody is set (webhook.max_response_body); zero means
	// 4096.
	MaxResponseBody int `yaml:"max_response_body"`
}

// WebhookSecret is a signing secret and the URLs it signs for
// (webhook.secrets.NAME).
type WebhookSecret struct {
	// Secret is the signing key (webhook.secrets.NAME.secret); empty means
	// it comes from WARREN_WEBHOOK_SECRETS.
	Secret string `yaml:"secret"`
	// Allow lists the URL prefixes, such as https://a.example/hooks/, that
	// the secret signs for (webhook.secrets.NAME.allow). Empty: none.
	Allow []string `yaml:"allow"`
}

// UnmarshalYAML reads a secret as a mapping, or as a plain string: the
// form before secrets had allow lists, read as a secret with none.
func (s *WebhookSecret) UnmarshalYAML(unmarshal func(any) error) error {
	var value string
	if err := unmarshal(&value); err == nil {
		*s = WebhookSecret{Secret: value}
		return nil
	}
	type plain WebhookSecret
	return unmarshal((*plain)(s))
}

// Image configures the image service (pool "image").
type Image struct {
	// Allow lists addresses or CIDR prefixes that image URLs may reach
	// although they are loopback, private or link-local (image.allow;
	// WARREN_IMAGE_ALLOW, comma-separated): unlike Webhook.Allow, no host
	// names and no ports. Empty: none.
	Allow []string `yaml:"allow"`
	// MaxInputBytes bounds an input image (image.max_input_bytes); zero
	// means 20 MiB.
	MaxInputBytes int64 `yaml:"max_input_bytes"`
	// MaxPixels bounds an input image's width×height, checked before
	// decoding (image.max_pixels); zero means 40 million.
	MaxPixels int64 `yaml:"max_pixels"`
	// MaxOutputBytes bounds an output image (image.max_output_bytes); zero
	// means 10 MiB.
	MaxOutputBytes int `yaml:"max_output_bytes"`
	// MaxMemoryBytes is the memory budget a process's image jobs share,
	// counted from each input's header before it is decoded
	// (image.max_memory_bytes); zero means 1 GiB, negative means none.
	MaxMemoryBytes int64 `yaml:"max_memory_bytes"`
}

// Prefixes parses an allow list: CIDR prefixes, or single addresses taken
// as one-address prefixes.
func Prefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("allow list entry %q: want an address or a CIDR prefix such as 10.0.0.0/8", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// API configures the HTTP producer API.
type API struct {
	// Addr is the listen address (api.addr, WARREN_HTTP_ADDR).
	Addr string `yaml:"addr"`
	// TLSCert and TLSKey are PEM files of the API's certificate chain and
	// its key (api.tls_cert, api.tls_key; WARREN_API_TLS_CERT,
	// WARREN_API_TLS_KEY): both set, the API serves HTTPS only; both
	// empty, plain HTTP.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// MaxBodyBytes bounds a request body (api.max_body_bytes,
	// WARREN_MAX_BODY_BYTES).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ReadTimeout bounds the reading of a request, headers and body
	// (api.read_timeout, WARREN_API_READ_TIMEOUT).
	ReadTimeout Duration `yaml:"read_timeout"`
	// MaxConnections bounds the connections the API holds at once
	// (api.max_connections, WARREN_API_MAX_CONNECTIONS).
	MaxConnections int `yaml:"max_connections"`
	// MaxJSONDepth bounds how deeply a request body's JSON nests
	// (api.max_json_depth, WARREN_API_MAX_JSON_DEPTH).
	MaxJSONDepth int `yaml:"max_json_depth"`
	// MaxDelay bounds how far ahead a job may be due, by its delay or
	// run_at, and its backoff's waits (api.max_delay,
	// WARREN_API_MAX_DELAY); at most the delay levels' 13.6 years.
	MaxDelay Duration `yaml:"max_delay"`
	// TenantKey is the metadata key that names a job's tenant in a rate
	// limit's tenant rate when the limit names none (api.tenant_key,
	// WARREN_API_TENANT_KEY; docs/ratelimits.md). Empty: a tenant rate
	// must name its key.
	TenantKey string `yaml:"tenant_key"`
	// Keys are the API keys callers must present (api.keys;
	// WARREN_API_KEYS, entries NAME:SCOPE+SCOPE:SHA256HEX[:TYPE+TYPE]
	// separated by commas or lines, or WARREN_API_KEYS_FILE naming a file
	// of them). Empty: no keys, and the API serves loopback only.
	Keys []apikey.Key `yaml:"keys"`
	// InsecureNoAuth lets an API without keys listen beyond loopback
	// (api.insecure_no_auth, WARREN_API_INSECURE_NO_AUTH,
	// --insecure-no-auth): anyone who reaches it may do anything.
	InsecureNoAuth bool `yaml:"insecure_no_auth"`
	// MetricsAddr, when set, serves /metrics on an address of its own,
	// without keys, for a scraper on a private network
	// (api.metrics_addr, WARREN_API_METRICS_ADDR). Empty: /metrics is
	// served with the API and needs a read key where keys are set.
	MetricsAddr string `yaml:"metrics_addr"`
	// AllowedHosts are the Host headers the API answers besides its
	// defaults (api.allowed_hosts, WARREN_API_ALLOWED_HOSTS,
	// comma-separated; "*" allows any). Without keys the default is
	// loopback names only, which stops DNS rebinding; with keys any host.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// AllowedOrigins are the browser origins, such as
	// https://ops.example.com, allowed to send requests besides the API's
	// own (api.allowed_origins, WARREN_API_ALLOWED_ORIGINS). Empty: none.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// RequestsPerSecond is each key's default sustained request rate,
	// with bursts of twice as many (api.requests_per_second,
	// WARREN_API_REQUESTS_PER_SECOND); negative means no limit.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// JobsPerMinute is each key's default bound on the jobs it submits in
	// any minute (api.jobs_per_minute, WARREN_API_JOBS_PER_MINUTE);
	// negative means no limit.
	JobsPerMinute int `yaml:"jobs_per_minute"`
}

// Store configures the Redis records.
type Store struct {
	// Retention is how long a terminal job's record is kept (store.retention,
	// WARREN_RETENTION), and an unfinished one's after the job is next due
	// or its running attempt's deadline.
	Retention Duration `yaml:"retention"`
	// IdempotencyWindow is how long an idempotency key is remembered
	// (store.idempotency_window, WARREN_IDEMPOTENCY_WINDOW).
	IdempotencyWindow Duration `yaml:"idempotency_window"`
}

// Redis configures Redis with failover. docs/guarantees.md says what a
// failover can lose with and without the wait.
type Redis struct {
	Sentinel RedisSentinel `yaml:"sentinel"`
	// WaitReplicas, when positive, is how many replicas must acknowledge a
	// job's record before the job is accepted, and an attempt's outcome
	// before its message is acknowledged (redis.wait_replicas,
	// WARREN_REDIS_WAIT_REPLICAS); zero means no wait.
	WaitReplicas int `yaml:"wait_replicas"`
	// WaitTimeout bounds that wait (redis.wait_timeout,
	// WARREN_REDIS_WAIT_TIMEOUT); a submission that is not acknowledged in
	// time is refused as unavailable.
	WaitTimeout Duration `yaml:"wait_timeout"`
}

// RedisSentinel names the sentinels that watch warren's Redis. With them,
// redis_url gives only the user, password, database and scheme.
type RedisSentinel struct {
	// Addrs are the sentinels' host:port addresses (redis.sentinel.addrs;
	// WARREN_REDIS_SENTINEL_ADDRS, comma-separated); empty means no
	// Sentinel.
	Addrs []string `yaml:"addrs"`
	// Master is the name they monitor the primary by
	// (redis.sentinel.master, WARREN_REDIS_SENTINEL_MASTER).
	Master string `yaml:"master"`
	// Password is the sentinels' own password, if they ask for one
	// (redis.sentinel.password, WARREN_REDIS_SENTINEL_PASSWORD).
	Password string `yaml:"password"`
}

// Worker configures worker processes.
type Worker struct {
	// HealthAddr, when set, serves /healthz and /readyz (worker.health_addr,
	// WARREN_HEALTH_ADDR).
	HealthAddr string `yaml:"health_addr"`
	// ShutdownGrace is how long running jobs may finish after a stop signal
	// (worker.shutdown_grace, WARREN_SHUTDOWN_GRACE).
	ShutdownGrace Duration `yaml:"shutdown_grace"`
}

// Rescue configures the rescuer, which every API and worker process runs
// (one at a time per namespace holds its lease and looks): it publishes
// again the jobs whose messages the broker lost.
type Rescue struct {
	// Interval is how often it looks (rescue.interval,
	// WARREN_RESCUE_INTERVAL); a negative one ("-1s") turns it off in this
	// process.
	Interval Duration `yaml:"interval"`
	// Grace is how long past its due time a job may wait, or run without
	// its worker's lease, before it is rescued (rescue.grace,
	// WARREN_RESCUE_GRACE).
	Grace Duration `yaml:"grace"`
}

// Schedule configures the scheduler, which every API, worker and
// supervisor process runs (one at a time per namespace holds its lease and
// fires the schedules' ticks; docs/schedules.md).
type Schedule struct {
	// Grace is how late a tick may still fire on its own (schedule.grace,
	// WARREN_SCHEDULE_GRACE): a tick further past when a process comes to
	// it passed while nothing ran, and its schedule's catch_up says whether
	// it fires once or is skipped. Zero means 30s; otherwise at least 10s.
	Grace Duration `yaml:"grace"`
}

// Workflow configures the workflow advancer, which every API, worker and
// supervisor process runs (one at a time per namespace holds its lease and
// moves workflows on; docs/workflows.md).
type Workflow struct {
	// Sweep is how often the advancer looks at every active workflow,
	// whatever it heard on the jobs' done channels (workflow.sweep,
	// WARREN_WORKFLOW_SWEEP): how soon a step follows an end it did not
	// hear. From 1s to 10m.
	Sweep Duration `yaml:"sweep"`
	// PendingGrace is how long a workflow may stay pending, its submitter
	// accepting its first jobs, before the advancer takes it over as if
	// the submitter died (workflow.pending_grace,
	// WARREN_WORKFLOW_PENDING_GRACE). From 10s to 1h.
	PendingGrace Duration `yaml:"pending_grace"`
}

// Supervisor configures `warren autoscale`.
type Supervisor struct {
	// Addr, when set, serves the supervisor's /healthz and /status
	// (supervisor.addr, WARREN_SUPERVISOR_ADDR).
	Addr string `yaml:"addr"`
	// LeaseTTL is how long a pool's supervisor lease lasts unless renewed
	// (supervisor.lease_ttl, WARREN_SUPERVISOR_LEASE_TTL): of several
	// supervisors of a pool, the one holding it runs the pool's processes.
	// Zero means 10s; otherwise it must be at least 1s.
	LeaseTTL Duration `yaml:"lease_ttl"`
}

// Pool configures one worker pool (pools.NAME; env WARREN_POOL_NAME_*).
type Pool struct {
	// Enabled says whether `warren autoscale` (given no pools) and `warren
	// deploy render` run the pool (pools.NAME.enabled); nil means yes, but
	// for the built-in sys pool, which runs only where asked for (see
	// SysPool).
	Enabled *bool `yaml:"enabled"`
	// Concurrency is how many jobs run at once in one process; zero means
	// the pool's own default.
	Concurrency int `yaml:"concurrency"`
	// Prefetch is how many unacknowledged messages the broker hands one
	// process; zero means adaptive: Concurrency, raised up to 4× while jobs
	// take under 25 ms.
	Prefetch int `yaml:"prefetch"`
	// Fairness is how many jobs of the pool's high lane (priority 5–9) a
	// process starts in a row while one of priority 0–4 waits, before it
	// starts that one (docs/priorities.md); zero means 8.
	Fairness int `yaml:"fairness"`
	// Command runs one worker process of this pool under `warren
	// autoscale` (pools.NAME.command), such as ["python3",
	// "workers/python/wordcount.py"]; empty means `warren worker NAME`,
	// which serves the built-in pools.
	Command []string `yaml:"command"`
	// Image is the container image of this pool's workers on Kubernetes
	// (pools.NAME.image, used by `warren deploy render`); empty means
	// warren's own image running `warren worker NAME`.
	Image string `yaml:"image"`
	// Autoscale is the pool's scaling policy (pools.NAME.autoscale); nil
	// means DefaultAutoscale.
	Autoscale *Autoscale `yaml:"autoscale"`
}

// Autoscale is a pool's scaling policy as written in warren.yaml; the same
// values drive `warren autoscale` on one machine and the KEDA ScaledObjects
// `warren deploy render` writes.
type Autoscale struct {
	// Min and Max bound the worker processes (min_replicas, max_replicas).
	// Min may be 0: the pool then costs nothing while idle. Max zero means
	// Min.
	Min int `yaml:"min_replicas"`
	Max int `yaml:"max_replicas"`
	// TargetBacklog is the backlog (ready + unacknowledged messages) one
	// process should carry (target_backlog); zero means 10.
	TargetBacklog int `yaml:"target_backlog"`
	// ActivationBacklog is the backlog above which a pool at zero starts
	// (activation_backlog); zero means any backlog.
	ActivationBacklog int `yaml:"activation_backlog"`
	// TargetAge, if set, is the longest a job should wait (target_age): a
	// pool whose oldest waiting job is older grows in proportion.
	TargetAge Duration `yaml:"target_age"`
	// Interval is how often the pool is measured and sized (interval);
	// zero means 5s.
	Interval Duration `yaml:"interval"`
	// ScaleUpWindow and ScaleDownWindow are the stabilization windows
	// (scale_up_window, scale_down_window); zero means 0s and 60s, and a
	// negative scale_down_window ("-1s") means none.
	ScaleUpWindow   Duration `yaml:"scale_up_window"`
	ScaleDownWindow Duration `yaml:"scale_down_window"`
	// MaxStep bounds how many processes one decision adds or removes
	// (max_step); zero means no bound.
	MaxStep int `yaml:"max_step"`
}

// Policy returns the autoscale package's form of a, with defaults filled
// in.
func (a Autoscale) Policy() autoscale.Policy { return a.policy().WithDefaults() }

func (a Autoscale) policy() autoscale.Policy {
	return autoscale.Policy{
		Min:               a.Min,
		Max:               a.Max,
		TargetBacklog:     a.TargetBacklog,
		ActivationBacklog: a.ActivationBacklog,
		TargetAge:         a.TargetAge.Std(),
		Interval:          a.Interval.Std(),
		ScaleUpWindow:     a.ScaleUpWindow.Std(),
		ScaleDownWindow:   a.ScaleDownWindow.Std(),
		MaxStep:           a.MaxStep,
	}
}

// SysPool is the built-in pool of test and load types (sys.echo, sys.sleep,
// sys.spin, sys.fail). Anyone who may submit jobs could burn a CPU with
// sys.spin, so no deployment serves it unasked: `warren dev` and `warren
// worker sys` do, `warren autoscale` and `warren deploy render` only with
// pools.sys.enabled.
const SysPool = "sys"

// PoolEnabled reports whether `warren autoscale` and `warren deploy render`
// run the pool: its pools.NAME.enabled, else true for every pool but
// SysPool.
func (c *Config) PoolEnabled(name string) bool {
	if e := c.Pools[name].Enabled; e != nil {
		return *e
	}
	return name != SysPool
}

// DefaultAutoscale is the policy of a pool with no autoscale block: one
// process at least, up to four, each carrying a backlog of 100 jobs.
var DefaultAutoscale = Autoscale{Min: 1, Max: 4, TargetBacklog: 100}

// AutoscaleOf returns the pool's policy: its autoscale block, or
// DefaultAutoscale.
func (c *Config) AutoscaleOf(pool string) Autoscale {
	if a := c.Pools[pool].Autoscale; a != nil {
		return *a
	}
	return DefaultAutoscale
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalText reads "30s" style text.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: want text such as \"30s\"", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes d as "30s" style text.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Default returns the settings that work on a laptop with RabbitMQ and Redis
// on loopback.
func Default() Config {
	return Config{
		AMQPURL:   "amqp://guest:guest@127.0.0.1:5672/",
		RedisURL:  "redis://127.0.0.1:6379/0",
		Namespace: jobs.DefaultNamespace,
		LogLevel:  "info",
		APIURL:    "http://127.0.0.1:8080",
		API: API{
			Addr: "127.0.0.1:8080", MaxBodyBytes: 1 << 20,
			ReadTimeout: Duration(30 * time.Second), MaxConnections: 1024, MaxJSONDepth: 64,
			RequestsPerSecond: 100, JobsPerMinute: 60000,
			MaxDelay: Duration(30 * 24 * time.Hour),
		},
		Store: Store{
			Retention:         Duration(7 * 24 * time.Hour),
			IdempotencyWindow: Duration(24 * time.Hour),
		},
		Supervisor: Supervisor{
			LeaseTTL: Duration(10 * time.Second),
		},
		Worker:   Worker{ShutdownGrace: Duration(30 * time.Second)},
		Redis:    Redis{WaitTimeout: Duration(time.Second)},
		Rescue:   Rescue{Interval: Duration(30 * time.Second), Grace: Duration(time.Minute)},
		Schedule: Schedule{Grace: Duration(30 * time.Second)},
		Workflow: Workflow{Sweep: Duration(5 * time.Second), PendingGrace: Duration(time.Minute)},
	}
}

// DefaultFile is the file Load reads when no path is given and WARREN_CONFIG
// is unset; it is optional.
const DefaultFile = "warren.yaml"

// Load returns the defaults overlaid with the YAML file at path and then the
// environment (environ, usually os.Environ()). An empty path means
// WARREN_CONFIG or else ./warren.yaml if it exists; a path that was named must
// exist.
func Load(path string, environ []string) (Config, error) {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && v != "" {
			env[k] = v
		}
	}
	cfg := Default()
	named := path != ""
	if !named {
		path = env["WARREN_CONFIG"]
		named = path != ""
	}
	if path == "" {
		path = DefaultFile
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !named:
	case err != nil:
		return cfg, fmt.Errorf("read config: %w", err)
	case emptyYAML(b):
		// Decoding an empty document would zero every default.
	default:
		// Unset, so that a file naming both amqp_url and amqp_urls is told.
		cfg.AMQPURL = ""
		if err := yaml.UnmarshalWithOptions(b, &cfg, yaml.Strict()); err != nil {
			return cfg, fmt.Errorf("config %s: %s", path, redactSource(yaml.FormatError(err, false, true)))
		}
		switch {
		case cfg.AMQPURL != "" && len(cfg.AMQPURLs) > 0:
			return cfg, fmt.Errorf("config %s: amqp_url and amqp_urls are both set: set one", path)
		case len(cfg.AMQPURLs) > 0:
			cfg.AMQPURL, cfg.AMQPURLs = strings.Join(cfg.AMQPURLs, ","), nil
		case cfg.AMQPURL == "":
			cfg.AMQPURL = Default().AMQPURL
		}
	}
	if err := cfg.applyEnv(env); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// emptyYAML reports whether a YAML file holds no document: nothing but
// blank lines, comments and document markers.
func emptyYAML(b []byte) bool {
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") && line != "---" && line != "..." {
			return false
		}
	}
	return true
}

// envValue returns the variable name's value: the variable itself or, for a
// secret, the contents of the file its _FILE variable names, trailing line
// breaks trimmed. Both set is an error, as it is ambiguous.
func envValue(env map[string]string, name string) (string, error) {
	path := env[name+"_FILE"]
	if !secretEnvs[name] || path == "" {
		return env[name], nil
	}
	if env[name] != "" {
		return "", fmt.Errorf("%s and %s_FILE are both set: set one", name, name)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: %w", name, err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s_FILE: %s is empty", name, path)
	}
	return v, nil
}

// applyEnv overrides settings from WARREN_* variables.
func (c *Config) applyEnv(env map[string]string) error {
	for _, s := range c.settings() {
		v, err := envValue(env, s.Env)
		if err != nil {
			return err
		}
		if v != "" {
			if err := s.value.set(v); err != nil {
				return fmt.Errorf("%s: %w", s.Env, err)
			}
		}
	}
	for name, value := range env {
		rest, ok := strings.CutPrefix(name, "WARREN_POOL_")
		if !ok {
			continue
		}
		var pool, field string
		for _, suffix := range []string{"_CONCURRENCY", "_PREFETCH", "_FAIRNESS"} {
			if p, ok := strings.CutSuffix(rest, suffix); ok {
				pool, field = strings.ToLower(p), suffix
			}
		}
		if pool == "" {
			continue
		}
		n, err := strconv.Atoi(value)
		if err != nil {
			return fmt.Errorf("%s: want a whole number, got %q", name, value)
		}
		p := c.Pools[pool]
		switch field {
		case "_CONCURRENCY":
			p.Concurrency = n
		case "_PREFETCH":
			p.Prefetch = n
		default:
			p.Fairness = n
		}
		if c.Pools == nil {
			c.Pools = map[string]Pool{}
		}
		c.Pools[pool] = p
	}
	return nil
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	if err := c.Namespace.Validate(); err != nil {
		return err
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		return err
	}
	switch {
	case c.AMQPQuorumGroupSize < 0:
		return fmt.Errorf("amqp_quorum_group_size must be 0 (RabbitMQ's default) or more")
	case c.API.MaxBodyBytes <= 0:
		return fmt.Errorf("api.max_body_bytes must be positive")
	case c.API.ReadTimeout <= 0:
		return fmt.Errorf("api.read_timeout must be positive")
	case c.API.MaxConnections <= 0:
		return fmt.Errorf("api.max_connections must be positive")
	case c.API.MaxJSONDepth <= 0:
		// The API refuses one over its own bound (api.MaxJSONDepth).
		return fmt.Errorf("api.max_json_depth must be positive")
	case c.API.TenantKey != "" && jobs.ValidTenantKey(c.API.TenantKey) != nil:
		return fmt.Errorf("api.tenant_key: %w", jobs.ValidTenantKey(c.API.TenantKey))
	case c.API.MaxDelay <= 0 || c.API.MaxDelay.Std() > jobs.MaxDelay:
		// The delay levels hold no more.
		return fmt.Errorf("api.max_delay must be positive and at most %s", jobs.MaxDelay)
	case c.Store.Retention <= 0:
		return fmt.Errorf("store.retention must be positive")
	case c.Store.IdempotencyWindow <= 0:
		return fmt.Errorf("store.idempotency_window must be positive")
	case c.Worker.ShutdownGrace <= 0:
		return fmt.Errorf("worker.shutdown_grace must be positive")
	case c.Rescue.Interval == 0:
		return fmt.Errorf("rescue.interval must not be zero (a negative one turns the rescuer off)")
	case c.Rescue.Grace <= 0:
		return fmt.Errorf("rescue.grace must be positive")
	case c.Schedule.Grace < 0 || (c.Schedule.Grace > 0 && c.Schedule.Grace < Duration(10*time.Second)):
		// It must outlast the scheduler lease's handover (5s and a turn).
		return fmt.Errorf("schedule.grace must be at least 10s (or 0 for the default, 30s)")
	case c.Workflow.Sweep < Duration(time.Second) || c.Workflow.Sweep > Duration(10*time.Minute):
		return fmt.Errorf("workflow.sweep must be from 1s to 10m")
	case c.Workflow.PendingGrace < Duration(10*time.Second) || c.Workflow.PendingGrace > Duration(time.Hour):
		// Shorter would take over workflows whose submitters are still
		// accepting their first jobs (harmless, but wasted work).
		return fmt.Errorf("workflow.pending_grace must be from 10s to 1h")
	case c.Supervisor.LeaseTTL < 0 || (c.Supervisor.LeaseTTL > 0 && c.Supervisor.LeaseTTL < Duration(time.Second)):
		// Renewed every third of it over a network: shorter would make a
		// supervisor give its pools up at every slow round trip.
		return fmt.Errorf("supervisor.lease_ttl must be at least 1s (or 0 for the default, 10s)")
	case (len(c.Redis.Sentinel.Addrs) == 0) != (c.Redis.Sentinel.Master == ""):
		return fmt.Errorf("redis.sentinel.addrs (WARREN_REDIS_SENTINEL_ADDRS) and redis.sentinel.master (WARREN_REDIS_SENTINEL_MASTER) " +
			"go together: set both to find Redis through Sentinel, or neither for the Redis of redis_url")
	case c.Redis.WaitReplicas < 0:
		return fmt.Errorf("redis.wait_replicas must not be negative")
	case c.Redis.WaitTimeout <= 0:
		return fmt.Errorf("redis.wait_timeout must be positive")
	}
	for _, addr := range c.Redis.Sentinel.Addrs {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("redis.sentinel.addrs: %q: want host:port, separated by commas", addr)
		}
	}
	for key, l := range map[string][]string{"image.allow": c.Image.Allow} {
		if _, err := Prefixes(l); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	if _, err := apikey.NewRing(c.API.Keys); err != nil {
		return fmt.Errorf("api.keys: %w", err)
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	if _, err := egress.ParseRules(c.Webhook.Allow); err != nil {
		return fmt.Errorf("webhook.allow: %w", err)
	}
	if c.Webhook.MaxResponseBody < 0 || c.Image.MaxInputBytes < 0 || c.Image.MaxPixels < 0 || c.Image.MaxOutputBytes < 0 {
		return fmt.Errorf("webhook and image limits must not be negative")
	}
	names := make([]string, 0, len(c.Pools))
	for name := range c.Pools {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := c.Pools[name]
		if !jobs.ValidPoolName(name) {
			return fmt.Errorf("pools.%s: not a valid pool name", name)
		}
		if p.Concurrency < 0 || p.Prefetch < 0 || p.Fairness < 0 {
			return fmt.Errorf("pools.%s: concurrency, prefetch and fairness must not be negative", name)
		}
		if p.Autoscale != nil {
			a := p.Autoscale
			if err := a.policy().Validate(); err != nil {
				return fmt.Errorf("pools.%s.autoscale: %w", name, err)
			}
		}
	}
	return nil
}

// ParseLevel reads a log level name.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
