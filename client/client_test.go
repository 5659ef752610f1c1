package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

const testID = "0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d"

// testJob is a job as the API would return it.
func testJob(status jobs.Status) *jobs.Job {
	return &jobs.Job{
		ID:          testID,
		Type:        "sys.echo",
		Status:      status,
		Payload:     json.RawMessage(`{"message":"hello"}`),
		MaxAttempts: 3,
		Timeout:     jobs.Duration(30 * time.Second),
		CreatedAt:   time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC),
	}
}

// setup starts an API imitation serving h and returns a client of it. The
// exchanges are checked against the API's OpenAPI document (checkedHTTP),
// so the client is tested against the API as documented.
func setup(t *testing.T, h http.HandlerFunc) *client.Client {
	t.Helper()
	return setupWith(t, h, checkedHTTP(t))
}

// setupOffDocument is setup for an imitation that answers what the API
// never does (a proxy's error page, a malformed answer), to see how the
// client copes: nothing is checked.
func setupOffDocument(t *testing.T, h http.HandlerFunc) *client.Client {
	t.Helper()
	return setupWith(t, h, nil)
}

func setupWith(t *testing.T, h http.HandlerFunc, hc *http.Client) *client.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{BaseURL: srv.URL + "/", MinPollInterval: time.Nanosecond, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// reply writes v as a JSON response with the given status.
func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// replyText writes JSON text as a response with the given status.
func replyText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, text)
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		base, want, err string
	}{
		{base: "", want: client.DefaultBaseURL},
		{base: "http://127.0.0.1:8080/", want: "http://127.0.0.1:8080"},
		{base: "https://jobs.example.com/warren", want: "https://jobs.example.com/warren"},
		{base: "127.0.0.1:8080", err: `API URL "127.0.0.1:8080": want http:// or https:// and a host`},
		{base: "ftp://example.com", err: `API URL "ftp://example.com": want http:// or https://`},
		{base: "http://", err: `API URL "http://": want http:// or https://`},
		{base: "http://example.com/?x=1", err: "must not have a query"},
	} {
		c, err := client.New(client.Config{BaseURL: tc.base})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("New(%q) error = %v, want one containing %q", tc.base, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("New(%q): %v", tc.base, err)
			continue
		}
		if got := c.BaseURL(); got != tc.want {
			t.Errorf("New(%q).BaseURL() = %q, want %q", tc.base, got, tc.want)
		}
	}
}

