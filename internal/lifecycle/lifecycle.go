// Package lifecycle runs a component's background work between its Start
// and its Stop, the way every long-lived part of warren does: Start returns
// at once and starts the work once however often it is called, the work
// keeps the caller's context values but not its cancellation, and Stop
// cancels it and waits for it to end, or for Stop's own context.
package lifecycle

import (
	"context"
	"sync"
)

// Loop is one component's background work. The zero value is ready.
type Loop struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Start runs run in a goroutine of its own until Stop, under a context
// that keeps ctx's values but not its deadline or cancellation; run must
// return once that context is done. Only the first call starts anything:
// it reports whether this one did.
func (l *Loop) Start(ctx context.Context, run func(ctx context.Context)) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done != nil {
		return false
	}
	ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	l.done = make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		run(ctx)
	}(l.done)
	return true
}

// Stop cancels the work and waits for it to return; it returns ctx's error
// if ctx ends first. It is safe to call twice, and without Start.
func (l *Loop) Stop(ctx context.Context) error {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Started reports whether Start has run the work (which may have ended).
func (l *Loop) Started() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done != nil
}
