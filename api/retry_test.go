package api_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/apikey"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/workers"
	"github.com/warrenhq/warren/workers/sys"
)

// endJob records a job of env's sys pool as it would stand after one
// attempt ended as status, without a worker: created, started, finished.
// Nothing is published.
func endJob(t *testing.T, env *testenv.Env, status jobs.Status) *jobs.Job {
	t.Helper()
	ctx := context.Background()
	j := &jobs.Job{ID: jobs.NewID(), Type: "sys.echo", Pool: sys.Pool, Status: jobs.StatusQueued,
		Payload: []byte(`{"n":1}`), MaxAttempts: 1, Timeout: jobs.Duration(time.Minute), CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	if _, err := env.Store.Create(ctx, []*jobs.Job{j}); err != nil {
		t.Fatal(err)
	}
	if status == jobs.StatusQueued {
		return j
	}
	if _, err := env.Store.Start(ctx, j.ID, "w-test", 0, jobs.NewID(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if status != jobs.StatusRunning {
		o := store.Outcome{Status: status}
		if status != jobs.StatusSucceeded {
			o.Error = &jobs.Error{Code: "handler", Message: "downstream is down"}
		}
		if err := env.Store.Finish(ctx, j.ID, o, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	got, err := env.Store.Get(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// A failed job runs again once, however often the retry is asked for at
// once; its dead letter is then a leftover that a replay removes without
// running the job again.
func TestRetryRunsAFailedJobOnce(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	var (
		healed atomic.Bool
		mu     sync.Mutex
		runs   = map[string]int{}
	)
	w := workers.New(workers.Config{Logger: f.env.Log}, f.env.Broker, f.env.Store)
	flaky := jobs.Type{Name: "rt.flaky", Pool: "rt", MaxAttempts: 1}
	if err := w.Handle(flaky, jobs.HandlerFunc(func(_ context.Context, j *jobs.Job) (any, error) {
		mu.Lock()
		runs[j.ID]++
		mu.Unlock()
		if !healed.Load() {
			return nil, errors.New("downstream is down")
		}
		return "ok", nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	testenv.Eventually(t, 20*time.Second, "worker ready", w.Ready)
	runsOf := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		return runs[id]
	}

	plain := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"rt.flaky"}`).job(t)
	keyed := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"rt.flaky"}`).job(t)
	for _, id := range []string{plain.ID, keyed.ID} {
		if j := do(t, "GET", f.url+"/v1/jobs/"+id+"?wait=30s", nil, "").job(t); j.Status != jobs.StatusFailed {
			t.Fatalf("job %s: %s, want failed", id, j.Status)
		}
	}
	healed.Store(true)

	// A double click: two retries at once, without a key. One runs the
	// job; the other finds it queued (or already done) and gets 409.
	retryAll := func(id string, header map[string]string) []response {
		out := make([]response, 2)
		var wg sync.WaitGroup
		for i := range out {
			wg.Go(func() { out[i] = do(t, "POST", f.url+"/v1/jobs/"+id+"/retry", header, "") })
		}
		wg.Wait()
		return out
	}
	res := retryAll(plain.ID, nil)
	statuses := []int{res[0].status, res[1].status}
	slices.Sort(statuses)
	if !slices.Equal(statuses, []int{200, 409}) {
		t.Fatalf("two retries at once: %d %s / %d %s; want one 200 and one 409", res[0].status, res[0].body, res[1].status, res[1].body)
	}
	for _, r := range res {
		if r.status == 200 {
			if j := r.job(t); j.Status != jobs.StatusQueued && j.Status != jobs.StatusRunning && j.Status != jobs.StatusSucceeded || j.Error != nil && j.Status == jobs.StatusQueued {
				t.Errorf("retried job: %+v", j)
			}
		} else if e := r.apiError(t); e.Code != "conflict" {
			t.Errorf("second retry: %+v", e)
		}
	}
	// With the same Idempotency-Key, both answer the job.
	res = retryAll(keyed.ID, map[string]string{"Idempotency-Key": "click-1"})
	if res[0].status != 200 || res[1].status != 200 || res[0].job(t).ID != keyed.ID || res[1].job(t).ID != keyed.ID {
		t.Fatalf("two keyed retries: %d %s / %d %s; want 200 twice", res[0].status, res[0].body, res[1].status, res[1].body)
	}
	for _, id := range []string{plain.ID, keyed.ID} {
		j := do(t, "GET", f.url+"/v1/jobs/"+id+"?wait=30s", nil, "").job(t)
		if j.Status != jobs.StatusSucceeded || j.Attempt != 1 || j.Error != nil {
			t.Errorf("job %s after retry: %s attempt %d error %+v; want succeeded on attempt 1", id, j.Status, j.Attempt, j.Error)
		}
	}
	// The failures left dead letters. Replaying them all runs nothing: the
	// jobs are no longer failed, so the letters are leftovers, removed.
	testenv.Eventually(t, 10*time.Second, "two dead letters", func() bool {
		return strings.Contains(string(do(t, "GET", f.url+"/v1/dead?pool=rt", nil, "").body), `"total":2`)
	})
	if r := do(t, "POST", f.url+"/v1/dead/replay", nil, `{"pool":"rt","all":true}`); r.status != 200 || !strings.Contains(string(r.body), `"replayed":0`) {
		t.Errorf("replay all: %d %s, want nothing replayed", r.status, r.body)
	}
	// A keyed retry repeated after the job ended answers it as it is.
	if r := do(t, "POST", f.url+"/v1/jobs/"+keyed.ID+"/retry", map[string]string{"Idempotency-Key": "click-1"}, ""); r.status != 200 || r.job(t).Status != jobs.StatusSucceeded {
		t.Errorf("keyed retry repeated after the run: %d %s", r.status, r.body)
	}
	for _, id := range []string{plain.ID, keyed.ID} {
		if n := runsOf(id); n != 2 {
			t.Errorf("job %s ran %d times, want 2: the failure and one retry", id, n)
		}
	}
}

func TestRetryRefusals(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	queued := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo"}`).job(t)
	scheduled := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","delay":"1h"}`).job(t)
	running := endJob(t, f.env, jobs.StatusRunning)
	if err := f.env.Store.Lease(context.Background(), "w-test", time.Minute); err != nil {
		t.Fatal(err)
	}
	succeeded := endJob(t, f.env, jobs.StatusSucceeded)
	before := f.env.Messages(t, sys.Pool)
	for _, tt := range []struct {
		name, id, want string
	}{
		{"queued", queued.ID, "is queued and has not ended"},
		{"scheduled", scheduled.ID, "is scheduled and has not ended"},
		{"running", running.ID, "is running and has not ended"},
		{"succeeded", succeeded.ID, "succeeded; only a failed or canceled job can be retried"},
	} {
		was, err := f.env.Store.Get(context.Background(), tt.id)
		if err != nil {
			t.Fatal(err)
		}
		r := do(t, "POST", f.url+"/v1/jobs/"+tt.id+"/retry", nil, "")
		if e := r.apiError(t); r.status != 409 || e.Code != "conflict" || !strings.Contains(e.Message, tt.want) {
			t.Errorf("retry a %s job: %d %s; want 409 saying %q", tt.name, r.status, r.body, tt.want)
		}
		now, err := f.env.Store.Get(context.Background(), tt.id)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(was, now); d != "" {
			t.Errorf("a refused retry changed the %s job (-before +after):\n%s", tt.name, d)
		}
	}
	for _, tt := range []struct {
		name, path string
		header     map[string]string
		status     int
		code       string
	}{
		{"unknown", "/v1/jobs/0190c5a0-7b1e-7cc3-8f0e-2d1b6c3c9f10/retry", nil, 404, "not_found"},
		{"malformed id", "/v1/jobs/nope/retry", nil, 400, "invalid_id"},
		{"not a uuid", "/v1/jobs/" + strings.Repeat("a", 36) + "/retry", nil, 400, "invalid_id"},
		{"key too long", "/v1/jobs/" + succeeded.ID + "/retry", map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, 400, "invalid_field"},
	} {
		r := do(t, "POST", f.url+tt.path, tt.header, "")
		if r.status != tt.status || r.apiError(t).Code != tt.code {
			t.Errorf("%s: %d %s, want %d %s", tt.name, r.status, r.body, tt.status, tt.code)
		}
	}
	if r := do(t, "GET", f.url+"/v1/jobs/"+queued.ID+"/retry", nil, ""); r.status != 405 || r.header.Get("Allow") != "POST" {
		t.Errorf("GET retry: %d Allow %q, want 405 naming POST", r.status, r.header.Get("Allow"))
	}
	if n := f.env.Messages(t, sys.Pool) - before; n != 0 {
		t.Errorf("%d messages published by refused retries", n)
	}

	// A canceled job may be retried: queued again, attempts reset, and
	// published once.
	canceled := do(t, "POST", f.url+"/v1/jobs/"+queued.ID+"/cancel", nil, "").job(t)
	r := do(t, "POST", f.url+"/v1/jobs/"+canceled.ID+"/retry", nil, "")
	if j := r.job(t); r.status != 200 || j.Status != jobs.StatusQueued || j.Attempt != 0 || j.Error != nil || j.FinishedAt != nil {
		t.Errorf("retry a canceled job: %d %s", r.status, r.body)
	}
	// The canceled job's first message is still in the queue (a canceled
	// job's message is dropped when delivered), beside the retry's.
	if n := f.env.Messages(t, sys.Pool) - before; n != 1 {
		t.Errorf("%d messages published by the retry, want 1", n)
	}
}

// failingBroker is a connected broker whose publishes fail.
type failingBroker struct {
	*queue.Broker
	published atomic.Int32
}

func (b *failingBroker) Publish(_ context.Context, msgs []queue.Message) ([]error, error) {
	b.published.Add(int32(len(msgs)))
	return nil, queue.ErrUnavailable
}

// A retry while the broker is away, or while it refuses the message,
// answers 503 and leaves the job as it was.
func TestRetryBrokerDownChangesNothing(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	if err := env.Store.DeclareTypes(context.Background(), []jobs.Type{sys.Echo.WithDefaults()}); err != nil {
		t.Fatal(err)
	}
	failing := &failingBroker{Broker: env.Broker}
	for name, b := range map[string]api.Broker{"down": unreachableBroker(t, env), "refusing": failing} {
		url := start(t, api.Config{}, b, env.Store)
		j := endJob(t, env, jobs.StatusFailed)
		r := do(t, "POST", url+"/v1/jobs/"+j.ID+"/retry", nil, "")
		if r.status != 503 || r.apiError(t).Code != "unavailable" || r.header.Get("Retry-After") == "" {
			t.Errorf("%s: %d %s, want 503 unavailable with Retry-After", name, r.status, r.body)
		}
		now, err := env.Store.Get(context.Background(), j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(j, now); d != "" {
			t.Errorf("%s: the job changed (-before +after):\n%s", name, d)
		}
	}
	if failing.published.Load() != 1 {
		t.Errorf("the refusing broker was asked to publish %d messages, want 1", failing.published.Load())
	}

	// A job of a type no queue is bound for (no worker of the sys pool ever
	// ran here): 503 no_route, and nothing changed.
	url := start(t, api.Config{}, env.Broker, env.Store)
	j := endJob(t, env, jobs.StatusCanceled)
	r := do(t, "POST", url+"/v1/jobs/"+j.ID+"/retry", nil, "")
	if r.status != 503 || r.apiError(t).Code != "no_route" {
		t.Errorf("unbound type: %d %s, want 503 no_route", r.status, r.body)
	}
	if now, err := env.Store.Get(context.Background(), j.ID); err != nil || now.Status != jobs.StatusCanceled || now.Attempt != j.Attempt {
		t.Errorf("unbound type: the job changed: %+v %v", now, err)
	}
}

func TestRetryKeys(t *testing.T) {
	t.Parallel()
	k := setupKeyed(t, api.Config{},
		apikey.Key{Name: "ci", Scopes: scopes(apikey.Submit, apikey.Read)},
		apikey.Key{Name: "ops", Scopes: scopes(apikey.Admin)},
		apikey.Key{Name: "sleeper", Scopes: scopes(apikey.Admin), Types: []string{"sys.sleep"}},
	)
	j := endJob(t, k.env, jobs.StatusFailed)
	path := "/v1/jobs/" + j.ID + "/retry"
	if r := k.as(t, "", "POST", path, ""); r.status != 401 {
		t.Errorf("no key: %d", r.status)
	}
	if r := k.as(t, "ci", "POST", path, ""); r.status != 403 || !strings.Contains(r.header.Get("WWW-Authenticate"), `scope="admin"`) {
		t.Errorf("key without admin: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	if r := k.as(t, "sleeper", "POST", path, ""); r.status != 403 || r.apiError(t).Code != "forbidden" {
		t.Errorf("admin key limited to another type: %d %s", r.status, r.body)
	}
	if got, _ := k.env.Store.Get(context.Background(), j.ID); got.Status != jobs.StatusFailed {
		t.Fatalf("refused retries changed the job: %s", got.Status)
	}
	if r := k.as(t, "ops", "POST", path, ""); r.status != 200 || r.job(t).Status != jobs.StatusQueued {
		t.Errorf("admin: %d %s", r.status, r.body)
	}
	saw := false
	for _, rec := range logLines(t, k.logs, "audit") {
		saw = saw || rec["action"] == "retry" && rec["key"] == "ops" && rec["job"] == j.ID && rec["was"] == "failed"
	}
	if !saw {
		t.Error("no audit line for ops's retry")
	}
}
