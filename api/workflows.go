package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/workflow"
)

// The workflow endpoints: POST /v1/workflows (scope submit), GET
// /v1/workflows and /v1/workflows/{id} (read), POST
// /v1/workflows/{id}/cancel (admin). A submission is bounded by the body
// limit (api.max_body_bytes), workflow.MaxMembers jobs and
// workflow.MaxDepth levels of steps, and takes as many tokens of the key's
// job rate as it has jobs; each member is checked as POST /v1/jobs checks
// a job, and a refusal names the field at fault by its path, such as
// steps.chain[2].group[5].job.type.

// workflowRequest is the body of POST /v1/workflows.
type workflowRequest struct {
	Name      string          `json:"name"`
	OnFailure string          `json:"on_failure"`
	Steps     json.RawMessage `json:"steps"`
}

// stepRequest is one step: one of job, chain, group or chord.
type stepRequest struct {
	Job       json.RawMessage   `json:"job"`
	TakeInput *bool             `json:"take_input"`
	Chain     []json.RawMessage `json:"chain"`
	Group     []json.RawMessage `json:"group"`
	Chord     json.RawMessage   `json:"chord"`
}

type chordRequest struct {
	Group []json.RawMessage `json:"group"`
	Then  json.RawMessage   `json:"then"`
}

// stepDecoder reads a workflow's steps into workflow.Step, each job as
// POST /v1/jobs reads a job (JSON types, durations, metadata), so that a
// member is refused for what a job would be.
type stepDecoder struct {
	d   *decoder
	ctx context.Context
	c   caller
	// max bounds the jobs: workflow.MaxMembers, or the key's max_batch
	// if lower (a workflow's first group is published as a batch is).
	max     int
	members int
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

func (sd *stepDecoder) step(raw json.RawMessage, path string, depth int) (workflow.Step, error) {
	var out workflow.Step
	if depth > workflow.MaxDepth {
		return out, apiErr("invalid_field", path, "%s: steps nest more than %d deep", path, workflow.MaxDepth)
	}
	if isNull(raw) {
		return out, apiErr("missing_field", path, "%s is required: a step (job, chain, group or chord)", path)
	}
	var sr stepRequest
	if err := decodeStrict(raw, &sr, path); err != nil {
		return out, err
	}
	kinds := 0
	for _, set := range []bool{!isNull(sr.Job), sr.Chain != nil, sr.Group != nil, !isNull(sr.Chord)} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return out, apiErr("invalid_field", path, "%s: a step is exactly one of job, chain, group or chord, got %d of them", path, kinds)
	}
	out.TakeInput = sr.TakeInput
	list := func(raws []json.RawMessage, prefix string) ([]workflow.Step, error) {
		steps := make([]workflow.Step, len(raws))
		for i, r := range raws {
			var err error
			if steps[i], err = sd.step(r, prefix+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return nil, err
			}
		}
		return steps, nil
	}
	var err error
	switch {
	case !isNull(sr.Job):
		sd.members++
		if sd.members > sd.max {
			if sd.max < workflow.MaxMembers {
				return out, apiErr("invalid_field", path, "%s: key %s may submit at most %d jobs a workflow (its max_batch)", path, sd.c.name(), sd.max)
			}
			return out, apiErr("invalid_field", path, "%s: a workflow holds at most %d jobs", path, workflow.MaxMembers)
		}
		out.Job, err = sd.job(sr.Job, path+".job")
	case sr.Chain != nil:
		out.Chain, err = list(sr.Chain, path+".chain")
	case sr.Group != nil:
		out.Group, err = list(sr.Group, path+".group")
	case !isNull(sr.Chord):
		var cr chordRequest
		if err := decodeStrict(sr.Chord, &cr, path+".chord"); err != nil {
			return out, err
		}
		out.Chord = &workflow.Chord{}
		if out.Chord.Group, err = list(cr.Group, path+".chord.group"); err != nil {
			return out, err
		}
		if cr.Group == nil {
			return out, apiErr("missing_field", path+".chord.group", "%s.chord.group is required: the steps whose outcomes the callback gets", path)
		}
		out.Chord.Then, err = sd.step(cr.Then, path+".chord.then", depth+1)
	}
	return out, err
}

