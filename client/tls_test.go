package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/warrenhq/warren/client"
)

// Config.TLS lets the client trust an API whose certificate a private CA
// signed.
func TestTLS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, map[string]any{"queues": []client.Queue{{Pool: "sys"}}})
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()

	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	c, err := client.New(client.Config{BaseURL: srv.URL, TLS: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	if q, err := c.Queues(ctx); err != nil || len(q) != 1 {
		t.Errorf("Queues over https with the CA: %v, %v", q, err)
	}

	c, err = client.New(client.Config{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Queues(ctx); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("Queues over https without the CA: %v, want an unknown authority", err)
	}

	if _, err := client.New(client.Config{BaseURL: srv.URL, HTTPClient: srv.Client(), TLS: &tls.Config{}}); err == nil {
		t.Error("New with both HTTPClient and TLS: no error")
	}
}
