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
	for name, src := range map[string]string{
		"create": createLua, "discard": discardLua, "start": startLua,
		"finish": finishLua, "progress": progressLua, "declare": declareLua, "cancel": cancelLua, "revive": reviveLua,
		"oldest waiting": oldestLua, "overdue": overdueLua, "orphaned": orphanedLua, "rescue": rescueLua,
		"rescuer lease": leaseLua, "supervisor lease": poolLeaseLua, "pause": pauseLua, "resume": resumeLua, "scaling report": reportLua,
	} {
		if !strings.Contains(flat(string(doc)), flat(src)) {
			t.Errorf("docs/protocol.md lacks the %s script as the store has it", name)
		}
	}
}

// The Python worker embeds the scripts it runs, copied from the doc (the
// start and finish scripts as the shared terminal function and a body). A
// change to them must reach it too, or it stops keeping the records and the
// index of waiting jobs as the Go worker does.
func TestPythonWorkerHoldsTheScripts(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("../workers/python/wordcount.py")
	if err != nil {
		t.Fatal(err)
	}
	for name, lua := range map[string]string{
		"declare": declareLua, "terminal": terminalLua,
		"start": strings.TrimPrefix(startLua, terminalLua), "finish": strings.TrimPrefix(finishLua, terminalLua),
	} {
		if !strings.Contains(flat(string(src)), flat(lua)) {
			t.Errorf("workers/python/wordcount.py lacks the %s script as the store has it", name)
		}
	}
}

// flat drops the indentation of every line, since a block may sit inside a
// list.
func flat(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimLeft(l, " \t")
	}
	return strings.Join(lines, "\n")
}
