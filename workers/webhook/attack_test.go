package webhook_test

// Tests that try the attacks of issue 12 ("Safe to expose") against a
// worker configured as an operator would: each submits what a hostile
// caller could and checks that the job fails at once, permanently, and that
// nothing reached a receiver it should not.

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/egress"
	"github.com/warrenhq/warren/workers/webhook"
)

func portOf(srv *httptest.Server) string { return srv.URL[strings.LastIndex(srv.URL, ":")+1:] }

func rules(t *testing.T, list ...string) []egress.Rule {
	t.Helper()
	r, err := egress.ParseRules(list)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The attack: a job names a configured secret and a URL of its choosing,
// and gets its body signed with that secret and sent there.
func TestSecretBoundToItsURLs(t *testing.T) {
	t.Parallel()
	orders, ordersGot, ordersHits := receiver(t, status(http.StatusNoContent))
	other, _, otherHits := receiver(t, status(http.StatusNoContent))
	h := setup(t, webhook.Config{
		Allow: loopback,
		Secrets: map[string]webhook.Secret{
			"orders": {Value: "s3cret", Allow: []string{orders.URL + "/hooks/", "http://other.example/in"}},
		},
	})

	// Its own receiver is signed for, query and all.
	if _, err := run(t, h, map[string]any{"url": orders.URL + "/hooks/paid?x=1", "secret": "orders", "body": "b"}); err != nil {
		t.Fatal(err)
	}
	if r := <-ordersGot; !verify([]byte("s3cret"), r.header.Get("Warren-Signature"), r.body, time.Now()) {
		t.Error("the bound receiver got no valid signature")
	}
	ordersHits.Store(0)

	hostA := strings.TrimPrefix(orders.URL, "http://")
	for _, u := range []string{
		other.URL + "/hooks/",                            // another port of the same host
		"http://localhost:" + portOf(orders) + "/hooks/", // the same server by another name
		orders.URL + "/admin",                            // outside the path
		orders.URL + "/hooksx",                           // a longer segment
		orders.URL + "/hooks",                            // the prefix without its slash
		orders.URL + "/hooks/../admin",                   // dot segments a receiver resolves
		orders.URL + "/hooks/%2e%2e/admin",
		orders.URL + "/hooks/..%2fadmin",
		orders.URL + "/hooks/..;/admin",
		orders.URL + "/hooks%2F..%2Fadmin",
		orders.URL + `/hooks/..\admin`,
		"http://" + hostA + "@" + strings.TrimPrefix(other.URL, "http://") + "/hooks/", // the bound host as a user name
		"https://" + hostA + "/hooks/",   // another scheme
		"http://other.example/internal",  // the other entry, outside its path
		"http://other.example/in/../out", // and escaping it
		"http://other.example.evil/in",   // a host that starts alike
		"http://other.example:8080/in",   // another port
		"http://other.example./in",       // a trailing dot
	} {
		_, err := run(t, h, map[string]any{"url": u, "secret": "orders", "body": "forged"})
		check(t, err, outcome{"secret_not_allowed", true, 0})
		if err != nil && strings.Contains(err.Error(), "hooks/\"") {
			t.Errorf("%s: error %q names the allowed URLs", u, err)
		}
	}
	if ordersHits.Load() != 0 || otherHits.Load() != 0 {
		t.Errorf("receivers reached %d and %d times", ordersHits.Load(), otherHits.Load())
	}
	// Unsigned, the same URLs are the caller's business.
	if _, err := run(t, h, map[string]any{"url": other.URL + "/hooks/"}); err != nil {
		t.Errorf("unsigned: %v", err)
	}
}

// A secret in the old form, without URLs, signed whatever a job asked for.
// It now signs for nothing: the worker starts (unsigned deliveries go on),
// warns, and jobs naming it fail for good. A secret without a value is as
// good as absent.
func TestUnboundSecrets(t *testing.T) {
	t.Parallel()
	srv, _, hits := receiver(t, status(http.StatusNoContent))
	var logs bytes.Buffer
	h := setup(t, webhook.Config{
		Allow: loopback,
		Secrets: map[string]webhook.Secret{
			"billing": {Value: "s3cret"},
			"orders":  {Allow: []string{srv.URL + "/"}},
		},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	for _, want := range []string{
		`secret=billing fix="list the URL prefixes it signs for, such as https://a.example/hooks/, in webhook.secrets.billing.allow"`,
		`secret=orders fix="set webhook.secrets.orders.secret, or orders=… in WARREN_WEBHOOK_SECRETS"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
	_, err := run(t, h, map[string]any{"url": srv.URL + "/", "secret": "billing"})
	check(t, err, outcome{"secret_not_allowed", true, 0})
	if err != nil && !strings.Contains(err.Error(), "no allow list") {
		t.Errorf("error %q does not say why", err)
	}
	_, err = run(t, h, map[string]any{"url": srv.URL + "/", "secret": "orders"})
	check(t, err, outcome{"unknown_secret", true, 0})
	if hits.Load() != 0 {
		t.Errorf("the receiver was reached %d times", hits.Load())
	}
	if _, err := run(t, h, map[string]any{"url": srv.URL + "/"}); err != nil {
		t.Errorf("unsigned: %v", err)
	}
}

// The attack: allowing an internal host for one receiver opened every port
// on it.
func TestAllowBindsPorts(t *testing.T) {
	t.Parallel()
	allowed, _, _ := receiver(t, status(http.StatusNoContent))
	internal, _, internalHits := receiver(t, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "admin console") })
	h := setup(t, webhook.Config{Allow: rules(t, "127.0.0.1:"+portOf(allowed))})
	if _, err := run(t, h, map[string]any{"url": allowed.URL}); err != nil {
		t.Fatalf("the allowed port: %v", err)
	}
	_, err := run(t, h, map[string]any{"url": internal.URL})
	check(t, err, outcome{"refused_target", true, 0})
	if internalHits.Load() != 0 {
		t.Error("another port of the allowed host was reached")
	}
}

// redirector answers /same with a redirect within its origin, /signed-out
// with one within its origin but outside /hooks/, /cross with one to to,
// /loop with one to itself, and anything else with 204.
func redirector(t *testing.T, code int, to *httptest.Server) (*httptest.Server, <-chan received) {
	t.Helper()
	srv, got, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hooks/same":
			http.Redirect(w, r, "/hooks/landed", code)
		case "/hooks/signed-out":
			http.Redirect(w, r, "/admin", code)
		case "/hooks/cross":
			http.Redirect(w, r, to.URL+"/hooks/", code)
		case "/hooks/loop":
			http.Redirect(w, r, "/hooks/loop", code)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	return srv, got
}

// The attack: an allowed receiver answers 302 or 307 pointing at another
// port of an allowed host; the signature and custom headers followed, and
// the internal answer came back as the job's result.
func TestRedirectsNotFollowedByDefault(t *testing.T) {
	t.Parallel()
	for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		internal, _, internalHits := receiver(t, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "internal data") })
		from, fromGot := redirector(t, code, internal)
		h := setup(t, webhook.Config{
			Allow:   loopback,
			Secrets: map[string]webhook.Secret{"k": {Value: "v", Allow: []string{from.URL + "/hooks/"}}},
		})
		for _, path := range []string{"/hooks/cross", "/hooks/same"} {
			_, err := run(t, h, map[string]any{"url": from.URL + path, "secret": "k", "headers": map[string]string{"X-Token": "t"}})
			check(t, err, outcome{"http_" + strconv.Itoa(code), true, 0})
			if err != nil && !strings.Contains(err.Error(), "redirects are not followed") {
				t.Errorf("%d %s: error %q does not say why", code, path, err)
			}
			<-fromGot
		}
		if internalHits.Load() != 0 {
			t.Errorf("%d: the redirect was followed", code)
		}
		select {
		case r := <-fromGot:
			t.Errorf("%d: the same-origin redirect was followed to %s", code, r.method)
		default:
		}
	}
}

func TestFollowRedirectsSameOriginOnly(t *testing.T) {
	t.Parallel()
	internal, _, internalHits := receiver(t, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "internal data") })
	from, fromGot := redirector(t, http.StatusTemporaryRedirect, internal)
	h := setup(t, webhook.Config{
		Allow:           loopback,
		FollowRedirects: true,
		Secrets:         map[string]webhook.Secret{"k": {Value: "v", Allow: []string{from.URL + "/hooks/"}}},
	})
	payload := func(path string) map[string]any {
		return map[string]any{"url": from.URL + path, "secret": "k", "body": "payload", "headers": map[string]string{"X-Token": "t"}}
	}

	// Within the origin and the secret's URLs: followed, signed, with the
	// body and headers.
	if _, err := run(t, h, payload("/hooks/same")); err != nil {
		t.Fatal(err)
	}
	<-fromGot
	r := <-fromGot
	if string(r.body) != "payload" || r.header.Get("X-Token") != "t" || !verify([]byte("v"), r.header.Get("Warren-Signature"), r.body, time.Now()) {
		t.Errorf("after a same-origin 307: %q, headers %v", r.body, r.header)
	}

	// To another origin: not followed.
	_, err := run(t, h, payload("/hooks/cross"))
	check(t, err, outcome{"http_307", true, 0})
	<-fromGot
	if internalHits.Load() != 0 {
		t.Error("a redirect to another origin was followed")
	}

	// Within the origin but outside what the secret signs for: not
	// followed while signed, followed unsigned.
	_, err = run(t, h, payload("/hooks/signed-out"))
	check(t, err, outcome{"http_307", true, 0})
	<-fromGot
	select {
	case r := <-fromGot:
		t.Errorf("a signed redirect out of the secret's URLs reached %s", r.method)
	default:
	}
	if _, err := run(t, h, map[string]any{"url": from.URL + "/hooks/signed-out"}); err != nil {
		t.Errorf("unsigned: %v", err)
	}
	<-fromGot
	<-fromGot

	// A loop ends, and is not retried.
	_, err = run(t, h, payload("/hooks/loop"))
	check(t, err, outcome{"too_many_redirects", true, 0})
}

// The attack: the receiver's answer (an internal page, when the target is
// an allowed internal address) came back to the caller in the result.
func TestResponseBodyNotKeptByDefault(t *testing.T) {
	t.Parallel()
	srv, _, _ := receiver(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
		io.WriteString(w, "internal data")
	})
	h := setup(t, webhook.Config{Allow: loopback})
	res := deliver(t, h, map[string]any{"url": srv.URL})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if b := res.Job.Result; strings.Contains(string(b), "internal data") || strings.Contains(string(b), `"body`) {
		t.Errorf("result %s holds the body", b)
	}
	var r webhook.Result
	if err := json.Unmarshal(res.Job.Result, &r); err != nil || r.Status != 200 || r.Headers["Content-Length"] != "13" {
		t.Errorf("result %+v (%v)", r, err)
	}
	_, err := run(t, h, map[string]any{"url": srv.URL + "/fail"})
	check(t, err, outcome{"http_500", false, 0})
	if err != nil && strings.Contains(err.Error(), "internal data") {
		t.Errorf("error %q quotes the body", err)
	}
}

// The attack: loopback written as a number, or as an IPv4-translated IPv6
// address, was not refused (or was retried as a network error).
func TestNumericHostsRefused(t *testing.T) {
	t.Parallel()
	srv, _, hits := receiver(t, status(http.StatusNoContent))
	port := portOf(srv)
	for _, cfg := range []webhook.Config{{}, {Allow: loopback}} {
		h := setup(t, cfg)
		for _, host := range []string{
			"2130706433", "127.1", "0x7f.1", "0177.0.0.1", "0x7f000001", "127.0.0.1.", "[::ffff:0:7f00:1]",
			"[::ffff:0:127.0.0.1]", "[::127.0.0.1]", "0", "0x0.0",
		} {
			u := "http://" + host + ":" + port + "/"
			_, err := run(t, h, map[string]any{"url": u})
			check(t, err, outcome{"refused_target", true, 0})
		}
	}
	if hits.Load() != 0 {
		t.Errorf("the receiver was reached %d times", hits.Load())
	}
	// The metadata address, written as a number, is named in the error.
	_, err := run(t, setup(t, webhook.Config{}), map[string]any{"url": "http://2852039166/latest/meta-data/"})
	check(t, err, outcome{"refused_target", true, 0})
	if err != nil && !strings.Contains(err.Error(), "169.254.169.254") {
		t.Errorf("error %q does not name the address", err)
	}
}

func TestInvalidPort(t *testing.T) {
	t.Parallel()
	h := setup(t, webhook.Config{})
	for _, u := range []string{"http://example.com:0/", "http://example.com:65536/"} {
		_, err := run(t, h, map[string]any{"url": u})
		check(t, err, outcome{"invalid_payload", true, 0})
	}
	if _, err := url.Parse("http://example.com:x/"); err == nil {
		t.Error("url.Parse accepts a port that is not a number")
	}
}
