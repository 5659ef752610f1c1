package testenv

import (
	"fmt"
	"os"
	"strings"
)

// Alive reports whether the process pid exists and is not a zombie (one
// that exited and was not yet waited for counts as gone).
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}
