// Package schema compiles the JSON Schemas that job types declare for their
// payloads and checks payloads against them, naming the field at fault. The
// worker runtime compiles a schema when a type is registered, so a broken one
// is refused there; the API compiles declared schemas to validate
// submissions.
package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Schema is a compiled payload schema.
type Schema struct {
	s     *jsonschema.Schema
	index map[string]*jsonschema.Schema // every subschema by its location
}

// Compile compiles a JSON Schema (draft 2020-12 unless it names another).
// References to other documents are refused: a declaration must be whole, and
// the API must never fetch URLs or read files on a worker's say-so.
func Compile(name string, raw json.RawMessage) (*Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("schema of %s: %w", name, err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(jsonschema.SchemeURLLoader{})
	url := "warren:///types/" + name + ".json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("schema of %s: %w", name, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("schema of %s: %w", name, err)
	}
	return &Schema{s: s, index: indexSchemas(s)}, nil
}

// FieldError says which part of a payload breaks its schema.
type FieldError struct {
	// Field is the path of the offending value, such as "payload.url".
	Field string
	// Message says what is wrong, as sentences that start with the path
	// of the value they are about (the first with Field), such as
	// "payload.target: send either url (a string) or queue (an object)".
	Message string
	// Unknown says Field names a field the schema does not take at all,
	// whatever its value (an additional property where none is allowed).
	Unknown bool
}

func (e *FieldError) Error() string { return e.Message }

var printer = message.NewPrinter(language.English)

// Validate checks a JSON payload. It returns a *FieldError naming the first
// field at fault (paths start with "payload") and saying, in up to three
// sentences, what is wrong and what to send instead (explain.go), or
// another error when the payload is not JSON.
func (s *Schema) Validate(payload []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return &FieldError{Field: "payload", Message: fmt.Sprintf("payload: %v", err)}
	}
	err = s.s.Validate(inst)
	var ve *jsonschema.ValidationError
	if err == nil || !errors.As(err, &ve) {
		return err
	}
	return s.explain(ve)
}
