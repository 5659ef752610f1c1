package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warrenhq/warren/egress"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/jobstest"
	"github.com/warrenhq/warren/schema"
	"github.com/warrenhq/warren/workers/webhook"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var loopback = []egress.Rule{{Prefix: netip.MustParsePrefix("127.0.0.1/32")}}

// setup registers the service with cfg.
func setup(t *testing.T, cfg webhook.Config) *jobstest.Registry {
	t.Helper()
	r := &jobstest.Registry{}
	if err := webhook.Register(r, cfg); err != nil {
		t.Fatal(err)
	}
	return r
}

// received is what a receiver saw.
type received struct {
	method string
	header http.Header
	body   []byte
}

// receiver starts a server on 127.0.0.1 that records each request and
// answers with respond.
func receiver(t *testing.T, respond http.HandlerFunc) (*httptest.Server, <-chan received, *atomic.Int32) {
	t.Helper()
	got := make(chan received, 10)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		got <- received{r.Method, r.Header.Clone(), b}
		respond(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, got, &hits
}

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

// deliver runs attempt 2 of a delivery.
func deliver(t *testing.T, h *jobstest.Registry, payload any) *jobstest.Result {
	t.Helper()
	return h.Run(context.Background(), t, webhook.Deliver.Name, payload, &jobstest.Options{
		ID: "0190b6e2-8c4d-7a1b-9f3e-2d5c6b7a8e90", Attempt: 2,
	})
}

// run runs attempt 2 of a delivery and returns its result, or the error
// its handler returned, having checked that the job is recorded as they
// say.
func run(t *testing.T, h *jobstest.Registry, payload any) (webhook.Result, error) {
	t.Helper()
	res := deliver(t, h, payload)
	if err := res.Err; err != nil {
		// Attempt 2 of 10: what is not permanent is retried.
		if e := res.Job.Error; e == nil || e.Code != jobs.ErrorCode(err) || e.Retryable == jobs.IsPermanent(err) {
			t.Errorf("delivery failed with %v, recorded as %s %+v", err, res.Job.Status, e)
		}
		return webhook.Result{}, err
	}
	if res.Job.Status != jobs.StatusSucceeded {
		t.Fatalf("delivery: %s %+v", res.Job.Status, res.Job.Error)
	}
	var r webhook.Result
	if err := json.Unmarshal(res.Job.Result, &r); err != nil {
		t.Fatalf("result %s: %v", res.Job.Result, err)
	}
	return r, nil
}

// verify is the receiver's check from the package doc, copied as it is.
func verify(secret []byte, header string, body []byte, now time.Time) bool {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || now.Sub(time.Unix(t, 0)).Abs() > 5*time.Minute {
		return false // unsigned, or too old: perhaps replayed
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

func TestDeliverSigned(t *testing.T) {
	t.Parallel()
	srv, got, _ := receiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Request-Id", "req-7")
		w.Header().Set("X-Other", "dropped")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"ok":true}`)
	})
	h := setup(t, webhook.Config{
		Allow:            loopback,
		Secrets:          map[string]webhook.Secret{"orders": {Value: "s3cret", Allow: []string{srv.URL + "/hook"}}},
		KeepResponseBody: true,
	})
	res := deliver(t, h, map[string]any{
		"url":     srv.URL + "/hook?token=abc",
		"method":  "PUT",
		"headers": map[string]string{"X-Tenant": "42"},
		"body":    map[string]any{"event": "order.paid", "amount": 12.5},
		"secret":  "orders",
	})
	if res.Err != nil || res.Job.Status != jobs.StatusSucceeded {
		t.Fatal(res.Job.Status, res.Err)
	}
	r := <-got
	if r.method != http.MethodPut {
		t.Errorf("method %s, want PUT", r.method)
	}
	var body map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil || body["event"] != "order.paid" {
		t.Errorf("body %s (%v)", r.body, err)
	}
	for k, want := range map[string]string{
		"Content-Type":   "application/json",
		"X-Tenant":       "42",
		"Warren-Job-Id":  "0190b6e2-8c4d-7a1b-9f3e-2d5c6b7a8e90",
		"Warren-Attempt": "2",
		"User-Agent":     "warren-webhook/1",
	} {
		if v := r.header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	sig := r.header.Get("Warren-Signature")
	if !verify([]byte("s3cret"), sig, r.body, time.Now()) {
		t.Errorf("signature %q does not verify", sig)
	}
	if verify([]byte("wrong"), sig, r.body, time.Now()) || verify([]byte("s3cret"), sig, append(r.body, ' '), time.Now()) {
		t.Error("signature verifies with a wrong secret or body")
	}
	if verify([]byte("s3cret"), sig, r.body, time.Now().Add(time.Hour)) {
		t.Error("an old signature verifies")
	}

	var result webhook.Result
	if err := json.Unmarshal(res.Job.Result, &result); err != nil {
		t.Fatal(err)
	}
	if result.Status != http.StatusCreated || result.Body != `{"ok":true}` || result.BodyTruncated {
		t.Errorf("result %+v", result)
	}
	want := map[string]string{"Content-Type": "application/json", "Content-Length": "11", "X-Request-Id": "req-7"}
	if len(result.Headers) != len(want) {
		t.Errorf("result headers %v, want %v", result.Headers, want)
	}
	for k, v := range want {
		if result.Headers[k] != v {
			t.Errorf("result header %s = %q, want %q", k, result.Headers[k], v)
		}
	}
	// The result is stored as JSON.
	for _, field := range []string{`"status":201`, `"duration_ms":`, `"body":"{\"ok\":true}"`} {
		if !strings.Contains(string(res.Job.Result), field) {
			t.Errorf("result JSON %s lacks %s", res.Job.Result, field)
		}
	}
}

func TestSign(t *testing.T) {
	t.Parallel()
	// Pinned to a value computed independently:
	// printf '1718000000.{"a":1}' | openssl dgst -sha256 -hmac k
	got := webhook.Sign([]byte("k"), time.Unix(1718000000, 0), []byte(`{"a":1}`))
	if want := "t=1718000000,v1=fef0a378c9b3a57468bb6a7752464f133c941abd3cc75f9db4430e8ea40adbcb"; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

func TestBodies(t *testing.T) {
	t.Parallel()
	srv, got, _ := receiver(t, status(http.StatusNoContent))
	h := setup(t, webhook.Config{Allow: loopback})
	for _, tt := range []struct {
		name        string
		payload     map[string]any
		method      string
		body        string
		contentType string
	}{
		{"no body", map[string]any{}, "POST", "", ""},
		{"text", map[string]any{"body": "hello\nworld"}, "POST", "hello\nworld", "text/plain; charset=utf-8"},
		{"number", map[string]any{"body": 42, "method": "PATCH"}, "PATCH", "42", "application/json"},
		{"array", map[string]any{"body": []int{1, 2}}, "POST", "[1,2]", "application/json"},
		{"text with its type", map[string]any{"body": "<a/>", "headers": map[string]string{"content-type": "application/xml"}}, "POST", "<a/>", "application/xml"},
	} {
		tt.payload["url"] = srv.URL
		res, err := run(t, h, tt.payload)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		r := <-got
		if r.method != tt.method || string(r.body) != tt.body || r.header.Get("Content-Type") != tt.contentType {
			t.Errorf("%s: got %s %q (%s), want %s %q (%s)", tt.name, r.method, r.body, r.header.Get("Content-Type"), tt.method, tt.body, tt.contentType)
		}
		if r.header.Get("Warren-Signature") != "" {
			t.Errorf("%s: signed without a secret", tt.name)
		}
		if s := res.Status; s != http.StatusNoContent {
			t.Errorf("%s: status %d", tt.name, s)
		}
	}
}

// outcome is what a failure should look like to the runtime.
type outcome struct {
	code      string
	permanent bool
	after     time.Duration // a RetryAfter delay; 0 for none
}

func check(t *testing.T, err error, want outcome) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %+v", want)
	}
	var ra *jobs.RetryAfterError
	var after time.Duration
	if errors.As(err, &ra) {
		after = ra.After
	}
	got := outcome{jobs.ErrorCode(err), jobs.IsPermanent(err), after}
	if got != want {
		t.Errorf("err %q: got %+v, want %+v", err, got, want)
	}
}

func TestStatusOutcomes(t *testing.T) {
	t.Parallel()
	h := setup(t, webhook.Config{Allow: loopback})
	for _, tt := range []struct {
		name    string
		respond http.HandlerFunc
		want    outcome
	}{
		{"500", status(500), outcome{"http_500", false, 0}},
		{"502", status(502), outcome{"http_502", false, 0}},
		{"408", status(408), outcome{"http_408", false, 0}},
		{"429", status(429), outcome{"http_429", false, 0}},
		{"404", status(404), outcome{"http_404", true, 0}},
		{"400", status(400), outcome{"http_400", true, 0}},
		{"410", status(410), outcome{"http_410", true, 0}},
		{"304", status(304), outcome{"http_304", true, 0}},
		{"429 Retry-After seconds", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(429)
		}, outcome{"http_429", false, 2 * time.Second}},
		{"503 Retry-After seconds", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(503)
		}, outcome{"http_503", false, 2 * time.Minute}},
		{"503 Retry-After huge", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "99999999999")
			w.WriteHeader(503)
		}, outcome{"http_503", false, webhook.MaxRetryAfter}},
		{"503 Retry-After past date", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")
			w.WriteHeader(503)
		}, outcome{"http_503", false, 0}},
		{"503 Retry-After garbage", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "soon")
			w.WriteHeader(503)
		}, outcome{"http_503", false, 0}},
		{"500 Retry-After ignored", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(500)
		}, outcome{"http_500", false, 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, _, _ := receiver(t, tt.respond)
			_, err := run(t, h, map[string]any{"url": srv.URL})
			check(t, err, tt.want)
		})
	}
}

func TestRetryAfterDate(t *testing.T) {
	t.Parallel()
	srv, _, _ := receiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusTooManyRequests)
	})
	_, err := run(t, setup(t, webhook.Config{Allow: loopback}), map[string]any{"url": srv.URL})
	var ra *jobs.RetryAfterError
	if !errors.As(err, &ra) || ra.After < 58*time.Minute || ra.After > time.Hour {
		t.Errorf("err %v, want RetryAfter of about an hour", err)
	}
	if jobs.IsPermanent(err) {
		t.Error("429 is permanent")
	}
}

func TestErrorNamesStatusAndBodyNotQuery(t *testing.T) {
	t.Parallel()
	srv, _, _ := receiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(422)
		io.WriteString(w, "field amount\nis missing")
	})
	_, err := run(t, setup(t, webhook.Config{Allow: loopback, KeepResponseBody: true}), map[string]any{"url": srv.URL + "/h?token=hush"})
	msg := err.Error()
	if !strings.Contains(msg, "422") || !strings.Contains(msg, "field amount is missing") || strings.Contains(msg, "hush") {
		t.Errorf("error %q", msg)
	}
	// By default the receiver's body is not quoted.
	_, err = run(t, setup(t, webhook.Config{Allow: loopback}), map[string]any{"url": srv.URL + "/h"})
	if msg := err.Error(); !strings.Contains(msg, "422") || strings.Contains(msg, "amount") {
		t.Errorf("error %q", msg)
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	srv, _, _ := receiver(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	_, err := run(t, setup(t, webhook.Config{Allow: loopback}), map[string]any{"url": srv.URL, "timeout": "100ms"})
	check(t, err, outcome{"timeout", false, 0})
}

func TestJobContextEnds(t *testing.T) {
	t.Parallel()
	srv, got, _ := receiver(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	h := setup(t, webhook.Config{Allow: loopback})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-got; cancel() }()
	res := h.Run(ctx, t, webhook.Deliver.Name, `{"url":"`+srv.URL+`"}`, nil)
	if err := res.Err; !errors.Is(err, context.Canceled) || jobs.ErrorCode(err) != "canceled" || res.Job.Status != jobs.StatusCanceled {
		t.Errorf("err %v (code %s), %s, want canceled", err, jobs.ErrorCode(err), res.Job.Status)
	}
}

func TestNetworkError(t *testing.T) {
	t.Parallel()
	srv, _, _ := receiver(t, status(200))
	url := srv.URL
	srv.Close() // nothing listens there now
	_, err := run(t, setup(t, webhook.Config{Allow: loopback}), map[string]any{"url": url})
	check(t, err, outcome{"network", false, 0})
}

func TestRefusedTarget(t *testing.T) {
	t.Parallel()
	srv, _, hits := receiver(t, status(200))
	_, err := run(t, setup(t, webhook.Config{}), map[string]any{"url": srv.URL})
	check(t, err, outcome{"refused_target", true, 0})
	if hits.Load() != 0 {
		t.Error("the receiver was reached")
	}

	// A redirect from an allowed receiver to a refused address is not
	// followed, whether redirects are or not: it leaves the origin.
	from, _, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusTemporaryRedirect)
	})
	for _, follow := range []bool{false, true} {
		_, err = run(t, setup(t, webhook.Config{Allow: loopback, FollowRedirects: follow}), map[string]any{"url": from.URL})
		check(t, err, outcome{"http_307", true, 0})
	}
}

func TestUnknownSecret(t *testing.T) {
	t.Parallel()
	srv, _, hits := receiver(t, status(200))
	h := setup(t, webhook.Config{Allow: loopback, Secrets: map[string]webhook.Secret{"orders": {Value: "s3cret", Allow: []string{srv.URL}}}})
	_, err := run(t, h, map[string]any{"url": srv.URL, "secret": "s3cret"})
	check(t, err, outcome{"unknown_secret", true, 0})
	if strings.Contains(err.Error(), `"orders"`) {
		t.Errorf("error %q names a configured secret", err)
	}
	if hits.Load() != 0 {
		t.Error("an unsigned request was sent")
	}
}

func TestInvalidPayload(t *testing.T) {
	t.Parallel()
	h := setup(t, webhook.Config{Allow: loopback})
	for _, p := range []map[string]any{
		{"url": "ftp://example.com/"},
		{"url": "http://"},
		{"url": "http://example.com/", "method": "GET"},
		{"url": "http://example.com/", "timeout": "6m"},
		{"url": "http://example.com/", "timeout": "0s"},
		{"url": "http://example.com/", "headers": map[string]string{"Host": "internal"}},
		{"url": "http://example.com/", "headers": map[string]string{"warren-signature": "forged"}},
		{"url": "http://example.com/", "headers": map[string]string{"X-A": "b\r\nX-Injected: 1"}},
		{"url": "http://example.com/", "headers": map[string]string{"Bad Name": "x"}},
		{"url": 42},
	} {
		_, err := run(t, h, p)
		if err == nil || !jobs.IsPermanent(err) || jobs.ErrorCode(err) != "invalid_payload" {
			t.Errorf("%v: err %v (code %s)", p, err, jobs.ErrorCode(err))
		}
	}
	// One that does not decode says so, naming the job.
	_, err := run(t, h, map[string]any{"url": 42})
	if want := "webhook: decode payload of webhook.deliver 0190b6e2-8c4d-7a1b-9f3e-2d5c6b7a8e90: json: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err %v, want one starting %q", err, want)
	}
}

func TestResponseBodyTruncated(t *testing.T) {
	t.Parallel()
	srv, _, _ := receiver(t, func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, strings.Repeat("x", 100))
	})
	for _, tt := range []struct {
		max       int
		body      string
		truncated bool
	}{
		{10, strings.Repeat("x", 10), true},
		{100, strings.Repeat("x", 100), false},
		{0, strings.Repeat("x", 100), false}, // the default, 4096
	} {
		r, err := run(t, setup(t, webhook.Config{Allow: loopback, KeepResponseBody: true, MaxResponseBody: tt.max}), map[string]any{"url": srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		if r.Body != tt.body || r.BodyTruncated != tt.truncated {
			t.Errorf("max %d: body %q truncated %v", tt.max, r.Body, r.BodyTruncated)
		}
	}
}

func TestSchema(t *testing.T) {
	t.Parallel()
	typ, _ := setup(t, webhook.Config{}).Type("webhook.deliver")
	if typ.Pool != webhook.Pool {
		t.Errorf("pool %q", typ.Pool)
	}
	s, err := schema.Compile(typ.Name, typ.Schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		payload string
		field   string // "" when valid
	}{
		{`{"url":"https://example.com/h"}`, ""},
		{`{"url":"HTTP://example.com","method":"PATCH","headers":{"a":"b"},"body":[1,"x",null],"timeout":"1m30s","secret":"orders"}`, ""},
		{`{"url":"http://example.com","body":null}`, ""},
		{`{"method":"POST"}`, "payload.url"},
		{`{"url":"ftp://example.com"}`, "payload.url"},
		{`{"url":"https://"}`, "payload.url"},
		{`{"url":"https://x","method":"DELETE"}`, "payload.method"},
		{`{"url":"https://x","headers":{"a":1}}`, "payload.headers.a"},
		{`{"url":"https://x","timeout":"soon"}`, "payload.timeout"},
		{`{"url":"https://x","timeout":10}`, "payload.timeout"},
		{`{"url":"https://x","secret":""}`, "payload.secret"},
		{`{"url":"https://x","extra":1}`, "payload.extra"},
	} {
		err := s.Validate([]byte(tt.payload))
		var fe *schema.FieldError
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%s: %v", tt.payload, err)
		case tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field):
			t.Errorf("%s: err %v, want one naming %s", tt.payload, err, tt.field)
		}
	}
}

func TestRegisterRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		cfg  webhook.Config
		want string
	}{
		{webhook.Config{MaxResponseBody: -1}, "max response body"},
		{webhook.Config{Secrets: map[string]webhook.Secret{"": {Value: "nameless", Allow: []string{"https://a.example/"}}}}, "without a name"},
		{webhook.Config{Secrets: map[string]webhook.Secret{"q": {Value: "s", Allow: []string{"https://a.example/?x=1"}}}}, "query"},
		{webhook.Config{Secrets: map[string]webhook.Secret{"f": {Value: "s", Allow: []string{"https://a.example/#x"}}}}, "fragment"},
		{webhook.Config{Secrets: map[string]webhook.Secret{"u": {Value: "s", Allow: []string{"https://me@a.example/"}}}}, "user"},
		{webhook.Config{Secrets: map[string]webhook.Secret{"s": {Value: "s", Allow: []string{"ftp://a.example/"}}}}, "http or https"},
		{webhook.Config{Secrets: map[string]webhook.Secret{"h": {Value: "s", Allow: []string{"/hooks/"}}}}, "http or https"},
		{webhook.Config{Secrets: map[string]webhook.Secret{"h": {Value: "s", Allow: []string{"https:///hooks/"}}}}, "no host"},
		{webhook.Config{Secrets: map[string]webhook.Secret{"d": {Value: "s", Allow: []string{"https://a.example/hooks/../"}}}}, "segments"},
		{webhook.Config{Secrets: map[string]webhook.Secret{"p": {Value: "s", Allow: []string{"https://a.example:0/"}}}}, "port"},
	} {
		err := webhook.Register(&jobstest.Registry{}, tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err %v, want one saying %q", tt.cfg, err, tt.want)
		}
	}
}
