package queue

import (
	"errors"
	"net"
	"slices"
	"testing"
)

// recordingConn is a net.Conn that records each write.
type recordingConn struct {
	net.Conn
	writes [][]byte
	fail   error
	closed bool
}

func (c *recordingConn) Write(p []byte) (int, error) {
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes = append(c.writes, slices.Clone(p))
	return len(p), nil
}

func (c *recordingConn) Close() error { c.closed = true; return nil }

func TestCorkedConn(t *testing.T) {
	t.Parallel()
	rc := &recordingConn{}
	c := &corkedConn{Conn: rc}

	// Uncorked, writes pass through.
	if _, err := c.Write([]byte("a")); err != nil || len(rc.writes) != 1 {
		t.Fatalf("uncorked write: %v, %d writes", err, len(rc.writes))
	}
	// Corked (twice, nested), they are held and leave together at the last
	// uncork.
	c.cork()
	c.cork()
	for _, s := range []string{"b", "cd", "e"} {
		if n, err := c.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("corked write %q: %d, %v", s, n, err)
		}
	}
	c.uncork()
	if len(rc.writes) != 1 {
		t.Fatalf("%d writes after the inner uncork, want 1 (the first)", len(rc.writes))
	}
	c.uncork()
	if got := string(rc.writes[len(rc.writes)-1]); len(rc.writes) != 2 || got != "bcde" {
		t.Fatalf("writes %q, want the held bytes in one write", rc.writes)
	}
	// An uncork with nothing held writes nothing.
	c.cork()
	c.uncork()
	if len(rc.writes) != 2 {
		t.Fatalf("%d writes, want 2", len(rc.writes))
	}

	// A held write that fails closes the connection, and later writes fail.
	broken := errors.New("broken pipe")
	c.cork()
	_, _ = c.Write([]byte("f"))
	rc.fail = broken
	c.uncork()
	if !rc.closed {
		t.Error("the connection stayed open after its held bytes were lost")
	}
	if _, err := c.Write([]byte("g")); !errors.Is(err, broken) {
		t.Errorf("write after the failure = %v, want %v", err, broken)
	}
}
