package main_test

// The soak: jobs of every kind submitted without pause while every process of
// a stack is killed or stopped in turn and its RabbitMQ node restarted; every
// job the API accepted must end succeeded. `make test` runs a short one
// (about 45 seconds of faults); `make soak` a long one (10 minutes unless
// SOAK=… says otherwise). Its summary line:
//
//	TestSoak: accepted=N succeeded=N lost=0 duplicated=N refused=N rescued=N worker_kills=N api_kills=N broker_restarts=N seconds=N [more fields]

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
)

var (
	soakFor  = flag.Duration("soak", 0, "how long TestSoak submits jobs and injects faults; zero means $WARREN_SOAK_DURATION, else 45s")
	soakSeed = flag.Uint64("soak.seed", 0, "TestSoak's random seed, to repeat a run's faults (kinds, order, targets) and job mix; zero means $WARREN_SOAK_SEED, else a fresh one")
)

const (
	soakDefault = 45 * time.Second
	// soakDrain bounds the wait for every accepted job to end once the
	// faults stop: far more than the longest delay (5s), a few retries'
	// backoff and the rescuer's interval plus grace (1s + 3s).
	soakDrain = 3 * time.Minute
	// Submissions: soakSenders goroutines each send one job per
	// soakEvery (40 a second in all), and no more than soakMaxSent in all.
	soakSenders = 4
	soakEvery   = 100 * time.Millisecond
	soakMaxSent = 200_000
)

// soakEnv is the environment of every process of the soak: the rescuer looks
// every second and takes a job for lost after 3 seconds, so that lost jobs
// come back within the drain; queues are measured over AMQP (the default
// management API would be the shared node's, not the private one's); and a
// stopped worker gives its running jobs 1 second, so that SIGTERM interrupts
// the longer sys.sleep jobs as well as draining the short ones.
var soakEnv = []string{
	"WARREN_RESCUE_INTERVAL=1s",
	"WARREN_RESCUE_GRACE=3s",
	"WARREN_MANAGEMENT_URL=off",
	"WARREN_SHUTDOWN_GRACE=1s",
}

func soakSettings(t *testing.T) (time.Duration, uint64) {
	t.Helper()
	d := *soakFor
	if d == 0 {
		if v := os.Getenv("WARREN_SOAK_DURATION"); v != "" {
			var err error
			if d, err = time.ParseDuration(v); err != nil {
				t.Fatalf("WARREN_SOAK_DURATION: %v", err)
			}
		}
	}
	d = cmp.Or(d, soakDefault)
	seed := *soakSeed
	if seed == 0 {
		if v := os.Getenv("WARREN_SOAK_SEED"); v != "" {
			if _, err := fmt.Sscan(v, &seed); err != nil {
				t.Fatalf("WARREN_SOAK_SEED: %v", err)
			}
		}
	}
	if seed == 0 {
		seed = rand.Uint64()
	}
	return d, seed
}

// The kinds of jobs the soak submits.
type soakKind int

const (
	soakImmediate soakKind = iota // sys.echo or sys.sleep, to run at once
	soakDelayed                   // sys.sleep with a delay of 1–5s
	soakRetried                   // sys.fail failing its first 1 or 2 attempts
)

func (k soakKind) String() string {
	return [...]string{"immediate", "delayed", "retried"}[k]
}

// soakJob is what the soak expects of one accepted job.
type soakJob struct {
	kind soakKind
	// attempts is the attempts the job needs when nothing goes wrong: 1,
	// or fail_times+1 for a retried job.
	attempts int
}

// soakMaxAttempts is every job's max_attempts: far more than a job needs, so
// that attempts lost with killed workers never exhaust a job and each job
// must end succeeded.
const soakMaxAttempts = 10

