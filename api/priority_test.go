package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
)

// A job's priority is recorded, returned and routes its message to its
// pool's lane; a batch refuses an entry out of range on its own.
func TestPriorityAcceptedAndRouted(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	r := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","priority":9}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var j jobs.Job
	if err := json.Unmarshal(r.body, &j); err != nil || j.Priority != 9 {
		t.Fatalf("accepted job %s (%v), want priority 9", r.body, err)
	}
	g := do(t, "GET", f.url+"/v1/jobs/"+j.ID, nil, "")
	var got jobs.Job
	if err := json.Unmarshal(g.body, &got); err != nil || got.Priority != 9 {
		t.Errorf("GET: %s (%v), want priority 9", g.body, err)
	}
	b := doInvalid(t, "POST", f.url+"/v1/jobs/batch", nil, `{"jobs":[{"type":"sys.echo","priority":3},{"type":"sys.echo","priority":10}]}`)
	var res struct {
		Jobs []struct {
			Job   *jobs.Job `json:"job"`
			Error *struct{ Code, Field string }
		}
	}
	if err := json.Unmarshal(b.body, &res); err != nil || len(res.Jobs) != 2 || res.Jobs[0].Job == nil || res.Jobs[0].Job.Priority != 3 ||
		res.Jobs[1].Error == nil || res.Jobs[1].Error.Code != "invalid_field" || res.Jobs[1].Error.Field != "priority" {
		t.Errorf("batch: %d %s (%v); want priority 3 accepted and 10 refused with invalid_field priority", b.status, b.body, err)
	}
	// The high job waits in the high lane, the batch's in the normal one.
	testenv.Eventually(t, 10*time.Second, "one message in each lane", func() bool {
		q, err := f.env.Broker.InspectPool(context.Background(), "sys")
		return err == nil && q.Messages == 2 && q.High == 1
	})
}

// A workflow's job step may carry a priority: its member job has it.
func TestPriorityOfAWorkflowMember(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	r := do(t, "POST", f.url+"/v1/workflows", nil, `{"name":"prio-wf","steps":{"chain":[{"job":{"type":"sys.echo","priority":7}}]}}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("submit: %d %s", r.status, r.body)
	}
	v := r.workflow(t)
	if len(v.Members) != 1 || v.Members[0].JobID == "" {
		t.Fatalf("members %+v", v.Members)
	}
	j, err := f.env.Store.Get(t.Context(), v.Members[0].JobID)
	if err != nil || j.Priority != 7 {
		t.Fatalf("member job %+v, %v; want priority 7", j, err)
	}
	if q, err := f.env.Broker.InspectPool(context.Background(), "sys"); err != nil || q.High != 1 {
		t.Errorf("the member's message: %+v, %v; want it in the high lane", q, err)
	}
}
