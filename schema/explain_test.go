package schema_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/schema"
	"github.com/warrenhq/warren/workers/image"
	"github.com/warrenhq/warren/workers/sys"
	"github.com/warrenhq/warren/workers/webhook"
)

// synthetic uses the keywords the built-in types do not: oneOf forms of
// fields (one behind a $ref), of types and of a discriminating constant,
// and array, number and dependency keywords.
var synthetic = jobs.Type{Name: "t.synthetic", Schema: json.RawMessage(`{
  "type": "object",
  "required": ["target"],
  "additionalProperties": false,
  "properties": {
    "target": {"oneOf": [
      {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}},
      {"$ref": "#/$defs/queue"}
    ]},
    "kind": {"oneOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]},
    "event": {"oneOf": [
      {"properties": {"kind": {"const": "created"}, "id": {"type": "string"}}, "required": ["kind", "id"]},
      {"properties": {"kind": {"const": "moved"}, "to": {"type": "integer"}}, "required": ["kind", "to"]}
    ]},
    "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true, "minItems": 1, "maxItems": 3},
    "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10, "multipleOf": 0.5},
    "version": {"const": 2},
    "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$", "description": "lower-case letters"},
    "a": {"type": "string"},
    "b": {"type": "string"}
  },
  "dependentRequired": {"a": ["b"]},
  "$defs": {"queue": {"type": "object", "required": ["queue"], "properties": {"queue": {"type": "object"}}}}
}`)}

// draft7 asserts formats, which draft 2020-12 only notes.
var draft7 = jobs.Type{Name: "t.draft7", Schema: json.RawMessage(`{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "properties": {"site": {"type": "string", "format": "uri"}, "tags": {"type": "array", "items": {"type": "string"}}},
  "anyOf": [{"required": ["site"]}, {"required": ["tags"]}]
}`)}