// job reads one job step as POST /v1/jobs reads a job, and checks it
// against its type.
func (sd *stepDecoder) job(raw json.RawMessage, field string) (*workflow.Job, error) {
	var jr jobRequest
	if err := decodeStrict(raw, &jr, field); err != nil {
		return nil, err
	}
	switch {
	case jr.IdempotencyKey != "":
		return nil, apiErr("invalid_field", field+".idempotency_key", "%s.idempotency_key: the workflow gives each member its own", field)
	case !isNull(jr.Unique):
		return nil, apiErr("invalid_field", field+".unique", "%s.unique: a member is made once per workflow already; unique is not taken here", field)
	case jr.OnConflict != nil:
		return nil, apiErr("invalid_field", field+".on_conflict", "%s.on_conflict: a member takes no unique key, so no on_conflict", field)
	case !isNull(jr.RunAt):
		return nil, apiErr("invalid_field", field+".run_at", "%s.run_at: a member runs when its step is reached; use delay to hold it back", field)
	}
	var req producer.Request
	capture := &decoder{maxDepth: sd.d.maxDepth, maxBatch: sd.d.maxBatch,
		buildJob: func(_ context.Context, r producer.Request) (*jobs.Job, error) { req = r; return nil, nil }}
	if _, err := capture.build(sd.ctx, jr, ""); err != nil {
		return nil, under(field, err)
	}
	if req.Type != "" && !sd.c.allowsType(req.Type) {
		return nil, forbidType(sd.c, field+".type", req.Type)
	}
	return &workflow.Job{Type: req.Type, Payload: req.Payload, MaxAttempts: req.MaxAttempts,
		Timeout: jobs.Duration(req.Timeout), Backoff: req.Backoff, Metadata: req.Metadata, Priority: req.Priority,
		Delay: jobs.Duration(req.Delay)}, nil
}

// under puts a refusal's field under prefix.
func under(prefix string, err error) error {
	var ae *Error
	if !errors.As(err, &ae) || ae.Field == "" {
		return err
	}
	e := *ae
	e.Field = prefix + "." + ae.Field
	if strings.HasPrefix(ae.Message, ae.Field) {
		e.Message = prefix + "." + ae.Message
	} else {
		e.Message = prefix + ": " + ae.Message
	}
	return &e
}

// submitWorkflow handles POST /v1/workflows.
func (s *Server) submitWorkflow(w http.ResponseWriter, r *http.Request) {
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	c := callerOf(r.Context())
	spec, members, err := s.decodeWorkflow(r.Context(), c, body)
	if err == nil {
		err = s.admit(r.Context(), c, members)
	}
	var v workflow.View
	if err == nil {
		v, err = s.workflows.Submit(r.Context(), spec, c.name())
	}
	if err = submitError(err); err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	s.audit(r, "submit", "workflow", v.ID, "jobs", members)
	w.Header().Set("Location", "/v1/workflows/"+v.ID)
	writeJSON(w, http.StatusAccepted, v)
}

// submitError is how the API answers a workflow that was not accepted.
func submitError(err error) error {
	var we *workflow.Error
	switch {
	case errors.As(err, &we):
		return apiErr(we.Code, we.Field, "%s", we.Message)
	case errors.Is(err, producer.ErrNoRoute):
		return apiErr("no_route", "", "no queue is bound for a type of the workflow's first steps: start a worker of its pool (%v)", err)
	}
	return err
}

// decodeWorkflow reads a workflow's body and returns it with its count of
// jobs.
func (s *Server) decodeWorkflow(ctx context.Context, c caller, body []byte) (workflow.Spec, int, error) {
	var req workflowRequest
	// Each level of steps nests the JSON up to three deeper (an array, a
	// step, a chord) than a job's own depth.
	if err := decodeBody(body, &req, s.cfg.MaxJSONDepth+3*workflow.MaxDepth+2, 0); err != nil {
		return workflow.Spec{}, 0, err
	}
	sd := &stepDecoder{d: s.decode, ctx: ctx, c: c, max: min(workflow.MaxMembers, s.maxBatch(c))}
	steps, err := sd.step(req.Steps, workflow.Root, 1)
	if err != nil {
		return workflow.Spec{}, 0, err
	}
	return workflow.Spec{Name: req.Name, OnFailure: req.OnFailure, Steps: steps}, sd.members, nil
}

