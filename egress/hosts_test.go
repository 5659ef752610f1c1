package egress

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseIPv4(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		host string
		want string // "" when not an IPv4 address
	}{
		{"127.0.0.1", "127.0.0.1"},
		{"127.0.0.1.", "127.0.0.1"},
		{"2130706433", "127.0.0.1"},
		{"127.1", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"0x7f.1", "127.0.0.1"},
		{"0X7F.0.0.1", "127.0.0.1"},
		{"0x7f000001", "127.0.0.1"},
		{"0177.0.0.1", "127.0.0.1"},
		{"017700000001", "127.0.0.1"},
		{"0x", "0.0.0.0"},
		{"0", "0.0.0.0"},
		{"0xa9.0xfe.0xa9.0xfe", "169.254.169.254"},
		{"169.16689662", "169.254.169.254"},
		{"4294967295", "255.255.255.255"},
		{"4294967296", ""},
		{"256.0.0.1", ""},
		{"1.2.3.256", ""},
		{"1.2.65536", ""},
		{"1.2.3.4.5", ""},
		{"1..2", ""},
		{"08.0.0.1", ""}, // 8 is not an octal digit
		{"0xg.1", ""},
		{"99999999999999999999999999", ""},
		{"", ""},
	} {
		got, err := parseIPv4(tt.host)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("parseIPv4(%q) = %s, want an error", tt.host, got)
		case tt.want != "" && (err != nil || got.String() != tt.want):
			t.Errorf("parseIPv4(%q) = %s, %v; want %s", tt.host, got, err, tt.want)
		}
	}
	for host, want := range map[string]bool{
		"127.1": true, "2130706433": true, "0x7f.1": true, "example.com": false, "example.123": true,
		"1.2.3.4.": true, "a.0x": true, "a.0xg": false, "localhost": false, ".": false, "": false, "0x.example": false,
	} {
		if got := endsInNumber(host); got != want {
			t.Errorf("endsInNumber(%q) = %v, want %v", host, got, want)
		}
	}
}

// The attack: a host that is an internal address written as a number.
// Resolvers differ on such hosts (getaddrinfo reads 127.1 as 127.0.0.1; Go's
// own resolver asks DNS, fails and the caller retries), so every one of
// them is refused before any lookup, even with 127.0.0.1 allowed.
func TestNumericHostsRefused(t *testing.T) {
	t.Parallel()
	srv, hits := server(t, ok)
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	c := client(t, Config{Allow: loopback})
	for _, host := range []string{
		"2130706433", "127.1", "0x7f.1", "0177.0.0.1", "017700000001", "0x7f000001", "127.0.0.1.",
		"127.000.000.001", "[::ffff:0:7f00:1]", "[::ffff:0:127.0.0.1]", "[::127.0.0.1]",
		"１２７.０.０.１", // full-width digits, which IDNA maps to ASCII
		"256.1", "1.2.3.4.5",
	} {
		_, err := get(c, "http://"+host+":"+port+"/")
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: err = %v, want ErrRefused", host, err)
			continue
		}
		var oe *net.OpError
		if errors.As(err, &oe) && !strings.HasPrefix(host, "[") {
			t.Errorf("%s: refused only when dialed: %v", host, err)
		}
	}
	if hits.Load() != 0 {
		t.Errorf("server reached %d times", hits.Load())
	}
	// The canonical form is reached, and the error for a disguised one
	// names the address it is.
	if body, err := get(c, srv.URL); err != nil || body != "ok" {
		t.Errorf("canonical %s: %q, %v", srv.URL, body, err)
	}
	_, err := get(client(t, Config{}), "http://2130706433:"+port+"/")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1, loopback,") {
		t.Errorf("err = %v, want one naming 127.0.0.1 and why", err)
	}
}

