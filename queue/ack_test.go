package queue

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// fakeChannel settles tags as RabbitMQ does and fails the test where the
// broker would close the channel: a single ack or nack of a tag that is
// not outstanding, or a multiple ack whose own tag is not. It also records
// tags settled against the handler's wishes (acknowledged when the handler
// rejected them, or before the handler was done).
type fakeChannel struct {
	t           *testing.T
	mu          sync.Mutex
	outstanding map[uint64]bool
	wanted      map[uint64]string // "ack" once a handler acknowledged the tag
	acked       map[uint64]bool
	frames      int
	multis      int
}

var _ acknowledger = (*fakeChannel)(nil)

func newFakeChannel(t *testing.T) *fakeChannel {
	return &fakeChannel{t: t, outstanding: map[uint64]bool{}, wanted: map[uint64]string{}, acked: map[uint64]bool{}}
}

func (f *fakeChannel) deliver(tag uint64) {
	f.mu.Lock()
	f.outstanding[tag] = true
	f.mu.Unlock()
}

func (f *fakeChannel) want(tag uint64, what string) {
	f.mu.Lock()
	f.wanted[tag] = what
	f.mu.Unlock()
}

func (f *fakeChannel) Ack(tag uint64, multiple bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frames++
	if multiple {
		f.multis++
	}
	if !f.outstanding[tag] {
		f.t.Errorf("ack of tag %d (multiple %v), which is not outstanding: the broker closes the channel", tag, multiple)
		return nil
	}
	settle := []uint64{tag}
	if multiple {
		settle = settle[:0]
		for t := range f.outstanding {
			if t <= tag {
				settle = append(settle, t)
			}
		}
	}
	for _, t := range settle {
		if f.wanted[t] != "ack" {
			f.t.Errorf("tag %d acknowledged, but its handler wanted %q", t, f.wanted[t])
		}
		delete(f.outstanding, t)
		f.acked[t] = true
	}
	return nil
}

func (f *fakeChannel) Nack(tag uint64, multiple, requeue bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frames++
	if multiple || !f.outstanding[tag] {
		f.t.Errorf("nack of tag %d (multiple %v): not outstanding", tag, multiple)
		return nil
	}
	delete(f.outstanding, tag)
	return nil
}

// TestAckerSettlesEachTagAsItsHandlerSaid runs handlers that finish in
// random order, some after a long time, some rejecting their message,
// with a fake broker that delivers while fewer than prefetch deliveries
// are unacknowledged. Every tag must be settled once, as its handler said;
// without long jobs, with far fewer frames than tags.
func TestAckerSettlesEachTagAsItsHandlerSaid(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		prefetch, concurrency int
		long                  bool // some jobs take 20 ms, so gaps stay open
	}{
		{1, 1, true}, {8, 8, true}, {32, 8, true}, {128, 32, true},
		{8, 8, false}, {32, 8, false}, {128, 32, false},
	} {
		t.Run(fmt.Sprintf("prefetch %d concurrency %d long %v", c.prefetch, c.concurrency, c.long), func(t *testing.T) {
			t.Parallel()
			f := newFakeChannel(t)
			a := newAcker(f, c.prefetch, c.concurrency)
			stop, done := make(chan struct{}), make(chan struct{})
			go func() { defer close(done); a.run(stop) }()

			const n = 3000
			deliveries := make(chan uint64, c.prefetch)
			var handlers sync.WaitGroup
			for range c.concurrency {
				handlers.Go(func() {
					for tag := range deliveries {
						r := rand.IntN(100)
						switch {
						case r < 2 && c.long:
							time.Sleep(20 * time.Millisecond) // a long job among short ones
						case r < 50:
							time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
						}
						var err error
						switch r {
						case 3:
							f.want(tag, "requeue")
							err = a.nack(tag, true)
						case 4:
							f.want(tag, "drop")
							err = a.nack(tag, false)
						default:
							f.want(tag, "ack")
							err = a.ack(tag)
						}
						if err != nil {
							t.Errorf("settle %d: %v", tag, err)
						}
					}
				})
			}
			for tag := uint64(1); tag <= n; tag++ {
				for {
					f.mu.Lock()
					out := len(f.outstanding)
					f.mu.Unlock()
					if out < c.prefetch {
						break
					}
					time.Sleep(20 * time.Microsecond)
				}
				f.deliver(tag)
				a.delivered()
				deliveries <- tag
			}
			close(deliveries)
			handlers.Wait()
			close(stop)
			<-done

			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.outstanding) != 0 {
				t.Errorf("%d tags never settled", len(f.outstanding))
			}
			for tag, w := range f.wanted {
				if w == "ack" && !f.acked[tag] {
					t.Errorf("tag %d: acknowledged by its handler, never by the acker", tag)
				}
			}
			t.Logf("prefetch %d concurrency %d long %v: %d tags settled with %d frames, %d of them multiple acks", c.prefetch, c.concurrency, c.long, n, f.frames, f.multis)
			if c.prefetch > c.concurrency && !c.long && f.frames > n/4 {
				t.Errorf("%d frames for %d tags: acks are not batched", f.frames, n)
			}
		})
	}
}

