package api

import (
	"crypto/tls"
	"net"
	"sync"
)

// limitListener accepts at most n connections at once: Accept waits while
// n are open, and a connection that waits is left in the kernel's backlog,
// neither read nor answered, until one of the n closes. The server's read
// and idle timeouts bound how long any of them is held.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// newLimitListener caps ln at n connections. A tlsListener (from
// Server.listen) comes out as TLS over the cap: the cap is on the TCP
// connections under it.
func newLimitListener(ln net.Listener, n int) net.Listener {
	if t, ok := ln.(*tlsListener); ok {
		return tls.NewListener(newLimitListener(t.Listener, n), t.config)
	}
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

// Accept waits for a free slot, then for a connection.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

// Close stops Accept, waiting or not, and closes the listener.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back when it is first closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite passes on to the connection: the server half-closes before
// closing, so a client still sending (a body over the limit, say) reads the
// answer rather than a reset.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
