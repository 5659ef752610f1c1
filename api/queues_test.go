package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/api"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/workers/sys"
)

// queueEntry is an entry of GET /v1/queues as the client reads it.
type queueEntry struct {
	Pool             string  `json:"pool"`
	Ready            int     `json:"ready"`
	Unacked          int     `json:"unacked"`
	Backlog          int     `json:"backlog"`
	Consumers        int     `json:"consumers"`
	Source           string  `json:"source"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	Dead             int     `json:"dead"`
	Replicas         *struct {
		Current int       `json:"current"`
		Desired int       `json:"desired"`
		Reason  string    `json:"reason"`
		At      time.Time `json:"at"`
	} `json:"replicas"`
}

func listQueues(t *testing.T, url string) []queueEntry {
	t.Helper()
	r := do(t, "GET", url+"/v1/queues", nil, "")
	if r.status != 200 {
		t.Fatalf("GET /v1/queues: %d %s", r.status, r.body)
	}
	var body struct{ Queues []queueEntry }
	if err := json.Unmarshal(r.body, &body); err != nil || body.Queues == nil {
		t.Fatalf("GET /v1/queues: %s (%v)", r.body, err)
	}
	return body.Queues
}

// summary is what a test compares of an entry: everything but times.
func summary(e queueEntry) string {
	s := fmt.Sprintf("%s ready=%d unacked=%d backlog=%d consumers=%d source=%s dead=%d",
		e.Pool, e.Ready, e.Unacked, e.Backlog, e.Consumers, e.Source, e.Dead)
	if r := e.Replicas; r != nil {
		s += fmt.Sprintf(" replicas=%d/%d (%s)", r.Current, r.Desired, r.Reason)
	}
	return s
}

func TestQueues(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	ctx := context.Background()
	for range 3 {
		if r := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo"}`); r.status != 202 {
			t.Fatalf("submit: %d %s", r.status, r.body)
		}
	}
	// An autoscaler reports on sys and on a pool no type is declared in
	// (yet); counts from one that stopped long ago are left out.
	now := time.Now().UTC().Truncate(time.Millisecond)
	for pool, r := range map[string]store.Replicas{
		"sys":   {Current: 2, Desired: 4, Reason: "backlog over target", At: now, Interval: time.Minute},
		"ghost": {Current: 0, Desired: 0, At: now, Interval: time.Minute},
		"old":   {Current: 1, Desired: 1, At: now.Add(-time.Hour), Interval: time.Second},
	} {
		if err := f.env.Store.PutReplicas(ctx, pool, r); err != nil {
			t.Fatal(err)
		}
	}

	// Nothing consumes: the three jobs wait, and no management API was
	// given, so AMQP measures.
	var got []queueEntry
	testenv.Eventually(t, 10*time.Second, "three sys jobs in the listing", func() bool {
		got = listQueues(t, f.url)
		return len(got) == 2 && got[1].Ready == 3
	})
	want := []string{
		"ghost ready=0 unacked=0 backlog=0 consumers=0 source=amqp dead=0 replicas=0/0 ()",
		"sys ready=3 unacked=0 backlog=3 consumers=0 source=amqp dead=0 replicas=2/4 (backlog over target)",
	}
	var gotSummary []string
	for _, e := range got {
		gotSummary = append(gotSummary, summary(e))
	}
	if d := cmp.Diff(want, gotSummary); d != "" {
		t.Errorf("queues (-want +got):\n%s", d)
	}
	if age := got[1].OldestAgeSeconds; age <= 0 || age > 60 {
		t.Errorf("sys oldest_age_seconds %v, want the few seconds since the jobs were submitted", age)
	}
	if got[0].OldestAgeSeconds != 0 {
		t.Errorf("ghost oldest_age_seconds %v, want 0", got[0].OldestAgeSeconds)
	}
	if at := got[1].Replicas.At; !at.Equal(now) {
		t.Errorf("sys replicas at %s, want %s", at, now)
	}
	r := do(t, "GET", f.url+"/v1/queues", nil, "")
	if !strings.Contains(string(r.body), `"ghost","ready":0,"unacked":0,`) || strings.Contains(string(r.body), `"replicas":null`) {
		t.Errorf("body %s: want every count, and no replicas key where there are none", r.body)
	}

	// With the management API, the source says so.
	m, err := queue.NewManagement("", testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	url := start(t, api.Config{Management: m}, f.env.Broker, f.env.Store)
	testenv.Eventually(t, 30*time.Second, "the management API to measure sys", func() bool {
		got = listQueues(t, url)
		return len(got) == 2 && got[1].Source == queue.SourceManagement && got[1].Backlog == 3
	})
}

