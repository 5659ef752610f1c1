package autoscale

import (
	"context"
	"time"
)

// Leases keeps one lease per pool where every supervisor of a namespace sees
// it (store.Store, in Redis), so that of several supervisors configured for
// the same pool, on one machine or several, only the one that holds the
// pool's lease runs its worker processes; the others stand by and take the
// lease over when it lapses or is given up.
type Leases interface {
	// HoldPool takes pool's lease for holder if nobody holds it, or extends
	// it if holder does, for ttl, and returns who holds it now.
	HoldPool(ctx context.Context, pool, holder string, ttl time.Duration) (string, error)
	// ReleasePool gives pool's lease up if holder holds it.
	ReleasePool(ctx context.Context, pool, holder string) error
}

// What PoolStatus.Lease says.
const (
	// LeaseHeld: the supervisor holds the pool's lease and runs its
	// processes.
	LeaseHeld = "held"
	// LeaseWaiting: it stands by, running none, until it can take the lease
	// (another supervisor holds it, or the lease store cannot be reached).
	LeaseWaiting = "waiting"
)

// The lease's timing, as fractions of its TTL. The holder renews it every
// third of the TTL, and sooner after a failure; a holder that has not
// renewed it for three quarters of the TTL since it sent the last renewal
// that succeeded takes it as lost and stops its processes. It times the
// TTL from the send, before Redis can have started it, so the last quarter
// (2.5s of the default 10s) is what the stop has before another supervisor
// can take the lease over, with clocks that run at the same rate. The
// standby tries every third of the TTL, so it takes over between two
// thirds and four thirds of the TTL after the holder died.
const (
	renewEvery = 3  // the TTL is renewed every TTL/renewEvery
	retryEvery = 10 // after a failure, every TTL/retryEvery
	keepMargin = 4  // the holder gives up TTL/keepMargin before the TTL ends
)

// leaseAnswer is one outcome of an attempt to take or renew a pool's lease.
type leaseAnswer struct {
	holder string    // who holds the lease; "" when err is set
	until  time.Time // until when a holder may take it as held
	err    error
}

// keepLease takes or renews the pool's lease for as long as ctx lasts and
// hands every answer to the pool's runner on out. It runs beside the
// runner's loop, so that the runner, which times the lease itself, stops
// the pool's processes in time even while a call to Redis hangs.
func (r *poolRunner) keepLease(ctx context.Context, out chan<- leaseAnswer) {
	ttl := r.s.cfg.LeaseTTL
	wait := time.NewTimer(0)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wait.C:
		}
		sent := time.Now()
		cctx, cancel := context.WithTimeout(ctx, ttl/renewEvery)
		holder, err := r.s.cfg.Leases.HoldPool(cctx, r.spec.Name, r.s.cfg.Holder, ttl)
		cancel()
		select {
		case out <- leaseAnswer{holder: holder, until: sent.Add(ttl - ttl/keepMargin), err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			wait.Reset(ttl / retryEvery)
		} else {
			wait.Reset(ttl / renewEvery)
		}
	}
}

// leased acts on an answer of the lease keeper: the runner takes the pool
// over, keeps it, or gives it up.
func (r *poolRunner) leased(ctx context.Context, a leaseAnswer, lapse *time.Timer) {
	me := r.s.cfg.Holder
	switch {
	case a.err != nil:
		// A holder warns at every failure, each a step closer to the
		// stop; a standby, which retries often, once per outage.
		if r.holding {
			r.log.Warn("cannot renew the pool's lease; its processes stop unless it is renewed in time",
				"left", time.Until(r.until).Round(time.Millisecond), "err", a.err)
		} else if !r.leaseFailing {
			r.log.Warn("cannot take the pool's lease", "err", a.err)
		}
		r.leaseFailing = true
		r.s.update(r.spec.Name, func(st *PoolStatus) { st.LastError = "lease: " + a.err.Error() })
		return
	}
	if r.leaseFailing {
		r.log.Info("the pool's lease can be reached again", "holder", a.holder)
		r.leaseFailing = false
	}
	switch {
	case a.holder == me && time.Now().Before(a.until):
		r.until = a.until
		lapse.Reset(time.Until(a.until))
		if !r.holding {
			r.gain(ctx)
		}
	case a.holder == me:
		// The renewal took so long that what it bought is spent already;
		// the lapse timer ends the term, and the next renewal starts one.
	default:
		if r.holding {
			r.lose("another supervisor took the pool's lease", "holder", a.holder)
		}
		if a.holder != r.waitingFor {
			r.log.Info("waiting for the pool's lease; another supervisor runs its processes", "holder", a.holder)
		}
		r.waitingFor = a.holder
		r.s.update(r.spec.Name, func(st *PoolStatus) { st.LeaseHolder, st.LastError = a.holder, "" })
	}
}

// lapsed ends the runner's term when the lease ran out unrenewed.
func (r *poolRunner) lapsed() {
	if r.holding && !time.Now().Before(r.until) {
		r.lose("the pool's lease could not be renewed in time; it must be taken as lost", "until", r.until)
	}
}

// gain starts a term: the runner holds the pool's lease and runs the pool
// from its minimum, deciding at once. A term starts afresh, its scaler
// remembering nothing of an earlier one.
func (r *poolRunner) gain(ctx context.Context) {
	r.holding, r.waitingFor = true, ""
	r.scaler, _ = NewScaler(r.spec.Policy) // validated by NewSupervisor
	r.size = r.spec.Policy.Min
	if r.s.cfg.Leases != nil {
		r.log.Info("took the pool's lease; running its processes", "holder", r.s.cfg.Holder, "until", r.until)
	}
	r.s.update(r.spec.Name, func(st *PoolStatus) {
		st.Lease, st.LeaseHolder = r.leaseState(), r.s.cfg.Holder
	})
	r.measure(ctx)
}

// lose ends a term: every process of the pool is told to stop (they take no
// new jobs and drain theirs) and none starts until the lease is held again.
func (r *poolRunner) lose(why string, args ...any) {
	r.holding, r.until, r.size = false, time.Time{}, 0
	r.log.Warn(why+"; stopping the pool's processes", args...)
	r.signalAll()
	r.s.update(r.spec.Name, func(st *PoolStatus) { st.Lease, st.LeaseHolder = LeaseWaiting, "" })
	r.publish()
}

// holds says whether the runner may run the pool's processes now: it holds
// the pool's lease, or the supervisor keeps no leases.
func (r *poolRunner) holds() bool {
	return r.holding && (r.s.cfg.Leases == nil || time.Now().Before(r.until))
}

// leaseState is PoolStatus.Lease for the runner's state.
func (r *poolRunner) leaseState() string {
	switch {
	case r.s.cfg.Leases == nil:
		return ""
	case r.holding:
		return LeaseHeld
	}
	return LeaseWaiting
}

// release gives the pool's lease up as the supervisor stops, once the
// keeper has ended (a renewal after it would take the lease back) and the
// pool's processes have been told to stop, so that a standby takes over
// while they drain rather than a TTL later.
func (r *poolRunner) release(ctx context.Context) {
	if r.s.cfg.Leases == nil {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := r.s.cfg.Leases.ReleasePool(rctx, r.spec.Name, r.s.cfg.Holder); err != nil {
		r.log.Warn("cannot give the pool's lease up; another supervisor takes it over once it lapses", "err", err)
	}
}