func TestParseRule(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want Rule
		str  string
	}{
		{"127.0.0.1", Rule{Prefix: netip.MustParsePrefix("127.0.0.1/32")}, "127.0.0.1"},
		{" 127.0.0.1:8080 ", Rule{Prefix: netip.MustParsePrefix("127.0.0.1/32"), Port: 8080}, "127.0.0.1:8080"},
		{"10.1.2.3/16", Rule{Prefix: netip.MustParsePrefix("10.1.0.0/16")}, "10.1.0.0/16"},
		{"10.0.0.0/8:443", Rule{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Port: 443}, "10.0.0.0/8:443"},
		{"::1", Rule{Prefix: netip.MustParsePrefix("::1/128")}, "::1"},
		{"[::1]", Rule{Prefix: netip.MustParsePrefix("::1/128")}, "::1"},
		{"[::1]:9000", Rule{Prefix: netip.MustParsePrefix("::1/128"), Port: 9000}, "[::1]:9000"},
		{"fd00::/8", Rule{Prefix: netip.MustParsePrefix("fd00::/8")}, "fd00::/8"},
		{"[fd00::/8]:443", Rule{Prefix: netip.MustParsePrefix("fd00::/8"), Port: 443}, "[fd00::/8]:443"},
		{"::ffff:10.0.0.1", Rule{Prefix: netip.MustParsePrefix("10.0.0.1/32")}, "10.0.0.1"},
		{"::ffff:10.0.0.0/104", Rule{Prefix: netip.MustParsePrefix("10.0.0.0/8")}, "10.0.0.0/8"},
		{"Hooks.Internal.", Rule{Host: "hooks.internal"}, "hooks.internal"},
		{"hooks.internal:8443", Rule{Host: "hooks.internal", Port: 8443}, "hooks.internal:8443"},
		{"localhost:080", Rule{Host: "localhost", Port: 80}, "localhost:80"},
	} {
		got, err := ParseRule(tt.in)
		if err != nil {
			t.Errorf("ParseRule(%q): %v", tt.in, err)
			continue
		}
		if d := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
			t.Errorf("ParseRule(%q) (-want +got):\n%s", tt.in, d)
		}
		if got.String() != tt.str {
			t.Errorf("ParseRule(%q).String() = %q, want %q", tt.in, got.String(), tt.str)
		}
	}
	for _, in := range []string{
		"", " ", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http", "127.0.0.1:+80",
		"[127.0.0.1]:80", "[hooks]:80", "::1:80:", "fe80::1%eth0", "[fe80::1%eth0]:80", "10.0.0.0/33",
		"127.1", "2130706433", "0x7f.1", "hooks..internal", "*.example.com", "http://example.com",
		"example.com/path", "a b", "-", "-a.example", "a-.example", strings.Repeat("a", 64) + ".com", "ex\u00e4mple.com",
	} {
		if r, err := ParseRule(in); err == nil {
			t.Errorf("ParseRule(%q) = %v, want an error", in, r)
		}
	}
	if _, err := ParseRules([]string{"10.0.0.0/8", "", "nope:nope"}); err == nil || !strings.Contains(err.Error(), "nope:nope") {
		t.Errorf("ParseRules: %v, want an error naming the bad entry", err)
	}
}

func rules(t *testing.T, list ...string) []Rule {
	t.Helper()
	r, err := ParseRules(list)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func portOfServer(srv *httptest.Server) string { return srv.URL[strings.LastIndex(srv.URL, ":")+1:] }

// The attack: allowing an internal host for one receiver opened every port
// on it. A rule with a port allows that port alone.
func TestRulesBindPorts(t *testing.T) {
	t.Parallel()
	a, aHits := server(t, ok)
	b, bHits := server(t, ok)
	pa, pb := portOfServer(a), portOfServer(b)
	for _, tt := range []struct {
		name    string
		rules   []string
		url     string
		refused bool
	}{
		{"address and port", []string{"127.0.0.1:" + pa}, a.URL, false},
		{"address, another port", []string{"127.0.0.1:" + pa}, b.URL, true},
		{"prefix and port", []string{"127.0.0.0/8:" + pa}, a.URL, false},
		{"prefix, another port", []string{"127.0.0.0/8:" + pa}, b.URL, true},
		{"name and port", []string{"localhost:" + pa}, "http://localhost:" + pa + "/", false},
		{"name, another port", []string{"localhost:" + pa}, "http://localhost:" + pb + "/", true},
		{"name, reached by address", []string{"localhost:" + pa}, a.URL, true},
		{"address without a port", []string{"127.0.0.1"}, b.URL, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := get(client(t, Config{Rules: rules(t, tt.rules...)}), tt.url)
			if tt.refused != errors.Is(err, ErrRefused) || (!tt.refused && err != nil) {
				t.Errorf("err = %v, want refused %v", err, tt.refused)
			}
		})
	}
	t.Cleanup(func() { // after the subtests
		if aHits.Load() == 0 || bHits.Load() != 1 {
			t.Errorf("a reached %d times, b %d times; want a reached and b once", aHits.Load(), bHits.Load())
		}
	})
}

// recorder starts a server that sends each request's headers to the
// returned channel and answers with respond.
func recorder(t *testing.T, respond http.HandlerFunc) (*httptest.Server, <-chan http.Header) {
	t.Helper()
	got := make(chan http.Header, 10)
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got <- r.Header.Clone()
		respond(w, r)
	})
	return srv, got
}

