package main_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
)

// The dashboard's tests drive a real headless Chromium through the pages a
// person uses, against a real stack. Each saves screenshots of what it saw
// in bin/ui-screenshots/ for people to look at.

// browserSlot lets one Chromium run at a time: on two cores, several at
// once starve the stacks they test.
var browserSlot = make(chan struct{}, 1)

// chromiumPath finds Chromium, or skips the test where it cannot be had.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Geteuid() == 0 {
		// make test installs it as root (scripts/services.sh browser): its
		// absence here is a broken setup, not a machine that cannot have it.
		t.Fatal("no Chromium for the dashboard's tests: run scripts/services.sh browser (make test does)")
	}
	t.Skip("no Chromium, so the dashboard's browser tests skip: install it (Debian/Ubuntu: sudo apt-get install chromium), " +
		"or run make test as root, which installs it")
	return ""
}

// browser is one headless Chromium tab.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string

	mu       sync.Mutex
	problems []string // uncaught exceptions and policy violations
	expected []string // parts of console errors the test provokes
}

// newBrowser starts Chromium with a width×height viewport, light or dark.
func newBrowser(t *testing.T, base string, width, height int64, dark bool) *browser {
	t.Helper()
	exe := chromiumPath(t)
	browserSlot <- struct{}{}
	t.Cleanup(func() { <-browserSlot })
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // as root, Chromium's sandbox will not start
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(int(width), int(height)),
		// Nothing beyond loopback: the machine may have no network at all.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	b := &browser{t: t, ctx: ctx, base: base}
	if err := chromedp.Do(ctx); err != nil { // starts the browser, bound to ctx
		cancel()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			text := m.String()
			if m.IsException() || strings.Contains(text, "Content Security Policy") {
				b.mu.Lock()
				b.problems = append(b.problems, text)
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		<-done
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			t.Errorf("the page reported: %s", p)
		}
	})
	b.do(chromedp.EmulateViewport(width, height))
	scheme := "light"
	if dark {
		scheme = "dark"
	}
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
	}); err != nil {
		t.Fatalf("emulate %s: %v", scheme, err)
	}
	return b
}

func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.shot("failed-" + b.t.Name())
		b.t.Fatalf("browser: %v", err)
	}
}

// open loads a dashboard path, such as /ui/jobs.
func (b *browser) open(path string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base + path))
}

// click clicks the first visible element matching a CSS selector.
func (b *browser) click(css string) {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(css), chromedp.NodeVisible))
}

// eval evaluates a JavaScript expression.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// waitFor waits until a JavaScript expression is true, as the page changes
// by itself (no reload is asked for).
func (b *browser) waitFor(what, js string) {
	b.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+js+")"))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.shot("failed-" + strings.ReplaceAll(b.t.Name(), "/", "-"))
			body, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string]("document.body.innerText"))
			b.t.Fatalf("waited 45s for %s (%s; last error %v); the page says:\n%s", what, js, err, body)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// shot saves a screenshot of the whole page as bin/ui-screenshots/NAME.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	dir := filepath.Join("..", "..", "bin", "ui-screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// markPage tags the current document, so that pageKept can tell later that
// it was not reloaded: a live update must not need one.
func (b *browser) markPage() {
	b.t.Helper()
	eval[bool](b, "(window.__warrenTestMark = true)")
}

func (b *browser) pageKept() bool {
	b.t.Helper()
	return eval[bool](b, "window.__warrenTestMark === true")
}

// call sends a request to the API, with a key if one is given, and
// returns the status and body.
func call(t *testing.T, method, url, key, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode, b
}

// submit posts a job to the API and returns its id.
func submit(t *testing.T, base, key, body string) string {
	t.Helper()
	status, b := call(t, "POST", base+"/v1/jobs", key, body)
	var j jobs.Job
	if status != http.StatusAccepted || json.Unmarshal(b, &j) != nil {
		t.Fatalf("submit %s: %d %s", body, status, b)
	}
	return j.ID
}

// getJob reads a job from the API.
func getJob(t *testing.T, base, key, id string) jobs.Job {
	t.Helper()
	status, b := call(t, "GET", base+"/v1/jobs/"+id, key, "")
	var j jobs.Job
	if status != http.StatusOK || json.Unmarshal(b, &j) != nil {
		t.Fatalf("get job %s: %d %s", id, status, b)
	}
	return j
}

