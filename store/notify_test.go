package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
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
	waitA, cancelA := subscribe(t, n, a.ID)
	defer cancelA()
	waitA2, cancelA2 := subscribe(t, n, a.ID)
	defer cancelA2()
	waitB, cancelB := subscribe(t, n, b.ID)
	defer cancelB()
	waitC, cancelC := subscribe(t, n, c.ID)
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

// A job's done channel is subscribed while someone waits for it, and not
// after: the last waiter to leave unsubscribes, also when it leaves before
// Redis confirmed the subscription.
func TestNotifierSubscriptionsEnd(t *testing.T) {
	t.Parallel()
	f := setup(t)
	seen := make(chan string, 16)
	n := f.st.NewNotifier(store.Handlers{Type: func(name string) { seen <- name }})
	if _, _, err := n.Subscribe(context.Background(), "x"); !errors.Is(err, store.ErrNotStarted) {
		t.Errorf("Subscribe before Start = %v, want ErrNotStarted", err)
	}
	startNotifier(t, n, seen)
	j := newJob(1)
	f.create(t, j)
	subscribers := func() int64 {
		m, err := f.rdb.PubSubNumSub(ctx(t), f.ns.DoneChannel(j.ID)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return m[f.ns.DoneChannel(j.ID)]
	}
	_, cancel1 := subscribe(t, n, j.ID)
	_, cancel2 := subscribe(t, n, j.ID)
	if got := subscribers(); got != 1 {
		t.Errorf("%d subscribers to the done channel with two waiters, want 1 (one connection)", got)
	}
	cancel1()
	if got := subscribers(); got != 1 {
		t.Errorf("%d subscribers with one waiter left, want 1", got)
	}
	cancel2()
	testenv.Eventually(t, wait, "the done channel to be unsubscribed", func() bool { return subscribers() == 0 })

	// A waiter that gives up before the confirmation.
	gone, stop := context.WithCancel(context.Background())
	stop()
	if _, _, err := n.Subscribe(gone, j.ID); err == nil {
		t.Error("Subscribe with an ended context succeeded")
	}
	testenv.Eventually(t, wait, "the abandoned subscription to be dropped", func() bool { return subscribers() == 0 })
	// And the channel can be waited on again.
	w, cancel3 := subscribe(t, n, j.ID)
	defer cancel3()
	f.start(t, j.ID)
	f.finish(t, j.ID, store.Outcome{Status: jobs.StatusSucceeded})
	recvSignal(t, w, "the waiter after resubscribing")
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

func subscribe(t *testing.T, n *store.Notifier, id string) (<-chan struct{}, func()) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ch, unsubscribe, err := n.Subscribe(c, id)
	if err != nil {
		t.Fatal(err)
	}
	return ch, unsubscribe
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