// soakRequest draws a job: half immediate, a quarter delayed, a quarter
// retried.
func soakRequest(r *rand.Rand) (client.JobRequest, soakJob) {
	req := client.JobRequest{MaxAttempts: soakMaxAttempts}
	switch n := r.IntN(4); {
	case n < 2:
		switch m := r.IntN(10); {
		case m < 3:
			req.Type, req.Payload = "sys.echo", json.RawMessage(fmt.Sprintf(`{"n":%d}`, r.IntN(1000)))
		case m < 4:
			// Longer than a stopped worker's grace (1s): a SIGTERM
			// interrupts it and it runs again elsewhere.
			req.Type, req.Payload = "sys.sleep", json.RawMessage(fmt.Sprintf(`{"ms":%d}`, 1000+r.IntN(1000)))
		default:
			req.Type, req.Payload = "sys.sleep", json.RawMessage(fmt.Sprintf(`{"ms":%d}`, 10+r.IntN(290)))
		}
		return req, soakJob{kind: soakImmediate, attempts: 1}
	case n == 2:
		req.Type, req.Payload = "sys.sleep", json.RawMessage(fmt.Sprintf(`{"ms":%d}`, 10+r.IntN(90)))
		req.Delay = jobs.Duration(time.Second + time.Duration(r.IntN(4001))*time.Millisecond)
		return req, soakJob{kind: soakDelayed, attempts: 1}
	default:
		fails := 1 + r.IntN(2)
		req.Type, req.Payload = "sys.fail", json.RawMessage(fmt.Sprintf(`{"fail_times":%d}`, fails))
		req.Backoff = &jobs.Backoff{Base: jobs.Duration(200 * time.Millisecond)}
		return req, soakJob{kind: soakRetried, attempts: fails + 1}
	}
}

// soakSubmitter posts jobs of every kind from a few goroutines, to whichever
// API process is current, and records what the API answered.
type soakSubmitter struct {
	api atomic.Pointer[client.Client]

	mu         sync.Mutex
	sent       int
	accepted   []string           // answered 202, in order
	expect     map[string]soakJob // by id, the accepted ones
	refused    int                // answered 503
	unanswered int                // no answer: the API was down, or killed mid-request
	other      map[int]int        // any other answer, by status
	lastErr    error              // of an answer in other
}

// run posts until ctx ends, from senders goroutines each sending one job per
// every, each drawing its jobs from its own random source.
func (s *soakSubmitter) run(ctx context.Context, seed uint64, senders int, every time.Duration) (wait func()) {
	s.expect = map[string]soakJob{}
	s.other = map[int]int{}
	var wg sync.WaitGroup
	for i := range senders {
		r := rand.New(rand.NewPCG(seed, uint64(i)+1))
		wg.Go(func() {
			// Pacing, not waiting for a condition: the load stays steady
			// for as long as the soak runs.
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				s.submit(r)
			}
		})
	}
	return wg.Wait
}

func (s *soakSubmitter) submit(r *rand.Rand) {
	s.mu.Lock()
	full := s.sent >= soakMaxSent
	s.mu.Unlock()
	if full {
		return
	}
	req, want := soakRequest(r)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	j, created, err := s.api.Load().Enqueue(ctx, req)
	cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent++
	var ae *client.APIError
	switch {
	case err == nil && created:
		s.accepted = append(s.accepted, j.ID)
		s.expect[j.ID] = want
	case err == nil:
		s.other[http.StatusOK]++
	case errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable:
		s.refused++
	case errors.As(err, &ae):
		s.other[ae.Status]++
		s.lastErr = err
	default:
		s.unanswered++
	}
}

func (s *soakSubmitter) acceptedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.accepted)
}

// waitAccepted waits until n more jobs than now have been accepted: the
// stack takes work again.
func (s *soakSubmitter) waitAccepted(t *testing.T, n int, what string) {
	t.Helper()
	target := s.acceptedCount() + n
	testenv.Eventually(t, time.Minute, fmt.Sprintf("%d more jobs accepted %s", n, what), func() bool {
		return s.acceptedCount() >= target
	})
}

// soakStack is the processes of the soak: one API, two workers, and the
// private RabbitMQ node they use.
type soakStack struct {
	t       *testing.T
	s       servers
	rmq     *testenv.RabbitMQ
	api     *testenv.Proc
	apiURL  string
	workers [2]struct {
		p   *testenv.Proc
		url string
	}
	all []*testenv.Proc // every process started, killed ones too, for their log counts
	sub *soakSubmitter
	rdb *redis.Client

	// cut counts, by job, the attempts that a SIGKILL of their worker cut
	// short: the attempts the job may take beyond those it needs.
	cut map[string]int

	workerKills, workerStops, apiKills, brokerRestarts int
}

func (st *soakStack) startAPI() {
	t := st.t
	t.Helper()
	st.api = launch(t, st.s, soakEnv, "api", "--addr", "127.0.0.1:0")
	st.apiURL = "http://" + st.api.Addr(t, "api listening")
	waitReady(t, st.apiURL)
	st.all = append(st.all, st.api)
}

func (st *soakStack) startWorker(i int) {
	t := st.t
	t.Helper()
	p, url := startWorker(t, st.s, soakEnv)
	st.workers[i].p, st.workers[i].url = p, url
	st.all = append(st.all, p)
}

