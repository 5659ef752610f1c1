// Package egress makes outbound HTTP requests to addresses that users supply
// (webhook receivers, images to fetch) while refusing internal targets:
// loopback, private and link-local networks, cloud metadata services and the
// like.
//
// The check is made on the resolved address as the connection is opened, in
// the dialer's Control function, so it holds whatever a host name resolves to
// (DNS rebinding included) and for every redirect hop, which goes through the
// same dialer. No proxy is used, not even one named by the environment: a
// proxy would connect on our behalf and the check would see only the proxy.
package egress

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrRefused means the target address is not allowed (loopback, private,
// link-local, metadata, …) or the URL's scheme is neither http nor https.
// Errors from a client made by NewClient satisfy errors.Is(err, ErrRefused)
// through the *url.Error and *net.OpError that wrap them.
var ErrRefused = errors.New("egress: target address refused")

// Defaults of Config.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultMaxRedirects = 5
)

// Config configures a client made by NewClient.
type Config struct {
	// Allow lists addresses allowed although internal, such as
	// 127.0.0.1/32 for tests or an in-cluster receiver. Empty allows none.
	Allow []netip.Prefix
	// Timeout bounds a whole request, reading the body included; zero (or
	// less) means DefaultTimeout.
	Timeout time.Duration
	// MaxRedirects is how many redirects a request follows; zero means
	// DefaultMaxRedirects, and a negative value means none are followed:
	// the redirect response itself is returned.
	MaxRedirects int
}

// NewClient returns an HTTP client that connects only to allowed addresses
// and only for http and https URLs.
func NewClient(cfg Config) *http.Client {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	maxRedirects := cfg.MaxRedirects
	if maxRedirects == 0 {
		maxRedirects = DefaultMaxRedirects
	}
	g := guard{allow: append([]netip.Prefix(nil), cfg.Allow...)}
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: g.control}
	tr := &http.Transport{
		Proxy:                 nil, // never: see the package doc
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
	}
	return &http.Client{
		Transport: schemeCheck{tr},
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if maxRedirects < 0 {
				return http.ErrUseLastResponse
			}
			if len(via) > maxRedirects {
				return fmt.Errorf("egress: stopped after %d redirects", maxRedirects)
			}
			return nil
		},
	}
}

// schemeCheck refuses URLs other than http and https before the transport
// sees them, redirect targets included.
type schemeCheck struct{ tr *http.Transport }

func (s schemeCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	if sc := req.URL.Scheme; sc != "http" && sc != "https" {
		if req.Body != nil {
			req.Body.Close() // a RoundTripper must close the body, even on error
		}
		return nil, fmt.Errorf("%w (scheme %q)", ErrRefused, sc)
	}
	return s.tr.RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport.
func (s schemeCheck) CloseIdleConnections() { s.tr.CloseIdleConnections() }

type guard struct{ allow []netip.Prefix }

// control runs after the socket is made and before it connects, with the
// address actually being connected to.
func (g guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// Fail closed: whatever this is, it was not checked.
		return fmt.Errorf("%w (unparsable address %q)", ErrRefused, address)
	}
	if reason := g.refusal(ap.Addr()); reason != "" {
		return fmt.Errorf("%w (%s is %s)", ErrRefused, ap.Addr().WithZone(""), reason)
	}
	return nil
}

// refusal says why addr is refused, or returns "" if it is allowed.
func (g guard) refusal(addr netip.Addr) string {
	addr = addr.WithZone("")
	unmapped := addr.Unmap()
	for _, p := range g.allow {
		if p.Contains(addr) || p.Contains(unmapped) {
			return ""
		}
	}
	return refusal(unmapped)
}

// refused lists the ranges refused, with the reason errors give. Besides
// loopback, private, link-local, multicast and the like, it refuses the
// documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
// 2001:db8::/32, 3fff::/20), benchmarking (198.18.0.0/15), the IETF
// assignment blocks (192.0.0.0/24, 2001::/23 with Teredo) and reserved
// 240.0.0.0/4: nothing a user should reach listens there.
var refused = []struct {
	prefix netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\" (0.0.0.0/8)"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private (10.0.0.0/8)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (CGNAT, 100.64.0.0/10)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local or metadata (169.254.0.0/16)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private (172.16.0.0/12)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments (192.0.0.0/24)"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation (TEST-NET-1)"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast (192.88.99.0/24)"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private (192.168.0.0/16)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking (198.18.0.0/15)"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation (TEST-NET-2)"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation (TEST-NET-3)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved or broadcast (240.0.0.0/4)"},

	{netip.MustParsePrefix("::/96"), "unspecified, loopback or IPv4-compatible (::/96)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64 (64:ff9b:1::/48)"},
	{netip.MustParsePrefix("100::/64"), "discard-only (100::/64)"},
	{netip.MustParsePrefix("2001::/23"), "IETF protocol assignments, Teredo included (2001::/23)"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation (2001:db8::/32)"},
	{netip.MustParsePrefix("3fff::/20"), "documentation (3fff::/20)"},
	{netip.MustParsePrefix("fc00::/7"), "unique local (fc00::/7)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local (fe80::/10)"},
	{netip.MustParsePrefix("fec0::/10"), "site-local (fec0::/10)"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// refusal says why addr (unmapped, without zone) is refused, or "".
func refusal(addr netip.Addr) string {
	if !addr.IsValid() {
		return "invalid"
	}
	for _, r := range refused {
		if r.prefix.Contains(addr) {
			return r.reason
		}
	}
	// Addresses that embed an IPv4 address reach it through a gateway: judge
	// the embedded address.
	b := addr.As16()
	switch {
	case nat64.Contains(addr):
		if r := refusal(netip.AddrFrom4([4]byte(b[12:16]))); r != "" {
			return "NAT64 of " + r
		}
	case sixToFour.Contains(addr):
		if r := refusal(netip.AddrFrom4([4]byte(b[2:6]))); r != "" {
			return "6to4 of " + r
		}
	}
	// A backstop: the table names the reason for all of these.
	switch {
	case addr.IsUnspecified():
		return "unspecified"
	case addr.IsLoopback():
		return "loopback"
	case addr.IsLinkLocalUnicast():
		return "link-local"
	case addr.IsMulticast():
		return "multicast"
	case addr.IsPrivate():
		return "private"
	case !addr.IsGlobalUnicast():
		return "not global unicast"
	}
	return ""
}
