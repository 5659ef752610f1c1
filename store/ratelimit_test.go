package store_test

import (
	"testing"
	"time"

	"github.com/warrenhq/warren/store"
)

func TestTakeRequests(t *testing.T) {
	f := setup(t)
	// A slow refill (one a minute) keeps the test's own pace out of it.
	perMinute := store.Rate{Per: 1.0 / 60, Burst: 2}
	none := store.Rate{}
	for i := range 2 {
		a, err := f.st.Take(ctx(t), "ci", perMinute, none, 0)
		if err != nil || !a.OK {
			t.Fatalf("request %d: %+v, %v; want taken (burst 2)", i+1, a, err)
		}
	}
	a, err := f.st.Take(ctx(t), "ci", perMinute, none, 0)
	if err != nil || a.OK || a.Never {
		t.Fatalf("third request: %+v, %v; want refused for now", a, err)
	}
	if a.RetryAfter < 50*time.Second || a.RetryAfter > time.Minute+time.Second {
		t.Errorf("RetryAfter = %s, want about a minute (one token a minute)", a.RetryAfter)
	}
	// Another key has its own bucket.
	if a, err := f.st.Take(ctx(t), "other", perMinute, none, 0); err != nil || !a.OK {
		t.Errorf("another key: %+v, %v; want taken", a, err)
	}
	// The bucket's key expires once it would be full again.
	ttl := f.pttl(t, f.ns.RateLimitKey("ci", "requests"))
	if ttl <= 0 || ttl > 2*time.Minute+2*time.Second {
		t.Errorf("bucket PTTL = %s, want about the 2 minutes it takes to refill", ttl)
	}
}

func TestTakeRefills(t *testing.T) {
	f := setup(t)
	fast := store.Rate{Per: 20, Burst: 1} // a token every 50ms
	if a, _ := f.st.Take(ctx(t), "ci", fast, store.Rate{}, 0); !a.OK {
		t.Fatal("first request refused")
	}
	a, err := f.st.Take(ctx(t), "ci", fast, store.Rate{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !a.OK {
		time.Sleep(a.RetryAfter)
		if a, err := f.st.Take(ctx(t), "ci", fast, store.Rate{}, 0); err != nil || !a.OK {
			t.Fatalf("after waiting RetryAfter (%s): %+v, %v", a.RetryAfter, a, err)
		}
	}
}

func TestTakeJobs(t *testing.T) {
	f := setup(t)
	requests := store.Rate{Per: 1.0 / 60, Burst: 10}
	jobs := store.Rate{Per: 1.0 / 60, Burst: 5}
	if a, err := f.st.Take(ctx(t), "ci", requests, jobs, 3); err != nil || !a.OK {
		t.Fatalf("3 of 5 jobs: %+v, %v", a, err)
	}
	a, err := f.st.Take(ctx(t), "ci", requests, jobs, 3)
	if err != nil || a.OK || a.Never || a.RetryAfter <= 0 {
		t.Fatalf("3 more with 2 left: %+v, %v; want refused for now", a, err)
	}
	if a, err := f.st.Take(ctx(t), "ci", requests, jobs, 6); err != nil || !a.Never {
		t.Fatalf("6 jobs with a burst of 5: %+v, %v; want never", a, err)
	}
	// Refused requests took nothing: 2 jobs and 9 requests are left.
	if a, err := f.st.Take(ctx(t), "ci", requests, jobs, 2); err != nil || !a.OK {
		t.Fatalf("the 2 jobs left: %+v, %v", a, err)
	}
	for i := range 8 {
		if a, err := f.st.Take(ctx(t), "ci", requests, jobs, 0); err != nil || !a.OK {
			t.Fatalf("request %d of the 8 left: %+v, %v", i+1, a, err)
		}
	}
	if a, _ := f.st.Take(ctx(t), "ci", requests, jobs, 0); a.OK {
		t.Fatal("an eleventh request was taken with a burst of 10")
	}
}
