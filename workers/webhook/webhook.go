// Package webhook is warren's pool for delivering HTTP callbacks: the
// webhook.deliver type sends a request to a URL the submitter names, signs it
// when asked, and records the receiver's answer. Targets go through package
// egress, so internal addresses (loopback, private networks, cloud metadata)
// and hosts written as numbers (2130706433, 127.1) are refused unless
// Config.Allow lets them through.
//
// # Payload
//
//	{
//	  "url":     "https://example.com/hooks/warren",  // required, http or https
//	  "method":  "POST",                              // POST (default), PUT or PATCH
//	  "headers": {"X-Tenant": "42"},                  // optional, text values
//	  "body":    {"event": "order.paid"},             // optional, any JSON value
//	  "timeout": "10s",                               // optional, default 10s, at most 5m
//	  "secret":  "orders"                             // optional, the NAME of a signing secret
//	}
//
// A string body is sent as it is, with Content-Type text/plain; any other
// body is sent as JSON, with Content-Type application/json; a Content-Type
// in headers overrides either. Headers that the transport owns (Host,
// Content-Length, Transfer-Encoding, Connection, …) and names starting with
// "Warren-" are refused.
//
// # Outcome
//
// A 2xx answer succeeds, with the result
//
//	{"status": 200, "headers": {"Content-Type": "…"}, "duration_ms": 12}
//
// where headers keeps Content-Type, Content-Length, Location, Retry-After and
// X-Request-Id when present. The receiver's body is not kept unless
// Config.KeepResponseBody is set: the result then has "body", its first
// Config.MaxResponseBody bytes, and "body_truncated", and a failure's message
// quotes its start. (Kept bodies let whoever submits jobs read what any
// allowed address answers, internal ones included.)
//
// Network errors, timeouts, 408, 429 and 5xx are retried (codes "network",
// "timeout", "http_503", …), after the receiver's Retry-After for 429 and
// 503 when it gives one (capped at MaxRetryAfter). Everything else fails at
// once, never retried: "http_404" and the like; "refused_target" for a
// target egress refuses (an internal address, a host written as a number);
// "unknown_secret" for a secret name not configured; "secret_not_allowed"
// for a secret that does not sign for the URL; "too_many_redirects";
// "invalid_payload".
//
// Redirects are not followed: a 3xx answer fails the job as "http_302" and
// the like. With Config.FollowRedirects, a redirect within the origin
// (scheme, host and port) of the URL is followed, and for a signed delivery
// only to a URL the secret signs for; a 302 or 303 turns the request into a
// GET without a body, as browsers do. A redirect to another origin is never
// followed.
//
// # Headers and signature
//
// Every request carries Warren-Job-Id (the same on every attempt: use it to
// discard duplicates) and Warren-Attempt (1, 2, …). When the payload names a
// secret, the request also carries
//
//	Warren-Signature: t=1718000000,v1=fef0a378c9b3a57468bb6a7752464f133c941abd3cc75f9db4430e8ea40adbcb
//
// where t is the time of sending in Unix seconds and v1 the hex HMAC-SHA256,
// keyed with the secret, of t, a dot and the body bytes exactly as sent. Each
// attempt is signed afresh. A receiver checks it before trusting the body:
//
//	// verify reports whether a delivery is signed with secret and recent.
//	func verify(secret []byte, header string, body []byte, now time.Time) bool {
//		var ts, sig string
//		for _, part := range strings.Split(header, ",") {
//			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
//			switch k {
//			case "t":
//				ts = v
//			case "v1":
//				sig = v
//			}
//		}
//		t, err := strconv.ParseInt(ts, 10, 64)
//		if err != nil || now.Sub(time.Unix(t, 0)).Abs() > 5*time.Minute {
//			return false // unsigned, or too old: perhaps replayed
//		}
//		got, err := hex.DecodeString(sig)
//		if err != nil {
//			return false
//		}
//		mac := hmac.New(sha256.New, secret)
//		mac.Write([]byte(ts + "."))
//		mac.Write(body)
//		return hmac.Equal(got, mac.Sum(nil))
//	}
//
// called as verify(secret, r.Header.Get("Warren-Signature"), body, time.Now())
// with body the raw bytes read from r.Body.
//
// # Secrets
//
// Payloads name secrets, never hold them: Config.Secrets maps names to
// secrets, and binds each to the URLs it signs for, as a list of prefixes
// such as https://a.example/hooks/. Whoever may submit jobs may name any
// secret, so the binding is what keeps a secret's signature for its own
// receivers. A URL is signed for when it has a prefix's origin and its path
// lies under the prefix's path: whole segments (https://a.example/hooks
// covers /hooks and /hooks/x, not /hooksx), compared as written (escaped),
// and never a path with "." or ".." segments, which a receiver might
// resolve to a place outside the prefix. A secret with no prefixes signs for
// nothing: jobs naming it fail with "secret_not_allowed".
package webhook

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warrenhq/warren/egress"
	"github.com/warrenhq/warren/jobs"
)