// pathWorkflow reads the workflow id of a request's path.
func pathWorkflow(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := strings.ToLower(r.PathValue("id"))
	if !jobs.ValidID(id) {
		writeError(w, apiErr("invalid_id", "id", "%q is not a workflow id (a UUID such as 0190c5a0-7b1e-7cc3-8f0e-2d1b6c3c9f10)", id))
		return "", false
	}
	return id, true
}

// workflowError is how the API answers a workflow that cannot be read or
// changed.
func (s *Server) workflowError(w http.ResponseWriter, id string, err error) {
	switch {
	case errors.Is(err, workflow.ErrNotFound):
		writeError(w, apiErr("not_found", "", "no such workflow: %s", id))
	case errors.Is(err, workflow.ErrEnded):
		writeError(w, apiErr("conflict", "", "%v; only a running workflow can be canceled", err))
	default:
		writeError(w, toAPIError(s.log, err))
	}
}

// allowsWorkflow refuses a caller limited to types a workflow with a
// member of another type.
func allowsWorkflow(c caller, v workflow.View) error {
	for _, m := range v.Members {
		if !c.allowsType(m.Type) {
			return forbidType(c, "", m.Type)
		}
	}
	return nil
}

// getWorkflow handles GET /v1/workflows/{id}.
func (s *Server) getWorkflow(w http.ResponseWriter, r *http.Request) {
	id, ok := pathWorkflow(w, r)
	if !ok {
		return
	}
	v, err := s.workflows.Get(r.Context(), id)
	if err == nil {
		err = allowsWorkflow(callerOf(r.Context()), v)
	}
	if err != nil {
		s.workflowError(w, id, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// cancelWorkflow handles POST /v1/workflows/{id}/cancel.
func (s *Server) cancelWorkflow(w http.ResponseWriter, r *http.Request) {
	id, ok := pathWorkflow(w, r)
	if !ok {
		return
	}
	var (
		v   workflow.View
		err error
	)
	// Only a caller limited to some types pays for reading the members.
	if c := callerOf(r.Context()); c.limited() {
		if v, err = s.workflows.Get(r.Context(), id); err == nil {
			err = allowsWorkflow(c, v)
		}
	}
	if err == nil {
		v, err = s.workflows.Cancel(r.Context(), id)
	}
	if err != nil {
		s.workflowError(w, id, err)
		return
	}
	s.audit(r, "cancel", "workflow", id)
	writeJSON(w, http.StatusOK, v)
}

type workflowList struct {
	Workflows []workflow.View `json:"workflows"`
	// Before, when set, lists the next page: pass it as ?before=.
	Before string `json:"before,omitempty"`
}

// listWorkflows handles GET /v1/workflows: newest first, ?limit= (1 to
// 1000, default 100) and ?before= (the before of the previous page).
func (s *Server) listWorkflows(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r.Context())
	if c.limited() {
		writeError(w, apiErr("forbidden", "", "key %s is limited to some job types and may not list workflows; read one by its id", c.key.Name))
		return
	}
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, apiErr("invalid_field", "limit", "limit must be a whole number from 1 to 1000"))
			return
		}
		limit = n
	}
	var before time.Time
	if v := q.Get("before"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeError(w, apiErr("invalid_field", "before", "before must be RFC 3339 text, such as the before of the previous page"))
			return
		}
		before = t
	}
	vs, err := s.workflows.List(r.Context(), before, limit)
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	out := workflowList{Workflows: vs}
	if len(vs) == limit {
		out.Before = vs[len(vs)-1].CreatedAt.Format(time.RFC3339Nano)
	}
	writeJSON(w, http.StatusOK, out)
}
