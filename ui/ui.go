// Package ui is warren's web dashboard: a page and its scripts, embedded in
// the binary, that the API serves at /ui/. The page holds no data of its
// own: it reads and acts through the JSON API, with the caller's session,
// so every rule of the API (keys, scopes, types, rate limits, audit) holds
// for it as for any client.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

// contentSecurityPolicy lets the page load its own scripts, styles and
// images and talk to its own origin, nothing else: no inline script, so
// a job's payload that slipped into the page as markup could not run, and
// no framing, so no other site can overlay it.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

type asset struct {
	body        []byte
	etag        string
	contentType string
}

// Handler serves the dashboard: /ui/assets/NAME are its files, and every
// other path under /ui/ is the page, which routes itself from the path.
func Handler() http.Handler {
	assets := map[string]asset{}
	_ = fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = http.DetectContentType(b)
		}
		assets[strings.TrimPrefix(p, "static/")] = asset{body: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, contentType: ct}
		return nil
	})
	page := assets["index.html"]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		// Revalidated on each load (a 304 while unchanged), so that a new
		// binary's page never runs with the old one's scripts.
		h.Set("Cache-Control", "no-cache")
		a := page
		if name, ok := strings.CutPrefix(r.URL.Path, Prefix+"assets/"); ok {
			if a, ok = assets[name]; !ok || name == "index.html" {
				http.Error(w, "no such file", http.StatusNotFound)
				return
			}
		}
		h.Set("Content-Type", a.contentType)
		h.Set("ETag", a.etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}
