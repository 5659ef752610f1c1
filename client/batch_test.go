package client_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

// EnqueueBatchJSON sends the requests as they are, and reads one result
// each.
func TestEnqueueBatchJSON(t *testing.T) {
	t.Parallel()
	var body string
	// The second request breaks the document on purpose, and a batch takes
	// it, refusing that entry alone: only the answer is checked.
	c := setupWith(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/jobs/batch" {
			t.Errorf("%s %s", r.Method, r.URL.Path)
		}
		reply(w, 200, map[string]any{"jobs": []any{
			map[string]any{"job": testJob(jobs.StatusQueued)},
			map[string]any{"error": map[string]string{"code": "unknown_field", "message": "unknown field x", "field": "x"}},
		}})
	}, checkedResponses(t))
	res, err := c.EnqueueBatchJSON(t.Context(), []json.RawMessage{
		json.RawMessage(`{"type":"sys.echo","payload":{"n":1}}`),
		json.RawMessage(`{"type":"sys.echo","x":1}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"jobs":[{"type":"sys.echo","payload":{"n":1}},{"type":"sys.echo","x":1}]}`; body != want {
		t.Errorf("body %s, want %s", body, want)
	}
	if len(res) != 2 || res[0].Job == nil || res[0].Job.ID != testID || res[1].Error == nil || res[1].Error.Field != "x" {
		t.Errorf("results %+v", res)
	}
	if res, err := c.EnqueueBatchJSON(t.Context(), nil); res != nil || err != nil {
		t.Errorf("an empty batch: %v, %v; want nothing sent", res, err)
	}
}

// A 429 or 503 says how long to wait, in seconds or as a date.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"7", 7 * time.Second},
		{"0", 0},
		{"", 0},
		{"soon", 0},
		{"-3", 0},
		{time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), time.Hour},
		{"Mon, 02 Jan 2006 15:04:05 GMT", 0}, // past
	} {
		start := setup
		if n, err := strconv.Atoi(tc.header); (err != nil || n < 1) && tc.header != "" {
			start = setupOffDocument // the API sends 1 second or more; a proxy may send a date
		}
		c := start(t, func(w http.ResponseWriter, r *http.Request) {
			if tc.header != "" {
				w.Header().Set("Retry-After", tc.header)
			}
			reply(w, 429, map[string]any{"error": map[string]string{"code": "rate_limited", "message": "slow down"}})
		})
		_, err := c.Queues(t.Context())
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != 429 {
			t.Fatalf("error %v, want a 429", err)
		}
		if d := ae.RetryAfter - tc.want; d < -2*time.Second || d > 0 {
			t.Errorf("Retry-After %q: RetryAfter %s, want %s", tc.header, ae.RetryAfter, tc.want)
		}
	}
}

func TestTypes(t *testing.T) {
	t.Parallel()
	// As the API gives them: defaults filled in.
	want := []jobs.Type{
		jobs.Type{Name: "sys.echo", Pool: "sys", Timeout: jobs.Duration(30 * time.Second), MaxAttempts: 3}.WithDefaults(),
		jobs.Type{Name: "sys.sleep", Pool: "sys", Schema: json.RawMessage(`{"type":"object"}`)}.WithDefaults(),
	}
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/v1/types" {
			t.Errorf("%s %s", r.Method, r.URL.Path)
		}
		reply(w, 200, map[string]any{"types": want})
	})
	got, err := c.Types(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("types (-want +got):\n%s", d)
	}
}
