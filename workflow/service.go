package workflow

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/store"
)

// Producer is what workflows need of the producer: building a member's
// job with every check a job gets, and accepting jobs.
type Producer interface {
	Build(ctx context.Context, req producer.Request) (*jobs.Job, error)
	Accept(ctx context.Context, js []*jobs.Job, traceparent string) ([]producer.Result, error)
}

// Store is what workflows need of Redis.
type Store interface {
	CreateWorkflow(ctx context.Context, w store.WorkflowRecord) error
	DeleteWorkflow(ctx context.Context, id string) error
	Workflow(ctx context.Context, id string) (store.WorkflowRecord, error)
	PutWorkflowMembers(ctx context.Context, id string, members map[string]string) error
	SetWorkflowStatus(ctx context.Context, id, status string, errJSON []byte, now time.Time, from ...string) (string, bool, error)
	AnnounceWorkflow(ctx context.Context, id string) error
	RetireWorkflow(ctx context.Context, id string) error
	ActiveWorkflows(ctx context.Context, offset, limit int) ([]string, error)
	ListWorkflows(ctx context.Context, before time.Time, limit int) ([]store.WorkflowRecord, error)
	Jobs(ctx context.Context, ids []string) ([]*jobs.Job, error)
	Cancel(ctx context.Context, id string, now time.Time) (jobs.Status, error)
}

var (
	_ Producer = (*producer.Producer)(nil)
	_ Store    = (*store.Store)(nil)
)

// ErrNotFound means there is no such workflow (or its record expired).
var ErrNotFound = errors.New("workflow not found")

// ErrEnded means the workflow had already ended.
var ErrEnded = errors.New("workflow already ended")

// Config configures a Service. Zero fields take the defaults noted.
type Config struct {
	// Logger receives what the caller is not told; nil means
	// slog.Default().
	Logger *slog.Logger
	// Now tells the time; nil means time.Now.
	Now func() time.Time
}

// Service submits, reads and cancels workflows. It is safe for concurrent
// use. The Advancer moves them on.
type Service struct {
	p   Producer
	st  Store
	log *slog.Logger
	now func() time.Time
}

