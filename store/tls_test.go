package store_test

import (
	"context"
	"crypto/tls"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// A store reaches Redis over rediss:// with a CA, a client certificate and a
// server name; a wrong CA, a wrong server name or no client certificate
// fails with an error that says so, and no password.
func TestStoreOverTLS(t *testing.T) {
	t.Parallel()
	certs := testenv.NewCerts(t)
	srv := testenv.StartRedis(t, testenv.ServerOptions{TLS: certs})
	ns := testenv.Namespace(t) // the private server goes with its keys; the sweep of the shared one finds none
	open := func(t *testing.T, url string, cfg *tls.Config) *store.Store {
		t.Helper()
		st, err := store.New(store.Config{URL: url, TLS: cfg, Namespace: ns, Logger: testenv.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}

	t.Run("works", func(t *testing.T) {
		cfg := certs.ClientTLS(t)
		cfg.ServerName = "localhost" // the certificate's name, where the URL has an address
		st := open(t, srv.URL(), cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		j := newJob(1)
		if _, err := st.Create(ctx, []*jobs.Job{j}); err != nil {
			t.Fatalf("Create over rediss: %v", err)
		}
		if got, err := st.Get(ctx, j.ID); err != nil || got.ID != j.ID {
			t.Fatalf("Get over rediss: %v, %v", got, err)
		}
	})

	otherCA := testenv.NewCerts(t)
	url := strings.Replace(srv.URL(), "rediss://", "rediss://:s3cretpw@", 1)
	for name, tc := range map[string]struct {
		tls  *tls.Config
		want []string // the error says one of these
	}{
		"wrong CA": {otherCA.ClientTLS(t), []string{"certificate signed by unknown authority"}},
		"wrong server name": {func() *tls.Config {
			c := certs.ClientTLS(t)
			c.ServerName = "redis.wrong.example"
			return c
		}(), []string{"not redis.wrong.example"}},
		// In TLS 1.3 the client's handshake ends before the server checks
		// its certificate: the server's alert reaches the client's first
		// read, unless the server's close resets the connection first.
		"no client certificate": {func() *tls.Config {
			c := certs.ClientTLS(t)
			c.Certificates = nil
			return c
		}(), []string{"certificate required", "connection reset by peer", "broken pipe"}},
	} {
		t.Run(name, func(t *testing.T) {
			st := open(t, url, tc.tls)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := st.Ping(ctx)
			t.Logf("Ping: %v", err)
			if !errors.Is(err, store.ErrUnavailable) || !slices.ContainsFunc(tc.want, func(w string) bool { return strings.Contains(err.Error(), w) }) {
				t.Errorf("Ping = %v, want ErrUnavailable saying one of %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "s3cretpw") {
				t.Error("the error shows the password")
			}
		})
	}

	t.Run("TLS for redis://", func(t *testing.T) {
		_, err := store.New(store.Config{URL: "redis://:s3cretpw@127.0.0.1:6379/0", TLS: certs.ClientTLS(t)})
		if err == nil || !strings.Contains(err.Error(), "not rediss://") || strings.Contains(err.Error(), "s3cretpw") {
			t.Errorf("New = %v, want an error saying the URL is not rediss://, without the password", err)
		}
	})
	t.Run("bad URL", func(t *testing.T) {
		_, err := store.New(store.Config{URL: "redis://:s3cr/etpw@127.0.0.1:port/0"})
		if err == nil || strings.Contains(err.Error(), "s3cr") {
			t.Errorf("New = %v, want an error without the password", err)
		}
	})
}
