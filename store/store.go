// Package store keeps warren's records in Redis: one hash per job, the
// registry of declared job types, idempotency keys, an index of each pool's
// waiting jobs, and the replica counts and recent scaling decisions
// autoscalers publish. Every change of a job's state is one Lua script, so
// it is atomic and costs one round trip (the index is kept by the same
// scripts); no outcome moves a job out of a terminal state (only Revive,
// for a replay of a dead letter, turns failed back into queued, and Retry,
// for a retry asked for by id, failed or canceled).
package store

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/internal/combine"
	"github.com/warrenhq/warren/internal/redact"
	"github.com/warrenhq/warren/jobs"
)

// Errors callers branch on.
var (
	// ErrNotFound means no record exists for the id.
	ErrNotFound = errors.New("job not found")
	// ErrUnavailable means Redis cannot be reached now.
	ErrUnavailable = errors.New("redis unavailable")
	// ErrIdempotencyConflict means a submitter's idempotency key already
	// names a job of another type or payload, within the idempotency
	// window.
	ErrIdempotencyConflict = errors.New("idempotency key already used for another job")
	// ErrNotReplicated means the primary took a write but fewer replicas
	// than Config.WaitReplicas acknowledged it in time: a failover now could
	// lose it, so it is not reported as done. It comes wrapped with
	// ErrUnavailable, and callers treat it as an outage.
	ErrNotReplicated = errors.New("not acknowledged by enough redis replicas")
	// ErrCluster means the Redis named is a Redis Cluster node (see
	// CheckServer).
	ErrCluster = errors.New("redis cluster is not supported: warren's Lua scripts change a job's record " +
		"together with its pool's and namespace's indexes in one atomic script, and on a cluster those keys " +
		"hash to different slots (CROSSSLOT); use a single Redis, or Redis with Sentinel for failover")
)

// Config configures a Store. Zero fields take the defaults noted.
type Config struct {
	// URL is the Redis address, such as redis://127.0.0.1:6379/0, or
	// rediss:// for TLS; required. With Sentinel set, only its user,
	// password, database and scheme count: the primary's address comes from
	// the sentinels.
	URL string
	// Sentinel, when its Master is set, finds the primary through Redis
	// Sentinel and follows it through failovers. The zero value means the
	// single Redis at URL.
	Sentinel Sentinel
	// WaitReplicas, when positive, is how many replicas must acknowledge a
	// submission's records (Create) and an attempt's outcome (Finish)
	// before either is reported done: the round trip that writes them ends
	// with WAIT, and fewer acknowledgements give ErrNotReplicated. Zero
	// means no wait: a failover to an asynchronous replica can lose the
	// last writes (docs/guarantees.md).
	WaitReplicas int
	// WaitTimeout bounds that wait; zero means 1 second.
	WaitTimeout time.Duration
	// TLS configures a rediss:// connection: the CAs to trust, a client
	// certificate, the server name (empty: the URL's host). Nil means the
	// system's CAs and no client certificate.
	TLS *tls.Config
	// Namespace prefixes every key; zero means jobs.DefaultNamespace.
	Namespace jobs.Namespace
	// Retention is how long a terminal job's record is kept; zero means 7
	// days. An unfinished job's record is kept as long after the job is next
	// due (created, scheduled, retried, replayed) or its running attempt's
	// deadline, so every record expires, and none while its job is alive.
	Retention time.Duration
	// IdempotencyWindow is how long an idempotency key maps to its job;
	// zero means 24 hours.
	IdempotencyWindow time.Duration
	// Logger receives store events; nil means slog.Default().
	Logger *slog.Logger
	// MaxArtifactBytes bounds the output bytes kept for one job; zero means
	// 10 MiB.
	MaxArtifactBytes int
	// Now is the clock of what the store times itself: the age of the
	// oldest waiting job, a replayed job's return to its pool's index of
	// waiting jobs, and the staleness of replica counts. Nil means time.Now.
	Now func() time.Time
}

// Sentinel names the sentinels that watch a primary and its replicas.
type Sentinel struct {
	// Addrs are the sentinels' host:port addresses; at least one is
	// needed when Master is set.
	Addrs []string
	// Master is the name the sentinels know the primary by; empty means no
	// Sentinel.
	Master string
	// Password is the sentinels' own (requirepass in sentinel.conf), if
	// they ask for one; the URL's password is the data nodes'.
	Password string
}

