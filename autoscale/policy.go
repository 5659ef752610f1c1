// Package autoscale decides how many worker processes each pool should run.
// The decision is a pure function of the pool's policy, its current size,
// what was observed, and the recent recommendations, applied the way
// Kubernetes' horizontal pod autoscaler applies them (with KEDA taking a pool
// to and from zero), so that the supervisor on one machine and KEDA on a
// cluster decide alike from the same numbers.
package autoscale

import (
	"cmp"
	"fmt"
	"math"
	"time"
)

// Tolerance is the band around the target within which the size is left
// alone, as in the HPA: a backlog within 10% of target×replicas changes
// nothing.
const Tolerance = 0.1

// Policy is one pool's scaling policy. Zero fields take the defaults noted.
type Policy struct {
	// Min and Max bound the replicas; Min may be 0 (scale to zero). Max
	// zero means Min.
	Min, Max int
	// TargetBacklog is the backlog (ready + unacknowledged messages) one
	// replica should carry; zero means 10.
	TargetBacklog int
	// ActivationBacklog is the backlog above which a pool at zero starts;
	// zero means any backlog at all.
	ActivationBacklog int
	// TargetAge, if set, is the longest a job should wait: a pool whose
	// oldest waiting job is older grows in proportion. Zero: no age signal.
	TargetAge time.Duration
	// Interval is how often the supervisor decides; zero means 5s.
	Interval time.Duration
	// ScaleUpWindow and ScaleDownWindow are the stabilization windows: a
	// scale-up follows the lowest recommendation within ScaleUpWindow, a
	// scale-down the highest within ScaleDownWindow. Zero means 0s (up) and
	// 60s (down); a negative ScaleDownWindow means none.
	ScaleUpWindow, ScaleDownWindow time.Duration
	// MaxStep bounds the change of one decision; zero means no bound.
	MaxStep int
}

// WithDefaults returns p with zero fields filled in. It is idempotent: a
// negative ScaleDownWindow stays negative (none).
func (p Policy) WithDefaults() Policy {
	p.Max = max(p.Max, p.Min)
	p.TargetBacklog = cmp.Or(p.TargetBacklog, 10)
	p.Interval = cmp.Or(p.Interval, 5*time.Second)
	if p.ScaleDownWindow == 0 {
		p.ScaleDownWindow = 60 * time.Second
	}
	return p
}

// Validate reports what is wrong with a policy, if anything.
func (p Policy) Validate() error {
	switch {
	case p.Min < 0 || p.Max < 0 || (p.Max != 0 && p.Max < p.Min):
		return fmt.Errorf("replicas: want 0 <= min <= max, got min %d max %d", p.Min, p.Max)
	case p.TargetBacklog < 0 || p.ActivationBacklog < 0 || p.MaxStep < 0:
		return fmt.Errorf("target backlog, activation backlog and max step must not be negative")
	case p.TargetAge < 0 || p.Interval < 0 || p.ScaleUpWindow < 0:
		return fmt.Errorf("target age, interval and scale-up window must not be negative")
	}
	return nil
}

// Observation is what was measured of a pool.
type Observation struct {
	// Backlog is ready plus unacknowledged messages in the pool's queue.
	Backlog int
	// OldestAge is how long the oldest waiting job has waited (zero if
	// unknown or none).
	OldestAge time.Duration
	// Undeclared says the pool's queue does not exist yet: no worker of it
	// has ever run, so its job types are unknown and its jobs refused. A
	// pool at zero then starts one worker to declare them.
	Undeclared bool
	// Paused says the pool is paused: its workers take no new jobs, so its
	// backlog is no reason to grow, and the pool keeps its size until it
	// is resumed (its running jobs finish meanwhile).
	Paused bool
}

// Decision is a scaling decision with what led to it, for logs and
// displays.
type Decision struct {
	Current, Desired int
	// Recommended is the size the observation alone asks for, before the
	// stabilization windows and the step bound.
	Recommended int
	Reason      string
}

type recommendation struct {
	at       time.Time
	replicas int
}

