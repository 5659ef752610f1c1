// Package client is a Go client of warren's HTTP API (v1): submit jobs one at
// a time or in batches, now or later, read a job, wait for it to finish or
// cancel it, list, replay or purge a pool's dead letters, see each pool's
// queue, and list the declared job types.
//
// The API returns jobs as jobs.Job, so a job read here is the same value a
// handler received and the store records. Errors the API reports arrive as
// *APIError; an API that cannot be reached gives *UnreachableError.
package client

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/warrenhq/warren/jobs"
)

// DefaultBaseURL is where a Client looks for the API when its Config names no
// address: the API's default listen address on loopback.
const DefaultBaseURL = "http://127.0.0.1:8080"

// MaxWait is the longest long poll the API serves by default; Wait asks for
// no more.
const MaxWait = 60 * time.Second

// defaultMinPollInterval is the zero value of Config.MinPollInterval.
const defaultMinPollInterval = time.Second

// Config configures a Client.
type Config struct {
	// BaseURL is the API's address, such as "http://127.0.0.1:8080"; a path
	// prefix is kept. Empty means DefaultBaseURL.
	BaseURL string
	// HTTPClient sends the requests. Nil means a new http.Client with no
	// overall timeout: bound calls with their context instead, since Wait
	// holds a request open for up to MaxWait.
	HTTPClient *http.Client
	// TLS configures the connections to an https API when HTTPClient is
	// nil: RootCAs holding a private CA that signs the API's certificate,
	// say. Nil means the system's CAs. Set HTTPClient or TLS, not both.
	TLS *tls.Config
	// APIKey, when set, is sent with every request as a bearer token
	// (Authorization: Bearer APIKey).
	APIKey string
	// MinPollInterval is the least time between the starts of two of
	// WaitDone's long polls, so that a server answering early is not asked
	// again at once. Zero means one second.
	MinPollInterval time.Duration
}

// Client talks to one warren API. It is safe for concurrent use.
type Client struct {
	apiKey  string
	baseURL string // without a trailing slash
	hc      *http.Client
	minPoll time.Duration
}

// New returns a Client for the API cfg names, or an error if its address
// cannot work.
func New(cfg Config) (*Client, error) {
	base := strings.TrimRight(cmp.Or(cfg.BaseURL, DefaultBaseURL), "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("API URL %q: want http:// or https:// and a host, such as %s", cfg.BaseURL, DefaultBaseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("API URL %q: must not have a query or fragment", cfg.BaseURL)
	}
	if cfg.MinPollInterval < 0 {
		return nil, fmt.Errorf("MinPollInterval must not be negative")
	}
	if cfg.HTTPClient != nil && cfg.TLS != nil {
		return nil, errors.New("set HTTPClient or TLS, not both: TLS applies to the client New makes")
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
		if cfg.TLS != nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = cfg.TLS.Clone()
			hc.Transport = tr
		}
	}
	if strings.ContainsAny(cfg.APIKey, "\r\n") {
		return nil, errors.New("the API key holds a line break")
	}
	return &Client{
		apiKey:  strings.TrimSpace(cfg.APIKey),
		baseURL: base,
		hc:      hc,
		minPoll: cmp.Or(cfg.MinPollInterval, defaultMinPollInterval),
	}, nil
}

// BaseURL returns the API address the client uses.
func (c *Client) BaseURL() string { return c.baseURL }

// JobRequest is one job to submit. Only Type is required; a zero field means
// the API's default (the type's, for MaxAttempts and Timeout).
type JobRequest struct {
	// Type names what to do, such as "sys.echo".
	Type string `json:"type"`
	// Payload is the job's input, a JSON object. Nil means {}.
	Payload json.RawMessage `json:"payload,omitempty"`
	// MaxAttempts is how many attempts the job may take in all.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Timeout bounds one attempt.
	Timeout jobs.Duration `json:"timeout,omitempty"`
	// Delay holds the job back for this long: it is scheduled (status
	// scheduled, with scheduled_at) until then, and queued after. Zero
	// means at once. Set Delay or RunAt, not both.
	Delay jobs.Duration `json:"delay,omitempty"`
	// RunAt holds the job back until this time, like Delay; a time past
	// means at once. Nil means at once.
	RunAt *time.Time `json:"run_at,omitempty"`
	// Backoff overrides the type's retry policy for this job; a zero field
	// keeps the type's. Nil keeps the type's policy as it is.
	Backoff *jobs.Backoff `json:"backoff,omitempty"`
	// Metadata is free-form labels, stored and passed through.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Priority is 0 (the default) to 9: within the pool, jobs of 5 and
	// above run first under a backlog (docs/priorities.md).
	Priority int `json:"priority,omitempty"`
	// IdempotencyKey makes a resubmission within the API's window return
	// the job the key first created instead of a new one.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Unique, if set, makes the job the only one of its type and key for a
	// while (docs/unique.md); a duplicate returns the job holding the key.
	Unique *UniqueRequest `json:"unique,omitempty"`
}

