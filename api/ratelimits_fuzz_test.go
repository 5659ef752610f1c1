package api

import (
	"testing"
)

// FuzzDecodeLimit: a PUT /v1/limits body is refused with a 4xx API error,
// or taken as a limit within the bounds.
func FuzzDecodeLimit(f *testing.F) {
	for _, s := range []string{
		`{"rate":{"limit":5,"per":"1s","burst":2}}`,
		`{"tenant":{"key":"customer","limit":1,"per":60}}`,
		`{"rate":{"limit":5,"per":"1s"},"tenant":{"key":"c","limit":1,"per":"1m","burst":0}}`,
		`{"rate":null,"tenant":null}`,
		`{"rate":{"limit":1e3,"per":"24h"}}`,
		`{"rate":{"limit":5,"per":"1s"},"rate":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		l, err := decodeLimit("fuzz.type", body, fuzzDepth, "")
		checkSyntaxVerdict(t, body, fuzzDepth, 0)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("took %q as %+v: %v", body, l, err)
		}
		if err := wellFormed(body, fuzzDepth); err != nil {
			t.Fatalf("accepted %q: %v", body, err)
		}
	})
}
