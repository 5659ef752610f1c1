package queue_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/queue"
)

// The management API's address follows the AMQP URL's: https on 15671 for
// amqps://, http on 15672 for amqp://.
func TestManagementFollowsAMQPScheme(t *testing.T) {
	t.Parallel()
	for amqpURL, want := range map[string]string{
		"amqps://u:p@rabbit.example/":      "https://rabbit.example:15671",
		"amqps://u:p@rabbit.example:5999/": "https://rabbit.example:15671",
		"amqp://u:p@rabbit.example/":       "http://rabbit.example:15672",
		"amqps://u:p@[::1]:5671/":          "https://[::1]:15671",
	} {
		m, err := queue.NewManagementTLS("", amqpURL, &tls.Config{ServerName: "rabbit.internal"})
		if err != nil {
			t.Fatalf("%s: %v", amqpURL, err)
		}
		if m.URL() != want {
			t.Errorf("management API of %s: %s, want %s", amqpURL, m.URL(), want)
		}
	}
}

// Errors about URLs never show their passwords.
func TestURLErrorsHidePasswords(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"amqp://bob:s3cr/et@rabbit:5672/", // a / in the password: the parser takes s3cr for a port
		"amqp://bob:s3cret@rabbit:port/",
		"amqp://bob:s3cr et@rabbit/",
		"amqp://bob:s3cret@rabbit:5672/%zz",
		"http://bob:s3cret@rabbit:5672/",
	} {
		_, err := queue.New(queue.Config{URL: raw})
		if err == nil {
			t.Errorf("New(%q): no error", raw)
			continue
		}
		if strings.Contains(err.Error(), "s3cr") {
			t.Errorf("New(%q): error %q shows the password", raw, err)
		}
		if _, err := queue.NewManagement("", raw); err == nil || strings.Contains(err.Error(), "s3cr") {
			t.Errorf("NewManagement(\"\", %q): error %v: want one without the password", raw, err)
		}
		if _, err := queue.NewManagement(strings.Replace(raw, "amqp://", "https://", 1), "amqp://127.0.0.1/"); err != nil && strings.Contains(err.Error(), "s3cr") {
			t.Errorf("NewManagement(%q, …): error %q shows the password", raw, err)
		}
	}
}

// proxyChildEnv marks the process TestManagementIgnoresProxy runs with the
// proxy variables set: Go reads them once per process, so the test needs a
// process started with them.
const proxyChildEnv = "WARREN_TEST_PROXY_CHILD"

// The management client never goes through a proxy named in the
// environment: the credentials it sends are the broker's.
func TestManagementIgnoresProxy(t *testing.T) {
	if os.Getenv(proxyChildEnv) != "" {
		managementIgnoresProxy(t)
		return
	}
	t.Parallel()
	// A proxy that records the first line of each request and refuses it.
	trap, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		lines []string
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := trap.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			mu.Lock()
			lines = append(lines, strings.TrimSpace(line))
			mu.Unlock()
			_, _ = c.Write([]byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { trap.Close(); wg.Wait() })

	proxy := "http://" + trap.Addr().String()
	cmd := exec.Command(os.Args[0], "-test.run=^TestManagementIgnoresProxy$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), proxyChildEnv+"=1",
		"HTTPS_PROXY="+proxy, "https_proxy="+proxy, "HTTP_PROXY="+proxy, "http_proxy="+proxy,
		"NO_PROXY=", "no_proxy=", "REQUEST_METHOD=")
	out, err := cmd.CombinedOutput()
	t.Logf("test process with HTTPS_PROXY and HTTP_PROXY set:\n%s", out)
	if err != nil {
		t.Fatalf("it failed: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	// The two requests of the control, and nothing of the management
	// client's.
	want := []string{"CONNECT rabbit.invalid:15671 HTTP/1.1", "GET http://rabbit.invalid:15672/control HTTP/1.1"}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("the proxy saw %q, want only the control's %q", lines, want)
	}
}

// managementIgnoresProxy runs in the process with the proxy variables set.
func managementIgnoresProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The control: a client that honours the variables reaches the proxy,
	// so they are in force in this process.
	control := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, DisableKeepAlives: true}}
	for _, u := range []string{"https://rabbit.invalid:15671/control", "http://rabbit.invalid:15672/control"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := control.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		if (err == nil && resp.StatusCode != http.StatusForbidden) || (err != nil && !strings.Contains(err.Error(), "Forbidden")) {
			t.Fatalf("control %s: %v, %v; want the proxy's 403", u, resp, err)
		}
	}
	// The management client, over https (derived from amqps://) and over
	// http (given), goes straight to the host, which does not exist.
	for mgmt, amqpURL := range map[string]string{
		"":                                       "amqps://bob:s3cret@rabbit.invalid/",
		"http://bob:s3cret@rabbit.invalid:15672": "amqp://127.0.0.1/",
	} {
		m, err := queue.NewManagement(mgmt, amqpURL)
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.Queue(ctx, "", "q")
		if err == nil || strings.Contains(err.Error(), "Forbidden") || !strings.Contains(err.Error(), "rabbit.invalid") {
			t.Errorf("management API at %s: %v; want a failed lookup of rabbit.invalid, not the proxy's answer", m.URL(), err)
		}
	}
}

