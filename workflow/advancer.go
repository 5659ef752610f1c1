package workflow

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/warrenhq/warren/internal/lifecycle"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// AdvancerStore is what the advancer needs of Redis besides a Service's.
type AdvancerStore interface {
	Store
	HoldAdvancer(ctx context.Context, holder string, ttl time.Duration) (bool, error)
	ReleaseAdvancer(ctx context.Context, holder string) error
	WatchDone(ctx context.Context) *store.DoneWatcher
	GlanceWorkflow(ctx context.Context, id string, jobIDs []string) (store.WorkflowGlance, error)
}

var _ AdvancerStore = (*store.Store)(nil)

// AdvancerConfig configures an Advancer. Zero fields take the defaults
// noted.
type AdvancerConfig struct {
	// Interval is how often every active workflow is looked at, whatever
	// was heard on the done channels; zero means 5s, and a negative one
	// means never (the Advancer does nothing).
	Interval time.Duration
	// PendingGrace is how long a workflow may stay pending (its submitter
	// accepting its first jobs) before the advancer takes it over, as if
	// its submitter died; zero means 1m.
	PendingGrace time.Duration
	// Holder names this process in the lease; zero means
	// jobs.NewProcessID().
	Holder string
	// Batch is how many active workflows the sweep lists at a time (it
	// looks at every one, a page at a time); zero means 1000.
	Batch  int
	Config // logger and clock
}

// Advancer moves workflows on: it makes each step's jobs once the steps
// before it have ended, ends workflows, and cancels what a stopped
// workflow has not started. Every server process runs one; a lease in
// Redis lets one at a time per namespace work. Start it, Stop it.
type Advancer struct {
	cfg AdvancerConfig
	svc *Service
	st  AdvancerStore

	loop lifecycle.Loop
}

// NewAdvancer returns an Advancer over the given producer and store.
func NewAdvancer(cfg AdvancerConfig, p Producer, st AdvancerStore) *Advancer {
	cfg.Interval = cmp.Or(cfg.Interval, 5*time.Second)
	cfg.PendingGrace = cmp.Or(cfg.PendingGrace, time.Minute)
	cfg.Batch = cmp.Or(cfg.Batch, 1000)
	cfg.Holder = cmp.Or(cfg.Holder, jobs.NewProcessID())
	svc := NewService(cfg.Config, p, st)
	svc.log = svc.log.With("holder", cfg.Holder)
	return &Advancer{cfg: cfg, svc: svc, st: st}
}

// Start begins advancing in the background; it returns at once. A second
// Start does nothing.
func (a *Advancer) Start(ctx context.Context) error {
	if a.cfg.Interval >= 0 {
		a.loop.Start(ctx, a.run)
	}
	return nil
}

// Stop stops advancing, waits for a pass under way to end (or for ctx) and
// gives the lease up. It is safe to call twice, and without Start.
func (a *Advancer) Stop(ctx context.Context) error {
	if !a.loop.Started() {
		return nil
	}
	if err := a.loop.Stop(ctx); err != nil {
		return fmt.Errorf("stop workflow advancer: %w", err)
	}
	if err := a.st.ReleaseAdvancer(ctx, a.cfg.Holder); err != nil {
		a.svc.log.Debug("cannot release the advancer lease", "err", err)
	}
	return nil
}

