package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
)

// supervisorStatus is the part of `warren autoscale`'s /status a test reads.
type supervisorStatus struct {
	Pools []struct {
		Pool              string
		Running, Stopping int
		Desired           int
		Reason            string
	}
}

func readStatus(t *testing.T, base string) map[string]int {
	t.Helper()
	resp, err := http.Get(base + "/status")
	if err != nil {
		t.Fatalf("supervisor status: %v", err)
	}
	defer resp.Body.Close()
	var st supervisorStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("supervisor status: %v", err)
	}
	running := map[string]int{}
	for _, p := range st.Pools {
		running[p.Pool] = p.Running
	}
	return running
}

// workerProcs counts the live `warren worker POOL` children of pid by pool,
// from /proc: the processes themselves, not what the supervisor says.
func workerProcs(t *testing.T, pid int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for pool, pids := range workerPids(t, pid) {
		out[pool] = len(pids)
	}
	return out
}

// workerPids lists the live `warren worker POOL` children of pid by pool.
func workerPids(t *testing.T, pid int) map[string][]int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]int{}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …
		_, rest, _ := strings.Cut(string(stat), ") ")
		fields := strings.Fields(rest)
		if len(fields) < 2 || fields[0] == "Z" || fields[1] != strconv.Itoa(pid) {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) >= 3 && args[1] == "worker" {
			out[args[2]] = append(out[args[2]], child)
		}
	}
	return out
}

