package api_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
)

// startTLS runs a Server with the certificate of certs until the test ends
// and returns its address.
func startTLS(t *testing.T, certs *testenv.Certs, b api.Broker, st api.Store) string {
	t.Helper()
	return startServer(t, api.Config{Addr: "127.0.0.1:0", TLSCert: certs.ServerCertFile, TLSKey: certs.ServerKeyFile}, b, st).Addr()
}

// With a certificate the API speaks HTTPS alone, over HTTP/1.1.
func TestHTTPS(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	certs := testenv.NewCerts(t)
	addr := startTLS(t, certs, env.Broker, env.Store)

	// get checks the answers of the API against the OpenAPI document; the
	// clear-text one is net/http's, not the API's.
	get := func(t *testing.T, url string, cfg *tls.Config) (*http.Response, string, error) {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
		hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(url, "http:") {
			resp, err := hc.Do(req)
			if err != nil {
				return nil, "", err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp, string(body), nil
		}
		resp, body, err := exchange(t, hc, req)
		return resp, string(body), err
	}

	cfg := certs.ClientTLS(t)
	cfg.Certificates = nil // the API asks for none
	resp, body, err := get(t, "https://"+addr+"/readyz", cfg)
	if err != nil {
		t.Fatalf("GET /readyz over https: %v", err)
	}
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.Proto != "HTTP/1.1" {
		t.Errorf("GET /readyz over https: %s, %s, TLS %v: %s; want 200 over HTTP/1.1 and TLS", resp.Status, resp.Proto, resp.TLS != nil, body)
	}

	resp, body, err = get(t, "http://"+addr+"/readyz", nil)
	if err != nil || resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "HTTPS server") {
		t.Errorf("GET /readyz in clear text: %v, %v, %q; want 400 saying it is an HTTPS server", resp, err, body)
	}

	other := testenv.NewCerts(t).ClientTLS(t)
	if _, _, err := get(t, "https://"+addr+"/readyz", other); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("GET /readyz trusting another CA: %v, want an unknown authority", err)
	}
}

// A certificate without its key, or with another's, stops Start.
func TestHTTPSBadCertificate(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	certs := testenv.NewCerts(t)
	for name, tc := range map[string]struct {
		cert, key, want string
	}{
		"cert alone":   {certs.ServerCertFile, "", "needs both a certificate and its key"},
		"key alone":    {"", certs.ServerKeyFile, "needs both a certificate and its key"},
		"another key":  {certs.ServerCertFile, certs.ClientKeyFile, "private key does not match public key"},
		"missing file": {certs.Dir + "/none.pem", certs.ServerKeyFile, "no such file"},
	} {
		t.Run(name, func(t *testing.T) {
			srv, err := api.New(api.Config{Addr: "127.0.0.1:0", TLSCert: tc.cert, TLSKey: tc.key, Logger: testenv.Logger(t)}, env.Broker, env.Store)
			if err != nil {
				t.Fatal(err)
			}
			err = srv.Start(context.Background())
			if err == nil {
				_ = srv.Stop(context.Background())
				t.Fatal("Start: no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// syncBuffer is a log the test reads back.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// /readyz and the logs say what is down, never with the credentials of its
// URL.
func TestReadyzHidesCredentials(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := queue.New(queue.Config{URL: "amqp://guest:s3cretpw@127.0.0.1:1/", Namespace: env.NS, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop(context.Background()) })
	st, err := store.New(store.Config{URL: "redis://:s3cretpw@127.0.0.1:1/0", Namespace: env.NS, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	srv, err := api.New(api.Config{Addr: "127.0.0.1:0", Logger: log}, b, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequest("GET", "http://"+srv.Addr()+"/readyz", nil)
	if err != nil {
		t.Fatal(err)
	}
	r, body, err := exchange(t, hc, req)
	if err != nil {
		t.Fatal(err)
	}
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz: %s %s, want 503", r.Status, body)
	}
	testenv.Eventually(t, 10*time.Second, "the broker to log that it cannot connect", func() bool {
		return strings.Contains(logs.String(), "cannot reach RabbitMQ")
	})
	t.Logf("/readyz: %s\nlog:\n%s", body, logs.String())
	for what, text := range map[string]string{"/readyz": string(body), "the log": logs.String()} {
		if strings.Contains(text, "s3cretpw") {
			t.Errorf("%s shows the password", what)
		}
	}
}
