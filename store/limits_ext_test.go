package store_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

func rlRate(limit int, per time.Duration, burst int) *jobs.Rate {
	return &jobs.Rate{Limit: limit, Per: jobs.Duration(per), Burst: burst}
}

// rlJobs creates n queued jobs of type store.test, with metadata customer
// = tenant unless tenant is "".
func (f *fixture) rlJobs(t *testing.T, n int, tenant string) []*jobs.Job {
	t.Helper()
	js := make([]*jobs.Job, n)
	for i := range js {
		js[i] = newJob(i)
		if tenant != "" {
			js[i].Metadata["customer"] = tenant
		} else {
			delete(js[i].Metadata, "customer")
		}
	}
	f.create(t, js...)
	return js
}

// limitSetAt is the version of the limits the tests take tokens under.
var limitSetAt = time.UnixMilli(1_700_000_000_000).UTC()

func (f *fixture) take(t *testing.T, l jobs.Limit, j *jobs.Job, made int) store.Admission {
	t.Helper()
	a, err := f.st.TakeToken(ctx(t), store.LimitRecord{Limit: l, SetAt: limitSetAt}, j, made, 0)
	if err != nil {
		t.Fatalf("TakeToken: %v", err)
	}
	return a
}

// One token per interval, the rest held back with waits spread one
// interval apart; the record, the index of limited jobs and the index of
// waiting jobs say when each comes back; a copy that would not start a
// new attempt takes nothing.
func TestLimitTokenScript(t *testing.T) {
	t.Parallel()
	f := setup(t)
	l := jobs.Limit{Type: "store.test", Rate: rlRate(2, time.Second, 0)} // one every 500ms
	js := f.rlJobs(t, 4, "")

	if a := f.take(t, l, js[0], 0); a.Limited {
		t.Fatalf("first job: %+v, want a token (a new bucket is full)", a)
	}
	var waits []time.Duration
	for _, j := range js[1:] {
		a := f.take(t, l, j, 0)
		if !a.Limited {
			t.Fatalf("job %s: took a token from an empty bucket", j.ID)
		}
		waits = append(waits, a.Wait)
		rec := f.raw(t, j.ID)
		if rec["status"] != "queued" || rec["attempt"] != "0" {
			t.Errorf("held back: status %s attempt %s, want queued 0", rec["status"], rec["attempt"])
		}
		if got, _ := strconv.ParseInt(rec["limited_until"], 10, 64); got != a.Until.UnixMilli() {
			t.Errorf("limited_until %q, want %d", rec["limited_until"], a.Until.UnixMilli())
		}
		if s, err := f.rdb.ZScore(ctx(t), f.ns.LimitedKey(l.Type), j.ID).Result(); err != nil || int64(s) != a.Until.UnixMilli() {
			t.Errorf("index of limited jobs: %v %v, want %d", s, err, a.Until.UnixMilli())
		}
		if s, err := f.rdb.ZScore(ctx(t), f.ns.WaitingKey(pool), j.ID).Result(); err != nil || int64(s) != a.Until.UnixMilli() {
			t.Errorf("index of waiting jobs: %v %v, want %d (the rescuer must not take it for lost)", s, err, a.Until.UnixMilli())
		}
		if got := f.get(t, j.ID); got.LimitedUntil == nil || !got.LimitedUntil.Equal(a.Until) {
			t.Errorf("the job shows limited_until %v, want %v", got.LimitedUntil, a.Until)
		}
	}
	// Spread: each comes back about one interval after the one before.
	for i, w := range waits {
		want := time.Duration(i+1) * 500 * time.Millisecond
		if w < want-100*time.Millisecond || w > want+50*time.Millisecond {
			t.Errorf("wait %d: %s, want about %s", i, w, want)
		}
	}
	n, err := f.st.Limited(ctx(t), []string{l.Type, "store.other"}, time.Now())
	if err != nil || n[l.Type] != 3 || n["store.other"] != 0 {
		t.Errorf("Limited: %v %v, want 3 of store.test", n, err)
	}

	// The first job starts; copies of it take nothing: a redelivery of its
	// running attempt, a stale copy, a job that ended or has no record.
	if st := f.start(t, js[0].ID); st.Attempt != 1 {
		t.Fatalf("start: %+v", st)
	}
	for name, made := range map[string]int{"running attempt": 0, "stale": 3} {
		if a := f.take(t, l, js[0], made); a.Limited {
			t.Errorf("%s: held back, want it left to the start script", name)
		}
	}
	missing := newJob(9)
	if a := f.take(t, l, missing, 0); a.Limited {
		t.Errorf("no record: held back")
	}

	// Once its wait has passed, the job held back takes its token, and
	// its note goes.
	time.Sleep(waits[0])
	if a := f.take(t, l, js[1], 0); a.Limited {
		t.Fatalf("after its wait: %+v, want a token", a)
	}
	if rec := f.raw(t, js[1].ID); rec["limited_until"] != "" {
		t.Errorf("limited_until %q kept after the token was taken", rec["limited_until"])
	}
	if _, err := f.rdb.ZScore(ctx(t), f.ns.LimitedKey(l.Type), js[1].ID).Result(); err == nil {
		t.Error("the job that took its token is still in the index of limited jobs")
	}
}

