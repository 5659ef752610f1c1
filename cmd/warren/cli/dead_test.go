package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

// seedDead puts dead letters in a pool's dead-letter queue of the fake.
func (f *fakeAPI) seedDead(pool string, dead ...client.DeadLetter) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dead[pool] = append(f.dead[pool], dead...)
}

// deadLeft returns the ids left in a pool's dead-letter queue of the fake.
func (f *fakeAPI) deadLeft(pool string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, d := range f.dead[pool] {
		ids = append(ids, d.ID)
	}
	return ids
}

// replayBodies returns the bodies of the replay requests the fake received.
func (f *fakeAPI) replayBodies() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.deadBodies...)
}

// deadPool checks the pool of a dead-letter request as the API does,
// answering an error if it is wrong.
func deadPool(w http.ResponseWriter, pool string) bool {
	switch {
	case pool == "":
		apiReply(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "missing_field", "message": "pool is required", "field": "pool"}})
	case !jobs.ValidPoolName(pool):
		apiReply(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "invalid_field", "message": strconv.Quote(pool) + " is not a pool name", "field": "pool"}})
	case pool == "nopool":
		apiReply(w, http.StatusNotFound, map[string]any{"error": map[string]string{
			"code": "not_found", "message": "pool nopool has no dead-letter queue: no worker of that pool has run", "field": "pool",
		}})
	default:
		return true
	}
	return false
}

func (f *fakeAPI) listDead(w http.ResponseWriter, r *http.Request) {
	pool := r.URL.Query().Get("pool")
	if !deadPool(w, pool) {
		return
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			apiReply(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "invalid_field", "message": "limit must be from 1 to 1000", "field": "limit"}})
			return
		}
		limit = n
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	all := f.dead[pool]
	apiReply(w, http.StatusOK, map[string]any{"pool": pool, "total": len(all), "dead": append([]client.DeadLetter{}, all[:min(limit, len(all))]...)})
}

func (f *fakeAPI) replayDead(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var req struct {
		Pool string   `json:"pool"`
		IDs  []string `json:"ids"`
		All  bool     `json:"all"`
	}
	if err := json.Unmarshal(b, &req); err != nil {
		apiReply(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "invalid_json", "message": err.Error()}})
		return
	}
	f.mu.Lock()
	f.deadBodies = append(f.deadBodies, string(b))
	f.mu.Unlock()
	if !deadPool(w, req.Pool) {
		return
	}
	if req.All == (len(req.IDs) > 0) {
		apiReply(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "invalid_field", "message": "send ids or all", "field": "ids"}})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	want := map[string]bool{}
	for _, id := range req.IDs {
		want[id] = true
	}
	var left []client.DeadLetter
	replayed := 0
	for _, d := range f.dead[req.Pool] {
		if req.All || want[d.ID] {
			replayed++
			delete(want, d.ID)
			continue
		}
		left = append(left, d)
	}
	f.dead[req.Pool] = left
	missing := []string{}
	for _, id := range req.IDs {
		if want[id] {
			missing = append(missing, id)
		}
	}
	apiReply(w, http.StatusOK, map[string]any{"replayed": replayed, "missing": missing})
}

func (f *fakeAPI) purgeDead(w http.ResponseWriter, r *http.Request) {
	pool := r.URL.Query().Get("pool")
	if !deadPool(w, pool) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.dead[pool])
	delete(f.dead, pool)
	apiReply(w, http.StatusOK, map[string]int{"purged": n})
}

// compactRaw compares JSON values without their layout.
var compactRaw = cmp.Transformer("compact", func(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
})

// Ids of dead letters in the tests.
const (
	deadID1 = "0190c5f2-6d1e-7b3a-9c4d-00000000d001"
	deadID2 = "0190c5f2-6d1e-7b3a-9c4d-00000000d002"
	deadID3 = "0190c5f2-6d1e-7b3a-9c4d-00000000d003"
)