// UniqueRequest is a job request's unique key. Zero fields take the API's
// defaults: for 24h (required with while always), while until_done,
// on_conflict existing.
type UniqueRequest struct {
	Key        string           `json:"key"`
	For        jobs.Duration    `json:"for,omitempty"`
	While      jobs.UniqueWhile `json:"while,omitempty"`
	OnConflict jobs.OnConflict  `json:"on_conflict,omitempty"`
}

// Enqueue submits one job. created is false when the API already knew the
// request's idempotency key and returned the job that key created.
func (c *Client) Enqueue(ctx context.Context, req JobRequest) (job *jobs.Job, created bool, err error) {
	var j jobs.Job
	status, err := c.do(ctx, http.MethodPost, "/v1/jobs", nil, req, &j)
	if err != nil {
		return nil, false, fmt.Errorf("enqueue %s: %w", req.Type, err)
	}
	return &j, status != http.StatusOK, nil
}

// BatchResult is the outcome of one job of a batch: the job accepted, or why
// it was refused.
type BatchResult struct {
	// Job is the accepted (or, for a known idempotency key, existing) job.
	Job *jobs.Job `json:"job,omitempty"`
	// Error says why the job was refused; its Status is zero, since the
	// batch as a whole succeeded.
	Error *APIError `json:"error,omitempty"`
}

// EnqueueBatch submits several jobs in one request (at most the API's batch
// limit, 1000 unless configured otherwise) and returns one result per job,
// in the order given. Each job is accepted or refused on its own; err
// reports only a failure of the whole request. An empty batch returns
// nothing and sends nothing.
func (c *Client) EnqueueBatch(ctx context.Context, reqs []JobRequest) ([]BatchResult, error) {
	return enqueueBatch(ctx, c, reqs)
}

// EnqueueBatchJSON is EnqueueBatch for job requests already in JSON, each an
// object of the form POST /v1/jobs takes, sent as they are: the API checks
// each one, and refuses those it cannot read in their results.
func (c *Client) EnqueueBatchJSON(ctx context.Context, reqs []json.RawMessage) ([]BatchResult, error) {
	return enqueueBatch(ctx, c, reqs)
}

func enqueueBatch[R JobRequest | json.RawMessage](ctx context.Context, c *Client, reqs []R) ([]BatchResult, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	body := struct {
		Jobs []R `json:"jobs"`
	}{reqs}
	var resp struct {
		Jobs []BatchResult `json:"jobs"`
	}
	if _, err := c.do(ctx, http.MethodPost, "/v1/jobs/batch", nil, body, &resp); err != nil {
		return nil, fmt.Errorf("enqueue batch of %d: %w", len(reqs), err)
	}
	if len(resp.Jobs) != len(reqs) {
		return nil, fmt.Errorf("enqueue batch of %d: API returned %d results", len(reqs), len(resp.Jobs))
	}
	for i, r := range resp.Jobs {
		if (r.Job == nil) == (r.Error == nil) {
			return nil, fmt.Errorf("enqueue batch of %d: result %d has neither a job nor an error", len(reqs), i)
		}
	}
	return resp.Jobs, nil
}

// Get returns the job with the given id as it stands.
func (c *Client) Get(ctx context.Context, id string) (*jobs.Job, error) {
	j, err := c.get(ctx, id, 0)
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	return j, nil
}

