package api

import (
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The OpenAPI document lists exactly the codes of the error table.
func TestOpenAPIListsEveryErrorCode(t *testing.T) {
	t.Parallel()
	var spec struct {
		Components struct {
			Schemas struct {
				ErrorDetail struct {
					Properties struct {
						Code struct {
							Enum []string `json:"enum"`
						} `json:"code"`
					} `json:"properties"`
				} `json:"ErrorDetail"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPISpec, &spec); err != nil {
		t.Fatal(err)
	}
	documented := slices.Sorted(slices.Values(spec.Components.Schemas.ErrorDetail.Properties.Code.Enum))
	if d := cmp.Diff(slices.Sorted(maps.Keys(statusOf)), documented); d != "" {
		t.Errorf("error codes (-table +openapi.json):\n%s", d)
	}
}

// docs/api.md's table of errors gives each code of the error table, with
// its status.
func TestDocsListEveryErrorCode(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "| Code | Status | Meaning |\n| --- | --- | --- |\n")
	if !ok {
		t.Fatal("docs/api.md has no table of error codes")
	}
	table, _, _ = strings.Cut(table, "\n\n")
	documented := map[string]int{}
	for _, row := range strings.Split(table, "\n") {
		cells := strings.Split(row, " | ")
		if len(cells) < 3 {
			t.Fatalf("row %q", row)
		}
		status, err := strconv.Atoi(cells[1])
		if err != nil {
			t.Fatalf("row %q: status %q", row, cells[1])
		}
		documented[strings.Trim(cells[0], "|` ")] = status
	}
	if d := cmp.Diff(statusOf, documented); d != "" {
		t.Errorf("error codes (-table +docs/api.md):\n%s", d)
	}
}
