package workflow

import (
	"encoding/json"
	"strconv"

	"github.com/warrenhq/warren/jobs"
)

// A workflow's progress is never stored as such: it is worked out again,
// each time, from its steps and its members' records. plan is that
// working-out, a pure function, so that any advancer at any time reaches
// the same decision, and one that died half way leaves nothing to repair.

// state is what a plan reads: for each job step's path, its member's
// outcome so far. A step without an entry has no job yet.
type state map[string]memberState

// memberState is a member as its job's record stands.
type memberState struct {
	JobID  string
	Status jobs.Status // the job's; failed for a step no job could be made for
	Result json.RawMessage
	Error  *jobs.Error
}

// spawn is a job step that is due: its job is to be made now.
type spawn struct {
	Path  string
	Step  Step
	Input json.RawMessage // nil: the step gets no input
	Has   bool            // whether it gets one (a null result is one)
}

// plan is what a workflow's steps and members say.
type plan struct {
	// Done says the top step has ended, with Outcome.
	Done    bool
	Outcome Outcome
	// Spawn are the job steps whose turn has come and that have no job.
	Spawn []spawn
	// Failed is the first member (in document order) that ended without
	// succeeding, if any.
	Failed *Outcome
}

// makePlan works out where a workflow stands. Under Stop, no step is due
// once a member has failed: the caller ends the workflow instead.
func makePlan(steps Step, st state, onFailure string) plan {
	var p plan
	visit(steps, Root, false, func(path string, _ Step, _ bool) {
		if m, ok := st[path]; ok && p.Failed == nil && m.Status.Terminal() && m.Status != jobs.StatusSucceeded {
			o := m.outcome(path)
			p.Failed = &o
		}
	})
	e := evaluator{st: st}
	p.Done, p.Outcome = e.eval(steps, Root, nil, false)
	if p.Failed == nil || onFailure == Continue {
		p.Spawn = e.spawn
	}
	return p
}

func (m memberState) outcome(path string) Outcome {
	o := Outcome{Step: path, JobID: m.JobID, Status: m.Status}
	if m.Status == jobs.StatusSucceeded {
		o.Result = m.Result
		if o.Result == nil {
			o.Result = json.RawMessage("null")
		}
	} else {
		o.Error = m.Error
	}
	return o
}

type evaluator struct {
	st    state
	spawn []spawn
}

// eval returns whether the step at path has ended and how; on the way it
// notes the job steps that are due and have no job.
func (e *evaluator) eval(s Step, path string, input json.RawMessage, has bool) (bool, Outcome) {
	switch {
	case s.Job != nil:
		m, ok := e.st[path]
		if !ok {
			sp := spawn{Path: path, Step: s}
			if has && s.takesInput() {
				sp.Input, sp.Has = input, true
			}
			e.spawn = append(e.spawn, sp)
			return false, Outcome{}
		}
		if !m.Status.Terminal() {
			return false, Outcome{}
		}
		return true, m.outcome(path)
	case s.Chain != nil:
		var out Outcome
		for i, c := range s.Chain {
			done, o := e.eval(c, path+".chain["+strconv.Itoa(i)+"]", input, has)
			if !done {
				return false, Outcome{}
			}
			out = o
			// A failed job ends its chain: the next step would want its
			// result. A group's outcome is the list of its members', which
			// the next step gets whatever they were.
			if o.Status != jobs.StatusSucceeded && c.Group == nil {
				return true, o
			}
			input, has = o.Result, true
		}
		return true, out
	case s.Group != nil:
		return e.group(s.Group, path+".group", input, has, path)
	case s.Chord != nil:
		done, o := e.group(s.Chord.Group, path+".chord.group", input, has, path+".chord.group")
		if !done {
			return false, Outcome{}
		}
		return e.eval(s.Chord.Then, path+".chord.then", o.Result, true)
	}
	return true, Outcome{Step: path, Status: jobs.StatusFailed}
}

// group evaluates every member of a group: it has ended when all have, and
// its outcome's result is their outcomes, in order.
func (e *evaluator) group(members []Step, prefix string, input json.RawMessage, has bool, path string) (bool, Outcome) {
	outs := make([]Outcome, len(members))
	done, status := true, jobs.StatusSucceeded
	for i, c := range members {
		d, o := e.eval(c, prefix+"["+strconv.Itoa(i)+"]", input, has)
		if !d {
			done = false
			continue
		}
		outs[i] = o
		if o.Status != jobs.StatusSucceeded {
			status = jobs.StatusFailed
		}
	}
	if !done {
		return false, Outcome{}
	}
	list, _ := json.Marshal(outs)
	return true, Outcome{Step: path, Status: status, Result: list}
}
