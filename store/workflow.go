package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/jobs"
)

// A workflow's record (jobs.Namespace.WorkflowKey) and its members
// (WorkflowMembersKey). The store keeps them as text; package workflow
// says what the steps and members mean.

// WorkflowRecord is one workflow as kept in Redis.
type WorkflowRecord struct {
	ID   string
	Name string
	// OnFailure is the failure rule: "stop" or "continue".
	OnFailure string
	// Status is pending (its first jobs are being accepted), running,
	// succeeded, failed or canceled.
	Status string
	// Steps is the workflow's steps as JSON.
	Steps []byte
	// Jobs counts the job steps, its members to be.
	Jobs        int
	SubmittedBy string
	// Error is why it failed or was canceled, as JSON (a jobs.Error).
	Error      []byte
	CreatedAt  time.Time
	FinishedAt time.Time
	// Members maps a step's path to its member as JSON; Workflow fills it,
	// the list does not.
	Members map[string]string
}

const (
	wfID, wfName, wfOnFailure, wfStatus, wfSteps  = "id", "name", "on_failure", "status", "steps"
	wfSubmittedBy, wfError, wfCreated, wfFinished = "submitted_by", "error", "created_at", "finished_at"
	wfJobs                                        = "jobs"
)

// CreateWorkflow writes a new workflow's record and enters it in the list
// of workflows and in the set the advancer looks after, in one
// transaction: a workflow is never recorded without being looked after.
func (s *Store) CreateWorkflow(ctx context.Context, w WorkflowRecord) error {
	score := float64(w.CreatedAt.UnixMilli())
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.ns.WorkflowKey(w.ID), wfID, w.ID, wfName, w.Name, wfOnFailure, w.OnFailure,
			wfStatus, w.Status, wfSteps, w.Steps, wfSubmittedBy, w.SubmittedBy, wfCreated, w.CreatedAt.UnixMilli(), wfJobs, w.Jobs)
		p.ZAdd(ctx, s.ns.WorkflowsKey(), redis.Z{Score: score, Member: w.ID})
		p.ZAdd(ctx, s.ns.ActiveWorkflowsKey(), redis.Z{Score: score, Member: w.ID})
		return nil
	})
	if err != nil {
		return unavailable("create workflow "+w.ID, err)
	}
	return nil
}

// DeleteWorkflow removes a workflow that was never accepted.
func (s *Store) DeleteWorkflow(ctx context.Context, id string) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.ns.WorkflowKey(id), s.ns.WorkflowMembersKey(id))
		p.ZRem(ctx, s.ns.WorkflowsKey(), id)
		p.ZRem(ctx, s.ns.ActiveWorkflowsKey(), id)
		return nil
	})
	if err != nil {
		return unavailable("delete workflow "+id, err)
	}
	return nil
}

// Workflow returns a workflow's record with its members, or ErrNotFound.
func (s *Store) Workflow(ctx context.Context, id string) (WorkflowRecord, error) {
	var rec, mem *redis.MapStringStringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		rec = p.HGetAll(ctx, s.ns.WorkflowKey(id))
		mem = p.HGetAll(ctx, s.ns.WorkflowMembersKey(id))
		return nil
	})
	if err != nil {
		return WorkflowRecord{}, unavailable("get workflow "+id, err)
	}
	if len(rec.Val()) == 0 {
		return WorkflowRecord{}, fmt.Errorf("get workflow %s: %w", id, ErrNotFound)
	}
	w := decodeWorkflow(rec.Val())
	w.Members = mem.Val()
	return w, nil
}

func decodeWorkflow(h map[string]string) WorkflowRecord {
	w := WorkflowRecord{ID: h[wfID], Name: h[wfName], OnFailure: h[wfOnFailure], Status: h[wfStatus],
		Steps: []byte(h[wfSteps]), SubmittedBy: h[wfSubmittedBy]}
	w.Jobs, _ = strconv.Atoi(h[wfJobs])
	if e := h[wfError]; e != "" {
		w.Error = []byte(e)
	}
	if ms, err := strconv.ParseInt(h[wfCreated], 10, 64); err == nil {
		w.CreatedAt = time.UnixMilli(ms).UTC()
	}
	if ms, err := strconv.ParseInt(h[wfFinished], 10, 64); err == nil {
		w.FinishedAt = time.UnixMilli(ms).UTC()
	}
	return w
}

// PutWorkflowMembers records members of a workflow (path → member JSON).
// A path already recorded keeps its member: the first job made for a step
// is its job.
func (s *Store) PutWorkflowMembers(ctx context.Context, id string, members map[string]string) error {
	if len(members) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for path, m := range members {
			p.HSetNX(ctx, s.ns.WorkflowMembersKey(id), path, m)
		}
		return nil
	})
	if err != nil {
		return unavailable("record members of workflow "+id, err)
	}
	return nil
}