// killWorker kills worker i with SIGKILL and starts another in its place.
func (st *soakStack) killWorker(i int) {
	t := st.t
	t.Helper()
	p := st.workers[i].p
	p.Kill(t)
	st.workerKills++
	st.noteCut(p)
	st.startWorker(i)
}

// noteCut records the jobs the killed worker p was running. Nothing has
// touched their records since: another worker that gets a redelivered
// message leaves the record alone while p's lease lasts (10 seconds), and
// parks the copy. So they are the jobs of the pool's running index whose
// record names p.
func (st *soakStack) noteCut(p *testenv.Proc) {
	t := st.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids, err := st.rdb.ZRange(ctx, st.s.ns.RunningKey("sys"), 0, -1).Result()
	if err != nil {
		t.Fatalf("read the running jobs after killing %s: %v", p.Name(), err)
	}
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s-%d", host, p.Pid()) // how jobs.NewProcessID begins
	c := st.sub.api.Load()
	n := 0
	for _, jid := range ids {
		j, err := c.Get(ctx, jid)
		if err != nil {
			t.Fatalf("read job %s after killing %s: %v", jid, p.Name(), err)
		}
		if j.Worker == id || strings.HasPrefix(j.Worker, id+"-") {
			st.cut[jid]++
			n++
		}
	}
	t.Logf("soak: %s was running %d jobs", p.Name(), n)
}

// stopWorker stops worker i with SIGTERM, requires it to exit 0 after its
// grace period, and starts another in its place.
func (st *soakStack) stopWorker(i int) {
	t := st.t
	t.Helper()
	p := st.workers[i].p
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.Name(), err)
	}
	if err := p.Wait(t, 30*time.Second); err != nil {
		t.Errorf("%s exited with %v after SIGTERM, want status 0", p.Name(), err)
	}
	st.workerStops++
	st.startWorker(i)
}

// killAPI kills the API with SIGKILL and starts another, on a port of its
// own; the submitter turns to it.
func (st *soakStack) killAPI() {
	t := st.t
	t.Helper()
	st.api.Kill(t)
	st.apiKills++
	st.startAPI()
	st.sub.api.Store(newClient(t, st.apiURL))
}

// restartBroker stops the RabbitMQ node gracefully, leaves it stopped for up
// to 2 seconds, starts it, and waits until every process is ready again.
func (st *soakStack) restartBroker(r *rand.Rand) {
	t := st.t
	t.Helper()
	st.rmq.Stop(t)
	// Timed: a short outage of varying length is the point.
	time.Sleep(time.Duration(r.IntN(2000)) * time.Millisecond)
	st.rmq.Start(t)
	st.brokerRestarts++
	waitReadyz(t, st.apiURL, http.StatusOK, time.Minute)
	for _, w := range st.workers {
		waitReadyz(t, w.url, http.StatusOK, time.Minute)
	}
}

// logged sums how often every process of the stack logged msg.
func (st *soakStack) logged(msg string) int {
	n := 0
	for _, p := range st.all {
		n += p.Logged(msg)
	}
	return n
}

