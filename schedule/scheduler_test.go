package schedule_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/schedule"
	"github.com/warrenhq/warren/store"
	"github.com/warrenhq/warren/workers/sys"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

// clock is a time the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

type fixture struct {
	env   *testenv.Env
	clock *clock
	book  *schedule.Book
	prod  *producer.Producer
}

// setup is a namespace where sys.echo is declared and bound, a Book and a
// clock at start.
func setup(t *testing.T, start time.Time) *fixture {
	t.Helper()
	env := testenv.New(t)
	ctx := context.Background()
	if err := env.Broker.DeclarePool(ctx, sys.Pool, []string{"sys.echo"}); err != nil {
		t.Fatal(err)
	}
	if err := env.Store.DeclareTypes(ctx, []jobs.Type{sys.Echo.WithDefaults()}); err != nil {
		t.Fatal(err)
	}
	c := &clock{t: start}
	p := producer.New(producer.Config{Logger: env.Log, Now: c.Now}, env.Broker, env.Store)
	return &fixture{env: env, clock: c, book: schedule.NewBook(env.Store, p, c.Now), prod: p}
}

func (f *fixture) scheduler(holder string) *schedule.Scheduler {
	return schedule.New(schedule.Config{Holder: holder, Namespace: f.env.NS, Logger: f.env.Log, Now: f.clock.Now}, f.env.Store, f.prod)
}

// ticks returns the tick of each job of the schedule, from its
// idempotency key, sorted.
func (f *fixture) ticks(t *testing.T, name string) []string {
	t.Helper()
	var out []string
	for _, k := range f.env.JobKeys(t) {
		j, err := f.env.Store.Get(context.Background(), strings.TrimPrefix(k, f.env.NS.JobKey("")))
		if err != nil {
			t.Fatal(err)
		}
		if j.Metadata[schedule.MetaSchedule] != name {
			continue
		}
		tick, ok := strings.CutPrefix(j.IdempotencyKey, "schedule:"+name+":")
		if !ok {
			t.Fatalf("job %s of schedule %s has idempotency key %q", j.ID, name, j.IdempotencyKey)
		}
		if got := j.Metadata[schedule.MetaTick]; got != tick {
			t.Fatalf("job %s of schedule %s has metadata.%s %q, want its tick %q", j.ID, name, schedule.MetaTick, got, tick)
		}
		out = append(out, tick)
	}
	slices.Sort(out)
	return out
}

func seconds(from time.Time, n int) []string {
	var out []string
	for i := range n {
		out = append(out, from.Add(time.Duration(i)*time.Second).UTC().Format(time.RFC3339))
	}
	return out
}

