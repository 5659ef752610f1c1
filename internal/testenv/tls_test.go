package testenv_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/internal/testenv"
)

// A private RabbitMQ with TLS speaks amqps:// alone, to clients with a
// certificate of its CA, and serves its management API over HTTPS alike.
func TestPrivateRabbitMQWithTLS(t *testing.T) {
	t.Parallel()
	certs := testenv.NewCerts(t)
	rmq := testenv.StartRabbitMQ(t, testenv.ServerOptions{TLS: certs, Management: true})
	if !strings.HasPrefix(rmq.URL(), "amqps://") || !strings.HasPrefix(rmq.ManagementURL(), "https://") {
		t.Fatalf("URL %s, ManagementURL %s: want amqps:// and https://", rmq.URL(), rmq.ManagementURL())
	}
	conn, err := amqp.DialTLS(rmq.URL(), certs.ClientTLS(t))
	if err != nil {
		t.Fatalf("amqps with a client certificate: %v", err)
	}
	_ = conn.Close()

	noCert := certs.ClientTLS(t)
	noCert.Certificates = nil
	if conn, err := amqp.DialTLS(rmq.URL(), noCert); err == nil {
		_ = conn.Close()
		t.Error("amqps without a client certificate: logged in")
	}
	plain := strings.Replace(rmq.URL(), "amqps://", "amqp://", 1)
	if conn, err := amqp.DialConfig(plain, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)}); err == nil {
		_ = conn.Close()
		t.Error("AMQP in clear text to the TLS port: logged in")
	}

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: certs.ClientTLS(t)}}
	t.Cleanup(hc.CloseIdleConnections)
	req, _ := http.NewRequest(http.MethodGet, rmq.ManagementURL()+"/api/overview", nil)
	req.SetBasicAuth("guest", "guest")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("management API over https: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("management API over https: %s", resp.Status)
	}
}

// A private Redis with TLS speaks rediss:// alone, to clients with a
// certificate of its CA.
func TestPrivateRedisWithTLS(t *testing.T) {
	t.Parallel()
	certs := testenv.NewCerts(t)
	srv := testenv.StartRedis(t, testenv.ServerOptions{TLS: certs})
	ping := func(cfg *tls.Config) error {
		opts, err := redis.ParseURL(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		opts.TLSConfig, opts.MaxRetries = cfg, -1
		rdb := redis.NewClient(opts)
		defer rdb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return rdb.Ping(ctx).Err()
	}
	if err := ping(certs.ClientTLS(t)); err != nil {
		t.Fatalf("rediss with a client certificate: %v", err)
	}
	noCert := certs.ClientTLS(t)
	noCert.Certificates = nil
	if err := ping(noCert); err == nil {
		t.Error("rediss without a client certificate: PING answered")
	}
	srv.Stop(t)
	srv.Start(t)
	if err := ping(certs.ClientTLS(t)); err != nil {
		t.Fatalf("after Stop and Start: %v", err)
	}
}