// logBuffer is a log that tests read back.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A broker reaches RabbitMQ over amqps:// with a CA, a client certificate
// and a server name, and the management API over https with the same; a
// wrong CA, a wrong server name or no client certificate fails with an
// error that says so, and no password.
func TestBrokerOverTLS(t *testing.T) {
	t.Parallel()
	certs := testenv.NewCerts(t)
	rmq := testenv.StartRabbitMQ(t, testenv.ServerOptions{TLS: certs, Management: true})
	ns := testenv.Namespace(t) // the private node goes with its queues; the sweep of the shared one finds none
	const pool = "tls"

	t.Run("works", func(t *testing.T) {
		cfg := certs.ClientTLS(t)
		cfg.ServerName = "localhost" // the certificate's name, where the URL has an address
		// Info: PoolDepth logs at debug each time the figures are not yet in.
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		b, err := queue.New(queue.Config{URL: rmq.URL(), TLS: cfg, Namespace: ns, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Stop(context.Background()) })
		if err := b.WaitConnected(ctx); err != nil {
			t.Fatalf("connect over amqps: %v", err)
		}
		declarePool(t, b, pool, "tls.job")
		publishAll(t, b, []queue.Message{message(t, newJob("tls.job", 1), "")})

		m, err := queue.NewManagementTLS(rmq.ManagementURL(), rmq.URL(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		want := queue.Depth{Ready: 1, Source: queue.SourceManagement}
		testenv.Eventually(t, wait, "the management API over https to count the message", func() bool {
			return depthOf(t, b, pool, m) == want
		})
	})

	otherCA := testenv.NewCerts(t)
	for name, tc := range map[string]struct {
		tls  func() *tls.Config
		want string
		// alsoWant, if set, may stand for want: under TLS 1.3 the broker
		// refuses a client certificate after the client's handshake, and
		// the client may see its next write reset before it reads why.
		alsoWant string
	}{
		"wrong CA": {tls: otherCA.ClientTLS(t).Clone, want: "certificate signed by unknown authority"},
		"wrong server name": {tls: func() *tls.Config {
			c := certs.ClientTLS(t)
			c.ServerName = "rabbit.wrong.example"
			return c
		}, want: "not rabbit.wrong.example"},
		"no client certificate": {func() *tls.Config {
			c := certs.ClientTLS(t)
			c.Certificates = nil
			return c
		}, "certificate required", "requires a client certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			var logs logBuffer
			url := strings.Replace(rmq.URL(), "guest:guest", "guest:s3cretpw", 1)
			b, err := queue.New(queue.Config{URL: url, TLS: tc.tls(), Namespace: ns,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Stop(context.Background()) })
			testenv.Eventually(t, wait, "the broker to log why it cannot connect", func() bool {
				return strings.Contains(logs.String(), "cannot reach RabbitMQ")
			})
			if b.Connected() {
				t.Error("connected")
			}
			line := logs.String()
			t.Log(line)
			if !strings.Contains(line, tc.want) && (tc.alsoWant == "" || !strings.Contains(line, tc.alsoWant)) {
				t.Errorf("the log does not say %q", tc.want)
			}
			if strings.Contains(line, "s3cretpw") {
				t.Error("the log shows the password")
			}
			if tc.want == "certificate required" {
				return // the management API asks for no more than the broker
			}
			m, err := queue.NewManagementTLS(rmq.ManagementURL(), url, tc.tls())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if _, err := m.Queue(ctx, "", "x"); err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cretpw") {
				t.Errorf("management API: %v; want an error saying %q, without the password", err, tc.want)
			}
		})
	}
}
