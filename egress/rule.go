package egress

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Rule lets a client reach targets it would otherwise refuse as internal:
// the addresses of Prefix, or whatever addresses Host resolves to when a URL
// names Host, on Port. Exactly one of Prefix and Host is set. A host rule
// trusts that name's DNS: use it for names your own resolver answers, such
// as a Kubernetes service.
type Rule struct {
	// Prefix is the addresses allowed; a single address is a full-length
	// prefix. IPv4-mapped addresses are stored as IPv4.
	Prefix netip.Prefix
	// Host is a host name, lower case, without a trailing dot.
	Host string
	// Port is the one port allowed; zero allows every port.
	Port uint16
}

// ParseRule reads an allow-list entry: host[:port] or CIDR[:port], where
// host is an IP address or a name. IPv6 addresses and prefixes take
// brackets when a port follows. Examples: 10.0.0.0/8, 10.1.2.3:8080,
// [fd00::/8]:443, ::1, hooks.internal:8443.
func ParseRule(s string) (Rule, error) {
	orig := s
	s = strings.TrimSpace(s)
	bad := func(format string, args ...any) (Rule, error) {
		return Rule{}, fmt.Errorf("allow list entry %q: "+format+"; want host[:port] or CIDR[:port], such as 10.1.2.3:8080, 10.0.0.0/8 or hooks.internal:8443", append([]any{orig}, args...)...)
	}
	if s == "" {
		return bad("empty")
	}
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
		host = s[1 : len(s)-1]
	case strings.HasPrefix(s, "["), strings.Count(s, ":") == 1:
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return bad("%v", err)
		}
		if strings.Contains(h, ":") != strings.HasPrefix(s, "[") {
			return bad("brackets go around IPv6 addresses only")
		}
		if p == "" {
			return bad("empty port")
		}
		host, port = h, p
	}
	var r Rule
	if port != "" {
		if strings.Trim(port, "0123456789") != "" {
			return bad("port %q is not a number", port)
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return bad("port %q: want 1 to 65535", port)
		}
		r.Port = uint16(n)
	}
	if strings.Contains(host, "%") {
		return bad("addresses with a zone are not allowed")
	}
	if p, err := netip.ParsePrefix(host); err == nil {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		r.Prefix = p.Masked()
		return r, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		r.Prefix = netip.PrefixFrom(a, a.BitLen())
		return r, nil
	}
	if strings.ContainsAny(host, ":/") {
		return bad("not an IP address or prefix")
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if err := checkName(name); err != nil {
		return bad("%v", err)
	}
	r.Host = name
	return r, nil
}

// ParseRules reads a list of allow-list entries (see ParseRule), skipping
// blank ones.
func ParseRules(list []string) ([]Rule, error) {
	out := make([]Rule, 0, len(list))
	for _, s := range list {
		if strings.TrimSpace(s) == "" {
			continue
		}
		r, err := ParseRule(s)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// String writes r as ParseRule reads it.
func (r Rule) String() string {
	host := r.Host
	if r.Prefix.IsValid() {
		host = r.Prefix.String()
		if r.Prefix.IsSingleIP() {
			host = r.Prefix.Addr().String()
		}
	}
	if r.Port == 0 {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(int(r.Port)))
}

// allows says whether r lets a connection to addr (without zone) and port
// through, for a URL naming host ("" when it named an address).
func (r Rule) allows(host string, addr netip.Addr, port uint16) bool {
	if r.Port != 0 && r.Port != port {
		return false
	}
	if r.Prefix.IsValid() {
		return r.Prefix.Contains(addr) || r.Prefix.Contains(addr.Unmap())
	}
	return r.Host != "" && host != "" && strings.EqualFold(strings.TrimSuffix(host, "."), r.Host)
}

// checkName accepts a DNS name as URLs write it: ASCII letters, digits, "-"
// (not first or last) and "_" in dot-separated labels of 1 to 63
// characters, and not a number in disguise.
func checkName(name string) error {
	if len(name) > 253 {
		return fmt.Errorf("name longer than 253 characters")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("name %q: labels of 1 to 63 characters wanted", name)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("name %q: a label starts or ends with \"-\"", name)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("name %q: character %q", name, c)
			}
		}
	}
	if endsInNumber(name) {
		if a, err := parseIPv4(name); err == nil {
			return fmt.Errorf("%q is the IPv4 address %s: write it so", name, a)
		}
		return fmt.Errorf("name %q ends in a number", name)
	}
	return nil
}
