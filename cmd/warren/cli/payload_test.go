package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadPayload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", "{\n  \"message\": \"hello\"\n}\n")
	empty := write("empty.json", "  \n")
	list := write("list.json", `[1, 2]`)

	for _, tc := range []struct {
		name   string
		arg    string
		absent bool
		stdin  string
		want   string
		err    string
	}{
		{name: "absent", absent: true, want: `{}`},
		{name: "inline", arg: ` {"message":"hello"} `, want: `{"message":"hello"}`},
		{name: "inline empty object", arg: `{}`, want: `{}`},
		{name: "file", arg: "@" + good, want: "{\n  \"message\": \"hello\"\n}"},
		{name: "stdin", arg: "-", stdin: "{\"n\": 1}\n", want: `{"n": 1}`},
		{name: "inline empty", arg: "", err: `payload is empty: want a JSON object`},
		{name: "empty file", arg: "@" + empty, err: "payload from " + empty + " is empty"},
		{name: "empty stdin", arg: "-", err: "payload from standard input is empty"},
		{name: "missing file", arg: "@" + filepath.Join(dir, "nope.json"), err: "read payload: open " + filepath.Join(dir, "nope.json") + ": no such file or directory"},
		{name: "no file name", arg: "@", err: "payload @ names no file"},
		{name: "invalid JSON", arg: `{"message":}`, err: "payload is not valid JSON: invalid character '}' looking for beginning of value (at byte 12)"},
		{name: "truncated JSON", arg: `{"message":"hi"`, err: "payload is not valid JSON: unexpected end of JSON input"},
		{name: "trailing text", arg: `{} x`, err: "payload is not valid JSON: invalid character 'x' after top-level value"},
		{name: "array", arg: `[1]`, err: `payload must be a JSON object such as '{"message":"hello"}', not an array`},
		{name: "array in file", arg: "@" + list, err: "payload from " + list + " must be a JSON object"},
		{name: "string", arg: `"hello"`, err: "not a string"},
		{name: "number", arg: `42`, err: "not a number"},
		{name: "boolean", arg: `true`, err: "not a boolean"},
		{name: "null", arg: `null`, err: "not null"},
		{name: "bare word", arg: `hello`, err: "payload is not valid JSON: invalid character 'h'"},
	} {
		got, err := readPayload(tc.arg, tc.absent, strings.NewReader(tc.stdin))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("%s: payload %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestReadPayloadNoStdin(t *testing.T) {
	t.Parallel()
	if _, err := readPayload("-", false, nil); err == nil || !strings.Contains(err.Error(), "no standard input") {
		t.Errorf("error %v, want one about standard input", err)
	}
}