// deadLetters are three dead letters of pool sys: one with a long error
// over two lines, one with no error code, and one with no time.
func deadLetters() []client.DeadLetter {
	failed := time.Date(2025, 3, 14, 9, 30, 0, 250_000_000, time.UTC)
	return []client.DeadLetter{
		{
			ID: deadID1, Type: "sys.fail", Attempts: 3, FailedAt: failed, Payload: json.RawMessage(`{"fail_times":5}`),
			Error: &jobs.Error{Code: "handler", Message: "sys.fail: failing attempt 3 of the first 5 as asked,\nwhich is more than this column shows"},
		},
		{
			ID: deadID2, Type: "image.resize", Attempts: 1, FailedAt: failed.Add(time.Minute), Payload: json.RawMessage(`{}`),
			Error: &jobs.Error{Message: "no such image"},
		},
		{ID: deadID3, Type: "sys.echo", Attempts: 10, Payload: json.RawMessage(`{}`), Error: &jobs.Error{}},
	}
}

func TestDeadList(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.seedDead("sys", deadLetters()...)

	stdout, stderr, code := f.run(t, "", "dead", "list", "sys")
	want := `ID                                    TYPE          ATTEMPTS  FAILED AT                 ERROR
0190c5f2-6d1e-7b3a-9c4d-00000000d001  sys.fail      3         2025-03-14T09:30:00.250Z  handler: sys.fail: failing attempt 3 of the first 5 as aske…
0190c5f2-6d1e-7b3a-9c4d-00000000d002  image.resize  1         2025-03-14T09:31:00.250Z  no such image
0190c5f2-6d1e-7b3a-9c4d-00000000d003  sys.echo      10        -                         -
3 of 3 dead letters in pool sys
`
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if diff := cmp.Diff(want, stdout); diff != "" {
		t.Errorf("dead list (-want +got):\n%s", diff)
	}

	stdout, _, code = f.run(t, "", "dead", "list", "sys", "--limit", "1")
	want = `ID                                    TYPE      ATTEMPTS  FAILED AT                 ERROR
0190c5f2-6d1e-7b3a-9c4d-00000000d001  sys.fail  3         2025-03-14T09:30:00.250Z  handler: sys.fail: failing attempt 3 of the first 5 as aske…
1 of 3 dead letters in pool sys
`
	if diff := cmp.Diff(want, stdout); code != 0 || diff != "" {
		t.Errorf("--limit 1: exit %d (-want +got):\n%s", code, diff)
	}

	stdout, _, code = f.run(t, "", "dead", "list", "empty")
	if want := "0 of 0 dead letters in pool empty\n"; code != 0 || stdout != want {
		t.Errorf("empty pool: exit %d, stdout %q; want 0, %q", code, stdout, want)
	}

	stdout, _, code = f.run(t, "", "dead", "list", "sys", "--limit", "2", "-o", "json")
	var got client.DeadList
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("-o json: %v\n%s", err, stdout)
	}
	wantList := client.DeadList{Pool: "sys", Total: 3, Dead: deadLetters()[:2]}
	if diff := cmp.Diff(wantList, got, compactRaw); code != 0 || diff != "" {
		t.Errorf("-o json: exit %d (-want +got):\n%s", code, diff)
	}
	if !strings.HasPrefix(stdout, "{\n  \"pool\": \"sys\",\n  \"total\": 3,\n  \"dead\": [") {
		t.Errorf("-o json: not indented in order pool, total, dead:\n%s", stdout)
	}

	wantReqs := []string{
		"GET /v1/dead?limit=100&pool=sys",
		"GET /v1/dead?limit=1&pool=sys",
		"GET /v1/dead?limit=100&pool=empty",
		"GET /v1/dead?limit=2&pool=sys",
	}
	if diff := cmp.Diff(wantReqs, f.requestLog()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestDeadErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args     []string
		stderr   string
		requests int
	}{
		{[]string{"dead", "list", "nopool"}, "warren: list dead letters of pool nopool: 404 not_found: pool nopool has no dead-letter queue: no worker of that pool has run [field pool]\n", 1},
		{[]string{"dead", "list", "Sys"}, `warren: "Sys" is not a pool name: want a lower-case word, such as sys` + "\n", 0},
		{[]string{"dead", "list"}, "warren: list needs a pool name, such as: warren dead list sys (got 0 arguments)\n", 0},
		{[]string{"dead", "list", "sys", "--limit", "0"}, "warren: --limit 0: want 1 to 1000\n", 0},
		{[]string{"dead", "list", "sys", "--limit", "1001"}, "warren: --limit 1001: want 1 to 1000\n", 0},
		{[]string{"dead", "list", "sys", "-o", "xml"}, `warren: -o "xml": want table (the default), wide, json or yaml` + "\n", 0},
		{[]string{"dead", "show", "sys"}, `warren: unknown command "show" for "warren dead"` + "\n", 0},
		{[]string{"dead", "replay"}, "warren: replay needs a pool, then job ids or --all, such as: warren dead replay sys --all\n", 0},
		{[]string{"dead", "replay", "sys"}, "warren: replay needs the ids of the jobs to replay, or --all for every dead letter of pool sys\n", 0},
		{[]string{"dead", "replay", "sys", deadID1, "--all"}, "warren: give job ids or --all, not both\n", 0},
		{[]string{"dead", "replay", "sys", "42"}, `warren: "42" is not a job id: want a UUID such as 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d` + "\n", 0},
		{[]string{"dead", "replay", "nopool", "--all"}, "warren: replay all dead letters of pool nopool: 404 not_found: pool nopool has no dead-letter queue: no worker of that pool has run [field pool]\n", 1},
		{[]string{"dead", "purge", "sys"}, "warren: purge deletes every dead letter of pool sys, for good; pass --yes to go ahead\n", 0},
		{[]string{"dead", "purge", "sys", "extra", "--yes"}, "warren: purge needs a pool name, such as: warren dead purge sys --yes (got 2 arguments)\n", 0},
		{[]string{"dead", "purge", "nopool", "--yes"}, "warren: purge dead letters of pool nopool: 404 not_found: pool nopool has no dead-letter queue: no worker of that pool has run [field pool]\n", 1},
	} {
		f := newFakeAPI(t)
		f.seedDead("sys", deadLetters()...)
		stdout, stderr, code := f.run(t, "", tc.args...)
		if code != 1 || stdout != "" || stderr != tc.stderr {
			t.Errorf("%q: exit %d, stdout %q, stderr %q\nwant 1, nothing, %q", tc.args, code, stdout, stderr, tc.stderr)
		}
		if n := len(f.requestLog()); n != tc.requests {
			t.Errorf("%q: %d requests, want %d", tc.args, n, tc.requests)
		}
		if diff := cmp.Diff([]string{deadID1, deadID2, deadID3}, f.deadLeft("sys")); diff != "" {
			t.Errorf("%q: dead letters changed (-want +got):\n%s", tc.args, diff)
		}
	}
}

