package workflow

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/jobs"
)

func job(typ string) Step { return Step{Job: &Job{Type: typ}} }

func paths(sp []spawn) []string {
	var out []string
	for _, s := range sp {
		out = append(out, s.Path+"<"+string(s.Input)+">")
	}
	return out
}

func TestPlan(t *testing.T) {
	ok := func(result string) memberState {
		return memberState{JobID: "j", Status: jobs.StatusSucceeded, Result: json.RawMessage(result)}
	}
	failed := memberState{JobID: "f", Status: jobs.StatusFailed, Error: &jobs.Error{Code: "handler", Message: "boom"}}
	chord := Step{Chain: []Step{job("a"), {Chord: &Chord{Group: []Step{job("b"), job("c")}, Then: job("d")}}}}
	for _, tc := range []struct {
		name      string
		steps     Step
		st        state
		onFailure string
		spawn     []string
		done      bool
		failed    bool
	}{
		{name: "first step of a chain", steps: chord, st: state{}, spawn: []string{"steps.chain[0]<>"}},
		{name: "group gets the previous result", steps: chord, st: state{"steps.chain[0]": ok(`{"n":1}`)},
			spawn: []string{`steps.chain[1].chord.group[0]<{"n":1}>`, `steps.chain[1].chord.group[1]<{"n":1}>`}},
		{name: "callback waits for every member", steps: chord,
			st: state{"steps.chain[0]": ok(`1`), "steps.chain[1].chord.group[0]": ok(`2`), "steps.chain[1].chord.group[1]": {JobID: "r", Status: jobs.StatusRunning}}},
		{name: "callback gets the outcomes in order", steps: chord,
			st:    state{"steps.chain[0]": ok(`1`), "steps.chain[1].chord.group[0]": ok(`2`), "steps.chain[1].chord.group[1]": ok(`3`)},
			spawn: []string{`steps.chain[1].chord.then<[{"step":"steps.chain[1].chord.group[0]","job_id":"j","status":"succeeded","result":2},{"step":"steps.chain[1].chord.group[1]","job_id":"j","status":"succeeded","result":3}]>`}},
		{name: "stop: nothing more after a failure", steps: chord,
			st: state{"steps.chain[0]": ok(`1`), "steps.chain[1].chord.group[0]": failed, "steps.chain[1].chord.group[1]": ok(`3`)}, failed: true},
		{name: "continue: the callback gets the failure", steps: chord, onFailure: Continue,
			st:     state{"steps.chain[0]": ok(`1`), "steps.chain[1].chord.group[0]": failed, "steps.chain[1].chord.group[1]": ok(`3`)},
			spawn:  []string{`steps.chain[1].chord.then<[{"step":"steps.chain[1].chord.group[0]","job_id":"f","status":"failed","error":{"code":"handler","message":"boom","retryable":false}},{"step":"steps.chain[1].chord.group[1]","job_id":"j","status":"succeeded","result":3}]>`},
			failed: true},
		{name: "continue: a chain stops at a failed job", steps: chord, onFailure: Continue,
			st: state{"steps.chain[0]": failed}, done: true, failed: true},
		{name: "done", steps: chord, done: true,
			st: state{"steps.chain[0]": ok(`1`), "steps.chain[1].chord.group[0]": ok(`2`), "steps.chain[1].chord.group[1]": ok(`3`), "steps.chain[1].chord.then": ok(`4`)}},
		{name: "take_input false", steps: Step{Chain: []Step{job("a"), {Job: &Job{Type: "b"}, TakeInput: new(bool)}}},
			st: state{"steps.chain[0]": ok(`1`)}, spawn: []string{"steps.chain[1]<>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := makePlan(tc.steps, tc.st, tc.onFailure)
			if diff := cmp.Diff(tc.spawn, paths(p.Spawn)); diff != "" {
				t.Errorf("spawn (-want +got):\n%s", diff)
			}
			if p.Done != tc.done || (p.Failed != nil) != tc.failed {
				t.Errorf("done %v failed %v, want %v %v", p.Done, p.Failed != nil, tc.done, tc.failed)
			}
		})
	}
}

func TestWithInput(t *testing.T) {
	for _, tc := range []struct{ payload, input, want string }{
		{"", "1", `{"input":1}`},
		{"{}", `{"a":1}`, `{"input":{"a":1}}`},
		{`{"x":2}`, `[1]`, `{"x":2,"input":[1]}`},
		{`{"x":2}`, ``, `{"x":2,"input":null}`},
	} {
		var in json.RawMessage
		if tc.input != "" {
			in = json.RawMessage(tc.input)
		}
		if got := string(withInput(json.RawMessage(tc.payload), in)); got != tc.want {
			t.Errorf("withInput(%s, %s) = %s, want %s", tc.payload, tc.input, got, tc.want)
		}
	}
}

func TestCheckShape(t *testing.T) {
	deep := job("a")
	for range MaxDepth {
		deep = Step{Chain: []Step{deep}}
	}
	many := make([]Step, MaxMembers+1)
	for i := range many {
		many[i] = job("a")
	}
	for _, tc := range []struct {
		name  string
		sp    Spec
		field string
	}{
		{"bad rule", Spec{OnFailure: "maybe", Steps: job("a")}, "on_failure"},
		{"empty step", Spec{}, "steps"},
		{"two kinds", Spec{Steps: Step{Job: &Job{Type: "a"}, Group: []Step{job("b")}}}, "steps"},
		{"empty group", Spec{Steps: Step{Chain: []Step{job("a"), {Group: []Step{}}}}}, "steps.chain[1].group"},
		{"too deep", Spec{Steps: deep}, "steps" + repeat(".chain[0]", MaxDepth)},
		{"too many", Spec{Steps: Step{Group: many}}, "steps.group[1000]"},
		{"input set", Spec{Steps: Step{Chain: []Step{job("a"), {Job: &Job{Type: "b", Payload: json.RawMessage(`{"input":1}`)}}}}}, "steps.chain[1].job.payload.input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkShape(&tc.sp)
			e, ok := err.(*Error)
			if !ok || e.Field != tc.field {
				t.Errorf("checkShape: %v, want a refusal of %s", err, tc.field)
			}
		})
	}
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}