func TestValidateReadsAsSentences(t *testing.T) {
	t.Parallel()
	compiled := map[string]*schema.Schema{}
	for _, ty := range []jobs.Type{sys.Sleep, sys.Fail, webhook.Deliver, image.Thumbnail, image.Resize, synthetic, draft7} {
		s, err := schema.Compile(ty.Name, ty.Schema)
		if err != nil {
			t.Fatal(err)
		}
		compiled[ty.Name] = s
	}
	for _, tt := range []struct {
		typ, payload string
		field, msg   string
	}{
		// required, with what the field holds
		{"sys.sleep", `{}`, "payload.ms", "payload.ms is required (an integer from 0 to 3600000)"},
		{"webhook.deliver", `{"method":"POST"}`, "payload.url", "payload.url is required (a string)"},
		// type
		{"sys.sleep", `{"ms":"soon"}`, "payload.ms", "payload.ms must be an integer, not a string"},
		{"sys.sleep", `{"ms":1.5}`, "payload.ms", "payload.ms must be a whole number, not one with a fraction"},
		{"webhook.deliver", `{"url":"https://x","headers":{"a":1}}`, "payload.headers.a", "payload.headers.a must be a string, not a number"},
		// several failures at once: each named, up to three
		{"sys.fail", `{"fail_times":"x","permanent":3}`, "payload.fail_times",
			"payload.fail_times must be an integer, not a string; payload.permanent must be true or false, not a number"},
		// minimum and maximum
		{"sys.sleep", `{"ms":-5}`, "payload.ms", "payload.ms must be at least 0, not -5"},
		{"sys.sleep", `{"ms":4000000}`, "payload.ms", "payload.ms must be at most 3600000, not 4000000"},
		{"image.thumbnail", `{"url":"https://e.example/a.jpg","width":10,"quality":101}`, "payload.quality", "payload.quality must be at most 100, not 101"},
		// additionalProperties: a likely meant field first, the fields taken
		{"sys.sleep", `{"ms":1,"extra":true}`, "payload.extra", "payload.extra is not a known field (payload takes ms)"},
		{"sys.sleep", `{"MS":1}`, "payload.MS",
			"payload.MS is not a known field: did you mean payload.ms?; payload.ms is required (an integer from 0 to 3600000)"},
		{"webhook.deliver", `{"url":"https://x","more":1,"extra":2}`, "payload",
			"payload: extra and more are not known fields (payload takes body, headers, method, secret, timeout and url)"},
		{"webhook.deliver", `{"url":"https://x","secrets":"s"}`, "payload.secrets", "payload.secrets is not a known field: did you mean payload.secret?"},
		// enum
		{"webhook.deliver", `{"url":"https://x","method":"DELETE"}`, "payload.method", `payload.method must be one of "POST", "PUT" or "PATCH", not "DELETE"`},
		{"image.thumbnail", `{"url":"https://e.example/a.jpg","width":10,"fit":"fill"}`, "payload.fit", `payload.fit must be one of "inside" or "cover", not "fill"`},
		// pattern, minLength
		{"webhook.deliver", `{"url":"ftp://x"}`, "payload.url", `payload.url must match the pattern ^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]; "ftp://x" does not`},
		{"webhook.deliver", `{"url":"https://x","secret":""}`, "payload.secret", "payload.secret must not be empty (at least 1 character)"},
		// oneOf and anyOf of the image types: which fields to send
		{"image.thumbnail", `{"width":100}`, "payload", "payload: send either url (a string) or data (a string)"},
		{"image.resize", `{"url":"https://e.example/a.jpg","data":"aGVsbG8=","width":100}`, "payload",
			"payload: send either url (a string) or data (a string), not both"},
		{"image.thumbnail", `{"url":"https://e.example/a.jpg"}`, "payload",
			"payload: send width (an integer from 1 to 10000), height (an integer from 1 to 10000), or both"},
		{"image.thumbnail", `{}`, "payload",
			"payload: send either url (a string) or data (a string); payload: send width (an integer from 1 to 10000), height (an integer from 1 to 10000), or both"},
		// oneOf of fields, one form behind a $ref
		{"t.synthetic", `{"target":{}}`, "payload.target", "payload.target: send either url (a string) or queue (an object)"},
		{"t.synthetic", `{"target":7}`, "payload.target", "payload.target: send either url (a string) or queue (an object)"},
		{"t.synthetic", `{"target":{"url":"u","queue":{}}}`, "payload.target", "payload.target: send either url (a string) or queue (an object), not both"},
		// ... but where one form was plainly meant, what is wrong with it
		{"t.synthetic", `{"target":{"url":5}}`, "payload.target.url", "payload.target.url must be a string, not a number"},
		// oneOf of types
		{"t.synthetic", `{"target":{"url":"u"},"kind":true}`, "payload.kind", "payload.kind must be either a string or an integer of at least 0"},
		{"t.synthetic", `{"target":{"url":"u"},"kind":-1}`, "payload.kind", "payload.kind must be at least 0, not -1"},
		// oneOf told apart by a constant
		{"t.synthetic", `{"target":{"url":"u"},"event":{"kind":"deleted"}}`, "payload.event",
			`payload.event: send either kind "created" with id (a string) or kind "moved" with to (an integer)`},
		{"t.synthetic", `{"target":{"url":"u"},"event":{"kind":"moved"}}`, "payload.event.to", "payload.event.to is required (an integer)"},
		{"t.synthetic", `{"target":{"url":"u"},"event":{"kind":"created","id":5}}`, "payload.event.id", "payload.event.id must be a string, not a number"},
		// const
		{"t.synthetic", `{"target":{"url":"u"},"version":3}`, "payload.version", "payload.version must be 2, not 3"},
		// arrays
		{"t.synthetic", `{"target":{"url":"u"},"tags":[]}`, "payload.tags", "payload.tags must have at least 1 item, not 0"},
		{"t.synthetic", `{"target":{"url":"u"},"tags":["a","b","c","d"]}`, "payload.tags", "payload.tags must have at most 3 items, not 4"},
		{"t.synthetic", `{"target":{"url":"u"},"tags":["a","a"]}`, "payload.tags", "payload.tags must not repeat an item: items 0 and 1 are equal"},
		{"t.synthetic", `{"target":{"url":"u"},"tags":["a",1]}`, "payload.tags.1", "payload.tags.1 must be a string, not a number"},
		// exclusive bounds, multipleOf
		{"t.synthetic", `{"target":{"url":"u"},"ratio":0}`, "payload.ratio", "payload.ratio must be greater than 0, not 0"},
		{"t.synthetic", `{"target":{"url":"u"},"ratio":10}`, "payload.ratio", "payload.ratio must be less than 10, not 10"},
		{"t.synthetic", `{"target":{"url":"u"},"ratio":0.3}`, "payload.ratio", "payload.ratio must be a multiple of 0.5, not 0.3"},
		// maxLength, and a pattern with its description
		{"t.synthetic", `{"target":{"url":"u"},"name":"abcdef"}`, "payload.name", "payload.name must be at most 5 characters long, not 6"},
		{"t.synthetic", `{"target":{"url":"u"},"name":"A1"}`, "payload.name", `payload.name must match the pattern ^[a-z]+$ (lower-case letters); "A1" does not`},
		// dependentRequired, and a required field whose form is a choice
		{"t.synthetic", `{"target":{"url":"u"},"a":"x"}`, "payload", "payload: b is required when a is given"},
		{"t.synthetic", `{}`, "payload.target", "payload.target is required"},
		// format (draft-07), anyOf of fields
		{"t.draft7", `{"site":"not a uri"}`, "payload.site", `payload.site must be a valid uri; "not a uri" is not (relative url)`},
		{"t.draft7", `{}`, "payload", "payload: send site (a string), tags (an array of strings), or both"},
		// not an object at all
		{"sys.sleep", `[1]`, "payload", "payload must be an object, not an array"},
	} {
		err := compiled[tt.typ].Validate([]byte(tt.payload))
		var fe *schema.FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%s %s: %v, want a field error", tt.typ, tt.payload, err)
			continue
		}
		if d := cmp.Diff(tt, struct{ typ, payload, field, msg string }{tt.typ, tt.payload, fe.Field, fe.Message}, cmp.AllowUnexported(tt)); d != "" {
			t.Errorf("%s %s (-want +got):\n%s", tt.typ, tt.payload, d)
		}
		// Unknown marks a field the schema takes under no value.
		if want := strings.HasPrefix(tt.msg, tt.field+" is not a known field"); fe.Unknown != want {
			t.Errorf("%s %s: Unknown %v, want %v", tt.typ, tt.payload, fe.Unknown, want)
		}
	}
}

