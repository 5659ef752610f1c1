package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// errSyntax is checkJSON's word that a body is not JSON at all: the
// decoder then says where and why, in its own better words.
var errSyntax = errors.New("api: not JSON")

// maxFieldPath bounds the length of a field path named in an error, so a
// hostile key or a deep path is not echoed back whole.
const maxFieldPath = 256

// checkJSON reads a request body once, before it is decoded, and refuses
// what encoding/json would let through silently and other readers (the
// Python worker, a proxy, a log pipeline) would read differently:
//
//   - text that is not UTF-8, in a string or anywhere else, and \u escapes
//     of lone UTF-16 surrogates (encoding/json turns both into U+FFFD;
//     Python refuses the first and keeps the second as a character no
//     encoder can write): invalid_encoding;
//   - arrays and objects nested more than maxDepth deep (a body that is
//     one object is 1 deep), not counting the first depth levels (2 for a
//     batch, so that each of its jobs counts as if sent alone):
//     invalid_json;
//   - an object with the same key twice, after unescaping (encoding/json
//     keeps the last, others keep the first): invalid_json.
//
// Each error names the field at fault, as a path such as
// "jobs[2].payload.name". A body that is not JSON gives errSyntax, unless
// the bytes from where it stops are not UTF-8 (then invalid_encoding).
func checkJSON(b []byte, maxDepth, depth int) error {
	c := &jsonChecker{b: b, maxDepth: maxDepth + depth, base: depth}
	err := c.value(0)
	if err == nil {
		c.space()
		if c.i < len(c.b) {
			err = errSyntax // trailing data
		}
	}
	if errors.Is(err, errSyntax) && !utf8.Valid(b[c.i:]) {
		at := c.i + validPrefix(b[c.i:])
		return apiErr("invalid_encoding", "", "the request body is not UTF-8 text (byte %d is 0x%02x)", at, b[at])
	}
	return err
}

// validPrefix returns how many bytes at the start of b are UTF-8 text.
func validPrefix(b []byte) int {
	n := 0
	for n < len(b) {
		r, size := utf8.DecodeRune(b[n:])
		if r == utf8.RuneError && size == 1 {
			break
		}
		n += size
	}
	return n
}

type jsonChecker struct {
	b        []byte
	i        int
	maxDepth int // absolute, base included
	base     int // depth of the value a caller counts from
	path     []pathSegment
}

// pathSegment is one step of a field path: an object member or an array
// element.
type pathSegment struct {
	key   string
	index int
	elem  bool // an array element: index, not key
}

// field renders the current path, with text that is not UTF-8 replaced
// and the whole bounded.
func (c *jsonChecker) field(extra ...pathSegment) string {
	var sb strings.Builder
	for _, s := range append(c.path, extra...) {
		if sb.Len() > maxFieldPath {
			break
		}
		if s.elem {
			sb.WriteString("[" + strconv.Itoa(s.index) + "]")
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte('.')
		}
		sb.WriteString(strings.ToValidUTF8(s.key, "\uFFFD"))
	}
	return truncateText(sb.String(), maxFieldPath)
}

// truncateText cuts s to at most n bytes, at a character boundary, and
// marks the cut.
func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// prefixed returns "field: " for a message, or "" at the top.
func prefixed(field string) string {
	if field == "" {
		return ""
	}
	return field + ": "
}