// run looks at every active workflow each Interval, and at a workflow at
// once when one of its members' done channels speaks.
func (a *Advancer) run(ctx context.Context) {
	w := a.st.WatchDone(ctx)
	heard := make(chan heardOf, 4096)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.listen(ctx, w, heard)
	}()
	defer wg.Wait()
	defer w.Close() // ends a Next that waits

	watched := map[string]string{} // job id → workflow id
	// looked is what each workflow's last full look saw, while it stands:
	// the sweep reads the whole workflow again only when it has changed.
	looked := map[string]look{}
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	// A member may end before its done channel's subscription is live:
	// a workflow whose members were just made is looked at again shortly.
	recheck := map[string]bool{}
	soon := time.NewTimer(time.Hour)
	defer soon.Stop()
	held := false
	ttl := 3*a.cfg.Interval + 10*time.Second
	sweeps := 0
	sweep := func() {
		var err error
		held, err = a.st.HoldAdvancer(ctx, a.cfg.Holder, ttl)
		if err != nil || !held {
			if err != nil && ctx.Err() == nil {
				a.svc.log.Debug("cannot take the advancer lease", "err", err)
			}
			clear(looked)
			a.rewatch(ctx, w, watched, nil)
			return
		}
		sweeps++
		next := map[string]string{}
		seen := map[string]look{}
		// Every active workflow, a page at a time, the lease renewed with
		// each: a namespace with more than a page of them is swept whole.
		for offset := 0; ; offset += a.cfg.Batch {
			if offset > 0 {
				if held, err = a.st.HoldAdvancer(ctx, a.cfg.Holder, ttl); err != nil || !held {
					return
				}
			}
			ids, err := a.st.ActiveWorkflows(ctx, offset, a.cfg.Batch)
			if err != nil {
				a.svc.log.Debug("cannot list active workflows", "err", err)
				return
			}
			for _, id := range ids {
				if ctx.Err() != nil {
					return
				}
				l, ok := looked[id]
				if !ok || sweeps-l.sweep >= fullLookEvery || !a.unchanged(ctx, id, l) {
					l = a.look(ctx, id)
					l.sweep = sweeps
				}
				if l.settled {
					seen[id] = l
				}
				for j := range l.jobs {
					next[j] = id
				}
			}
			if len(ids) < a.cfg.Batch {
				break
			}
		}
		looked = seen
		a.rewatch(ctx, w, watched, next)
	}
	// one advances the workflows named and watches their members.
	one := func(wfs map[string]bool) {
		for wf := range wfs {
			next := map[string]string{}
			for j, o := range watched {
				if o != wf {
					next[j] = o
				}
			}
			added := false
			l := a.look(ctx, wf)
			if l.settled {
				l.sweep = sweeps
				looked[wf] = l
			} else {
				delete(looked, wf)
			}
			for j := range l.jobs {
				if _, ok := watched[j]; !ok {
					added = true
				}
				next[j] = wf
			}
			a.rewatch(ctx, w, watched, next)
			if added {
				if len(recheck) == 0 {
					soon.Reset(300 * time.Millisecond)
				}
				recheck[wf] = true
			}
		}
	}
	sweep()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sweep()
		case <-soon.C:
			if held {
				wfs := maps.Clone(recheck)
				clear(recheck)
				one(wfs)
			} else {
				clear(recheck)
			}
		case h := <-heard:
			if !held {
				continue
			}
			// Take what else has arrived, and look at each workflow once.
			wfs := map[string]bool{}
			for more := true; more; {
				if wf, ok := watched[h.job]; ok {
					wfs[wf] = true
				}
				if h.workflow != "" {
					wfs[h.workflow] = true
				}
				select {
				case h = <-heard:
				default:
					more = false
				}
			}
			one(wfs)
		}
	}
}

// fullLookEvery bounds the sweeps a workflow that has not changed goes
// without being read whole.
const fullLookEvery = 60

// look is what a full look at a workflow saw: its status, its members'
// count and the statuses of its members that had not ended. A settled look
// is one after which nothing is due until one of those changes (no step
// was refused, no cancel went unanswered, no submitter is still at it).
type look struct {
	status  Status
	members int
	jobs    map[string]jobs.Status
	settled bool
	sweep   int // the sweep that made it
}

// unchanged reports whether a workflow stands as its last look saw it,
// from a glance that costs a read per member still running rather than
// the whole workflow.
func (a *Advancer) unchanged(ctx context.Context, id string, l look) bool {
	ids := make([]string, 0, len(l.jobs))
	for j := range l.jobs {
		ids = append(ids, j)
	}
	g, err := a.st.GlanceWorkflow(ctx, id, ids)
	if err != nil || Status(g.Status) != l.status || g.Members != int64(l.members) {
		return false
	}
	for i, j := range ids {
		if jobs.Status(g.Statuses[i]) != l.jobs[j] {
			return false
		}
	}
	return true
}

// heardOf is what the watcher heard: a job's end, or a workflow accepted.
type heardOf struct{ job, workflow string }

// listen passes on the ids of the jobs whose ends the watcher hears.
func (a *Advancer) listen(ctx context.Context, w *store.DoneWatcher, heard chan<- heardOf) {
	for ctx.Err() == nil {
		job, wf, err := w.Next(ctx, time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// Reconnecting: what is missed meanwhile, the sweep finds.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		if job == "" && wf == "" {
			continue
		}
		select {
		case heard <- heardOf{job: job, workflow: wf}:
		default: // full: the next sweep finds it
		}
	}
}

// rewatch subscribes to the done channels of next's jobs and drops the
// rest of watched, which it leaves equal to next.
func (a *Advancer) rewatch(ctx context.Context, w *store.DoneWatcher, watched, next map[string]string) {
	var add, drop []string
	for j := range next {
		if _, ok := watched[j]; !ok {
			add = append(add, j)
		}
	}
	for j := range watched {
		if _, ok := next[j]; !ok {
			drop = append(drop, j)
		}
	}
	if err := w.Watch(ctx, add...); err != nil {
		a.svc.log.Debug("cannot watch done channels", "err", err)
	}
	if err := w.Unwatch(ctx, drop...); err != nil {
		a.svc.log.Debug("cannot unwatch done channels", "err", err)
	}
	clear(watched)
	for j, wf := range next {
		watched[j] = wf
	}
}