func TestQueuesUnavailable(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	if err := env.Store.DeclareTypes(context.Background(), []jobs.Type{sys.Echo.WithDefaults()}); err != nil {
		t.Fatal(err)
	}
	down, redisDown := unreachableBroker(t, env), unreachableStore(t, env)

	for name, url := range map[string]string{
		"RabbitMQ": start(t, api.Config{}, down, env.Store),
		"Redis":    start(t, api.Config{}, env.Broker, redisDown),
	} {
		r := do(t, "GET", url+"/v1/queues", nil, "")
		e := r.apiError(t)
		if r.status != 503 || e.Code != "unavailable" || !strings.Contains(e.Message, name) || r.header.Get("Retry-After") == "" {
			t.Errorf("%s away: %d %s, want 503 unavailable naming it, with Retry-After", name, r.status, r.body)
		}
		// /metrics leaves out what it cannot measure, and answers.
		if r := do(t, "GET", url+"/metrics", nil, ""); r.status != 200 || !strings.Contains(string(r.body), "go_goroutines") {
			t.Errorf("%s away: GET /metrics %d", name, r.status)
		}
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	f := setup(t, api.Config{})
	if r := do(t, "POST", f.url+"/v1/jobs", nil, `{"type":"sys.echo"}`); r.status != 202 {
		t.Fatalf("submit: %d %s", r.status, r.body)
	}
	want := fmt.Sprintf(`warren_queue_backlog{pool="sys",warren_namespace=%q} 1`, f.env.NS)
	var body string
	testenv.Eventually(t, 10*time.Second, want, func() bool {
		r := do(t, "GET", f.url+"/metrics", nil, "")
		body = string(r.body)
		return r.status == 200 && strings.Contains(body, want)
	})
	for _, s := range []string{
		fmt.Sprintf(`warren_dead_letters{pool="sys",warren_namespace=%q} 0`, f.env.NS),
		fmt.Sprintf(`warren_queue_consumers{pool="sys",warren_namespace=%q} 0`, f.env.NS),
		"# TYPE warren_oldest_job_age_seconds gauge",
		"process_cpu_seconds_total",
	} {
		if !strings.Contains(body, s) {
			t.Errorf("/metrics lacks %s:\n%s", s, body)
		}
	}
}

// GET /v1/queues counts each pool's rescues of the last hour, and /metrics
// serves the collectors the process adds (the rescuer's counter).
func TestQueuesRescuedAndMoreMetrics(t *testing.T) {
	t.Parallel()
	counter := prometheus.NewCounter(prometheus.CounterOpts{Name: "warren_test_extra_total", Help: "a collector of the process"})
	counter.Add(7)
	env := testenv.New(t)
	ctx := context.Background()
	if err := env.Store.DeclareTypes(ctx, []jobs.Type{sys.Echo.WithDefaults()}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, n := range []int{2, 3} {
		if err := env.Store.CountRescued(ctx, sys.Pool, n, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Store.CountRescued(ctx, sys.Pool, 100, now.Add(-2*time.Hour)); err != nil { // long ago
		t.Fatal(err)
	}
	url := start(t, api.Config{Collectors: []prometheus.Collector{counter}}, env.Broker, env.Store)
	r := do(t, "GET", url+"/v1/queues", nil, "")
	if !strings.Contains(string(r.body), `"rescued_last_hour":5`) {
		t.Errorf("GET /v1/queues: %d %s; want sys with rescued_last_hour 5", r.status, r.body)
	}
	if r := do(t, "GET", url+"/metrics", nil, ""); !strings.Contains(string(r.body), "warren_test_extra_total 7") {
		t.Errorf("GET /metrics lacks the added collector:\n%s", r.body)
	}
}