// FuzzValidate feeds payloads to the built-in types' schemas and the
// synthetic one: whatever they hold, a refusal names a field of the
// payload and reads as sentences, never as the validator's own words.
func FuzzValidate(f *testing.F) {
	var compiled []*schema.Schema
	for _, ty := range []jobs.Type{sys.Sleep, webhook.Deliver, image.Thumbnail, synthetic, draft7} {
		s, err := schema.Compile(ty.Name, ty.Schema)
		if err != nil {
			f.Fatal(err)
		}
		compiled = append(compiled, s)
	}
	for _, seed := range []string{
		`{}`, `{"ms":1}`, `{"url":"https://x","method":"GET"}`, `{"width":1,"url":"u","data":"d"}`,
		`{"target":{"url":5,"queue":[]},"event":{"kind":"moved","to":"x"},"tags":[1,1]}`, `{"site":"::"}`, `[]`, `null`, `"x"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, s := range compiled {
			err := s.Validate(payload)
			if err == nil {
				continue
			}
			var fe *schema.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("%q: %v is not a field error", payload, err)
			}
			if fe.Field != "payload" && !strings.HasPrefix(fe.Field, "payload.") || !strings.HasPrefix(fe.Message, fe.Field) {
				t.Fatalf("%q: field %q message %q", payload, fe.Field, fe.Message)
			}
			for _, raw := range []string{"'oneOf' failed", "'anyOf' failed", "subschemas", "jsonschema validation failed", "validation failed"} {
				if strings.Contains(fe.Message, raw) {
					t.Fatalf("%q: message %q has the validator's words %q", payload, fe.Message, raw)
				}
			}
		}
	})
}