// TestSoak submits immediate, delayed and retried jobs without pause while,
// in rounds of random order, a worker is killed with SIGKILL, a worker is
// stopped with SIGTERM (each replaced at once), the API is killed with
// SIGKILL and started again, and the RabbitMQ node (a private one) is
// stopped and started. Each fault happens at least once; a long soak
// repeats the rounds until its time is up. Then the faults and submissions
// stop, and every job the API accepted with a 202 must end succeeded: no
// job may be lost, whatever the faults did to its messages (the rescuer
// finds the jobs whose messages the broker lost and publishes them again).
//
// What duplicated counts: jobs that succeeded after more attempts than they
// needed (1, or fail_times+1 for sys.fail). A worker killed during an
// attempt legitimately causes one (the lost attempt counts, and the job runs
// again as a new one: at-least-once); an attempt interrupted by SIGTERM is
// taken back and counts nothing. (The other cause outage_test.go's comment
// names, a lost reply to a start script, needs Redis to fail, which the
// soak leaves alone.) So duplicated is an upper bound on the jobs whose
// handler started more than needed.
//
// The test also knows which attempts the kills cut short: right after each
// SIGKILL it reads which jobs the dead worker was running. A job that took
// more extra attempts than the kills cut short of it was started more often
// than any fault explains (two copies of one attempt both running, what the
// start script's fence prevents), and fails the test (unexplained_attempts).
func TestSoak(t *testing.T) {
	t.Parallel()
	testenv.RequireServices(t)
	soak, seed := soakSettings(t)
	if dl, ok := t.Deadline(); ok && time.Until(dl) < soak+soakDrain+3*time.Minute {
		t.Fatalf("a soak of %s needs a longer go test -timeout (%s left): give at least %s",
			soak, time.Until(dl).Round(time.Second), soak+soakDrain+5*time.Minute)
	}
	t.Logf("soak: %s of faults, seed %d (the same faults and job mix again: -soak.seed=%d or WARREN_SOAK_SEED=%d)", soak, seed, seed, seed)
	start := time.Now()
	ns := testenv.Namespace(t)
	rmq := testenv.StartRabbitMQ(t)
	opts, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	sub := &soakSubmitter{}
	st := &soakStack{t: t, s: servers{ns: ns, amqpURL: rmq.URL(), redisURL: testenv.RedisURL()}, rmq: rmq,
		sub: sub, rdb: rdb, cut: map[string]int{}}
	// The workers first: the API accepts only declared types.
	st.startWorker(0)
	st.startWorker(1)
	st.startAPI()
	sub.api.Store(newClient(t, st.apiURL))
	ctx, stopSubmitting := context.WithCancel(context.Background())
	wait := sub.run(ctx, seed, soakSenders, soakEvery)
	stopped := false
	defer func() {
		if !stopped {
			stopSubmitting()
			wait()
		}
	}()
	sub.waitAccepted(t, 100, "before the first fault")

	// The faults, in rounds of random order with random pauses; the rounds
	// after the first only while time remains.
	r := rand.New(rand.NewPCG(seed, 0))
	faultsFrom := time.Now()
	deadline := faultsFrom.Add(soak)
	event := 0
rounds:
	for round := 0; ; round++ {
		for _, kind := range r.Perm(4) {
			if round > 0 && time.Now().After(deadline) {
				break rounds
			}
			// Timed pacing, not a condition: the stack runs under load
			// for a while between faults.
			time.Sleep(time.Second + time.Duration(r.IntN(3000))*time.Millisecond)
			event++
			var what string
			switch kind {
			case 0:
				i := r.IntN(2)
				what = fmt.Sprintf("kill -9 worker %d (%s)", i, st.workers[i].p.Name())
				st.killWorker(i)
			case 1:
				i := r.IntN(2)
				what = fmt.Sprintf("SIGTERM worker %d (%s)", i, st.workers[i].p.Name())
				st.stopWorker(i)
			case 2:
				what = fmt.Sprintf("kill -9 the API (%s)", st.api.Name())
				st.killAPI()
			case 3:
				what = "restart RabbitMQ (stop, start)"
				st.restartBroker(r)
			}
			t.Logf("soak: fault %d at %s: %s; %d jobs accepted so far", event, time.Since(faultsFrom).Round(time.Millisecond), what, sub.acceptedCount())
			// Whatever the fault, the stack takes jobs again.
			sub.waitAccepted(t, 20, "after "+what)
		}
	}
	faultsTook := time.Since(faultsFrom)
	stopSubmitting()
	wait()
	stopped = true

	sub.mu.Lock()
	accepted, expect, sent, refused, unanswered, other, lastErr := sub.accepted, sub.expect, sub.sent, sub.refused, sub.unanswered, sub.other, sub.lastErr
	sub.mu.Unlock()
	c := newClient(t, st.apiURL)
	t.Logf("soak: faults over after %s; waiting for %d accepted jobs to end", faultsTook.Round(time.Millisecond), len(accepted))
	drainFrom := time.Now()
	done := waitDone(t, c, accepted, soakDrain)
	drained := time.Since(drainFrom)

	var (
		succeeded, lost, duplicated int
		lostIDs, unexplained        []string
		byKind                      [3]int
		attempts                    = map[int]int{} // attempts beyond those needed → jobs
	)
	for _, id := range accepted {
		want := expect[id]
		byKind[want.kind]++
		j := done[id]
		if j == nil || j.Status != jobs.StatusSucceeded {
			lost++
			lostIDs = append(lostIDs, id)
			continue
		}
		succeeded++
		extra := j.Attempt - want.attempts
		if extra != 0 {
			attempts[extra]++
		}
		if extra > 0 {
			duplicated++
		}
		// A cut attempt of sys.fail may stand for one it was to fail, so
		// fewer extra attempts than cuts is no surprise; more is.
		if extra > st.cut[id] {
			unexplained = append(unexplained, id)
		}
	}

	rescued := 0
	qctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	queues, err := c.Queues(qctx)
	cancel()
	if err != nil {
		t.Errorf("read the queues for the rescued count: %v", err)
	}
	for _, q := range queues {
		rescued += q.RescuedLastHour
	}

	// Jobs recorded though not accepted: refused with 503 after the broker
	// took the message, or recorded by an API killed before it answered.
	// No promise covers them, but they must end all the same, not wait for
	// ever: the rescuer publishes a recorded job whose message is missing.
	extra := extraJobs(t, st.s, accepted)
	extraDone := waitDone(t, c, extra, 30*time.Second)

	summary(t, "accepted=%d succeeded=%d lost=%d duplicated=%d refused=%d rescued=%d worker_kills=%d api_kills=%d broker_restarts=%d seconds=%.0f "+
		"worker_stops=%d sent=%d unanswered=%d immediate=%d delayed=%d retried=%d extra_attempts=%v interrupted=%d rescue_logs=%d stale_copies=%d parked_copies=%d "+
		"cut_by_kills=%d unexplained_attempts=%d recorded_unaccepted=%d recorded_unaccepted_ended=%d fault_seconds=%.0f drain_seconds=%.1f seed=%d",
		len(accepted), succeeded, lost, duplicated, refused, rescued, st.workerKills, st.apiKills, st.brokerRestarts, time.Since(start).Seconds(),
		st.workerStops, sent, unanswered, byKind[soakImmediate], byKind[soakDelayed], byKind[soakRetried], attempts,
		st.logged("job interrupted by shutdown; requeueing"), st.logged("rescued a lost job: published it again"),
		st.logged("stale copy of a job; dropping it"), st.logged("another worker runs this attempt; parking this copy"),
		len(st.cut), len(unexplained), len(extra), len(extraDone), faultsTook.Seconds(), drained.Seconds(), seed)

	if lost > 0 {
		t.Errorf("%d of %d accepted jobs did not succeed (seed %d); for example:\n%s", lost, len(accepted), seed,
			soakDescribe(t, c, st.s, expect, lostIDs[:min(len(lostIDs), 10)], st.cut))
	}
	if len(unexplained) > 0 {
		t.Errorf("%d jobs took other than the attempts they needed plus those cut short by killed workers (seed %d); "+
			"two copies of one attempt may have run; for example:\n%s", len(unexplained), seed,
			soakDescribe(t, c, st.s, expect, unexplained[:min(len(unexplained), 10)], st.cut))
	}
	if len(extraDone) != len(extra) {
		var stuck []string
		for _, id := range extra {
			if extraDone[id] == nil {
				stuck = append(stuck, id)
			}
		}
		t.Errorf("%d of %d jobs recorded but not accepted never ended; for example:\n%s", len(stuck), len(extra),
			soakDescribe(t, c, st.s, nil, stuck[:min(len(stuck), 10)], nil))
	}
	if len(other) > 0 {
		t.Errorf("the API answered other than 202 or 503: %v (last error: %v)", other, lastErr)
	}
}

