package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/apikey"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/workers/sys"
)

// wantRefused fails the test unless r is a 400 invalid_field naming field,
// with a message that says what the limit is.
func wantRefused(t *testing.T, name string, r response, field, says string) {
	t.Helper()
	if r.status != http.StatusBadRequest {
		t.Errorf("%s: status %d, want 400: %s", name, r.status, r.body)
		return
	}
	if e := r.apiError(t); e.Code != "invalid_field" || e.Field != field || !strings.Contains(e.Message, says) {
		t.Errorf("%s: error %+v, want invalid_field on %s saying %q", name, e, field, says)
	}
}

// The attack: delays up to 13.6 years were accepted, on records that never
// expired. api.max_delay caps delay, run_at and a job's backoff.
func TestMaxDelay(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{MaxDelay: time.Hour})
	post := func(body string) response { return do(t, "POST", f.url+"/v1/jobs", nil, body) }
	over := time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)
	wantRefused(t, "delay over", post(`{"type":"sys.echo","delay":"1h0m1s"}`), "delay", "1h0m0s")
	wantRefused(t, "13 years", post(`{"type":"sys.echo","delay":"119000h"}`), "delay", "api.max_delay")
	wantRefused(t, "run_at over", post(`{"type":"sys.echo","run_at":"`+over+`"}`), "run_at", "1h0m0s")
	wantRefused(t, "backoff over", post(`{"type":"sys.echo","backoff":{"base":"2h"}}`), "backoff", "api.max_delay")
	wantRefused(t, "backoff max over", post(`{"type":"sys.echo","backoff":{"max":"2h"}}`), "backoff", "api.max_delay")
	if r := do(t, "POST", f.url+"/v1/jobs/batch", nil, `{"jobs":[{"type":"sys.echo","delay":"2h"}]}`); !strings.Contains(string(r.body), `"field":"delay"`) {
		t.Errorf("batch entry over the delay: %s, want an error on delay", r.body)
	}
	if keys := f.env.JobKeys(t); len(keys) != 0 {
		t.Errorf("refused jobs were recorded: %v", keys)
	}

	if r := post(`{"type":"sys.echo","delay":"1h"}`); r.status != http.StatusAccepted || r.job(t).Status != jobs.StatusScheduled {
		t.Errorf("delay at the limit: status %d %s, want 202 scheduled", r.status, r.body)
	}

	// The default is 30 days.
	g := setup(t, api.Config{})
	wantRefused(t, "default, 31 days", do(t, "POST", g.url+"/v1/jobs", nil, `{"type":"sys.echo","delay":"744h"}`), "delay", "720h0m0s")
	if r := do(t, "POST", g.url+"/v1/jobs", nil, `{"type":"sys.echo","delay":"720h"}`); r.status != http.StatusAccepted {
		t.Errorf("default, 30 days: status %d %s, want 202", r.status, r.body)
	}

	// No more than the delay levels can hold.
	if _, err := api.New(api.Config{MaxDelay: jobs.MaxDelay + time.Second}, g.env.Broker, g.env.Store); err == nil {
		t.Error("api.New with a max delay over jobs.MaxDelay: no error")
	}
}