// NewService returns a Service over the given producer and store.
func NewService(cfg Config, p Producer, st Store) *Service {
	s := &Service{p: p, st: st, log: cmp.Or(cfg.Logger, slog.Default()).With("component", "workflow"), now: cfg.Now}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Submit checks a workflow (its shape and limits, and every member against
// its type, as a job is checked) and accepts it: it returns once the
// workflow is recorded and the jobs of its first steps are accepted (see
// producer.Accept). A refusal is an *Error, and nothing is kept; so is
// nothing when a server is away (store.ErrUnavailable,
// queue.ErrUnavailable) or a first job has no queue (producer.ErrNoRoute).
func (s *Service) Submit(ctx context.Context, sp Spec, submittedBy string) (View, error) {
	n, err := checkShape(&sp)
	if err != nil {
		return View{}, err
	}
	var bad error
	visit(sp.Steps, Root, false, func(path string, st Step, input bool) {
		if bad != nil {
			return
		}
		req := request(st, "", path, submittedBy)
		if input && st.takesInput() {
			// The input is not known yet: the payload is checked with it
			// null, and a refusal of the input alone stands over until
			// the job is made.
			req.Payload = withInput(st.Job.Payload, nil)
		}
		_, err := s.p.Build(ctx, req)
		var pe *producer.Error
		switch {
		case errors.As(err, &pe) && input && st.takesInput() && pe.Field == "payload."+InputField && pe.Unknown:
			// Whatever the step before hands it, the job would be refused.
			bad = refuse("invalid_field", path+".take_input",
				"%s: the step receives the result of the one before it as payload.%s, which type %s's payload schema does not take: set take_input to false, or add %s to the schema",
				path, InputField, st.Job.Type, InputField)
		case errors.As(err, &pe) && input && st.takesInput() && isInputField(pe.Field):
		case errors.As(err, &pe):
			bad = refuse(pe.Code, path+".job."+pe.Field, "%s.job: %s", path, pe.Message)
		case err != nil:
			bad = err
		}
	})
	if bad != nil {
		return View{}, bad
	}
	steps, err := json.Marshal(sp.Steps)
	if err != nil {
		return View{}, fmt.Errorf("encode steps: %w", err)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	rec := store.WorkflowRecord{ID: jobs.NewID(), Name: sp.Name, OnFailure: sp.OnFailure, Status: string(statusPending),
		Steps: steps, Jobs: n, SubmittedBy: submittedBy, CreatedAt: now}
	// Recorded pending first, in the set the advancer looks after: should
	// this process die before the first jobs are accepted, the advancer
	// takes the workflow over after pendingGrace.
	if err := s.st.CreateWorkflow(ctx, rec); err != nil {
		return View{}, err
	}
	made, err := s.advance(ctx, rec, sp.Steps, nil, true)
	if err != nil {
		cleanup := context.WithoutCancel(ctx)
		for _, id := range made.jobs {
			if _, cerr := s.st.Cancel(cleanup, id, s.now()); cerr != nil && !errors.Is(cerr, store.ErrNotFound) && !errors.Is(cerr, store.ErrTerminal) {
				s.log.Warn("cannot cancel a job of a workflow that was not accepted", "workflow", rec.ID, "job", id, "err", cerr)
			}
		}
		if derr := s.st.DeleteWorkflow(cleanup, rec.ID); derr != nil {
			s.log.Warn("cannot remove a workflow that was not accepted", "workflow", rec.ID, "err", derr)
		}
		return View{}, err
	}
	if _, _, err := s.st.SetWorkflowStatus(ctx, rec.ID, string(StatusRunning), nil, s.now(), string(statusPending)); err != nil {
		// The advancer moves it on after pendingGrace: it is accepted.
		s.log.Warn("cannot mark a workflow running", "workflow", rec.ID, "err", err)
	}
	if err := s.st.AnnounceWorkflow(ctx, rec.ID); err != nil {
		// The advancer finds it at its next look.
		s.log.Debug("cannot announce a workflow", "workflow", rec.ID, "err", err)
	}
	return s.Get(ctx, rec.ID)
}

// isInputField reports whether a payload refusal is about the input alone.
func isInputField(f string) bool {
	const p = "payload." + InputField
	return f == p || len(f) > len(p) && f[:len(p)+1] == p+"."
}

// request is the producer's request for a job step's member.
func request(st Step, wfID, path, submittedBy string) producer.Request {
	j := st.Job
	md := maps.Clone(j.Metadata)
	if md == nil {
		md = map[string]string{}
	}
	md["workflow"], md["workflow_step"] = wfID, path
	if wfID == "" {
		md["workflow"] = "00000000-0000-0000-0000-000000000000" // its length, for the limits
	}
	return producer.Request{
		Type: j.Type, Payload: j.Payload, MaxAttempts: j.MaxAttempts, Timeout: j.Timeout.Std(),
		Backoff: j.Backoff, Metadata: md, Priority: j.Priority, Delay: j.Delay.Std(), SubmittedBy: submittedBy,
		IdempotencyKey: idempotencyKey(wfID, path),
	}
}

// idempotencyKey names a step's member: the same step of the same workflow
// is made once, whoever makes it.
func idempotencyKey(wfID, path string) string { return KeyPrefix + wfID + ":" + path }

// KeyPrefix begins every member's idempotency key. The API keeps it to the
// workflows: a submitter's own key with it could stand for a member before
// the advancer makes it.
const KeyPrefix = "workflow:"

// made is what one advance did.
type made struct {
	// jobs are the ids of the jobs made.
	jobs []string
	// recorded counts the steps recorded as members: those jobs, and the
	// steps no job could be made for (recorded as failed).
	recorded int
	// refused says a due step's job was refused by the broker: it is
	// tried again at the next look.
	refused bool
}

// advance makes the jobs of the steps that are due and records them as
// members. Called with no members (first), it makes the first steps' jobs,
// and a job the broker refused is an error (the workflow is not accepted);
// later, such a step waits for the next look.
func (s *Service) advance(ctx context.Context, rec store.WorkflowRecord, steps Step, st state, first bool) (out made, err error) {
	p := makePlan(steps, st, rec.OnFailure)
	if len(p.Spawn) == 0 {
		return out, nil
	}
	members := map[string]string{}
	var (
		js    []*jobs.Job
		paths []string
	)
	for _, sp := range p.Spawn {
		req := request(sp.Step, rec.ID, sp.Path, rec.SubmittedBy)
		if sp.Has {
			req.Payload = withInput(sp.Step.Job.Payload, sp.Input)
		}
		if len(req.Payload) > MaxInput {
			members[sp.Path] = memberJSON(member{Error: &jobs.Error{Code: "input_too_large",
				Message: fmt.Sprintf("the payload with the previous step's result is %d bytes, over %d", len(req.Payload), MaxInput)}})
			continue
		}
		j, err := s.p.Build(ctx, req)
		var pe *producer.Error
		switch {
		case errors.As(err, &pe):
			// The type changed since, or the input does not fit its
			// schema: the step fails, and the workflow goes on by its rule.
			members[sp.Path] = memberJSON(member{Error: &jobs.Error{Code: "invalid_input", Message: pe.Message}})
			continue
		case err != nil:
			return out, err
		}
		js, paths = append(js, j), append(paths, sp.Path)
	}
	if len(js) > 0 {
		res, err := s.p.Accept(ctx, js, "")
		if err != nil {
			return out, err
		}
		var refusal error
		for i, r := range res {
			switch {
			case r.Err != nil && errors.Is(r.Err, store.ErrIdempotencyConflict):
				members[paths[i]] = memberJSON(member{Error: &jobs.Error{Code: "conflict", Message: r.Err.Error()}})
			case r.Err != nil:
				refusal = cmp.Or(refusal, fmt.Errorf("%s: %w", paths[i], r.Err))
			default:
				members[paths[i]] = memberJSON(member{JobID: r.Job.ID})
				out.jobs = append(out.jobs, r.Job.ID)
			}
		}
		if refusal != nil && first {
			return out, refusal
		}
		if refusal != nil {
			out.refused = true
			s.log.Warn("a workflow step's job was not accepted; trying again later", "workflow", rec.ID, "err", refusal)
		}
	}
	if err := s.st.PutWorkflowMembers(ctx, rec.ID, members); err != nil {
		return out, err
	}
	out.recorded = len(members)
	return out, nil
}

func memberJSON(m member) string {
	b, _ := json.Marshal(m)
	return string(b)
}

// load reads a workflow, its steps and its members' jobs.
func (s *Service) load(ctx context.Context, id string) (store.WorkflowRecord, Step, state, error) {
	rec, err := s.st.Workflow(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return rec, Step{}, nil, fmt.Errorf("workflow %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return rec, Step{}, nil, err
	}
	var steps Step
	if err := json.Unmarshal(rec.Steps, &steps); err != nil {
		return rec, Step{}, nil, fmt.Errorf("workflow %s: decode steps: %w", id, err)
	}
	st := state{}
	var ids, paths []string
	for path, raw := range rec.Members {
		var m member
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			st[path] = memberState{Status: jobs.StatusFailed, Error: &jobs.Error{Code: "invalid_member", Message: "the member's record is not valid JSON"}}
			continue
		}
		if m.JobID == "" {
			st[path] = memberState{Status: jobs.StatusFailed, Error: m.Error}
			continue
		}
		ids, paths = append(ids, m.JobID), append(paths, path)
	}
	js, err := s.st.Jobs(ctx, ids)
	if err != nil {
		return rec, Step{}, nil, err
	}
	for i, j := range js {
		if j == nil {
			st[paths[i]] = memberState{JobID: ids[i], Status: jobs.StatusFailed,
				Error: &jobs.Error{Code: "lost", Message: "the job's record is gone (expired or removed)"}}
			continue
		}
		st[paths[i]] = memberState{JobID: j.ID, Status: j.Status, Result: j.Result, Error: j.Error}
	}
	return rec, steps, st, nil
}

// Get returns a workflow with its members, or ErrNotFound.
func (s *Service) Get(ctx context.Context, id string) (View, error) {
	rec, steps, st, err := s.load(ctx, id)
	if err != nil {
		return View{}, err
	}
	v := view(rec)
	v.Steps = &steps
	v.Counts = map[string]int{}
	visit(steps, Root, false, func(path string, step Step, _ bool) {
		mv := MemberView{Step: path, Type: step.Job.Type, Status: MemberWaiting}
		if m, ok := st[path]; ok {
			mv.JobID, mv.Status = m.JobID, string(m.Status)
			if m.Status != jobs.StatusSucceeded {
				mv.Error = m.Error
			}
		} else if v.Status.Terminal() {
			mv.Status = MemberSkipped
		}
		v.Counts[mv.Status]++
		v.Members = append(v.Members, mv)
	})
	return v, nil
}

func view(rec store.WorkflowRecord) View {
	v := View{ID: rec.ID, Name: rec.Name, OnFailure: rec.OnFailure, Status: Status(rec.Status),
		Jobs: rec.Jobs, SubmittedBy: rec.SubmittedBy, CreatedAt: rec.CreatedAt}
	if v.Status == statusPending {
		v.Status = StatusRunning
	}
	if !rec.FinishedAt.IsZero() {
		at := rec.FinishedAt
		v.FinishedAt = &at
	}
	if len(rec.Error) > 0 {
		var e jobs.Error
		if json.Unmarshal(rec.Error, &e) == nil {
			v.Error = &e
		}
	}
	return v
}

// List returns workflows newest first, without members: at most limit,
// created before before (zero: from the newest).
func (s *Service) List(ctx context.Context, before time.Time, limit int) ([]View, error) {
	recs, err := s.st.ListWorkflows(ctx, before, limit)
	if err != nil {
		return nil, err
	}
	out := make([]View, len(recs))
	for i, r := range recs {
		out[i] = view(r)
	}
	return out, nil
}

// Cancel ends a workflow as canceled: no step is started after it, and its
// members that are not running are canceled (running ones finish). It
// returns ErrEnded (wrapped) for a workflow that had ended, ErrNotFound
// for none.
func (s *Service) Cancel(ctx context.Context, id string) (View, error) {
	e, _ := json.Marshal(jobs.Error{Code: "canceled", Message: "canceled by request"})
	st, changed, err := s.st.SetWorkflowStatus(ctx, id, string(StatusCanceled), e, s.now(), string(StatusRunning), string(statusPending))
	if errors.Is(err, store.ErrNotFound) {
		return View{}, fmt.Errorf("workflow %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return View{}, err
	}
	if !changed {
		return View{}, fmt.Errorf("cancel workflow %s: %w (%s)", id, ErrEnded, st)
	}
	// The advancer does this too, until every member has ended; doing it
	// now spares the wait.
	if _, _, sta, err := s.load(ctx, id); err == nil {
		s.cancelUnstarted(ctx, id, sta)
	}
	return s.Get(ctx, id)
}

// cancelUnstarted cancels the members that have not ended and are not
// running. It reports whether every member has ended, and whether every
// cancel it tried was answered (a failed one is tried again at the next
// look).
func (s *Service) cancelUnstarted(ctx context.Context, wfID string, st state) (ended, answered bool) {
	ended, answered = true, true
	for _, m := range st {
		if m.Status.Terminal() {
			continue
		}
		if m.Status == jobs.StatusRunning {
			ended = false
			continue
		}
		if _, err := s.st.Cancel(ctx, m.JobID, s.now()); err != nil && !errors.Is(err, store.ErrTerminal) && !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("cannot cancel a member of an ended workflow", "workflow", wfID, "job", m.JobID, "err", err)
			ended, answered = false, false
		}
	}
	return ended, answered
}
