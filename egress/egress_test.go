package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRefusal(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		addr    string
		refused bool
	}{
		// IPv4
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"10.1.2.3", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"172.32.0.1", false},
		{"192.168.1.1", true},
		{"169.254.169.254", true}, // cloud metadata
		{"169.254.1.1", true},
		{"100.64.0.1", true},
		{"100.100.100.200", true}, // Alibaba metadata, inside CGNAT
		{"100.128.0.1", false},
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"224.0.0.1", true},
		{"239.255.255.250", true},
		{"255.255.255.255", true},
		{"240.0.0.1", true},
		{"192.0.0.170", true},
		{"192.0.2.1", true},
		{"198.18.0.1", true},
		{"198.51.100.7", true},
		{"203.0.113.9", true},
		{"8.8.8.8", false},
		{"1.1.1.1", false},
		{"93.184.215.14", false},
		// IPv6
		{"::1", true},
		{"::", true},
		{"::127.0.0.1", true}, // IPv4-compatible
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"fec0::1", true},
		{"ff02::1", true},
		{"2001:db8::1", true},
		{"2001::1", true}, // Teredo
		{"100::1", true},
		{"64:ff9b:1::1", true},
		{"2606:4700:4700::1111", false},
		{"2001:4860:4860::8888", false},
		// IPv4-mapped, NAT64 and 6to4 forms
		{"::ffff:127.0.0.1", true},
		{"::ffff:169.254.169.254", true},
		{"::ffff:10.0.0.1", true},
		{"::ffff:8.8.8.8", false},
		{"64:ff9b::a9fe:a9fe", true}, // NAT64 of 169.254.169.254
		{"64:ff9b::808:808", false},  // NAT64 of 8.8.8.8
		{"2002:7f00:1::1", true},     // 6to4 of 127.0.0.1
		{"2002:0808:0808::1", false}, // 6to4 of 8.8.8.8
		{"::ffff:0:7f00:1", true},    // IPv4-translated 127.0.0.1
		{"::ffff:0:808:808", true},   // IPv4-translated 8.8.8.8: nothing public
		{"::ffff:0:a9fe:a9fe", true}, // IPv4-translated metadata
	} {
		addr := netip.MustParseAddr(tt.addr)
		reason := guard{}.refusal(addr)
		if (reason != "") != tt.refused {
			t.Errorf("%s: refusal %q, want refused %v", tt.addr, reason, tt.refused)
		}
	}
}

func TestAllow(t *testing.T) {
	t.Parallel()
	g := guard{allow: []netip.Prefix{
		netip.MustParsePrefix("127.0.0.1/32"),
		netip.MustParsePrefix("10.20.0.0/16"),
	}}
	for _, tt := range []struct {
		addr    string
		refused bool
	}{
		{"127.0.0.1", false},
		{"::ffff:127.0.0.1", false},
		{"127.0.0.2", true},
		{"::1", true},
		{"10.20.3.4", false},
		{"10.21.3.4", true},
		{"169.254.169.254", true},
	} {
		if reason := g.refusal(netip.MustParseAddr(tt.addr)); (reason != "") != tt.refused {
			t.Errorf("%s: refusal %q, want refused %v", tt.addr, reason, tt.refused)
		}
	}
}

func TestControl(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		address string
		refused bool
	}{
		{"127.0.0.1:80", true},
		{"[::1]:443", true},
		{"[fe80::1%eth0]:80", true},
		{"8.8.8.8:53", false},
		{"[2606:4700:4700::1111]:443", false},
		{"not-an-address", true},
	} {
		err := guard{}.control("", tt.address)
		if errors.Is(err, ErrRefused) != tt.refused {
			t.Errorf("%s: %v, want refused %v", tt.address, err, tt.refused)
		}
	}
}

