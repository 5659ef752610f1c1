// Package schedule runs periodic jobs: a schedule names a job type, a
// payload and when to submit it (a cron expression or a fixed interval), and
// every tick of it is submitted once, however many warren processes run.
//
// A Book adds, reads, pauses, resumes and deletes schedules (the HTTP API is
// a thin layer over it); a Scheduler, which every server process runs, fires
// their ticks. One process at a time holds the scheduler's lease in Redis and
// fires; firing a tick is a claim in Redis that names the tick's job before
// the job is submitted, and the job carries an idempotency key derived from
// the schedule and the tick, so that even two processes that both believe
// they hold the lease make one job for one tick (docs/schedules.md).
package schedule

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
)

// Limits on a schedule.
const (
	// MaxSchedules is the most schedules a namespace holds.
	MaxSchedules = 1000
	// MinEvery is the shortest interval.
	MinEvery = time.Second
	// MaxJitter is the longest jitter.
	MaxJitter = time.Hour
	// MaxCron is the longest cron expression, in bytes.
	MaxCron = 128
	// MaxTimezone is the longest timezone name, in bytes.
	MaxTimezone = 64
)

// Metadata keys every job of a schedule carries; a schedule's own
// metadata may not use them.
const (
	// MetaSchedule holds the schedule's name.
	MetaSchedule = "schedule"
	// MetaTick holds the tick the job was made for, in RFC 3339, UTC. It
	// is not listed (jobs.Listed): GET /v1/jobs?meta.schedule_tick=… walks
	// the schedule's list instead, when given with meta.schedule.
	MetaTick = jobs.MetaScheduleTick
)

// Overlap says whether a tick fires while the previous tick's job has not
// ended.
type Overlap string

const (
	// OverlapAllow fires every tick (the default).
	OverlapAllow Overlap = "allow"
	// OverlapSkip skips a tick while the previous tick's job is queued,
	// scheduled, running or retrying.
	OverlapSkip Overlap = "skip"
)

// Reasons a tick is skipped.
const (
	// SkipOverlap: the previous tick's job had not ended (OverlapSkip).
	SkipOverlap = "overlap"
	// SkipMissed: the tick passed while no process fired, and the schedule
	// does not catch up.
	SkipMissed = "missed"
	// SkipRefused: its job was refused (its type or payload no longer
	// valid, no queue bound for the type).
	SkipRefused = "refused"
)