func waitStatus(t *testing.T, base, key, id string, want ...jobs.Status) jobs.Job {
	t.Helper()
	var j jobs.Job
	testenv.Eventually(t, 45*time.Second, fmt.Sprintf("job %s %v", id, want), func() bool {
		j = getJob(t, base, key, id)
		for _, s := range want {
			if j.Status == s {
				return true
			}
		}
		return false
	})
	return j
}

func TestDashboardShowsPoolsAndJobsLive(t *testing.T) {
	t.Parallel()
	_, base := devStack(t)
	b := newBrowser(t, base, 1280, 900, false)

	// / and /dashboard lead to the dashboard.
	b.open("/")
	b.waitFor("the overview at /ui/", `location.pathname === "/ui/" && document.querySelector('[data-pool="sys"] [data-figure="running"]')`)
	b.markPage()
	running := `Number(document.querySelector('[data-pool="sys"] [data-figure="running"]').textContent.replace(/\D/g, ""))`
	before := eval[int](b, running)
	// Where each figure of the pool sits: live figures must not move the
	// layout as they change.
	layout := `JSON.stringify([...document.querySelectorAll('[data-pool="sys"] dd, [data-pool="sys"] .chart')].map(e => {
		const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height].map(Math.round); }))`
	layoutBefore := eval[string](b, layout)

	// Jobs submitted now move the counts, without a reload.
	var ids []string
	for range 3 {
		ids = append(ids, submit(t, base, "", `{"type":"sys.sleep","payload":{"ms":10000},"metadata":{"team":"ui"}}`))
	}
	b.waitFor("the sys pool to show 3 more running jobs", fmt.Sprintf("%s >= %d", running, before+3))
	if !b.pageKept() {
		t.Error("the overview reloaded to show new figures; it must update in place")
	}
	if after := eval[string](b, layout); after != layoutBefore {
		t.Errorf("the pool's figures moved as they changed: %s, then %s", layoutBefore, after)
	}
	b.shot("overview-1280-light")

	// The jobs page lists them, newest first; a filter narrows it.
	b.click(`nav a[data-page="jobs"]`)
	b.waitFor("the jobs list", `document.querySelector('tr[data-job]')`)
	b.open("/ui/jobs?type=sys.sleep&meta.team=ui")
	b.waitFor("three sys.sleep jobs", `document.querySelectorAll('tr[data-job]').length === 3`)
	first := eval[string](b, `document.querySelector('tr[data-job]').dataset.job`)
	if first != ids[2] {
		t.Errorf("the first row is job %s, want the newest, %s", first, ids[2])
	}
	b.shot("jobs-1280-light")

	// A job's page follows its progress to its result, in place.
	b.click(fmt.Sprintf(`a[data-key="job-%s"]`, ids[0]))
	b.waitFor("the job's page", fmt.Sprintf(`location.pathname === "/ui/jobs/%s" && document.querySelector("h1 .status")`, ids[0]))
	b.markPage()
	b.waitFor("progress between 1 and 99%", `(() => { const p = document.querySelector('[role=progressbar]');
		const v = p && Number(p.getAttribute("aria-valuenow")); return v > 0 && v < 100; })()`)
	b.shot("job-running")
	b.waitFor("the job to succeed", `document.querySelector("h1 .status.succeeded") && document.querySelector('pre[aria-label=result]')`)
	if res := eval[string](b, `document.querySelector('pre[aria-label=result]').textContent`); !strings.Contains(res, "slept_ms") {
		t.Errorf("the result shown is %q, want the handler's result", res)
	}
	if n := eval[int](b, `document.querySelectorAll(".timeline li").length`); n != 1 {
		t.Errorf("the attempts' timeline has %d entries, want 1", n)
	}
	if !b.pageKept() {
		t.Error("the job's page reloaded; it must update in place")
	}
	b.shot("job-succeeded")

	// An image artifact is previewed.
	img, err := os.ReadFile(filepath.Join("..", "..", "workers", "image", "testdata", "sample.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	imgID := submit(t, base, "", `{"type":"image.resize","payload":{"data":"`+base64.StdEncoding.EncodeToString(img)+`","width":320,"format":"png"}}`)
	b.open("/ui/jobs/" + imgID)
	b.waitFor("the image's preview", `(() => { const i = document.querySelector(".preview img"); return i && i.complete && i.naturalWidth === 320; })()`)
	b.shot("job-image")

	// What a job carries is shown as text: markup in a payload runs nothing.
	xss := submit(t, base, "", `{"type":"sys.echo","payload":{"html":"<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>"}}`)
	b.open("/ui/jobs/" + xss)
	b.waitFor("the echo's result", `document.querySelector('pre[aria-label=result]')`)
	if pwned := eval[bool](b, `window.__pwned !== undefined || document.querySelector("main img[src=x], main script") !== null`); pwned {
		t.Error("markup in a job's payload became part of the page")
	}
	if text := eval[string](b, `document.querySelector('pre[aria-label=payload]').textContent`); !strings.Contains(text, `<img src=x onerror=`) {
		t.Errorf("the payload shown is %q, want the markup as text", text)
	}
}

func TestDashboardCancelsRetriesAndReplays(t *testing.T) {
	t.Parallel()
	_, base := devStack(t)
	b := newBrowser(t, base, 1280, 900, false)

	// Cancel a running job, then retry it, from its page.
	sleeper := submit(t, base, "", `{"type":"sys.sleep","payload":{"ms":60000}}`)
	b.open("/ui/jobs/" + sleeper)
	b.waitFor("the job to run", `document.querySelector("h1 .status.running")`)
	b.click(`button[data-key="cancel"]`)
	b.waitFor("the job to be canceled", `document.querySelector("h1 .status.canceled") && document.querySelector('button[data-key="retry"]')`)
	if j := getJob(t, base, "", sleeper); j.Status != jobs.StatusCanceled {
		t.Fatalf("after Cancel the job is %s", j.Status)
	}
	b.click(`button[data-key="retry"]`)
	b.waitFor("the job to run again", `document.querySelector("h1 .status.running, h1 .status.queued")`)
	waitStatus(t, base, "", sleeper, jobs.StatusRunning, jobs.StatusQueued)

	// Two jobs fail for good and wait in the dead letters.
	var dead []string
	for range 2 {
		dead = append(dead, submit(t, base, "", `{"type":"sys.fail","payload":{"fail_times":1},"max_attempts":1}`))
	}
	for _, id := range dead {
		waitStatus(t, base, "", id, jobs.StatusFailed)
	}
	b.open("/ui/dead?pool=sys")
	for _, id := range dead {
		b.waitFor("dead letter "+id, fmt.Sprintf(`document.querySelector('tr[data-dead="%s"]')`, id))
	}
	b.shot("dead-letters")

	// Replay the first alone.
	b.click(fmt.Sprintf(`input[data-key="sel-%s"]`, dead[0]))
	b.waitFor("the replay button to count one", `document.querySelector('button[data-key="replay-selected"]').textContent.includes("(1)")`)
	b.click(`button[data-key="replay-selected"]`)
	b.waitFor("the replay's report", `document.querySelector(".info-box") && document.querySelector(".info-box").textContent.includes("Replayed 1 job")`)
	replayed := false
	testenv.Eventually(t, 30*time.Second, "the replayed job to run again", func() bool {
		j := getJob(t, base, "", dead[0])
		for i, a := range j.Attempts {
			if a.Outcome == "replayed" && i+1 < len(j.Attempts) && j.Status == jobs.StatusFailed {
				replayed = true
			}
		}
		return replayed
	})
	if j := getJob(t, base, "", dead[1]); len(j.Attempts) != 1 {
		t.Errorf("job %s was not selected but has %d attempts", dead[1], len(j.Attempts))
	}

	// Delete them all, after a confirmation.
	b.open("/ui/dead?pool=sys")
	b.waitFor("the dead letters", `document.querySelector('tr[data-dead]') && !document.querySelector('button[data-key="purge"]').disabled`)
	b.click(`button[data-key="purge"]`)
	b.waitFor("the confirmation", `document.querySelector("dialog[open] #confirm-purge")`)
	b.shot("dead-letters-confirm")
	b.click(`dialog[open] #confirm-purge`)
	b.waitFor("no dead letters", `document.querySelector(".empty") && document.querySelector(".empty").textContent.includes("no dead letters")`)
	var left struct{ Total int }
	if _, b := call(t, "GET", base+"/v1/dead?pool=sys", "", ""); json.Unmarshal(b, &left) != nil || left.Total != 0 {
		t.Errorf("after the purge the pool has %s", b)
	}
}

func TestDashboardSignsInWithKeys(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	adminKey, adminEntry := newKey(t, "ops", "--scopes", "admin")
	readKey, readEntry := newKey(t, "viewer", "--scopes", "read")
	submitKey, submitEntry := newKey(t, "ci", "--scopes", "submit")
	p := startProcWith(t, env, []string{"WARREN_API_KEYS=" + strings.Join([]string{adminEntry, readEntry, submitEntry}, ",")},
		"dev", "--addr", "127.0.0.1:0")
	base := "http://" + p.Addr(t, "api listening")
	waitReady(t, base)
	testenv.Eventually(t, 30*time.Second, "sys.sleep declared", func() bool {
		_, err := env.Store.Type(context.Background(), "sys.sleep")
		return err == nil
	})
	b := newBrowser(t, base, 1280, 900, false)

	signIn := func(key string) {
		b.waitFor("the key field", `document.querySelector("#key")`)
		eval[string](b, `document.querySelector("#key").value = ""`)
		b.do(chromedp.SendKeys(chromedp.CSS("#key"), key))
		b.click(`form button[type=submit]`)
	}
	b.open("/ui/")
	b.waitFor("the sign-in page", `location.pathname === "/ui/login" && document.querySelector("#key")`)
	signIn("wrn_not-a-key-anyone-has")
	b.waitFor("the refusal", `document.querySelector(".error-box:not([hidden])") && document.querySelector(".error-box").textContent.includes("does not know")`)
	signIn(submitKey)
	b.waitFor("the submit-only refusal", `document.querySelector(".error-box").textContent.includes("read or admin")`)
	b.shot("signin-refused")

	// read may look, not act.
	signIn(readKey)
	b.waitFor("the overview", `location.pathname === "/ui/" && document.querySelector('[data-pool="sys"]')`)
	if eval[bool](b, `[...document.querySelectorAll("button")].some(b => b.textContent === "Pause")`) {
		t.Error("a read key is offered Pause")
	}
	// It sees the rate limits, with no form and no buttons to change them.
	if status, body := call(t, "PUT", base+"/v1/limits/sys.echo", adminKey, `{"rate":{"limit":5,"per":"1s"}}`); status != http.StatusOK {
		t.Fatalf("PUT a limit as admin: %d %s", status, body)
	}
	b.open("/ui/limits")
	b.waitFor("the limits, read-only", `document.querySelector('tr[data-limit="sys.echo"]')`)
	if eval[bool](b, `!!document.querySelector("#limit-form") || document.querySelectorAll("main button").length > 0`) {
		t.Error("a read key is offered the limit form or its buttons")
	}
	b.open("/ui/")
	b.waitFor("the overview again", `location.pathname === "/ui/" && document.querySelector('[data-pool="sys"]')`)
	if eval[bool](b, `document.cookie.includes("wrn_")`) {
		t.Error("the page's scripts can read the key")
	}
	cookies, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
	if err != nil {
		t.Fatal(err)
	}
	var session *network.Cookie
	for _, c := range cookies.Cookies {
		if c.Name == "warren_key" {
			session = c
		}
	}
	if session == nil || !session.HTTPOnly || session.SameSite != network.CookieSameSiteStrict {
		t.Errorf("the session cookie is %+v, want HttpOnly and SameSite=Strict", session)
	}
	b.open("/ui/dead")
	b.waitFor("the admin-only note", `document.querySelector(".info-box") && document.querySelector(".info-box").textContent.includes("admin scope")`)
	b.click(`#who button`)
	b.waitFor("the sign-in page after signing out", `location.pathname === "/ui/login"`)

	// admin may act.
	signIn(adminKey)
	b.waitFor("the overview with Pause", `[...document.querySelectorAll('[data-pool="sys"] button')].some(b => b.textContent === "Pause")`)
	b.click(`[data-pool="sys"] button[data-key="pause-sys"]`)
	b.waitFor("sys paused", `document.querySelector('[data-pool="sys"] .badge')`)
	b.shot("overview-signed-in-paused")
	b.click(`[data-pool="sys"] button[data-key="pause-sys"]`)
	b.waitFor("sys resumed", `!document.querySelector('[data-pool="sys"] .badge')`)

	// Other pages, same-site (another port) and cross-site (another host
	// name), try to cancel a job with the signed-in browser: a form post
	// and a fetch with credentials. Neither may change anything.
	victim := submit(t, base, adminKey, `{"type":"sys.sleep","payload":{"ms":60000}}`)
	attack := fmt.Sprintf(`<!doctype html><form id=f method=post action="%[1]s/v1/jobs/%[2]s/cancel"></form>
<script>fetch("%[1]s/v1/jobs/%[2]s/cancel", {method: "POST", credentials: "include", mode: "no-cors"}).finally(() => document.getElementById("f").submit());</script>`, base, victim)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, attack)
	}))
	defer evil.Close()
	_, port, _ := net.SplitHostPort(evil.Listener.Addr().String())
	for _, origin := range []string{evil.URL, "http://localhost:" + port} {
		b.do(chromedp.Navigate(origin))
		// The form's post navigates away from the attacker's page.
		b.waitFor("the attack to have been sent", `location.origin !== "`+origin+`"`)
	}
	if j := getJob(t, base, adminKey, victim); j.Status == jobs.StatusCanceled {
		t.Error("another site's page canceled a job through the signed-in dashboard")
	}
	// The cookie alone, without the session's CSRF token, changes nothing.
	req, _ := http.NewRequest("POST", base+"/v1/jobs/"+victim+"/cancel", nil)
	req.AddCookie(&http.Cookie{Name: "warren_key", Value: adminKey})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !bytes.Contains(body, []byte("forbidden_csrf")) {
		t.Errorf("cancel with the cookie and no CSRF token: %d %s, want 403 forbidden_csrf", resp.StatusCode, body)
	}
	if j := getJob(t, base, adminKey, victim); j.Status == jobs.StatusCanceled {
		t.Error("a cookie without its CSRF token canceled a job")
	}
}