// TestAutoscaleBurst runs the real API and `warren autoscale` for two
// pools: a burst of sys.sleep jobs grows the sys pool to its max while the
// webhook pool stays at its min, and sys returns to its min once drained.
func TestAutoscaleBurst(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	cfgPath := filepath.Join(t.TempDir(), "warren.yaml")
	policy := "{min_replicas: 1, max_replicas: 3, target_backlog: 10, interval: 300ms, scale_down_window: 2s}"
	yml := "pools:\n" +
		"  sys:\n    concurrency: 2\n    autoscale: " + policy + "\n" +
		"  webhook:\n    autoscale: " + policy + "\n"
	if err := os.WriteFile(cfgPath, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	withConfig := []string{"WARREN_CONFIG=" + cfgPath}
	api := startProcWith(t, env, withConfig, "api", "--addr", "127.0.0.1:0")
	apiURL := "http://" + api.Addr(t, "api listening")
	sup := startProcWith(t, env, withConfig, "autoscale", "sys", "webhook", "--addr", "127.0.0.1:0")
	supURL := "http://" + sup.Addr(t, "supervisor endpoints listening")
	pid := sup.Pid()

	testenv.Eventually(t, 30*time.Second, "one worker per pool, with sys types declared", func() bool {
		_, err := env.Store.Type(context.Background(), "sys.sleep")
		procs := workerProcs(t, pid)
		return err == nil && procs["sys"] == 1 && procs["webhook"] == 1
	})

	// 120 jobs of 300ms: 20 processes' worth of backlog at 10 each, which
	// the policy caps at 3; each runs 2 at once, so they take a few seconds.
	c := newClient(t, apiURL)
	ids := enqueueSleeps(t, c, 120, 300)
	maxSys, maxWebhook := 0, 0
	testenv.Eventually(t, 30*time.Second, "the sys pool at its max of 3 processes", func() bool {
		procs := workerProcs(t, pid)
		maxSys, maxWebhook = max(maxSys, procs["sys"]), max(maxWebhook, procs["webhook"])
		return procs["sys"] == 3 && readStatus(t, supURL)["sys"] == 3
	})

	// `warren queues` shows the decision the supervisor reported.
	out, errOut, code := warren(t, apiURL, "", "queues", "-o", "json")
	if code != 0 {
		t.Fatalf("warren queues: exit %d: %s", code, errOut)
	}
	var queues struct {
		Queues []struct {
			Pool     string
			Replicas *struct{ Current, Desired int }
		}
	}
	if err := json.Unmarshal([]byte(out), &queues); err != nil {
		t.Fatalf("warren queues -o json: %v\n%s", err, out)
	}
	shown := map[string]string{}
	for _, q := range queues.Queues {
		if q.Replicas != nil {
			shown[q.Pool] = fmt.Sprintf("%d/%d", q.Replicas.Current, q.Replicas.Desired)
		}
	}
	if shown["sys"] != "3/3" || shown["webhook"] != "1/1" {
		t.Errorf("warren queues shows replicas %v, want sys 3/3 and webhook 1/1", shown)
	}

	done := waitDone(t, c, ids, 2*time.Minute)
	for id, j := range done {
		if j.Status != jobs.StatusSucceeded {
			t.Fatalf("job %s ended %s: %v", id, j.Status, j.Error)
		}
	}
	testenv.Eventually(t, 30*time.Second, "the sys pool back at its min", func() bool {
		procs := workerProcs(t, pid)
		maxWebhook = max(maxWebhook, procs["webhook"])
		return procs["sys"] == 1 && readStatus(t, supURL)["sys"] == 1
	})
	if maxWebhook != 1 {
		t.Errorf("the idle webhook pool ran up to %d processes, want its min of 1 throughout", maxWebhook)
	}

	// `warren scaling` shows the policy and the decisions that changed the
	// size, newest first: the way back to 1 after the way up to 3.
	var scaling struct {
		Pools []struct {
			Pool, Autoscaler string
			Policy           *struct{ Max int }
			Decisions        []struct{ Current, Desired int }
		}
	}
	testenv.Eventually(t, 10*time.Second, "warren scaling to show sys back at 1", func() bool {
		out, errOut, code := warren(t, apiURL, "", "scaling", "sys", "-o", "json")
		if code != 0 || json.Unmarshal([]byte(out), &scaling) != nil {
			t.Fatalf("warren scaling sys -o json: exit %d: %s%s", code, out, errOut)
		}
		ds := scaling.Pools[0].Decisions
		return len(ds) > 0 && ds[0].Desired == 1
	})
	p := scaling.Pools[0]
	var sizes []int
	for _, d := range slices.Backward(p.Decisions) {
		if d.Current != d.Desired {
			sizes = append(sizes, d.Desired)
		}
	}
	if p.Autoscaler != "warren autoscale" || p.Policy == nil || p.Policy.Max != 3 || !slices.Contains(sizes, 3) || sizes[len(sizes)-1] != 1 {
		t.Errorf("warren scaling sys: %+v; want the policy and the sizes it took, up to 3 and back to 1 (got %v)", p, sizes)
	}
	testenv.Summary(t, "jobs=%d sys_max=%d webhook_max=%d", len(ids), max(maxSys, 3), maxWebhook)

	children := workerPids(t, pid)
	sup.Stop(t) // SIGTERM: the workers drain and the supervisor exits 0
	for pool, pids := range children {
		for _, child := range pids {
			if testenv.Alive(child) {
				t.Errorf("%s worker %d still runs after the supervisor exited", pool, child)
			}
		}
	}
}

// TestAutoscaleRunsAPoolsCommand runs a pool whose workers are not warren's
// own (the Python worker) under the supervisor, from pools.NAME.command.
func TestAutoscaleRunsAPoolsCommand(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	script, err := filepath.Abs("../../workers/python/wordcount.py")
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "warren.yaml")
	yml := "pools:\n  text:\n    concurrency: 2\n    command: [/usr/bin/python3, " + script + "]\n" +
		"    autoscale: {min_replicas: 1, max_replicas: 2, interval: 300ms}\n"
	if err := os.WriteFile(cfgPath, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	withConfig := []string{"WARREN_CONFIG=" + cfgPath}
	api := startProcWith(t, env, withConfig, "api", "--addr", "127.0.0.1:0")
	apiURL := "http://" + api.Addr(t, "api listening")
	startProcWith(t, env, withConfig, "autoscale", "text")
	testenv.Eventually(t, 60*time.Second, "the Python worker declares text.wordcount", func() bool {
		_, err := env.Store.Type(context.Background(), "text.wordcount")
		return err == nil
	})
	out, errOut, code := warren(t, apiURL, "", "enqueue", "text.wordcount", `{"text":"one two three"}`, "--wait", "-o", "json")
	if code != 0 {
		t.Fatalf("enqueue text.wordcount: exit %d: %s", code, errOut)
	}
	var j jobs.Job
	var res struct{ Words int }
	if json.Unmarshal([]byte(out), &j) != nil || j.Status != jobs.StatusSucceeded || json.Unmarshal(j.Result, &res) != nil || res.Words != 3 {
		t.Errorf("text.wordcount under the supervisor: %s", out)
	}
}

// TestAutoscaleKilledLeavesNoWorkers kills the real supervisor with
// SIGKILL: its worker processes get SIGTERM from the kernel and exit.
func TestAutoscaleKilledLeavesNoWorkers(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	sup := startProc(t, env, "autoscale", "sys")
	pid := sup.Pid()
	testenv.Eventually(t, 30*time.Second, "a sys worker process", func() bool {
		return workerProcs(t, pid)["sys"] == 1
	})
	children := workerPids(t, pid)["sys"]
	sup.Kill(t)
	testenv.Eventually(t, 30*time.Second, "the killed supervisor's worker to exit", func() bool {
		for _, child := range children {
			if testenv.Alive(child) {
				return false
			}
		}
		return true
	})
}
