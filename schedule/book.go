package schedule

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/store"
)

// Records is what the schedules keep in Redis.
type Records interface {
	AddSchedule(ctx context.Context, rec store.ScheduleRecord, max int) error
	Schedule(ctx context.Context, name string) (store.ScheduleRecord, error)
	Schedules(ctx context.Context) ([]store.ScheduleRecord, error)
	DeleteSchedule(ctx context.Context, name string) error
	PauseSchedule(ctx context.Context, name, by string, now time.Time) (bool, error)
	ResumeSchedule(ctx context.Context, name string, now time.Time) (bool, error)
}

// Builder checks a job request against its type (producer.Producer.Build).
type Builder interface {
	Build(ctx context.Context, req producer.Request) (*jobs.Job, error)
}

var (
	_ Records = (*store.Store)(nil)
	_ Builder = (*producer.Producer)(nil)
)

// Book adds, reads, pauses, resumes and deletes schedules.
type Book struct {
	st    Records
	build Builder
	now   func() time.Time
}

// NewBook returns a Book over the records, checking jobs with build; now
// nil means time.Now.
func NewBook(st Records, build Builder, now func() time.Time) *Book {
	if now == nil {
		now = time.Now
	}
	return &Book{st: st, build: build, now: now}
}

// View is a schedule as the API shows it.
type View struct {
	Definition
	// CatchUp is the definition's, shown when false too.
	CatchUp   bool       `json:"catch_up"`
	Paused    bool       `json:"paused"`
	PausedAt  *time.Time `json:"paused_at,omitempty"`
	PausedBy  string     `json:"paused_by,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by,omitempty"`
	// NextTick is the next tick to fire, and NextRunAt when its job is
	// submitted (the tick and its jitter); absent while paused, or when no
	// tick comes.
	NextTick  *time.Time `json:"next_tick,omitempty"`
	NextRunAt *time.Time `json:"next_run_at,omitempty"`
	// LastTick, LastJob and LastFiredAt are the last tick fired, its job
	// and when.
	LastTick    *time.Time `json:"last_tick,omitempty"`
	LastJob     string     `json:"last_job,omitempty"`
	LastFiredAt *time.Time `json:"last_fired_at,omitempty"`
	// LastSkipped is the last tick skipped, and why.
	LastSkipped *Skipped `json:"last_skipped,omitempty"`
}

// Skipped is a tick that was not fired.
type Skipped struct {
	Tick time.Time `json:"tick"`
	// Reason is SkipOverlap, SkipMissed or SkipRefused.
	Reason string `json:"reason"`
	// Error says why a refused tick's job was refused.
	Error string `json:"error,omitempty"`
}

// Add checks a definition (its type and payload against the type, as a
// job's) and records it, in the name of by; its first tick is the first
// after now. A refusal is a *producer.Error; store.ErrScheduleExists and
// store.ErrScheduleLimit say the name is taken or the namespace full.
func (b *Book) Add(ctx context.Context, d Definition, by string) (View, error) {
	if d.Overlap == "" {
		d.Overlap = OverlapAllow
	}
	p, err := Compile(d)
	if err != nil {
		return View{}, err
	}
	if _, err := b.build.Build(ctx, p.Request(b.now(), by)); err != nil {
		return View{}, err
	}
	def, err := json.Marshal(d)
	if err != nil {
		return View{}, fmt.Errorf("add schedule %s: %w", d.Name, err)
	}
	rec := store.ScheduleRecord{Name: d.Name, Def: def, CreatedAt: b.now().UTC().Truncate(time.Millisecond), CreatedBy: by}
	if err := b.st.AddSchedule(ctx, rec, MaxSchedules); err != nil {
		return View{}, err
	}
	rec.After = rec.CreatedAt
	return b.view(rec)
}

// Get returns one schedule; store.ErrScheduleNotFound when none has the
// name.
func (b *Book) Get(ctx context.Context, name string) (View, error) {
	rec, err := b.st.Schedule(ctx, name)
	if err != nil {
		return View{}, err
	}
	return b.view(rec)
}

// List returns every schedule, by name.
func (b *Book) List(ctx context.Context) ([]View, error) {
	recs, err := b.st.Schedules(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]View, 0, len(recs))
	for _, r := range recs {
		v, err := b.view(r)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Pause pauses a schedule, in the name of by: no tick fires until it is
// resumed. It reports whether this call paused it.
func (b *Book) Pause(ctx context.Context, name, by string) (View, bool, error) {
	changed, err := b.st.PauseSchedule(ctx, name, by, b.now())
	if err != nil {
		return View{}, false, err
	}
	v, err := b.Get(ctx, name)
	return v, changed, err
}

// Resume resumes a paused schedule from now: ticks that fell while it was
// paused are not fired. It reports whether this call resumed it.
func (b *Book) Resume(ctx context.Context, name string) (View, bool, error) {
	changed, err := b.st.ResumeSchedule(ctx, name, b.now())
	if err != nil {
		return View{}, false, err
	}
	v, err := b.Get(ctx, name)
	return v, changed, err
}

// Delete deletes a schedule. Jobs it fired are not touched.
func (b *Book) Delete(ctx context.Context, name string) error { return b.st.DeleteSchedule(ctx, name) }

// PlanOf reads a schedule's definition back.
func PlanOf(rec store.ScheduleRecord) (*Plan, error) {
	var d Definition
	if err := json.Unmarshal(rec.Def, &d); err != nil {
		return nil, fmt.Errorf("schedule %s: stored definition: %w", rec.Name, err)
	}
	d.Name = rec.Name
	p, err := Compile(d)
	if err != nil {
		return nil, fmt.Errorf("schedule %s: stored definition: %w", rec.Name, err)
	}
	return p, nil
}

func (b *Book) view(rec store.ScheduleRecord) (View, error) {
	p, err := PlanOf(rec)
	if err != nil {
		return View{}, err
	}
	v := View{Definition: p.Def, CatchUp: p.Def.CatchUp, CreatedAt: rec.CreatedAt.UTC(), CreatedBy: rec.CreatedBy, LastJob: rec.LastJob}
	if rec.Paused != nil {
		at := rec.Paused.At.UTC()
		v.Paused, v.PausedAt, v.PausedBy = true, &at, rec.Paused.By
	} else {
		from := rec.After
		if !rec.PendingTick.IsZero() && rec.PendingTick.After(from) {
			// The tick in flight is the next one until it is recorded.
			from = rec.PendingTick.Add(-time.Millisecond)
		}
		if n := p.Next(from); !n.IsZero() {
			run := p.FireAt(n)
			v.NextTick, v.NextRunAt = &n, &run
		}
	}
	if t := timePtr(rec.LastTick); t != nil {
		v.LastTick, v.LastFiredAt = t, timePtr(rec.LastFired)
	}
	if !rec.SkipTick.IsZero() {
		v.LastSkipped = &Skipped{Tick: rec.SkipTick.UTC(), Reason: rec.SkipReason, Error: rec.SkipError}
	}
	return v, nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
