package backoff_test

import (
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/backoff"
)

func TestWaitsGrowWithinBoundsAndReset(t *testing.T) {
	b := backoff.New(100*time.Millisecond, time.Second)
	var longest time.Duration
	for i := range 200 {
		w := b.Next()
		if w < 100*time.Millisecond || w > time.Second {
			t.Fatalf("wait %d is %s, outside [100ms, 1s]", i, w)
		}
		longest = max(longest, w)
	}
	if longest < 500*time.Millisecond {
		t.Errorf("after 200 failures the longest wait was %s: the waits do not grow", longest)
	}
	b.Reset()
	if w := b.Next(); w >= 200*time.Millisecond {
		t.Errorf("after Reset the wait is %s, want under 200ms", w)
	}
	// Jitter: a fleet does not wait in step.
	seen := map[time.Duration]bool{}
	for range 20 {
		c := backoff.New(100*time.Millisecond, time.Second)
		c.Next()
		seen[c.Next()] = true
	}
	if len(seen) < 5 {
		t.Errorf("20 backoffs' second waits took %d values: want them spread", len(seen))
	}
}

func TestDegenerateBounds(t *testing.T) {
	b := backoff.New(0, 0)
	for range 10 {
		if w := b.Next(); w <= 0 || w > 2*time.Millisecond {
			t.Fatalf("New(0, 0) waits %s", w)
		}
	}
}
