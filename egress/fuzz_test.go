package egress

// Fuzz targets for the address guard. Their seed corpora are in
// testdata/fuzz/<target>/ and run with every `go test`; explore with, for
// example, go test -run '^$' -fuzz '^FuzzGuard$' -fuzztime 1m ./egress/

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// FuzzParseIPv4 checks the reading of hosts that are numbers against
// net/netip and against itself.
func FuzzParseIPv4(f *testing.F) {
	f.Fuzz(func(t *testing.T, host string) {
		a, err := parseIPv4(host)
		numeric := endsInNumber(host)
		if err == nil {
			if !a.Is4() {
				t.Fatalf("parseIPv4(%q) = %s, not IPv4", host, a)
			}
			if !numeric {
				t.Fatalf("parseIPv4(%q) = %s but endsInNumber is false", host, a)
			}
			if b, err := parseIPv4(a.String()); err != nil || b != a {
				t.Fatalf("parseIPv4(%q) = %s, which reads back as %s, %v", host, a, b, err)
			}
		}
		if n, err := netip.ParseAddr(host); err == nil && n.Is4() {
			if a != n || !numeric {
				t.Fatalf("netip reads %q as %s; parseIPv4 as %s (ends in a number: %v)", host, n, a, numeric)
			}
		}
	})
}

// FuzzCheckURL checks that no URL whose host is an address, in any form,
// gets past the check before dialing unless the address itself would.
func FuzzCheckURL(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		err = (guard{}).checkURL(u)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("checkURL(%q) = %v, not ErrRefused", raw, err)
			}
			return
		}
		host := u.Hostname()
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("checkURL(%q) let scheme %q through", raw, u.Scheme)
		}
		if a, err := netip.ParseAddr(host); err == nil {
			if r := refusal(a.WithZone("").Unmap()); r != "" {
				t.Fatalf("checkURL(%q) let %s (%s) through", raw, a, r)
			}
		}
		if !strings.Contains(host, ":") && endsInNumber(host) {
			a, err := parseIPv4(host)
			if err != nil || a.String() != host || refusal(a) != "" {
				t.Fatalf("checkURL(%q) let number %q (%s, %v) through", raw, host, a, err)
			}
		}
		for _, c := range []byte(host) {
			if c >= 0x80 {
				t.Fatalf("checkURL(%q) let a non-ASCII host through", raw)
			}
		}
	})
}

// FuzzGuard checks the decision on an address and port, with and without
// an allow-list rule, against net/netip's own classification and against
// the forms that embed an IPv4 address.
func FuzzGuard(f *testing.F) {
	f.Fuzz(func(t *testing.T, addr string, port uint16, rule string) {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return
		}
		ap := netip.AddrPortFrom(a, port)
		reason := (guard{}).judge("", ap)
		if err := (guard{}).control("", ap.String()); (err != nil) != (reason != "") {
			t.Fatalf("%s: control says %v, judge %q", ap, err, reason)
		}
		u := a.WithZone("").Unmap()
		if (u.IsLoopback() || u.IsPrivate() || u.IsLinkLocalUnicast() || u.IsLinkLocalMulticast() ||
			u.IsInterfaceLocalMulticast() || u.IsMulticast() || u.IsUnspecified() || !u.IsGlobalUnicast()) && reason == "" {
			t.Fatalf("%s allowed, but netip says it is not global unicast", a)
		}
		if u.Is4() {
			b := u.As4()
			for _, form := range []netip.Addr{
				netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: b[0], 13: b[1], 14: b[2], 15: b[3]}),                 // mapped
				netip.AddrFrom16([16]byte{12: b[0], 13: b[1], 14: b[2], 15: b[3]}),                                     // compatible
				netip.AddrFrom16([16]byte{8: 0xff, 9: 0xff, 12: b[0], 13: b[1], 14: b[2], 15: b[3]}),                   // translated
				netip.AddrFrom16([16]byte{0: 0x00, 1: 0x64, 2: 0xff, 3: 0x9b, 12: b[0], 13: b[1], 14: b[2], 15: b[3]}), // NAT64
				netip.AddrFrom16([16]byte{0: 0x20, 1: 0x02, 2: b[0], 3: b[1], 4: b[2], 5: b[3], 15: 1}),                // 6to4
			} {
				if reason != "" && (guard{}).refusal(form) == "" {
					t.Fatalf("%s is refused (%s) but %s, which embeds it, is not", u, reason, form)
				}
			}
		}
		r, err := ParseRule(rule)
		if err != nil {
			return
		}
		with := (guard{rules: []Rule{r}}).judge("", ap)
		switch {
		case reason == "" && with != "":
			t.Fatalf("%s: allowed alone, refused (%s) with rule %s", ap, with, r)
		case reason != "" && with == "":
			if !r.Prefix.IsValid() || !(r.Prefix.Contains(u) || r.Prefix.Contains(a.WithZone(""))) || (r.Port != 0 && r.Port != port) {
				t.Fatalf("%s: refused alone (%s), allowed by rule %s, which does not cover it", ap, reason, r)
			}
		}
		if r.Host != "" {
			// A host rule allows by the name looked up (in any case, with or
			// without the trailing dot), on its port.
			byName := (guard{rules: []Rule{r}}).judge(strings.ToUpper(r.Host)+".", ap)
			portOK := r.Port == 0 || r.Port == port
			if portOK && byName != "" || !portOK && byName != reason {
				t.Fatalf("%s looked up as %s: %q, with rule %s", ap, r.Host, byName, r)
			}
		}
	})
}

// FuzzParseRule checks that an allow-list entry that parses is written
// back as one that parses the same.
func FuzzParseRule(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			return
		}
		if r.Prefix.IsValid() == (r.Host != "") {
			t.Fatalf("ParseRule(%q) = %+v: want exactly one of Prefix and Host", s, r)
		}
		back, err := ParseRule(r.String())
		if err != nil || back != r {
			t.Fatalf("ParseRule(%q) = %+v, written %q, read back as %+v, %v", s, r, r.String(), back, err)
		}
	})
}