// Pool is the name of the pool that runs webhook deliveries.
const Pool = "webhook"

// DefaultConcurrency suits deliveries, which mostly wait on the network.
const DefaultConcurrency = 64

// Limits of a delivery.
const (
	// DefaultTimeout bounds a request whose payload names no timeout.
	DefaultTimeout = 10 * time.Second
	// MaxTimeout is the longest timeout a payload may ask for.
	MaxTimeout = 5 * time.Minute
	// DefaultMaxResponseBody is how much of a response body a result keeps.
	DefaultMaxResponseBody = 4096
	// MaxRetryAfter caps the wait a receiver may ask for with Retry-After.
	MaxRetryAfter = 24 * time.Hour
)

// Deliver is the webhook.deliver type. Its defaults retry for about three
// and a half hours (10 attempts, waits from 5s growing threefold to 1h);
// a job may ask for other settings, up to 30 attempts (about a day of
// retries, for a receiver that is down that long). Its timeout covers the
// longest request a job may ask for, so a job cannot ask for more.
var Deliver = jobs.Type{
	Name:             "webhook.deliver",
	Pool:             Pool,
	Timeout:          jobs.Duration(MaxTimeout + time.Minute),
	MaxAttempts:      10,
	MaxAttemptsLimit: 30,
	Backoff:          jobs.Backoff{Base: jobs.Duration(5 * time.Second), Factor: 3, Max: jobs.Duration(time.Hour)},
	Description:      "Sends an HTTP request to url, signed with a named secret when asked; 2xx succeeds, 5xx/408/429/network errors retry.",
	Schema: json.RawMessage(`{
  "type": "object",
  "properties": {
    "url": {"type": "string", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]", "maxLength": 8192},
    "method": {"enum": ["POST", "PUT", "PATCH"]},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    "body": {},
    "timeout": {"type": "string", "pattern": "^([0-9]+(\\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$"},
    "secret": {"type": "string", "minLength": 1}
  },
  "required": ["url"],
  "additionalProperties": false
}`),
}

// Config configures the webhook service.
type Config struct {
	// Secrets maps a secret's name, which payloads give as "secret", to the
	// signing secret and the URLs it signs for. Nil means no delivery can be
	// signed. A secret without a value is as good as absent, and one without
	// URLs signs for none; Register logs a warning for either.
	Secrets map[string]Secret
	// Allow lists internal targets deliveries may reach anyway, by address
	// or name and port (see egress.Rule); empty allows none.
	Allow []egress.Rule
	// FollowRedirects, when true, follows redirects within the origin of
	// the URL (and for a signed delivery, to URLs its secret signs for);
	// false follows none, and a 3xx answer fails the job.
	FollowRedirects bool
	// KeepResponseBody, when true, keeps the start of the receiver's answer
	// in the result and in failure messages; false keeps neither.
	KeepResponseBody bool
	// MaxResponseBody is how many bytes of a response body a result keeps
	// when KeepResponseBody is set; zero means DefaultMaxResponseBody.
	MaxResponseBody int
	// Logger receives Register's warnings about secrets that cannot sign;
	// nil discards them.
	Logger *slog.Logger
}

// Secret is a signing secret and the URLs it signs for.
type Secret struct {
	// Value is the HMAC key.
	Value string
	// Allow lists the URL prefixes a delivery signed with this secret may
	// go to, as scheme://host[:port][/path] (no query, fragment or user);
	// see the package doc for how a URL is matched. Empty: none, and jobs
	// naming the secret fail with secret_not_allowed.
	Allow []string
}

