//go:build !linux

package cli

import "io"

// isTTY reports whether w is a terminal; beyond Linux, as isTerminal
// says (a character device).
func isTTY(w io.Writer) bool { return isTerminal(w) }
