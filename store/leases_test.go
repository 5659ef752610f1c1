package store_test

import (
	"testing"
	"time"
)

// A pool's supervisor lease goes to one holder at a time, says who holds
// it, is kept by its holder, is released only by its holder, lapses after
// its TTL, and is the pool's alone.
func TestPoolLease(t *testing.T) {
	t.Parallel()
	f := setup(t)
	hold := func(pool, holder string, ttl time.Duration, want string) {
		t.Helper()
		if got, err := f.st.HoldPool(ctx(t), pool, holder, ttl); err != nil || got != want {
			t.Errorf("HoldPool(%s, %s) = %q, %v; want %q", pool, holder, got, err, want)
		}
	}
	hold("p", "a", time.Minute, "a")
	hold("p", "b", time.Minute, "a")
	hold("q", "b", time.Minute, "b") // another pool, another lease
	hold("p", "a", time.Minute, "a")
	if err := f.st.ReleasePool(ctx(t), "p", "b"); err != nil {
		t.Fatal(err)
	}
	hold("p", "b", time.Minute, "a") // b could not release a's lease
	if err := f.st.ReleasePool(ctx(t), "p", "a"); err != nil {
		t.Fatal(err)
	}
	hold("p", "b", 50*time.Millisecond, "b")
	// Unrenewed, b's lease lapses and a takes it. (A sleep: the lapse is
	// Redis's own clock.)
	time.Sleep(100 * time.Millisecond)
	hold("p", "a", time.Minute, "a")
}
