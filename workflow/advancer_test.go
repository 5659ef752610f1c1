package workflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/workers"
	"github.com/warrenhq/warren/workers/sys"
	"github.com/warrenhq/warren/workflow"
)

type fixture struct {
	env *testenv.Env
	svc *workflow.Service
	p   *producer.Producer
}

// setup starts a sys worker in a namespace of the test's, and returns a
// Service over it; advancers are the test's to start.
func setup(t *testing.T) fixture {
	t.Helper()
	env := testenv.New(t)
	w := workers.New(workers.Config{Logger: env.Log}, env.Broker, env.Store)
	if err := sys.Register(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	for _, typ := range []string{"sys.echo", "sys.fail", "sys.sleep"} {
		testenv.Eventually(t, 30*time.Second, typ+" declared", func() bool {
			_, err := env.Store.Type(context.Background(), typ)
			return err == nil
		})
	}
	p := producer.New(producer.Config{Logger: env.Log}, env.Broker, env.Store)
	return fixture{env: env, p: p, svc: workflow.NewService(workflow.Config{Logger: env.Log}, p, env.Store)}
}

func (f fixture) advancer(t *testing.T, interval time.Duration) *workflow.Advancer {
	t.Helper()
	a := workflow.NewAdvancer(workflow.AdvancerConfig{Interval: interval, Config: workflow.Config{Logger: f.env.Log}}, f.p, f.env.Store)
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	return a
}

func spec(t *testing.T, text string) workflow.Spec {
	t.Helper()
	var sp workflow.Spec
	if err := json.Unmarshal([]byte(text), &sp); err != nil {
		t.Fatal(err)
	}
	return sp
}

// waitEnd waits for a workflow to end and for the advancer to retire it
// (every member ended).
func waitEnd(t *testing.T, f fixture, id string) workflow.View {
	t.Helper()
	var v workflow.View
	testenv.Eventually(t, 30*time.Second, "workflow "+id+" to end", func() bool {
		var err error
		v, err = f.svc.Get(context.Background(), id)
		if err != nil || !v.Status.Terminal() {
			return false
		}
		for _, m := range v.Members {
			if !jobs.Status(m.Status).Terminal() && m.Status != workflow.MemberSkipped {
				return false
			}
		}
		return true
	})
	return v
}

// An advancer's goroutines end with Stop.
func TestAdvancerStops(t *testing.T) {
	env := testenv.New(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p := producer.New(producer.Config{Logger: env.Log}, env.Broker, env.Store)
	a := workflow.NewAdvancer(workflow.AdvancerConfig{Interval: 50 * time.Millisecond, Config: workflow.Config{Logger: env.Log}}, p, env.Store)
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(120 * time.Millisecond) // a few sweeps
	for range 2 {
		if err := a.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWorkflowChainResultsFlow(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.advancer(t, 2*time.Second)
	v, err := f.svc.Submit(context.Background(), spec(t, `{"name":"wf-chain","steps":{"chain":[
		{"job":{"type":"sys.echo","payload":{"n":1}}},
		{"job":{"type":"sys.echo","payload":{"step":2}}},
		{"job":{"type":"sys.echo"}}]}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	v = waitEnd(t, f, v.ID)
	if v.Status != workflow.StatusSucceeded || v.Counts["succeeded"] != 3 {
		t.Fatalf("workflow %s, counts %v; want succeeded, 3 succeeded", v.Status, v.Counts)
	}
	last, err := f.env.Store.Get(context.Background(), v.Members[2].JobID)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"input":{"step":2,"input":{"n":1}}}`
	if string(last.Result) != want {
		t.Errorf("last result %s, want %s", last.Result, want)
	}
	if last.Metadata["workflow"] != v.ID || last.Metadata["workflow_step"] != "steps.chain[2]" {
		t.Errorf("metadata %v", last.Metadata)
	}
}

func TestWorkflowStopCancelsUnstarted(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.advancer(t, 200*time.Millisecond)
	v, err := f.svc.Submit(context.Background(), spec(t, `{"steps":{"chain":[
		{"group":[
			{"job":{"type":"sys.fail","payload":{"fail_times":1,"permanent":true}}},
			{"job":{"type":"sys.echo","delay":"1m"}}]},
		{"job":{"type":"sys.echo"}}]}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	v = waitEnd(t, f, v.ID)
	got := map[string]string{}
	for _, m := range v.Members {
		got[m.Step] = m.Status
	}
	want := map[string]string{"steps.chain[0].group[0]": "failed", "steps.chain[0].group[1]": "canceled", "steps.chain[1]": "skipped"}
	if v.Status != workflow.StatusFailed || v.Error == nil || v.Error.Code != "member_failed" {
		t.Errorf("workflow %s %+v, want failed with member_failed", v.Status, v.Error)
	}
	for k, s := range want {
		if got[k] != s {
			t.Errorf("member %s is %s, want %s", k, got[k], s)
		}
	}
}

func TestWorkflowContinueHandsTheCallbackEveryOutcome(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.advancer(t, 200*time.Millisecond)
	v, err := f.svc.Submit(context.Background(), spec(t, `{"on_failure":"continue","steps":{"chord":{
		"group":[{"job":{"type":"sys.echo","payload":{"i":0}}},
			{"job":{"type":"sys.fail","payload":{"fail_times":1,"permanent":true}}},
			{"job":{"type":"sys.echo","payload":{"i":2}}}],
		"then":{"job":{"type":"sys.echo"}}}}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	v = waitEnd(t, f, v.ID)
	if v.Status != workflow.StatusFailed {
		t.Errorf("status %s, want failed (a member failed)", v.Status)
	}
	then := v.Members[3]
	if then.Step != "steps.chord.then" || then.Status != "succeeded" {
		t.Fatalf("callback %+v, want succeeded", then)
	}
	j, err := f.env.Store.Get(context.Background(), then.JobID)
	if err != nil {
		t.Fatal(err)
	}
	var in struct{ Input []workflow.Outcome }
	if err := json.Unmarshal(j.Payload, &in); err != nil {
		t.Fatal(err)
	}
	if len(in.Input) != 3 || in.Input[0].Status != "succeeded" || in.Input[1].Status != "failed" ||
		in.Input[1].Error == nil || in.Input[2].Status != "succeeded" || string(in.Input[2].Result) != `{"i":2}` {
		t.Errorf("callback input %s", j.Payload)
	}
}

// A done publication nobody heard (no advancer ran when the member ended)
// costs a sweep, nothing more; and advancers racing over one workflow make
// each step once.
func TestWorkflowSweepAndRaces(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	v, err := f.svc.Submit(ctx, spec(t, `{"steps":{"chain":[{"job":{"type":"sys.echo"}},
		{"group":[{"job":{"type":"sys.echo"}},{"job":{"type":"sys.echo"}},{"job":{"type":"sys.echo"}}]},
		{"job":{"type":"sys.echo"}}]}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	// No advancer yet: the first job ends unheard.
	testenv.Eventually(t, 30*time.Second, "the first job to end", func() bool {
		j, err := f.env.Store.Get(ctx, mustGet(t, f, v.ID).Members[0].JobID)
		return err == nil && j.Status == jobs.StatusSucceeded
	})
	// Advancers without the lease, called at once, as a crashed and a live
	// one might.
	a := workflow.NewAdvancer(workflow.AdvancerConfig{Interval: -1, Config: workflow.Config{Logger: f.env.Log}}, f.p, f.env.Store)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { a.Advance(ctx, v.ID) })
	}
	wg.Wait()
	f.advancer(t, 100*time.Millisecond)
	v = waitEnd(t, f, v.ID)
	if v.Status != workflow.StatusSucceeded {
		t.Fatalf("status %s", v.Status)
	}
	page, err := f.env.Store.List(ctx, store.Query{Meta: map[string]string{"workflow": v.ID}, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Jobs) != 5 {
		t.Errorf("%d jobs carry the workflow, want 5 (one per step)", len(page.Jobs))
	}
}

func mustGet(t *testing.T, f fixture, id string) workflow.View {
	t.Helper()
	v, err := f.svc.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestWorkflowCancel(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.advancer(t, 200*time.Millisecond)
	ctx := context.Background()
	v, err := f.svc.Submit(ctx, spec(t, `{"steps":{"chain":[{"job":{"type":"sys.echo","delay":"1m"}},{"job":{"type":"sys.echo"}}]}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if v, err = f.svc.Cancel(ctx, v.ID); err != nil || v.Status != workflow.StatusCanceled {
		t.Fatalf("cancel: %v %s", err, v.Status)
	}
	v = waitEnd(t, f, v.ID)
	if v.Members[0].Status != "canceled" || v.Members[1].Status != workflow.MemberSkipped {
		t.Errorf("members %+v", v.Members)
	}
	if _, err := f.svc.Cancel(ctx, v.ID); !errors.Is(err, workflow.ErrEnded) {
		t.Errorf("second cancel: %v, want ErrEnded", err)
	}
	if _, err := f.svc.Get(ctx, jobs.NewID()); !errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("get of none: %v", err)
	}
}

func TestWorkflowRefusals(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, tc := range []struct{ body, field, code string }{
		{`{"steps":{"chain":[{"job":{"type":"sys.echo"}},{"job":{"type":"wf.nothing"}}]}}`, "steps.chain[1].job.type", "unknown_type"},
		{`{"steps":{"group":[{"job":{"type":"sys.sleep","payload":{"ms":"x"}}}]}}`, "steps.group[0].job.payload.ms", "invalid_payload"},
		{`{"steps":{"job":{"type":"sys.echo","metadata":{"workflow":"x"}}}}`, "steps.job.metadata.workflow", "invalid_field"},
	} {
		_, err := f.svc.Submit(context.Background(), spec(t, tc.body), "")
		var we *workflow.Error
		if !errors.As(err, &we) || we.Field != tc.field || we.Code != tc.code {
			t.Errorf("%s: %v (%+v), want %s at %s", tc.body, err, we, tc.code, tc.field)
		}
	}
	if ids, _ := f.env.Store.ActiveWorkflows(context.Background(), 0, 10); len(ids) != 0 {
		t.Errorf("refused workflows were recorded: %v", ids)
	}
}

// gatedProducer holds the acceptance of one step's job until released, as
// an advancer stalled mid-step would be.
type gatedProducer struct {
	workflow.Producer
	step    string
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gatedProducer) Accept(ctx context.Context, js []*jobs.Job, traceparent string) ([]producer.Result, error) {
	for _, j := range js {
		if j.Metadata["workflow_step"] == g.step {
			g.once.Do(func() { close(g.reached) })
			select {
			case <-g.release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return g.Producer.Accept(ctx, js, traceparent)
}

// A workflow canceled while the advancer is making a step's jobs: the job
// it makes after the cancel is canceled before it starts, and nothing is
// made after it.
func TestWorkflowCanceledMidStep(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	gate := &gatedProducer{Producer: f.p, step: "steps.chain[1]", reached: make(chan struct{}), release: make(chan struct{})}
	a := workflow.NewAdvancer(workflow.AdvancerConfig{Interval: 200 * time.Millisecond, Config: workflow.Config{Logger: f.env.Log}}, gate, f.env.Store)
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	v, err := f.svc.Submit(ctx, spec(t, `{"name":"wf-midstep","steps":{"chain":[{"job":{"type":"sys.echo"}},
		{"job":{"type":"sys.echo","delay":"1h"}},{"job":{"type":"sys.echo"}}]}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-gate.reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the advancer never made the second step")
	}
	if v, err = f.svc.Cancel(ctx, v.ID); err != nil || v.Status != workflow.StatusCanceled {
		t.Fatalf("cancel: %v %s", err, v.Status)
	}
	close(gate.release)
	// Retired: every member has ended, the one being made included.
	testenv.Eventually(t, 30*time.Second, "the workflow to be retired", func() bool {
		ids, err := f.env.Store.ActiveWorkflows(ctx, 0, 100)
		return err == nil && !slices.Contains(ids, v.ID)
	})
	v = mustGet(t, f, v.ID)
	if v.Status != workflow.StatusCanceled {
		t.Errorf("status %s, want canceled", v.Status)
	}
	got := []string{v.Members[0].Status, v.Members[1].Status, v.Members[2].Status}
	if want := []string{"succeeded", "canceled", workflow.MemberSkipped}; !slices.Equal(got, want) {
		t.Errorf("members %v, want %v", got, want)
	}
	if v.Members[1].JobID == "" {
		t.Error("the job made after the cancel is not recorded")
	}
}

// The sweep looks at every active workflow, however many pages of them
// there are, and however long the first page's take: ends nobody heard
// are found for each.
func TestWorkflowSweepPagesThroughAll(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	// The oldest two stay active for an hour, filling the first page.
	for range 2 {
		if _, err := f.svc.Submit(ctx, spec(t, `{"steps":{"job":{"type":"sys.echo","delay":"1h"}}}`), ""); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for range 3 {
		v, err := f.svc.Submit(ctx, spec(t, `{"steps":{"chain":[{"job":{"type":"sys.echo"}},{"job":{"type":"sys.echo"}}]}}`), "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	// No advancer yet: the first jobs end unheard.
	for _, id := range ids {
		testenv.Eventually(t, 30*time.Second, "the first job to end", func() bool {
			j, err := f.env.Store.Get(ctx, mustGet(t, f, id).Members[0].JobID)
			return err == nil && j.Status == jobs.StatusSucceeded
		})
	}
	a := workflow.NewAdvancer(workflow.AdvancerConfig{Interval: 200 * time.Millisecond, Batch: 2, Config: workflow.Config{Logger: f.env.Log}}, f.p, f.env.Store)
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	for _, id := range ids {
		if v := waitEnd(t, f, id); v.Status != workflow.StatusSucceeded {
			t.Errorf("%s: status %s", id, v.Status)
		}
	}
}

// deafStore is a store whose done watcher listens to another namespace:
// the advancer hears no end, and moves on by its sweep alone. It counts
// the workflows read whole and the sweeps.
type deafStore struct {
	*store.Store
	other         *store.Store
	reads, sweeps atomic.Int64
}

func (d *deafStore) WatchDone(ctx context.Context) *store.DoneWatcher { return d.other.WatchDone(ctx) }

func (d *deafStore) Workflow(ctx context.Context, id string) (store.WorkflowRecord, error) {
	d.reads.Add(1)
	return d.Store.Workflow(ctx, id)
}

func (d *deafStore) HoldAdvancer(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	d.sweeps.Add(1)
	return d.Store.HoldAdvancer(ctx, holder, ttl)
}

// With every publication lost, the sweep still moves each workflow on; and
// it reads a workflow whole only when a glance says it changed.
func TestWorkflowSweepAloneAndGlances(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	deaf := &deafStore{Store: f.env.Store, other: testenv.New(t).Store}
	a := workflow.NewAdvancer(workflow.AdvancerConfig{Interval: 50 * time.Millisecond, Config: workflow.Config{Logger: f.env.Log}}, f.p, deaf)
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	v, err := f.svc.Submit(ctx, spec(t, `{"steps":{"chain":[{"job":{"type":"sys.echo"}},
		{"group":[{"job":{"type":"sys.echo"}},{"job":{"type":"sys.echo"}}]},{"job":{"type":"sys.echo"}}]}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if v = waitEnd(t, f, v.ID); v.Status != workflow.StatusSucceeded {
		t.Fatalf("status %s", v.Status)
	}

	// A workflow waiting an hour for its member: sweeps go on, reads do not.
	if _, err := f.svc.Submit(ctx, spec(t, `{"steps":{"job":{"type":"sys.echo","delay":"1h"}}}`), ""); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the waiting workflow to be read", func() bool { return deaf.reads.Load() > 0 })
	reads, sweeps := deaf.reads.Load(), deaf.sweeps.Load()
	testenv.Eventually(t, 30*time.Second, "ten more sweeps", func() bool { return deaf.sweeps.Load() >= sweeps+10 })
	if n := deaf.reads.Load() - reads; n > 1 {
		t.Errorf("the unchanged workflow was read whole %d times over ten sweeps, want at most once", n)
	}
}
