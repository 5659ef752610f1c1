package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// BenchmarkListFirstPage measures the first page of a listing (100 jobs)
// over lists of a thousand and of a million entries: the walk starts at the
// newest entry, so the size of the list should not show. Only the newest
// entries have records; the rest stand for jobs that are there but not
// looked at. Run: go test -run '^$' -bench ListFirstPage ./store
func BenchmarkListFirstPage(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			f := setup(b)
			c := ctx(b)
			key := f.ns.ListKey() + jobs.ListAll
			base := time.Now().Add(-24 * time.Hour).UnixMilli()
			const chunk = 10_000
			for start := 0; start < n; start += chunk {
				zs := make([]redis.Z, 0, chunk)
				for i := start; i < min(start+chunk, n); i++ {
					zs = append(zs, redis.Z{Score: float64(base + int64(i)), Member: jobs.NewID()})
				}
				if err := f.rdb.ZAdd(c, key, zs...).Err(); err != nil {
					b.Fatal(err)
				}
			}
			var newest []*jobs.Job
			for i := range 200 {
				j := newJob(i)
				j.CreatedAt = time.UnixMilli(base + int64(n) + int64(i))
				newest = append(newest, j)
			}
			if _, err := f.st.Create(c, newest); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				page, err := f.st.List(c, store.Query{Limit: 100})
				if err != nil || len(page.Jobs) != 100 {
					b.Fatalf("page of %d, %v", len(page.Jobs), err)
				}
			}
		})
	}
}