// setWorkflowStatusLua moves a workflow to ARGV[1] if its status is one of
// ARGV from 4; a terminal status also sets finished_at (ARGV[2]) and the
// error (ARGV[3], if any). Returns the status after the call (nil when
// there is no record).
const setWorkflowStatusLua = `
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return false end
for i = 4, #ARGV do
  if st == ARGV[i] then
    redis.call('HSET', KEYS[1], 'status', ARGV[1])
    if ARGV[1] == 'succeeded' or ARGV[1] == 'failed' or ARGV[1] == 'canceled' then
      redis.call('HSET', KEYS[1], 'finished_at', ARGV[2])
      if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[3]) end
    end
    return {1, ARGV[1]}
  end
end
return {0, st}
`

var setWorkflowStatusScript = redis.NewScript(setWorkflowStatusLua)

// SetWorkflowStatus moves a workflow to status if it is in one of from, in
// one atomic step, so the first end recorded stands (like a job's). errJSON
// (a jobs.Error as JSON, or empty) says why it failed or was canceled. It
// returns the status the workflow has after the call and whether this call
// set it, or ErrNotFound.
func (s *Store) SetWorkflowStatus(ctx context.Context, id, status string, errJSON []byte, now time.Time, from ...string) (string, bool, error) {
	args := append([]any{status, now.UnixMilli(), string(errJSON)}, anys(from)...)
	res, err := setWorkflowStatusScript.Run(ctx, s.rdb, []string{s.ns.WorkflowKey(id)}, args...).Slice()
	if errors.Is(err, redis.Nil) {
		return "", false, fmt.Errorf("workflow %s: %w", id, ErrNotFound)
	}
	if err != nil || len(res) != 2 {
		return "", false, unavailable("set status of workflow "+id, err)
	}
	changed, _ := res[0].(int64)
	st, _ := res[1].(string)
	return st, changed == 1, nil
}

// AnnounceWorkflow tells the advancer a workflow was accepted, so that it
// watches its first members at once rather than at its next look.
func (s *Store) AnnounceWorkflow(ctx context.Context, id string) error {
	if err := s.rdb.Publish(ctx, s.ns.WorkflowEventsChannel(), id).Err(); err != nil {
		return unavailable("announce workflow "+id, err)
	}
	return nil
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// RetireWorkflow ends the advancer's care of a workflow whose members have
// all ended: it leaves the active set, and its record and members expire
// after the retention, as a finished job's record does.
func (s *Store) RetireWorkflow(ctx context.Context, id string) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, s.ns.ActiveWorkflowsKey(), id)
		p.PExpire(ctx, s.ns.WorkflowKey(id), s.cfg.Retention)
		p.PExpire(ctx, s.ns.WorkflowMembersKey(id), s.cfg.Retention)
		return nil
	})
	if err != nil {
		return unavailable("retire workflow "+id, err)
	}
	return nil
}

// ActiveWorkflows returns the ids of the workflows the advancer looks
// after, oldest first: at most limit of them, from the offset-th.
func (s *Store) ActiveWorkflows(ctx context.Context, offset, limit int) ([]string, error) {
	ids, err := s.rdb.ZRange(ctx, s.ns.ActiveWorkflowsKey(), int64(offset), int64(offset+limit)-1).Result()
	if err != nil {
		return nil, unavailable("list active workflows", err)
	}
	return ids, nil
}

// WorkflowGlance is what can change a workflow's progress, read cheaply:
// its status, how many members it has recorded, and the statuses of the
// jobs named ("" for a job without a record). The advancer compares it
// with what it saw at its last look before it reads the whole workflow.
type WorkflowGlance struct {
	Status   string
	Members  int64
	Statuses []string
}

// GlanceWorkflow reads a workflow's WorkflowGlance, with the statuses of
// the jobs ids names, in one round trip; a workflow without a record has
// status "".
func (s *Store) GlanceWorkflow(ctx context.Context, id string, ids []string) (WorkflowGlance, error) {
	var (
		status *redis.StringCmd
		n      *redis.IntCmd
		each   = make([]*redis.StringCmd, len(ids))
	)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		status = p.HGet(ctx, s.ns.WorkflowKey(id), wfStatus)
		n = p.HLen(ctx, s.ns.WorkflowMembersKey(id))
		for i, j := range ids {
			each[i] = p.HGet(ctx, s.ns.JobKey(j), fStatus)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return WorkflowGlance{}, unavailable("glance at workflow "+id, err)
	}
	g := WorkflowGlance{Status: status.Val(), Members: n.Val(), Statuses: make([]string, len(ids))}
	for i, c := range each {
		g.Statuses[i] = c.Val()
	}
	return g, nil
}