// Store reads and writes job records. It is safe for concurrent use.
type Store struct {
	cfg Config
	// rdb is a client of one Redis, or of the primary the sentinels name:
	// go-redis's failover client asks them for the primary on each new
	// connection and drops its connections to the old one when they
	// announce a switch.
	rdb  redis.UniversalClient
	pipe *combine.Combiner[func(*trip)] // the scripts of concurrent callers, in shared round trips
	ns   jobs.Namespace
	log  *slog.Logger
}

// New returns a Store for the Redis at cfg.URL. It does not connect until
// first used.
func New(cfg Config) (*Store, error) {
	cfg.Namespace = cmp.Or(cfg.Namespace, jobs.DefaultNamespace)
	cfg.Retention = cmp.Or(cfg.Retention, 7*24*time.Hour)
	cfg.IdempotencyWindow = cmp.Or(cfg.IdempotencyWindow, 24*time.Hour)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.MaxArtifactBytes = cmp.Or(cfg.MaxArtifactBytes, 10<<20)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.Namespace.Validate(); err != nil {
		return nil, fmt.Errorf("store: config: %w", err)
	}
	if cfg.WaitReplicas < 0 || cfg.WaitTimeout < 0 {
		return nil, fmt.Errorf("store: config: WaitReplicas and WaitTimeout must not be negative")
	}
	cfg.WaitTimeout = cmp.Or(cfg.WaitTimeout, time.Second)
	rdb, err := newClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("store: config: %w", err)
	}
	return &Store{
		cfg:  cfg,
		rdb:  rdb,
		pipe: newPipeline(rdb, cfg.WaitReplicas, cfg.WaitTimeout),
		ns:   cfg.Namespace,
		log:  cfg.Logger.With("component", "store"),
	}, nil
}

// newClient is the one place a client of warren's Redis is made: of the
// single Redis at cfg.URL, or of the primary cfg.Sentinel names, with the
// URL's credentials, database and TLS either way.
func newClient(cfg Config) (redis.UniversalClient, error) {
	opts, err := redis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redis url %s: %w", redact.URL(cfg.URL), redact.ParseError(cfg.URL, err))
	}
	if cfg.TLS != nil {
		if opts.TLSConfig == nil {
			return nil, fmt.Errorf("TLS settings are given, but the redis url %s is not rediss://", redact.URL(cfg.URL))
		}
		tc := cfg.TLS.Clone()
		tc.ServerName = cmp.Or(tc.ServerName, opts.TLSConfig.ServerName)
		opts.TLSConfig = tc
	}
	opts.DialTimeout = cmp.Or(opts.DialTimeout, 2*time.Second)
	// A round trip may end with a WAIT of up to WaitTimeout.
	opts.ReadTimeout = max(cmp.Or(opts.ReadTimeout, 3*time.Second), cfg.WaitTimeout+2*time.Second)
	opts.WriteTimeout = cmp.Or(opts.WriteTimeout, 3*time.Second)
	// A down Redis should turn into a quick 503, not a slow retry loop.
	opts.MaxRetries = cmp.Or(opts.MaxRetries, 1)
	opts.DialerRetries = cmp.Or(opts.DialerRetries, 1)
	sen := cfg.Sentinel
	switch {
	case sen.Master == "" && len(sen.Addrs) == 0:
		return redis.NewClient(opts), nil
	case sen.Master == "" || len(sen.Addrs) == 0:
		return nil, fmt.Errorf("sentinel: give both the sentinels' addresses and the master's name, or neither")
	}
	return redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:       sen.Master,
		SentinelAddrs:    sen.Addrs,
		SentinelPassword: sen.Password,
		ClientName:       opts.ClientName,
		Protocol:         opts.Protocol,
		Username:         opts.Username,
		Password:         opts.Password,
		DB:               opts.DB,
		TLSConfig:        opts.TLSConfig,
		MaxRetries:       opts.MaxRetries,
		MinRetryBackoff:  opts.MinRetryBackoff,
		MaxRetryBackoff:  opts.MaxRetryBackoff,
		DialTimeout:      opts.DialTimeout,
		DialerRetries:    opts.DialerRetries,
		ReadTimeout:      opts.ReadTimeout,
		WriteTimeout:     opts.WriteTimeout,
		PoolSize:         opts.PoolSize,
		PoolTimeout:      opts.PoolTimeout,
		MinIdleConns:     opts.MinIdleConns,
		MaxIdleConns:     opts.MaxIdleConns,
		MaxActiveConns:   opts.MaxActiveConns,
		ConnMaxIdleTime:  opts.ConnMaxIdleTime,
		ConnMaxLifetime:  opts.ConnMaxLifetime,
	}), nil
}

