package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/warrenhq/warren/apikey"
	"github.com/warrenhq/warren/jobs"
)

// Each setting is declared once, in settings: its YAML key (which the
// Config struct's yaml tags must match), its environment variable, its
// flag if it has one, whether it may come from a file, and whether the
// supervisor hands it to the worker processes it starts. The CLI's flags,
// the environment, the secrets' _FILE variables and the child processes'
// environment are all read from that one list, and a test holds
// docs/configuration.md's table to it.

// Setting describes one setting.
type Setting struct {
	// Key is its YAML key, such as "api.addr".
	Key string
	// Env is its environment variable, such as WARREN_HTTP_ADDR.
	Env string
	// Flag is the command-line flag that sets it ("addr"), or "".
	Flag string
	// Usage is the flag's help.
	Usage string
	// Commands are the commands that take the flag (such as "worker");
	// none means every command.
	Commands []string
	// Bool says the flag takes no value.
	Bool bool
	// Secret says the value may instead be read from the file Env_FILE
	// names (a mounted secret), so that it need not sit in the
	// environment.
	Secret bool
	// Child says the supervisor passes the setting to the worker processes
	// it starts, as Env, so that they work with the same broker, Redis,
	// namespace and timings.
	Child bool
}

// setting is a Setting bound to the field of a Config it sets.
type setting struct {
	Setting
	value value
}

// value reads and writes one field as text, as the environment gives it.
type value interface {
	set(text string) error
	// get returns the value as text that set reads back; "" for none.
	get() string
}

// Settings lists every setting, in the order of docs/configuration.md's
// table.
func Settings() []Setting {
	var c Config
	ss := c.settings()
	out := make([]Setting, len(ss))
	for i, s := range ss {
		out[i] = s.Setting
	}
	return out
}

// secretEnvs names the variables that may be given as X_FILE.
var secretEnvs = func() map[string]bool {
	m := map[string]bool{}
	for _, s := range Settings() {
		if s.Secret {
			m[s.Env] = true
		}
	}
	return m
}()

// Set overrides the setting a flag names, by its YAML key (such as
// "api.addr"); the CLI calls it for flags given.
func (c *Config) Set(key, text string) error {
	for _, s := range c.settings() {
		if s.Key == key {
			return s.value.set(text)
		}
	}
	return fmt.Errorf("unknown setting %q", key)
}

// Value returns the setting of key as the text its variable would hold,
// and whether there is such a setting.
func (c *Config) Value(key string) (string, bool) {
	for _, s := range c.settings() {
		if s.Key == key {
			return s.value.get(), true
		}
	}
	return "", false
}

// ChildEnv returns the variables that give a worker process the settings
// it shares with its supervisor (name → value): those declared Child that
// are set, and each pool's concurrency, prefetch and fairness, which a worker in
// another language, reading no warren.yaml, learns only this way.
func (c *Config) ChildEnv() map[string]string {
	env := map[string]string{}
	for _, s := range c.settings() {
		if v := s.value.get(); s.Child && v != "" {
			env[s.Env] = v
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Pools)) {
		p, upper := c.Pools[name], "WARREN_POOL_"+strings.ToUpper(name)
		if p.Concurrency > 0 {
			env[upper+"_CONCURRENCY"] = strconv.Itoa(p.Concurrency)
		}
		if p.Prefetch > 0 {
			env[upper+"_PREFETCH"] = strconv.Itoa(p.Prefetch)
		}
		if p.Fairness > 0 {
			env[upper+"_FAIRNESS"] = strconv.Itoa(p.Fairness)
		}
	}
	return env
}