// The type's bucket and the tenant's are taken from together or not at
// all; each tenant has a bucket of its own, and jobs without the key share
// one.
func TestLimitTenants(t *testing.T) {
	t.Parallel()
	f := setup(t)
	l := jobs.Limit{Type: "store.test", Rate: rlRate(1, time.Minute, 10),
		Tenant: &jobs.TenantRate{Key: "customer", Rate: *rlRate(1, time.Minute, 0)}}
	acme, globex, none := f.rlJobs(t, 2, "acme"), f.rlJobs(t, 2, "globex"), f.rlJobs(t, 2, "")
	typeTokens := func() float64 {
		v, _ := strconv.ParseFloat(f.rdb.HGet(ctx(t), f.ns.LimitBucketKey(l.Type, false, ""), "tokens").Val(), 64)
		return v
	}
	if a := f.take(t, l, acme[0], 0); a.Limited {
		t.Fatal("acme's first: held back")
	}
	if got := typeTokens(); got < 9.9 || got > 10.1 {
		t.Fatalf("type bucket after one job: %v tokens, want 10 of 11", got)
	}
	// Due in about a minute; its message checks back after a quarter of it.
	if a := f.take(t, l, acme[1], 0); !a.Limited || time.Until(a.Until) < 58*time.Second || a.Wait < 14*time.Second || a.Wait > 16*time.Second {
		t.Errorf("acme's second: %+v, want held back about a minute, checking back after 15s", a)
	}
	if got := typeTokens(); got < 9.9 || got > 10.1 {
		t.Errorf("type bucket after a job its tenant held back: %v tokens, want still 10 (both or neither)", got)
	}
	for name, js := range map[string][]*jobs.Job{"globex": globex, "no key": none} {
		if a := f.take(t, l, js[0], 0); a.Limited {
			t.Errorf("%s's first: held back by another tenant's bucket", name)
		}
		if a := f.take(t, l, js[1], 0); !a.Limited {
			t.Errorf("%s's second: not held back", name)
		}
	}
	if got := typeTokens(); got < 7.9 || got > 8.1 {
		t.Errorf("type bucket after three jobs: %v tokens, want 8", got)
	}
}