// Scaler decides for one pool, remembering its recent recommendations for
// the stabilization windows. It is not safe for concurrent use; the
// supervisor owns one per pool.
type Scaler struct {
	p       Policy
	history []recommendation
}

// NewScaler returns a Scaler for a validated policy.
func NewScaler(p Policy) (*Scaler, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &Scaler{p: p.WithDefaults()}, nil
}

// Decide returns how many replicas the pool should run, given how many run
// now and what was observed at now.
func (s *Scaler) Decide(now time.Time, current int, obs Observation) Decision {
	rec, reason := s.recommend(current, obs)
	rec = min(max(rec, s.p.Min), s.p.Max)

	// Stabilization, as the HPA does it: never above the lowest
	// recommendation of the scale-up window, never below the highest of the
	// scale-down window.
	up, down := rec, rec
	for _, h := range s.history {
		if now.Sub(h.at) < s.p.ScaleUpWindow {
			up = min(up, h.replicas)
		}
		if now.Sub(h.at) < s.p.ScaleDownWindow {
			down = max(down, h.replicas)
		}
	}
	desired := current
	if desired < up {
		desired = up
	}
	if desired > down {
		desired = down
	}
	switch {
	case desired != rec && desired > current:
		reason += fmt.Sprintf("; scale-up window holds it at %d", desired)
	case desired != rec && desired < current:
		reason += fmt.Sprintf("; scale-down window holds it at %d", desired)
	case desired != rec:
		reason += "; stabilization window keeps the current size"
	}
	if s.p.MaxStep > 0 && abs(desired-current) > s.p.MaxStep {
		if desired > current {
			desired = current + s.p.MaxStep
		} else {
			desired = current - s.p.MaxStep
		}
		reason += fmt.Sprintf("; limited to a step of %d", s.p.MaxStep)
	}

	s.remember(now, rec)
	return Decision{Current: current, Desired: desired, Recommended: rec, Reason: reason}
}

// recommend is what the observation alone asks for.
func (s *Scaler) recommend(current int, obs Observation) (int, string) {
	target := s.p.TargetBacklog
	byBacklog := int(math.Ceil(float64(obs.Backlog) / float64(target)))
	reason := fmt.Sprintf("backlog %d at %d per replica", obs.Backlog, target)
	if current == 0 && obs.Undeclared && s.p.Max > 0 {
		return 1, "the pool's queue is not declared yet; one worker declares it and its job types"
	}
	if obs.Paused {
		return current, fmt.Sprintf("the pool is paused; its backlog of %d waits, and its size stays", obs.Backlog)
	}
	if current == 0 {
		// From zero, as KEDA does: nothing starts until the backlog passes
		// the activation threshold (or a job has waited too long).
		aged := s.p.TargetAge > 0 && obs.OldestAge > s.p.TargetAge
		if obs.Backlog <= s.p.ActivationBacklog && !aged {
			return 0, fmt.Sprintf("backlog %d is not above the activation backlog %d", obs.Backlog, s.p.ActivationBacklog)
		}
		return max(byBacklog, 1), reason + " (activating)"
	}
	rec := byBacklog
	if ratio := float64(obs.Backlog) / float64(target*current); math.Abs(1-ratio) <= Tolerance {
		rec, reason = current, reason+fmt.Sprintf(" is within %.0f%% of the target", Tolerance*100)
	}
	if s.p.TargetAge > 0 && obs.OldestAge > 0 {
		ratio := float64(obs.OldestAge) / float64(s.p.TargetAge)
		if math.Abs(1-ratio) > Tolerance {
			if byAge := int(math.Ceil(float64(current) * ratio)); byAge > rec {
				rec = byAge
				reason = fmt.Sprintf("oldest job waited %s against a target of %s", obs.OldestAge, s.p.TargetAge)
			}
		}
	}
	return rec, reason
}

func (s *Scaler) remember(now time.Time, replicas int) {
	keep := max(s.p.ScaleUpWindow, s.p.ScaleDownWindow)
	h := s.history[:0]
	for _, r := range s.history {
		if now.Sub(r.at) < keep {
			h = append(h, r)
		}
	}
	s.history = append(h, recommendation{at: now, replicas: replicas})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