func TestEnqueue(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		bodies []string
	)
	seen := map[string]bool{}
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/jobs" {
			t.Errorf("request %s %s, want POST /v1/jobs", r.Method, r.URL.Path)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q, want application/json", ct)
		}
		b, _ := io.ReadAll(r.Body)
		var req client.JobRequest
		if err := json.Unmarshal(b, &req); err != nil {
			t.Errorf("decode request: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		bodies = append(bodies, string(b))
		status := http.StatusAccepted
		if req.IdempotencyKey != "" && seen[req.IdempotencyKey] {
			status = http.StatusOK
		}
		seen[req.IdempotencyKey] = true
		reply(w, status, testJob(jobs.StatusQueued))
	})
	ctx := t.Context()

	j, created, err := c.Enqueue(ctx, client.JobRequest{Type: "sys.echo"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(testJob(jobs.StatusQueued), j); diff != "" {
		t.Errorf("job (-want +got):\n%s", diff)
	}
	if !created {
		t.Error("202: created = false, want true")
	}

	full := client.JobRequest{
		Type:           "sys.echo",
		Payload:        json.RawMessage(`{"message":"hello"}`),
		MaxAttempts:    5,
		Timeout:        jobs.Duration(30 * time.Second),
		Metadata:       map[string]string{"team": "ops"},
		IdempotencyKey: "order-42",
	}
	for i, wantCreated := range []bool{true, false} {
		_, created, err := c.Enqueue(ctx, full)
		if err != nil {
			t.Fatal(err)
		}
		if created != wantCreated {
			t.Errorf("submission %d: created = %v, want %v", i+1, created, wantCreated)
		}
	}

	want := []string{
		`{"type":"sys.echo"}`,
		`{"type":"sys.echo","payload":{"message":"hello"},"max_attempts":5,"timeout":"30s","metadata":{"team":"ops"},"idempotency_key":"order-42"}`,
		`{"type":"sys.echo","payload":{"message":"hello"},"max_attempts":5,"timeout":"30s","metadata":{"team":"ops"},"idempotency_key":"order-42"}`,
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, bodies); diff != "" {
		t.Errorf("request bodies (-want +got):\n%s", diff)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		status      int
		contentType string
		body        string
		want        *client.APIError
		text        string
		offDocument bool // not the API's answer: a proxy's, say
	}{
		{
			name:        "JSON error with field",
			status:      400,
			contentType: "application/json",
			body:        `{"error":{"code":"unknown_type","message":"unknown job type \"x.y\" (known: sys.echo, sys.fail)","field":"type"}}`,
			want:        &client.APIError{Status: 400, Code: "unknown_type", Message: `unknown job type "x.y" (known: sys.echo, sys.fail)`, Field: "type"},
			text:        `enqueue x.y: 400 unknown_type: unknown job type "x.y" (known: sys.echo, sys.fail) [field type]`,
		},
		{
			name:        "JSON error without field",
			status:      503,
			contentType: "application/json",
			body:        `{"error":{"code":"unavailable","message":"RabbitMQ is not reachable"}}`,
			want:        &client.APIError{Status: 503, Code: "unavailable", Message: "RabbitMQ is not reachable"},
			text:        `enqueue x.y: 503 unavailable: RabbitMQ is not reachable`,
		},
		{
			name:        "plain text from a proxy",
			offDocument: true,
			status:      502,
			contentType: "text/plain; charset=utf-8",
			body:        "upstream connect error\nor disconnect\n",
			want:        &client.APIError{Status: 502, Message: "upstream connect error or disconnect"},
			text:        `enqueue x.y: 502 Bad Gateway: upstream connect error or disconnect`,
		},
		{
			name:        "HTML page from a proxy",
			offDocument: true,
			status:      502,
			contentType: "text/html",
			body:        "<html><body><h1>502 Bad Gateway</h1></body></html>",
			want:        &client.APIError{Status: 502},
			text:        `enqueue x.y: 502 Bad Gateway`,
		},
		{
			name:        "JSON of another shape",
			offDocument: true,
			status:      413,
			contentType: "application/json",
			body:        `{"message":"too big"}`,
			want:        &client.APIError{Status: 413, Message: `{"message":"too big"}`},
			text:        `enqueue x.y: 413 Request Entity Too Large: {"message":"too big"}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := setup
			if tc.offDocument {
				start = setupOffDocument
			}
			c := start(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			_, _, err := c.Enqueue(t.Context(), client.JobRequest{Type: "x.y"})
			var got *client.APIError
			if !errors.As(err, &got) {
				t.Fatalf("error %v (%T), want an *APIError", err, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("APIError (-want +got):\n%s", diff)
			}
			if err.Error() != tc.text {
				t.Errorf("error text\n got %s\nwant %s", err, tc.text)
			}
			if client.IsNotFound(err) {
				t.Error("IsNotFound = true for a non-404")
			}
		})
	}
}

func TestGetNotFound(t *testing.T) {
	t.Parallel()
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusNotFound, map[string]any{"error": map[string]string{"code": "not_found", "message": "no job at " + r.URL.Path}})
	})
	_, err := c.Get(t.Context(), testID)
	if !client.IsNotFound(err) {
		t.Errorf("IsNotFound(%v) = false, want true", err)
	}
	if client.IsNotFound(errors.New("404")) {
		t.Error("IsNotFound of a plain error = true")
	}
}

func TestGetAndWaitRequests(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		urls []string
	)
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		urls = append(urls, r.Method+" "+r.URL.String())
		mu.Unlock()
		if strings.TrimPrefix(r.URL.Path, "/v1/jobs/") != testID {
			reply(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "invalid_id", "message": "not a job id", "field": "id"}})
			return
		}
		reply(w, http.StatusOK, testJob(jobs.StatusRunning))
	})
	ctx := t.Context()
	if _, err := c.Get(ctx, testID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, testID, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, testID, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, testID, 0); err != nil {
		t.Fatal(err)
	}
	// An id that is not one is sent escaped, whole, and refused.
	if _, err := c.Get(ctx, "a/b c"); err == nil || !strings.Contains(err.Error(), "400 invalid_id") {
		t.Errorf("Get of a/b c: %v, want 400 invalid_id", err)
	}
	if _, err := c.Get(ctx, ""); err == nil {
		t.Error("Get of an empty id: no error")
	}
	want := []string{
		"GET /v1/jobs/" + testID,
		"GET /v1/jobs/" + testID + "?wait=30s",
		"GET /v1/jobs/" + testID + "?wait=1m0s",
		"GET /v1/jobs/" + testID,
		"GET /v1/jobs/a%2Fb%20c",
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, urls); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestEnqueueBatch(t *testing.T) {
	t.Parallel()
	bodies := make(chan string, 1)
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/jobs/batch" {
			t.Errorf("request %s %s, want POST /v1/jobs/batch", r.Method, r.URL.Path)
		}
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		replyText(w, http.StatusOK, `{"jobs":[
			{"job":{"id":"`+testID+`","type":"sys.echo","status":"queued","payload":{"message":"hello"},"attempt":0,"max_attempts":3,"timeout":"30s","created_at":"2025-03-14T09:26:53Z"}},
			{"error":{"code":"unknown_type","message":"unknown job type \"x.y\"","field":"type"}}
		]}`)
	})
	got, err := c.EnqueueBatch(t.Context(), []client.JobRequest{
		{Type: "sys.echo", Payload: json.RawMessage(`{"message":"hello"}`)},
		{Type: "x.y"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []client.BatchResult{
		{Job: testJob(jobs.StatusQueued)},
		{Error: &client.APIError{Code: "unknown_type", Message: `unknown job type "x.y"`, Field: "type"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	body := <-bodies
	if wantBody := `{"jobs":[{"type":"sys.echo","payload":{"message":"hello"}},{"type":"x.y"}]}`; body != wantBody {
		t.Errorf("request body\n got %s\nwant %s", body, wantBody)
	}
	if text := got[1].Error.Error(); text != `unknown_type: unknown job type "x.y" [field type]` {
		t.Errorf("item error text %q", text)
	}
}

func TestEnqueueBatchMismatch(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	// An answer the API never gives: one result for two jobs.
	c := setupOffDocument(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		replyText(w, http.StatusOK, `{"jobs":[{"error":{"code":"invalid","message":"bad"}}]}`)
	})
	_, err := c.EnqueueBatch(t.Context(), []client.JobRequest{{Type: "sys.echo"}, {Type: "sys.echo"}})
	if err == nil || !strings.Contains(err.Error(), "API returned 1 results") {
		t.Errorf("error %v, want one about the count of results", err)
	}
	if res, err := c.EnqueueBatch(t.Context(), nil); res != nil || err != nil {
		t.Errorf("empty batch = %v, %v; want nil, nil", res, err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d requests, want 1 (none for the empty batch)", n)
	}
}

func TestWaitDone(t *testing.T) {
	t.Parallel()
	states := []jobs.Status{jobs.StatusQueued, jobs.StatusRunning, jobs.StatusRetrying, jobs.StatusFailed}
	var (
		mu    sync.Mutex
		waits []string
	)
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, r.URL.Query().Get("wait"))
		reply(w, http.StatusOK, testJob(states[len(waits)-1]))
	})
	j, err := c.WaitDone(t.Context(), testID)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != jobs.StatusFailed {
		t.Errorf("status %s, want failed", j.Status)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"1m0s", "1m0s", "1m0s", "1m0s"}, waits); diff != "" {
		t.Errorf("wait parameters (-want +got):\n%s", diff)
	}
}

func TestWaitDoneContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var calls atomic.Int32
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 3 {
			cancel()
			<-r.Context().Done()
			return
		}
		reply(w, http.StatusOK, testJob(jobs.StatusRunning))
	})
	_, err := c.WaitDone(ctx, testID)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want one wrapping context.Canceled", err)
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	c, err := client.New(client.Config{BaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(t.Context(), testID)
	if !client.IsUnreachable(err) {
		t.Fatalf("IsUnreachable(%v) = false, want true", err)
	}
	want := "get job " + testID + ": warren API at " + url + " is not reachable (connection refused); start it with 'make run' or 'warren dev'"
	if err.Error() != want {
		t.Errorf("error text\n got %s\nwant %s", err, want)
	}

	// A canceled call is not an unreachable API.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Get(ctx, testID); client.IsUnreachable(err) || !errors.Is(err, context.Canceled) {
		t.Errorf("canceled Get: error %v, want context.Canceled", err)
	}
}

func ExampleClient_Enqueue() {
	// An imitation of the API; in real use, the address of `warren api`.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req client.JobRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		reply(w, http.StatusAccepted, &jobs.Job{ID: testID, Type: req.Type, Status: jobs.StatusQueued, Payload: req.Payload})
	}))
	defer srv.Close()

	c, err := client.New(client.Config{BaseURL: srv.URL})
	if err != nil {
		fmt.Println(err)
		return
	}
	job, created, err := c.Enqueue(context.Background(), client.JobRequest{
		Type:    "sys.echo",
		Payload: json.RawMessage(`{"message":"hello"}`),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(job.Type, job.Status, created)
	// Output: sys.echo queued true
}

func TestEnqueueScheduleAndBackoff(t *testing.T) {
	t.Parallel()
	bodies := make(chan string, 4)
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		reply(w, http.StatusAccepted, testJob(jobs.StatusScheduled))
	})
	runAt := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		req  client.JobRequest
		want string
	}{
		{
			req:  client.JobRequest{Type: "sys.echo", Delay: jobs.Duration(90 * time.Second)},
			want: `{"type":"sys.echo","delay":"1m30s"}`,
		},
		{
			req:  client.JobRequest{Type: "sys.echo", RunAt: &runAt},
			want: `{"type":"sys.echo","run_at":"2026-12-01T10:00:00Z"}`,
		},
		{
			req: client.JobRequest{Type: "sys.echo", Backoff: &jobs.Backoff{
				Base: jobs.Duration(time.Second), Factor: 2, Max: jobs.Duration(10 * time.Minute),
			}},
			want: `{"type":"sys.echo","backoff":{"base":"1s","factor":2,"max":"10m0s"}}`,
		},
		{
			req:  client.JobRequest{Type: "sys.echo", Backoff: &jobs.Backoff{Factor: 1.5}},
			want: `{"type":"sys.echo","backoff":{"factor":1.5}}`,
		},
	} {
		if _, _, err := c.Enqueue(t.Context(), tc.req); err != nil {
			t.Fatal(err)
		}
		if got := <-bodies; got != tc.want {
			t.Errorf("request body\n got %s\nwant %s", got, tc.want)
		}
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	const (
		doneID    = "0190c5f2-6d1e-7b3a-9c4d-000000000001"
		unknownID = "0190c5f2-6d1e-7b3a-9c4d-000000000002"
	)
	var (
		mu       sync.Mutex
		requests []string
	)
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		requests = append(requests, fmt.Sprintf("%s %s body=%q content-type=%q", r.Method, r.URL, b, r.Header.Get("Content-Type")))
		mu.Unlock()
		switch r.URL.Path {
		case "/v1/jobs/" + testID + "/cancel":
			reply(w, http.StatusOK, testJob(jobs.StatusCanceled))
		case "/v1/jobs/" + doneID + "/cancel":
			reply(w, http.StatusConflict, map[string]any{"error": map[string]string{
				"code": "conflict", "message": "job " + doneID + " already succeeded",
			}})
		default:
			reply(w, http.StatusNotFound, map[string]any{"error": map[string]string{"code": "not_found", "message": "no such job"}})
		}
	})
	ctx := t.Context()

	j, err := c.Cancel(ctx, testID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(testJob(jobs.StatusCanceled), j); diff != "" {
		t.Errorf("job (-want +got):\n%s", diff)
	}

	_, err = c.Cancel(ctx, doneID)
	if !client.IsConflict(err) || client.IsNotFound(err) {
		t.Errorf("terminal job: IsConflict(%v) = %v, IsNotFound = %v; want true, false", err, client.IsConflict(err), client.IsNotFound(err))
	}
	if want := "cancel job " + doneID + ": 409 conflict: job " + doneID + " already succeeded"; err == nil || err.Error() != want {
		t.Errorf("terminal job: error %v, want %s", err, want)
	}

	_, err = c.Cancel(ctx, unknownID)
	if !client.IsNotFound(err) || client.IsConflict(err) {
		t.Errorf("unknown job: IsNotFound(%v) = %v, IsConflict = %v; want true, false", err, client.IsNotFound(err), client.IsConflict(err))
	}

	if _, err := c.Cancel(ctx, ""); err == nil {
		t.Error("Cancel of an empty id: no error")
	}
	if client.IsConflict(errors.New("409")) {
		t.Error("IsConflict of a plain error = true")
	}

	want := []string{
		"POST /v1/jobs/" + testID + `/cancel body="" content-type=""`,
		"POST /v1/jobs/" + doneID + `/cancel body="" content-type=""`,
		"POST /v1/jobs/" + unknownID + `/cancel body="" content-type=""`,
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, requests); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestDead(t *testing.T) {
	t.Parallel()
	urls := make(chan string, 2)
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		urls <- r.Method + " " + r.URL.String()
		replyText(w, http.StatusOK, `{"pool":"sys","total":7,"dead":[
			{"id":"`+testID+`","type":"sys.fail","error":{"code":"handler","message":"told to fail","retryable":false},"attempts":3,
			 "failed_at":"2025-03-14T09:27:01.5Z","reason":"failed","payload":{"n":1}},
			{"id":"0190c5f2-6d1e-7b3a-9c4d-000000000001","type":"sys.fail","error":{"code":"delivery_limit","message":"","retryable":false},"attempts":1,"reason":"limit","payload":{}}
		]}`)
	})
	got, err := c.Dead(t.Context(), "sys", 2)
	if err != nil {
		t.Fatal(err)
	}
	want := &client.DeadList{Pool: "sys", Total: 7, Dead: []client.DeadLetter{
		{
			ID: testID, Type: "sys.fail", Error: &jobs.Error{Code: "handler", Message: "told to fail"}, Attempts: 3, Reason: "failed",
			FailedAt: time.Date(2025, 3, 14, 9, 27, 1, 500_000_000, time.UTC), Payload: json.RawMessage(`{"n":1}`),
		},
		{
			ID: "0190c5f2-6d1e-7b3a-9c4d-000000000001", Type: "sys.fail", Error: &jobs.Error{Code: "delivery_limit"}, Attempts: 1,
			Reason: "limit", Payload: json.RawMessage(`{}`),
		},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dead list (-want +got):\n%s", diff)
	}
	if _, err := c.Dead(t.Context(), "sys", 0); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"GET /v1/dead?limit=2&pool=sys", "GET /v1/dead?pool=sys"}, []string{<-urls, <-urls}); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if _, err := c.Dead(t.Context(), "", 0); err == nil {
		t.Error("Dead of an empty pool: no error")
	}

	// Written back as JSON, a dead letter without a time leaves it out.
	b, err := json.Marshal(want.Dead[1])
	if err != nil {
		t.Fatal(err)
	}
	if wantJSON := `{"id":"0190c5f2-6d1e-7b3a-9c4d-000000000001","type":"sys.fail","error":{"code":"delivery_limit","message":"","retryable":false},"attempts":1,"reason":"limit","payload":{}}`; string(b) != wantJSON {
		t.Errorf("JSON\n got %s\nwant %s", b, wantJSON)
	}
}

func TestDeadErrors(t *testing.T) {
	t.Parallel()
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("pool") == "nopool" {
			reply(w, http.StatusNotFound, map[string]any{"error": map[string]string{
				"code": "not_found", "message": "pool nopool has no dead-letter queue", "field": "pool",
			}})
			return
		}
		reply(w, http.StatusBadRequest, map[string]any{"error": map[string]string{
			"code": "invalid_field", "message": `"Bad" is not a pool name`, "field": "pool",
		}})
	})
	_, err := c.Dead(t.Context(), "nopool", 0)
	if want := "list dead letters of pool nopool: 404 not_found: pool nopool has no dead-letter queue [field pool]"; err == nil || err.Error() != want || !client.IsNotFound(err) {
		t.Errorf("error %v, want %s (IsNotFound)", err, want)
	}
	_, err = c.PurgeDead(t.Context(), "Bad")
	if want := `purge dead letters of pool Bad: 400 invalid_field: "Bad" is not a pool name [field pool]`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
	_, _, err = c.ReplayDead(t.Context(), "Bad", []string{testID})
	if want := `replay 1 dead letters of pool Bad: 400 invalid_field: "Bad" is not a pool name [field pool]`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
	_, err = c.ReplayAllDead(t.Context(), "Bad")
	if want := `replay all dead letters of pool Bad: 400 invalid_field: "Bad" is not a pool name [field pool]`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

func TestReplayAndPurgeDead(t *testing.T) {
	t.Parallel()
	const otherID = "0190c5f2-6d1e-7b3a-9c4d-000000000001"
	var (
		mu       sync.Mutex
		requests []string
	)
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		requests = append(requests, strings.TrimSpace(r.Method+" "+r.URL.String()+" "+string(b)))
		mu.Unlock()
		switch {
		case r.Method == http.MethodDelete:
			replyText(w, http.StatusOK, `{"purged":5}`)
		case strings.Contains(string(b), `"all":true`):
			replyText(w, http.StatusOK, `{"replayed":4,"missing":[]}`)
		case strings.Contains(string(b), otherID):
			replyText(w, http.StatusOK, `{"replayed":1,"missing":["`+otherID+`"]}`)
		default:
			replyText(w, http.StatusOK, `{"replayed":1,"missing":[]}`)
		}
	})
	ctx := t.Context()

	n, missing, err := c.ReplayDead(ctx, "sys", []string{testID, otherID})
	if err != nil || n != 1 || !cmp.Equal(missing, []string{otherID}) {
		t.Errorf("ReplayDead = %d, %q, %v; want 1, [%s], nil", n, missing, err, otherID)
	}
	n, missing, err = c.ReplayDead(ctx, "sys", []string{testID})
	if err != nil || n != 1 || missing != nil {
		t.Errorf("ReplayDead = %d, %#v, %v; want 1, nil, nil", n, missing, err)
	}
	n, missing, err = c.ReplayDead(ctx, "sys", nil)
	if err != nil || n != 0 || missing != nil {
		t.Errorf("ReplayDead of no ids = %d, %q, %v; want 0, nil, nil", n, missing, err)
	}
	if n, err := c.ReplayAllDead(ctx, "sys"); err != nil || n != 4 {
		t.Errorf("ReplayAllDead = %d, %v; want 4, nil", n, err)
	}
	if n, err := c.PurgeDead(ctx, "sys"); err != nil || n != 5 {
		t.Errorf("PurgeDead = %d, %v; want 5, nil", n, err)
	}
	for _, err := range []error{
		func() error { _, _, err := c.ReplayDead(ctx, "", []string{testID}); return err }(),
		func() error { _, err := c.ReplayAllDead(ctx, ""); return err }(),
		func() error { _, err := c.PurgeDead(ctx, ""); return err }(),
	} {
		if err == nil || !strings.Contains(err.Error(), "pool is empty") {
			t.Errorf("empty pool: error %v, want one saying the pool is empty", err)
		}
	}

	want := []string{
		`POST /v1/dead/replay {"pool":"sys","ids":["` + testID + `","` + otherID + `"]}`,
		`POST /v1/dead/replay {"pool":"sys","ids":["` + testID + `"]}`,
		`POST /v1/dead/replay {"pool":"sys","all":true}`,
		`DELETE /v1/dead?pool=sys`,
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, requests); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func ExampleClient_Cancel() {
	// An imitation of the API in which every job has already succeeded.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusConflict, map[string]any{"error": map[string]string{
			"code": "conflict", "message": "job already succeeded",
		}})
	}))
	defer srv.Close()

	c, err := client.New(client.Config{BaseURL: srv.URL})
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = c.Cancel(context.Background(), testID)
	switch {
	case client.IsConflict(err):
		fmt.Println("too late: the job has ended")
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Println("canceled")
	}
	// Output: too late: the job has ended
}

func TestQueues(t *testing.T) {
	t.Parallel()
	urls := make(chan string, 2)
	unavailable := atomic.Bool{}
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		urls <- r.Method + " " + r.URL.String()
		if unavailable.Load() {
			reply(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]string{
				"code": "unavailable", "message": "the broker (RabbitMQ) is unavailable; try again",
			}})
			return
		}
		replyText(w, http.StatusOK, `{"queues":[
			{"pool":"image","ready":0,"unacked":0,"backlog":0,"consumers":0,"source":"amqp","oldest_age_seconds":0,"dead":0,"rescued_last_hour":0,"paused":false},
			{"pool":"sys","ready":12,"unacked":4,"backlog":16,"consumers":2,"source":"management","oldest_age_seconds":1.5,"dead":3,"rescued_last_hour":0,"paused":false,
			 "replicas":{"current":2,"desired":4,"reason":"backlog 16 over target 4 per replica","at":"2025-03-14T09:27:01.5Z"}}
		]}`)
	})
	got, err := c.Queues(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []client.Queue{
		{Pool: "image", Source: "amqp"},
		{
			Pool: "sys", Ready: 12, Unacked: 4, Backlog: 16, Consumers: 2, Source: "management", OldestAgeSeconds: 1.5, Dead: 3,
			Replicas: &client.Replicas{Current: 2, Desired: 4, Reason: "backlog 16 over target 4 per replica",
				At: time.Date(2025, 3, 14, 9, 27, 1, 500_000_000, time.UTC)},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("queues (-want +got):\n%s", diff)
	}
	if age := got[1].OldestAge(); age != 1500*time.Millisecond {
		t.Errorf("OldestAge() = %s, want 1.5s", age)
	}

	unavailable.Store(true)
	_, err = c.Queues(t.Context())
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || ae.Code != "unavailable" {
		t.Errorf("error %v, want the API's 503", err)
	}
	if diff := cmp.Diff([]string{"GET /v1/queues", "GET /v1/queues"}, []string{<-urls, <-urls}); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}