// Result is what a successful delivery returns.
type Result struct {
	// Status is the receiver's HTTP status.
	Status int `json:"status"`
	// Headers holds the response headers worth keeping, when present.
	Headers map[string]string `json:"headers,omitempty"`
	// Body is the start of the response body, when Config.KeepResponseBody
	// is set.
	Body string `json:"body,omitempty"`
	// BodyTruncated says Body was cut short (or could not be read whole).
	BodyTruncated bool `json:"body_truncated,omitempty"`
	// DurationMS is how long the request took, in milliseconds.
	DurationMS int64 `json:"duration_ms"`
}

// Register registers webhook.deliver with r.
func Register(r jobs.Registrar, cfg Config) error {
	if cfg.MaxResponseBody < 0 {
		return fmt.Errorf("webhook: max response body %d: want 0 or more", cfg.MaxResponseBody)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	secrets := make(map[string]*signer, len(cfg.Secrets))
	for _, name := range slices.Sorted(maps.Keys(cfg.Secrets)) {
		s := cfg.Secrets[name]
		if name == "" {
			return errors.New("webhook: a secret without a name")
		}
		sg := &signer{key: []byte(s.Value)}
		for _, a := range s.Allow {
			p, err := parsePrefix(a)
			if err != nil {
				return fmt.Errorf("webhook: secret %q: %w", name, err)
			}
			sg.allow = append(sg.allow, p)
		}
		switch {
		case s.Value == "":
			log.Warn("webhook: a signing secret has no value; jobs naming it fail with unknown_secret",
				"secret", name, "fix", "set webhook.secrets."+name+".secret, or "+name+"=… in WARREN_WEBHOOK_SECRETS")
			continue
		case len(s.Allow) == 0:
			log.Warn("webhook: a signing secret has no allow list and signs for no URL; jobs naming it fail with secret_not_allowed",
				"secret", name, "fix", "list the URL prefixes it signs for, such as https://a.example/hooks/, in webhook.secrets."+name+".allow")
		}
		secrets[name] = sg
	}
	maxRedirects := -1
	if cfg.FollowRedirects {
		maxRedirects = egress.DefaultMaxRedirects
	}
	d := &deliverer{
		secrets:  secrets,
		keepBody: cfg.KeepResponseBody,
		follow:   cfg.FollowRedirects,
		maxBody:  cmp.Or(cfg.MaxResponseBody, DefaultMaxResponseBody),
		client: egress.NewClient(egress.Config{
			Rules:               cfg.Allow,
			Timeout:             MaxTimeout,
			MaxRedirects:        maxRedirects,
			SameOriginRedirects: true,
		}),
		now: time.Now,
	}
	// A payload that does not decode is invalid_payload, as any the
	// handler cannot send.
	h := jobs.Typed(d.deliver).OnBadPayload(func(err error) error { return invalid("%v", err) })
	if err := r.Handle(Deliver, h); err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	return nil
}

type deliverer struct {
	secrets  map[string]*signer
	keepBody bool
	follow   bool
	maxBody  int
	client   *http.Client
	now      func() time.Time
}

// signer is a secret and the URLs it signs for.
type signer struct {
	key   []byte
	allow []urlPrefix
}

// signsFor says whether s may sign a request to u.
func (s *signer) signsFor(u *url.URL) bool {
	for _, p := range s.allow {
		if p.matches(u) {
			return true
		}
	}
	return false
}

type payload struct {
	URL     string            `json:"url"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"`
	Timeout *jobs.Duration    `json:"timeout"`
	Secret  string            `json:"secret"`
}

// invalid is a payload the handler cannot send; no retry will fix it.
func invalid(format string, args ...any) error {
	return jobs.Permanent(&jobs.CodedError{Code: "invalid_payload", Err: fmt.Errorf("webhook: "+format, args...)})
}

// deliver sends the request and returns the receiver's answer.
func (d *deliverer) deliver(ctx context.Context, job *jobs.Job, p payload) (Result, error) {
	req, target, sg, err := d.request(ctx, job, &p)
	if err != nil {
		return Result{}, err
	}
	timeout := DefaultTimeout
	if p.Timeout != nil {
		timeout = p.Timeout.Std()
	}
	reqCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req = req.WithContext(reqCtx)

	client := d.client
	if sg != nil && d.follow {
		// A signed delivery follows a redirect only to a URL its secret
		// signs for; egress keeps it within the origin.
		c := *d.client
		sameOrigin := c.CheckRedirect
		c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if err := sameOrigin(req, via); err != nil {
				return err
			}
			if !sg.signsFor(req.URL) {
				return http.ErrUseLastResponse
			}
			return nil
		}
		client = &c
	}

	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return Result{}, failure(ctx, reqCtx, target, timeout, err)
	}
	defer resp.Body.Close()
	var body []byte
	truncated := false
	if d.keepBody {
		// Read a byte more than kept, to know whether the body was cut. A
		// read error after the status arrived does not change the outcome:
		// the receiver has answered, and a 2xx must not be delivered again.
		var readErr error
		body, readErr = io.ReadAll(io.LimitReader(resp.Body, int64(d.maxBody)+1))
		truncated = readErr != nil || len(body) > d.maxBody
		body = body[:min(len(body), d.maxBody)]
	}
	// Drain a little more so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	elapsed := time.Since(start)

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return Result{
			Status:        resp.StatusCode,
			Headers:       keptHeaders(resp),
			Body:          string(body),
			BodyTruncated: truncated,
			DurationMS:    elapsed.Milliseconds(),
		}, nil
	}
	return Result{}, d.statusError(target, resp, body)
}

