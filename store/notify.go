package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Notifier holds one subscription to the namespace's events channel and
// fans its events out in process: to callers waiting for a job to finish
// (long-polls) and to a callback for type declarations. One subscription
// serves every waiter, so waiting costs Redis nothing per request.
type Notifier struct {
	s   *Store
	on  Handlers
	log *slog.Logger

	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{}
	ps      *redis.PubSub
	stop    chan struct{}
	done    chan struct{}
}

// Handlers are called by a Notifier's dispatcher, one event at a time; a
// nil one is skipped. They must not block.
type Handlers struct {
	// Type is called with the name of each type declared, and with "" after
	// a reconnect, when declarations may have been missed.
	Type func(name string)
	// Cancel is called with the id of each job canceled by request.
	Cancel func(id string)
}

// NewNotifier returns a Notifier calling on's handlers for the events they
// take; waiters for finished jobs are served in any case.
func (s *Store) NewNotifier(on Handlers) *Notifier {
	return &Notifier{s: s, on: on, log: s.log, waiters: map[string]map[chan struct{}]struct{}{}}
}

// Start subscribes and begins dispatching in the background. The
// subscription is re-established by itself after Redis outages. Calling it
// again does nothing.
func (n *Notifier) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ps != nil {
		return nil
	}
	n.ps = n.s.rdb.Subscribe(context.WithoutCancel(ctx), n.s.ns.EventsChannel())
	n.stop, n.done = make(chan struct{}), make(chan struct{})
	go n.run(n.ps, n.stop, n.done)
	return nil
}

// Stop ends the subscription and waits for the dispatcher to return.
func (n *Notifier) Stop(ctx context.Context) error {
	n.mu.Lock()
	ps, stop, done := n.ps, n.stop, n.done
	stopped := n.stop == nil
	n.stop = nil
	n.mu.Unlock()
	if ps == nil {
		return nil
	}
	if !stopped {
		close(stop)
		_ = ps.Close()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop notifier: %w", ctx.Err())
	}
}

func (n *Notifier) run(ps *redis.PubSub, stop, done chan struct{}) {
	defer close(done)
	ctx := context.Background()
	backoff := 100 * time.Millisecond
	for {
		msg, err := ps.ReceiveTimeout(ctx, 15*time.Second)
		if err != nil {
			select {
			case <-stop:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Quiet channel: check the connection is still alive.
				_ = ps.Ping(ctx)
				continue
			}
			n.log.Debug("event subscription interrupted", "err", err)
			select { // the next Receive reconnects
			case <-time.After(backoff):
			case <-stop:
				return
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			// (Re)subscribed: events may have been missed while away, so
			// every waiter looks again.
			n.wakeAll()
			if n.on.Type != nil {
				n.on.Type("")
			}
		case *redis.Message:
			kind, arg, _ := strings.Cut(m.Payload, " ")
			switch kind {
			case "done":
				n.wake(arg)
			case "types":
				if n.on.Type != nil {
					n.on.Type(arg)
				}
			case "cancel":
				if n.on.Cancel != nil {
					n.on.Cancel(arg)
				}
			}
		}
	}
}

// Subscribe returns a channel that receives a value when the job may have
// changed to a terminal state; call cancel when done waiting.
func (n *Notifier) Subscribe(id string) (ch <-chan struct{}, cancel func()) {
	c := make(chan struct{}, 1)
	n.mu.Lock()
	if n.waiters[id] == nil {
		n.waiters[id] = map[chan struct{}]struct{}{}
	}
	n.waiters[id][c] = struct{}{}
	n.mu.Unlock()
	return c, func() {
		n.mu.Lock()
		delete(n.waiters[id], c)
		if len(n.waiters[id]) == 0 {
			delete(n.waiters, id)
		}
		n.mu.Unlock()
	}
}

func (n *Notifier) wake(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for c := range n.waiters[id] {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

func (n *Notifier) wakeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, set := range n.waiters {
		for c := range set {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
}