// CheckServer asks the Redis the store reaches whether warren can use it,
// as a process starts: a Redis Cluster node is refused (ErrCluster), and a
// primary with fewer replicas than WaitReplicas is logged, since no
// submission is accepted until enough of them connect.
func (s *Store) CheckServer(ctx context.Context) error {
	info, err := s.rdb.Info(ctx, "cluster", "replication").Result()
	if err != nil {
		return unavailable("check redis", err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	if fields["cluster_enabled"] == "1" {
		return fmt.Errorf("redis at %s: %w", redact.URL(s.cfg.URL), ErrCluster)
	}
	if n, _ := strconv.Atoi(fields["connected_slaves"]); n < s.cfg.WaitReplicas {
		s.log.Warn("redis has fewer replicas than writes wait for: no job is accepted until enough connect",
			"replicas", n, "wait_replicas", s.cfg.WaitReplicas)
	}
	return nil
}

// Close releases the store's connections.
func (s *Store) Close() error { return s.rdb.Close() }

// now reads the store's clock.
func (s *Store) now() time.Time { return s.cfg.Now() }

// Namespace returns the namespace keys are derived from.
func (s *Store) Namespace() jobs.Namespace { return s.ns }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// unavailable wraps a Redis error so callers can tell an outage apart.
func unavailable(op string, err error) error {
	var reply redis.Error // Redis answered, with an error: not an outage, unless it says so
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &reply) && !transient(err) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

// transientReplies are the errors with which a Redis says it cannot take
// the command now, though it may soon: a replica a failover is turning into
// the primary (or the old primary, not yet told it is one no more), a
// primary short of the replicas min-replicas-to-write asks for, a server
// loading its data.
var transientReplies = []string{"READONLY", "NOREPLICAS", "LOADING", "MASTERDOWN", "TRYAGAIN", "BUSY"}

// transient reports whether err is one of transientReplies.
func transient(err error) bool {
	for _, p := range transientReplies {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// ms is how times are stored: Unix milliseconds as decimal text.
func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func parseMS(s string) *time.Time {
	if s == "" {
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return nil
	}
	t := time.UnixMilli(n).UTC()
	return &t
}

// Hash fields of a job record; docs/protocol.md lists them.
const (
	fID             = "id"
	fType           = "type"
	fStatus         = "status"
	fPayload        = "payload"
	fAttempt        = "attempt"
	fMaxAttempts    = "max_attempts"
	fTimeoutMS      = "timeout_ms"
	fMetadata       = "metadata"
	fPriority       = "priority" // absent for 0
	fResult         = "result"
	fError          = "error"
	fProgress       = "progress"
	fWorker         = "worker"
	fIdempotencyKey = "idempotency_key"
	fSubmittedBy    = "submitted_by"
	fAttempts       = "attempts"
	fCreatedAt      = "created_at"
	fScheduledAt    = "scheduled_at"
	fStartedAt      = "started_at"
	fFinishedAt     = "finished_at"
	fBackoff        = "backoff"
	fArtifact       = "artifact"
	// fPool lets every script find the job's index of waiting jobs
	// (jobs.Namespace.WaitingKey).
	fPool = "pool"
	// fIdempotencyFP is the fingerprint of a job with an idempotency key
	// (see fingerprint), which a later use of the key is compared with.
	fIdempotencyFP = "idempotency_fp"
	// The unique key of a job that has one (docs/unique.md): the key, its
	// mode and its window; unique_pending marks a job whose creation is not
	// yet confirmed (Store.Confirm), which a submission finding it holding
	// the key waits for.
	fUniqueKey     = "unique_key"
	fUniqueWhile   = "unique_while"
	fUniqueForMS   = "unique_for_ms"
	fUniquePending = "unique_pending"
	// fLimitedUntil is when a job its type's rate limit holds back is
	// offered again (store/limits.go).
	fLimitedUntil = "limited_until"
)

// fields returns the hash fields of a new job record.
func fields(j *jobs.Job) ([]any, error) {
	f := []any{
		fID, j.ID,
		fType, j.Type,
		fStatus, string(j.Status),
		fPayload, string(j.Payload),
		fAttempt, strconv.Itoa(j.Attempt),
		fMaxAttempts, strconv.Itoa(j.MaxAttempts),
		fTimeoutMS, strconv.FormatInt(j.Timeout.Std().Milliseconds(), 10),
		fCreatedAt, ms(j.CreatedAt),
	}
	if len(j.Metadata) > 0 {
		b, err := json.Marshal(j.Metadata)
		if err != nil {
			return nil, fmt.Errorf("encode metadata: %w", err)
		}
		f = append(f, fMetadata, string(b))
	}
	if j.Priority != 0 {
		f = append(f, fPriority, strconv.Itoa(j.Priority))
	}
	if j.IdempotencyKey != "" {
		f = append(f, fIdempotencyKey, j.IdempotencyKey, fIdempotencyFP, fingerprint(j))
	}
	if j.SubmittedBy != "" {
		f = append(f, fSubmittedBy, j.SubmittedBy)
	}
	if u := j.Unique; u != nil {
		f = append(f, fUniqueKey, u.Key, fUniqueWhile, string(u.While), fUniqueForMS, strconv.FormatInt(u.For.Std().Milliseconds(), 10))
	}
	if j.Pool != "" {
		f = append(f, fPool, j.Pool)
	}
	if j.ScheduledAt != nil {
		f = append(f, fScheduledAt, ms(*j.ScheduledAt))
	}
	if j.Backoff != nil {
		b, err := json.Marshal(j.Backoff)
		if err != nil {
			return nil, fmt.Errorf("encode backoff: %w", err)
		}
		f = append(f, fBackoff, string(b))
	}
	return f, nil
}

// fingerprint identifies what a job asks for, as far as an idempotency key
// promises it: its type and its payload, compacted, so that whitespace
// alone does not tell two submissions apart (the order of members does).
func fingerprint(j *jobs.Job) string {
	h := sha256.New()
	h.Write([]byte(j.Type))
	h.Write([]byte{0}) // type names hold no NUL: the type ends here
	var compact bytes.Buffer
	if err := json.Compact(&compact, j.Payload); err == nil {
		h.Write(compact.Bytes())
	} else {
		h.Write(j.Payload) // not JSON (not from the API): as it is
	}
	return hex.EncodeToString(h.Sum(nil))
}

// idempotencyKey returns the Redis key of a job's idempotency key, scoped by
// its submitter. A submitter name with a colon could pose as another
// submitter's scope, so it is refused.
func (s *Store) idempotencyKey(j *jobs.Job) (string, error) {
	if strings.Contains(j.SubmittedBy, ":") {
		return "", fmt.Errorf("create job %s: submitted_by %q: a key name holds no colon", j.ID, j.SubmittedBy)
	}
	return s.ns.IdempotencyKey(j.SubmittedBy, j.IdempotencyKey), nil
}

// decode builds a Job from a record's fields.
func decode(h map[string]string) (*jobs.Job, error) {
	j := &jobs.Job{
		ID:             h[fID],
		Type:           h[fType],
		Pool:           h[fPool],
		Status:         jobs.Status(h[fStatus]),
		Worker:         h[fWorker],
		IdempotencyKey: h[fIdempotencyKey],
		SubmittedBy:    h[fSubmittedBy],
		ScheduledAt:    parseMS(h[fScheduledAt]),
		StartedAt:      parseMS(h[fStartedAt]),
		FinishedAt:     parseMS(h[fFinishedAt]),
	}
	// The token script's note (limits.go), on a waiting job, unless it is
	// older than the last attempt's start (a job that was held back, then
	// started once its limit was removed, keeps the field).
	if lu := parseMS(h[fLimitedUntil]); lu != nil && (j.Status == jobs.StatusQueued || j.Status == jobs.StatusScheduled || j.Status == jobs.StatusRetrying) &&
		(j.StartedAt == nil || lu.After(*j.StartedAt)) {
		j.LimitedUntil = lu
	}
	if t := parseMS(h[fCreatedAt]); t != nil {
		j.CreatedAt = *t
	}
	if k, ok := h[fUniqueKey]; ok {
		n, _ := strconv.ParseInt(h[fUniqueForMS], 10, 64)
		j.Unique = &jobs.Unique{Key: k, While: jobs.UniqueWhile(h[fUniqueWhile]), For: jobs.Duration(time.Duration(n) * time.Millisecond)}
	}
	if p := h[fPayload]; p != "" {
		j.Payload = json.RawMessage(p)
	}
	if r := h[fResult]; r != "" {
		j.Result = json.RawMessage(r)
	}
	j.Attempt, _ = strconv.Atoi(h[fAttempt])
	j.MaxAttempts, _ = strconv.Atoi(h[fMaxAttempts])
	j.Priority, _ = strconv.Atoi(h[fPriority])
	if n, err := strconv.ParseInt(h[fTimeoutMS], 10, 64); err == nil {
		j.Timeout = jobs.Duration(time.Duration(n) * time.Millisecond)
	}
	for field, dst := range map[string]any{fMetadata: &j.Metadata, fError: &j.Error, fProgress: &j.Progress, fBackoff: &j.Backoff, fArtifact: &j.Artifact} {
		if v := h[field]; v != "" {
			if err := json.Unmarshal([]byte(v), dst); err != nil {
				return nil, fmt.Errorf("decode %s of job %s: %w", field, j.ID, err)
			}
		}
	}
	attempts, err := decodeAttempts(h[fAttempts])
	if err != nil {
		return nil, fmt.Errorf("decode attempts of job %s: %w", j.ID, err)
	}
	j.Attempts = attempts
	if j.Status == jobs.StatusRunning && j.Attempt > 0 {
		j.Attempts = append(j.Attempts, jobs.Attempt{Attempt: j.Attempt, Worker: j.Worker, StartedAt: j.StartedAt, Outcome: "running"})
	}
	return j, nil
}

// decodeAttempts reads the record's attempts, as the scripts write them
// (attempt_entry): times in Unix ms.
func decodeAttempts(v string) ([]jobs.Attempt, error) {
	if v == "" {
		return nil, nil
	}
	var raw []struct {
		Attempt   int         `json:"attempt"`
		Worker    string      `json:"worker"`
		StartedAt int64       `json:"started_at"`
		EndedAt   int64       `json:"ended_at"`
		Outcome   string      `json:"outcome"`
		Error     *jobs.Error `json:"error"`
	}
	if err := json.Unmarshal([]byte(v), &raw); err != nil {
		return nil, err
	}
	out := make([]jobs.Attempt, len(raw))
	for i, a := range raw {
		out[i] = jobs.Attempt{Attempt: a.Attempt, Worker: a.Worker, Outcome: a.Outcome, Error: a.Error,
			StartedAt: msTimePtr(a.StartedAt), EndedAt: msTimePtr(a.EndedAt)}
	}
	return out, nil
}

// msTimePtr is the time of Unix ms, or nil for 0.
func msTimePtr(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

// Present returns j as it stands rather than as last written: a scheduled
// job whose time has come is queued (its message has left the delay
// levels), and a running job whose worker's lease has lapsed is queued (the
// broker put its message back when the worker was lost). Only a running
// job costs a round trip, to read its worker's lease; if that fails, j is
// shown as recorded.
func (s *Store) Present(ctx context.Context, j *jobs.Job) *jobs.Job {
	switch {
	case j.Status == jobs.StatusScheduled && j.ScheduledAt != nil && !j.ScheduledAt.After(s.now()):
		j.Status = jobs.StatusQueued
	case j.Status == jobs.StatusRunning && j.Worker != "":
		if alive, err := s.Alive(ctx, j.Worker); err == nil && !alive {
			j.Status = jobs.StatusQueued
		}
	}
	return j
}

// Get returns the job's record, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*jobs.Job, error) {
	h, err := s.rdb.HGetAll(ctx, s.ns.JobKey(id)).Result()
	if err != nil {
		return nil, unavailable("get job "+id, err)
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("get job %s: %w", id, ErrNotFound)
	}
	return decode(h)
}
