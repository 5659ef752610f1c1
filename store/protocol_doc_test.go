package store

import (
	"os"
	"strings"
	"testing"
)

// docs/protocol.md gives other languages the scripts to run; it must hold
// exactly the ones the Go code runs.
func TestProtocolDocHoldsTheScripts(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{
		"create": createLua, "discard": discardLua, "start": startLua,
		"finish": finishLua, "progress": progressLua,
	} {
		if !strings.Contains(string(doc), strings.TrimSpace(src)) {
			t.Errorf("docs/protocol.md lacks the %s script as store/lifecycle.go has it", name)
		}
	}
}