// Wait long-polls the job: the API answers when the job is terminal or after
// d (at most MaxWait), with the job as it stands either way. A d of zero or
// less is the same as Get.
func (c *Client) Wait(ctx context.Context, id string, d time.Duration) (*jobs.Job, error) {
	j, err := c.get(ctx, id, min(d, MaxWait))
	if err != nil {
		return nil, fmt.Errorf("wait for job %s: %w", id, err)
	}
	return j, nil
}

// WaitDone waits until the job is terminal (succeeded, failed or canceled)
// and returns it, polling with Wait(MaxWait) as often as needed. It returns
// an error wrapping ctx's error if ctx ends first.
func (c *Client) WaitDone(ctx context.Context, id string) (*jobs.Job, error) {
	for {
		start := time.Now()
		j, err := c.Wait(ctx, id, MaxWait)
		if err != nil {
			return nil, err
		}
		if j.Status.Terminal() {
			return j, nil
		}
		// A server answering at once instead of holding the poll would
		// otherwise be asked again in a tight loop.
		if rest := c.minPoll - time.Since(start); rest > 0 {
			t := time.NewTimer(rest)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("wait for job %s: %w", id, ctx.Err())
			case <-t.C:
			}
		}
	}
}

// Cancel cancels the job with the given id and returns it as it stands
// after, with status canceled. A job that has already ended cannot be
// canceled: the API answers 409, for which IsConflict reports true. An
// unknown id gives an error for which IsNotFound reports true.
func (c *Client) Cancel(ctx context.Context, id string) (*jobs.Job, error) {
	if id == "" {
		return nil, errors.New("cancel job: job id is empty")
	}
	var j jobs.Job
	if _, err := c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/cancel", nil, nil, &j); err != nil {
		return nil, fmt.Errorf("cancel job %s: %w", id, err)
	}
	return &j, nil
}

// DeadLetter is a job in its pool's dead-letter queue: one that failed for
// good and can be replayed (run again from its first attempt) or purged.
type DeadLetter struct {
	// ID is the job's id.
	ID string `json:"id"`
	// Type is the job's type.
	Type string `json:"type"`
	// Error is the failure that ended the job, if the API knows it.
	Error *jobs.Error `json:"error,omitempty"`
	// Attempts is how many attempts the job took.
	Attempts int `json:"attempts"`
	// Reason is "failed" when a worker gave up on the job, "limit" when the
	// broker dead-lettered it after too many deliveries.
	Reason string `json:"reason,omitempty"`
	// FailedAt is when the job was dead-lettered; zero if the API does not
	// say.
	FailedAt time.Time `json:"failed_at,omitzero"`
	// Payload is the job's input.
	Payload json.RawMessage `json:"payload,omitempty"`
}

// DeadList is a look at one pool's dead-letter queue.
type DeadList struct {
	// Pool is the pool whose queue this is.
	Pool string `json:"pool"`
	// Total is how many messages the dead-letter queue holds; it may be
	// more than len(Dead).
	Total int `json:"total"`
	// Dead is the oldest dead letters, up to the limit asked for.
	Dead []DeadLetter `json:"dead"`
}