func (c *Config) settings() []setting {
	s := func(key, env string, v value) setting { return setting{Setting{Key: key, Env: env}, v} }
	// Modifiers of a declaration.
	flag := func(st setting, name, usage string, commands ...string) setting {
		st.Flag, st.Usage, st.Commands = name, usage, commands
		_, st.Bool = st.value.(parsed[bool])
		return st
	}
	secret := func(st setting) setting { st.Secret = true; return st }
	child := func(st setting) setting { st.Child = true; return st }
	return []setting{
		child(secret(flag(s("amqp_url", "WARREN_AMQP_URL", stringValue{&c.AMQPURL}), "amqp-url", "RabbitMQ URL (a cluster's nodes: several, separated by commas)"))),
		child(secret(flag(s("redis_url", "WARREN_REDIS_URL", stringValue{&c.RedisURL}), "redis-url", "Redis URL"))),
		child(flag(s("namespace", "WARREN_NAMESPACE", namespaceValue{&c.Namespace}), "namespace", "prefix of every queue and Redis key")),
		child(flag(s("log_level", "WARREN_LOG_LEVEL", stringValue{&c.LogLevel}), "log-level", "debug, info, warn or error")),
		flag(s("api_url", "WARREN_API_URL", stringValue{&c.APIURL}), "api", "API base URL for client commands"),
		secret(s("management_url", "WARREN_MANAGEMENT_URL", stringValue{&c.ManagementURL})),
		s("debug_addr", "WARREN_DEBUG_ADDR", stringValue{&c.DebugAddr}),
		child(s("amqp_tls.ca_file", "WARREN_AMQP_TLS_CA_FILE", stringValue{&c.AMQPTLS.CAFile})),
		child(s("amqp_tls.cert_file", "WARREN_AMQP_TLS_CERT_FILE", stringValue{&c.AMQPTLS.CertFile})),
		child(s("amqp_tls.key_file", "WARREN_AMQP_TLS_KEY_FILE", stringValue{&c.AMQPTLS.KeyFile})),
		child(s("amqp_quorum_group_size", "WARREN_AMQP_QUORUM_GROUP_SIZE", intValue(&c.AMQPQuorumGroupSize))),
		child(s("amqp_tls.server_name", "WARREN_AMQP_TLS_SERVER_NAME", stringValue{&c.AMQPTLS.ServerName})),
		child(s("redis_tls.ca_file", "WARREN_REDIS_TLS_CA_FILE", stringValue{&c.RedisTLS.CAFile})),
		child(s("redis_tls.cert_file", "WARREN_REDIS_TLS_CERT_FILE", stringValue{&c.RedisTLS.CertFile})),
		child(s("redis_tls.key_file", "WARREN_REDIS_TLS_KEY_FILE", stringValue{&c.RedisTLS.KeyFile})),
		child(s("redis_tls.server_name", "WARREN_REDIS_TLS_SERVER_NAME", stringValue{&c.RedisTLS.ServerName})),
		child(s("redis.sentinel.addrs", "WARREN_REDIS_SENTINEL_ADDRS", listValue{&c.Redis.Sentinel.Addrs})),
		child(s("redis.sentinel.master", "WARREN_REDIS_SENTINEL_MASTER", stringValue{&c.Redis.Sentinel.Master})),
		child(secret(s("redis.sentinel.password", "WARREN_REDIS_SENTINEL_PASSWORD", stringValue{&c.Redis.Sentinel.Password}))),
		child(s("redis.wait_replicas", "WARREN_REDIS_WAIT_REPLICAS", intValue(&c.Redis.WaitReplicas))),
		child(s("redis.wait_timeout", "WARREN_REDIS_WAIT_TIMEOUT", durationValue(&c.Redis.WaitTimeout))),
		s("api_ca_file", "WARREN_API_CA_FILE", stringValue{&c.APICAFile}),
		flag(s("api.addr", "WARREN_HTTP_ADDR", stringValue{&c.API.Addr}), "addr", "API listen address", "api", "dev"),
		s("api.tls_cert", "WARREN_API_TLS_CERT", stringValue{&c.API.TLSCert}),
		s("api.tls_key", "WARREN_API_TLS_KEY", stringValue{&c.API.TLSKey}),
		s("api.max_body_bytes", "WARREN_MAX_BODY_BYTES", int64Value(&c.API.MaxBodyBytes)),
		s("api.read_timeout", "WARREN_API_READ_TIMEOUT", durationValue(&c.API.ReadTimeout)),
		s("api.max_connections", "WARREN_API_MAX_CONNECTIONS", intValue(&c.API.MaxConnections)),
		s("api.max_json_depth", "WARREN_API_MAX_JSON_DEPTH", intValue(&c.API.MaxJSONDepth)),
		s("api.max_delay", "WARREN_API_MAX_DELAY", durationValue(&c.API.MaxDelay)),
		s("api.tenant_key", "WARREN_API_TENANT_KEY", stringValue{&c.API.TenantKey}),
		secret(flag(s("api_key", "WARREN_API_KEY", stringValue{&c.APIKey}), "api-key",
			"API key client commands send; prefer the variables or api_key in warren.yaml to this flag, which other users of the machine can see")),
		// Hashes, not secrets, but a list an operator keeps in a file.
		secret(s("api.keys", "WARREN_API_KEYS", keysValue{&c.API.Keys})),
		flag(s("api.insecure_no_auth", "WARREN_API_INSECURE_NO_AUTH", boolValue(&c.API.InsecureNoAuth)), "insecure-no-auth",
			"serve beyond loopback without API keys: anyone who reaches the API may do anything", "api", "dev"),
		s("api.metrics_addr", "WARREN_API_METRICS_ADDR", stringValue{&c.API.MetricsAddr}),
		s("api.allowed_hosts", "WARREN_API_ALLOWED_HOSTS", listValue{&c.API.AllowedHosts}),
		s("api.allowed_origins", "WARREN_API_ALLOWED_ORIGINS", listValue{&c.API.AllowedOrigins}),
		s("api.requests_per_second", "WARREN_API_REQUESTS_PER_SECOND", floatValue(&c.API.RequestsPerSecond)),
		s("api.jobs_per_minute", "WARREN_API_JOBS_PER_MINUTE", intValue(&c.API.JobsPerMinute)),
		s("store.retention", "WARREN_RETENTION", durationValue(&c.Store.Retention)),
		s("store.idempotency_window", "WARREN_IDEMPOTENCY_WINDOW", durationValue(&c.Store.IdempotencyWindow)),
		flag(s("worker.health_addr", "WARREN_HEALTH_ADDR", stringValue{&c.Worker.HealthAddr}), "health-addr",
			"serve /healthz, /readyz and /metrics here", "worker"),
		child(s("worker.shutdown_grace", "WARREN_SHUTDOWN_GRACE", durationValue(&c.Worker.ShutdownGrace))),
		flag(s("supervisor.addr", "WARREN_SUPERVISOR_ADDR", stringValue{&c.Supervisor.Addr}), "addr",
			"serve /healthz, /status and /metrics here", "autoscale"),
		s("supervisor.lease_ttl", "WARREN_SUPERVISOR_LEASE_TTL", durationValue(&c.Supervisor.LeaseTTL)),
		child(s("rescue.interval", "WARREN_RESCUE_INTERVAL", durationValue(&c.Rescue.Interval))),
		child(s("rescue.grace", "WARREN_RESCUE_GRACE", durationValue(&c.Rescue.Grace))),
		child(s("schedule.grace", "WARREN_SCHEDULE_GRACE", durationValue(&c.Schedule.Grace))),
		child(s("workflow.sweep", "WARREN_WORKFLOW_SWEEP", durationValue(&c.Workflow.Sweep))),
		child(s("workflow.pending_grace", "WARREN_WORKFLOW_PENDING_GRACE", durationValue(&c.Workflow.PendingGrace))),
		secret(s("webhook.secrets", "WARREN_WEBHOOK_SECRETS", secretsValue{&c.Webhook.Secrets})),
		s("webhook.allow", "WARREN_WEBHOOK_ALLOW", listValue{&c.Webhook.Allow}),
		s("webhook.follow_redirects", "WARREN_WEBHOOK_FOLLOW_REDIRECTS", boolValue(&c.Webhook.FollowRedirects)),
		s("webhook.keep_response_body", "WARREN_WEBHOOK_KEEP_RESPONSE_BODY", boolValue(&c.Webhook.KeepResponseBody)),
		s("webhook.max_response_body", "WARREN_WEBHOOK_MAX_RESPONSE_BODY", intValue(&c.Webhook.MaxResponseBody)),
		s("image.allow", "WARREN_IMAGE_ALLOW", listValue{&c.Image.Allow}),
		s("image.max_input_bytes", "WARREN_IMAGE_MAX_INPUT_BYTES", int64Value(&c.Image.MaxInputBytes)),
		s("image.max_pixels", "WARREN_IMAGE_MAX_PIXELS", int64Value(&c.Image.MaxPixels)),
		s("image.max_output_bytes", "WARREN_IMAGE_MAX_OUTPUT_BYTES", intValue(&c.Image.MaxOutputBytes)),
		s("image.max_memory_bytes", "WARREN_IMAGE_MAX_MEMORY_BYTES", int64Value(&c.Image.MaxMemoryBytes)),
	}
}