// ListWorkflows returns workflows newest first, without their members:
// at most limit of them created before before (zero: from the newest).
// Entries whose record has expired are dropped from the list.
func (s *Store) ListWorkflows(ctx context.Context, before time.Time, limit int) ([]WorkflowRecord, error) {
	max := "+inf"
	if !before.IsZero() {
		max = "(" + strconv.FormatInt(before.UnixMilli(), 10)
	}
	ids, err := s.rdb.ZRevRangeByScore(ctx, s.ns.WorkflowsKey(), &redis.ZRangeBy{Max: max, Min: "-inf", Count: int64(limit)}).Result()
	if err != nil {
		return nil, unavailable("list workflows", err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, s.ns.WorkflowKey(id))
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("list workflows", err)
	}
	out := make([]WorkflowRecord, 0, len(ids))
	var gone []any
	for i, c := range cmds {
		if len(c.Val()) == 0 {
			gone = append(gone, ids[i])
			continue
		}
		out = append(out, decodeWorkflow(c.Val()))
	}
	if len(gone) > 0 {
		_ = s.rdb.ZRem(ctx, s.ns.WorkflowsKey(), gone...).Err()
	}
	return out, nil
}

// Jobs returns the records of the jobs ids name, in one round trip; a job
// without a record has nil in its place.
func (s *Store) Jobs(ctx context.Context, ids []string) ([]*jobs.Job, error) {
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, s.ns.JobKey(id))
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("get jobs", err)
	}
	out := make([]*jobs.Job, len(ids))
	for i, c := range cmds {
		if len(c.Val()) == 0 {
			continue
		}
		if out[i], err = decode(c.Val()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// HoldAdvancer takes the namespace's workflow advancer lease for holder, or
// keeps it if holder has it, for ttl; it reports whether holder holds it.
func (s *Store) HoldAdvancer(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	n, err := leaseScript.Run(ctx, s.rdb, []string{s.ns.AdvancerKey()}, holder, ttl.Milliseconds()).Int()
	if err != nil {
		return false, unavailable("advancer lease", err)
	}
	return n == 1, nil
}

// ReleaseAdvancer gives the advancer lease up if holder has it.
func (s *Store) ReleaseAdvancer(ctx context.Context, holder string) error {
	if err := releaseScript.Run(ctx, s.rdb, []string{s.ns.AdvancerKey()}, holder).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("release advancer lease", err)
	}
	return nil
}

// DoneWatcher hears the ends of chosen jobs on their done channels
// (jobs.Namespace.DoneChannel), and the workflows accepted
// (WorkflowEventsChannel), over one pub/sub connection of its own. What
// it hears is a hint: a publication is lost while the connection is down,
// so a caller that must not miss an end also looks at the records.
type DoneWatcher struct {
	s      *Store
	ps     *redis.PubSub
	prefix string
}

// WatchDone opens a DoneWatcher; Close it.
func (s *Store) WatchDone(ctx context.Context) *DoneWatcher {
	return &DoneWatcher{s: s, ps: s.rdb.Subscribe(context.WithoutCancel(ctx), s.ns.WorkflowEventsChannel()), prefix: s.ns.DoneChannel("")}
}

// Watch subscribes to the done channels of ids (without waiting for Redis
// to confirm).
func (w *DoneWatcher) Watch(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	ch := make([]string, len(ids))
	for i, id := range ids {
		ch[i] = w.prefix + id
	}
	return w.ps.Subscribe(ctx, ch...)
}

// Unwatch unsubscribes from the done channels of ids.
func (w *DoneWatcher) Unwatch(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	ch := make([]string, len(ids))
	for i, id := range ids {
		ch[i] = w.prefix + id
	}
	return w.ps.Unsubscribe(ctx, ch...)
}

// Next waits up to timeout for the end of a watched job, or a workflow's
// announcement, and returns the job's id or the workflow's; both are ""
// with a nil error when nothing came (or only a confirmation).
func (w *DoneWatcher) Next(ctx context.Context, timeout time.Duration) (job, workflow string, err error) {
	msg, err := w.ps.ReceiveTimeout(ctx, timeout)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "", "", nil
		}
		return "", "", err
	}
	m, ok := msg.(*redis.Message)
	switch {
	case !ok:
	case m.Channel == w.s.ns.WorkflowEventsChannel():
		return "", m.Payload, nil
	case len(m.Channel) > len(w.prefix):
		return m.Channel[len(w.prefix):], "", nil
	}
	return "", "", nil
}

// Close ends the subscription; a Next waiting returns.
func (w *DoneWatcher) Close() error { return w.ps.Close() }
