package combine

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Concurrent callers share batches; every item is sent exactly once, no
// more batches than allowed are ever in flight, and a caller returns only
// after its own item was sent.
func TestCombiner(t *testing.T) {
	t.Parallel()
	for _, flights := range []int{0, 1, 2, 4} {
		var (
			mu               sync.Mutex
			sent             = map[int]int{}
			batches          int
			inFlight, maxFly atomic.Int64
		)
		c := &Combiner[int]{Flights: flights, Send: func(items []int) {
			n := inFlight.Add(1)
			for {
				m := maxFly.Load()
				if n <= m || maxFly.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(50 * time.Microsecond) // a write on its way: others queue
			mu.Lock()
			batches++
			for _, it := range items {
				sent[it]++
			}
			mu.Unlock()
			inFlight.Add(-1)
		}}
		const callers, each = 32, 200
		var wg sync.WaitGroup
		for g := range callers {
			wg.Go(func() {
				for i := range each {
					item := g*each + i
					c.Do(item)
					mu.Lock()
					n := sent[item]
					mu.Unlock()
					if n != 1 {
						t.Errorf("flights %d: Do(%d) returned with the item sent %d times", flights, item, n)
					}
				}
			})
		}
		wg.Wait()
		if len(sent) != callers*each {
			t.Errorf("flights %d: %d items sent, want %d", flights, len(sent), callers*each)
		}
		for item, n := range sent {
			if n != 1 {
				t.Errorf("flights %d: item %d sent %d times", flights, item, n)
			}
		}
		if limit := int64(max(flights, 1)); maxFly.Load() > limit {
			t.Errorf("flights %d: %d batches in flight at once", flights, maxFly.Load())
		}
		if batches > callers*each/2 {
			t.Errorf("flights %d: %d batches for %d items: nothing was combined", flights, batches, callers*each)
		}
		if c.flights != 0 || len(c.queued) != 0 {
			t.Errorf("flights %d: left %d in flight, %d queued", flights, c.flights, len(c.queued))
		}
		t.Logf("flights %d: %d items in %d batches", flights, callers*each, batches)
	}
}