type stringValue struct{ p *string }

func (v stringValue) set(s string) error { *v.p = s; return nil }
func (v stringValue) get() string        { return *v.p }

type namespaceValue struct{ p *jobs.Namespace }

func (v namespaceValue) set(s string) error { *v.p = jobs.Namespace(s); return nil }
func (v namespaceValue) get() string        { return string(*v.p) }

// parsed is a field whose text parse reads and format writes.
type parsed[T any] struct {
	p      *T
	parse  func(string) (T, error)
	format func(T) string
}

func (v parsed[T]) set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}

func (v parsed[T]) get() string { return v.format(*v.p) }

func durationValue(p *Duration) value {
	return parsed[Duration]{p, func(s string) (Duration, error) {
		var d Duration
		return d, d.UnmarshalText([]byte(s))
	}, func(d Duration) string { return d.Std().String() }}
}

func intValue(p *int) value {
	return parsed[int]{p, func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("want a whole number, got %q", s)
		}
		return n, nil
	}, strconv.Itoa}
}

func int64Value(p *int64) value {
	return parsed[int64]{p, func(s string) (int64, error) {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("want a whole number, got %q", s)
		}
		return n, nil
	}, func(n int64) string { return strconv.FormatInt(n, 10) }}
}

func floatValue(p *float64) value {
	return parsed[float64]{p, func(s string) (float64, error) {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("want a number: %w", err)
		}
		return f, nil
	}, func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }}
}

