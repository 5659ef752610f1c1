package workers

import (
	"context"
	"sync"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// The rate limits of job types (docs/ratelimits.md). The limits live in
// Redis (store.Store.Limits), where the API writes them; each worker keeps
// a copy of those of its own types, read again every LimitsEvery and at
// once when the events channel announces a change ("limits <type>"). Before
// an attempt of a limited type starts, the token script takes a token from
// the type's bucket and its tenant's; a job over the limit is parked (its
// message goes round the delay levels, unchanged, and the delivery is
// acknowledged), so it neither fails, nor counts an attempt, nor holds a
// worker slot while it waits. A type without a limit costs nothing: no
// round trip.

// DefaultLimitsEvery is how often a worker reads the rate limits again when
// Config.LimitsEvery is zero. A change is announced on the events channel
// and applies at once; the reading catches what the channel missed.
const DefaultLimitsEvery = 5 * time.Second

// limits is what this process knows of its types' rate limits.
type limits struct {
	mu     sync.Mutex
	byType map[string]store.LimitRecord
	known  bool
	ready  chan struct{} // closed once read
	// refresh asks the loop to read them now (an event, a reconnect);
	// buffered, one value.
	refresh chan struct{}
}

func newLimits() *limits {
	return &limits{byType: map[string]store.LimitRecord{}, ready: make(chan struct{}), refresh: make(chan struct{}, 1)}
}

// of returns the limit of a type, if it has one.
func (l *limits) of(typ string) (store.LimitRecord, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.byType[typ]
	return lim, ok
}

// set replaces what is known with the limits read, keeping those of mine.
func (l *limits) set(all []store.LimitRecord, mine func(string) bool) {
	m := map[string]store.LimitRecord{}
	for _, rec := range all {
		if mine(rec.Type) {
			m[rec.Type] = rec
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byType = m
	if !l.known {
		l.known = true
		close(l.ready)
	}
}

// heard asks for a reading on an announcement; it does not block, as
// store.Handlers must not.
func (l *limits) heard(string) {
	select {
	case l.refresh <- struct{}{}:
	default:
	}
}

// keepLimits reads the limits until ctx ends: at once, then every
// LimitsEvery and whenever one is announced.
func (w *Worker) keepLimits(ctx context.Context) {
	t := time.NewTicker(w.cfg.LimitsEvery)
	defer t.Stop()
	mine := func(typ string) bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		_, ok := w.types[typ]
		return ok
	}
	warned := false
	for {
		rctx, cancel := context.WithTimeout(ctx, storeTimeout)
		all, err := w.store.Limits(rctx)
		cancel()
		switch {
		case err == nil:
			w.limits.set(all, mine)
			warned = false
		case ctx.Err() == nil && !warned:
			// The copy read last stands meanwhile.
			w.log.Warn("cannot read the rate limits; keeping those read last", "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.limits.refresh:
		}
	}
}

// admit takes a rate-limit token for the delivery's job when its type has a
// limit. It reports false when the job was held back (the delivery is then
// parked) or the worker is shutting down (the delivery went back to the
// queue): either way the caller stops.
func (w *Worker) admit(ctx context.Context, a attempt) bool {
	lim, ok := w.limits.of(a.job.Type)
	if !ok {
		return true
	}
	var got store.Admission
	if !a.hold(ctx, "take a rate-limit token", func(ctx context.Context) (err error) {
		got, err = w.store.TakeToken(ctx, lim, a.job, a.d.Attempts(), w.cfg.Rand())
		return err
	}) {
		return false
	}
	if !got.Limited {
		return true
	}
	a.log.Debug("over the type's rate limit; parking the job", "for", got.Wait, "until", got.Until, "checked_back", got.CheckedBack)
	if !got.CheckedBack {
		w.obs.limited(a.job.Type)
	}
	a.park(ctx, got.Wait)
	return false
}

// Limits returns the rate limits this worker applies now, by type: those
// of its own types; nil before Start.
func (w *Worker) Limits() map[string]jobs.Limit {
	w.mu.Lock()
	l := w.limits
	w.mu.Unlock()
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]jobs.Limit, len(l.byType))
	for k, v := range l.byType {
		out[k] = v.Limit
	}
	return out
}