// request builds the signed request for p, and returns the signer when it
// is signed.
func (d *deliverer) request(ctx context.Context, job *jobs.Job, p *payload) (*http.Request, string, *signer, error) {
	u, err := url.Parse(p.URL)
	if err != nil {
		return nil, "", nil, invalid("url: %v", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, "", nil, invalid("url %q: want an http or https URL with a host", u.Redacted())
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return nil, "", nil, invalid("url %q: port %s: want 1 to 65535", u.Redacted(), port)
		}
	}
	// The target as errors name it: no credentials, no query (which often
	// holds a token), no fragment.
	target := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()

	method := p.Method
	switch method {
	case "":
		method = http.MethodPost
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return nil, "", nil, invalid("method %q: want POST, PUT or PATCH", method)
	}
	if p.Timeout != nil && (*p.Timeout <= 0 || p.Timeout.Std() > MaxTimeout) {
		return nil, "", nil, invalid("timeout %s: want more than 0 and at most %s", p.Timeout.Std(), MaxTimeout)
	}

	header := make(http.Header, len(p.Headers)+5)
	for k, v := range p.Headers {
		if err := checkHeader(k, v); err != nil {
			return nil, "", nil, invalid("%v", err)
		}
		header.Set(k, v)
	}

	var body []byte
	contentType := ""
	switch raw := bytes.TrimSpace(p.Body); {
	case len(raw) == 0:
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, "", nil, invalid("body: %v", err)
		}
		body, contentType = []byte(s), "text/plain; charset=utf-8"
	default:
		body, contentType = raw, "application/json"
	}
	if header.Get("Content-Type") == "" && contentType != "" {
		header.Set("Content-Type", contentType)
	}
	if header.Get("User-Agent") == "" {
		header.Set("User-Agent", "warren-webhook/1")
	}
	header.Set("Warren-Job-Id", job.ID)
	header.Set("Warren-Attempt", strconv.Itoa(job.Attempt))
	var sg *signer
	if p.Secret != "" {
		var ok bool
		sg, ok = d.secrets[p.Secret]
		if !ok {
			return nil, "", nil, jobs.Permanent(&jobs.CodedError{
				Code: "unknown_secret",
				Err:  fmt.Errorf("webhook: no signing secret named %q is configured", p.Secret),
			})
		}
		if !sg.signsFor(u) {
			why := fmt.Errorf("webhook: secret %q does not sign for %s", p.Secret, target)
			if len(sg.allow) == 0 {
				why = fmt.Errorf("webhook: secret %q signs for no URL: it has no allow list", p.Secret)
			}
			return nil, "", nil, jobs.Permanent(&jobs.CodedError{Code: "secret_not_allowed", Err: why})
		}
		header.Set("Warren-Signature", Sign(sg.key, d.now(), body))
	}

	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, "", nil, invalid("%v", err)
	}
	req.Header = header
	return req, target, sg, nil
}

