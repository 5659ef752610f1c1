package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

func TestWorkersTable(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)
	ws := []client.Worker{
		{ID: "vm-12-aa", Pool: "image", Host: "vm", PID: 12, Version: "v1.4.0", Concurrency: 2, Busy: 2, Done: 120, Failed: 3,
			StartedAt: now.Add(-90 * time.Minute), LastSeenAt: now.Add(-2500 * time.Millisecond)},
		{ID: "old\tone", Pool: "sys", Concurrency: 10, StartedAt: now.Add(-10 * time.Second), LastSeenAt: now.Add(-100 * time.Millisecond)},
		{ID: "bare"},
	}
	var b bytes.Buffer
	if err := writeWorkersTable(&b, ws, "", now); err != nil {
		t.Fatal(err)
	}
	want := `POOL   WORKER    HOST  PID  VERSION  BUSY  DONE  FAILED  UP     SEEN
image  vm-12-aa  vm    12   v1.4.0   2/2   120   3       1h30m  2s ago
sys    old one   -     -    -        0/10  0     0       10s    <1s ago
-      bare      -     -    -        0/0   0     0       -      -
`
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("table (-want +got):\n%s", d)
	}
	b.Reset()
	_ = writeWorkersTable(&b, nil, "sys", now)
	if got := b.String(); got != "no live workers in pool sys\n" {
		t.Errorf("no workers: %q", got)
	}
}

func TestPoolStateText(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		st   client.PoolState
		want string
	}{
		{client.PoolState{Pool: "sys", Paused: true, Changed: true}, "paused pool sys: its workers finish the jobs they run and take no new ones; 'warren queue resume sys' resumes it\n"},
		{client.PoolState{Pool: "sys", Paused: true, PausedAt: at, PausedBy: "ops"}, "pool sys was already paused (since 2026-03-14T10:00:00.000Z, by ops)\n"},
		{client.PoolState{Pool: "sys", Changed: true}, "resumed pool sys: its workers take jobs again\n"},
		{client.PoolState{Pool: "sys"}, "pool sys was not paused\n"},
	} {
		var b bytes.Buffer
		if err := writePoolState(&b, &tt.st); err != nil || b.String() != tt.want {
			t.Errorf("%+v: %q (%v), want %q", tt.st, b.String(), err, tt.want)
		}
	}
}

// liveAPI starts the real API over a fresh namespace where the sys pool's
// type is declared, and returns its URL.
func liveAPI(t *testing.T) (*testenv.Env, string) {
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
	return env, "http://" + srv.Addr()
}

// warren workers and warren queue pause|resume against the real API.
func TestWorkersAndPauseCommands(t *testing.T) {
	testenv.RequireServices(t)
	t.Parallel()
	env, url := liveAPI(t)
	if _, err := env.Store.KeepLease(context.Background(), store.WorkerInfo{ID: "w-1", Host: "vm", PID: 7, Version: "v1",
		Started: time.Now().Add(-time.Minute), Pools: map[string]store.PoolLoad{"sys": {Concurrency: 4, Busy: 1, Done: 2}}}, time.Minute); err != nil {
		t.Fatal(err)
	}

	out, errOut, code := runWarren(t, url, "", "workers")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "POOL ") ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), "sys w-1 vm 7 v1 1/4 2 0 1m") || !strings.HasSuffix(lines[1], " ago") {
		t.Errorf("warren workers: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = runWarren(t, url, "", "workers", "--pool", "sys", "-o", "json")
	var got workersOutput
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || len(got.Workers) != 1 || got.Workers[0].ID != "w-1" || got.Workers[0].Busy != 1 {
		t.Errorf("warren workers --pool sys -o json: exit %d, %s", code, out)
	}
	if _, errOut, code := runWarren(t, url, "", "workers", "--pool", "nope"); code != 1 || !strings.Contains(errOut, "no pool nope") {
		t.Errorf("warren workers --pool nope: exit %d, %s", code, errOut)
	}
	if _, errOut, code := runWarren(t, url, "", "workers", "--pool", "No!"); code != 1 || !strings.Contains(errOut, "--pool") {
		t.Errorf("warren workers --pool No!: exit %d, %s", code, errOut)
	}

	out, errOut, code = runWarren(t, url, "", "queue", "pause", "sys")
	if code != 0 || !strings.HasPrefix(out, "paused pool sys:") {
		t.Errorf("warren queue pause sys: exit %d, %s%s", code, out, errOut)
	}
	out, _, code = runWarren(t, url, "", "queues")
	if code != 0 || !strings.Contains(out, "\nsys (paused) ") {
		t.Errorf("warren queues while paused: exit %d\n%s", code, out)
	}
	out, _, code = runWarren(t, url, "", "queue", "pause", "sys", "-o", "json")
	var st client.PoolState
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || !st.Paused || st.Changed || st.PausedAt.IsZero() {
		t.Errorf("pause again -o json: exit %d, %s", code, out)
	}
	out, _, code = runWarren(t, url, "", "queue", "resume", "sys")
	if code != 0 || !strings.HasPrefix(out, "resumed pool sys:") {
		t.Errorf("warren queue resume sys: exit %d, %s", code, out)
	}
	for _, args := range [][]string{{"queue", "pause", "nope"}, {"queue", "pause", "Sys"}, {"queue", "pause"}, {"queue", "resume", "a", "b"}} {
		if _, _, code := runWarren(t, url, "", args...); code != 1 {
			t.Errorf("warren %s: exit %d, want 1", strings.Join(args, " "), code)
		}
	}
	if out, _, _ := runWarren(t, url, "", "queues"); strings.Contains(out, "paused") {
		t.Errorf("warren queues after the resume:\n%s", out)
	}
}
