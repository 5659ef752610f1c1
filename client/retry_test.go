package client_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

func TestRetry(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		seen []string
	)
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" key="+r.Header.Get("Idempotency-Key")+" ct="+r.Header.Get("Content-Type"))
		mu.Unlock()
		switch strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/jobs/"), "/retry") {
		case testID:
			reply(w, http.StatusOK, testJob(jobs.StatusQueued))
		case "0190c5f2-6d1e-7b3a-9c4d-000000000001":
			reply(w, http.StatusConflict, map[string]any{"error": map[string]string{"code": "conflict", "message": "job is running and has not ended"}})
		default:
			reply(w, http.StatusNotFound, map[string]any{"error": map[string]string{"code": "not_found", "message": "no such job"}})
		}
	})
	ctx := context.Background()
	j, err := c.Retry(ctx, testID, nil)
	if err != nil || j.ID != testID || j.Status != jobs.StatusQueued {
		t.Fatalf("Retry = %+v, %v", j, err)
	}
	if _, err := c.Retry(ctx, testID, &client.RetryOptions{IdempotencyKey: "click-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Retry(ctx, "0190c5f2-6d1e-7b3a-9c4d-000000000001", nil); !client.IsConflict(err) || !strings.Contains(err.Error(), "has not ended") {
		t.Errorf("running job: %v, want a conflict", err)
	}
	if _, err := c.Retry(ctx, "0190c5f2-6d1e-7b3a-9c4d-000000000002", nil); !client.IsNotFound(err) {
		t.Errorf("unknown job: %v, want not found", err)
	}
	if _, err := c.Retry(ctx, "", nil); err == nil {
		t.Error("empty id: no error")
	}
	want := []string{
		"POST /v1/jobs/" + testID + "/retry key= ct=",
		"POST /v1/jobs/" + testID + "/retry key=click-1 ct=",
		"POST /v1/jobs/0190c5f2-6d1e-7b3a-9c4d-000000000001/retry key= ct=",
		"POST /v1/jobs/0190c5f2-6d1e-7b3a-9c4d-000000000002/retry key= ct=",
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

func TestArtifact(t *testing.T) {
	t.Parallel()
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.Header.Get("Accept") != "*/*" {
			reply(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "bad", "message": r.Method + " " + r.Header.Get("Accept")}})
			return
		}
		if r.URL.Path != "/v1/jobs/"+testID+"/artifact" {
			reply(w, http.StatusNotFound, map[string]any{"error": map[string]string{"code": "not_found", "message": "job has no artifact"}})
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Content-Length", "5")
		_, _ = w.Write([]byte("\x89PNG\x00"))
	})
	a, err := c.Artifact(context.Background(), testID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(a.Body)
	a.Body.Close()
	if err != nil || string(b) != "\x89PNG\x00" || a.ContentType != "image/png" || a.Size != 5 {
		t.Errorf("artifact %q %q %d, %v", b, a.ContentType, a.Size, err)
	}
	if _, err := c.Artifact(context.Background(), "0190c5f2-6d1e-7b3a-9c4d-000000000002"); !client.IsNotFound(err) {
		t.Errorf("no artifact: %v, want not found", err)
	}
}