func (c *jsonChecker) space() {
	for c.i < len(c.b) {
		switch c.b[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

// value checks one value at c.i, nested depth deep in its container.
func (c *jsonChecker) value(depth int) error {
	c.space()
	if c.i >= len(c.b) {
		return errSyntax
	}
	switch ch := c.b[c.i]; {
	case ch == '{':
		return c.object(depth + 1)
	case ch == '[':
		return c.array(depth + 1)
	case ch == '"':
		_, bad, err := c.str(false)
		if err != nil {
			return err
		}
		if bad != nil {
			return encodingError(c.field(), bad)
		}
		return nil
	case ch == 't':
		return c.literal("true")
	case ch == 'f':
		return c.literal("false")
	case ch == 'n':
		return c.literal("null")
	case ch == '-' || ch >= '0' && ch <= '9':
		return c.number()
	}
	return errSyntax
}

func (c *jsonChecker) tooDeep() error {
	f := c.field()
	return apiErr("invalid_json", f, "%sJSON nesting is deeper than %d levels", prefixed(f), c.maxDepth-c.base)
}

func (c *jsonChecker) object(depth int) error {
	if depth > c.maxDepth {
		return c.tooDeep()
	}
	c.i++ // {
	c.space()
	if c.i < len(c.b) && c.b[c.i] == '}' {
		c.i++
		return nil
	}
	var (
		first string
		seen  map[string]struct{} // from the second key on
	)
	for n := 0; ; n++ {
		c.space()
		if c.i >= len(c.b) || c.b[c.i] != '"' {
			return errSyntax
		}
		key, bad, err := c.str(true)
		if err != nil {
			return err
		}
		member := pathSegment{key: key}
		if bad != nil {
			return encodingError(c.field(member), bad)
		}
		switch {
		case n == 0:
			first = key
		case seen == nil && key != first:
			seen = map[string]struct{}{first: {}, key: {}}
		case seen == nil:
			return c.duplicate(member)
		default:
			if _, dup := seen[key]; dup {
				return c.duplicate(member)
			}
			seen[key] = struct{}{}
		}
		c.space()
		if c.i >= len(c.b) || c.b[c.i] != ':' {
			return errSyntax
		}
		c.i++
		c.path = append(c.path, member)
		if err := c.value(depth); err != nil {
			return err
		}
		c.path = c.path[:len(c.path)-1]
		c.space()
		if c.i >= len(c.b) {
			return errSyntax
		}
		switch c.b[c.i] {
		case ',':
			c.i++
		case '}':
			c.i++
			return nil
		default:
			return errSyntax
		}
	}
}

func (c *jsonChecker) duplicate(member pathSegment) error {
	f := c.field(member)
	return apiErr("invalid_json", f, "%s appears twice in one object; send each key once", f)
}

func (c *jsonChecker) array(depth int) error {
	if depth > c.maxDepth {
		return c.tooDeep()
	}
	c.i++ // [
	c.space()
	if c.i < len(c.b) && c.b[c.i] == ']' {
		c.i++
		return nil
	}
	for n := 0; ; n++ {
		c.path = append(c.path, pathSegment{index: n, elem: true})
		if err := c.value(depth); err != nil {
			return err
		}
		c.path = c.path[:len(c.path)-1]
		c.space()
		if c.i >= len(c.b) {
			return errSyntax
		}
		switch c.b[c.i] {
		case ',':
			c.i++
		case ']':
			c.i++
			return nil
		default:
			return errSyntax
		}
	}
}

func (c *jsonChecker) literal(word string) error {
	if !bytes.HasPrefix(c.b[c.i:], []byte(word)) {
		return errSyntax
	}
	c.i += len(word)
	return nil
}

// number checks JSON's number grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (c *jsonChecker) number() error {
	digits := func() int {
		n := 0
		for c.i < len(c.b) && c.b[c.i] >= '0' && c.b[c.i] <= '9' {
			c.i++
			n++
		}
		return n
	}
	if c.b[c.i] == '-' {
		c.i++
	}
	switch {
	case c.i < len(c.b) && c.b[c.i] == '0':
		c.i++
	case digits() == 0:
		return errSyntax
	}
	if c.i < len(c.b) && c.b[c.i] == '.' {
		c.i++
		if digits() == 0 {
			return errSyntax
		}
	}
	if c.i < len(c.b) && (c.b[c.i] == 'e' || c.b[c.i] == 'E') {
		c.i++
		if c.i < len(c.b) && (c.b[c.i] == '+' || c.b[c.i] == '-') {
			c.i++
		}
		if digits() == 0 {
			return errSyntax
		}
	}
	return nil
}

// badText is the first place a string is not UTF-8 text.
type badText struct {
	at        int    // offset in the body
	surrogate string // the lone surrogate's escape, such as `\ud800`; "" for a byte that is not UTF-8
}

func encodingError(field string, bad *badText) error {
	what := "not UTF-8 text"
	if bad.surrogate != "" {
		what = bad.surrogate + " is half of a UTF-16 surrogate pair, not a character"
	}
	return apiErr("invalid_encoding", field, "%s%s (byte %d of the body)", prefixed(field), what, bad.at)
}

// str reads the string at c.i through its closing quote. With decode it
// returns the string's text (what is not UTF-8 replaced by U+FFFD), for
// keys. bad tells the first place it is not text; err, that it is not a
// JSON string at all.
func (c *jsonChecker) str(decode bool) (text string, bad *badText, err error) {
	c.i++ // "
	var (
		sb    strings.Builder
		plain = c.i // start of a run without escapes
	)
	flush := func() {
		if decode {
			sb.Write(c.b[plain:c.i])
		}
	}
	markBad := func(at int, surrogate string) {
		if bad == nil {
			bad = &badText{at: at, surrogate: surrogate}
		}
	}
	for c.i < len(c.b) {
		ch := c.b[c.i]
		switch {
		case ch == '"':
			flush()
			c.i++
			if decode {
				return strings.ToValidUTF8(sb.String(), "\uFFFD"), bad, nil
			}
			return "", bad, nil
		case ch < 0x20:
			return "", nil, errSyntax
		case ch == '\\':
			flush()
			r, next, ok := c.escape(c.i)
			if !ok {
				return "", nil, errSyntax
			}
			if utf16.IsSurrogate(r) {
				// A high surrogate followed at once by a low one is
				// one character; anything else is half of one.
				if r < 0xdc00 {
					if lo, after, ok := c.escape(next); ok && lo >= 0xdc00 && lo <= 0xdfff {
						r, next = utf16.DecodeRune(r, lo), after
					}
				}
				if utf16.IsSurrogate(r) {
					markBad(c.i, string(c.b[c.i:next]))
					r = utf8.RuneError
				}
			}
			if decode {
				sb.WriteRune(r)
			}
			c.i, plain = next, next
		case ch < utf8.RuneSelf:
			c.i++
		default:
			r, size := utf8.DecodeRune(c.b[c.i:])
			if r == utf8.RuneError && size == 1 {
				markBad(c.i, "")
			}
			c.i += size
		}
	}
	return "", nil, errSyntax
}

// escape reads the escape sequence at i and returns the character it
// stands for (a surrogate half as it is) and where it ends.
func (c *jsonChecker) escape(i int) (r rune, next int, ok bool) {
	if i+1 >= len(c.b) || c.b[i] != '\\' {
		return 0, i, false
	}
	switch c.b[i+1] {
	case '"', '\\', '/':
		return rune(c.b[i+1]), i + 2, true
	case 'b':
		return '\b', i + 2, true
	case 'f':
		return '\f', i + 2, true
	case 'n':
		return '\n', i + 2, true
	case 'r':
		return '\r', i + 2, true
	case 't':
		return '\t', i + 2, true
	case 'u':
		if i+6 > len(c.b) {
			return 0, i, false
		}
		for _, h := range c.b[i+2 : i+6] {
			var d byte
			switch {
			case h >= '0' && h <= '9':
				d = h - '0'
			case h >= 'a' && h <= 'f':
				d = h - 'a' + 10
			case h >= 'A' && h <= 'F':
				d = h - 'A' + 10
			default:
				return 0, i, false
			}
			r = r<<4 | rune(d)
		}
		return r, i + 6, true
	}
	return 0, i, false
}

// objectKeys returns the keys of the JSON object b, in order, skipping
// their values at checkJSON's pace; nil if b is not an object.
func objectKeys(b []byte) []string {
	c := &jsonChecker{b: b, maxDepth: math.MaxInt}
	c.space()
	if c.i >= len(c.b) || c.b[c.i] != '{' {
		return nil
	}
	c.i++
	c.space()
	if c.i < len(c.b) && c.b[c.i] == '}' {
		return []string{}
	}
	var keys []string
	for {
		c.space()
		if c.i >= len(c.b) || c.b[c.i] != '"' {
			return nil
		}
		key, _, err := c.str(true)
		if err != nil {
			return nil
		}
		keys = append(keys, key)
		c.space()
		if c.i >= len(c.b) || c.b[c.i] != ':' {
			return nil
		}
		c.i++
		if c.value(1) != nil {
			return nil
		}
		c.space()
		if c.i >= len(c.b) {
			return nil
		}
		switch c.b[c.i] {
		case ',':
			c.i++
		case '}':
			return keys
		default:
			return nil
		}
	}
}

// wholeNumber reads a JSON number that is a whole number however it is
// written: 3, 3.0, 30e-1 and 0.3e1 are all 3, as JSON Schema counts
// integers. ok is false for anything else: a fraction, text, null, or a
// number beyond ±2³¹. The exponent is never expanded, so 1e999999999 costs
// no more to refuse than 1.5.
func wholeNumber(raw []byte) (n int, ok bool) {
	s := string(bytes.TrimSpace(raw))
	if s == "" || s[0] != '-' && (s[0] < '0' || s[0] > '9') || !json.Valid(raw) {
		return 0, false // not a number, or not JSON's (01, 0x10)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
		return 0, false
	}
	// The float may have rounded a fraction away (3.0000000000000001):
	// the digits after the point, once the exponent has moved it, must all
	// be zeros.
	mant, exp := strings.TrimPrefix(s, "-"), 0
	if i := strings.IndexAny(mant, "eE"); i >= 0 {
		if exp, err = strconv.Atoi(strings.TrimPrefix(mant[i+1:], "+")); err != nil {
			return 0, false
		}
		mant = mant[:i]
	}
	whole, frac, _ := strings.Cut(mant, ".")
	digits := whole + frac
	point := max(len(whole)+exp, 0) // digits[point:] are after the point
	if point < len(digits) && strings.TrimRight(digits[point:], "0") != "" {
		return 0, false
	}
	return int(f), true
}
