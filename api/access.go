package api

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/warrenhq/warren/apikey"
	"github.com/warrenhq/warren/store"
)

// Who may call the API, and how often.
//
// With keys configured (Config.Keys), every endpoint but /healthz, /readyz
// and /openapi.json wants "Authorization: Bearer KEY": a missing or unknown
// key gets 401, a key without the endpoint's scope or limited to other job
// types 403, and a key over its rate 429. Without keys the API serves
// loopback only (Start refuses other addresses unless InsecureNoAuth) and
// answers only requests whose Host is an address or a loopback name, so a
// web page cannot reach it through a DNS name it rebinds to 127.0.0.1.
// Either way a request a browser sends from another origin is refused.

// caller is who sent a request: the key it presented, or anyone where the
// API runs without keys.
type caller struct {
	key  apikey.Key
	open bool // no keys configured: every scope and type is allowed
}

// name is what the logs and job records call the caller: the key's name,
// or "" without keys.
func (c caller) name() string { return c.key.Name }

func (c caller) allowsType(t string) bool { return c.open || c.key.AllowsType(t) }

// limited reports whether the caller may touch only some job types.
func (c caller) limited() bool { return !c.open && c.key.Limited() }

type callerKey struct{}

func callerOf(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// authenticating reports whether the API asks for keys.
func (s *Server) authenticating() bool { return s.cfg.Keys.Len() > 0 }

// need wraps h so that it runs only for a caller holding scope; an empty
// scope asks only that the caller be known. Every request but a
// submission takes a token of the key's request rate here; a submission
// takes it with its jobs, once it knows how many (admitJobs).
func (s *Server) need(scope apikey.Scope, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authenticating() {
			h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, caller{open: true})))
			return
		}
		key, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		if scope != "" && !key.Allows(scope) {
			s.log.Warn("refused a key without the scope asked for", "key", key.Name, "scope", scope,
				"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="warren", error="insufficient_scope", scope=%q`, scope))
			writeError(w, apiErr("forbidden", "", "key %s lacks the %s scope this endpoint needs", key.Name, scope))
			return
		}
		c := caller{key: key}
		if scope != apikey.Submit {
			if err := s.admit(r.Context(), c, 0); err != nil {
				writeError(w, toAPIError(s.log, err))
				return
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

// authenticate finds the key a request presents, or answers 401.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (apikey.Key, bool) {
	refuse := func(challenge string, e *Error) (apikey.Key, bool) {
		w.Header().Set("WWW-Authenticate", challenge)
		writeError(w, e)
		return apikey.Key{}, false
	}
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		if secret, ok := sessionSecret(r); ok {
			return s.authenticateSession(w, r, secret)
		}
		return refuse(`Bearer realm="warren"`,
			apiErr("unauthorized", "", "this API wants a key: send Authorization: Bearer KEY"))
	}
	scheme, secret, _ := strings.Cut(values[0], " ")
	secret = strings.TrimSpace(secret)
	if len(values) > 1 || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return refuse(`Bearer realm="warren", error="invalid_request"`,
			apiErr("unauthorized", "", "send one Authorization header of the form Bearer KEY"))
	}
	key, ok := s.cfg.Keys.Lookup(secret)
	if !ok {
		s.log.Warn("refused an unknown API key", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		return refuse(`Bearer realm="warren", error="invalid_token"`,
			apiErr("unauthorized", "", "the key is not one this API knows"))
	}
	return key, true
}

// forbidType is the refusal of a job type the caller's key is not for.
func forbidType(c caller, field, typ string) *Error {
	return apiErr("forbidden", field, "key %s may not touch jobs of type %s (it is limited to %s)",
		c.key.Name, typ, strings.Join(c.key.Types, ", "))
}

// checkType refuses a caller limited to other types a job of type t.
func checkType(c caller, t string) error {
	if !c.allowsType(t) {
		return forbidType(c, "", t)
	}
	return nil
}

// rates returns the caller's request and job rates.
func (s *Server) rates(c caller) (requests, jobs store.Rate) {
	rps := s.cfg.RequestsPerSecond
	if c.key.RequestsPerSecond != 0 {
		rps = c.key.RequestsPerSecond
	}
	perMinute := s.cfg.JobsPerMinute
	if c.key.JobsPerMinute != 0 {
		perMinute = c.key.JobsPerMinute
	}
	if rps > 0 {
		requests = store.Rate{Per: rps, Burst: max(1, 2*rps)}
	}
	if perMinute > 0 {
		jobs = store.Rate{Per: float64(perMinute) / 60, Burst: float64(perMinute)}
	}
	return requests, jobs
}

// admit takes one request and n jobs from the caller's buckets, kept in
// Redis so that every API replica counts against the same ones. A caller
// without a key is not limited.
func (s *Server) admit(ctx context.Context, c caller, n int) error {
	if c.open {
		return nil
	}
	requests, jobsRate := s.rates(c)
	if requests.Per <= 0 && (jobsRate.Per <= 0 || n == 0) {
		return nil
	}
	a, err := s.store.Take(ctx, c.key.Name, requests, jobsRate, n)
	switch {
	case err != nil:
		return err
	case a.Never:
		return apiErr("invalid_field", "jobs", "key %s may submit at most %d jobs a minute; send these %d in smaller batches",
			c.key.Name, int(jobsRate.Burst), n)
	case !a.OK:
		return rateLimited("key "+c.key.Name+" is over its rate limit", a.RetryAfter)
	}
	return nil
}

// rateLimited is the 429 of what is over a limit (why), with Retry-After:
// the whole seconds until it may try again, at least one.
func rateLimited(why string, wait time.Duration) *Error {
	secs := max(int(math.Ceil(wait.Seconds())), 1)
	return &Error{Status: http.StatusTooManyRequests, Code: "rate_limited",
		Message: fmt.Sprintf("%s; try again in %ds", why, secs), retryAfter: secs}
}

// maxBatch is the most jobs the caller may send in one batch.
func (s *Server) maxBatch(c caller) int {
	if !c.open && c.key.MaxBatch > 0 {
		return min(c.key.MaxBatch, s.cfg.MaxBatch)
	}
	return s.cfg.MaxBatch
}

// audit records a state-changing call: who (key name, remote address) did
// what to what.
func (s *Server) audit(r *http.Request, action string, args ...any) {
	args = append([]any{"action", action, "key", callerOf(r.Context()).name(), "remote", r.RemoteAddr}, args...)
	s.auditLog.Info("audit", args...)
}

// guardOrigin refuses requests a browser sends on behalf of another site
// (an Origin other than the API's own or one allowed), and, where the Host
// header must be checked, requests for a host name the API does not go
// by: a DNS rebinding attack reaches a loopback API through the
// attacker's own name.
func (s *Server) guardOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r.Host) {
			s.log.Warn("refused a request for an unknown host", "host", truncateText(r.Host, 128), "remote", r.RemoteAddr)
			writeError(w, apiErr("forbidden_host", "host",
				"this API does not answer for host %q; use its address, or add the name to api.allowed_hosts", truncateText(r.Host, 128)))
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" && !s.originAllowed(r, origin) {
			s.log.Warn("refused a cross-origin request", "origin", truncateText(origin, 128), "remote", r.RemoteAddr)
			writeError(w, apiErr("forbidden_origin", "origin",
				"requests from %q are not allowed; add the origin to api.allowed_origins", truncateText(origin, 128)))
			return
		}
		// A browser sending no Origin (a GET it fetches for another site)
		// still says where it comes from.
		if r.Header.Get("Origin") == "" && r.Header.Get("Sec-Fetch-Site") == "cross-site" && r.Header.Get("Sec-Fetch-Mode") != "navigate" {
			writeError(w, apiErr("forbidden_origin", "origin", "cross-site requests are not allowed"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hostAllowed reports whether the API answers for host (a Host header).
// With keys, and no allowed hosts configured, any host is fine: a page
// that rebinds a name cannot present a key.
func (s *Server) hostAllowed(host string) bool {
	if len(s.cfg.AllowedHosts) == 0 && s.authenticating() {
		return true
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.ToLower(strings.TrimSuffix(strings.Trim(name, "[]"), "."))
	for _, a := range s.cfg.AllowedHosts {
		if a = strings.ToLower(strings.TrimSpace(a)); a == "*" || a == name || a == strings.ToLower(host) {
			return true
		}
	}
	// An address cannot be rebound; loopback names resolve locally.
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	return name == "localhost" || strings.HasSuffix(name, ".localhost")
}

// originAllowed reports whether a browser request from origin may go on:
// the API's own origin (same scheme, host and port) or one configured.
func (s *Server) originAllowed(r *http.Request, origin string) bool {
	for _, a := range s.cfg.AllowedOrigins {
		if strings.EqualFold(strings.TrimSuffix(strings.TrimSpace(a), "/"), origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false // "null" and the like: sandboxed frames, files
	}
	scheme := requestScheme(r)
	return strings.EqualFold(u.Scheme, scheme) && strings.EqualFold(hostPort(u.Host, scheme), hostPort(r.Host, scheme))
}

// requestScheme is the scheme the browser used: https where the API serves
// TLS itself, or where a proxy that ends TLS in front of it says so in
// X-Forwarded-Proto. A page of another site cannot send that header (it
// is not one a cross-origin request may carry without the API's consent),
// so it cannot make its own origin pass for the API's.
func requestScheme(r *http.Request) string {
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		return "https"
	}
	return "http"
}

// hostPort adds the scheme's default port to a host that has none.
func hostPort(host, scheme string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if scheme == "https" {
		return net.JoinHostPort(strings.Trim(host, "[]"), "443")
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), "80")
}

// loopbackOnly refuses to serve beyond loopback without keys, unless told
// to (InsecureNoAuth).
func (s *Server) loopbackOnly(ln net.Listener) error {
	if s.authenticating() {
		return nil
	}
	ap, err := netip.ParseAddrPort(ln.Addr().String())
	if err == nil && ap.Addr().Unmap().IsLoopback() {
		return nil
	}
	if s.cfg.InsecureNoAuth {
		s.log.Warn("THE API SERVES WITHOUT KEYS BEYOND LOOPBACK: anyone who reaches "+ln.Addr().String()+
			" may submit, read, cancel and purge jobs (--insecure-no-auth)", "addr", ln.Addr().String())
		return nil
	}
	return fmt.Errorf("api: no API keys are configured, so the API serves loopback only, and it was asked to listen on %s: "+
		"configure keys (api.keys or WARREN_API_KEYS; 'warren keys new NAME --scopes submit,read' makes one), "+
		"listen on 127.0.0.1, or start it with --insecure-no-auth", ln.Addr())
}

// retryAfterHeader is the Retry-After of an error, in seconds.
func retryAfterHeader(e *Error) string {
	switch {
	case e.retryAfter > 0:
		return strconv.Itoa(e.retryAfter)
	case e.Status == http.StatusServiceUnavailable:
		return "1"
	}
	return ""
}
