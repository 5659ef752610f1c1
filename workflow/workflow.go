// Package workflow runs jobs in an order: a chain (each step gets the
// previous step's result), a group (steps in parallel) and a chord (a
// group, then a callback that gets every member's outcome), nested. A
// workflow's members are ordinary jobs, made through the producer with the
// same checks and guarantee as any; the workflow adds a record in Redis
// and an Advancer that makes each step's jobs once the steps before it have
// ended.
//
// Nothing hangs: a member that ends in any way (succeeded, failed for good,
// canceled, its record gone) is an outcome the workflow moves on from, and
// the Advancer finds every end twice over: on the job's done channel, and
// by looking at every active workflow's members every Interval, which is
// what makes a lost publication, or an advancer that died mid-step, cost a
// delay and nothing else. Each member is made with an idempotency key
// derived from the workflow and the step's path, so a step is never made
// twice, whoever makes it and however often. docs/workflows.md is the
// user's account.
package workflow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/warrenhq/warren/jobs"
)

// Limits on a workflow.
const (
	// MaxMembers bounds the job steps of one workflow.
	MaxMembers = 1000
	// MaxDepth bounds how deeply steps nest: a workflow that is one job is
	// 1 deep, a chain of jobs 2.
	MaxDepth = 10
	// MaxName bounds a workflow's name, in bytes.
	MaxName = 200
	// MaxInput bounds the payload of a member made with the previous
	// step's result in it, in bytes; a bigger one fails the step
	// (code input_too_large).
	MaxInput = 1 << 20
)

// InputField is the payload member in which a step gets the previous
// step's result.
const InputField = "input"

// Failure rules.
const (
	// Stop ends the workflow as failed at the first member that ends
	// without succeeding, and cancels the members not running.
	Stop = "stop"
	// Continue lets the other branches go on: a chain stops at a failed
	// job, but a group's next step (a chord's callback) runs with every
	// outcome.
	Continue = "continue"
)

// Status is where a workflow stands.
type Status string

// The statuses of a workflow.
const (
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusCanceled  Status = "canceled"
	// statusPending is a workflow whose first jobs are being accepted;
	// it is shown as running.
	statusPending Status = "pending"
)

// Terminal reports whether s is a final status.
func (s Status) Terminal() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCanceled
}

// Spec is what a workflow is asked to do.
type Spec struct {
	// Name is for people; it need not be unique.
	Name string `json:"name,omitempty"`
	// OnFailure is Stop (the default) or Continue.
	OnFailure string `json:"on_failure,omitempty"`
	// Steps is the workflow's one top step, usually a chain.
	Steps Step `json:"steps"`
}

// Step is one of: a job, a chain, a group or a chord.
type Step struct {
	Job *Job `json:"job,omitempty"`
	// TakeInput false keeps the previous step's result out of a job's
	// payload; nil means true. Only with Job.
	TakeInput *bool  `json:"take_input,omitempty"`
	Chain     []Step `json:"chain,omitempty"`
	Group     []Step `json:"group,omitempty"`
	Chord     *Chord `json:"chord,omitempty"`
}

// Chord is a group and the step that runs once all its members have
// ended, with their outcomes as its input.
type Chord struct {
	Group []Step `json:"group"`
	Then  Step   `json:"then"`
}

