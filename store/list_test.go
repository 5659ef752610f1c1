package store_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// listed returns the ids of a whole listing, following its cursors.
func listed(t *testing.T, f *fixture, q store.Query) []string {
	t.Helper()
	var ids []string
	for range 1000 {
		page, err := f.st.List(ctx(t), q)
		if err != nil {
			t.Fatalf("List(%+v): %v", q, err)
		}
		for _, j := range page.Jobs {
			ids = append(ids, j.ID)
		}
		if page.Next == nil {
			return ids
		}
		again, err := store.ParseCursor(page.Next.String())
		if err != nil || again != *page.Next {
			t.Fatalf("cursor %v does not round-trip: %v, %v", page.Next, again, err)
		}
		q.After = page.Next
	}
	t.Fatal("the listing does not end")
	return nil
}

func TestListFiltersAndPages(t *testing.T) {
	t.Parallel()
	f := setup(t)
	if err := f.st.DeclareTypes(ctx(t), []jobs.Type{{Name: "store.test", Pool: pool}, {Name: "store.other", Pool: "otherpool"}}); err != nil {
		t.Fatal(err)
	}
	base := time.Now().UTC().Truncate(time.Millisecond).Add(-time.Hour)
	var all []*jobs.Job
	for i := range 30 {
		j := newJob(i)
		j.CreatedAt = base.Add(time.Duration(i/3) * time.Millisecond) // three share each millisecond
		if i%3 == 0 {
			j.Type, j.Pool = "store.other", "otherpool"
		}
		j.Metadata = map[string]string{"tenant": fmt.Sprint("t", i%2), "n": fmt.Sprint(i)}
		all = append(all, j)
	}
	f.create(t, all...)
	// Jobs 0..9 run; 0..4 succeed, 5..9 fail.
	for i := range 10 {
		if _, err := f.st.Start(ctx(t), all[i].ID, "w1", -1, fmt.Sprint("tok", i), time.Now()); err != nil {
			t.Fatal(err)
		}
		o := store.Outcome{Status: jobs.StatusSucceeded}
		if i >= 5 {
			o = store.Outcome{Status: jobs.StatusFailed, Error: &jobs.Error{Code: "x", Message: "boom"}}
		}
		if err := f.st.Finish(ctx(t), all[i].ID, o, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	newestFirst := func(keep func(i int) bool) []string {
		var ids []string
		for i := len(all) - 1; i >= 0; i-- {
			if keep(i) {
				ids = append(ids, all[i].ID)
			}
		}
		return ids
	}
	cases := []struct {
		name string
		q    store.Query
		keep func(i int) bool
	}{
		{"all", store.Query{}, func(int) bool { return true }},
		{"status", store.Query{Status: jobs.StatusSucceeded}, func(i int) bool { return i < 5 }},
		{"status and pool", store.Query{Status: jobs.StatusQueued, Pool: pool}, func(i int) bool { return i >= 10 && i%3 != 0 }},
		{"status and type", store.Query{Status: jobs.StatusFailed, Type: "store.other"}, func(i int) bool { return i >= 5 && i < 10 && i%3 == 0 }},
		{"type", store.Query{Type: "store.other"}, func(i int) bool { return i%3 == 0 }},
		{"pool", store.Query{Pool: pool}, func(i int) bool { return i%3 != 0 }},
		{"meta", store.Query{Meta: map[string]string{"tenant": "t1"}}, func(i int) bool { return i%2 == 1 }},
		{"meta and status", store.Query{Meta: map[string]string{"tenant": "t0"}, Status: jobs.StatusQueued}, func(i int) bool { return i%2 == 0 && i >= 10 }},
		{"two labels", store.Query{Meta: map[string]string{"tenant": "t0", "n": "12"}}, func(i int) bool { return i == 12 }},
		{"since and until", store.Query{Since: base.Add(2 * time.Millisecond), Until: base.Add(4 * time.Millisecond)}, func(i int) bool { return i/3 >= 2 && i/3 <= 4 }},
		{"no such type", store.Query{Status: jobs.StatusQueued, Type: "store.none"}, func(int) bool { return false }},
	}
	for _, c := range cases {
		for _, limit := range []int{1, 2, 7, 100} {
			q := c.q
			q.Limit = limit
			if got, want := listed(t, f, q), newestFirst(c.keep); !slices.Equal(got, want) {
				t.Errorf("%s, limit %d:\n got %v\nwant %v", c.name, limit, got, want)
			}
		}
	}
	// One page of 7, then the next: no job twice, none skipped, in order.
	page, err := f.st.List(ctx(t), store.Query{Limit: 7})
	if err != nil || len(page.Jobs) != 7 || page.Next == nil {
		t.Fatalf("first page: %d jobs, next %v, %v", len(page.Jobs), page.Next, err)
	}
	if page.Jobs[0].ID != all[29].ID || page.Jobs[0].Status != jobs.StatusQueued {
		t.Errorf("first job listed: %s %s, want the newest, %s", page.Jobs[0].ID, page.Jobs[0].Status, all[29].ID)
	}
}

func TestListDropsExpiredRecords(t *testing.T) {
	t.Parallel()
	f := setup(t)
	js := []*jobs.Job{newJob(1), newJob(2), newJob(3)}
	f.create(t, js...)
	if err := f.rdb.Del(ctx(t), f.ns.JobKey(js[1].ID)).Err(); err != nil {
		t.Fatal(err)
	}
	if got := listed(t, f, store.Query{}); !slices.Equal(got, []string{js[2].ID, js[0].ID}) {
		t.Errorf("listed %v, want the two with records", got)
	}
	if n, _ := f.rdb.ZCard(ctx(t), f.ns.ListKey()+jobs.ListAll).Result(); n != 2 {
		t.Errorf("the list holds %d entries after the listing, want 2: the expired one dropped", n)
	}
}

func TestUnlistedMetadataHasNoList(t *testing.T) {
	t.Parallel()
	f := setup(t)
	js := []*jobs.Job{newJob(1), newJob(2)}
	for i, j := range js {
		j.Metadata = map[string]string{"schedule": "nightly", jobs.MetaScheduleTick: fmt.Sprintf("2026-12-0%dT03:00:00Z", i+1)}
	}
	f.create(t, js...)
	tick := f.ns.ListKey() + jobs.ListOfMeta(jobs.MetaScheduleTick, "2026-12-02T03:00:00Z")
	if n, _ := f.rdb.Exists(ctx(t), tick).Result(); n != 0 {
		t.Errorf("%s exists: a list per tick", tick)
	}
	if ok, _ := f.rdb.SIsMember(ctx(t), f.ns.ListsKey(), jobs.ListOfMeta(jobs.MetaScheduleTick, "2026-12-02T03:00:00Z")).Result(); ok {
		t.Error("the tick's list is in the set of metadata lists the rescuer trims")
	}
	// Filtered on the tick alone, or with the schedule, the listing walks
	// another list and checks the records.
	for _, meta := range []map[string]string{
		{jobs.MetaScheduleTick: "2026-12-02T03:00:00Z"},
		{jobs.MetaScheduleTick: "2026-12-02T03:00:00Z", "schedule": "nightly"},
	} {
		if got := listed(t, f, store.Query{Meta: meta}); !slices.Equal(got, []string{js[1].ID}) {
			t.Errorf("listed by %v: %v, want %s", meta, got, js[1].ID)
		}
	}
}

func TestListCursorRefused(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "x", "!!!", store.Cursor{Created: 1, ID: "not-an-id"}.String(), "MTIz"} {
		if _, err := store.ParseCursor(bad); err == nil {
			t.Errorf("ParseCursor(%q) accepted", bad)
		}
	}
}

func TestAttemptsAreKept(t *testing.T) {
	t.Parallel()
	f := setup(t)
	j := newJob(1)
	f.create(t, j)
	at := func(s int) time.Time { return time.UnixMilli(1_700_000_000_000 + int64(s)*1000).UTC() }
	// Attempt 1 fails and is retried; attempt 2's worker is lost; attempt 3
	// runs, and is shown running.
	if _, err := f.st.Start(ctx(t), j.ID, "w1", 0, "a", at(1)); err != nil {
		t.Fatal(err)
	}
	panicked := &jobs.Error{Code: "panic", Message: "boom", Retryable: true, Stack: "goroutine 1 [running]:\nmain.f()"}
	if err := f.st.Finish(ctx(t), j.ID, store.Outcome{Status: jobs.StatusRetrying, Error: panicked, Next: at(3), Attempt: 1}, at(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.Start(ctx(t), j.ID, "w2", 1, "b", at(4)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.Start(ctx(t), j.ID, "w3", 1, "c", at(9)); err != nil { // w2 has no lease: lost
		t.Fatal(err)
	}
	got, err := f.st.Get(ctx(t), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	ptr := func(t time.Time) *time.Time { return &t }
	want := []jobs.Attempt{
		{Attempt: 1, Worker: "w1", StartedAt: ptr(at(1)), EndedAt: ptr(at(2)), Outcome: "failed", Error: panicked},
		{Attempt: 2, Worker: "w2", StartedAt: ptr(at(4)), Outcome: "lost"},
		{Attempt: 3, Worker: "w3", StartedAt: ptr(at(9)), Outcome: "running"},
	}
	if d := cmp.Diff(want, got.Attempts); d != "" {
		t.Errorf("attempts (-want +got):\n%s", d)
	}
	if err := f.st.Finish(ctx(t), j.ID, store.Outcome{Status: jobs.StatusSucceeded, Attempt: 3}, at(10)); err != nil {
		t.Fatal(err)
	}
	got, _ = f.st.Get(ctx(t), j.ID)
	if n := len(got.Attempts); n != 3 || got.Attempts[2].Outcome != "succeeded" || got.Attempts[2].EndedAt == nil {
		t.Errorf("after success: %+v", got.Attempts)
	}
	if got.ScheduledAt == nil || !got.ScheduledAt.Equal(at(3)) {
		t.Errorf("scheduled_at after the job ran = %v, want the retry's due time kept", got.ScheduledAt)
	}
}

func TestOutcomesPerMinute(t *testing.T) {
	t.Parallel()
	f := setup(t)
	now := time.Now()
	var js []*jobs.Job
	for i := range 5 {
		js = append(js, newJob(i))
	}
	f.create(t, js...)
	for i, j := range js {
		if _, err := f.st.Start(ctx(t), j.ID, "w", -1, "t", now); err != nil {
			t.Fatal(err)
		}
		o := store.Outcome{Status: jobs.StatusSucceeded}
		if i == 0 {
			o = store.Outcome{Status: jobs.StatusFailed, Error: &jobs.Error{Code: "x"}}
		}
		if err := f.st.Finish(ctx(t), j.ID, o, now); err != nil {
			t.Fatal(err)
		}
	}
	counts, err := f.st.Counts(ctx(t), []string{pool, "nopool"}, now)
	if err != nil {
		t.Fatal(err)
	}
	c := counts[pool]
	if c.SucceededLastHour != 4 || c.FailedLastHour != 1 || len(c.PerMinute) != 60 {
		t.Fatalf("counts %+v", c)
	}
	if last := c.PerMinute[len(c.PerMinute)-1]; last.Succeeded != 4 || last.Failed != 1 {
		t.Errorf("this minute: %+v", last)
	}
	if counts["nopool"].SucceededLastHour != 0 {
		t.Errorf("another pool counted: %+v", counts["nopool"])
	}
}

func TestTrimLists(t *testing.T) {
	t.Parallel()
	f := setup(t)
	if err := f.st.DeclareTypes(ctx(t), []jobs.Type{{Name: "store.test", Pool: pool}}); err != nil {
		t.Fatal(err)
	}
	js := []*jobs.Job{newJob(1), newJob(2), newJob(3)}
	js[0].Metadata = map[string]string{"only": "gone"}
	f.create(t, js...)
	for _, j := range js[:2] {
		if err := f.rdb.Del(ctx(t), f.ns.JobKey(j.ID)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	n, err := f.st.TrimLists(ctx(t), 100)
	if err != nil {
		t.Fatal(err)
	}
	// Each gone job was in all, its type's list, its status list and its
	// labels' lists: 3 + 1 for the first, 3 + 2 for the second.
	if n != 9 {
		t.Errorf("dropped %d entries, want 9", n)
	}
	for _, suf := range []string{jobs.ListAll, jobs.ListOfType("store.test"), jobs.ListOfStatus(pool, jobs.StatusQueued)} {
		if ids, _ := f.rdb.ZRange(ctx(t), f.ns.ListKey()+suf, 0, -1).Result(); !slices.Equal(ids, []string{js[2].ID}) {
			t.Errorf("list %s holds %v, want the live job alone", suf, ids)
		}
	}
	if ok, _ := f.rdb.SIsMember(ctx(t), f.ns.ListsKey(), jobs.ListOfMeta("only", "gone")).Result(); ok {
		t.Error("the registry still names a label no job carries")
	}
}
