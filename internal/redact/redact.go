// Package redact hides the credentials that addresses carry (the password
// of amqp://user:password@host/, say) before they reach a log line or an
// error message.
package redact

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// Mask is what stands in for a hidden password; url.URL.Redacted uses the
// same.
const Mask = "xxxxx"

// URL returns raw with its password hidden: url.URL.Redacted, or, for text
// that does not parse as a URL, everything from the colon after the user
// name to the last "@" hidden.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err == nil {
		return u.Redacted()
	}
	_, rest, ok := strings.Cut(raw, "://")
	at := strings.LastIndex(rest, "@")
	colon := strings.Index(rest, ":")
	if !ok || at < 0 || colon < 0 || colon > at {
		return raw
	}
	start := len(raw) - len(rest)
	return raw[:start+colon+1] + Mask + raw[start+at:]
}

// URLs is URL for a list of URLs separated by commas, such as the AMQP
// addresses of a cluster's nodes: each is redacted on its own, so that the
// password of one is not taken for part of the path of another.
func URLs(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		parts[i] = URL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// userinfo matches the "user:password@" of a URL in running text: after a
// scheme's "://", a user without delimiters, then anything without spaces
// up to the last "@" before a space. A password holding an unescaped "/" or
// "@" (which no longer parses as a URL) is covered too.
var userinfo = regexp.MustCompile(`(://[^:/?#@\s]*:)[^\s]*@`)

// Text returns s with the password of every URL in it hidden, such as
// "dial amqp://bob:xxxxx@rabbit/: …".
func Text(s string) string {
	return userinfo.ReplaceAllString(s, "${1}"+Mask+"@")
}

// ParseError is err, returned by a parser of the URL raw, made safe to show:
// url.Parse's errors quote the whole URL, and their cause may quote a piece
// of a password it took for a port ("invalid port \":s3cr\" after host"),
// so for a URL with credentials it keeps none of their text.
func ParseError(raw string, err error) error {
	if err == nil {
		return nil
	}
	if !strings.Contains(raw, "@") {
		return err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return errors.New("not a valid URL; in a user name or password, write : / ? # @ % and spaces percent-encoded (%3A %2F %3F %23 %40 %25 %20)")
	}
	return errors.New(Text(err.Error()))
}
