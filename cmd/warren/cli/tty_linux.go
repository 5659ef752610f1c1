package cli

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// isTTY reports whether w is a terminal: a file with terminal settings.
// Unlike isTerminal it says no for other character devices, such as
// /dev/null.
func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
