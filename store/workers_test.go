package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// A lease records what its worker says in one key, lists the worker while
// it is current, and answers with the paused pools; a release or a lapse
// takes the worker off the list.
func TestLeasesListWorkers(t *testing.T) {
	t.Parallel()
	f := setup(t)
	started := time.Now().Add(-time.Hour).Truncate(time.Millisecond).UTC()
	a := store.WorkerInfo{ID: "w-a", Host: "vm", PID: 12, Version: "v1", Started: started,
		Pools: map[string]store.PoolLoad{"sys": {Concurrency: 4, Busy: 1, Done: 9, Failed: 2}}}
	paused, err := f.st.KeepLease(ctx(t), a, time.Minute)
	if err != nil || len(paused) != 0 {
		t.Fatalf("lease: paused %v, %v; want none", paused, err)
	}
	if err := f.st.Lease(ctx(t), "w-b", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.KeepLease(ctx(t), store.WorkerInfo{ID: "w-lapsed"}, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)

	ws, err := f.st.Workers(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].ID != "w-a" || ws[1].ID != "w-b" {
		t.Fatalf("workers %+v, want w-a and w-b", ws)
	}
	if time.Since(ws[0].Seen) > time.Minute {
		t.Errorf("seen %v, want just now", ws[0].Seen)
	}
	ws[0].Seen = time.Time{}
	if d := cmp.Diff(a, ws[0]); d != "" {
		t.Errorf("w-a (-leased +listed):\n%s", d)
	}
	// The lease is what the start script and the rescuer look for.
	if ok, err := f.st.Alive(ctx(t), "w-a"); err != nil || !ok {
		t.Errorf("w-a alive %v, %v", ok, err)
	}
	var rec map[string]any
	raw, _ := f.rdb.Get(ctx(t), f.ns.WorkerKey("w-a")).Result()
	if err := json.Unmarshal([]byte(raw), &rec); err != nil || rec["id"] != "w-a" || rec["started_ms"] != float64(started.UnixMilli()) {
		t.Errorf("lease value %s: want JSON naming w-a and its start in Unix ms", raw)
	}

	if err := f.st.Release(ctx(t), "w-a"); err != nil {
		t.Fatal(err)
	}
	if ws, _ := f.st.Workers(ctx(t)); len(ws) != 1 || ws[0].ID != "w-b" {
		t.Errorf("after w-a's release: %+v", ws)
	}
	// A renewal drops lapsed entries from the list.
	if err := f.st.Lease(ctx(t), "w-b", time.Minute); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.rdb.ZCard(ctx(t), f.ns.WorkersKey()).Result(); n != 1 {
		t.Errorf("%d entries in the list of workers, want 1: lapsed ones are dropped", n)
	}
	// A lease left by an older worker (a time, not JSON) reads as its id.
	if err := f.rdb.Set(ctx(t), f.ns.WorkerKey("w-b"), time.Now().Format(time.RFC3339), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if ws, err := f.st.Workers(ctx(t)); err != nil || len(ws) != 1 || ws[0].ID != "w-b" {
		t.Errorf("a lease holding a time: %+v, %v", ws, err)
	}
}

// Pausing is recorded once, announced once, and read back by the lease;
// resuming undoes it.
func TestPauseAndResumePool(t *testing.T) {
	t.Parallel()
	f := setup(t)
	events := f.rdb.Subscribe(context.Background(), f.ns.EventsChannel())
	defer events.Close()
	if _, err := events.Receive(ctx(t)); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Truncate(time.Millisecond)
	p, changed, err := f.st.PausePool(ctx(t), "sys", "ops")
	if err != nil || !changed || p.By != "ops" || p.At.Before(before) {
		t.Fatalf("pause: %+v changed %v, %v", p, changed, err)
	}
	again, changed, err := f.st.PausePool(ctx(t), "sys", "someone")
	if err != nil || changed || again != p {
		t.Errorf("pause again: %+v changed %v, %v; want the first pause, unchanged", again, changed, err)
	}
	paused, err := f.st.KeepLease(ctx(t), store.WorkerInfo{ID: "w"}, time.Minute)
	if err != nil || len(paused) != 1 || paused["sys"] != p {
		t.Errorf("the lease read %v, %v; want sys's pause", paused, err)
	}
	if changed, err := f.st.ResumePool(ctx(t), "sys"); err != nil || !changed {
		t.Errorf("resume: %v, %v", changed, err)
	}
	if changed, err := f.st.ResumePool(ctx(t), "sys"); err != nil || changed {
		t.Errorf("resume again: %v, %v; want unchanged", changed, err)
	}
	if paused, err := f.st.Paused(ctx(t)); err != nil || len(paused) != 0 {
		t.Errorf("after the resume: %v, %v", paused, err)
	}
	var got []string
	for range 2 {
		m, err := events.ReceiveMessage(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Payload)
	}
	if d := cmp.Diff([]string{"pause sys", "resume sys"}, got); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
}

// Inventory counts a namespace's keys and finds its pools and live workers,
// older workers' leases included.
func TestInventory(t *testing.T) {
	t.Parallel()
	f := setup(t)
	c := ctx(t)
	if err := f.st.DeclareTypes(c, []jobs.Type{{Name: "sys.echo", Pool: "sys"}}); err != nil {
		t.Fatal(err)
	}
	for key, v := range map[string]any{
		f.ns.WaitingKey("queued"):       "x",
		f.ns.RunningKey("busy"):         "x",
		f.ns.RescuedKey("rescued", 123): "x",
		f.ns.WorkerKey("w-old"):         time.Now().Format(time.RFC3339),
		// The decisions of a pool whose autoscaler stopped.
		f.ns.AutoscaleDecisionsKey("decided"): "x",
	} {
		if err := f.rdb.Set(c, key, v, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := f.st.PausePool(c, "paused", ""); err != nil {
		t.Fatal(err)
	}
	if err := f.st.PutReplicas(c, "scaled", store.Replicas{Current: 1, Desired: 1, At: time.Now(), Interval: time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.KeepLease(c, store.WorkerInfo{ID: "w-new", Pools: map[string]store.PoolLoad{"sys": {}}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	inv, err := f.st.Inventory(c)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"busy", "decided", "paused", "queued", "rescued", "scaled", "sys"}, inv.Pools); d != "" {
		t.Errorf("pools (-want +got):\n%s", d)
	}
	var ids []string
	for _, w := range inv.Workers {
		ids = append(ids, w.ID)
	}
	if d := cmp.Diff([]string{"w-new", "w-old"}, ids); d != "" {
		t.Errorf("workers (-want +got):\n%s", d)
	}
	// types, 3 indexes, 2 leases, the list of workers, paused, autoscale
	// and the decisions of scaled and decided.
	if inv.Keys != 11 {
		keys, _ := f.rdb.Keys(c, f.ns.KeyPrefix()+"*").Result()
		t.Errorf("%d keys counted, want 11: %v", inv.Keys, keys)
	}
}
