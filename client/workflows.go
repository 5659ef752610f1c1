package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/warrenhq/warren/jobs"
)

// WorkflowRequest asks for a workflow (POST /v1/workflows): jobs in a
// chain, a group or a chord, nested (docs/workflows.md).
type WorkflowRequest struct {
	Name string `json:"name,omitempty"`
	// OnFailure is "stop" (the default) or "continue".
	OnFailure string       `json:"on_failure,omitempty"`
	Steps     WorkflowStep `json:"steps"`
}

// WorkflowStep is one step of a workflow: set exactly one of Job, Chain,
// Group and Chord.
type WorkflowStep struct {
	// Job is a member job: a JobRequest without IdempotencyKey, RunAt or
	// Unique.
	Job *JobRequest `json:"job,omitempty"`
	// TakeInput false keeps the previous step's result out of the job's
	// payload; nil means true. With Job only.
	TakeInput *bool          `json:"take_input,omitempty"`
	Chain     []WorkflowStep `json:"chain,omitempty"`
	Group     []WorkflowStep `json:"group,omitempty"`
	Chord     *WorkflowChord `json:"chord,omitempty"`
}

// WorkflowChord is a group and the step run once all its members have
// ended, with their outcomes as its input.
type WorkflowChord struct {
	Group []WorkflowStep `json:"group"`
	Then  WorkflowStep   `json:"then"`
}

// Workflow is a workflow as the API shows it. Counts, Members and Steps
// are filled when it is read alone (Workflow, SubmitWorkflow,
// CancelWorkflow), not by Workflows.
type Workflow struct {
	ID        string `json:"id"`
	Name      string `json:"name,omitempty"`
	OnFailure string `json:"on_failure"`
	// Status is running, succeeded, failed or canceled.
	Status string      `json:"status"`
	Error  *jobs.Error `json:"error,omitempty"`
	// Jobs counts the job steps: the members, made or to be.
	Jobs        int            `json:"jobs"`
	SubmittedBy string         `json:"submitted_by,omitempty"`
	CreatedAt   time.Time      `json:"created_at"`
	FinishedAt  *time.Time     `json:"finished_at,omitempty"`
	Counts      map[string]int `json:"counts,omitempty"`
	// Members are the job steps in the order written.
	Members []WorkflowMember `json:"members,omitempty"`
	// Steps are the steps as accepted.
	Steps *WorkflowStep `json:"steps,omitempty"`
}

// WorkflowMember is one job step of a workflow: its path (such as
// steps.chain[1].group[0]), and its job's id and status once made;
// "waiting" before its turn, "skipped" when the workflow ended without
// reaching it.
type WorkflowMember struct {
	Step   string      `json:"step"`
	Type   string      `json:"type"`
	JobID  string      `json:"job_id,omitempty"`
	Status string      `json:"status"`
	Error  *jobs.Error `json:"error,omitempty"`
}

// Terminal reports whether the workflow has ended.
func (w *Workflow) Terminal() bool {
	return w.Status == "succeeded" || w.Status == "failed" || w.Status == "canceled"
}

// SubmitWorkflow submits a workflow. A refusal is an APIError whose Field
// is the path of what is wrong, such as steps.chain[2].group[5].job.type.
func (c *Client) SubmitWorkflow(ctx context.Context, req WorkflowRequest) (*Workflow, error) {
	return c.submitWorkflow(ctx, req)
}

// SubmitWorkflowJSON submits a workflow written as JSON (the body of POST
// /v1/workflows), as it is.
func (c *Client) SubmitWorkflowJSON(ctx context.Context, body json.RawMessage) (*Workflow, error) {
	if !json.Valid(body) {
		return nil, errors.New("submit workflow: the workflow is not valid JSON")
	}
	return c.submitWorkflow(ctx, body)
}

func (c *Client) submitWorkflow(ctx context.Context, body any) (*Workflow, error) {
	var w Workflow
	if _, err := c.do(ctx, http.MethodPost, "/v1/workflows", nil, body, &w); err != nil {
		return nil, fmt.Errorf("submit workflow: %w", err)
	}
	return &w, nil
}

// Workflow returns a workflow with its members and steps; IsNotFound
// reports true of the error for an unknown id.
func (c *Client) Workflow(ctx context.Context, id string) (*Workflow, error) {
	return c.workflowAction(ctx, http.MethodGet, id, "", "get")
}

// CancelWorkflow cancels a running workflow: no step starts after it, and
// its members that have not started are canceled. A workflow that had
// ended gives an error for which IsConflict reports true.
func (c *Client) CancelWorkflow(ctx context.Context, id string) (*Workflow, error) {
	return c.workflowAction(ctx, http.MethodPost, id, "/cancel", "cancel")
}

func (c *Client) workflowAction(ctx context.Context, method, id, action, verb string) (*Workflow, error) {
	if id == "" {
		return nil, fmt.Errorf("%s workflow: workflow id is empty", verb)
	}
	var w Workflow
	if _, err := c.do(ctx, method, "/v1/workflows/"+url.PathEscape(id)+action, nil, nil, &w); err != nil {
		return nil, fmt.Errorf("%s workflow %s: %w", verb, id, err)
	}
	return &w, nil
}

// WorkflowPage is a page of workflows, newest first. Before, when not
// zero, asks for the next page.
type WorkflowPage struct {
	Workflows []Workflow `json:"workflows"`
	Before    time.Time  `json:"before,omitzero"`
}

// Workflows lists workflows newest first, without their members: at most
// limit (0: the API's default, 100), created before before (zero: from
// the newest).
func (c *Client) Workflows(ctx context.Context, limit int, before time.Time) (*WorkflowPage, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if !before.IsZero() {
		q.Set("before", before.UTC().Format(time.RFC3339Nano))
	}
	var p WorkflowPage
	if _, err := c.do(ctx, http.MethodGet, "/v1/workflows", q, nil, &p); err != nil {
		return nil, fmt.Errorf("list workflows: %w", err)
	}
	return &p, nil
}
