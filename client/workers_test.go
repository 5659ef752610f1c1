package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// liveAPI starts the real API over a fresh namespace in which a worker
// declared the type sys.echo, and returns a client of it.
func liveAPI(t *testing.T) (*client.Client, *testenv.Env) {
	t.Helper()
	env := testenv.New(t)
	ctx := context.Background()
	if err := env.Broker.DeclarePool(ctx, "sys", []string{"sys.echo"}); err != nil {
		t.Fatal(err)
	}
	if err := env.Store.DeclareTypes(ctx, []jobs.Type{{Name: "sys.echo", Pool: "sys"}}); err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{Addr: "127.0.0.1:0", Logger: env.Log}, env.Broker, env.Store)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	c, err := client.New(client.Config{BaseURL: "http://" + srv.Addr(), HTTPClient: checkedHTTP(t)})
	if err != nil {
		t.Fatal(err)
	}
	return c, env
}

func TestWorkersAndPause(t *testing.T) {
	testenv.RequireServices(t)
	t.Parallel()
	c, env := liveAPI(t)
	ctx := context.Background()
	started := time.Now().Add(-time.Minute).Truncate(time.Millisecond).UTC()
	if _, err := env.Store.KeepLease(ctx, store.WorkerInfo{ID: "w-1", Host: "vm", PID: 42, Version: "v1", Started: started,
		Pools: map[string]store.PoolLoad{"sys": {Concurrency: 8, Busy: 2, Done: 5, Failed: 1}}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	ws, err := c.Workers(ctx, "sys")
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || ws[0].LastSeenAt.IsZero() {
		t.Fatalf("workers %+v, want w-1 with a last seen time", ws)
	}
	ws[0].LastSeenAt = time.Time{}
	want := client.Worker{ID: "w-1", Pool: "sys", Host: "vm", PID: 42, Version: "v1", Concurrency: 8, Busy: 2, Done: 5, Failed: 1, StartedAt: started}
	if d := cmp.Diff(want, ws[0]); d != "" {
		t.Errorf("worker (-want +got):\n%s", d)
	}
	if _, err := c.Workers(ctx, "nope"); !client.IsNotFound(err) {
		t.Errorf("workers of an unknown pool: %v, want not found", err)
	}

	st, err := c.PausePool(ctx, "sys")
	if err != nil || !st.Paused || !st.Changed || st.PausedAt.IsZero() {
		t.Fatalf("pause: %+v, %v", st, err)
	}
	qs, err := c.Queues(ctx)
	if err != nil || len(qs) != 1 || !qs[0].Paused || qs[0].PausedAt == nil {
		t.Errorf("queues while paused: %+v, %v", qs, err)
	}
	if st, err := c.ResumePool(ctx, "sys"); err != nil || st.Paused || !st.Changed {
		t.Errorf("resume: %+v, %v", st, err)
	}
	if _, err := c.PausePool(ctx, "nope"); !client.IsNotFound(err) {
		t.Errorf("pause of an unknown pool: %v, want not found", err)
	}
	if _, err := c.PausePool(ctx, ""); err == nil {
		t.Error("pause of an empty pool name: no error")
	}
}