// Over any span, no more start than the bucket holds plus what it gains.
func TestLimitWindow(t *testing.T) {
	t.Parallel()
	f := setup(t)
	l := jobs.Limit{Type: "store.test", Rate: rlRate(5, time.Second, 2)}
	js := f.rlJobs(t, 40, "")
	begin := time.Now()
	granted, i := 0, 0
	for time.Since(begin) < 1200*time.Millisecond && i < len(js) {
		if a := f.take(t, l, js[i], 0); !a.Limited {
			granted++
			i++
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	span := time.Since(begin)
	// Capacity 3 (1 + burst), then 5 a second.
	most := 3 + int(span.Seconds()*5+0.5)
	if granted > most || granted <= 3 {
		t.Errorf("%d tokens in %s, want more than the 3 the bucket held and at most %d", granted, span, most)
	}
}

func TestLimitRecords(t *testing.T) {
	t.Parallel()
	f := setup(t)
	sub := f.rdb.Subscribe(ctx(t), f.ns.EventsChannel())
	defer sub.Close()
	if _, err := sub.Receive(ctx(t)); err != nil {
		t.Fatal(err)
	}
	rec := store.LimitRecord{Limit: jobs.Limit{Type: "rl.a", Rate: rlRate(5, time.Second, 1)}, SetAt: time.UnixMilli(1000).UTC(), SetBy: "ops"}
	if replaced, err := f.st.PutLimit(ctx(t), rec, 2); err != nil || replaced {
		t.Fatalf("PutLimit: %v %v", replaced, err)
	}
	if m, err := sub.ReceiveMessage(ctx(t)); err != nil || m.Payload != "limits rl.a" {
		t.Errorf("announcement: %v %v, want limits rl.a", m, err)
	}
	rec.Rate.Limit = 7
	if replaced, err := f.st.PutLimit(ctx(t), rec, 2); err != nil || !replaced {
		t.Fatalf("PutLimit again: %v %v", replaced, err)
	}
	if _, err := f.st.PutLimit(ctx(t), store.LimitRecord{Limit: jobs.Limit{Type: "rl.b", Rate: rlRate(1, time.Second, 0)}}, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.PutLimit(ctx(t), store.LimitRecord{Limit: jobs.Limit{Type: "rl.c", Rate: rlRate(1, time.Second, 0)}}, 2); !errors.Is(err, store.ErrLimitsFull) {
		t.Errorf("a third limit with room for two: %v, want ErrLimitsFull", err)
	}
	got, err := f.st.Limit(ctx(t), "rl.a")
	if err != nil || got.Rate.Limit != 7 || got.SetBy != "ops" || !got.SetAt.Equal(rec.SetAt) {
		t.Errorf("Limit: %+v %v", got, err)
	}
	// A record written by hand that does not decode is skipped, not fatal.
	f.rdb.HSet(ctx(t), f.ns.LimitsKey(), "rl.bad", "{")
	all, err := f.st.Limits(ctx(t))
	if err != nil || len(all) != 2 || all[0].Type != "rl.a" || all[1].Type != "rl.b" {
		t.Errorf("Limits: %+v %v, want rl.a and rl.b", all, err)
	}
	if old, err := f.st.DeleteLimit(ctx(t), "rl.a"); err != nil || old.Rate.Limit != 7 {
		t.Errorf("DeleteLimit: %+v %v", old, err)
	}
	if _, err := f.st.DeleteLimit(ctx(t), "rl.a"); !errors.Is(err, store.ErrLimitNotFound) {
		t.Errorf("DeleteLimit twice: %v, want ErrLimitNotFound", err)
	}
	if _, err := f.st.Limit(ctx(t), "rl.a"); !errors.Is(err, store.ErrLimitNotFound) {
		t.Errorf("Limit after delete: %v", err)
	}
}

// A job held back checks back early: under the same limit (or one newer
// than the caller knows) it keeps its slot and its bucket hands out no
// other; under a changed limit it is decided afresh, in buckets that forget
// the old limit's slots. Removing the limit forgets which jobs it held.
func TestLimitCheckBack(t *testing.T) {
	t.Parallel()
	f := setup(t)
	v1 := store.LimitRecord{Limit: jobs.Limit{Type: "store.test", Rate: rlRate(1, time.Hour, 0),
		Tenant: &jobs.TenantRate{Key: "customer", Rate: *rlRate(1, time.Hour, 0)}}, SetAt: limitSetAt}
	js := f.rlJobs(t, 3, "acme")
	take := func(rec store.LimitRecord, j *jobs.Job) store.Admission {
		t.Helper()
		a, err := f.st.TakeToken(ctx(t), rec, j, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	next := func(tenant bool, value string) string {
		return f.rdb.HGet(ctx(t), f.ns.LimitBucketKey("store.test", tenant, value), "next").Val()
	}
	if a := take(v1, js[0]); a.Limited {
		t.Fatalf("first job: %+v, want a token", a)
	}
	held := take(v1, js[1])
	if !held.Limited || held.CheckedBack || time.Until(held.Until) < 59*time.Minute ||
		held.Wait < 14*time.Minute || held.Wait > 16*time.Minute {
		t.Fatalf("second job: %+v, want due in an hour, checking back after a quarter of it", held)
	}
	typeNext, tenantNext := next(false, ""), next(true, "acme")

	// Back early under the same limit, and under an older one (a worker
	// that has not heard of the change yet): the same slot, nothing taken.
	older := v1
	older.SetAt = v1.SetAt.Add(-time.Minute)
	for name, rec := range map[string]store.LimitRecord{"same": v1, "older": older} {
		a := take(rec, js[1])
		if !a.Limited || !a.CheckedBack || !a.Until.Equal(held.Until) || a.Wait < 14*time.Minute || a.Wait > 15*time.Minute {
			t.Errorf("%s limit, back early: %+v, want the slot kept (%v), checking back after a quarter of what is left", name, a, held.Until)
		}
	}
	if n1, n2 := next(false, ""), next(true, "acme"); n1 != typeNext || n2 != tenantNext {
		t.Errorf("buckets' next slots moved on a check-back: %s, %s; want %s, %s", n1, n2, typeNext, tenantNext)
	}
	if rec := f.raw(t, js[1].ID); rec["limited_by"] != strconv.FormatInt(limitSetAt.UnixMilli(), 10) {
		t.Errorf("limited_by %q, want the limit's version", rec["limited_by"])
	}

	// A waiting job new to the buckets waits behind the held one's slot.
	if a := take(v1, js[2]); !a.Limited || a.CheckedBack || !a.Until.After(held.Until) {
		t.Errorf("a third job: %+v, want held back after %v", a, held.Until)
	}

	// The limit changed (set later, one a second): the held job is decided
	// afresh, and the buckets' slots of the old limit are forgotten.
	v2 := v1
	v2.SetAt = v1.SetAt.Add(time.Minute)
	v2.Rate, v2.Tenant.Rate = rlRate(1, time.Second, 0), *rlRate(1, time.Second, 0)
	if a := take(v2, js[1]); a.Limited {
		t.Errorf("back under a changed limit: %+v, want a token from the new limit's buckets", a)
	}
	if rec := f.raw(t, js[1].ID); rec["limited_until"] != "" || rec["limited_by"] != "" {
		t.Errorf("after its token the record keeps limited_until %q, limited_by %q", rec["limited_until"], rec["limited_by"])
	}
	if _, err := f.rdb.ZScore(ctx(t), f.ns.LimitedKey("store.test"), js[1].ID).Result(); err == nil {
		t.Error("the job that took its token is still in the index of limited jobs")
	}

	// A wait shorter than the least check-back is waited whole.
	short := f.rlJobs(t, 2, "")
	v3 := store.LimitRecord{Limit: jobs.Limit{Type: "store.test", Rate: rlRate(1, 4*time.Second, 0)}, SetAt: v2.SetAt.Add(time.Minute)}
	take(v3, short[0])
	if a := take(v3, short[1]); !a.Limited || a.Wait < 3*time.Second || a.Wait > 4*time.Second || a.Wait < time.Until(a.Until)-time.Second {
		t.Errorf("a 4s wait: %+v, want waited whole", a)
	}

	// A held job that starts without a token (its limit removed, so its
	// worker runs no token script) keeps no turn on its record.
	f.start(t, js[2].ID)
	if rec := f.raw(t, js[2].ID); rec["limited_until"] != "" || rec["limited_by"] != "" {
		t.Errorf("a started job keeps limited_until %q, limited_by %q", rec["limited_until"], rec["limited_by"])
	}

	// Removing the limit forgets the jobs it held back.
	if _, err := f.st.PutLimit(ctx(t), v3, 10); err != nil {
		t.Fatal(err)
	}
	if n, err := f.st.Limited(ctx(t), []string{"store.test"}, time.Now()); err != nil || n["store.test"] == 0 {
		t.Fatalf("limited before the removal: %v, %v", n, err)
	}
	if _, err := f.st.DeleteLimit(ctx(t), "store.test"); err != nil {
		t.Fatal(err)
	}
	if n, err := f.st.Limited(ctx(t), []string{"store.test"}, time.Now()); err != nil || n["store.test"] != 0 {
		t.Errorf("limited after the removal: %v, %v; want none", n, err)
	}
}

// A held job that is canceled no longer counts as limited, and its record
// keeps no turn; its message, checking back, takes nothing.
func TestLimitCanceledHeldJob(t *testing.T) {
	t.Parallel()
	f := setup(t)
	l := jobs.Limit{Type: "store.test", Rate: rlRate(1, time.Hour, 0)}
	js := f.rlJobs(t, 3, "")
	f.take(t, l, js[0], 0)
	for _, j := range js[1:] {
		if a := f.take(t, l, j, 0); !a.Limited {
			t.Fatalf("job %s: %+v, want held back", j.ID, a)
		}
	}
	count := func() int {
		t.Helper()
		n, err := f.st.Limited(ctx(t), []string{"store.test"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return n["store.test"]
	}
	if n := count(); n != 2 {
		t.Fatalf("limited before the cancel: %d, want 2", n)
	}
	if _, err := f.st.Cancel(ctx(t), js[1].ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Errorf("limited after one is canceled: %d, want 1", n)
	}
	if rec := f.raw(t, js[1].ID); rec["limited_until"] != "" || rec["limited_by"] != "" || rec["status"] != "canceled" {
		t.Errorf("the canceled job's record: status %q, limited_until %q, limited_by %q", rec["status"], rec["limited_until"], rec["limited_by"])
	}
	if a := f.take(t, l, js[1], 0); a.Limited {
		t.Errorf("the canceled job's message back: %+v, want nothing taken or held", a)
	}
	if n := count(); n != 1 {
		t.Errorf("limited after the canceled job's message came back: %d, want 1", n)
	}
}