// Dead lists the oldest dead letters of a pool, at most limit of them (the
// API allows up to 1000); a limit of zero or less means the API's default,
// 100. Listing leaves the dead letters where they are. A pool that has no
// dead-letter queue yet (no worker of it has run) gives an error for which
// IsNotFound reports true.
func (c *Client) Dead(ctx context.Context, pool string, limit int) (*DeadList, error) {
	if pool == "" {
		return nil, errors.New("list dead letters: pool is empty")
	}
	q := url.Values{"pool": {pool}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var l DeadList
	if _, err := c.do(ctx, http.MethodGet, "/v1/dead", q, nil, &l); err != nil {
		return nil, fmt.Errorf("list dead letters of pool %s: %w", pool, err)
	}
	return &l, nil
}

// replayRequest is the body of POST /v1/dead/replay.
type replayRequest struct {
	Pool string   `json:"pool"`
	IDs  []string `json:"ids,omitempty"`
	All  bool     `json:"all,omitempty"`
}

// replayResponse is the answer of POST /v1/dead/replay.
type replayResponse struct {
	Replayed int      `json:"replayed"`
	Missing  []string `json:"missing"`
}

// ReplayDead takes the jobs with the given ids out of a pool's dead-letter
// queue and queues them again, status queued, with their attempts reset.
// replayed is how many were; missing lists the ids that were not in the
// dead-letter queue (nil if none). No ids replays nothing and sends
// nothing; ReplayAllDead replays them all.
func (c *Client) ReplayDead(ctx context.Context, pool string, ids []string) (replayed int, missing []string, err error) {
	if len(ids) == 0 {
		return 0, nil, nil
	}
	if pool == "" {
		return 0, nil, errors.New("replay dead letters: pool is empty")
	}
	r, err := c.replay(ctx, replayRequest{Pool: pool, IDs: ids})
	if err != nil {
		return 0, nil, fmt.Errorf("replay %d dead letters of pool %s: %w", len(ids), pool, err)
	}
	if len(r.Missing) == 0 {
		r.Missing = nil
	}
	return r.Replayed, r.Missing, nil
}

// ReplayAllDead queues every job in a pool's dead-letter queue again, as
// ReplayDead does, and returns how many it replayed.
func (c *Client) ReplayAllDead(ctx context.Context, pool string) (int, error) {
	if pool == "" {
		return 0, errors.New("replay dead letters: pool is empty")
	}
	r, err := c.replay(ctx, replayRequest{Pool: pool, All: true})
	if err != nil {
		return 0, fmt.Errorf("replay all dead letters of pool %s: %w", pool, err)
	}
	return r.Replayed, nil
}

func (c *Client) replay(ctx context.Context, req replayRequest) (*replayResponse, error) {
	var r replayResponse
	if _, err := c.do(ctx, http.MethodPost, "/v1/dead/replay", nil, req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// PurgeDead deletes every dead letter of a pool, for good, and returns how
// many it deleted.
func (c *Client) PurgeDead(ctx context.Context, pool string) (int, error) {
	if pool == "" {
		return 0, errors.New("purge dead letters: pool is empty")
	}
	var r struct {
		Purged int `json:"purged"`
	}
	if _, err := c.do(ctx, http.MethodDelete, "/v1/dead", url.Values{"pool": {pool}}, nil, &r); err != nil {
		return 0, fmt.Errorf("purge dead letters of pool %s: %w", pool, err)
	}
	return r.Purged, nil
}

// Queue is one pool's queue as the API measured it.
type Queue struct {
	// Pool is the pool's name.
	Pool string `json:"pool"`
	// Ready is the messages waiting for a worker.
	Ready int `json:"ready"`
	// Unacked is the messages delivered to a worker and not yet settled:
	// jobs running, or prefetched. 0 when Source is "amqp", which cannot
	// count them.
	Unacked int `json:"unacked"`
	// Backlog is Ready + Unacked: the work autoscalers size the pool on.
	Backlog int `json:"backlog"`
	// High is the part of Backlog in the pool's high lane: jobs of
	// priority 5 to 9 (docs/priorities.md).
	High int `json:"high"`
	// Consumers is the consumers of the queue: one per worker process.
	Consumers int `json:"consumers"`
	// Source is what measured the queue: "management" (RabbitMQ's
	// management API) or "amqp".
	Source string `json:"source"`
	// OldestAgeSeconds is how long the pool's oldest waiting job has
	// waited, in seconds; 0 when none waits. OldestAge gives it as a
	// duration.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	// Dead is the messages in the pool's dead-letter queue.
	Dead int `json:"dead"`
	// RescuedLastHour is how many of the pool's jobs the rescuer published
	// again in the last hour because their messages were lost.
	RescuedLastHour int `json:"rescued_last_hour"`
	// Replicas is the pool's autoscaler's latest word; nil when no
	// autoscaler reported on the pool recently.
	Replicas *Replicas `json:"replicas,omitempty"`
	// Paused says the pool's workers take no new jobs (PausePool), since
	// PausedAt, by PausedBy (the name of the API key, if any).
	Paused   bool       `json:"paused"`
	PausedAt *time.Time `json:"paused_at,omitempty"`
	PausedBy string     `json:"paused_by,omitempty"`
	// Scheduled, Running and Retrying count the pool's jobs by status.
	Scheduled int `json:"scheduled"`
	Running   int `json:"running"`
	Retrying  int `json:"retrying"`
	// Limited counts the pool's jobs their types' rate limits hold back
	// now (docs/ratelimits.md).
	Limited int `json:"limited"`
	// SucceededLastHour and FailedLastHour count the pool's outcomes over
	// the last hour; PerMinute has them minute by minute, oldest first.
	SucceededLastHour int           `json:"succeeded_last_hour"`
	FailedLastHour    int           `json:"failed_last_hour"`
	PerMinute         []MinuteCount `json:"per_minute,omitempty"`
}

// MinuteCount is one minute's outcomes of a pool.
type MinuteCount struct {
	Minute    time.Time `json:"minute"`
	Succeeded int       `json:"succeeded"`
	Failed    int       `json:"failed"`
}

// JobQuery filters a listing of jobs (GET /v1/jobs). Zero fields do not
// filter.
type JobQuery struct {
	Status jobs.Status
	Type   string
	Pool   string
	// Meta holds labels the jobs must all carry.
	Meta map[string]string
	// Since and Until bound the jobs' creation time.
	Since, Until time.Time
	// Limit is the most jobs of a page (the API allows 1000); zero means
	// the API's default, 100.
	Limit int
	// Cursor continues a listing: the NextCursor of the previous page.
	Cursor string
}

// JobPage is one page of a listing, newest job first.
type JobPage struct {
	Jobs []*jobs.Job `json:"jobs"`
	// NextCursor continues the listing; empty at its end. A page may hold
	// fewer jobs than asked for and still go on.
	NextCursor string `json:"next_cursor,omitempty"`
}

// List returns a page of the jobs q asks for, newest first.
func (c *Client) List(ctx context.Context, q JobQuery) (*JobPage, error) {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("status", string(q.Status))
	set("type", q.Type)
	set("pool", q.Pool)
	for k, val := range q.Meta {
		v.Set("meta."+k, val)
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	set("cursor", q.Cursor)
	var page JobPage
	if _, err := c.do(ctx, http.MethodGet, "/v1/jobs", v, nil, &page); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return &page, nil
}

// OldestAge is OldestAgeSeconds as a duration.
func (q Queue) OldestAge() time.Duration {
	return time.Duration(q.OldestAgeSeconds * float64(time.Second))
}

// Replicas is an autoscaler's latest word on a pool's worker processes.
type Replicas struct {
	// Current is how many the pool had when the autoscaler looked.
	Current int `json:"current"`
	// Desired is how many it decided the pool should have.
	Desired int `json:"desired"`
	// Reason says why, for people; may be empty.
	Reason string `json:"reason"`
	// At is when the autoscaler decided.
	At time.Time `json:"at"`
}

// Queues returns the queue of every pool the API knows (those of declared
// types, and those an autoscaler reports on), sorted by pool.
func (c *Client) Queues(ctx context.Context) ([]Queue, error) {
	var r struct {
		Queues []Queue `json:"queues"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/v1/queues", nil, nil, &r); err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	return r.Queues, nil
}

// Types returns the job types declared to the API that the client's key may
// submit, sorted by name, with their pools, defaults and payload schemas.
func (c *Client) Types(ctx context.Context) ([]jobs.Type, error) {
	var r struct {
		Types []jobs.Type `json:"types"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/v1/types", nil, nil, &r); err != nil {
		return nil, fmt.Errorf("list types: %w", err)
	}
	return r.Types, nil
}

func (c *Client) get(ctx context.Context, id string, wait time.Duration) (*jobs.Job, error) {
	if id == "" {
		return nil, errors.New("job id is empty")
	}
	var q url.Values
	if wait > 0 {
		q = url.Values{"wait": {wait.String()}}
	}
	var j jobs.Job
	if _, err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), q, nil, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// do sends one request with in (if not nil) as its JSON body and decodes a
// successful response into out. It returns the response status, an
// *APIError for an error status, or an *UnreachableError.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	var header http.Header
	if in != nil {
		header = http.Header{"Content-Type": {"application/json"}}
	}
	return c.doHeader(ctx, method, path, query, header, body, out)
}

// doHeader is do with a body already encoded and more request headers.
func (c *Client) doHeader(ctx context.Context, method, path string, query url.Values, header http.Header, body io.Reader, out any) (int, error) {
	resp, err := c.send(ctx, method, path, query, header, body)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) {
			return ae.Status, err
		}
		return 0, err
	}
	defer func() {
		// Drain what is left so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("decode %d response from %s: %w", resp.StatusCode, resp.Request.URL, err)
	}
	return resp.StatusCode, nil
}

// send sends one request with the headers every request carries, and
// header. It returns the response to a 2xx status, whose body the caller
// reads and closes; an *APIError for an error status; or an
// *UnreachableError.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, header http.Header, body io.Reader) (*http.Response, error) {
	u := c.baseURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	req.Header.Set("User-Agent", "warren-go-client")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, readAPIError(resp)
	}
	return resp, nil
}

