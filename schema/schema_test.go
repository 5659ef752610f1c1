package schema_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/warrenhq/warren/schema"
)

func TestValidateNamesTheField(t *testing.T) {
	t.Parallel()
	s, err := schema.Compile("t.x", json.RawMessage(`{
		"type": "object",
		"required": ["url"],
		"additionalProperties": false,
		"properties": {
			"url": {"type": "string", "format": "uri"},
			"size": {"type": "object", "properties": {"width": {"type": "integer", "minimum": 1}}},
			"tags": {"type": "array", "items": {"type": "string"}}
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		payload, field string
	}{
		{`{"url":"https://a.example/x"}`, ""},
		{`{}`, "payload.url"},
		{`{"url":7}`, "payload.url"},
		{`{"url":"u","extra":1}`, "payload.extra"},
		{`{"url":"u","size":{"width":0}}`, "payload.size.width"},
		{`{"url":"u","tags":["a",3]}`, "payload.tags.1"},
		{`[1]`, "payload"},
		{`{`, "payload"},
	} {
		err := s.Validate([]byte(tt.payload))
		var fe *schema.FieldError
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%s: %v, want valid", tt.payload, err)
		case tt.field != "" && !errors.As(err, &fe):
			t.Errorf("%s: %v, want a field error at %s", tt.payload, err, tt.field)
		case tt.field != "" && (fe.Field != tt.field || fe.Message == ""):
			t.Errorf("%s: field %q message %q, want field %q", tt.payload, fe.Field, fe.Message, tt.field)
		}
	}
}

func TestCompileRefusesBrokenAndRemoteSchemas(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{`{`, `{"type":"nonsense"}`, `{"$ref":"https://example.com/s.json"}`, `{"$ref":"file:///etc/passwd"}`} {
		if _, err := schema.Compile("t.x", json.RawMessage(raw)); err == nil {
			t.Errorf("%s compiled", raw)
		}
	}
}
