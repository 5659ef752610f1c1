package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/warrenhq/warren/apikey"
	"github.com/warrenhq/warren/store"
)

// The dashboard's sign-in.
//
// A browser cannot send an Authorization header with a navigation or an
// <img>, so where keys are configured the dashboard signs in once (POST
// /ui/login with a key) and the API keeps the key in a cookie the page's
// scripts cannot read (HttpOnly) and that no other site's page can make
// the browser send (SameSite=Strict). A request that authenticates by that
// cookie and changes something must also carry the session's CSRF token in
// the X-Warren-CSRF header: an HMAC of the key, which the page learns from
// GET /ui/session, a same-origin read another site cannot make. The cookie
// alone, even if a browser sent it cross-site, therefore changes nothing.

const (
	// sessionCookie holds the dashboard's key.
	sessionCookie = "warren_key"
	// csrfHeader carries a cookie session's CSRF token.
	csrfHeader = "X-Warren-CSRF"
	// sessionMaxAge is how long a browser keeps a sign-in.
	sessionMaxAge = 12 * time.Hour
	// maxLoginBody bounds a sign-in request: a key is 47 bytes.
	maxLoginBody = 4 << 10
)

// csrfToken is the CSRF token of a session signed in with secret: only
// someone who holds the key, or reads GET /ui/session as its page, has it.
func csrfToken(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("warren dashboard csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// safeMethod reports whether a method only reads.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sessionSecret returns the key a request's session cookie holds, if any.
func sessionSecret(r *http.Request) (string, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return "", false
	}
	return c.Value, true
}

// checkCSRF refuses a state change that authenticates by cookie without
// the session's token.
func checkCSRF(r *http.Request, secret string) *Error {
	if safeMethod(r.Method) {
		return nil
	}
	got := r.Header.Get(csrfHeader)
	if got == "" || !hmac.Equal([]byte(got), []byte(csrfToken(secret))) {
		return apiErr("forbidden_csrf", "csrf",
			"a request signed in by the dashboard's cookie must carry the session's %s header; reload the dashboard", csrfHeader)
	}
	return nil
}

// sessionEntry is GET /ui/session's answer: how the dashboard signs in,
// and who it is signed in as.
type sessionEntry struct {
	// Auth is "key" where the API asks for keys, "open" where it does not.
	Auth     string         `json:"auth"`
	SignedIn bool           `json:"signed_in"`
	Key      string         `json:"key,omitempty"`
	Scopes   []apikey.Scope `json:"scopes"`
	Types    []string       `json:"types,omitempty"`
	// CSRF is the token the dashboard sends in X-Warren-CSRF with each
	// change; empty where the API is open.
	CSRF string `json:"csrf,omitempty"`
}

// session is who a session holding secret ("" for none) is signed in as.
func (s *Server) session(secret string) sessionEntry {
	if !s.authenticating() {
		return sessionEntry{Auth: "open", SignedIn: true, Scopes: apikey.Scopes}
	}
	e := sessionEntry{Auth: "key", Scopes: []apikey.Scope{}}
	if secret == "" {
		return e
	}
	key, ok := s.cfg.Keys.Lookup(secret)
	if !ok {
		return e
	}
	e.SignedIn, e.Key, e.Types, e.CSRF = true, key.Name, key.Types, csrfToken(secret)
	for _, sc := range apikey.Scopes {
		if key.Allows(sc) {
			e.Scopes = append(e.Scopes, sc)
		}
	}
	return e
}

// getSession handles GET /ui/session. It is open: it tells a stranger only
// that keys are asked for.
func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	secret, _ := sessionSecret(r)
	writeJSON(w, http.StatusOK, s.session(secret))
}

// login handles POST /ui/login {"key": "..."}: it checks the key and keeps
// it in the session cookie. Only JSON is taken, which a page of another
// site cannot send without the API's consent (a CORS preflight it never
// gives), so no other site can sign a browser in as the attacker either.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !s.authenticating() {
		writeJSON(w, http.StatusOK, s.session(""))
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, apiErr("unsupported_media", "", "send the key as JSON: {\"key\": \"wrn_...\"}"))
		return
	}
	var body struct {
		Key string `json:"key"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxLoginBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, apiErr("invalid_json", "", "send the key as JSON: {\"key\": \"wrn_...\"}"))
		return
	}
	secret := strings.TrimSpace(body.Key)
	if secret == "" {
		writeError(w, apiErr("missing_field", "key", "key: paste an API key"))
		return
	}
	if e := s.admitSignIn(r); e != nil {
		writeError(w, e)
		return
	}
	key, ok := s.cfg.Keys.Lookup(secret)
	if !ok {
		s.log.Warn("refused a dashboard sign-in with an unknown key", "remote", r.RemoteAddr)
		writeError(w, apiErr("unauthorized", "key", "key: this API does not know that key"))
		return
	}
	if !key.Allows(apikey.Read) {
		writeError(w, apiErr("forbidden", "key", "key: %s may only submit jobs; the dashboard needs a key with the read or admin scope", key.Name))
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: secret, Path: "/",
		MaxAge: int(sessionMaxAge / time.Second), HttpOnly: true, Secure: requestScheme(r) == "https",
		SameSite: http.SameSiteStrictMode,
	})
	s.auditLog.Info("audit", "action", "dashboard sign-in", "key", key.Name, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, s.session(secret))
}

// logout handles POST /ui/logout: it forgets the session cookie. It needs
// the session's CSRF token, so that another site cannot sign a user out.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if secret, ok := sessionSecret(r); ok {
		if e := checkCSRF(r, secret); e != nil {
			writeError(w, e)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: requestScheme(r) == "https", SameSite: http.SameSiteStrictMode,
	})
	w.WriteHeader(http.StatusNoContent)
}

// authenticateSession finds the key of a dashboard's session cookie, or
// answers 401; a change also needs the session's CSRF token.
func (s *Server) authenticateSession(w http.ResponseWriter, r *http.Request, secret string) (apikey.Key, bool) {
	key, ok := s.cfg.Keys.Lookup(secret)
	if !ok {
		// The key was taken out of the configuration since sign-in.
		w.Header().Set("WWW-Authenticate", `Bearer realm="warren", error="invalid_token"`)
		writeError(w, apiErr("unauthorized", "", "the dashboard's key is not one this API knows any more; sign in again"))
		return apikey.Key{}, false
	}
	if e := checkCSRF(r, secret); e != nil {
		s.log.Warn("refused a dashboard change without its CSRF token", "key", key.Name,
			"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		writeError(w, e)
		return apikey.Key{}, false
	}
	return key, true
}

// signInRate bounds the sign-ins one address may try: keys warren makes
// cannot be guessed, but a key configured by hand might be.
var signInRate = store.Rate{Per: 1.0 / 6, Burst: 10}

// admitSignIn takes a sign-in attempt from the bucket of the request's
// remote address, kept in Redis so that every API replica counts it.
func (s *Server) admitSignIn(r *http.Request) *Error {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := s.store.Take(r.Context(), "sign-in@"+host, signInRate, store.Rate{}, 0)
	if err != nil {
		return toAPIError(s.log, err)
	}
	if !a.OK {
		s.log.Warn("refused a dashboard sign-in over the address's rate", "remote", r.RemoteAddr)
		return rateLimited("too many sign-ins from this address", a.RetryAfter)
	}
	return nil
}
