package webhook

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/egress"
	"github.com/warrenhq/warren/jobs"
)

func TestPrefixMatches(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		prefix string
		url    string
		want   bool
	}{
		{"https://a.example/hooks/", "https://a.example/hooks/", true},
		{"https://a.example/hooks/", "https://a.example/hooks/x/y?q=1#f", true},
		{"https://a.example/hooks/", "HTTPS://A.EXAMPLE:443/hooks/x", true},
		{"https://a.example/hooks/", "https://user:pw@a.example/hooks/x", true},
		{"https://a.example/hooks/", "https://a.example/hooks", false},
		{"https://a.example/hooks/", "https://a.example/hooksx", false},
		{"https://a.example/hooks/", "https://a.example/", false},
		{"https://a.example/hooks/", "http://a.example/hooks/", false},
		{"https://a.example/hooks/", "https://a.example:8443/hooks/", false},
		{"https://a.example/hooks/", "https://b.a.example/hooks/", false},
		{"https://a.example/hooks/", "https://a.example.evil/hooks/", false},
		{"https://a.example/hooks/", "https://a.example./hooks/", false},
		{"https://a.example/hooks/", "https://a.example/hooks/../admin", false},
		{"https://a.example/hooks/", "https://a.example/hooks/./x", false},
		{"https://a.example/hooks/", "https://a.example/hooks/%2e%2e/admin", false},
		{"https://a.example/hooks/", "https://a.example/hooks/%2E./admin", false},
		{"https://a.example/hooks/", "https://a.example/hooks/..%2Fadmin", false},
		{"https://a.example/hooks/", "https://a.example/hooks/..;/admin", false},
		{"https://a.example/hooks/", "https://a.example/hooks/..;x=1/admin", false},
		{"https://a.example/hooks/", "https://a.example/hooks%2F..%2Fadmin", false},
		{"https://a.example/hooks/", "https://a.example/hooks%2Fx", false},
		{"https://a.example/hooks/", `https://a.example/hooks/..\admin`, false},
		{"https://a.example/hooks/", "https://a.example/hook%73/x", false}, // decoded it is under; as written it is not
		{"https://a.example/hooks/", "https://a.example/hooks/...", true},  // three dots are a name
		{"https://a.example/hooks", "https://a.example/hooks", true},
		{"https://a.example/hooks", "https://a.example/hooks/x", true},
		{"https://a.example/hooks", "https://a.example/hooksx", false},
		{"https://a.example", "https://a.example/anything", true},
		{"https://a.example", "https://a.example", true},
		{"https://a.example:443/", "https://a.example/x", true},
		{"http://a.example/", "http://a.example:80/x", true},
		{"http://[::1]:8080/", "http://[::1]:8080/x", true},
		{"http://[::1]:8080/", "http://[0::1]:8080/x", false}, // written otherwise: not matched
	} {
		p, err := parsePrefix(tt.prefix)
		if err != nil {
			t.Errorf("parsePrefix(%q): %v", tt.prefix, err)
			continue
		}
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Errorf("url.Parse(%q): %v", tt.url, err)
			continue
		}
		if got := p.matches(u); got != tt.want {
			t.Errorf("%s matches %s: %v, want %v", tt.prefix, tt.url, got, tt.want)
		}
	}
}

// FuzzPrefix checks the matching of a URL against a secret's URL prefix:
// whatever matches has the prefix's origin, lies under its path as written,
// and has no segment a receiver could resolve elsewhere. Its seed corpus is
// in testdata/fuzz/FuzzPrefix and runs with every `go test`.
func FuzzPrefix(f *testing.F) {
	f.Fuzz(func(t *testing.T, prefix, target string) {
		p, err := parsePrefix(prefix)
		if err != nil {
			return
		}
		pu, _ := url.Parse(prefix)
		if !p.matches(pu) {
			t.Fatalf("%q does not match itself", prefix)
		}
		u, err := url.Parse(target)
		if err != nil || !p.matches(u) {
			return
		}
		if egress.Origin(u) != egress.Origin(pu) {
			t.Fatalf("%q matches %q of another origin", prefix, target)
		}
		path := cmpPath(u)
		if !strings.HasPrefix(path, p.path) {
			t.Fatalf("%q matches %q, whose path %q is not under %q", prefix, target, path, p.path)
		}
		if rest := path[len(p.path):]; rest != "" && !strings.HasSuffix(p.path, "/") && rest[0] != '/' {
			t.Fatalf("%q matches %q past a partial segment", prefix, target)
		}
		for _, seg := range strings.Split(u.Path, "/") {
			seg, _, _ = strings.Cut(seg, ";")
			if seg == "." || seg == ".." {
				t.Fatalf("%q matches %q, with a dot segment", prefix, target)
			}
		}
		if strings.Contains(u.Path, `\`) {
			t.Fatalf("%q matches %q, with a backslash", prefix, target)
		}
	})
}

// FuzzRequest checks how a payload becomes a request: a payload that cannot
// be sent fails permanently with a reason, and one that can is signed only
// for a URL its secret signs for, with no header a payload could smuggle.
// Its seed corpus is in testdata/fuzz/FuzzRequest.
func FuzzRequest(f *testing.F) {
	sg := &signer{key: []byte("k")}
	p, err := parsePrefix("https://a.example/hooks/")
	if err != nil {
		f.Fatal(err)
	}
	sg.allow = []urlPrefix{p}
	d := &deliverer{secrets: map[string]*signer{"orders": sg}, now: time.Now}
	f.Fuzz(func(t *testing.T, raw []byte) {
		job := &jobs.Job{ID: "id", Type: Deliver.Name, Payload: raw, Attempt: 1}
		var pl payload
		if err := job.Decode(&pl); err != nil {
			return
		}
		req, _, signed, err := d.request(context.Background(), job, &pl)
		if err != nil {
			switch code := jobs.ErrorCode(err); {
			case !jobs.IsPermanent(err):
				t.Fatalf("%s: %v is not permanent", raw, err)
			case code != "invalid_payload" && code != "unknown_secret" && code != "secret_not_allowed":
				t.Fatalf("%s: code %q", raw, code)
			}
			return
		}
		if (signed != nil) != (req.Header.Get("Warren-Signature") != "") {
			t.Fatalf("%s: signer %v, signature %q", raw, signed, req.Header.Get("Warren-Signature"))
		}
		if signed != nil && !signed.signsFor(req.URL) {
			t.Fatalf("%s: signed for %s", raw, req.URL)
		}
		for k, vv := range req.Header {
			for _, v := range vv {
				if strings.ContainsAny(k+v, "\r\n\x00") {
					t.Fatalf("%s: header %q: %q", raw, k, v)
				}
			}
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			t.Fatalf("%s: scheme %q", raw, req.URL.Scheme)
		}
	})
}
