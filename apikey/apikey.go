// Package apikey holds the API's keys: who may call it and for what. A key
// is configured by the SHA-256 of its secret, never the secret itself, with
// a name (recorded on the jobs it submits and in the logs), the scopes it
// holds and, optionally, the job types it is limited to.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Scope is what a key may do.
type Scope string

// The scopes. Admin holds the other two as well.
const (
	// Submit may POST jobs and batches.
	Submit Scope = "submit"
	// Read may GET jobs, artifacts, queues and metrics.
	Read Scope = "read"
	// Admin may do everything: cancel jobs, list, replay and purge dead
	// letters, and what Submit and Read may.
	Admin Scope = "admin"
)

// Scopes are the scopes there are, in the order they are shown.
var Scopes = []Scope{Submit, Read, Admin}

// Key is one configured key (an entry of api.keys).
type Key struct {
	// Name identifies the key in job records (submitted_by), logs and
	// rate limits: lower-case letters, digits, '-' and '_', at most 64.
	Name string `yaml:"name" json:"name"`
	// SHA256 is the hex SHA-256 of the key's secret (see Sum).
	SHA256 string `yaml:"sha256" json:"sha256"`
	// Scopes are what the key may do; at least one.
	Scopes []Scope `yaml:"scopes" json:"scopes"`
	// Types limits the key to job types matching these patterns: a type
	// name, "family.*" for every type of a family, or "*". Empty means
	// every type.
	Types []string `yaml:"types,omitempty" json:"types,omitempty"`
	// RequestsPerSecond is the key's sustained request rate, with bursts of
	// twice as many; zero means the API's default, negative none.
	RequestsPerSecond float64 `yaml:"requests_per_second,omitempty" json:"requests_per_second,omitempty"`
	// JobsPerMinute bounds the jobs the key submits, over any minute; zero
	// means the API's default, negative none.
	JobsPerMinute int `yaml:"jobs_per_minute,omitempty" json:"jobs_per_minute,omitempty"`
	// MaxBatch bounds the jobs of one batch the key sends; zero means the
	// API's own bound.
	MaxBatch int `yaml:"max_batch,omitempty" json:"max_batch,omitempty"`
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	sumRE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// plainRE is what an error may repeat of a name that is not valid:
	// enough to spot a typo, nothing escaped.
	plainRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,80}$`)
	patternRE = regexp.MustCompile(`^(\*|[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*\.\*|[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+)$`)
)

// ValidName reports whether s may name a key.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Validate says what is wrong with the key, if anything.
func (k Key) Validate() error {
	if !ValidName(k.Name) {
		shown := "(not shown)"
		if plainRE.MatchString(k.Name) {
			shown = k.Name
		}
		return fmt.Errorf("key name %s: use 1 to 64 lower-case letters, digits, '-' or '_'", shown)
	}
	if !sumRE.MatchString(k.SHA256) {
		return fmt.Errorf("key %s: sha256 must be 64 lower-case hex digits (the SHA-256 of the key, as 'warren keys new' prints it)", k.Name)
	}
	if len(k.Scopes) == 0 {
		return fmt.Errorf("key %s: give it at least one scope (submit, read, admin)", k.Name)
	}
	for _, s := range k.Scopes {
		if !slices.Contains(Scopes, s) {
			return fmt.Errorf("key %s: unknown scope %q (submit, read, admin)", k.Name, s)
		}
	}
	for _, p := range k.Types {
		if !patternRE.MatchString(p) {
			return fmt.Errorf("key %s: type pattern %q: use a type name, family.* or *", k.Name, p)
		}
	}
	if k.MaxBatch < 0 {
		return fmt.Errorf("key %s: max_batch must not be negative", k.Name)
	}
	return nil
}

// Allows reports whether the key holds scope s.
func (k Key) Allows(s Scope) bool {
	return slices.Contains(k.Scopes, s) || slices.Contains(k.Scopes, Admin)
}

// Limited reports whether the key is limited to some job types.
func (k Key) Limited() bool {
	return len(k.Types) > 0 && !slices.Contains(k.Types, "*")
}

// AllowsType reports whether the key may touch jobs of type t.
func (k Key) AllowsType(t string) bool {
	if !k.Limited() {
		return true
	}
	for _, p := range k.Types {
		if family, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(t, family) {
				return true
			}
		} else if p == t {
			return true
		}
	}
	return false
}

// Entry is the key in the one-line form ParseEntry reads:
// NAME:SCOPE+SCOPE:SHA256HEX, then :TYPE+TYPE when it is limited to types.
// Rate limits have no place in it.
func (k Key) Entry() string {
	scopes := make([]string, len(k.Scopes))
	for i, s := range k.Scopes {
		scopes[i] = string(s)
	}
	e := k.Name + ":" + strings.Join(scopes, "+") + ":" + k.SHA256
	if len(k.Types) > 0 {
		e += ":" + strings.Join(k.Types, "+")
	}
	return e
}

// ParseEntry reads a key from its one-line form (see Entry).
func ParseEntry(s string) (Key, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) < 3 || len(parts) > 4 {
		return Key{}, fmt.Errorf("key entry %q: want NAME:SCOPE+SCOPE:SHA256HEX[:TYPE+TYPE]", redactEntry(s))
	}
	k := Key{Name: parts[0], SHA256: strings.ToLower(parts[2])}
	for _, sc := range strings.Split(parts[1], "+") {
		k.Scopes = append(k.Scopes, Scope(sc))
	}
	if len(parts) == 4 {
		k.Types = strings.Split(parts[3], "+")
	}
	if err := k.Validate(); err != nil {
		return Key{}, err
	}
	return k, nil
}

// redactEntry keeps a malformed entry's name, enough to find it, and drops
// the rest, which may be a secret pasted where its hash belongs.
func redactEntry(s string) string {
	name, _, found := strings.Cut(strings.TrimSpace(s), ":")
	if !found || !ValidName(name) {
		return "…"
	}
	return name + ":…"
}

// ParseList reads entries separated by commas or lines (the form of
// WARREN_API_KEYS and of the file WARREN_API_KEYS_FILE names); blank lines
// and lines starting with # are skipped.
func ParseList(s string) ([]Key, error) {
	var keys []Key
	for _, line := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		for _, e := range strings.Split(line, ",") {
			if strings.TrimSpace(e) == "" {
				continue
			}
			k, err := ParseEntry(e)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// Prefix starts every key Generate makes, so that secret scanners and
// people can tell one when they see it.
const Prefix = "wrn_"

// Generate returns a new random key (256 bits) and its SHA-256 in hex.
func Generate() (secret, sum string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	secret = Prefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, Sum(secret), nil
}

// Sum is the hex SHA-256 of a key's secret, as configured.
func Sum(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Ring is the set of configured keys. The zero Ring (or nil) holds none.
type Ring struct {
	keys []Key
	sums [][sha256.Size]byte
}

// ErrDuplicate means two keys share a name or a secret.
var ErrDuplicate = errors.New("duplicate key")

// NewRing validates keys and returns them as a Ring.
func NewRing(keys []Key) (*Ring, error) {
	r := &Ring{}
	names := map[string]bool{}
	sums := map[string]bool{}
	for _, k := range keys {
		if err := k.Validate(); err != nil {
			return nil, err
		}
		if names[k.Name] {
			return nil, fmt.Errorf("key %s: %w name", k.Name, ErrDuplicate)
		}
		if sums[k.SHA256] {
			return nil, fmt.Errorf("key %s: %w: another key has the same sha256", k.Name, ErrDuplicate)
		}
		names[k.Name], sums[k.SHA256] = true, true
		var sum [sha256.Size]byte
		if _, err := hex.Decode(sum[:], []byte(k.SHA256)); err != nil {
			return nil, fmt.Errorf("key %s: sha256: %w", k.Name, err)
		}
		r.keys = append(r.keys, k)
		r.sums = append(r.sums, sum)
	}
	return r, nil
}

// Len is how many keys the ring holds.
func (r *Ring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.keys)
}

// Lookup returns the key whose secret is secret. It compares the secret's
// hash with every key's in constant time, whether or not one matches
// early, so the time taken tells nothing about which keys exist.
func (r *Ring) Lookup(secret string) (Key, bool) {
	if r == nil {
		return Key{}, false
	}
	sum := sha256.Sum256([]byte(secret))
	found := -1
	for i := range r.sums {
		if subtle.ConstantTimeCompare(sum[:], r.sums[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Key{}, false
	}
	return r.keys[found], true
}
