// Package backoff is the wait between attempts to reach a server that is
// away (RabbitMQ, Redis): doubling from a least wait to a most, with full
// jitter, so that a fleet of processes that lost the same server do not all
// come back to it in step.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff hands out the waits of one run of failures. The zero value is not
// usable: make one with New.
type Backoff struct {
	min, max, ceiling time.Duration
}

// New returns a Backoff whose waits start at least min and grow, doubling,
// to at most max (max below min counts as min).
func New(min, max time.Duration) *Backoff {
	min = max2(min, time.Millisecond)
	return &Backoff{min: min, max: max2(max, min), ceiling: min}
}

// Next returns the wait before the next attempt: min plus a random share of
// the current ceiling, which then doubles up to max.
func (b *Backoff) Next() time.Duration {
	wait := b.min + time.Duration(rand.Int64N(int64(b.ceiling)))
	b.ceiling = min(b.ceiling*2, b.max)
	return min(wait, b.max)
}

// Reset starts a new run of failures: the next wait is short again.
func (b *Backoff) Reset() { b.ceiling = b.min }

func max2(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}
