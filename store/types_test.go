package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

func TestTypes(t *testing.T) {
	t.Parallel()
	f := setup(t)
	if _, err := f.st.Type(ctx(t), "nope.nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Type of an undeclared type = %v, want ErrNotFound", err)
	}
	if got, err := f.st.Types(ctx(t)); err != nil || len(got) != 0 {
		t.Errorf("Types before any declaration = %v, %v; want none", got, err)
	}

	seen := make(chan string, 16)
	n := f.st.NewNotifier(store.Handlers{Type: func(name string) { seen <- name }})
	startNotifier(t, n, seen)

	zeta := jobs.Type{Name: "zeta.last", Pool: "z", Timeout: jobs.Duration(time.Minute), MaxAttempts: 2}
	alpha := jobs.Type{Name: "alpha.first", Pool: "a", Schema: json.RawMessage(`{"type":"object"}`),
		Timeout: jobs.Duration(10 * time.Minute), MaxAttempts: 3, Description: "first"}
	mid := jobs.Type{Name: "mid.dle", Pool: "a"}
	if err := f.st.DeclareTypes(ctx(t), []jobs.Type{zeta, alpha, mid}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for range 3 {
		names = append(names, recvName(t, seen))
	}
	if diff := cmp.Diff([]string{"zeta.last", "alpha.first", "mid.dle"}, names); diff != "" {
		t.Errorf("type announcements (-want +got):\n%s", diff)
	}

	got, err := f.st.Types(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]jobs.Type{alpha, mid, zeta}, got); diff != "" {
		t.Errorf("Types (-want +got):\n%s", diff)
	}
	one, err := f.st.Type(ctx(t), "alpha.first")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(alpha, one); diff != "" {
		t.Errorf("Type (-want +got):\n%s", diff)
	}

	// A declaration replaces the earlier one of its name.
	alpha2 := jobs.Type{Name: "alpha.first", Pool: "b", MaxAttempts: 9}
	if err := f.st.DeclareTypes(ctx(t), []jobs.Type{alpha2}); err != nil {
		t.Fatal(err)
	}
	if name := recvName(t, seen); name != "alpha.first" {
		t.Errorf("announcement = %q, want alpha.first", name)
	}
	got, err = f.st.Types(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]jobs.Type{alpha2, mid, zeta}, got); diff != "" {
		t.Errorf("Types after replacing alpha.first (-want +got):\n%s", diff)
	}
	if err := f.st.DeclareTypes(ctx(t), nil); err != nil {
		t.Errorf("DeclareTypes(nil) = %v", err)
	}
}

func TestDeleteNamespace(t *testing.T) {
	t.Parallel()
	mine, other := setup(t), setup(t)
	// A namespace whose name extends mine must survive too.
	prefixed := setupNamed(t, jobs.Namespace(string(mine.ns)+"-x"))
	for _, f := range []*fixture{mine, other, prefixed} {
		var js []*jobs.Job
		for i := range 3 {
			j := newJob(i)
			j.IdempotencyKey = fmt.Sprint("key-", i)
			js = append(js, j)
		}
		f.create(t, js...)
		if err := f.st.DeclareTypes(ctx(t), []jobs.Type{{Name: "a.b", Pool: "a"}}); err != nil {
			t.Fatal(err)
		}
	}
	count := func(f *fixture) int {
		keys, err := f.rdb.Keys(ctx(t), f.ns.KeyPrefix()+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	// Records, idempotency keys, types, the index of waiting jobs, then the
	// lists: of all jobs, of the type, of the pool's queued jobs, of the
	// labels team=store and n=0, 1, 2, and the registry of label lists.
	const perNS = 3 + 3 + 1 + 1 + 3 + 4 + 1
	for _, f := range []*fixture{mine, other, prefixed} {
		if n := count(f); n != perNS {
			t.Fatalf("namespace %s has %d keys before the delete, want %d", f.ns, n, perNS)
		}
	}
	if err := mine.st.DeleteNamespace(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if n := count(mine); n != 0 {
		t.Errorf("%d keys left in the deleted namespace", n)
	}
	for _, f := range []*fixture{other, prefixed} {
		if n := count(f); n != perNS {
			t.Errorf("namespace %s has %d keys after another was deleted, want %d", f.ns, n, perNS)
		}
	}
}

func setupNamed(t *testing.T, ns jobs.Namespace) *fixture {
	t.Helper()
	st, err := store.New(store.Config{URL: testenv.RedisURL(), Namespace: ns, Retention: retention, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.DeleteNamespace(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		_ = st.Close()
	})
	return &fixture{ns: ns, st: st, rdb: rawClient(t)}
}