// transportError turns a failure to reach the API into an *UnreachableError,
// leaving cancellations and other failures as they are.
func (c *Client) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	var op *net.OpError
	var dns *net.DNSError
	if errors.As(err, &dns) || (errors.As(err, &op) && op.Op == "dial") {
		return &UnreachableError{URL: c.baseURL, Err: err}
	}
	return err
}

// APIError is an error the API answered with.
type APIError struct {
	// Status is the HTTP status; zero for the error of one job in a batch.
	Status int `json:"-"`
	// Code is a stable, machine-readable word such as "unknown_type"; empty
	// when the response was not the API's JSON error (from a proxy, say).
	Code string `json:"code"`
	// Message is for people.
	Message string `json:"message"`
	// Field names the request field at fault, such as "payload.url", if any.
	Field string `json:"field,omitempty"`
	// RetryAfter is how long the API asked the client to wait before trying
	// again (its Retry-After header, on a 429 or 503); zero if it did not
	// say.
	RetryAfter time.Duration `json:"-"`
}

// Error returns the error as one line, such as
// `400 unknown_type: unknown job type "x.y" [field type]`.
func (e *APIError) Error() string {
	var b strings.Builder
	if e.Status != 0 {
		fmt.Fprintf(&b, "%d", e.Status)
	}
	code := e.Code
	if code == "" {
		code = http.StatusText(e.Status)
	}
	if code != "" {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(code)
	}
	if e.Message != "" {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Message)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, " [field %s]", e.Field)
	}
	if b.Len() == 0 {
		return "API error"
	}
	return b.String()
}

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// readAPIError reads an error response: the API's JSON error if it is one,
// else the start of the body as the message.
func readAPIError(resp *http.Response) *APIError {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var env struct {
		Error *APIError `json:"error"`
	}
	if err := json.Unmarshal(b, &env); err == nil && env.Error != nil && (env.Error.Code != "" || env.Error.Message != "") {
		env.Error.Status = resp.StatusCode
		env.Error.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
		return env.Error
	}
	e := &APIError{Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	// An HTML page (a proxy's error page, say) says nothing the status
	// does not; plain text usually does.
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		e.Message = oneLine(string(b), 200)
	}
	return e
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date (counted
// from now). Zero for none, or for one that cannot be read.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(n, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// oneLine collapses s's whitespace into single spaces and cuts it to at most
// n bytes, at a rune boundary.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// IsNotFound reports whether err is, or wraps, the API's 404: no job has the
// id asked for, or the pool asked for has no dead-letter queue.
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// IsConflict reports whether err is, or wraps, the API's 409: the request
// does not fit the job's state, such as canceling a job that has ended.
func IsConflict(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == http.StatusConflict
}

// UnreachableError reports that no API answered at the client's address:
// the connection was refused, the host is unknown, or the dial timed out.
type UnreachableError struct {
	// URL is the API address the client used.
	URL string
	// Err is the network error.
	Err error
}

// Error says which address did not answer, why, and how to start the API.
func (e *UnreachableError) Error() string {
	return fmt.Sprintf("warren API at %s is not reachable (%s); start it with 'make run' or 'warren dev'", e.URL, innermost(e.Err))
}

// Unwrap returns the network error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// IsUnreachable reports whether err is, or wraps, an *UnreachableError.
func IsUnreachable(err error) bool {
	var e *UnreachableError
	return errors.As(err, &e)
}

// innermost returns the message of the last error in err's chain, such as
// "connection refused" for a refused dial.
func innermost(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
