package queue

import (
	"net"
	"sync"
)

// corkedConn is the connection to the broker, able to hold back writes
// while a burst of frames is written. amqp091-go flushes its buffer after
// every publish, so a batch of a hundred jobs cost a hundred writes, and
// the broker a hundred reads: about a fifth of the API's CPU, and more of
// RabbitMQ's, went to those system calls (bench/out/api-e2e.cpu.pprof).
// The publisher corks the connection around each burst it sends, which
// then leaves in one write.
type corkedConn struct {
	net.Conn

	mu     sync.Mutex
	corked int
	held   []byte
	err    error // a failed write of held bytes: the connection is closed
}

// maxHeldCap bounds the buffer kept between bursts; a larger one (a batch
// of big jobs) is dropped after use.
const maxHeldCap = 1 << 20

// Write writes p, or holds it while the connection is corked.
func (c *corkedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.corked > 0 {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// cork holds back writes until the matching uncork.
func (c *corkedConn) cork() {
	c.mu.Lock()
	c.corked++
	c.mu.Unlock()
}

// uncork writes what was held once the last cork is gone. A failed write
// closes the connection: the writers it held were told their bytes were
// written, so the connection must fail for them to learn otherwise (their
// confirms never come, and the publisher fails what waits on them).
func (c *corkedConn) uncork() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked--
	if c.corked > 0 || len(c.held) == 0 {
		return
	}
	if _, err := c.Conn.Write(c.held); err != nil && c.err == nil {
		c.err = err
		_ = c.Conn.Close()
	}
	if cap(c.held) > maxHeldCap {
		c.held = nil
	} else {
		c.held = c.held[:0]
	}
}
