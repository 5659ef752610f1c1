package api_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/workers/image"
)

// A payload its type's schema refuses gets a 400 whose message says, as
// sentences, what to send: for a choice between forms, the forms.
func TestPayloadErrorsReadAsSentences(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	hook := jobs.Type{Name: "rt.notify", Pool: "rt", Schema: json.RawMessage(`{
  "type": "object", "required": ["target"],
  "properties": {"target": {"oneOf": [
    {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}},
    {"type": "object", "required": ["queue"], "properties": {"queue": {"type": "object"}}}
  ]}}
}`)}
	if err := f.env.Store.DeclareTypes(context.Background(), []jobs.Type{image.Thumbnail.WithDefaults(), hook.WithDefaults()}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		body, field, msg string
	}{
		{`{"type":"image.thumbnail","payload":{"width":100}}`, "payload", "payload: send either url (a string) or data (a string)"},
		{`{"type":"rt.notify","payload":{"target":{}}}`, "payload.target", "payload.target: send either url (a string) or queue (an object)"},
		{`{"type":"rt.notify","payload":{"target":{"url":1}}}`, "payload.target.url", "payload.target.url must be a string, not a number"},
		{`{"type":"sys.sleep","payload":{}}`, "payload.ms", "payload.ms is required (an integer from 0 to 3600000)"},
	} {
		r := do(t, "POST", f.url+"/v1/jobs", nil, tt.body)
		if e := r.apiError(t); r.status != 400 || e.Code != "invalid_payload" || e.Field != tt.field || e.Message != tt.msg {
			t.Errorf("%s: %d %+v\nwant 400 invalid_payload %s %q", tt.body, r.status, e, tt.field, tt.msg)
		}
	}
	if keys := f.env.JobKeys(t); len(keys) != 0 {
		t.Errorf("refused payloads left records: %v", keys)
	}
}
