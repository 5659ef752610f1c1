package main_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/store"
)

// Three warren processes (two APIs and a worker), each running a scheduler,
// and a schedule every second: over 20 s every tick makes exactly one job,
// carrying its tick, and killing the process that fires (SIGKILL) mid-run
// changes nothing: another takes the lease and fires the ticks in between.
func TestScheduleThreeProcessesOneJobPerTick(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	procs := []*testenv.Proc{
		startProc(t, env, "api", "--addr", "127.0.0.1:0"),
		startProc(t, env, "api", "--addr", "127.0.0.1:0"),
		startProc(t, env, "worker", "sys"),
	}
	urls := []string{"http://" + procs[0].Addr(t, "api listening"), "http://" + procs[1].Addr(t, "api listening")}
	for _, u := range urls {
		waitReady(t, u)
	}
	ctx := context.Background()
	testenv.Eventually(t, 30*time.Second, "sys.echo declared", func() bool {
		_, err := env.Store.Type(ctx, "sys.echo")
		return err == nil
	})

	out, errOut, code := warren(t, urls[0], "", "schedule", "add", "sched-e2e", "--type", "sys.echo", "--every", "1s",
		"--payload", `{"from":"schedule"}`, "-o", "json")
	var added client.Schedule
	if err := json.Unmarshal([]byte(out), &added); code != 0 || err != nil {
		t.Fatalf("schedule add: exit %d, %s %s", code, out, errOut)
	}

	// Kill whichever process fires, some seconds in.
	time.Sleep(7 * time.Second)
	rdb := redis.NewClient(mustRedisOptions(t))
	defer rdb.Close()
	holder, err := rdb.Get(ctx, env.NS.SchedulerKey()).Result()
	if err != nil {
		t.Fatalf("nobody holds the scheduler lease: %v", err)
	}
	killed := -1
	for i, p := range procs {
		if strings.Contains(holder, "-"+strconv.Itoa(p.Pid())+"-") {
			killed = i
		}
	}
	if killed < 0 {
		t.Fatalf("the lease's holder %q is none of the processes", holder)
	}
	if err := procs[killed].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = procs[killed].Wait(t, 10*time.Second)
	t.Logf("killed %s (pid %d), which held the lease", procs[killed].Name(), procs[killed].Pid())
	api := urls[0]
	if killed == 0 {
		api = urls[1]
	}
	time.Sleep(14 * time.Second)
	if out, errOut, code := warren(t, api, "", "schedule", "pause", "sched-e2e"); code != 0 {
		t.Fatalf("schedule pause: exit %d, %s %s", code, out, errOut)
	}
	// A tick may be in flight as the pause lands; let it settle.
	time.Sleep(time.Second)

	ticks := map[time.Time]int{}
	for _, k := range env.JobKeys(t) {
		j, err := env.Store.Get(ctx, strings.TrimPrefix(k, env.NS.JobKey("")))
		if err != nil {
			if err == store.ErrNotFound {
				continue
			}
			t.Fatal(err)
		}
		text, ok := strings.CutPrefix(j.IdempotencyKey, "schedule:sched-e2e:")
		if !ok || j.Metadata["schedule"] != "sched-e2e" || string(j.Payload) != `{"from":"schedule"}` {
			t.Errorf("job %s: idempotency key %q, metadata %v, payload %s", j.ID, j.IdempotencyKey, j.Metadata, j.Payload)
			continue
		}
		tick, err := time.Parse(time.RFC3339, text)
		if err != nil {
			t.Errorf("job %s: tick %q: %v", j.ID, text, err)
		}
		ticks[tick]++
	}
	first := added.CreatedAt.Truncate(time.Second).Add(time.Second)
	last := first
	for tick := range ticks {
		if tick.After(last) {
			last = tick
		}
	}
	if n := int(last.Sub(first)/time.Second) + 1; n < 18 {
		t.Errorf("ticks from %s to %s: %d, want about 21", first, last, n)
	}
	for tick := first; !tick.After(last); tick = tick.Add(time.Second) {
		if ticks[tick] != 1 {
			t.Errorf("tick %s: %d jobs, want 1", tick.Format(time.RFC3339), ticks[tick])
		}
	}
	if len(ticks) != int(last.Sub(first)/time.Second)+1 {
		t.Errorf("jobs for %d ticks, some outside %s–%s: %v", len(ticks), first, last, ticks)
	}

	out, _, code = warren(t, api, "", "schedule", "list")
	if code != 0 || !strings.Contains(out, "sched-e2e") || !strings.Contains(out, "paused") || !strings.Contains(out, "every 1s") {
		t.Errorf("schedule list: exit %d:\n%s", code, out)
	}
}

func mustRedisOptions(t *testing.T) *redis.Options {
	t.Helper()
	opts, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	return opts
}

// The dashboard's Schedules page lists the schedules with their next tick,
// their last fired job and whether they are paused, live, and pauses one.
func TestScheduleDashboardPage(t *testing.T) {
	t.Parallel()
	_, base := devStack(t)
	for _, body := range []string{
		`{"name":"sched-ui-heartbeat","every":"1s","type":"sys.echo","payload":{"ping":true},"overlap":"skip"}`,
		`{"name":"sched-ui-nightly","cron":"0 3 * * *","timezone":"Europe/Paris","type":"sys.echo","catch_up":true,"jitter":"30s"}`,
	} {
		if code, out := call(t, "POST", base+"/v1/schedules", "", body); code != 201 {
			t.Fatalf("add: %d %s", code, out)
		}
	}
	if code, out := call(t, "POST", base+"/v1/schedules/sched-ui-nightly/pause", "", ""); code != 200 {
		t.Fatalf("pause: %d %s", code, out)
	}
	b := newBrowser(t, base, 1280, 700, false)
	b.open("/ui/")
	b.click(`nav a[data-page="schedules"]`)
	b.waitFor("both schedules", `document.querySelectorAll('tr[data-schedule]').length === 2`)
	b.markPage()
	hb := `document.querySelector('tr[data-schedule="sched-ui-heartbeat"]')`
	b.waitFor("the heartbeat's last job, shown without a reload", hb+`.querySelector('[data-col="last"] a[href^="/ui/jobs/"]')`)
	if !b.pageKept() {
		t.Error("the schedules page reloaded; it must update in place")
	}
	nightly := `document.querySelector('tr[data-schedule="sched-ui-nightly"]')`
	if got := eval[string](b, nightly+`.innerText`); !strings.Contains(got, "paused") || !strings.Contains(got, "Europe/Paris") || !strings.Contains(got, "0 3 * * *") || !strings.Contains(got, "catches up") {
		t.Errorf("the paused nightly row says %q", got)
	}
	if got := eval[string](b, hb+`.querySelector('[data-col="next"]').innerText`); strings.Contains(got, "paused") || strings.TrimSpace(got) == "" {
		t.Errorf("the heartbeat's next tick says %q", got)
	}
	b.shot("schedules-1280-light")
	b.click(`button[data-key="toggle-sched-ui-heartbeat"]`)
	b.waitFor("the heartbeat paused", hb+`.querySelector('.badge') && `+hb+`.querySelector('button').textContent === "Resume"`)
	if code, out := call(t, "GET", base+"/v1/schedules/sched-ui-heartbeat", "", ""); code != 200 || !strings.Contains(string(out), `"paused":true`) {
		t.Errorf("after the click the API says %d %s", code, out)
	}
	b.shot("schedules-paused-1280-light")
}