func boolValue(p *bool) value {
	return parsed[bool]{p, func(s string) (bool, error) {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return false, fmt.Errorf("want true or false, got %q", s)
		}
		return b, nil
	}, strconv.FormatBool}
}

type listValue struct{ p *[]string }

func (v listValue) set(s string) error { *v.p = strings.Split(s, ","); return nil }
func (v listValue) get() string        { return strings.Join(*v.p, ",") }

type keysValue struct{ p *[]apikey.Key }

func (v keysValue) set(s string) error {
	keys, err := apikey.ParseList(s)
	if err != nil {
		return err
	}
	*v.p = keys
	return nil
}

func (v keysValue) get() string {
	entries := make([]string, len(*v.p))
	for i, k := range *v.p {
		entries[i] = k.Entry()
	}
	return strings.Join(entries, ",")
}

// secretsValue sets the values of webhook secrets: a secret's allow list
// comes from the file.
type secretsValue struct{ p *map[string]WebhookSecret }

func (v secretsValue) set(s string) error {
	m := make(map[string]WebhookSecret, len(*v.p))
	maps.Copy(m, *v.p)
	for _, kv := range strings.Split(s, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return fmt.Errorf("want name=secret pairs separated by commas")
		}
		sec := m[k]
		sec.Secret = val
		m[k] = sec
	}
	*v.p = m
	return nil
}

func (v secretsValue) get() string {
	var pairs []string
	for _, name := range slices.Sorted(maps.Keys(*v.p)) {
		if sec := (*v.p)[name].Secret; sec != "" {
			pairs = append(pairs, name+"="+sec)
		}
	}
	return strings.Join(pairs, ",")
}