// server starts a test server on 127.0.0.1 and counts requests that reach it.
func server(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func client(t *testing.T, cfg Config) *http.Client {
	t.Helper()
	c := NewClient(cfg)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func get(c *http.Client, u string) (string, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

func ok(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }

func TestLoopbackRefusedByDefault(t *testing.T) {
	t.Parallel()
	srv, hits := server(t, ok)
	_, err := get(client(t, Config{}), srv.URL)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("err = %v, want ErrRefused", err)
	}
	// A literal address is refused before anything is dialed.
	var ue *url.Error
	var oe *net.OpError
	if !errors.As(err, &ue) || errors.As(err, &oe) {
		t.Errorf("err = %#v, want a *url.Error and no dial", err)
	}
	if hits.Load() != 0 {
		t.Errorf("server reached %d times", hits.Load())
	}
}

func TestHostNameResolvedAndChecked(t *testing.T) {
	t.Parallel()
	srv, hits := server(t, ok)
	u := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	_, err := get(client(t, Config{}), u)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("err = %v, want ErrRefused", err)
	}
	// A name is judged by the address it resolves to, as the connection
	// is opened: the error arrives wrapped as url.Error → net.OpError → ours.
	var ue *url.Error
	var oe *net.OpError
	if !errors.As(err, &ue) || !errors.As(err, &oe) || oe.Op != "dial" {
		t.Errorf("err = %#v, want a *url.Error wrapping a dial *net.OpError", err)
	}
	if hits.Load() != 0 {
		t.Errorf("server reached %d times", hits.Load())
	}
}

func TestAllowedLoopbackReached(t *testing.T) {
	t.Parallel()
	srv, _ := server(t, ok)
	body, err := get(client(t, Config{Allow: loopback}), srv.URL)
	if err != nil || body != "ok" {
		t.Fatalf("get: %q, %v", body, err)
	}
}

func TestRedirects(t *testing.T) {
	t.Parallel()
	target, targetHits := server(t, ok)
	for _, tt := range []struct {
		name     string
		location string
		refused  bool
	}{
		{"to an allowed address", target.URL + "/", false},
		{"to the metadata address", "http://169.254.169.254/latest/meta-data/", true},
		{"to a private address", "http://10.0.0.1:8080/", true},
		{"to a mapped loopback", "http://[::ffff:127.0.0.2]:" + target.URL[strings.LastIndex(target.URL, ":")+1:] + "/", true},
		{"to another scheme", "ftp://example.com/file", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			from, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, tt.location, http.StatusFound)
			})
			before := targetHits.Load()
			body, err := get(client(t, Config{Allow: loopback}), from.URL)
			if tt.refused {
				if !errors.Is(err, ErrRefused) {
					t.Fatalf("got %q, %v; want ErrRefused", body, err)
				}
				return
			}
			if err != nil || body != "ok" || targetHits.Load() == before {
				t.Fatalf("got %q, %v; want the target reached", body, err)
			}
		})
	}
}

func TestRedirectLimit(t *testing.T) {
	t.Parallel()
	var srv *httptest.Server
	srv, hits := server(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, srv.URL+"/again", http.StatusFound)
	})
	_, err := get(client(t, Config{Allow: loopback, MaxRedirects: 2}), srv.URL)
	if !errors.Is(err, ErrTooManyRedirects) || !strings.Contains(err.Error(), "stopped after 2 redirects") {
		t.Errorf("err = %v, want stopped after 2 redirects", err)
	}
	if got := hits.Load(); got != 3 {
		t.Errorf("%d requests, want 3 (the first and 2 redirects)", got)
	}

	// A negative limit returns the redirect itself.
	resp, err := client(t, Config{Allow: loopback, MaxRedirects: -1}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Errorf("status %d, want 302", resp.StatusCode)
	}
}

func TestSchemeRefused(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"ftp://example.com/", "file:///etc/passwd", "gopher://example.com/"} {
		if _, err := get(client(t, Config{}), u); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: err = %v, want ErrRefused", u, err)
		}
	}
}

func TestNoProxy(t *testing.T) {
	t.Parallel()
	tr := NewClient(Config{}).Transport.(hostCheck).tr
	if tr.Proxy != nil {
		t.Error("transport uses a proxy")
	}
}