// Sign returns the Warren-Signature header value for body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with secret>".
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// reservedHeaders are set by the transport or by us.
var reservedHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true,
	"Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authorization": true, "Te": true,
	"Trailer": true, "Upgrade": true,
}

func checkHeader(name, value string) error {
	if name == "" {
		return errors.New("header with an empty name")
	}
	for _, c := range []byte(name) {
		if !isTokenChar(c) {
			return fmt.Errorf("header name %q: want letters, digits and !#$%%&'*+-.^_`|~", name)
		}
	}
	canon := http.CanonicalHeaderKey(name)
	if reservedHeaders[canon] || strings.HasPrefix(canon, "Warren-") {
		return fmt.Errorf("header %s is set by warren, not the payload", canon)
	}
	for _, c := range []byte(value) {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Errorf("header %s: value holds a control character", canon)
		}
	}
	return nil
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// failure classifies an error from sending the request.
func failure(ctx, reqCtx context.Context, target string, timeout time.Duration, err error) error {
	// The *url.Error names the full URL, query included; we name target.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	err = fmt.Errorf("webhook: %s: %w", target, err)
	switch {
	case errors.Is(err, egress.ErrRefused):
		return jobs.Permanent(&jobs.CodedError{Code: "refused_target", Err: err})
	case errors.Is(err, egress.ErrTooManyRedirects):
		return jobs.Permanent(&jobs.CodedError{Code: "too_many_redirects", Err: err})
	case ctx.Err() != nil:
		// The job's own timeout or a cancellation, which the runtime
		// records as such.
		return fmt.Errorf("webhook: %s: %w", target, context.Cause(ctx))
	case reqCtx.Err() != nil:
		return &jobs.CodedError{Code: "timeout", Err: fmt.Errorf("%w: no answer within %s", err, timeout)}
	}
	return &jobs.CodedError{Code: "network", Err: err}
}

// statusError classifies a response that is not 2xx.
func (d *deliverer) statusError(target string, resp *http.Response, body []byte) error {
	code := resp.StatusCode
	msg := fmt.Sprintf("webhook: %s answered %s", target, resp.Status)
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		if d.follow {
			msg += " (a redirect to another origin, or to a URL the secret does not sign for, is not followed)"
		} else {
			msg += " (redirects are not followed)"
		}
	}
	if s := snippet(body); s != "" {
		msg += ": " + s
	}
	err := &jobs.CodedError{Code: "http_" + strconv.Itoa(code), Err: errors.New(msg)}
	switch {
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		if after, ok := retryAfter(resp.Header.Get("Retry-After"), d.now()); ok {
			return jobs.RetryAfter(err, after)
		}
		return err
	case code == http.StatusRequestTimeout || code >= 500:
		return err
	}
	return jobs.Permanent(err)
}

// retryAfter reads a Retry-After value: seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		d = time.Duration(min(secs, int64(MaxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(t.Sub(now), 0)
	} else {
		return 0, false
	}
	return min(d, MaxRetryAfter), true
}

// snippet is the start of a response body, on one line, for an error.
func snippet(body []byte) string {
	const n = 200
	s := strings.ToValidUTF8(string(body[:min(len(body), n)]), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(body) > n {
		s += "…"
	}
	return s
}

var keptHeaderNames = []string{"Content-Type", "Content-Length", "Location", "Retry-After", "X-Request-Id"}

func keptHeaders(resp *http.Response) map[string]string {
	h := map[string]string{}
	for _, k := range keptHeaderNames {
		if v := resp.Header.Get(k); v != "" {
			h[k] = v
		}
	}
	if _, ok := h["Content-Length"]; !ok && resp.ContentLength >= 0 {
		h["Content-Length"] = strconv.FormatInt(resp.ContentLength, 10)
	}
	if len(h) == 0 {
		return nil
	}
	return h
}
