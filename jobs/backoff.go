package jobs

import (
	"cmp"
	"fmt"
	"math"
	"time"
)

// Backoff is the retry policy of a failed attempt: the wait before attempt
// n+1 grows as Base·Factorⁿ⁻¹ up to Max, and is jittered so that jobs that
// failed together do not retry together. A type declares one; a job may
// override any field.
type Backoff struct {
	// Base is the wait after the first failed attempt; zero means 1s.
	Base Duration `json:"base,omitempty"`
	// Factor multiplies the wait after each further failure; zero means 2.
	Factor float64 `json:"factor,omitempty"`
	// Max caps the wait; zero means 10 minutes.
	Max Duration `json:"max,omitempty"`
}

// Default retry policy.
const (
	DefaultBackoffBase   = time.Second
	DefaultBackoffFactor = 2.0
	DefaultBackoffMax    = 10 * time.Minute
)

// Over returns b with its zero fields taken from base.
func (b Backoff) Over(base Backoff) Backoff {
	return Backoff{
		Base:   cmp.Or(b.Base, base.Base),
		Factor: cmp.Or(b.Factor, base.Factor),
		Max:    cmp.Or(b.Max, base.Max),
	}
}

// WithDefaults returns b with its zero fields set to the defaults.
func (b Backoff) WithDefaults() Backoff {
	return b.Over(Backoff{Base: Duration(DefaultBackoffBase), Factor: DefaultBackoffFactor, Max: Duration(DefaultBackoffMax)})
}

// Validate reports what is wrong with a policy, if anything.
func (b Backoff) Validate() error {
	switch {
	case b.Base < 0 || b.Base.Std() > MaxDelay:
		return fmt.Errorf("backoff base %s out of range", b.Base.Std())
	case b.Max < 0 || b.Max.Std() > MaxDelay:
		return fmt.Errorf("backoff max %s out of range", b.Max.Std())
	case b.Factor != 0 && (b.Factor < 1 || b.Factor > 100 || math.IsNaN(b.Factor)):
		return fmt.Errorf("backoff factor %v: want 1 to 100", b.Factor)
	}
	return nil
}

// Delay is the wait before the attempt after failed attempt n (1-based),
// with "equal jitter": half the exponential wait plus a random share of the
// other half, so waits stay near the curve but spread out. rnd returns a
// number in [0, 1).
func (b Backoff) Delay(n int, rnd func() float64) time.Duration {
	b = b.WithDefaults()
	d := float64(b.Base) * math.Pow(b.Factor, float64(max(n, 1)-1))
	d = min(d, float64(b.Max))
	return time.Duration(d/2 + d/2*rnd())
}
