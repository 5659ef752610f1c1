package cli

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal: what the command writes to tty, the
// test reads from pty.
func openPTY(t *testing.T) (pty, tty *os.File) {
	t.Helper()
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	t.Cleanup(func() { pty.Close() })
	if err := unix.IoctlSetPointerInt(int(pty.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(pty.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return pty, tty
}

// readUntil reads from the pty until it has seen end, and returns what
// came before it.
func readUntil(t *testing.T, pty *os.File, end string) string {
	t.Helper()
	if err := pty.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(got.String(), end) {
		n, err := pty.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("read the terminal: %v (got %q)", err, got.String())
		}
	}
	return strings.TrimSuffix(got.String(), end)
}

// On a terminal, an artifact is shown only when it is text that cannot
// garble it; elsewhere (a pipe, /dev/null) it is written as it is.
func TestJobArtifactOnATerminal(t *testing.T) {
	t.Parallel()
	const id = "0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d"
	arts := map[string][2]string{ // id suffix → content type, bytes
		"1": {"text/plain; charset=utf-8", "hello\nwörld"},
		"2": {"image/png", "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"},
		"3": {"text/plain", "innocent\x1b]0;pwned\x07"},
		"4": {"text/plain", strings.Repeat("x", maxTerminalArtifact+1)},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := arts[strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/jobs/"+id[:len(id)-1]), "/artifact")]
		if !ok {
			apiReply(w, http.StatusNotFound, map[string]any{"error": map[string]string{"code": "not_found", "message": "no artifact"}})
			return
		}
		w.Header().Set("Content-Type", a[0])
		_, _ = io.WriteString(w, a[1])
	}))
	t.Cleanup(srv.Close)
	pty, tty := openPTY(t)
	run := func(stdout io.Writer, n string) (string, int) {
		var errOut bytes.Buffer
		code := Main(t.Context(), []string{"job", "artifact", id[:len(id)-1] + n}, strings.NewReader(""), stdout, &errOut,
			[]string{"WARREN_API_URL=" + srv.URL})
		return errOut.String(), code
	}
	for _, tc := range []struct {
		n, shown, err string
	}{
		{"1", "hello\r\nwörld\r\n", ""}, // the terminal turns \n into \r\n
		{"2", "", "is 16 B of binary image/png, which would garble the terminal: write it to a file with -O FILE (such as " + id[:len(id)-1] + "2.png), or redirect it"},
		{"3", "", "of binary text/plain"},
		{"4", "", "over 1 MiB, too much for a terminal"},
	} {
		stderr, code := run(tty, tc.n)
		if _, err := io.WriteString(tty, "<end>"); err != nil {
			t.Fatal(err)
		}
		shown := readUntil(t, pty, "<end>")
		if shown != tc.shown || (tc.err == "") != (code == 0) || !strings.Contains(stderr, tc.err) {
			t.Errorf("artifact %s on a terminal: exit %d, shown %q, stderr %q; want shown %q, error %q", tc.n, code, shown, stderr, tc.shown, tc.err)
		}
	}
	// /dev/null is a character device, but no terminal: it takes anything.
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if stderr, code := run(null, "2"); code != 0 {
		t.Errorf("binary to /dev/null: exit %d %q", code, stderr)
	}
}
