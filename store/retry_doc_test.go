package store

import (
	"os"
	"strings"
	"testing"
)

// docs/protocol.md gives the retry and undo-retry scripts as their bodies
// after the shared functions, which it gives with the start script.
func TestProtocolDocHoldsTheRetryScripts(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"retry":      strings.TrimPrefix(retryLua, terminalLua+declaredPoolLua),
		"undo-retry": strings.TrimPrefix(unretryLua, terminalLua),
	} {
		if !strings.Contains(flat(string(doc)), flat(body)) {
			t.Errorf("docs/protocol.md lacks the %s script as the store has it", name)
		}
	}
}