// TestAckerLongJobHoldsNoNeighbours checks that a delivery still in a
// handler's hands does not keep later, finished ones unacknowledged: they
// are acknowledged one by one within two lingers.
func TestAckerLongJobHoldsNoNeighbours(t *testing.T) {
	t.Parallel()
	f := newFakeChannel(t)
	a := newAcker(f, 4, 4)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { defer close(done); a.run(stop) }()
	for tag := uint64(1); tag <= 4; tag++ {
		f.deliver(tag)
		a.delivered()
	}
	for tag := uint64(2); tag <= 4; tag++ { // 1 is the long job
		f.want(tag, "ack")
		if err := a.ack(tag); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		f.mu.Lock()
		out := len(f.outstanding)
		f.mu.Unlock()
		if out == 1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d tags outstanding; want only the long job's", out)
		case <-time.After(time.Millisecond):
		}
	}
	f.want(1, "ack")
	if err := a.ack(1); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-done
	if len(f.outstanding) != 0 {
		t.Errorf("tags outstanding after stop: %v", f.outstanding)
	}
	if err := a.ack(5); err == nil {
		t.Error("ack after stop: no error")
	}
}

// TestAckerSettledSpans checks the bookkeeping of tags settled one by one
// above the run: spans merge, and the run absorbs them once it reaches
// them.
func TestAckerSettledSpans(t *testing.T) {
	t.Parallel()
	a := newAcker(newFakeChannel(t), 8, 8)
	for _, tag := range []uint64{5, 3, 7, 4, 9} {
		a.settle(tag)
	}
	if want := []span{{3, 5}, {7, 7}, {9, 9}}; fmt.Sprint(a.settled) != fmt.Sprint(want) {
		t.Fatalf("settled %v, want %v", a.settled, want)
	}
	a.settle(8)
	a.settle(2)
	if a.low != 0 || fmt.Sprint(a.settled) != fmt.Sprint([]span{{2, 5}, {7, 9}}) || countedOf(a) != 7 {
		t.Fatalf("low %d settled %v counted %d", a.low, a.settled, countedOf(a))
	}
	a.settle(1)
	if a.low != 5 || fmt.Sprint(a.settled) != fmt.Sprint([]span{{7, 9}}) || countedOf(a) != 3 {
		t.Fatalf("after 1: low %d settled %v counted %d", a.low, a.settled, countedOf(a))
	}
	a.pending = []pendingAck{{tag: 6}}
	multi, singles := a.plan(false)
	if multi != 6 || len(singles) != 0 || a.low != 9 || len(a.settled) != 0 || countedOf(a) != 0 {
		t.Fatalf("plan: multi %d singles %v low %d settled %v counted %d", multi, singles, a.low, a.settled, countedOf(a))
	}
}

// countedOf is how many tags the spans above low hold.
func countedOf(a *acker) uint64 {
	var n uint64
	for _, s := range a.settled {
		n += s.to - s.from + 1
	}
	return n
}
