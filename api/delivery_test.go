package api_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/workers"
	"github.com/warrenhq/warren/workers/sys"
)

func TestScheduledSubmissions(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	for _, tt := range []struct {
		name, body string
		wantAt     time.Time
	}{
		{"delay", `{"type":"sys.echo","delay":"90s"}`, time.Now().Add(90 * time.Second)},
		{"run_at", `{"type":"sys.echo","run_at":"` + at.Format(time.RFC3339) + `"}`, at},
	} {
		r := do(t, "POST", f.url+"/v1/jobs", nil, tt.body)
		j := r.job(t)
		if r.status != 202 || j.Status != jobs.StatusScheduled || j.ScheduledAt == nil ||
			j.ScheduledAt.Sub(tt.wantAt).Abs() > 5*time.Second {
			t.Errorf("%s: status %d, job %s scheduled at %v, want scheduled at about %v", tt.name, r.status, j.Status, j.ScheduledAt, tt.wantAt)
		}
		got := do(t, "GET", f.url+"/v1/jobs/"+j.ID, nil, "").job(t)
		if got.Status != jobs.StatusScheduled {
			t.Errorf("%s: GET shows %s, want scheduled", tt.name, got.Status)
		}
	}
	// A time already past runs at once.
	if j := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","run_at":"2001-01-01T00:00:00Z"}`).job(t); j.Status != jobs.StatusQueued {
		t.Errorf("run_at in the past: %s, want queued", j.Status)
	}
	// The scheduled messages wait in the delay levels, not in the pool queue.
	if n := f.env.Messages(t, sys.Pool); n != 1 {
		t.Errorf("%d messages in the pool queue, want only the immediate one", n)
	}
	for _, tt := range []struct{ body, field string }{
		{`{"type":"sys.echo","delay":"soon"}`, "delay"},
		{`{"type":"sys.echo","delay":"-5s"}`, "delay"},
		{`{"type":"sys.echo","run_at":"tomorrow"}`, "run_at"},
		{`{"type":"sys.echo","delay":"1s","run_at":"2030-01-01T00:00:00Z"}`, "run_at"},
		{`{"type":"sys.echo","backoff":{"factor":0.5}}`, "backoff"},
		{`{"type":"sys.echo","backoff":{"base":"x"}}`, "backoff"},
		{`{"type":"sys.echo","backoff":{"jitter":true}}`, "backoff.jitter"},
	} {
		r := do(t, "POST", f.url+"/v1/jobs", nil, tt.body)
		if r.status != 400 || r.apiError(t).Field != tt.field {
			t.Errorf("%s: %d %s, want 400 naming %s", tt.body, r.status, r.body, tt.field)
		}
	}
	if j := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","backoff":{"base":"2s","max":"1m"}}`).job(t); j.Backoff == nil ||
		j.Backoff.Base.Std() != 2*time.Second || j.Backoff.Max.Std() != time.Minute {
		t.Errorf("backoff not kept: %+v", j.Backoff)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	queued := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo"}`).job(t)
	scheduled := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","delay":"1s"}`).job(t)
	for _, j := range []jobs.Job{queued, scheduled} {
		r := do(t, "POST", f.url+"/v1/jobs/"+j.ID+"/cancel", nil, "")
		if g := r.job(t); r.status != 200 || g.Status != jobs.StatusCanceled || g.FinishedAt == nil || g.Error == nil || g.Error.Code != "canceled" {
			t.Errorf("cancel %s job: %d %s", j.Status, r.status, r.body)
		}
		r = do(t, "POST", f.url+"/v1/jobs/"+j.ID+"/cancel", nil, "")
		if r.status != 409 || r.apiError(t).Code != "conflict" {
			t.Errorf("cancel a canceled job: %d %s, want 409", r.status, r.body)
		}
	}
	if r := do(t, "POST", f.url+"/v1/jobs/0190c5a0-7b1e-7cc3-8f0e-2d1b6c3c9f10/cancel", nil, ""); r.status != 404 {
		t.Errorf("cancel unknown: %d", r.status)
	}
	if r := do(t, "POST", f.url+"/v1/jobs/nope/cancel", nil, ""); r.status != 400 {
		t.Errorf("cancel malformed id: %d", r.status)
	}

	// A worker never runs the canceled jobs, even the one whose delay ends
	// after the cancel.
	var ran atomic.Int32
	w := workers.New(workers.Config{Logger: f.env.Log}, f.env.Broker, f.env.Store)
	w.Use(func(next jobs.Handler) jobs.Handler {
		return jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) (any, error) {
			ran.Add(1)
			return next.Run(ctx, j)
		})
	})
	if err := sys.Register(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	canary := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","delay":"1500ms"}`).job(t)
	do(t, "GET", f.url+"/v1/jobs/"+canary.ID+"?wait=30s", nil, "")
	if n := ran.Load(); n != 1 {
		t.Errorf("%d jobs ran, want only the canary", n)
	}
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	var healed atomic.Bool
	w := workers.New(workers.Config{Logger: f.env.Log}, f.env.Broker, f.env.Store)
	flaky := jobs.Type{Name: "dl.flaky", Pool: "dl", Backoff: jobs.Backoff{Base: jobs.Duration(100 * time.Millisecond)}}
	if err := w.Handle(flaky, jobs.HandlerFunc(func(context.Context, *jobs.Job) (any, error) {
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

	var ids []string
	for range 3 {
		j := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"dl.flaky","max_attempts":2}`).job(t)
		ids = append(ids, j.ID)
	}
	for _, id := range ids {
		if j := do(t, "GET", f.url+"/v1/jobs/"+id+"?wait=30s", nil, "").job(t); j.Status != jobs.StatusFailed || j.Attempt != 2 {
			t.Fatalf("job %s: %s attempt %d, want failed after 2", id, j.Status, j.Attempt)
		}
	}
	var list struct {
		Pool  string
		Total int
		Dead  []struct {
			ID       string
			Type     string
			Error    jobs.Error
			Attempts int
			FailedAt *time.Time `json:"failed_at"`
		}
	}
	testenv.Eventually(t, 10*time.Second, "three dead letters", func() bool {
		r := do(t, "GET", f.url+"/v1/dead?pool=dl", nil, "")
		return json.Unmarshal(r.body, &list) == nil && list.Total == 3 && len(list.Dead) == 3
	})
	// They fail in the order their jittered retries come due.
	listed := map[string]bool{}
	for i, d := range list.Dead {
		listed[d.ID] = true
		if d.Type != "dl.flaky" || d.Attempts != 2 || d.Error.Message != "downstream is down" || d.FailedAt == nil {
			t.Errorf("dead letter %d: %+v", i, d)
		}
	}
	for _, id := range ids {
		if !listed[id] {
			t.Errorf("job %s is not among the dead letters", id)
		}
	}
	// Listing does not consume: the messages come back (a quorum queue's
	// count may lag their return for a moment).
	testenv.Eventually(t, 10*time.Second, "the dead letters back after listing", func() bool {
		r := do(t, "GET", f.url+"/v1/dead?pool=dl&limit=1", nil, "")
		return strings.Contains(string(r.body), `"total":3`)
	})

	healed.Store(true)
	r := do(t, "POST", f.url+"/v1/dead/replay", nil, `{"pool":"dl","ids":["`+ids[0]+`","0190c5a0-7b1e-7cc3-8f0e-2d1b6c3c9f10"]}`)
	if r.status != 200 || !strings.Contains(string(r.body), `"replayed":1`) || !strings.Contains(string(r.body), "0190c5a0-7b1e-7cc3-8f0e-2d1b6c3c9f10") {
		t.Fatalf("replay one: %d %s", r.status, r.body)
	}
	if j := do(t, "GET", f.url+"/v1/jobs/"+ids[0]+"?wait=30s", nil, "").job(t); j.Status != jobs.StatusSucceeded || j.Attempt != 1 {
		t.Errorf("replayed job: %s attempt %d, want succeeded on a fresh attempt 1", j.Status, j.Attempt)
	}
	if r := do(t, "POST", f.url+"/v1/dead/replay", nil, `{"pool":"dl","all":true}`); !strings.Contains(string(r.body), `"replayed":2`) {
		t.Errorf("replay all: %s", r.body)
	}
	for _, id := range ids[1:] {
		if j := do(t, "GET", f.url+"/v1/jobs/"+id+"?wait=30s", nil, "").job(t); j.Status != jobs.StatusSucceeded {
			t.Errorf("job %s after replay all: %s", id, j.Status)
		}
	}

	// Purge answers how many it removed.
	healed.Store(false)
	doomed := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"dl.flaky","max_attempts":1}`).job(t)
	do(t, "GET", f.url+"/v1/jobs/"+doomed.ID+"?wait=30s", nil, "")
	testenv.Eventually(t, 10*time.Second, "one dead letter", func() bool {
		return strings.Contains(string(do(t, "GET", f.url+"/v1/dead?pool=dl", nil, "").body), `"total":1`)
	})
	if r := do(t, "DELETE", f.url+"/v1/dead?pool=dl", nil, ""); r.status != 200 || strings.TrimSpace(string(r.body)) != `{"purged":1}` {
		t.Errorf("purge: %d %s", r.status, r.body)
	}

	for _, tt := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/v1/dead", "", 400},
		{"GET", "/v1/dead?pool=Bad!", "", 400},
		{"GET", "/v1/dead?pool=dl&limit=0", "", 400},
		{"GET", "/v1/dead?pool=nosuchpool", "", 404},
		{"DELETE", "/v1/dead?pool=nosuchpool", "", 404},
		{"POST", "/v1/dead/replay", `{"pool":"dl"}`, 400},
		{"POST", "/v1/dead/replay", `{"pool":"dl","all":true,"ids":["` + ids[0] + `"]}`, 400},
		{"POST", "/v1/dead/replay", `{"pool":"dl","ids":["x"]}`, 400},
		{"POST", "/v1/dead/replay", `{"pool":"nosuchpool","all":true}`, 404},
	} {
		if r := do(t, tt.method, f.url+tt.path, nil, tt.body); r.status != tt.status {
			t.Errorf("%s %s %s: %d %s, want %d", tt.method, tt.path, tt.body, r.status, r.body, tt.status)
		}
	}
}

// A running job whose worker is gone shows as queued: the broker has put
// its message back, and the next worker to take it records the new attempt.
func TestLostWorkersJobShowsQueued(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	ctx := context.Background()
	live := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo"}`).job(t)
	lost := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo"}`).job(t)
	if err := f.env.Store.Lease(ctx, "w-live", time.Minute); err != nil {
		t.Fatal(err)
	}
	for id, worker := range map[string]string{live.ID: "w-live", lost.ID: "w-gone"} {
		if _, err := f.env.Store.Start(ctx, id, worker, 0, "token-"+jobs.NewID(), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if j := do(t, "GET", f.url+"/v1/jobs/"+live.ID, nil, "").job(t); j.Status != jobs.StatusRunning {
		t.Errorf("job of a live worker: %s, want running", j.Status)
	}
	if j := do(t, "GET", f.url+"/v1/jobs/"+lost.ID, nil, "").job(t); j.Status != jobs.StatusQueued || j.Worker != "w-gone" {
		t.Errorf("job of a lost worker: %s (worker %s), want queued", j.Status, j.Worker)
	}
}

func TestIdempotencyUnderRace(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	const n = 20
	type result struct {
		status int
		id     string
		err    error
	}
	results := make(chan result, n)
	start := make(chan struct{})
	for range n {
		// t.Fatal may not be called from these goroutines: they report.
		go func() {
			<-start
			req, _ := http.NewRequest("POST", f.url+"/v1/jobs", strings.NewReader(`{"type":"sys.echo"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "race-1")
			resp, body, err := exchange(t, http.DefaultClient, req)
			if err != nil {
				results <- result{err: err}
				return
			}
			var j jobs.Job
			err = json.Unmarshal(body, &j)
			results <- result{resp.StatusCode, j.ID, err}
		}()
	}
	close(start)
	accepted, replayed := 0, 0
	ids := map[string]bool{}
	for range n {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		ids[r.id] = true
		switch r.status {
		case 202:
			accepted++
		case 200:
			replayed++
		default:
			t.Errorf("status %d", r.status)
		}
	}
	if accepted != 1 || replayed != n-1 || len(ids) != 1 {
		t.Errorf("%d accepted, %d answered with the first job, %d distinct ids; want 1, %d, 1", accepted, replayed, len(ids), n-1)
	}
	if m := f.env.Messages(t, sys.Pool); m != 1 {
		t.Errorf("%d messages published, want 1", m)
	}
}

func TestArtifacts(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	w := workers.New(workers.Config{Logger: f.env.Log}, f.env.Broker, f.env.Store)
	art := jobs.Type{Name: "art.make", Pool: "art", MaxAttempts: 1}
	if err := w.Handle(art, jobs.HandlerFunc(func(_ context.Context, j *jobs.Job) (any, error) {
		var p struct {
			Size int
			Type string
		}
		_ = j.Decode(&p)
		return jobs.Output{Result: map[string]int{"bytes": p.Size},
			Artifact: &jobs.Artifact{ContentType: cmp.Or(p.Type, "image/png"), Data: []byte(strings.Repeat("x", p.Size))}}, nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	testenv.Eventually(t, 20*time.Second, "worker ready", w.Ready)

	j := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"art.make","payload":{"size":5}}`).job(t)
	done := do(t, "GET", f.url+"/v1/jobs/"+j.ID+"?wait=30s", nil, "").job(t)
	if done.Status != jobs.StatusSucceeded || done.Artifact == nil || *done.Artifact != (jobs.ArtifactInfo{ContentType: "image/png", Bytes: 5}) {
		t.Fatalf("job: %s artifact %+v", done.Status, done.Artifact)
	}
	r := do(t, "GET", f.url+"/v1/jobs/"+j.ID+"/artifact", nil, "")
	if r.status != 200 || r.header.Get("Content-Type") != "image/png" || string(r.body) != "xxxxx" {
		t.Errorf("artifact: %d %q %q", r.status, r.header.Get("Content-Type"), r.body)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox") || r.header.Get("Content-Disposition") != "" {
		t.Errorf("a PNG artifact: Content-Security-Policy %q, Content-Disposition %q; want a sandbox, shown inline", csp, r.header.Get("Content-Disposition"))
	}
	// A page a worker stored runs nothing in a browser that opens it (where
	// the dashboard's session would be its to use): it is downloaded, in a
	// sandbox.
	page := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"art.make","payload":{"size":3,"type":"text/html"}}`).job(t)
	do(t, "GET", f.url+"/v1/jobs/"+page.ID+"?wait=30s", nil, "")
	r = do(t, "GET", f.url+"/v1/jobs/"+page.ID+"/artifact", nil, "")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Security-Policy"), "sandbox") ||
		!strings.HasPrefix(r.header.Get("Content-Disposition"), "attachment") || r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("an HTML artifact: %d %v", r.status, r.header)
	}
	none := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo"}`).job(t)
	if r := do(t, "GET", f.url+"/v1/jobs/"+none.ID+"/artifact", nil, ""); r.status != 404 {
		t.Errorf("job without artifact: %d", r.status)
	}
	// Over the store's limit (10 MiB by default) the job fails, permanently.
	big := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"art.make","payload":{"size":11000000}}`).job(t)
	if g := do(t, "GET", f.url+"/v1/jobs/"+big.ID+"?wait=30s", nil, "").job(t); g.Status != jobs.StatusFailed || g.Error == nil || g.Error.Code != "artifact_too_large" {
		t.Errorf("oversized artifact: %s %+v", g.Status, g.Error)
	}
}