// Advance looks at one workflow and does what its members' records say is
// due: make the next steps' jobs, end the workflow, cancel what an ended
// workflow has not started, and retire it once every member has ended. It
// returns the ids of the members still to end, to be watched. It is safe
// to run anywhere, any number of times, at once: every decision is worked
// out again from the records, and every change is idempotent.
func (a *Advancer) Advance(ctx context.Context, id string) []string {
	l := a.look(ctx, id)
	return slices.Collect(maps.Keys(l.jobs))
}

// look advances a workflow until nothing more is due: a member that ended
// before the advancer heard of it (as fast jobs do), or a step recorded as
// failed without a job, is seen at once. Each pass but the last records at
// least one member, so there are at most as many passes as members, and
// one more.
func (a *Advancer) look(ctx context.Context, id string) look {
	for range MaxMembers + 2 {
		l, progressed, err := a.once(ctx, id)
		if err != nil {
			if ctx.Err() == nil {
				a.svc.log.Warn("cannot advance workflow", "workflow", id, "err", err)
			}
			l.settled = false
			return l
		}
		if !progressed {
			return l
		}
	}
	return look{} // unreachable: a workflow has at most MaxMembers members
}

// once advances a workflow one step: it reports what it saw, and whether it
// recorded members (then what it saw has changed, and it is to be looked at
// again).
func (a *Advancer) once(ctx context.Context, id string) (l look, progressed bool, err error) {
	s := a.svc
	rec, steps, st, err := s.load(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return look{}, false, a.st.RetireWorkflow(ctx, id)
	}
	if err != nil {
		return look{}, false, err
	}
	l = look{status: Status(rec.Status), members: len(rec.Members), jobs: map[string]jobs.Status{}, settled: true}
	for _, m := range st {
		if !m.Status.Terminal() {
			l.jobs[m.JobID] = m.Status
		}
	}
	if l.status == statusPending {
		if s.now().Sub(rec.CreatedAt) < a.cfg.PendingGrace {
			l.settled = false
			return l, false, nil // its submitter is still at it
		}
		s.log.Info("taking over a workflow whose submitter did not finish accepting it", "workflow", id)
		if _, err := a.setStatus(ctx, id, StatusRunning, nil, statusPending); err != nil {
			return l, false, err
		}
		return l, true, nil
	}
	if l.status == StatusRunning {
		p := makePlan(steps, st, rec.OnFailure)
		switch {
		case p.Failed != nil && rec.OnFailure != Continue:
			e := &jobs.Error{Code: "member_failed", Message: failedText(p.Failed)}
			if p.Failed.Error != nil {
				e.Message += ": " + p.Failed.Error.Message
			}
			l.status, err = a.setStatus(ctx, id, StatusFailed, e, StatusRunning)
		case p.Done:
			end, e := StatusSucceeded, (*jobs.Error)(nil)
			if p.Failed != nil {
				end = StatusFailed
				e = &jobs.Error{Code: "member_failed", Message: failedText(p.Failed) + "; the workflow went on (on_failure continue)"}
			}
			l.status, err = a.setStatus(ctx, id, end, e, StatusRunning)
		default:
			// A cancel while the jobs are being made is seen at the next
			// pass, which cancels them before they start.
			m, err := s.advance(ctx, rec, steps, st, false)
			if err != nil {
				return l, false, err
			}
			l.settled = !m.refused
			return l, m.recorded > 0, nil
		}
		if err != nil {
			return l, false, err
		}
	}
	if l.status.Terminal() {
		ended, answered := s.cancelUnstarted(ctx, id, st)
		if ended {
			return look{status: l.status, members: l.members, settled: true}, false, a.st.RetireWorkflow(ctx, id)
		}
		// The members just canceled differ from l.jobs: the next sweep
		// reads the workflow again, and retires it.
		l.settled = answered
	}
	return l, false, nil
}

// failedText says which member failed: its step, and its job if one was
// made.
func failedText(o *Outcome) string {
	if o.JobID == "" {
		return fmt.Sprintf("step %s ended %s (no job could be made for it)", o.Step, o.Status)
	}
	return fmt.Sprintf("step %s (job %s) ended %s", o.Step, o.JobID, o.Status)
}

func (a *Advancer) setStatus(ctx context.Context, id string, to Status, e *jobs.Error, from ...Status) (Status, error) {
	var ej []byte
	if e != nil {
		ej, _ = json.Marshal(e)
	}
	fs := make([]string, len(from))
	for i, f := range from {
		fs[i] = string(f)
	}
	st, changed, err := a.st.SetWorkflowStatus(ctx, id, string(to), ej, a.svc.now(), fs...)
	if err == nil && changed && to.Terminal() {
		a.svc.log.Info("workflow ended", "workflow", id, "status", to)
	}
	return Status(st), err
}
