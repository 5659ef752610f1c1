package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"unicode/utf8"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/workflow"
)

// FuzzDecodeWorkflow feeds the body of POST /v1/workflows to its decoder
// (the seeds in testdata/fuzz/FuzzDecodeWorkflow run with every go test):
// whatever it is, the decoder refuses it with a 4xx of the table, or
// accepts a well-formed workflow within the limits, whose steps are each
// exactly one kind and survive the trip through Redis as JSON.
//
//	go test -run '^$' -fuzz FuzzDecodeWorkflow -fuzztime 60s ./api/
func FuzzDecodeWorkflow(f *testing.F) {
	for _, s := range []string{
		`{"name":"n","on_failure":"continue","steps":{"chain":[{"job":{"type":"sys.echo","payload":{"n":1}}},{"group":[{"job":{"type":"sys.echo"}},{"job":{"type":"sys.sleep","payload":{"ms":1}},"take_input":false}]}]}}`,
		`{"steps":{"chord":{"group":[{"job":{"type":"sys.echo"}}],"then":{"job":{"type":"fuzz.doc","payload":{"title":"t"}}}}}}`,
		`{"steps":{"job":{"type":"sys.echo","timeout":"30s","delay":2,"max_attempts":3.0,"backoff":{"base":"1s"},"metadata":{"k":"v"}}}}`,
		`{"steps":{"job":{"type":"sys.echo"},"chain":null,"group":null,"chord":null,"take_input":null}}`,
		`{"steps":{"job":{"type":"sys.echo"},"group":[]}}`,
		`{"steps":{"chain":[{"chain":[{"chain":[{"chain":[{"chain":[{"chain":[{"chain":[{"chain":[{"chain":[{"job":{"type":"sys.echo"}}]}]}]}]}]}]}]}]}]}}`,
		`{"steps":{"group":[{"job":{"type":"sys.echo","idempotency_key":"k"}}]}}`,
		`{"steps":{"chain":[{"job":{"type":"sys.echo"}},{"job":{"type":"sys.echo","payload":{"input":null}}}]}}`,
		`{"steps":{"chord":{"group":null,"then":null}}}`,
		"{\"name\":\"\\ud800\",\"steps\":{\"job\":{\"type\":\"sys.echo\"}}}",
	} {
		f.Add([]byte(s))
	}
	d := fuzzDecoder(f)
	s := &Server{decode: d, cfg: Config{MaxJSONDepth: fuzzDepth, MaxBatch: 10}}
	// The service checks what the decoder leaves to it (the members against
	// their types, the shape) and stops where it would record the workflow.
	svc := workflow.NewService(workflow.Config{Logger: slog.New(slog.DiscardHandler)}, buildOnly{d.buildJob}, recordNothing{})
	depth := fuzzDepth + 3*workflow.MaxDepth + 2
	f.Fuzz(func(t *testing.T, body []byte) {
		ctx := context.Background()
		sp, members, err := s.decodeWorkflow(ctx, caller{open: true}, body)
		checkSyntaxVerdict(t, body, depth, 0)
		if err == nil {
			if _, err = svc.Submit(ctx, sp, ""); errors.Is(err, errWouldRecord) {
				err = nil
			}
			err = submitError(err)
		}
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if err := wellFormed(body, depth); err != nil {
			t.Fatalf("accepted %q: %v", body, err)
		}
		if members < 1 || members > 10 {
			t.Fatalf("accepted %d members, over the limit of 10", members)
		}
		if n := checkStep(t, sp.Steps, 1); n != members {
			t.Fatalf("counted %d members, the steps hold %d", members, n)
		}
		if !utf8.ValidString(sp.Name) || !utf8.ValidString(sp.OnFailure) {
			t.Fatalf("accepted name %q on_failure %q", sp.Name, sp.OnFailure)
		}
		// The steps are kept in Redis as JSON and read back by the advancer.
		b, err := json.Marshal(sp.Steps)
		if err != nil {
			t.Fatalf("accepted steps cannot be encoded: %v", err)
		}
		var back workflow.Step
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("accepted steps cannot be read back: %v", err)
		}
		if b2, _ := json.Marshal(back); !bytes.Equal(b, b2) {
			t.Fatalf("steps change on the way through Redis:\n%s\n%s", b, b2)
		}
	})
}

// checkStep checks an accepted step and returns its job steps' count.
func checkStep(t *testing.T, s workflow.Step, depth int) int {
	t.Helper()
	if depth > workflow.MaxDepth {
		t.Fatalf("accepted steps %d deep", depth)
	}
	kinds, n := 0, 0
	if s.Job != nil {
		kinds++
		n++
		j := s.Job
		if !jobs.ValidTypeName(j.Type) {
			t.Fatalf("accepted type %q", j.Type)
		}
		if j.Payload != nil && (!json.Valid(j.Payload) || j.Payload[0] != '{') {
			t.Fatalf("accepted payload %q", j.Payload)
		}
		for k, v := range j.Metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				t.Fatalf("accepted metadata %q: %q", k, v)
			}
		}
	}
	each := func(steps []workflow.Step) {
		for _, c := range steps {
			n += checkStep(t, c, depth+1)
		}
	}
	if s.Chain != nil {
		kinds++
		each(s.Chain)
	}
	if s.Group != nil {
		kinds++
		each(s.Group)
	}
	if s.Chord != nil {
		kinds++
		each(s.Chord.Group)
		n += checkStep(t, s.Chord.Then, depth+1)
	}
	if s.TakeInput != nil && s.Job == nil {
		t.Fatalf("accepted take_input on a step that is not a job: %+v", s)
	}
	if kinds != 1 || (s.Chain != nil && len(s.Chain) == 0) || (s.Group != nil && len(s.Group) == 0) ||
		(s.Chord != nil && len(s.Chord.Group) == 0) {
		t.Fatalf("accepted a step of %d kinds, or an empty one: %+v", kinds, s)
	}
	return n
}

// errWouldRecord is where recordNothing stops a submission.
var errWouldRecord = errors.New("the workflow would be recorded now")

// recordNothing is a workflow store that records nothing: a submission
// that reaches it has passed every check.
type recordNothing struct{ workflow.Store }

func (recordNothing) CreateWorkflow(context.Context, store.WorkflowRecord) error {
	return errWouldRecord
}

// buildOnly is a producer that checks and builds jobs and accepts none.
type buildOnly struct {
	build func(ctx context.Context, r producer.Request) (*jobs.Job, error)
}

func (b buildOnly) Build(ctx context.Context, r producer.Request) (*jobs.Job, error) {
	return b.build(ctx, r)
}

func (buildOnly) Accept(context.Context, []*jobs.Job, string) ([]producer.Result, error) {
	return nil, errors.New("not here")
}
