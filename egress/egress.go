// Package egress makes outbound HTTP requests to addresses that users supply
// (webhook receivers, images to fetch) while refusing internal targets:
// loopback, private and link-local networks, cloud metadata services and the
// like.
//
// A URL is checked twice, on every hop of a redirect chain. Before anything
// is looked up, its host is read as URL parsers read it: a host that ends in
// a number is an IPv4 address, so 2130706433, 127.1, 0x7f.1 and 0177.0.0.1
// are all 127.0.0.1, and anything but the canonical dotted form
// (127.0.0.1) is refused outright, never handed to a resolver that might
// read it either way. Then the resolved address is checked as the
// connection is opened, in the dialer's Control function, so the check holds
// whatever a host name resolves to (DNS rebinding included). No proxy is
// used, not even one named by the environment: a proxy would connect on our
// behalf and the check would see only the proxy.
//
// A redirect to another origin (scheme, host and port) carries only a few
// harmless headers (Accept, Accept-Language, Content-Type, User-Agent): the
// caller's own headers, signatures and credentials included, and the Referer
// stay with the origin they were meant for, on that hop and every later one.
// (The body of a 307 or 308 still goes along.) Config.SameOriginRedirects
// stops such redirects altogether.
package egress

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrRefused means the target is not allowed: an internal address
// (loopback, private, link-local, metadata, …), a host written as a
// non-canonical number, or a scheme other than http and https. Errors from a
// client made by NewClient satisfy errors.Is(err, ErrRefused) through the
// *url.Error (and, for a refusal at connect time, the *net.OpError) that
// wraps them.
var ErrRefused = errors.New("egress: target address refused")

// ErrTooManyRedirects means a request was redirected more than
// Config.MaxRedirects times.
var ErrTooManyRedirects = errors.New("egress: too many redirects")

// Defaults of Config.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultMaxRedirects = 5
)

// Config configures a client made by NewClient.
type Config struct {
	// Allow lists addresses allowed although internal, on any port, such as
	// 127.0.0.1/32 for tests. Empty allows none. Rules says the same with
	// ports and host names.
	Allow []netip.Prefix
	// Rules lists more targets allowed although internal (see Rule); empty
	// allows none.
	Rules []Rule
	// Timeout bounds a whole request, reading the body included; zero (or
	// less) means DefaultTimeout.
	Timeout time.Duration
	// MaxRedirects is how many redirects a request follows; zero means
	// DefaultMaxRedirects, and a negative value means none are followed:
	// the redirect response itself is returned.
	MaxRedirects int
	// SameOriginRedirects, when true, follows a redirect only to the origin
	// (scheme, host and port) of the first request; a redirect elsewhere is
	// returned as the response. False follows redirects anywhere allowed,
	// with only harmless headers past the first change of origin.
	SameOriginRedirects bool
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
	g := guard{allow: append([]netip.Prefix(nil), cfg.Allow...), rules: append([]Rule(nil), cfg.Rules...)}
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 nil, // never: see the package doc
		DialContext:           g.dialContext(dialer),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
	}
	sameOrigin := cfg.SameOriginRedirects
	return &http.Client{
		Transport: hostCheck{tr: tr, g: g},
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if maxRedirects < 0 {
				return http.ErrUseLastResponse
			}
			if len(via) > maxRedirects {
				return fmt.Errorf("%w (stopped after %d redirects)", ErrTooManyRedirects, maxRedirects)
			}
			if crossed(req, via) {
				if sameOrigin {
					return http.ErrUseLastResponse
				}
				stripHeaders(req.Header)
			}
			return nil
		},
	}
}

// crossed says whether a redirect chain has left the origin of its first
// request, on this hop or an earlier one. net/http copies the first
// request's headers onto every hop, so once the chain has passed through
// another origin every later hop must be stripped again, even one that comes
// back.
func crossed(req *http.Request, via []*http.Request) bool {
	first := Origin(via[0].URL)
	if Origin(req.URL) != first {
		return true
	}
	for _, r := range via[1:] {
		if Origin(r.URL) != first {
			return true
		}
	}
	return false
}