// The attack: any job could ask for a 24h timeout and 100 attempts,
// whatever its type. A job may now lower its type's defaults, and raise
// them only as far as the type declares.
func TestTypeMaxima(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	capped := jobs.Type{Name: "lim.capped", Pool: "lim", Timeout: jobs.Duration(10 * time.Second), MaxAttempts: 2}
	roomy := jobs.Type{Name: "lim.roomy", Pool: "lim", Timeout: jobs.Duration(10 * time.Second), MaxAttempts: 2,
		MaxTimeout: jobs.Duration(time.Hour), MaxAttemptsLimit: 20}
	// capped is declared as a worker from before maxima writes it (no
	// max fields): its defaults are its maxima.
	if err := env.Store.DeclareTypes(ctx, []jobs.Type{capped, roomy.WithDefaults()}); err != nil {
		t.Fatal(err)
	}
	if err := env.Broker.DeclarePool(ctx, "lim", []string{capped.Name, roomy.Name}); err != nil {
		t.Fatal(err)
	}
	url := start(t, api.Config{}, env.Broker, env.Store)
	post := func(body string) response { return do(t, "POST", url+"/v1/jobs", nil, body) }

	wantRefused(t, "timeout over the type's", post(`{"type":"lim.capped","timeout":"11s"}`), "timeout", "10s, the most type lim.capped allows")
	wantRefused(t, "24h timeout", post(`{"type":"lim.capped","timeout":"24h"}`), "timeout", "10s")
	wantRefused(t, "attempts over the type's", post(`{"type":"lim.capped","max_attempts":3}`), "max_attempts", "from 1 to 2, the most type lim.capped allows")
	wantRefused(t, "100 attempts", post(`{"type":"lim.capped","max_attempts":100}`), "max_attempts", "2")
	wantRefused(t, "over a declared maximum", post(`{"type":"lim.roomy","max_attempts":21}`), "max_attempts", "20")
	wantRefused(t, "over a declared max timeout", post(`{"type":"lim.roomy","timeout":"61m"}`), "timeout", "1h0m0s")
	r := do(t, "POST", url+"/v1/jobs/batch", nil, `{"jobs":[{"type":"lim.capped","timeout":"1h"},{"type":"lim.capped","max_attempts":1}]}`)
	var batch struct {
		Jobs []struct {
			Job   *jobs.Job
			Error *apiError
		}
	}
	if err := json.Unmarshal(r.body, &batch); err != nil || len(batch.Jobs) != 2 {
		t.Fatalf("batch: %s (%v)", r.body, err)
	}
	if e := batch.Jobs[0].Error; e == nil || e.Code != "invalid_field" || e.Field != "timeout" {
		t.Errorf("batch entry over the type's timeout: %+v, want invalid_field on timeout", batch.Jobs[0])
	}
	if j := batch.Jobs[1].Job; j == nil || j.MaxAttempts != 1 {
		t.Errorf("batch entry lowering its attempts: %+v, want a job with max_attempts 1", batch.Jobs[1])
	}

	for _, tt := range []struct {
		body        string
		attempts    int
		timeout     time.Duration
		description string
	}{
		{`{"type":"lim.capped"}`, 2, 10 * time.Second, "defaults"},
		{`{"type":"lim.capped","timeout":"5s","max_attempts":1}`, 1, 5 * time.Second, "lowered"},
		{`{"type":"lim.capped","timeout":"10s","max_attempts":2}`, 2, 10 * time.Second, "at the defaults"},
		{`{"type":"lim.roomy","timeout":"1h","max_attempts":20}`, 20, time.Hour, "at declared maxima"},
	} {
		r := post(tt.body)
		if r.status != http.StatusAccepted {
			t.Errorf("%s: status %d %s, want 202", tt.description, r.status, r.body)
			continue
		}
		if j := r.job(t); j.MaxAttempts != tt.attempts || j.Timeout.Std() != tt.timeout {
			t.Errorf("%s: max_attempts %d timeout %s, want %d %s", tt.description, j.MaxAttempts, j.Timeout.Std(), tt.attempts, tt.timeout)
		}
	}
}

