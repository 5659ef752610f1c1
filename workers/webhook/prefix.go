package webhook

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/warrenhq/warren/egress"
)

// urlPrefix is one URL a secret signs for, and everything under it.
type urlPrefix struct {
	// origin is as egress.Origin gives it: "https://a.example:443".
	origin string
	// path is the escaped path, "/" at least.
	path string
}

// parsePrefix reads an entry of a secret's allow list:
// scheme://host[:port][/path], with no user, query or fragment.
func parsePrefix(s string) (urlPrefix, error) {
	bad := func(why string) (urlPrefix, error) {
		return urlPrefix{}, fmt.Errorf("allowed URL %q: %s; want scheme://host[:port][/path], such as https://a.example/hooks/", s, why)
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("not a URL")
	}
	if sc := strings.ToLower(u.Scheme); sc != "http" && sc != "https" {
		return bad("want http or https")
	}
	switch {
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return bad("no host")
	case u.User != nil:
		return bad("a user or password does not belong here")
	case u.RawQuery != "" || u.ForceQuery || strings.Contains(s, "?"):
		return bad("a query does not belong here")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return bad("a fragment does not belong here")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return bad("port " + port + ": want 1 to 65535")
		}
	}
	path := cmpPath(u)
	if !cleanPath(u) {
		return bad(`a path with "." or ".." segments or a backslash`)
	}
	return urlPrefix{origin: egress.Origin(u), path: path}, nil
}

// matches says whether u is p or under it: same origin, and a path that is
// p's path or continues it past a "/", with no segment a receiver might
// resolve elsewhere.
func (p urlPrefix) matches(u *url.URL) bool {
	if egress.Origin(u) != p.origin || !cleanPath(u) {
		return false
	}
	path := cmpPath(u)
	if strings.HasSuffix(p.path, "/") {
		return strings.HasPrefix(path, p.path)
	}
	return path == p.path || strings.HasPrefix(path, p.path+"/")
}

// cmpPath is u's path as written (escaped), "/" when empty.
func cmpPath(u *url.URL) string {
	if p := u.EscapedPath(); p != "" {
		return p
	}
	return "/"
}

// cleanPath says whether u's path, decoded, has no "." or ".." segment
// (counting "..;x", which some servers read as "..") and no backslash
// (which some servers read as "/").
func cleanPath(u *url.URL) bool {
	if strings.Contains(u.Path, `\`) {
		return false
	}
	for _, seg := range strings.Split(u.Path, "/") {
		seg, _, _ = strings.Cut(seg, ";")
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}
