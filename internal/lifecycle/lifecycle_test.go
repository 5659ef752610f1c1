package lifecycle_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/lifecycle"
)

type key struct{}

func TestStartOnceStopWaits(t *testing.T) {
	var l lifecycle.Loop
	if err := l.Stop(context.Background()); err != nil {
		t.Fatalf("Stop without Start: %v", err)
	}
	var runs, ended atomic.Int32
	parent, cancelParent := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	run := func(ctx context.Context) {
		runs.Add(1)
		if ctx.Value(key{}) != "v" {
			t.Error("the work lost the caller's values")
		}
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond) // winding down
		ended.Add(1)
	}
	if !l.Start(parent, run) || l.Start(parent, run) || !l.Started() {
		t.Fatal("want the first Start alone to start")
	}
	cancelParent() // the caller's cancellation is not the work's
	time.Sleep(10 * time.Millisecond)
	if ended.Load() != 0 {
		t.Fatal("the work ended with the caller's context")
	}
	if err := l.Stop(context.Background()); err != nil || ended.Load() != 1 || runs.Load() != 1 {
		t.Fatalf("Stop: %v; runs %d, ended %d", err, runs.Load(), ended.Load())
	}
	if err := l.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestStopGivesUpWithItsContext(t *testing.T) {
	var l lifecycle.Loop
	release := make(chan struct{})
	l.Start(context.Background(), func(ctx context.Context) { <-ctx.Done(); <-release })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop of stuck work: %v, want the deadline", err)
	}
	close(release)
	if err := l.Stop(context.Background()); err != nil {
		t.Fatalf("Stop once it ends: %v", err)
	}
}