// Job is a job step: what POST /v1/jobs takes, less what the workflow
// sets (idempotency_key, run_at).
type Job struct {
	Type        string            `json:"type"`
	Payload     json.RawMessage   `json:"payload,omitempty"`
	MaxAttempts int               `json:"max_attempts,omitempty"`
	Timeout     jobs.Duration     `json:"timeout,omitempty"`
	Backoff     *jobs.Backoff     `json:"backoff,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	// Priority is the job's priority, 0 to 9 (docs/priorities.md).
	Priority int `json:"priority,omitempty"`
	// Delay holds the job back for this long after its step is reached.
	Delay jobs.Duration `json:"delay,omitempty"`
}

// takesInput reports whether a job step gets the previous result.
func (s Step) takesInput() bool { return s.TakeInput == nil || *s.TakeInput }

// Error is a refused workflow: the field at fault (a path such as
// steps.chain[2].group[5].job.type), a code (the HTTP API's:
// missing_field, invalid_field, unknown_type, invalid_payload…) and a
// message. Nothing was recorded for it.
type Error struct {
	Code, Field, Message string
}

func (e *Error) Error() string { return e.Message }

func refuse(code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Outcome is how a step ended, as the step after it gets it: a job's
// outcome names the job; a group's result is the list of its members'
// outcomes, in the group's order; a chain's outcome is its last step's, a
// chord's its callback's.
type Outcome struct {
	Step   string          `json:"step"`
	JobID  string          `json:"job_id,omitempty"`
	Status jobs.Status     `json:"status"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *jobs.Error     `json:"error,omitempty"`
}

// member is a job step's member as recorded (store.WorkflowRecord.Members):
// the job made for it, or why none could be.
type member struct {
	JobID string      `json:"job_id,omitempty"`
	Error *jobs.Error `json:"error,omitempty"`
}

// visit calls f for every job step under s, in document order, with its
// path and whether it gets an input.
func visit(s Step, path string, input bool, f func(path string, s Step, input bool)) {
	switch {
	case s.Job != nil:
		f(path, s, input)
	case s.Chain != nil:
		for i, c := range s.Chain {
			visit(c, path+".chain["+strconv.Itoa(i)+"]", input || i > 0, f)
		}
	case s.Group != nil:
		for i, c := range s.Group {
			visit(c, path+".group["+strconv.Itoa(i)+"]", input, f)
		}
	case s.Chord != nil:
		for i, c := range s.Chord.Group {
			visit(c, path+".chord.group["+strconv.Itoa(i)+"]", input, f)
		}
		visit(s.Chord.Then, path+".chord.then", true, f)
	}
}

// Root is the path of a workflow's top step.
const Root = "steps"

// checkShape checks a spec's structure and limits (not its jobs against
// their types: Service.Submit does) and returns its job steps' count.
func checkShape(sp *Spec) (int, error) {
	switch sp.OnFailure {
	case "":
		sp.OnFailure = Stop
	case Stop, Continue:
	default:
		return 0, refuse("invalid_field", "on_failure", "on_failure must be %q or %q, got %q", Stop, Continue, sp.OnFailure)
	}
	if !utf8.ValidString(sp.Name) {
		return 0, refuse("invalid_encoding", "name", "name: not UTF-8 text")
	}
	if len(sp.Name) > MaxName {
		return 0, refuse("invalid_field", "name", "name must be at most %d bytes", MaxName)
	}
	n := 0
	var walk func(s *Step, path string, depth int, input bool) error
	walk = func(s *Step, path string, depth int, input bool) error {
		if depth > MaxDepth {
			return refuse("invalid_field", path, "%s: steps nest more than %d deep", path, MaxDepth)
		}
		kinds := 0
		for _, set := range []bool{s.Job != nil, s.Chain != nil, s.Group != nil, s.Chord != nil} {
			if set {
				kinds++
			}
		}
		if kinds != 1 {
			return refuse("invalid_field", path, "%s: a step is one of job, chain, group or chord, got %d of them", path, kinds)
		}
		if s.TakeInput != nil && s.Job == nil {
			return refuse("invalid_field", path+".take_input", "%s.take_input: only a job step takes it", path)
		}
		each := func(steps []Step, kind string, input func(i int) bool) error {
			if len(steps) == 0 {
				return refuse("invalid_field", path+"."+kind, "%s.%s: want at least one step", path, kind)
			}
			for i := range steps {
				if err := walk(&steps[i], path+"."+kind+"["+strconv.Itoa(i)+"]", depth+1, input(i)); err != nil {
					return err
				}
			}
			return nil
		}
		switch {
		case s.Job != nil:
			n++
			if n > MaxMembers {
				return refuse("invalid_field", path, "a workflow holds at most %d jobs", MaxMembers)
			}
			if err := normalizeJob(s.Job, path+".job", input && s.takesInput()); err != nil {
				return err
			}
		case s.Chain != nil:
			return each(s.Chain, "chain", func(i int) bool { return input || i > 0 })
		case s.Group != nil:
			return each(s.Group, "group", func(int) bool { return input })
		case s.Chord != nil:
			if err := each(s.Chord.Group, "chord.group", func(int) bool { return input }); err != nil {
				return err
			}
			return walk(&s.Chord.Then, path+".chord.then", depth+1, true)
		}
		return nil
	}
	if err := walk(&sp.Steps, Root, 1, false); err != nil {
		return 0, err
	}
	return n, nil
}