func post(t *testing.T, c *http.Client, u string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, u, bytes.NewReader([]byte(`{"a":1}`)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "test")
	req.Header.Set("X-Custom", "mine")
	req.Header.Set("Warren-Signature", "t=1,v1=ab")
	req.Header.Set("Authorization", "Bearer hush")
	req.Header.Set("Cookie", "session=hush")
	resp, err := c.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

func headerNames(h http.Header) []string {
	var names []string
	for _, k := range []string{"Authorization", "Content-Type", "Cookie", "Referer", "User-Agent", "Warren-Signature", "X-Custom"} {
		if h.Get(k) != "" {
			names = append(names, k)
		}
	}
	return names
}

// The attack: a receiver redirects to another origin (here another port of
// an allowed host) and the signature, custom headers, credentials and the
// Referer (with the first URL's query) followed.
func TestCrossOriginRedirectStripsHeaders(t *testing.T) {
	t.Parallel()
	other, otherGot := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		if to := r.URL.Query().Get("to"); to != "" {
			http.Redirect(w, r, to, http.StatusTemporaryRedirect)
			return
		}
		io.WriteString(w, "ok")
	})
	var first *httptest.Server
	first, firstGot := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, "/landed", http.StatusTemporaryRedirect)
		case "/cross":
			http.Redirect(w, r, other.URL+"/x", http.StatusTemporaryRedirect)
		case "/bounce":
			// away to the other origin, which sends it back here
			http.Redirect(w, r, other.URL+"/back?to="+url.QueryEscape(first.URL+"/landed"), http.StatusTemporaryRedirect)
		default:
			io.WriteString(w, "ok")
		}
	})
	c := client(t, Config{Rules: rules(t, "127.0.0.1")})
	kept := []string{"Content-Type", "User-Agent"}

	if _, err := post(t, c, first.URL+"/same?token=hush"); err != nil {
		t.Fatal(err)
	}
	<-firstGot
	want := []string{"Authorization", "Content-Type", "Cookie", "Referer", "User-Agent", "Warren-Signature", "X-Custom"}
	if d := cmp.Diff(want, headerNames(<-firstGot)); d != "" {
		t.Errorf("same-origin hop (-want +got):\n%s", d)
	}

	if _, err := post(t, c, first.URL+"/cross?token=hush"); err != nil {
		t.Fatal(err)
	}
	<-firstGot
	if d := cmp.Diff(kept, headerNames(<-otherGot)); d != "" {
		t.Errorf("cross-origin hop (-want +got):\n%s", d)
	}

	// Back at the first origin after a detour, the headers stay stripped:
	// the chain passed through an origin that chose where it went.
	if _, err := post(t, c, first.URL+"/bounce"); err != nil {
		t.Fatal(err)
	}
	<-firstGot
	if d := cmp.Diff(kept, headerNames(<-otherGot)); d != "" {
		t.Errorf("hop away (-want +got):\n%s", d)
	}
	if d := cmp.Diff(kept, headerNames(<-firstGot)); d != "" {
		t.Errorf("hop back (-want +got):\n%s", d)
	}
}

func TestSameOriginRedirects(t *testing.T) {
	t.Parallel()
	other, otherGot := recorder(t, ok)
	first, firstGot := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, "/landed", http.StatusTemporaryRedirect)
		case "/cross":
			http.Redirect(w, r, other.URL+"/x", http.StatusTemporaryRedirect)
		default:
			io.WriteString(w, "ok")
		}
	})
	c := client(t, Config{Rules: rules(t, "127.0.0.1"), SameOriginRedirects: true})
	resp, err := post(t, c, first.URL+"/same")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("same origin: %v, %v", resp, err)
	}
	<-firstGot
	if h := <-firstGot; h.Get("Warren-Signature") == "" {
		t.Error("same-origin hop lost its headers")
	}
	resp, err = post(t, c, first.URL+"/cross")
	if err != nil || resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("cross origin: %v, %v; want the 307 itself", resp, err)
	}
	<-firstGot
	select {
	case <-otherGot:
		t.Error("the other origin was reached")
	default:
	}
}

func TestOrigin(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		a, b string
		same bool
	}{
		{"http://a.example/x", "http://A.EXAMPLE:80/y?q", true},
		{"https://a.example/", "https://a.example:443/", true},
		{"http://a.example/", "https://a.example/", false},
		{"http://a.example/", "http://a.example:8080/", false},
		{"http://a.example/", "http://b.example/", false},
		{"http://a.example/", "http://sub.a.example/", false},
		{"http://[::1]:80/", "http://[::1]/", true},
	} {
		a, _ := url.Parse(tt.a)
		b, _ := url.Parse(tt.b)
		if got := Origin(a) == Origin(b); got != tt.same {
			t.Errorf("%s, %s: same origin %v, want %v", tt.a, tt.b, got, tt.same)
		}
	}
}
