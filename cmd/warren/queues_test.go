package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/internal/testenv"
)

// `warren queues` shows a worker process's pool, and the worker's health
// port serves the pool's figures as Prometheus metrics.
func TestQueuesAndMetrics(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	worker := startProc(t, env, "worker", "sys", "--health-addr", "127.0.0.1:0")
	health := "http://" + worker.Addr(t, "health endpoints listening")
	waitReady(t, health)
	api := startProc(t, env, "api", "--addr", "127.0.0.1:0")
	apiURL := "http://" + api.Addr(t, "api listening")
	waitReady(t, apiURL)

	// The worker consumes the sys queue; the management API (on by
	// default) sees its consumer once its figures catch up.
	var sys client.Queue
	testenv.Eventually(t, 30*time.Second, "warren queues to show the sys worker", func() bool {
		out, errOut, code := warren(t, apiURL, "", "queues", "-o", "json")
		var got struct{ Queues []client.Queue }
		if code != 0 || json.Unmarshal([]byte(out), &got) != nil {
			t.Logf("warren queues -o json: exit %d, stdout %q, stderr %q", code, out, errOut)
			return false
		}
		for _, q := range got.Queues {
			if q.Pool == "sys" {
				sys = q
			}
		}
		return sys.Consumers == 1 && sys.Source == "management"
	})
	out, _, code := warren(t, apiURL, "", "queues")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) < 2 || !strings.HasPrefix(lines[0], "POOL ") || !strings.Contains(out, "\nsys ") {
		t.Errorf("warren queues: exit %d, output:\n%s", code, out)
	}

	want := fmt.Sprintf(`warren_queue_consumers{pool="sys",warren_namespace=%q} 1`, env.NS)
	var body string
	testenv.Eventually(t, 30*time.Second, "the worker's /metrics", func() bool {
		resp, err := http.Get(health + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK && strings.Contains(body, want)
	})
	for _, s := range []string{
		fmt.Sprintf(`warren_queue_backlog{pool="sys",warren_namespace=%q} 0`, env.NS),
		fmt.Sprintf(`warren_oldest_job_age_seconds{pool="sys",warren_namespace=%q} 0`, env.NS),
		"go_goroutines",
	} {
		if !strings.Contains(body, s) {
			t.Errorf("worker /metrics lacks %s:\n%s", s, body)
		}
	}
}
