//go:build !unix

package cli

import "io"

// termSize reports no size where the terminal cannot be asked.
func termSize(io.Writer) (cols, rows int, ok bool) { return 0, 0, false }
