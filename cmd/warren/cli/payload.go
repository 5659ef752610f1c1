package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// payloadSource says where a payload argument reads from, for messages.
func payloadSource(arg string) string {
	switch {
	case arg == "-":
		return "payload from standard input"
	case strings.HasPrefix(arg, "@"):
		return "payload from " + arg[1:]
	}
	return "payload"
}

// checkPayloadArg reports what is wrong with a payload argument that can be
// told without reading anything.
func checkPayloadArg(arg string) error {
	if arg == "@" {
		return errors.New("payload @ names no file: write @FILE, such as @payload.json")
	}
	return nil
}

// readPayload returns the job payload an argument names: JSON text, @FILE
// for a file's contents, or - for stdin. No argument at all (absent) means
// {}. The payload must be a JSON object; anything else is refused here,
// before any request is sent.
func readPayload(arg string, absent bool, stdin io.Reader) (json.RawMessage, error) {
	if absent {
		return json.RawMessage(`{}`), nil
	}
	if err := checkPayloadArg(arg); err != nil {
		return nil, err
	}
	src := payloadSource(arg)
	var b []byte
	switch {
	case arg == "-":
		if stdin == nil {
			return nil, fmt.Errorf("%s: no standard input", src)
		}
		var err error
		if b, err = io.ReadAll(stdin); err != nil {
			return nil, fmt.Errorf("read %s: %w", src, err)
		}
	case strings.HasPrefix(arg, "@"):
		var err error
		if b, err = os.ReadFile(arg[1:]); err != nil {
			return nil, fmt.Errorf("read payload: %w", err)
		}
	default:
		b = []byte(arg)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty: want a JSON object such as '{\"message\":\"hello\"}' (or leave it out for {})", src)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %s", src, jsonErrorText(err))
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("%s must be a JSON object such as '{\"message\":\"hello\"}', not %s", src, jsonKind(v))
	}
	return json.RawMessage(b), nil
}

// jsonErrorText describes a JSON decoding error with its byte offset.
func jsonErrorText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s (at byte %d)", strings.TrimPrefix(se.Error(), "json: "), se.Offset)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// jsonKind names the kind of a decoded JSON value, with an article.
func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