func TestDashboardAtPhoneWidthInTheDark(t *testing.T) {
	t.Parallel()
	_, base := devStack(t)
	submit(t, base, "", `{"type":"sys.sleep","payload":{"ms":30000},"metadata":{"tenant":"acme"}}`)
	submit(t, base, "", `{"type":"sys.fail","payload":{"fail_times":1},"max_attempts":1}`)
	if status, body := call(t, "PUT", base+"/v1/limits/sys.echo", "", `{"rate":{"limit":100,"per":"1m","burst":10},"tenant":{"key":"tenant","limit":5,"per":"1s"}}`); status != http.StatusOK {
		t.Fatalf("PUT a limit: %d %s", status, body)
	}
	b := newBrowser(t, base, 390, 844, true)

	b.open("/ui/")
	b.waitFor("the pools", `document.querySelector('[data-pool="sys"] [data-figure="running"]')`)
	if bg := eval[string](b, `getComputedStyle(document.body).backgroundColor`); bg != "rgb(13, 17, 23)" {
		t.Errorf("the dark scheme's background is %s", bg)
	}
	for _, path := range []string{"/ui/", "/ui/jobs", "/ui/workers", "/ui/dead?pool=sys", "/ui/schedules", "/ui/workflows", "/ui/limits", "/ui/autoscaling"} {
		b.open(path)
		b.waitFor("the page's content", `document.querySelector("main h1") && !document.querySelector("main .error-box:not([hidden])")`)
		time.Sleep(700 * time.Millisecond) // a poll's worth, so the figures are in
		if w := eval[int](b, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("%s is %d px wide at 390 px: the page scrolls sideways", path, w)
		}
		name := strings.Trim(strings.NewReplacer("/ui", "", "/", "-", "?pool=", "-").Replace(path), "-")
		if name == "" {
			name = "overview"
		}
		b.shot(name + "-390-dark")
	}

	// The keyboard reaches everything: the first Tab lands on the skip
	// link, which leads to the content.
	b.open("/ui/jobs")
	b.waitFor("the jobs", `document.querySelector('tr[data-job]')`)
	b.do(chromedp.KeyEvent("\t"))
	if got := eval[string](b, `document.activeElement.className`); got != "skip" {
		t.Errorf("the first Tab lands on %q, want the skip link", got)
	}
	b.do(chromedp.KeyEvent("\r"))
	b.waitFor("focus in the content", `document.activeElement.id === "main"`)
	b.do(chromedp.KeyEvent("\t"))
	if tag := eval[string](b, `document.activeElement.tagName + ":" + (document.activeElement.closest("form") ? "filters" : "")`); tag != "SELECT:filters" {
		t.Errorf("Tab from the content reaches %s, want the filters", tag)
	}
}

func TestDashboardRidesOutAnAPIRestart(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := startProc(t, env, "api", "--addr", addr)
	base := "http://" + p.Addr(t, "api listening")
	waitReady(t, base)
	b := newBrowser(t, base, 1280, 900, false)
	b.open("/ui/")
	b.waitFor("the overview", `document.querySelector("main h1") && document.querySelector("#live") && document.querySelector("#banner").hidden`)
	b.markPage()

	p.Stop(t)
	b.waitFor("the page to say the API is away", `!document.querySelector("#banner").hidden && document.querySelector("#live").classList.contains("down")`)
	b.shot("api-away")
	p = startProc(t, env, "api", "--addr", addr)
	p.Addr(t, "api listening")
	b.waitFor("the page to carry on", `document.querySelector("#banner").hidden && !document.querySelector("#live").classList.contains("down")`)
	if !b.pageKept() {
		t.Error("the page reloaded to recover from the API's restart")
	}
	p.Stop(t)
}