func TestDeadReplay(t *testing.T) {
	t.Parallel()
	const notDead = "0190c5f2-6d1e-7b3a-9c4d-00000000d009"
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
		body   string // the request body sent
		left   []string
	}{
		{
			name:   "ids",
			args:   []string{"dead", "replay", "sys", deadID1, deadID3, deadID1},
			stdout: "replayed 2\n",
			body:   `{"pool":"sys","ids":["` + deadID1 + `","` + deadID3 + `"]}`,
			left:   []string{deadID2},
		},
		{
			name:   "an id not in the queue",
			args:   []string{"dead", "replay", "sys", notDead, deadID2},
			code:   1,
			stdout: "replayed 1\n",
			stderr: "not in the dead-letter queue: " + notDead + "\n",
			body:   `{"pool":"sys","ids":["` + notDead + `","` + deadID2 + `"]}`,
			left:   []string{deadID1, deadID3},
		},
		{
			name:   "all",
			args:   []string{"dead", "replay", "sys", "--all"},
			stdout: "replayed 3\n",
			body:   `{"pool":"sys","all":true}`,
		},
		{
			name:   "JSON",
			args:   []string{"dead", "replay", "sys", deadID1, notDead, "-o", "json"},
			code:   1,
			stdout: "{\n  \"replayed\": 1,\n  \"missing\": [\n    \"" + notDead + "\"\n  ]\n}\n",
			stderr: "not in the dead-letter queue: " + notDead + "\n",
			body:   `{"pool":"sys","ids":["` + deadID1 + `","` + notDead + `"]}`,
			left:   []string{deadID2, deadID3},
		},
		{
			name:   "all, JSON",
			args:   []string{"dead", "replay", "sys", "--all", "-o", "json"},
			stdout: "{\n  \"replayed\": 3,\n  \"missing\": []\n}\n",
			body:   `{"pool":"sys","all":true}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			f.seedDead("sys", deadLetters()...)
			stdout, stderr, code := f.run(t, "", tc.args...)
			if code != tc.code || stdout != tc.stdout || stderr != tc.stderr {
				t.Errorf("exit %d, stdout %q, stderr %q\nwant %d, %q, %q", code, stdout, stderr, tc.code, tc.stdout, tc.stderr)
			}
			if diff := cmp.Diff([]string{tc.body}, f.replayBodies()); diff != "" {
				t.Errorf("request bodies (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.left, f.deadLeft("sys")); diff != "" {
				t.Errorf("dead letters left (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeadPurge(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.seedDead("sys", deadLetters()...)
	f.seedDead("image", deadLetters()[1])

	stdout, stderr, code := f.run(t, "", "dead", "purge", "sys", "--yes")
	if code != 0 || stdout != "purged 3\n" || stderr != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0, %q, nothing", code, stdout, stderr, "purged 3\n")
	}
	if left := f.deadLeft("sys"); len(left) != 0 {
		t.Errorf("left in pool sys: %q, want nothing", left)
	}
	stdout, _, code = f.run(t, "", "dead", "purge", "image", "--yes", "-o", "json")
	if want := "{\n  \"purged\": 1\n}\n"; code != 0 || stdout != want {
		t.Errorf("-o json: exit %d, stdout %q; want 0, %q", code, stdout, want)
	}
	if diff := cmp.Diff([]string{"DELETE /v1/dead?pool=sys", "DELETE /v1/dead?pool=image"}, f.requestLog()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestDeadUnreachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	_, stderr, code := runWarren(t, srv.URL, "", "dead", "list", "sys")
	want := "warren: list dead letters of pool sys: warren API at " + srv.URL + " is not reachable (connection refused); " +
		"start it with 'make run' or 'warren dev', or point --api (WARREN_API_URL) at it\n"
	if code != 1 || stderr != want {
		t.Errorf("exit %d, stderr %q; want 1, %q", code, stderr, want)
	}
}

func TestDeadOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    interface{ Validate() error }
		err  string
	}{
		{"list", &deadListOptions{Pool: "sys", Limit: 100}, ""},
		{"list 1000", &deadListOptions{Pool: "image_2-x", Limit: 1000}, ""},
		{"list no pool", &deadListOptions{Limit: 100}, `"" is not a pool name`},
		{"list bad pool", &deadListOptions{Pool: "sys.echo", Limit: 100}, `"sys.echo" is not a pool name`},
		{"list limit 0", &deadListOptions{Pool: "sys"}, "--limit 0: want 1 to 1000"},
		{"replay ids", &deadReplayOptions{Pool: "sys", IDs: []string{deadID1, deadID2}}, ""},
		{"replay all", &deadReplayOptions{Pool: "sys", All: true}, ""},
		{"replay neither", &deadReplayOptions{Pool: "sys"}, "replay needs the ids of the jobs to replay, or --all"},
		{"replay both", &deadReplayOptions{Pool: "sys", IDs: []string{deadID1}, All: true}, "give job ids or --all, not both"},
		{"replay bad id", &deadReplayOptions{Pool: "sys", IDs: []string{deadID1, strings.ToUpper(deadID2)}}, `"0190C5F2-6D1E-7B3A-9C4D-00000000D002" is not a job id`},
		{"replay bad pool", &deadReplayOptions{Pool: "-", All: true}, `"-" is not a pool name`},
		{"purge", &deadPurgeOptions{Pool: "sys", Yes: true}, ""},
		{"purge without yes", &deadPurgeOptions{Pool: "sys"}, "purge deletes every dead letter of pool sys, for good; pass --yes"},
		{"purge bad pool", &deadPurgeOptions{Pool: "Sys", Yes: true}, `"Sys" is not a pool name`},
	} {
		err := tc.o.Validate()
		if (tc.err == "") != (err == nil) || (err != nil && !strings.HasPrefix(err.Error(), tc.err)) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.err)
		}
	}
}

func TestCut(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly 10", 10, "exactly 10"},
		{"one too long", 11, "one too lo…"},
		{"ééééé", 4, "ééé…"},
	} {
		if got := cut(tc.s, tc.n); got != tc.want {
			t.Errorf("cut(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}
