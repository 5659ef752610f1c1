package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

func TestNotifier(t *testing.T) {
	t.Parallel()
	f := setup(t)
	seen := make(chan string, 16)
	n := f.st.NewNotifier(store.Handlers{Type: func(name string) { seen <- name }})
	startNotifier(t, n, seen)

	a, b, c := newJob(1), newJob(2), newJob(3)
	f.create(t, a, b, c)
	waitA, cancelA := n.Subscribe(a.ID)
	defer cancelA()
	waitA2, cancelA2 := n.Subscribe(a.ID)
	defer cancelA2()
	waitB, cancelB := n.Subscribe(b.ID)
	defer cancelB()
	waitC, cancelC := n.Subscribe(c.ID)
	cancelC() // no longer waiting

	// Finishing b wakes b's waiter only. Waiters are woken together as one
	// event is dispatched, so when b's has its value, a's would have too.
	f.start(t, b.ID)
	f.finish(t, b.ID, store.Outcome{Status: jobs.StatusSucceeded})
	recvSignal(t, waitB, "b's waiter")
	for name, ch := range map[string]<-chan struct{}{"a": waitA, "a (second)": waitA2} {
		select {
		case <-ch:
			t.Errorf("%s's waiter woke when b finished", name)
		default:
		}
	}

	// A retrying outcome is not a finish: no event.
	f.start(t, a.ID)
	f.finish(t, a.ID, store.Outcome{Status: jobs.StatusRetrying})
	// Finishing c, whose waiter was canceled, and then a: both of a's
	// waiters wake, c's does not.
	f.start(t, c.ID)
	f.finish(t, c.ID, store.Outcome{Status: jobs.StatusCanceled})
	f.start(t, a.ID)
	f.finish(t, a.ID, store.Outcome{Status: jobs.StatusFailed})
	recvSignal(t, waitA, "a's waiter")
	recvSignal(t, waitA2, "a's second waiter")
	select {
	case <-waitC:
		t.Error("a canceled waiter woke")
	default:
	}
	// A retrying outcome woke nobody: a's waiters each had one value.
	for name, ch := range map[string]<-chan struct{}{"a": waitA, "a (second)": waitA2, "b": waitB} {
		select {
		case <-ch:
			t.Errorf("%s's waiter woke twice", name)
		default:
		}
	}
}

func TestNotifierStop(t *testing.T) {
	t.Parallel()
	f := setup(t)

	// Stop before Start does nothing.
	idle := f.st.NewNotifier(store.Handlers{})
	if err := idle.Stop(context.Background()); err != nil {
		t.Errorf("Stop before Start = %v", err)
	}

	seen := make(chan string, 4)
	n := f.st.NewNotifier(store.Handlers{Type: func(name string) { seen <- name }})
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil { // a second Start does nothing
		t.Fatal(err)
	}
	recvName(t, seen)
	for i := range 2 {
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		start := time.Now()
		if err := n.Stop(c); err != nil {
			t.Errorf("Stop %d = %v", i+1, err)
		}
		cancel()
		if d := time.Since(start); d > time.Second {
			t.Errorf("Stop %d took %s, want it prompt", i+1, d)
		}
	}
}

// startNotifier starts n and waits until its subscription is live (onType
// is called with "" on each subscription), so no event can be missed.
func startNotifier(t *testing.T, n *store.Notifier, seen <-chan string) {
	t.Helper()
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Stop(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if name := recvName(t, seen); name != "" {
		t.Fatalf("first notifier callback = %q, want the subscription's \"\"", name)
	}
}

func recvName(t *testing.T, seen <-chan string) string {
	t.Helper()
	select {
	case name := <-seen:
		return name
	case <-time.After(wait):
		t.Fatal("no type announcement")
		return ""
	}
}

func recvSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
	}
}
