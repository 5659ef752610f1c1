package store

import (
	"os"
	"strings"
	"testing"
)

// docs/protocol.md gives other languages the scripts to run; it must hold
// exactly the ones the Go code runs (indentation aside, since a block may
// sit inside a list).
func TestProtocolDocHoldsTheScripts(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	flat := func(s string) string {
		lines := strings.Split(strings.TrimSpace(s), "\n")
		for i, l := range lines {
			lines[i] = strings.TrimLeft(l, " \t")
		}
		return strings.Join(lines, "\n")
	}
	for name, src := range map[string]string{
		"create": createLua, "discard": discardLua, "start": startLua,
		"finish": finishLua, "progress": progressLua, "declare": declareLua, "cancel": cancelLua, "revive": reviveLua,
	} {
		if !strings.Contains(flat(string(doc)), flat(src)) {
			t.Errorf("docs/protocol.md lacks the %s script as the store has it", name)
		}
	}
}