// The sys types let the tests and the soak ask for what they need: 10
// attempts, and sys.sleep a timeout for its longest sleep.
func TestSysTypeMaxima(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	for _, body := range []string{
		`{"type":"sys.echo","max_attempts":10,"timeout":"1m"}`,
		`{"type":"sys.sleep","payload":{"ms":3600000},"max_attempts":10,"timeout":"1h1m"}`,
		`{"type":"sys.fail","max_attempts":100}`,
	} {
		if r := do(t, "POST", f.url+"/v1/jobs", nil, body); r.status != http.StatusAccepted {
			t.Errorf("%s: status %d %s, want 202", body, r.status, r.body)
		}
	}
	wantRefused(t, "sys.echo for an hour", do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","timeout":"1h"}`), "timeout", sys.Echo.MaxTimeout.Std().String())
}

// The attack: the same idempotency key with another type answered 200 with
// somebody else's job. The same key with another type or payload is now a
// 409 idempotency_conflict; the same type and payload is still the earlier
// job, 200.
func TestIdempotencyConflict(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	first := do(t, "POST", f.url+"/v1/jobs", map[string]string{"Idempotency-Key": "order-9"}, `{"type":"sys.echo","payload":{"n":1}}`)
	if first.status != http.StatusAccepted {
		t.Fatalf("first: status %d %s", first.status, first.body)
	}
	for _, body := range []string{
		`{"type":"sys.sleep","payload":{"ms":1},"idempotency_key":"order-9"}`,
		`{"type":"sys.echo","payload":{"n":2},"idempotency_key":"order-9"}`,
	} {
		r := do(t, "POST", f.url+"/v1/jobs", nil, body)
		if r.status != http.StatusConflict {
			t.Errorf("%s: status %d %s, want 409", body, r.status, r.body)
			continue
		}
		if e := r.apiError(t); e.Code != "idempotency_conflict" || e.Field != "idempotency_key" {
			t.Errorf("%s: error %+v, want idempotency_conflict on idempotency_key", body, e)
		}
		if strings.Contains(string(r.body), first.job(t).ID) {
			t.Errorf("%s: the conflict names the earlier job: %s", body, r.body)
		}
	}
	same := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo","payload":{ "n" : 1 },"idempotency_key":"order-9"}`)
	if same.status != http.StatusOK || same.job(t).ID != first.job(t).ID {
		t.Errorf("the same job again: status %d %s, want 200 with job %s", same.status, same.body, first.job(t).ID)
	}

	// In a batch, each entry on its own.
	r := do(t, "POST", f.url+"/v1/jobs/batch", nil, `{"jobs":[
		{"type":"sys.echo","payload":{"n":1},"idempotency_key":"order-9"},
		{"type":"sys.fail","idempotency_key":"order-9"},
		{"type":"sys.echo","idempotency_key":"order-10"},
		{"type":"sys.echo","payload":{"n":3},"idempotency_key":"order-10"}
	]}`)
	var batch struct {
		Jobs []struct {
			Job   *jobs.Job
			Error *apiError
		}
	}
	if err := json.Unmarshal(r.body, &batch); err != nil || len(batch.Jobs) != 4 {
		t.Fatalf("batch: %s (%v)", r.body, err)
	}
	if j := batch.Jobs[0].Job; j == nil || j.ID != first.job(t).ID {
		t.Errorf("batch entry repeating the first job: %+v, want it", batch.Jobs[0])
	}
	for _, i := range []int{1, 3} {
		if e := batch.Jobs[i].Error; e == nil || e.Code != "idempotency_conflict" || e.Field != "idempotency_key" {
			t.Errorf("batch entry %d: %+v, want idempotency_conflict", i, batch.Jobs[i])
		}
	}
	if batch.Jobs[2].Job == nil {
		t.Errorf("batch entry with a new key: %+v, want a job", batch.Jobs[2])
	}
	if n := f.env.Messages(t, sys.Pool); n != 2 {
		t.Errorf("%d messages published, want 2 (the first job and order-10)", n)
	}
}

// Two API keys using the same idempotency key each get their own job, and
// never see the other's.
func TestIdempotencyKeysAreScopedByAPIKey(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	if err := env.Broker.DeclarePool(ctx, sys.Pool, []string{"sys.echo"}); err != nil {
		t.Fatal(err)
	}
	if err := env.Store.DeclareTypes(ctx, []jobs.Type{sys.Echo.WithDefaults()}); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{}
	var keys []apikey.Key
	for _, name := range []string{"alice", "bob"} {
		secret, sum, err := apikey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		secrets[name] = secret
		keys = append(keys, apikey.Key{Name: name, SHA256: sum, Scopes: []apikey.Scope{apikey.Submit, apikey.Read}})
	}
	ring, err := apikey.NewRing(keys)
	if err != nil {
		t.Fatal(err)
	}
	url := start(t, api.Config{Keys: ring}, env.Broker, env.Store)
	submit := func(who, body string) response {
		return do(t, "POST", url+"/v1/jobs", map[string]string{"Authorization": "Bearer " + secrets[who], "Idempotency-Key": "shared"}, body)
	}
	a := submit("alice", `{"type":"sys.echo","payload":{"secret":"alice's"}}`)
	b := submit("bob", `{"type":"sys.echo","payload":{"secret":"bob's"}}`)
	if a.status != http.StatusAccepted || b.status != http.StatusAccepted {
		t.Fatalf("statuses %d, %d, want 202 each: %s %s", a.status, b.status, a.body, b.body)
	}
	if a.job(t).ID == b.job(t).ID || strings.Contains(string(b.body), "alice's") {
		t.Errorf("bob's submission answered with alice's job: %s", b.body)
	}
	// Each one's repeat finds its own.
	again := submit("bob", `{"type":"sys.echo","payload":{"secret":"bob's"}}`)
	if again.status != http.StatusOK || again.job(t).ID != b.job(t).ID {
		t.Errorf("bob's repeat: status %d %s, want 200 with his job", again.status, again.body)
	}
}
