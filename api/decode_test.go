package api

// The decoder's own tests: checkJSON on its own, and fuzz targets for the
// decoding of submissions, whose seeds (testdata/fuzz/) run with every
// `go test`. Run a target for longer with
//
//	go test -run '^$' -fuzz FuzzDecodeJob -fuzztime 60s ./api/

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/schema"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/workers/sys"
)

func TestCheckJSON(t *testing.T) {
	t.Parallel()
	deep := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	type outcome struct{ Code, Field string }
	tests := []struct {
		name  string
		body  string
		depth int // not counted
		want  outcome
	}{
		{name: "plain", body: `{"type":"sys.echo","payload":{"a":[1,2,{"b":"c"}]}}`},
		{name: "text", body: `{"s":"café 日本 😀 \u00e9 \ud83d\ude00 \uFFFD \u0000"}`},
		{name: "numbers", body: `[0,-0,1.5,-2e10,3E+2,4e-1,12345678901234567890]`},
		{name: "64 deep", body: deep(64)},
		{name: "65 deep", body: deep(65), want: outcome{"invalid_json", strings.TrimSuffix(strings.Repeat("a.", 64), ".")}},
		{name: "65 deep in a batch", body: `{"jobs":[` + deep(65) + `]}`, depth: 2, want: outcome{"invalid_json", "jobs[0]" + strings.Repeat(".a", 64)}},
		{name: "64 deep in a batch", body: `{"jobs":[` + deep(64) + `]}`, depth: 2},
		{name: "deep arrays", body: strings.Repeat("[", 100000), want: outcome{"invalid_json", strings.Repeat("[0]", 64)}},
		{name: "byte not UTF-8", body: "{\"a\":{\"b\":\"x\xffy\"}}", want: outcome{"invalid_encoding", "a.b"}},
		{name: "key not UTF-8", body: "{\"a\":{\"k\xff\":1}}", want: outcome{"invalid_encoding", "a.k\uFFFD"}},
		{name: "in an array", body: "{\"a\":[\"ok\",\"\xc3\"]}", want: outcome{"invalid_encoding", "a[1]"}},
		{name: "overlong", body: "{\"a\":\"\xc0\xaf\"}", want: outcome{"invalid_encoding", "a"}},
		{name: "encoded surrogate", body: "{\"a\":\"\xed\xa0\x80\"}", want: outcome{"invalid_encoding", "a"}},
		{name: "past U+10FFFF", body: "{\"a\":\"\xf4\x90\x80\x80\"}", want: outcome{"invalid_encoding", "a"}},
		{name: "lone high surrogate", body: `{"a":"x\ud800"}`, want: outcome{"invalid_encoding", "a"}},
		{name: "lone low surrogate", body: `{"a":"\uDC00x"}`, want: outcome{"invalid_encoding", "a"}},
		{name: "high then not low", body: `{"a":"\ud800\u0041"}`, want: outcome{"invalid_encoding", "a"}},
		{name: "two highs", body: `{"a":"\ud800\ud83d\ude00"}`, want: outcome{"invalid_encoding", "a"}},
		{name: "surrogate in a key", body: `{"\ud800":1}`, want: outcome{"invalid_encoding", "\uFFFD"}},
		{name: "outside strings", body: "{\"a\":1,\xff}", want: outcome{"invalid_encoding", ""}},
		{name: "after the value", body: "{\"a\":1}\xff", want: outcome{"invalid_encoding", ""}},
		{name: "bare string", body: "\"\xff\"", want: outcome{"invalid_encoding", ""}},
		{name: "duplicate", body: `{"a":1,"b":2,"a":3}`, want: outcome{"invalid_json", "a"}},
		{name: "duplicate second", body: `{"a":1,"a":1}`, want: outcome{"invalid_json", "a"}},
		{name: "duplicate escaped", body: `{"type":1,"\u0074ype":2}`, want: outcome{"invalid_json", "type"}},
		{name: "duplicate nested", body: `{"jobs":[{},{"payload":{"x":{"y":1,"y":2}}}]}`, want: outcome{"invalid_json", "jobs[1].payload.x.y"}},
		{name: "case differs", body: `{"type":1,"Type":2}`},
		{name: "same key in siblings", body: `{"a":{"k":1},"b":{"k":1}}`},
		{name: "syntax", body: `{"a":}`, want: outcome{Code: "syntax"}},
		{name: "trailing comma", body: `{"a":1,}`, want: outcome{Code: "syntax"}},
		{name: "bad number", body: `{"a":01}`, want: outcome{Code: "syntax"}},
		{name: "bad escape", body: `{"a":"\x"}`, want: outcome{Code: "syntax"}},
		{name: "control character", body: "{\"a\":\"\n\"}", want: outcome{Code: "syntax"}},
		{name: "unterminated", body: `{"a":"`, want: outcome{Code: "syntax"}},
		{name: "empty", body: ``, want: outcome{Code: "syntax"}},
		{name: "two values", body: `{} {}`, want: outcome{Code: "syntax"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got outcome
			err := checkJSON([]byte(tt.body), 64, tt.depth)
			var ae *Error
			switch {
			case errors.Is(err, errSyntax):
				got.Code = "syntax"
			case errors.As(err, &ae):
				got = outcome{ae.Code, ae.Field}
				if ae.Message == "" || !utf8.ValidString(ae.Message) {
					t.Errorf("message %q", ae.Message)
				}
			case err != nil:
				t.Fatalf("error %v", err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("checkJSON (-want +got):\n%s", d)
			}
			if valid := json.Valid([]byte(tt.body)); (got.Code == "" || got.Code == "syntax") && valid != (got.Code == "") {
				t.Errorf("checkJSON says %q, but encoding/json says valid %v", got.Code, valid)
			}
		})
	}
}

// fuzzDepth is the nesting limit the fuzz targets use: small, so that
// the fuzzer reaches it.
const fuzzDepth = 8

// fuzzDecoder is a decoder over the sys types and a type with a nested
// schema, as a worker would have declared them.
func fuzzDecoder(tb testing.TB) *decoder {
	tb.Helper()
	doc := jobs.Type{Name: "fuzz.doc", Pool: "fuzz", Schema: json.RawMessage(`{
  "type": "object",
  "properties": {
    "title": {"type": "string", "maxLength": 40},
    "tags": {"type": "array", "items": {"type": "string"}},
    "meta": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
  },
  "required": ["title"]
}`)}
	types := memTypes{}
	for _, t := range []jobs.Type{sys.Echo, sys.Sleep, sys.Fail, doc} {
		if _, err := schema.Compile(t.Name, t.Schema); err != nil {
			tb.Fatal(err)
		}
		types[t.Name] = t
	}
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	p := producer.New(producer.Config{MaxDelay: 30 * 24 * time.Hour, Now: func() time.Time { return now }}, nil, types)
	return &decoder{maxDepth: fuzzDepth, maxBatch: 10, buildJob: p.Build}
}

// memTypes are the declared types a fuzzed decoder's producer reads: the
// decoder only builds jobs, so nothing is recorded.
type memTypes map[string]jobs.Type

func (m memTypes) Type(_ context.Context, name string) (jobs.Type, error) {
	if t, ok := m[name]; ok {
		return t, nil
	}
	return jobs.Type{}, store.ErrNotFound
}

func (m memTypes) Types(context.Context) ([]jobs.Type, error) {
	var ts []jobs.Type
	for _, t := range m {
		ts = append(ts, t)
	}
	return ts, nil
}

func (memTypes) Create(context.Context, []*jobs.Job) ([]store.Created, error) {
	return nil, errors.New("a decoder records nothing")
}

func (memTypes) Discard(context.Context, []*jobs.Job) error { return nil }

func (memTypes) Confirm(context.Context, []*jobs.Job) error { return nil }

// wellFormed is the fuzz targets' oracle for a body that was accepted,
// written apart from checkJSON: it walks the body with encoding/json's
// tokenizer and checks that the body is UTF-8, that no string holds a lone
// surrogate (encoding/json decodes one as U+FFFD), that nothing nests
// deeper than maxDepth and that no object has a key twice.
func wellFormed(body []byte, maxDepth int) error {
	if !utf8.Valid(body) {
		return errors.New("not UTF-8")
	}
	// Without U+FFFD in the body, none may appear once decoded.
	replacement := bytes.Contains(body, []byte("\uFFFD")) || bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`))
	type frame struct {
		object, wantKey bool
		keys            map[string]bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{', '[':
				if top != nil && top.object {
					top.wantKey = true // once this value ends
				}
				stack = append(stack, &frame{object: tok == '{', wantKey: true, keys: map[string]bool{}})
				if len(stack) > maxDepth {
					return fmt.Errorf("nested %d deep", len(stack))
				}
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if !replacement && strings.ContainsRune(tok, utf8.RuneError) {
				return fmt.Errorf("string %q holds a lone surrogate", tok)
			}
			if top != nil && top.object && top.wantKey {
				if top.keys[tok] {
					return fmt.Errorf("key %q twice", tok)
				}
				top.keys[tok], top.wantKey = true, false
				continue
			}
		}
		if top != nil && top.object {
			top.wantKey = true
		}
	}
}

// checkRefusal checks what every refusal must be: a 4xx API error from the
// one table, with a message, in UTF-8.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("refused with %T %v, want an API error", err, err)
	}
	if s, ok := statusOf[ae.Code]; !ok || s != ae.Status || s < 400 || s >= 500 {
		t.Fatalf("refused with code %q status %d, want a 4xx code of the table", ae.Code, ae.Status)
	}
	if ae.Message == "" || !utf8.ValidString(ae.Message) || !utf8.ValidString(ae.Field) {
		t.Fatalf("refusal message %q field %q", ae.Message, ae.Field)
	}
}

// checkAccepted checks a job that was accepted, and the message it would
// be published as.
func checkAccepted(t *testing.T, j *jobs.Job) {
	t.Helper()
	if !jobs.ValidTypeName(j.Type) || !utf8.ValidString(j.IdempotencyKey) || len(j.IdempotencyKey) > producer.MaxIdempotencyKey {
		t.Fatalf("accepted job %+v", j)
	}
	if !json.Valid(j.Payload) || j.Payload[0] != '{' {
		t.Fatalf("accepted payload %q", j.Payload)
	}
	for k, v := range j.Metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			t.Fatalf("accepted metadata %q: %q", k, v)
		}
	}
	m, err := queue.NewMessage(j, "")
	if err != nil {
		t.Fatalf("accepted job cannot be a message: %v", err)
	}
	// What a worker reads: the payload is one level down in the message.
	if err := wellFormed(m.Body, fuzzDepth+1); err != nil {
		t.Fatalf("message body %q: %v", m.Body, err)
	}
}

func FuzzDecodeJob(f *testing.F) {
	f.Add([]byte(`{"type":"sys.echo","payload":{"hello":"world"}}`), "")
	d := fuzzDecoder(f)
	f.Fuzz(func(t *testing.T, body []byte, headerKey string) {
		j, err := d.job(context.Background(), body, headerKey)
		checkSyntaxVerdict(t, body, fuzzDepth, 0)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if err := wellFormed(body, fuzzDepth); err != nil {
			t.Fatalf("accepted %q: %v", body, err)
		}
		if !utf8.ValidString(headerKey) {
			t.Fatalf("accepted Idempotency-Key %q", headerKey)
		}
		checkAccepted(t, j)
	})
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte(`{"jobs":[{"type":"sys.echo"},{"type":"nope.nope"}]}`))
	d := fuzzDecoder(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := d.batch(context.Background(), body)
		checkSyntaxVerdict(t, body, fuzzDepth, 2)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		// Each job counts as if sent alone: the body's object and array
		// are two more levels.
		if err := wellFormed(body, fuzzDepth+2); err != nil {
			t.Fatalf("accepted %q: %v", body, err)
		}
		if len(items) > d.maxBatch {
			t.Fatalf("%d items, over the limit", len(items))
		}
		for _, it := range items {
			switch {
			case (it.job == nil) == (it.err == nil):
				t.Fatalf("item is neither a job nor an error: %+v", it)
			case it.err != nil:
				checkRefusal(t, it.err)
			default:
				checkAccepted(t, it.job)
			}
		}
	})
}

// checkSyntaxVerdict checks that checkJSON calls a body not JSON exactly
// when encoding/json does, unless it refused the body for more.
func checkSyntaxVerdict(t *testing.T, body []byte, maxDepth, depth int) {
	t.Helper()
	err := checkJSON(body, maxDepth, depth)
	var ae *Error
	if errors.As(err, &ae) {
		return
	}
	if syntax, valid := errors.Is(err, errSyntax), json.Valid(body); syntax == valid {
		t.Fatalf("checkJSON: %v; encoding/json: valid %v, for %q", err, valid, body)
	}
}

// TestFuzzSeedsMeanWhatTheyAreNamed reads the seed corpus as a table: a
// seed's name says what the decoder must make of it, so the seeds keep
// covering what they were written for.
func TestFuzzSeedsMeanWhatTheyAreNamed(t *testing.T) {
	t.Parallel()
	d := fuzzDecoder(t)
	want := map[string]string{ // name prefix → code; "" for accepted
		"valid-": "", "utf8-": "invalid_encoding", "surrogate-": "invalid_encoding",
		"depth-": "invalid_json", "duplicate-": "invalid_json", "case-": "unknown_field",
	}
	for _, target := range []string{"FuzzDecodeJob", "FuzzDecodeBatch"} {
		dir := filepath.Join("testdata", "fuzz", target)
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) == 0 {
			t.Fatalf("seed corpus %s: %v", dir, err)
		}
		for _, e := range entries {
			prefix, _, _ := strings.Cut(e.Name(), "-")
			code, ok := want[prefix+"-"]
			if !ok {
				continue
			}
			args := readSeed(t, filepath.Join(dir, e.Name()))
			var err error
			if target == "FuzzDecodeJob" {
				_, err = d.job(context.Background(), []byte(args[0]), args[1])
			} else {
				var items []batchItem
				if items, err = d.batch(context.Background(), []byte(args[0])); err == nil && code != "" {
					// A refusal of one entry shows in that entry.
					for _, it := range items {
						if it.err != nil {
							err = it.err
							break
						}
					}
				}
			}
			got := ""
			var ae *Error
			if errors.As(err, &ae) {
				got = ae.Code
			} else if err != nil {
				got = err.Error()
			}
			if got != code {
				t.Errorf("%s/%s: got %q (%v), want %q", target, e.Name(), got, err, code)
			}
		}
	}
}

// readSeed reads the values of a seed corpus file.
func readSeed(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: not a seed corpus file", path)
	}
	var args []string
	for _, l := range lines[1:] {
		_, quoted, ok := strings.Cut(l, "(")
		v, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
		if !ok || err != nil {
			t.Fatalf("%s: cannot read %q", path, l)
		}
		args = append(args, v)
	}
	return args
}

func TestValidTraceParent(t *testing.T) {
	t.Parallel()
	for tp, want := range map[string]bool{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":      true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00":      true,
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more": true, // a later version may add fields
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more": false,
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01more":  false,
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":      false,
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01":      false,
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01":      false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":      false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7":         false,
		"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01":      false,
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01":      false,
		"": false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" + "\xff":                    false,
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-" + strings.Repeat("x", 600): false,
	} {
		if got := validTraceParent(tp); got != want {
			t.Errorf("validTraceParent(%q) = %v, want %v", truncateText(tp, 80), got, want)
		}
	}
}