// normalizeJob compacts a job step's payload and refuses one that sets the
// input member the workflow fills in.
func normalizeJob(j *Job, field string, input bool) error {
	for _, k := range []string{"workflow", "workflow_step"} {
		if _, ok := j.Metadata[k]; ok {
			return refuse("invalid_field", field+".metadata."+k, "%s.metadata.%s: the workflow sets it on every member", field, k)
		}
	}
	p := bytes.TrimSpace(j.Payload)
	if len(p) == 0 || string(p) == "null" {
		j.Payload = nil
		return nil
	}
	if !json.Valid(p) || p[0] != '{' {
		return refuse("invalid_field", field+".payload", "%s.payload must be a JSON object", field)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, p); err != nil {
		return refuse("invalid_field", field+".payload", "%s.payload is not valid JSON", field)
	}
	j.Payload = b.Bytes()
	if input {
		var m map[string]json.RawMessage
		if json.Unmarshal(j.Payload, &m) == nil {
			if _, ok := m[InputField]; ok {
				return refuse("invalid_field", field+".payload."+InputField,
					"%s.payload.%s is where the step gets the previous step's result: leave it out, or set take_input false", field, InputField)
			}
		}
	}
	return nil
}

// withInput returns payload with the input member added: the payload's own
// text, then the input, so the same result always gives the same bytes
// (the member's idempotency key compares them).
func withInput(payload, input json.RawMessage) json.RawMessage {
	if input == nil {
		input = json.RawMessage("null")
	}
	p := bytes.TrimSpace(payload)
	if len(p) == 0 || string(p) == "{}" {
		return json.RawMessage(`{"` + InputField + `":` + string(input) + `}`)
	}
	out := make([]byte, 0, len(p)+len(input)+12)
	out = append(out, p[:len(p)-1]...)
	out = append(out, `,"`+InputField+`":`...)
	out = append(out, input...)
	return append(out, '}')
}

// View is a workflow as the API shows it.
type View struct {
	ID          string      `json:"id"`
	Name        string      `json:"name,omitempty"`
	OnFailure   string      `json:"on_failure"`
	Status      Status      `json:"status"`
	Error       *jobs.Error `json:"error,omitempty"`
	SubmittedBy string      `json:"submitted_by,omitempty"`
	CreatedAt   time.Time   `json:"created_at"`
	FinishedAt  *time.Time  `json:"finished_at,omitempty"`
	// Jobs counts the workflow's job steps: its members, made or to be.
	Jobs int `json:"jobs"`
	// Counts are the members by status (only when read alone).
	Counts map[string]int `json:"counts,omitempty"`
	// Members are the job steps in the order they are written, with the
	// job made for each (only when read alone).
	Members []MemberView `json:"members,omitempty"`
	// Steps are the steps as accepted (only when read alone).
	Steps *Step `json:"steps,omitempty"`
}

// MemberView is one job step of a workflow and where it stands: its job's
// status once made; "waiting" before (the steps before it have not
// ended), "skipped" when the workflow ended without reaching it.
type MemberView struct {
	Step   string      `json:"step"`
	Type   string      `json:"type"`
	JobID  string      `json:"job_id,omitempty"`
	Status string      `json:"status"`
	Error  *jobs.Error `json:"error,omitempty"`
}

// Member statuses besides a job's.
const (
	MemberWaiting = "waiting"
	MemberSkipped = "skipped"
)
