package store

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/warrenhq/warren/jobs"
)

// A lease's value comes from a worker in any language: whatever it holds,
// reading it neither panics nor yields what GET /v1/workers could not show
// (a pool that is no pool name, negative counts, times JSON cannot write),
// and the worker keeps the id its lease is named by.
func FuzzDecodeLease(f *testing.F) {
	for _, seed := range []string{
		`{"id":"vm-1-aa","host":"vm","pid":12,"version":"v1","started_ms":1764100000000,"seen_ms":1764103558818,"pools":{"sys":{"concurrency":32,"busy":3,"done":1200,"failed":4}}}`,
		`2026-11-25T21:55:58Z`,
		`{}`, `null`, `[]`, `{"pools":null}`,
		`{"pid":-1,"started_ms":-5,"seen_ms":99999999999999999,"pools":{"Bad Pool":{"busy":1},"ok":{"busy":-2}}}`,
		`{"pools":{"sys":{"concurrency":"many"}}}`,
		`{"host":"\u0000\n","version":"` + string(make([]byte, 300)) + `"}`,
	} {
		f.Add("w-1", seed)
	}
	f.Fuzz(func(t *testing.T, id, text string) {
		w := decodeLease(id, text)
		if w.ID != id {
			t.Fatalf("id %q, want the lease's %q", w.ID, id)
		}
		if w.PID < 0 {
			t.Errorf("pid %d", w.PID)
		}
		for pool, l := range w.Pools {
			if !jobs.ValidPoolName(pool) || l.Concurrency < 0 || l.Busy < 0 || l.Done < 0 || l.Failed < 0 {
				t.Errorf("pool %q: %+v", pool, l)
			}
		}
		for _, tm := range []time.Time{w.Started, w.Seen} {
			if _, err := json.Marshal(tm); err != nil {
				t.Errorf("time %v cannot be written as JSON: %v", tm, err)
			}
		}
	})
}
