package ha_test

// The harness of the failover tests, whatever server fails over: the warren
// binary, built once, and its processes (testenv.Proc), started with an
// environment; a load of submissions through the HTTP API that
// counts what the API answered and the longest time it accepted nothing;
// and the settling of every accepted job, with the figures each test
// prints:
//
//	TestX: submitted=N accepted=N refused=N succeeded=N lost=0 duplicated=N seconds_without_service=N.N [more fields]
//
// lost counts accepted jobs that did not end succeeded (a record missing
// counts: the worker drops the message of a job without one).
// duplicated counts succeeded jobs whose record shows more than the one
// attempt a sys.echo job needs: each start of the job was recorded, so
// each is a run of the handler, or a start script whose reply was lost
// and was run again (see cmd/warren/outage_test.go), an upper bound on
// the jobs that ran twice.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
)

// binary is the warren program, built once for the package's tests, with
// the race detector: the failover paths (a client switching servers under
// load) are where a race would hide, and the tests' few processes afford
// its cost.
var binary string

func TestMain(m *testing.M) {
	os.Exit(testenv.BuildAndRun(m, func(dir string) (err error) {
		binary, err = testenv.BuildWarren(dir, true)
		return err
	}))
}

// startAPI starts `warren api` and returns it with its URL once /readyz
// answers 200.
func startAPI(t *testing.T, env []string) (*testenv.Proc, string) {
	t.Helper()
	p := testenv.StartWarren(t, binary, env, "api", "--addr", "127.0.0.1:0")
	url := "http://" + p.Addr(t, "api listening")
	waitReady(t, url)
	return p, url
}

// startWorker starts `warren worker POOL` and returns it once /readyz
// answers 200: it consumes and its types are declared.
func startWorker(t *testing.T, env []string, pool string) *testenv.Proc {
	t.Helper()
	p := testenv.StartWarren(t, binary, env, "worker", pool, "--health-addr", "127.0.0.1:0")
	waitReady(t, "http://"+p.Addr(t, "health endpoints listening"))
	return p
}

// stack is an API and two workers of pool sys, as a failover test runs
// them, with a client of the API.
type stack struct {
	api     *testenv.Proc
	workers []*testenv.Proc
	client  *client.Client
}