// Origin is u's origin as redirects are judged: scheme, host and port, in
// lower case and with the port made explicit ("https://a.example:443").
func Origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), portOf(u))
}

// portOf is u's port, or the scheme's default.
func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// keptAcrossOrigins are the only headers a redirect to another origin
// carries.
var keptAcrossOrigins = map[string]bool{
	"Accept": true, "Accept-Language": true, "Content-Type": true, "User-Agent": true,
}

func stripHeaders(h http.Header) {
	for k := range h {
		if !keptAcrossOrigins[http.CanonicalHeaderKey(k)] {
			delete(h, k)
		}
	}
}

// hostCheck refuses, before the transport sees them (redirect targets
// included), URLs other than http and https and hosts that are numbers in
// disguise or literal addresses the guard refuses.
type hostCheck struct {
	tr *http.Transport
	g  guard
}

func (h hostCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := h.g.checkURL(req.URL); err != nil {
		if req.Body != nil {
			req.Body.Close() // a RoundTripper must close the body, even on error
		}
		return nil, err
	}
	return h.tr.RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport.
func (h hostCheck) CloseIdleConnections() { h.tr.CloseIdleConnections() }

type guard struct {
	allow []netip.Prefix
	rules []Rule
}

// dialContext dials as base does, with a Control function that knows the
// host name the connection is for (for Rules naming hosts).
func (g guard) dialContext(base *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("%w (unparsable address %q)", ErrRefused, addr)
		}
		d := *base
		d.Control = func(_, address string, _ syscall.RawConn) error { return g.control(host, address) }
		return d.DialContext(ctx, network, addr)
	}
}

// control runs after the socket is made and before it connects, with the
// address actually being connected to; host is the name it was looked up
// by, or the address itself.
func (g guard) control(host, address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// Fail closed: whatever this is, it was not checked.
		return fmt.Errorf("%w (unparsable address %q)", ErrRefused, address)
	}
	if reason := g.judge(host, ap); reason != "" {
		return fmt.Errorf("%w (%s is %s)", ErrRefused, ap.Addr().WithZone(""), reason)
	}
	return nil
}

// checkURL judges u's scheme and host before anything is looked up or
// dialed.
func (g guard) checkURL(u *url.URL) error {
	if sc := u.Scheme; sc != "http" && sc != "https" {
		return fmt.Errorf("%w (scheme %q)", ErrRefused, sc)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%w (no host)", ErrRefused)
	}
	port, err := strconv.ParseUint(portOf(u), 10, 16)
	if err != nil || port == 0 {
		return fmt.Errorf("%w (port %q)", ErrRefused, u.Port())
	}
	for i := 0; i < len(host); i++ {
		// net/http would map a non-ASCII host through IDNA, which turns
		// full-width digits and dots into ASCII ones: a number could hide
		// there. Punycode is ASCII.
		if host[i] >= 0x80 {
			return fmt.Errorf("%w (host %q is not ASCII: write it in its punycode form)", ErrRefused, host)
		}
	}
	var addr netip.Addr
	switch {
	case strings.Contains(host, ":"):
		addr, err = netip.ParseAddr(host)
		if err != nil {
			return fmt.Errorf("%w (host %q is not an IPv6 address)", ErrRefused, host)
		}
	case endsInNumber(host):
		addr, err = parseIPv4(host)
		if err != nil {
			return fmt.Errorf("%w (host %q is neither a name nor an IPv4 address)", ErrRefused, host)
		}
		if host != addr.String() {
			why := ""
			if reason := g.judge("", netip.AddrPortFrom(addr, uint16(port))); reason != "" {
				why = ", " + reason + ","
			}
			return fmt.Errorf("%w (host %q is %s%s written in a form other than %s)", ErrRefused, host, addr, why, addr)
		}
	default:
		return nil // a name: judged on the addresses it resolves to
	}
	if reason := g.judge("", netip.AddrPortFrom(addr, uint16(port))); reason != "" {
		return fmt.Errorf("%w (%s is %s)", ErrRefused, addr.WithZone(""), reason)
	}
	return nil
}

// refusal says why addr is refused on any port, or returns "" if it is
// allowed.
func (g guard) refusal(addr netip.Addr) string {
	return g.judge("", netip.AddrPortFrom(addr, 0))
}

