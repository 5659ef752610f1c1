package conformance

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
)

// 18. Priorities (protocol section 2.6): a retry of a high job comes back
// to the pool's high lane through the delay levels; with both lanes
// backlogged the worker starts the high jobs before all but a few normal
// ones, and every job succeeds.
func priorities(t *testing.T, f *fixture) {
	// A retry keeps its lane: the first attempt fails, the pool is paused
	// while the retry waits in the delay levels, and the retry arrives in
	// the high lane.
	retried := f.submit(t, `{"type":"text.wordcount","payload":{"text":"x y","fail_times":1},"priority":7,"max_attempts":2,"backoff":{"base":"2s"}}`)
	testenv.Eventually(t, 10*time.Second, "the first attempt to fail", func() bool {
		return f.get(t, retried.ID, "").Status == jobs.StatusRetrying
	})
	if r := f.post(t, "/v1/queues/"+Pool+"/pause", ""); r.status != http.StatusOK {
		t.Fatalf("pause: %d %s", r.status, r.body)
	}
	testenv.Eventually(t, 10*time.Second, "the worker to stop consuming", func() bool { return f.consumers(t) == 0 })
	high, normal := f.env.NS.HighQueue(Pool), f.env.NS.Queue(Pool)
	testenv.Eventually(t, 15*time.Second, "the retry in the high lane", func() bool { return f.ready(t, high) == 1 })
	if n := f.ready(t, normal); n != 0 {
		t.Errorf("%d messages in the normal lane, want the retry in the high lane alone", n)
	}

	// Both lanes backlogged: normal jobs first, then high ones.
	const normals, highs, fairness = 40, 8, 8
	var normalIDs, highIDs []string
	for i := range normals {
		normalIDs = append(normalIDs, f.submit(t, fmt.Sprintf(`{"type":"text.wordcount","payload":{"text":"n %d"},"priority":%d}`, i, i%5)).ID)
	}
	for i := range highs {
		highIDs = append(highIDs, f.submit(t, fmt.Sprintf(`{"type":"text.wordcount","payload":{"text":"h %d"},"priority":%d}`, i, 5+i%5)).ID)
	}
	testenv.Eventually(t, 10*time.Second, "both lanes backlogged", func() bool {
		return f.ready(t, high) == highs+1 && f.ready(t, normal) == normals
	})
	if r := f.post(t, "/v1/queues/"+Pool+"/resume", ""); r.status != http.StatusOK {
		t.Fatalf("resume: %d %s", r.status, r.body)
	}
	started := func(ids []string) []time.Time {
		var ts []time.Time
		for _, id := range ids {
			j := f.wait(t, id)
			if j.Status != jobs.StatusSucceeded || j.StartedAt == nil {
				t.Fatalf("job %s: %s, want succeeded", id, j.Status)
			}
			ts = append(ts, *j.StartedAt)
		}
		return ts
	}
	if j := f.wait(t, retried.ID); j.Status != jobs.StatusSucceeded || j.Attempt != 2 || j.Priority != 7 {
		t.Errorf("the retried job: %s at attempt %d, priority %d; want succeeded at attempt 2, priority 7", j.Status, j.Attempt, j.Priority)
	}
	hs, ns := started(highIDs), started(normalIDs)
	lastHigh := slices.MaxFunc(hs, func(a, b time.Time) int { return a.Compare(b) })
	before := 0
	for _, s := range ns {
		if s.Before(lastHigh) {
			before++
		}
	}
	// Each of the worker's handlers may have started a normal job as
	// consuming began, before the high lane's first delivery came; then
	// one normal start per fairness high ones.
	concurrency := 1
	if ws := f.workers(t); len(ws) == 1 {
		concurrency = ws[0].Concurrency
	}
	if most := concurrency + highs/fairness + 2; before > most {
		t.Errorf("%d of %d normal jobs started before the last high one, want at most %d (concurrency %d)", before, normals, most, concurrency)
	}
	t.Logf("%d of %d normal jobs started before the last of %d high ones (concurrency %d)", before, normals, highs, concurrency)
	f.drained(t)
}
