package conformance

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/warrenhq/warren/jobs"
)

// 16. Rate limits (docs/protocol.md section 18): text.wordcount limited to
// 3 jobs a second, and 1 a second for each customer. No job runs before
// its token: within any second at most 3 start, and at most 1 of a
// customer; a job held back stays queued with limited_until and no attempt
// counted, and every job succeeds after one attempt.
func rateLimited(t *testing.T, f *fixture) {
	if r := f.do(t, "PUT", "/v1/limits/"+TypeName, `{"rate":{"limit":3,"per":"1s"},"tenant":{"key":"customer","limit":1,"per":"1s"}}`); r.status != http.StatusOK {
		t.Fatalf("PUT the limit: %d %s", r.status, r.body)
	}
	// A worker reads the limits before it consumes: started again, it
	// knows this one before its first job.
	f.stop()
	f.run(t)

	var ids []string
	tenant := map[string]string{}
	for i := range 8 {
		c := []string{"acme", "globex"}[i%2]
		j := f.submit(t, fmt.Sprintf(`{"type":"text.wordcount","payload":{"text":"job %d"},"metadata":{"customer":%q}}`, i, c))
		ids, tenant[j.ID] = append(ids, j.ID), c
	}
	// While jobs wait for their tokens, the records say so.
	sawHeld := false
	for deadline := time.Now().Add(10 * time.Second); !sawHeld && time.Now().Before(deadline); {
		ended := 0
		for _, id := range ids {
			j := f.get(t, id, "")
			switch {
			case j.LimitedUntil != nil && j.Status == jobs.StatusQueued && j.Attempt == 0:
				sawHeld = true
			case j.Status.Terminal():
				ended++
			}
		}
		if ended == len(ids) {
			break
		}
	}
	starts := map[string][]time.Time{}
	for _, id := range ids {
		j := f.wait(t, id)
		if j.Status != jobs.StatusSucceeded || j.Attempt != 1 || len(j.Attempts) != 1 || j.LimitedUntil != nil {
			t.Errorf("job %s: %s after %d attempts %+v, limited_until %v; want succeeded after one attempt", id, j.Status, j.Attempt, j.Attempts, j.LimitedUntil)
			continue
		}
		starts[""] = append(starts[""], *j.StartedAt)
		starts[tenant[id]] = append(starts[tenant[id]], *j.StartedAt)
	}
	if !sawHeld {
		t.Error("no job showed limited_until while it waited")
	}
	// The token is taken by Redis's clock a moment before the worker
	// records the start by its own: a window a little under the period.
	for who, most := range map[string]int{"": 3, "acme": 1, "globex": 1} {
		if n := busiest(starts[who], 900*time.Millisecond); n > most {
			t.Errorf("%q: %d jobs started within a second, want at most %d", who, n, most)
		}
	}
	f.noneWaiting(t, "after the limited jobs ran")
}

// 17. A changed limit frees the jobs it held back (docs/protocol.md
// section 18, check-backs): text.wordcount limited to 1 job per 20 s,
// three jobs; one starts and two are held back, with turns 20 and 40 s on.
// The limit loosened, both start before those turns, when they check back
// (after 10 s), each after one attempt.
func limitChanged(t *testing.T, f *fixture) {
	if r := f.do(t, "PUT", "/v1/limits/"+TypeName, `{"rate":{"limit":1,"per":"20s"}}`); r.status != http.StatusOK {
		t.Fatalf("PUT the limit: %d %s", r.status, r.body)
	}
	f.stop()
	f.run(t)
	var ids []string
	for i := range 3 {
		ids = append(ids, f.submit(t, fmt.Sprintf(`{"type":"text.wordcount","payload":{"text":"job %d"}}`, i)).ID)
	}
	turns := map[string]time.Time{}
	for deadline := time.Now().Add(15 * time.Second); len(turns) < 2; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of the 3 jobs held back after 15s, want 2 (one per 20 s)", len(turns))
		}
		for _, id := range ids {
			if j := f.get(t, id, ""); j.LimitedUntil != nil && j.Status == jobs.StatusQueued {
				turns[id] = *j.LimitedUntil
			}
		}
	}
	if r := f.do(t, "PUT", "/v1/limits/"+TypeName, `{"rate":{"limit":100,"per":"1s"}}`); r.status != http.StatusOK {
		t.Fatalf("PUT the looser limit: %d %s", r.status, r.body)
	}
	for id, turn := range turns {
		j := f.wait(t, id)
		switch {
		case j.Status != jobs.StatusSucceeded || j.Attempt != 1:
			t.Errorf("job %s: %s after %d attempts, want succeeded after one", id, j.Status, j.Attempt)
		case !j.StartedAt.Before(turn):
			t.Errorf("job %s started at %s, not before the turn %s the old limit gave it: it did not check back", id, j.StartedAt, turn)
		}
	}
	f.noneWaiting(t, "after the held jobs ran")
}

// busiest is the most times within any span of length w.
func busiest(at []time.Time, w time.Duration) int {
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	most := 0
	for i := range at {
		n := 0
		for j := i; j < len(at) && at[j].Sub(at[i]) < w; j++ {
			n++
		}
		most = max(most, n)
	}
	return most
}