// startStack starts the stack's workers, then its API, with env.
func startStack(t *testing.T, env []string) *stack {
	t.Helper()
	st := &stack{workers: []*testenv.Proc{startWorker(t, env, "sys"), startWorker(t, env, "sys")}}
	var url string
	st.api, url = startAPI(t, env)
	c, err := client.New(client.Config{BaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	st.client = c
	return st
}

// logged is how often the stack's processes logged msg, in all.
func (st *stack) logged(msg string) int {
	n := st.api.Logged(msg)
	for _, w := range st.workers {
		n += w.Logged(msg)
	}
	return n
}

var probe = &http.Client{Timeout: 10 * time.Second}

// waitReady waits until /readyz at base answers 200.
func waitReady(t *testing.T, base string) {
	t.Helper()
	testenv.Eventually(t, time.Minute, base+"/readyz to answer 200", func() bool {
		resp, err := probe.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// load submits sys.echo jobs without pause through the API, from a few
// goroutines, and counts what the API answered.
type load struct {
	c      *client.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	start      time.Time
	sent       int
	accepted   []string    // answered 202, in order
	refused    int         // answered 503
	unanswered int         // no answer within the request's timeout
	other      map[int]int // any other answer, by status
	lastErr    error       // of an answer in other
	last202    time.Time   // when the latest 202 came (start before the first)
	longestGap time.Duration
}

// loadMaxAttempts is every job's max_attempts: far more than it needs, so
// that attempts lost to a failover never exhaust a job.
const loadMaxAttempts = 10

// startLoad starts senders goroutines that each submit one job, wait for
// the answer, and submit the next every `every`, until stop.
func startLoad(t *testing.T, c *client.Client, senders int, every time.Duration) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	now := time.Now()
	l := &load{c: c, cancel: cancel, other: map[int]int{}, start: now, last202: now}
	for i := range senders {
		l.wg.Go(func() {
			// Pacing, not waiting for a condition: the load stays steady
			// for as long as the test runs.
			tick := time.NewTicker(every)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				l.submit(ctx, fmt.Sprintf(`{"sender":%d,"n":%d}`, i, n))
			}
		})
	}
	t.Cleanup(l.stop)
	return l
}

func (l *load) submit(ctx context.Context, payload string) {
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	j, created, err := l.c.Enqueue(rctx, client.JobRequest{Type: "sys.echo", Payload: json.RawMessage(payload), MaxAttempts: loadMaxAttempts})
	cancel()
	if ctx.Err() != nil {
		return // stopped mid-request: no answer to count
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent++
	var ae *client.APIError
	switch {
	case err == nil && created:
		l.accepted = append(l.accepted, j.ID)
		l.longestGap = max(l.longestGap, now.Sub(l.last202))
		l.last202 = now
	case err == nil:
		l.other[http.StatusOK]++
	case errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable:
		l.refused++
	case errors.As(err, &ae):
		l.other[ae.Status]++
		l.lastErr = err
	default:
		l.unanswered++
		l.lastErr = err
	}
}

// stop ends the submissions and waits for the senders; safe to call twice.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.longestGap = max(l.longestGap, time.Since(l.last202))
	l.last202 = time.Now() // a second stop adds no gap
}

// acceptedCount is how many jobs the API has accepted so far.
func (l *load) acceptedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted)
}

// waitAccepted waits until n more jobs than now have been accepted: the
// stack takes work.
func (l *load) waitAccepted(t *testing.T, n int, what string, timeout time.Duration) {
	t.Helper()
	target := l.acceptedCount() + n
	testenv.Eventually(t, timeout, fmt.Sprintf("%d more jobs accepted %s", n, what), func() bool {
		return l.acceptedCount() >= target
	})
}

// figures are what a failover test reports.
type figures struct {
	submitted, accepted, refused, unanswered int
	other                                    map[int]int
	lastErr                                  error
	succeeded, lost, duplicated              int
	withoutService                           time.Duration
	lostIDs                                  []string
}

// settle stops the load, waits up to timeout for every accepted job to
// end, and counts how they ended.
func (l *load) settle(t *testing.T, timeout time.Duration) figures {
	t.Helper()
	l.stop()
	l.mu.Lock()
	f := figures{submitted: l.sent, accepted: len(l.accepted), refused: l.refused, unanswered: l.unanswered,
		other: l.other, lastErr: l.lastErr, withoutService: l.longestGap}
	ids := l.accepted
	l.mu.Unlock()
	done := waitDone(t, l.c, ids, timeout)
	for _, id := range ids {
		j := done[id]
		switch {
		case j == nil || j.Status != jobs.StatusSucceeded:
			f.lost++
			if len(f.lostIDs) < 10 {
				f.lostIDs = append(f.lostIDs, id)
			}
		default:
			f.succeeded++
			if j.Attempt > 1 {
				f.duplicated++
			}
		}
	}
	return f
}

// summary is the figures' part of a test's summary line.
func (f figures) summary() string {
	return fmt.Sprintf("submitted=%d accepted=%d refused=%d succeeded=%d lost=%d duplicated=%d seconds_without_service=%.1f unanswered=%d other=%v",
		f.submitted, f.accepted, f.refused, f.succeeded, f.lost, f.duplicated, f.withoutService.Seconds(), f.unanswered, f.other)
}

// check fails the test for what no failover excuses: an accepted job that
// did not succeed, and an answer other than 202 and 503.
func (f figures) check(t *testing.T) {
	t.Helper()
	if f.lost > 0 {
		t.Errorf("%d accepted jobs did not succeed (first ones: %v)", f.lost, f.lostIDs)
	}
	if len(f.other) > 0 || f.unanswered > 0 {
		t.Errorf("the API answered other than 202 and 503: %v, %d unanswered (last: %v)", f.other, f.unanswered, f.lastErr)
	}
}

// waitDone waits for each job to end, a few at a time, until timeout in
// all, and returns the jobs that ended. An answer other than the job (a
// 404: no record) ends the wait for that job; a 503 is waited out.
func waitDone(t *testing.T, c *client.Client, ids []string, timeout time.Duration) map[string]*jobs.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var (
		mu   sync.Mutex
		out  = make(map[string]*jobs.Job, len(ids))
		next = make(chan string)
		wg   sync.WaitGroup
	)
	for range 16 {
		wg.Go(func() {
			for id := range next {
				for {
					j, err := c.WaitDone(ctx, id)
					var ae *client.APIError
					if err == nil {
						mu.Lock()
						out[id] = j
						mu.Unlock()
					} else if errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable {
						select {
						case <-ctx.Done():
						case <-time.After(100 * time.Millisecond): // the API's servers are back soon
							continue
						}
					}
					break
				}
			}
		})
	}
	for _, id := range ids {
		next <- id
	}
	close(next)
	wg.Wait()
	if len(out) < len(ids) {
		t.Logf("%d of %d accepted jobs ended within %s", len(out), len(ids), timeout)
	}
	return out
}
