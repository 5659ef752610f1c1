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

	"github.com/warrenhq/warren/internal/backoff"
	"github.com/warrenhq/warren/internal/lifecycle"
)

// Notifier holds one pub/sub connection for a process: on it the
// namespace's events channel, dispatched to Handlers, and the done channels
// of the jobs someone in the process waits for (long-polls), each
// subscribed while it has waiters. Waiting costs Redis nothing per
// request beyond the subscription, and a process hears only of the jobs
// it waits for.
type Notifier struct {
	s   *Store
	on  Handlers
	log *slog.Logger

	mu      sync.Mutex
	done    map[string]*doneWait // by done channel
	ps      *redis.PubSub
	stopped bool           // Stop was called: no new waiters
	loop    lifecycle.Loop // the dispatcher's
}

// doneWait is the subscription to one job's done channel.
type doneWait struct {
	waiters map[chan struct{}]struct{}
	// live closes when Redis confirms the subscription: from then on no
	// publication is missed, so a waiter may look at the record.
	live      chan struct{}
	confirmed bool
}

// Handlers are called by a Notifier's dispatcher, one event at a time; a
// nil one is skipped. They must not block.
type Handlers struct {
	// Type is called with the name of each type declared, and with "" after
	// a reconnect, when declarations may have been missed.
	Type func(name string)
	// Cancel is called with the id of each job canceled by request.
	Cancel func(id string)
	// Pause is called with a pool and whether it is now paused on each
	// pause and resume ("pause <pool>", "resume <pool>"), and with "" after
	// a reconnect, when some may have been missed: read them again then
	// (Store.Paused).
	Pause func(pool string, paused bool)
	// Limits is called with a job type whose rate limit was set or removed
	// ("limits <type>"), and with "" after a reconnect, when some may have
	// been missed: read them again then (Store.Limits).
	Limits func(jobType string)
}

// NewNotifier returns a Notifier calling on's handlers for the events they
// take; waiters for finished jobs are served in any case.
func (s *Store) NewNotifier(on Handlers) *Notifier {
	return &Notifier{s: s, on: on, log: s.log, done: map[string]*doneWait{}}
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
	ps := n.s.rdb.Subscribe(context.WithoutCancel(ctx), n.s.ns.EventsChannel())
	n.ps = ps
	n.loop.Start(ctx, func(ctx context.Context) { n.run(ctx, ps) })
	return nil
}

// Stop ends the subscription and waits for the dispatcher to return.
func (n *Notifier) Stop(ctx context.Context) error {
	n.mu.Lock()
	ps, first := n.ps, !n.stopped
	n.stopped = true
	n.mu.Unlock()
	if ps != nil && first {
		_ = ps.Close() // ends a Receive that is waiting
	}
	if err := n.loop.Stop(ctx); err != nil {
		return fmt.Errorf("stop notifier: %w", err)
	}
	return nil
}

// run dispatches until stop is done.
func (n *Notifier) run(stop context.Context, ps *redis.PubSub) {
	events := n.s.ns.EventsChannel()
	ctx := context.Background() // Receive's: a cancelled one would not reconnect
	wait := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		msg, err := ps.ReceiveTimeout(ctx, 15*time.Second)
		if err != nil {
			select {
			case <-stop.Done():
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
			case <-time.After(wait.Next()):
			case <-stop.Done():
				return
			}
			continue
		}
		wait.Reset()
		switch m := msg.(type) {
		case *redis.Subscription:
			switch {
			case m.Kind != "subscribe":
			case m.Channel == events:
				// (Re)subscribed: events may have been missed while away,
				// so every waiter looks again.
				n.wakeAll()
				if n.on.Type != nil {
					n.on.Type("")
				}
				if n.on.Pause != nil {
					n.on.Pause("", false)
				}
				if n.on.Limits != nil {
					n.on.Limits("")
				}
			default:
				n.confirm(m.Channel)
			}
		case *redis.Message:
			if m.Channel != events {
				n.wake(m.Channel)
				continue
			}
			kind, arg, _ := strings.Cut(m.Payload, " ")
			switch kind {
			case "types":
				if n.on.Type != nil {
					n.on.Type(arg)
				}
			case "cancel":
				if n.on.Cancel != nil {
					n.on.Cancel(arg)
				}
			case "pause", "resume":
				if n.on.Pause != nil && arg != "" {
					n.on.Pause(arg, kind == "pause")
				}
			case "limits":
				if n.on.Limits != nil && arg != "" {
					n.on.Limits(arg)
				}
			}
		}
	}
}

// ErrNotStarted is returned by Subscribe on a Notifier not started.
var ErrNotStarted = errors.New("notifier not started")

// Subscribe returns a channel that receives a value when the job may have
// changed to a terminal state; call cancel when done waiting. It returns
// once Redis has confirmed the subscription, so a job that ends after it
// returns is never missed: look at the record after Subscribe, not before
// only. It fails when ctx ends first (Redis away, say).
func (n *Notifier) Subscribe(ctx context.Context, id string) (ch <-chan struct{}, cancel func(), err error) {
	name := n.s.ns.DoneChannel(id)
	c := make(chan struct{}, 1)
	n.mu.Lock()
	if n.ps == nil || n.stopped {
		n.mu.Unlock()
		return nil, nil, ErrNotStarted
	}
	w := n.done[name]
	if w == nil {
		w = &doneWait{waiters: map[chan struct{}]struct{}{}, live: make(chan struct{})}
		n.done[name] = w
		// An error means the connection is down; the PubSub subscribes
		// again when it reconnects, and the confirmation comes then.
		_ = n.ps.Subscribe(context.WithoutCancel(ctx), name)
	}
	w.waiters[c] = struct{}{}
	n.mu.Unlock()
	cancel = func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		delete(w.waiters, c)
		// An unconfirmed subscription is left to confirm, which drops it
		// if nobody waits by then: one SUBSCRIBE in flight per channel
		// keeps confirmations matched to what they confirm.
		if len(w.waiters) == 0 && w.confirmed && n.done[name] == w {
			n.drop(name)
		}
	}
	select {
	case <-w.live:
		// A channel already live and a context already ended are both
		// ready, and select picks at random: the ended context wins.
		if ctx.Err() == nil {
			return c, cancel, nil
		}
	case <-ctx.Done():
	}
	cancel()
	return nil, nil, fmt.Errorf("subscribe to the end of job %s: %w", id, ctx.Err())
}

// confirm marks a done channel's subscription live.
func (n *Notifier) confirm(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	w := n.done[name]
	if w == nil || w.confirmed {
		return // a resubscription after a reconnect
	}
	w.confirmed = true
	close(w.live)
	if len(w.waiters) == 0 {
		n.drop(name)
	}
}

// drop unsubscribes from a done channel nobody waits on. Called with mu
// held.
func (n *Notifier) drop(name string) {
	delete(n.done, name)
	if n.ps != nil {
		_ = n.ps.Unsubscribe(context.Background(), name)
	}
}

func (n *Notifier) wake(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if w := n.done[name]; w != nil {
		for c := range w.waiters {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
}

func (n *Notifier) wakeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, w := range n.done {
		for c := range w.waiters {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
}
