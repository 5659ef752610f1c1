package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/client"
)

// queuesAPI imitates GET /v1/queues, answering queues or, when status is
// set, an error with that status.
type queuesAPI struct {
	url string

	mu       sync.Mutex
	queues   []client.Queue
	status   int
	requests []string
}

func newQueuesAPI(t *testing.T, queues ...client.Queue) *queuesAPI {
	t.Helper()
	f := &queuesAPI{queues: queues}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/queues", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.status != 0 {
			apiReply(w, f.status, map[string]any{"error": map[string]string{
				"code": "unavailable", "message": "the broker (RabbitMQ) is unavailable; try again",
			}})
			return
		}
		apiReply(w, http.StatusOK, map[string]any{"queues": append([]client.Queue{}, f.queues...)})
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *queuesAPI) requestLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// someQueues are three pools: one measured by the management API with an
// autoscaler's replicas, one measured over AMQP, one idle.
func someQueues() []client.Queue {
	return []client.Queue{
		{Pool: "image", Source: "management"},
		{
			Pool: "sys", Ready: 12, Unacked: 4, Backlog: 16, Consumers: 2, Source: "management", OldestAgeSeconds: 83.4567, Dead: 3, RescuedLastHour: 5,
			Replicas: &client.Replicas{Current: 2, Desired: 4, Reason: "backlog 16 over target 4 per replica",
				At: time.Date(2025, 3, 14, 9, 27, 1, 500_000_000, time.UTC)},
		},
		{Pool: "webhook", Ready: 7, Backlog: 7, Consumers: 1, Source: "amqp", OldestAgeSeconds: 0.0004567},
	}
}

func TestQueuesTable(t *testing.T) {
	t.Parallel()
	f := newQueuesAPI(t, someQueues()...)
	stdout, stderr, code := runWarren(t, f.url, "", "queues")
	want := `POOL     BACKLOG  READY  UNACKED  CONSUMERS  OLDEST  LIMITED  DEAD  RESCUED  REPLICAS
image    0        0      0        0          -       0        0     0        -
sys      16       12     4        2          1m23s   0        3     5        2/4
webhook  7        7      -        1          <1ms    0        0     0        -
`
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if d := cmp.Diff(want, stdout); d != "" {
		t.Errorf("table (-want +got):\n%s", d)
	}

	empty := newQueuesAPI(t)
	stdout, _, code = runWarren(t, empty.url, "", "queues")
	if want := "no pools yet: a pool appears once a worker of it has declared its types\n"; code != 0 || stdout != want {
		t.Errorf("no pools: exit %d, stdout %q; want 0, %q", code, stdout, want)
	}
	if d := cmp.Diff([]string{"GET /v1/queues"}, f.requestLog()); d != "" {
		t.Errorf("requests (-want +got):\n%s", d)
	}
}

func TestQueuesJSON(t *testing.T) {
	t.Parallel()
	f := newQueuesAPI(t, someQueues()...)
	stdout, stderr, code := runWarren(t, f.url, "", "queues", "-o", "json")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var got queuesOutput
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("-o json: %v\n%s", err, stdout)
	}
	if d := cmp.Diff(queuesOutput{Queues: someQueues()}, got); d != "" {
		t.Errorf("-o json (-want +got):\n%s", d)
	}
	if !strings.HasPrefix(stdout, "{\n  \"queues\": [\n    {\n      \"pool\": \"image\",") {
		t.Errorf("-o json: not the API's shape, indented:\n%s", stdout)
	}
	if strings.Count(stdout, `"replicas"`) != 1 {
		t.Errorf("-o json: replicas where there are none:\n%s", stdout)
	}

	empty := newQueuesAPI(t)
	if stdout, _, _ := runWarren(t, empty.url, "", "queues", "-o", "json"); stdout != "{\n  \"queues\": []\n}\n" {
		t.Errorf("-o json of no pools: %q", stdout)
	}
}

func TestQueuesErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args     []string
		status   int
		stderr   string
		requests int
	}{
		{[]string{"queues"}, http.StatusServiceUnavailable, "warren: list queues: 503 unavailable: the broker (RabbitMQ) is unavailable; try again\n", 1},
		{[]string{"queues", "sys"}, 0, `warren: unknown command "sys" for "warren queues"` + "\n", 0},
		{[]string{"queues", "-o", "xml"}, 0, `warren: -o "xml": want table (the default), wide, json or yaml` + "\n", 0},
	} {
		f := newQueuesAPI(t, someQueues()...)
		f.status = tc.status
		stdout, stderr, code := runWarren(t, f.url, "", tc.args...)
		if code != 1 || stdout != "" || stderr != tc.stderr {
			t.Errorf("%q: exit %d, stdout %q, stderr %q\nwant 1, nothing, %q", tc.args, code, stdout, stderr, tc.stderr)
		}
		if n := len(f.requestLog()); n != tc.requests {
			t.Errorf("%q: %d requests, want %d", tc.args, n, tc.requests)
		}
	}

	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	_, stderr, code := runWarren(t, srv.URL, "", "queues")
	want := "warren: list queues: warren API at " + srv.URL + " is not reachable (connection refused); " +
		"start it with 'make run' or 'warren dev', or point --api (WARREN_API_URL) at it\n"
	if code != 1 || stderr != want {
		t.Errorf("unreachable: exit %d, stderr %q; want 1, %q", code, stderr, want)
	}
}