// Three schedulers that all believe they hold the lease pass at once, at
// every simulated 100 ms for 5 s: every tick makes one job.
func TestScheduleRacingSchedulersFireEachTickOnce(t *testing.T) {
	t.Parallel()
	start := at("2030-01-01T00:00:00Z").Add(500 * time.Millisecond)
	f := setup(t, start)
	ctx := context.Background()
	if _, err := f.book.Add(ctx, schedule.Definition{Name: "sched-race", Every: jobs.Duration(time.Second), Type: "sys.echo",
		Payload: []byte(`{"n":1}`)}, "ops"); err != nil {
		t.Fatal(err)
	}
	ss := []*schedule.Scheduler{f.scheduler("a"), f.scheduler("b"), f.scheduler("c")}
	for step := 1; step <= 50; step++ {
		f.clock.set(start.Add(time.Duration(step) * 100 * time.Millisecond))
		var wg sync.WaitGroup
		for _, s := range ss {
			wg.Go(func() {
				if _, err := s.Pass(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	// Ticks 00:00:01 to 00:00:05 (the clock ends at 5.5 s).
	want := seconds(at("2030-01-01T00:00:01Z"), 5)
	if got := f.ticks(t, "sched-race"); !slices.Equal(got, want) {
		t.Errorf("jobs for ticks %v, want one each for %v", got, want)
	}
	v, err := f.book.Get(ctx, "sched-race")
	if err != nil {
		t.Fatal(err)
	}
	if v.LastTick == nil || !v.LastTick.Equal(at("2030-01-01T00:00:05Z")) || v.LastJob == "" || v.NextTick == nil || !v.NextTick.Equal(at("2030-01-01T00:00:06Z")) {
		t.Errorf("the schedule says last tick %v, job %q, next %v", v.LastTick, v.LastJob, v.NextTick)
	}
	j, err := f.env.Store.Get(ctx, v.LastJob)
	if err != nil || j.SubmittedBy != "ops" || string(j.Payload) != `{"n":1}` || j.Type != "sys.echo" {
		t.Errorf("last job %+v, %v", j, err)
	}
}

// A process that claimed a tick and died before it made the job: the next
// pass makes that job, under the id claimed, once.
func TestScheduleFinishesAClaimedTick(t *testing.T) {
	t.Parallel()
	start := at("2030-01-01T00:00:00Z")
	f := setup(t, start)
	ctx := context.Background()
	if _, err := f.book.Add(ctx, schedule.Definition{Name: "sched-claimed", Every: jobs.Duration(time.Minute), Type: "sys.echo"}, ""); err != nil {
		t.Fatal(err)
	}
	tick := at("2030-01-01T00:01:00Z")
	id := jobs.NewID()
	if c, err := f.env.Store.ClaimTick(ctx, "sched-claimed", tick, id); err != nil || c.State != store.Claimed {
		t.Fatalf("claim: %+v, %v", c, err)
	}
	if c, err := f.env.Store.ClaimTick(ctx, "sched-claimed", tick, jobs.NewID()); err != nil || c.State != store.ClaimPending || c.Job != id {
		t.Fatalf("a second claim of the tick: %+v, %v; want the first's job", c, err)
	}
	f.clock.set(tick.Add(5 * time.Second))
	for range 2 {
		if _, err := f.scheduler("b").Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.env.Store.Get(ctx, id); err != nil {
		t.Fatalf("the claimed job: %v", err)
	}
	if got := f.ticks(t, "sched-claimed"); !slices.Equal(got, []string{"2030-01-01T00:01:00Z"}) {
		t.Errorf("jobs for ticks %v", got)
	}
	if c, err := f.env.Store.ClaimTick(ctx, "sched-claimed", tick, jobs.NewID()); err != nil || c.State != store.ClaimDone {
		t.Errorf("a claim after the tick was recorded: %+v, %v", c, err)
	}
}

// Ticks that passed while nothing ran: once with catch_up, else none; the
// ticks after come on time either way.
func TestScheduleMissedTicks(t *testing.T) {
	t.Parallel()
	start := at("2030-01-01T00:00:00Z")
	f := setup(t, start)
	ctx := context.Background()
	for _, catchUp := range []bool{true, false} {
		name := "sched-skip"
		if catchUp {
			name = "sched-catchup"
		}
		if _, err := f.book.Add(ctx, schedule.Definition{Name: name, Cron: "*/5 * * * *", Type: "sys.echo", CatchUp: catchUp}, ""); err != nil {
			t.Fatal(err)
		}
	}
	s := f.scheduler("a")
	// Three hours later: 36 ticks passed.
	f.clock.set(at("2030-01-01T03:02:00Z"))
	if _, err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.ticks(t, "sched-catchup"); !slices.Equal(got, []string{"2030-01-01T03:00:00Z"}) {
		t.Errorf("catch_up: jobs for ticks %v, want the last missed one alone", got)
	}
	if got := f.ticks(t, "sched-skip"); len(got) != 0 {
		t.Errorf("no catch_up: jobs for ticks %v, want none", got)
	}
	v, _ := f.book.Get(ctx, "sched-skip")
	if v.LastSkipped == nil || v.LastSkipped.Reason != schedule.SkipMissed || !v.LastSkipped.Tick.Equal(at("2030-01-01T03:00:00Z")) {
		t.Errorf("the skipped schedule says %+v", v.LastSkipped)
	}
	f.clock.set(at("2030-01-01T03:05:01Z"))
	if _, err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sched-catchup", "sched-skip"} {
		if got := f.ticks(t, name); !slices.Contains(got, "2030-01-01T03:05:00Z") {
			t.Errorf("%s: jobs for ticks %v, want 03:05 among them", name, got)
		}
	}
}

// overlap: skip fires no tick while the previous tick's job is queued.
func TestScheduleOverlapSkip(t *testing.T) {
	t.Parallel()
	start := at("2030-01-01T00:00:00Z")
	f := setup(t, start)
	ctx := context.Background()
	if _, err := f.book.Add(ctx, schedule.Definition{Name: "sched-overlap", Every: jobs.Duration(time.Second), Type: "sys.echo", Overlap: schedule.OverlapSkip}, ""); err != nil {
		t.Fatal(err)
	}
	s := f.scheduler("a")
	for i := 1; i <= 3; i++ {
		f.clock.set(start.Add(time.Duration(i)*time.Second + 100*time.Millisecond))
		if _, err := s.Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// No worker runs: the first job stays queued, so 2 and 3 are skipped.
	if got := f.ticks(t, "sched-overlap"); !slices.Equal(got, []string{"2030-01-01T00:00:01Z"}) {
		t.Errorf("jobs for ticks %v, want the first alone", got)
	}
	v, _ := f.book.Get(ctx, "sched-overlap")
	if v.LastSkipped == nil || v.LastSkipped.Reason != schedule.SkipOverlap || !v.LastSkipped.Tick.Equal(at("2030-01-01T00:00:03Z")) {
		t.Errorf("last skipped %+v", v.LastSkipped)
	}
	// Once the job has ended, the next tick fires.
	if _, err := f.env.Store.Cancel(ctx, v.LastJob, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.clock.set(start.Add(4*time.Second + 100*time.Millisecond))
	if _, err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.ticks(t, "sched-overlap"); !slices.Equal(got, []string{"2030-01-01T00:00:01Z", "2030-01-01T00:00:04Z"}) {
		t.Errorf("jobs for ticks %v", got)
	}
}

// A paused schedule fires nothing; resumed, it skips what passed meanwhile.
func TestSchedulePauseResume(t *testing.T) {
	t.Parallel()
	start := at("2030-01-01T00:00:00Z")
	f := setup(t, start)
	ctx := context.Background()
	if _, err := f.book.Add(ctx, schedule.Definition{Name: "sched-pause", Every: jobs.Duration(time.Second), Type: "sys.echo", CatchUp: true}, ""); err != nil {
		t.Fatal(err)
	}
	if v, changed, err := f.book.Pause(ctx, "sched-pause", "ops"); err != nil || !changed || !v.Paused || v.NextTick != nil || v.PausedBy != "ops" {
		t.Fatalf("pause: %+v, %v, %v", v, changed, err)
	}
	if _, changed, _ := f.book.Pause(ctx, "sched-pause", "other"); changed {
		t.Error("a second pause changed something")
	}
	s := f.scheduler("a")
	f.clock.set(start.Add(3 * time.Second))
	if _, err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.ticks(t, "sched-pause"); len(got) != 0 {
		t.Errorf("a paused schedule fired %v", got)
	}
	if _, changed, err := f.book.Resume(ctx, "sched-pause"); err != nil || !changed {
		t.Fatalf("resume: %v, %v", changed, err)
	}
	f.clock.set(start.Add(4*time.Second + 500*time.Millisecond))
	if _, err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.ticks(t, "sched-pause"); !slices.Equal(got, []string{"2030-01-01T00:00:04Z"}) {
		t.Errorf("after resuming at 3s: jobs for ticks %v, want 4s alone", got)
	}
	if err := f.book.Delete(ctx, "sched-pause"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.book.Get(ctx, "sched-pause"); !errors.Is(err, store.ErrScheduleNotFound) {
		t.Errorf("after delete: %v", err)
	}
}

// The Book refuses a type nobody declared, a payload its schema refuses,
// and a name that is taken.
func TestScheduleBookRefuses(t *testing.T) {
	t.Parallel()
	f := setup(t, time.Now())
	ctx := context.Background()
	def := schedule.Definition{Name: "sched-book", Every: jobs.Duration(time.Minute), Type: "sys.echo"}
	if _, err := f.book.Add(ctx, def, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.book.Add(ctx, def, ""); !errors.Is(err, store.ErrScheduleExists) {
		t.Errorf("the same name again: %v", err)
	}
	var pe *producer.Error
	bad := def
	bad.Name, bad.Type = "sched-book2", "video.transcode"
	if _, err := f.book.Add(ctx, bad, ""); !errors.As(err, &pe) || pe.Code != "unknown_type" {
		t.Errorf("an unknown type: %v", err)
	}
	bad.Type, bad.Payload = "sys.echo", []byte(`[1]`)
	if _, err := f.book.Add(ctx, bad, ""); !errors.As(err, &pe) || pe.Field != "payload" {
		t.Errorf("a payload that is not an object: %v", err)
	}
}

// The real loop, with the lease: a schedule every second fires within a
// few seconds, and Stop gives the lease up and leaves no goroutine.
func TestScheduleSchedulerStartStop(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	if err := env.Broker.DeclarePool(ctx, sys.Pool, []string{"sys.echo"}); err != nil {
		t.Fatal(err)
	}
	if err := env.Store.DeclareTypes(ctx, []jobs.Type{sys.Echo.WithDefaults()}); err != nil {
		t.Fatal(err)
	}
	p := producer.New(producer.Config{Logger: env.Log}, env.Broker, env.Store)
	book := schedule.NewBook(env.Store, p, nil)
	if _, err := book.Add(ctx, schedule.Definition{Name: "sched-loop", Every: jobs.Duration(time.Second), Type: "sys.echo"}, ""); err != nil {
		t.Fatal(err)
	}
	s := schedule.New(schedule.Config{Holder: "loop", Namespace: env.NS, Logger: env.Log}, env.Store, p)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "a tick to fire", func() bool {
		v, err := book.Get(ctx, "sched-loop")
		return err == nil && v.LastJob != ""
	})
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Errorf("a second Stop: %v", err)
	}
	if held, err := env.Store.HoldScheduler(ctx, "other", time.Second); err != nil || !held {
		t.Errorf("after Stop another process cannot take the lease: %v, %v", held, err)
	}
}

// A schedule's priority is its jobs': recorded, and their messages in the
// pool's high lane.
func TestScheduleJobsCarryItsPriority(t *testing.T) {
	t.Parallel()
	start := at("2030-01-01T00:00:00Z").Add(500 * time.Millisecond)
	f := setup(t, start)
	ctx := context.Background()
	if _, err := f.book.Add(ctx, schedule.Definition{Name: "sched-prio", Every: jobs.Duration(time.Second), Type: "sys.echo",
		Priority: 8}, "ops"); err != nil {
		t.Fatal(err)
	}
	f.clock.set(start.Add(time.Second))
	if _, err := f.scheduler("a").Pass(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := f.book.Get(ctx, "sched-prio")
	if err != nil || v.LastJob == "" {
		t.Fatalf("the schedule after a tick: %+v, %v", v, err)
	}
	j, err := f.env.Store.Get(ctx, v.LastJob)
	if err != nil || j.Priority != 8 {
		t.Fatalf("the tick's job: %+v, %v; want priority 8", j, err)
	}
	q, err := testenv.Channel(t).QueueDeclarePassive(f.env.NS.HighQueue(sys.Pool), true, false, false, false, nil)
	if err != nil || q.Messages != 1 {
		t.Errorf("high lane: %+v, %v; want the tick's job", q, err)
	}
}