// judge says why a connection to ap, for host (the name looked up, or ""),
// is refused, or returns "" if it is allowed. Port 0 matches only rules
// without a port.
func (g guard) judge(host string, ap netip.AddrPort) string {
	addr := ap.Addr().WithZone("")
	unmapped := addr.Unmap()
	for _, p := range g.allow {
		if p.Contains(addr) || p.Contains(unmapped) {
			return ""
		}
	}
	for _, r := range g.rules {
		if r.allows(host, addr, ap.Port()) {
			return ""
		}
	}
	return refusal(unmapped)
}

// refused lists the ranges refused, with the reason errors give. Besides
// loopback, private, link-local, multicast and the like, it refuses the
// documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
// 2001:db8::/32, 3fff::/20), benchmarking (198.18.0.0/15), the IETF
// assignment blocks (192.0.0.0/24, 2001::/23 with Teredo), reserved
// 240.0.0.0/4 and IPv4-translated addresses (::ffff:0:0:0/96, which a
// stateless translator turns into the IPv4 address they end with): nothing
// a user should reach listens there.
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
	{netip.MustParsePrefix("::ffff:0:0:0/96"), "IPv4-translated (::ffff:0:0:0/96)"},
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

// endsInNumber says whether host is, to a URL parser, an IPv4 address
// (WHATWG URL, "ends in a number"): its last label, a trailing dot aside,
// is all digits or a 0x number.
func endsInNumber(host string) bool {
	labels := strings.Split(host, ".")
	if labels[len(labels)-1] == "" {
		if len(labels) == 1 {
			return false
		}
		labels = labels[:len(labels)-1]
	}
	last := labels[len(labels)-1]
	if last != "" && strings.Trim(last, "0123456789") == "" {
		return true
	}
	_, ok := ipv4Number(last)
	return ok
}

// parseIPv4 reads host as URL parsers and inet_aton do (WHATWG URL, "IPv4
// parser"): one to four numbers separated by dots, each decimal, octal with
// a leading 0 or hexadecimal after 0x, the last filling the bytes left, so
// that 2130706433, 127.1, 0x7f.1 and 0177.0.0.1 are all 127.0.0.1. A
// trailing dot is ignored.
func parseIPv4(host string) (netip.Addr, error) {
	parts := strings.Split(host, ".")
	if len(parts) > 1 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	if len(parts) > 4 {
		return netip.Addr{}, fmt.Errorf("IPv4 address %q: more than four parts", host)
	}
	var n uint64
	for i, p := range parts {
		v, ok := ipv4Number(p)
		if !ok {
			return netip.Addr{}, fmt.Errorf("IPv4 address %q: part %q is not a number", host, p)
		}
		if i < len(parts)-1 {
			if v > 255 {
				return netip.Addr{}, fmt.Errorf("IPv4 address %q: part %q is above 255", host, p)
			}
			n |= v << (8 * (3 - i))
			continue
		}
		if bits := 8 * (5 - len(parts)); v >= 1<<bits {
			return netip.Addr{}, fmt.Errorf("IPv4 address %q: last part %q is above %d", host, p, uint64(1)<<bits-1)
		}
		n |= v
	}
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), nil
}

// ipv4Number reads one part of an IPv4 address as URL parsers do: 0x or 0X
// starts a hexadecimal number (nothing after it is 0), a leading 0 an octal
// one, anything else is decimal. Values above 2³² are capped there. ok is
// false if s is not a number.
func ipv4Number(s string) (n uint64, ok bool) {
	if s == "" {
		return 0, false
	}
	base := uint64(10)
	switch {
	case len(s) >= 2 && (s[:2] == "0x" || s[:2] == "0X"):
		s, base = s[2:], 16
	case len(s) >= 2 && s[0] == '0':
		s, base = s[1:], 8
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d uint64
		switch {
		case '0' <= c && c <= '9':
			d = uint64(c - '0')
		case 'a' <= c && c <= 'f':
			d = uint64(c-'a') + 10
		case 'A' <= c && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		n = min(n*base+d, math.MaxUint32+1)
	}
	return n, true
}
