package workers

import (
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// load counts, per pool, what the worker's lease tells of it (GET
// /v1/workers): the deliveries in hand now and the attempts ended since the
// process started. The map is filled at Start and only read after, so the
// counters need no lock.
type load map[string]*poolLoad

type poolLoad struct {
	concurrency  int
	busy         atomic.Int64
	done, failed atomic.Int64
}

// begin counts a delivery in hand; the returned func ends it.
func (l load) begin(pool string) func() {
	p := l[pool]
	if p == nil {
		return func() {}
	}
	p.busy.Add(1)
	return func() { p.busy.Add(-1) }
}

// ended counts an attempt's recorded outcome: succeeded is done; failed
// and retrying ended with an error. Others (an interrupted attempt
// requeued, a canceled one) are not counted.
func (l load) ended(pool string, st jobs.Status) {
	p := l[pool]
	if p == nil {
		return
	}
	switch st {
	case jobs.StatusSucceeded:
		p.done.Add(1)
	case jobs.StatusFailed, jobs.StatusRetrying:
		p.failed.Add(1)
	}
}

// info is what the lease records now.
func (l load) info(id, version string, started time.Time) store.WorkerInfo {
	host, _ := os.Hostname()
	w := store.WorkerInfo{ID: id, Host: host, PID: os.Getpid(), Version: version, Started: started,
		Pools: make(map[string]store.PoolLoad, len(l))}
	for name, p := range l {
		w.Pools[name] = store.PoolLoad{
			Concurrency: p.concurrency,
			Busy:        int(p.busy.Load()),
			Done:        p.done.Load(),
			Failed:      p.failed.Load(),
		}
	}
	return w
}

// buildVersion is the version of the program, from its build information:
// the main module's version ("(devel)" for a build from a checkout, then
// the VCS revision if known), or "dev".
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "dev-" + s.Value[:12]
		}
	}
	return "dev"
}