// Definition is what a schedule asks for. It is kept in Redis as JSON.
type Definition struct {
	// Name names the schedule: 1 to 128 letters, digits, '.', '_' or '-',
	// starting with a letter or a digit.
	Name string `json:"name"`
	// Cron is a standard 5-field cron expression (minute hour
	// day-of-month month day-of-week) or a descriptor (@hourly, @daily,
	// @weekly, @monthly, @yearly). Send Cron or Every.
	Cron string `json:"cron,omitempty"`
	// Every is a fixed interval, at least a second, in whole seconds; ticks
	// fall on multiples of it since the Unix epoch.
	Every jobs.Duration `json:"every,omitempty"`
	// Type is the job type, declared by a worker.
	Type string `json:"type"`
	// Payload is each job's payload; empty means {}.
	Payload json.RawMessage `json:"payload,omitempty"`
	// Metadata are more labels for each job.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Priority is each job's priority, 0 to 9 (docs/priorities.md).
	Priority int `json:"priority,omitempty"`
	// Timezone is the IANA name Cron is read in; empty means UTC.
	Timezone string `json:"timezone,omitempty"`
	// Jitter delays each tick's job by up to this much, by the same amount
	// in every process (derived from the name and the tick).
	Jitter jobs.Duration `json:"jitter,omitempty"`
	// Overlap is OverlapAllow (empty) or OverlapSkip.
	Overlap Overlap `json:"overlap,omitempty"`
	// CatchUp fires a tick missed while no process ran once, on return;
	// without it such ticks are skipped.
	CatchUp bool `json:"catch_up,omitempty"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidName reports whether name may name a schedule.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// cronParser reads standard cron: five fields, no seconds, and the
// descriptors.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func refuse(code, field, format string, args ...any) *producer.Error {
	return &producer.Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Plan is a checked Definition, ready to say when its ticks fall.
type Plan struct {
	Def  Definition
	spec cron.Schedule // nil for Every
	loc  *time.Location
}

// Compile checks a definition, all but its type and payload (which a Book
// checks against the type), and returns its plan. A refusal is a
// *producer.Error naming the field.
func Compile(d Definition) (p *Plan, err error) {
	switch {
	case d.Name == "":
		return nil, refuse("missing_field", "name", "name is required, such as \"nightly-report\"")
	case !ValidName(d.Name):
		return nil, refuse("invalid_field", "name", "name %q: want 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", truncate(d.Name, 40))
	case d.Cron == "" && d.Every == 0:
		return nil, refuse("missing_field", "cron", "send cron (such as \"0 3 * * *\") or every (such as \"1m\")")
	case d.Cron != "" && d.Every != 0:
		return nil, refuse("invalid_field", "every", "send cron or every, not both")
	case d.Type == "":
		return nil, refuse("missing_field", "type", "type is required, such as \"sys.echo\"")
	case d.Jitter < 0 || d.Jitter.Std() > MaxJitter:
		return nil, refuse("invalid_field", "jitter", "jitter must be from 0s to %s", MaxJitter)
	case d.Overlap != "" && d.Overlap != OverlapAllow && d.Overlap != OverlapSkip:
		return nil, refuse("invalid_field", "overlap", "overlap must be \"allow\" or \"skip\"")
	case len(d.Timezone) > MaxTimezone:
		return nil, refuse("invalid_field", "timezone", "timezone must be an IANA name such as \"Europe/Paris\", at most %d bytes", MaxTimezone)
	}
	for _, k := range []string{MetaSchedule, MetaTick} {
		if _, ok := d.Metadata[k]; ok {
			return nil, refuse("invalid_field", "metadata."+k, "metadata.%s is set by the schedule itself", k)
		}
	}
	p = &Plan{Def: d, loc: time.UTC}
	if d.Timezone != "" {
		// "Local" would be each machine's own zone: not one time.
		loc, err := time.LoadLocation(d.Timezone)
		if err != nil || d.Timezone == "Local" {
			return nil, refuse("invalid_field", "timezone", "timezone %q is not a known IANA name, such as \"Europe/Paris\" or \"UTC\"", truncate(d.Timezone, 64))
		}
		p.loc = loc
	}
	if d.Every != 0 {
		e := d.Every.Std()
		switch {
		case e < MinEvery:
			return nil, refuse("invalid_field", "every", "every must be at least %s", MinEvery)
		case e%time.Second != 0:
			return nil, refuse("invalid_field", "every", "every must be whole seconds")
		case e > 366*24*time.Hour:
			return nil, refuse("invalid_field", "every", "every must be at most 8784h (366 days); use cron for rarer ticks")
		case d.Jitter.Std() >= e:
			return nil, refuse("invalid_field", "jitter", "jitter must be shorter than every")
		}
		return p, nil
	}
	if p.spec, err = parseCron(d.Cron); err != nil {
		return nil, refuse("invalid_field", "cron", "cron %q: %v", truncate(d.Cron, 64), err)
	}
	if p.Next(time.Now()).IsZero() {
		return nil, refuse("invalid_field", "cron", "cron %q never fires", truncate(d.Cron, 64))
	}
	return p, nil
}

// parseCron reads a cron expression as Compile allows it. The parser is
// not trusted with hostile text: what it would take in another way (a
// TZ= prefix, @every) is refused first, and a panic is an error.
func parseCron(expr string) (s cron.Schedule, err error) {
	switch {
	case len(expr) > MaxCron:
		return nil, fmt.Errorf("longer than %d bytes", MaxCron)
	case strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ="):
		return nil, fmt.Errorf("send the zone in timezone, not in the expression")
	case strings.HasPrefix(expr, "@every"):
		return nil, fmt.Errorf("send an interval in every, not as @every")
	case strings.HasPrefix(expr, "@"):
	case len(strings.Fields(expr)) != 5:
		return nil, fmt.Errorf("want 5 fields (minute hour day-of-month month day-of-week) or a descriptor such as @hourly; seconds are not taken")
	}
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("not a cron expression")
		}
	}()
	return cronParser.Parse(expr)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Next returns the first tick after t; zero when none comes (a cron
// expression that matches no date in the next five years).
func (p *Plan) Next(t time.Time) time.Time {
	if p.spec == nil {
		e := p.Def.Every.Std().Milliseconds()
		return time.UnixMilli((t.UnixMilli()/e + 1) * e).UTC()
	}
	return p.spec.Next(t.In(p.loc)).UTC()
}

// LastBy returns the last tick at or before bound, given that first is a
// tick at or before it. A long outage may hold many ticks: the search
// steps back from bound in growing windows, so that it examines about as
// many ticks as fall within the first window that holds one.
func (p *Plan) LastBy(first, bound time.Time) time.Time {
	if p.spec == nil {
		e := p.Def.Every.Std().Milliseconds()
		return time.UnixMilli(bound.UnixMilli() / e * e).UTC()
	}
	from := first
	for _, w := range []time.Duration{time.Hour, 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour} {
		if s := bound.Add(-w); s.After(first) {
			if n := p.Next(s); !n.IsZero() && !n.After(bound) {
				from = s
				break
			}
		}
	}
	last := first
	for t := p.Next(from); !t.IsZero() && !t.After(bound); t = p.Next(t) {
		last = t
	}
	return last
}

// Jitter is the delay of tick's job: the same in every process, from 0 up
// to the definition's jitter, in whole milliseconds.
func (p *Plan) Jitter(tick time.Time) time.Duration {
	j := p.Def.Jitter.Std().Milliseconds()
	if j <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(p.Def.Name))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatInt(tick.UnixMilli(), 10)))
	return time.Duration(h.Sum64()%uint64(j+1)) * time.Millisecond
}

// FireAt is when tick's job is submitted: the tick and its jitter.
func (p *Plan) FireAt(tick time.Time) time.Time { return tick.Add(p.Jitter(tick)) }

// KeyPrefix begins every tick's idempotency key (TickKey). The API keeps
// it to the scheduler: a submitter's own key with it could stand for a tick
// before it fires.
const KeyPrefix = "schedule:"

// TickKey is the idempotency key of a tick's job: KeyPrefix + name + ":"
// + the tick in RFC 3339, UTC. It is how a job says which tick fired it.
func TickKey(name string, tick time.Time) string {
	return KeyPrefix + name + ":" + tick.UTC().Format(time.RFC3339Nano)
}

// Request is the submission of tick's job, in the name of by.
func (p *Plan) Request(tick time.Time, by string) producer.Request {
	md := make(map[string]string, len(p.Def.Metadata)+2)
	for k, v := range p.Def.Metadata {
		md[k] = v
	}
	md[MetaSchedule] = p.Def.Name
	md[MetaTick] = tick.UTC().Format(time.RFC3339Nano)
	return producer.Request{
		Type:           p.Def.Type,
		Payload:        p.Def.Payload,
		Metadata:       md,
		Priority:       p.Def.Priority,
		IdempotencyKey: TickKey(p.Def.Name, tick),
		SubmittedBy:    by,
	}
}
