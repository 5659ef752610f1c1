package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/workflow"
)

// A chord of 100 where one member fails for good, with a worker killed
// with SIGKILL mid-run, and on_failure continue: nothing hangs, the
// killed worker's jobs run again elsewhere, and the callback runs once
// with all 100 outcomes, in the group's order.
func TestWorkflowChordOf100WithAWorkerKilled(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	s := shared(env)
	_, apiURL := startAPI(t, s)
	victim, _ := startWorker(t, s, nil, "--concurrency", "8")
	startWorker(t, s, nil, "--concurrency", "8")

	const n, failing = 100, 37
	members := make([]string, n)
	for i := range members {
		members[i] = `{"job":{"type":"sys.sleep","payload":{"ms":200}}}`
	}
	members[failing] = `{"job":{"type":"sys.fail","payload":{"fail_times":1,"permanent":true}}}`
	body := `{"name":"wf-chord-100","on_failure":"continue","steps":{"chord":{"group":[` +
		strings.Join(members, ",") + `],"then":{"job":{"type":"sys.echo"}}}}}`
	var v workflow.View
	if code := postJSON(t, apiURL+"/v1/workflows", body, &v); code != http.StatusAccepted {
		t.Fatalf("submit: %d", code)
	}

	// Kill a worker once the group is under way.
	testenv.Eventually(t, time.Minute, "some members to end", func() bool {
		return getWorkflow(t, apiURL, v.ID).Counts["succeeded"] >= 10
	})
	victim.Kill(t)

	var end workflow.View
	testenv.Eventually(t, 2*time.Minute, "the workflow to end", func() bool {
		end = getWorkflow(t, apiURL, v.ID)
		return end.Status != workflow.StatusRunning
	})
	if end.Status != workflow.StatusFailed || end.Error == nil || end.Error.Code != "member_failed" {
		t.Errorf("workflow ended %s (%+v), want failed: a member failed", end.Status, end.Error)
	}
	if end.Counts["succeeded"] != n || end.Counts["failed"] != 1 {
		t.Errorf("members %v, want %d succeeded (99 and the callback) and 1 failed", end.Counts, n)
	}
	then := end.Members[n]
	if then.Step != "steps.chord.then" || then.Status != "succeeded" {
		t.Fatalf("callback %+v, want succeeded", then)
	}
	var job struct {
		Payload struct{ Input []workflow.Outcome } `json:"payload"`
	}
	getJSON(t, apiURL+"/v1/jobs/"+then.JobID, &job)
	in := job.Payload.Input
	if len(in) != n {
		t.Fatalf("the callback got %d outcomes, want %d", len(in), n)
	}
	for i, o := range in {
		wantStatus := "succeeded"
		if i == failing {
			wantStatus = "failed"
		}
		if o.Step != fmt.Sprintf("steps.chord.group[%d]", i) || string(o.Status) != wantStatus || o.JobID != end.Members[i].JobID {
			t.Errorf("outcome %d: %+v, want %s of %s", i, o, wantStatus, end.Members[i].JobID)
		}
	}
	if in[failing].Error == nil {
		t.Errorf("the failed member's outcome has no error")
	}
	testenv.Summary(t, "workflow chord members=%d failed=1 callback_outcomes=%d status=%s", n, len(in), end.Status)
}

// With on_failure stop, a chain's failed step ends the workflow, and the
// steps after it are never made; a step's result flows into the next.
func TestWorkflowChainAndStopOverHTTP(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	s := shared(env)
	_, apiURL := startAPI(t, s)
	startWorker(t, s, nil)

	var v workflow.View
	postJSON(t, apiURL+"/v1/workflows", `{"steps":{"chain":[
		{"job":{"type":"sys.echo","payload":{"n":1}}},{"job":{"type":"sys.echo"}}]}}`, &v)
	var done workflow.View
	testenv.Eventually(t, time.Minute, "the chain to end", func() bool {
		done = getWorkflow(t, apiURL, v.ID)
		return done.Status != workflow.StatusRunning
	})
	var last struct {
		Result json.RawMessage `json:"result"`
	}
	getJSON(t, apiURL+"/v1/jobs/"+done.Members[1].JobID, &last)
	if done.Status != workflow.StatusSucceeded || string(last.Result) != `{"input":{"n":1}}` {
		t.Errorf("chain %s, last result %s", done.Status, last.Result)
	}

	postJSON(t, apiURL+"/v1/workflows", `{"on_failure":"stop","steps":{"chain":[
		{"job":{"type":"sys.fail","payload":{"fail_times":1,"permanent":true}}},{"job":{"type":"sys.echo"}}]}}`, &v)
	testenv.Eventually(t, time.Minute, "the stopped chain to end", func() bool {
		done = getWorkflow(t, apiURL, v.ID)
		return done.Status != workflow.StatusRunning
	})
	if done.Status != workflow.StatusFailed || done.Members[1].Status != workflow.MemberSkipped {
		t.Errorf("stopped chain %s, members %+v", done.Status, done.Members)
	}
}

func postJSON(t *testing.T, url, body string, out any) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

func getJSON(t *testing.T, url string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

func getWorkflow(t *testing.T, apiURL, id string) workflow.View {
	t.Helper()
	var v workflow.View
	getJSON(t, apiURL+"/v1/workflows/"+id, &v)
	return v
}
