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

// setup starts an API imitation serving h and returns a client of it.
func setup(t *testing.T, h http.HandlerFunc) *client.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{BaseURL: srv.URL + "/", MinPollInterval: time.Nanosecond})
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
			status:      502,
			contentType: "text/plain; charset=utf-8",
			body:        "upstream connect error\nor disconnect\n",
			want:        &client.APIError{Status: 502, Message: "upstream connect error or disconnect"},
			text:        `enqueue x.y: 502 Bad Gateway: upstream connect error or disconnect`,
		},
		{
			name:        "HTML page from a proxy",
			status:      502,
			contentType: "text/html",
			body:        "<html><body><h1>502 Bad Gateway</h1></body></html>",
			want:        &client.APIError{Status: 502},
			text:        `enqueue x.y: 502 Bad Gateway`,
		},
		{
			name:        "JSON of another shape",
			status:      413,
			contentType: "application/json",
			body:        `{"message":"too big"}`,
			want:        &client.APIError{Status: 413, Message: `{"message":"too big"}`},
			text:        `enqueue x.y: 413 Request Entity Too Large: {"message":"too big"}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := setup(t, func(w http.ResponseWriter, r *http.Request) {
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
	if _, err := c.Get(ctx, "a/b c"); err != nil {
		t.Fatal(err)
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
		io.WriteString(w, `{"jobs":[
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
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.WriteString(w, `{"jobs":[{"error":{"code":"invalid","message":"bad"}}]}`)
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