// soakDescribe shows each job's record as it stands and where the
// lifecycle's indexes have it, one line a job, to explain a loss.
func soakDescribe(t *testing.T, c *client.Client, s servers, expect map[string]soakJob, ids []string, cut map[string]int) string {
	t.Helper()
	opts, err := redis.ParseURL(s.redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, "  %s", id)
		if want, ok := expect[id]; ok {
			fmt.Fprintf(&b, " (%s, needs %d attempts, %d cut short by kills)", want.kind, want.attempts, cut[id])
		}
		j, err := c.Get(ctx, id)
		if err != nil {
			fmt.Fprintf(&b, ": %v\n", err)
			continue
		}
		fmt.Fprintf(&b, ": %s %s, worker %q, created %s", j.Type, describe(j), j.Worker, j.CreatedAt.Format(time.RFC3339Nano))
		for _, tm := range []struct {
			name string
			at   *time.Time
		}{{"scheduled", j.ScheduledAt}, {"started", j.StartedAt}, {"finished", j.FinishedAt}} {
			if tm.at != nil {
				fmt.Fprintf(&b, ", %s %s", tm.name, tm.at.Format(time.RFC3339Nano))
			}
		}
		for _, idx := range []string{s.ns.WaitingKey("sys"), s.ns.RunningKey("sys")} {
			score, err := rdb.ZScore(ctx, idx, id).Result()
			switch {
			case errors.Is(err, redis.Nil):
				fmt.Fprintf(&b, ", not in %s", idx)
			case err != nil:
				fmt.Fprintf(&b, ", %s: %v", idx, err)
			default:
				fmt.Fprintf(&b, ", in %s since %s", idx, time.UnixMilli(int64(score)).UTC().Format(time.RFC3339Nano))
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}
