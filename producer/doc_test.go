package producer_test

import (
	"os"
	"strings"
	"testing"
)

// TestWorkersDocShowsTheExample holds docs/workers.md's "Enqueue from Go"
// to the lines of Example, which the compiler checks.
func TestWorkersDocShowsTheExample(t *testing.T) {
	ex, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../docs/workers.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(ex), "// readme:begin\n")
	snippet, _, ok := strings.Cut(rest, "\t// readme:end")
	if !ok {
		t.Fatal("example_test.go has no readme markers")
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(snippet, "\n"), "\n") {
		lines = append(lines, strings.TrimPrefix(l, "\t"))
	}
	if want := "```go\n" + strings.Join(lines, "\n") + "\n```"; !strings.Contains(string(doc), want) {
		t.Errorf("docs/workers.md does not show Example's lines:\n%s", want)
	}
}
