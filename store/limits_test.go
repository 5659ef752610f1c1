package store

import (
	"os"
	"strings"
	"testing"
)

// The token script is part of the protocol: docs/protocol.md gives it to
// workers in other languages, and the Python worker runs it.
func TestLimitScriptInDocs(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"../docs/protocol.md", "../workers/python/wordcount.py"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(flat(string(b)), flat(takeTokenLua)) {
			t.Errorf("%s lacks the token script as the store has it", path)
		}
	}
}
