package schedule_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
	"github.com/warrenhq/warren/schedule"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestCompileRefusesWithTheField(t *testing.T) {
	t.Parallel()
	ok := schedule.Definition{Name: "sched-nightly", Cron: "0 3 * * *", Type: "sys.echo"}
	for _, tc := range []struct {
		name  string
		edit  func(d *schedule.Definition)
		field string
	}{
		{"no name", func(d *schedule.Definition) { d.Name = "" }, "name"},
		{"name with a colon", func(d *schedule.Definition) { d.Name = "a:b" }, "name"},
		{"name with a space", func(d *schedule.Definition) { d.Name = "a b" }, "name"},
		{"name with a slash", func(d *schedule.Definition) { d.Name = "a/b" }, "name"},
		{"name too long", func(d *schedule.Definition) { d.Name = strings.Repeat("a", 129) }, "name"},
		{"name starting with a dot", func(d *schedule.Definition) { d.Name = ".a" }, "name"},
		{"neither cron nor every", func(d *schedule.Definition) { d.Cron = "" }, "cron"},
		{"both", func(d *schedule.Definition) { d.Every = jobs.Duration(time.Minute) }, "every"},
		{"no type", func(d *schedule.Definition) { d.Type = "" }, "type"},
		{"bad cron", func(d *schedule.Definition) { d.Cron = "not a cron" }, "cron"},
		{"cron with seconds", func(d *schedule.Definition) { d.Cron = "*/5 * * * * *" }, "cron"},
		{"cron out of range", func(d *schedule.Definition) { d.Cron = "61 * * * *" }, "cron"},
		{"cron that never fires", func(d *schedule.Definition) { d.Cron = "0 0 30 2 *" }, "cron"},
		{"cron with a zone", func(d *schedule.Definition) { d.Cron = "TZ=UTC 0 3 * * *" }, "cron"},
		{"cron zone without a space (panics robfig)", func(d *schedule.Definition) { d.Cron = "TZ=UTC" }, "cron"},
		{"@every", func(d *schedule.Definition) { d.Cron = "@every 1h" }, "cron"},
		{"unknown descriptor", func(d *schedule.Definition) { d.Cron = "@fortnightly" }, "cron"},
		{"huge cron", func(d *schedule.Definition) { d.Cron = strings.Repeat("1,", 100) + "1 * * * *" }, "cron"},
		{"unknown zone", func(d *schedule.Definition) { d.Timezone = "Mars/Olympus" }, "timezone"},
		{"Local", func(d *schedule.Definition) { d.Timezone = "Local" }, "timezone"},
		{"a path for a zone", func(d *schedule.Definition) { d.Timezone = "../../etc/passwd" }, "timezone"},
		{"negative jitter", func(d *schedule.Definition) { d.Jitter = -1 }, "jitter"},
		{"jitter over an hour", func(d *schedule.Definition) { d.Jitter = jobs.Duration(2 * time.Hour) }, "jitter"},
		{"bad overlap", func(d *schedule.Definition) { d.Overlap = "queue" }, "overlap"},
		{"every under a second", func(d *schedule.Definition) { d.Cron, d.Every = "", jobs.Duration(999*time.Millisecond) }, "every"},
		{"every zero sent", func(d *schedule.Definition) { d.Cron, d.Every = "", -1 }, "every"},
		{"every not whole seconds", func(d *schedule.Definition) { d.Cron, d.Every = "", jobs.Duration(1500*time.Millisecond) }, "every"},
		{"jitter not under every", func(d *schedule.Definition) {
			d.Cron, d.Every, d.Jitter = "", jobs.Duration(time.Second), jobs.Duration(time.Second)
		}, "jitter"},
		{"reserved metadata", func(d *schedule.Definition) { d.Metadata = map[string]string{"schedule": "x"} }, "metadata.schedule"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := ok
			tc.edit(&d)
			_, err := schedule.Compile(d)
			var pe *producer.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Compile = %v, want a refusal", err)
			}
			if pe.Field != tc.field {
				t.Errorf("refused %q (%s), want field %q", pe.Field, pe.Message, tc.field)
			}
		})
	}
	if _, err := schedule.Compile(ok); err != nil {
		t.Errorf("a good definition: %v", err)
	}
}

func TestTicks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		def   schedule.Definition
		after time.Time
		want  []time.Time
	}{
		{"every second, on whole seconds", schedule.Definition{Every: jobs.Duration(time.Second)},
			at("2030-01-01T00:00:00Z").Add(300 * time.Millisecond),
			[]time.Time{at("2030-01-01T00:00:01Z"), at("2030-01-01T00:00:02Z"), at("2030-01-01T00:00:03Z")}},
		{"every 90s, since the epoch", schedule.Definition{Every: jobs.Duration(90 * time.Second)},
			at("2030-01-01T00:00:00Z"),
			[]time.Time{at("2030-01-01T00:01:30Z"), at("2030-01-01T00:03:00Z")}},
		{"cron in UTC", schedule.Definition{Cron: "30 3 * * *"}, at("2030-01-01T04:00:00Z"),
			[]time.Time{at("2030-01-02T03:30:00Z"), at("2030-01-03T03:30:00Z")}},
		{"cron in Paris (UTC+1 in winter)", schedule.Definition{Cron: "0 9 * * 1-5", Timezone: "Europe/Paris"}, at("2030-01-04T09:00:00Z"),
			[]time.Time{at("2030-01-07T08:00:00Z"), at("2030-01-08T08:00:00Z")}},
		{"descriptor", schedule.Definition{Cron: "@hourly"}, at("2030-01-01T00:00:00Z"),
			[]time.Time{at("2030-01-01T01:00:00Z"), at("2030-01-01T02:00:00Z")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.def.Name, tc.def.Type = "sched", "sys.echo"
			p, err := schedule.Compile(tc.def)
			if err != nil {
				t.Fatal(err)
			}
			var got []time.Time
			for t := tc.after; len(got) < len(tc.want); {
				t = p.Next(t)
				got = append(got, t)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("ticks (-want +got):\n%s", d)
			}
		})
	}
}

func TestLastBy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		def          schedule.Definition
		first, bound time.Time
		want         time.Time
	}{
		{schedule.Definition{Every: jobs.Duration(time.Minute)}, at("2030-01-01T00:01:00Z"), at("2030-03-01T10:10:30Z"), at("2030-03-01T10:10:00Z")},
		{schedule.Definition{Cron: "*/5 * * * *"}, at("2030-01-01T00:05:00Z"), at("2031-06-01T10:12:00Z"), at("2031-06-01T10:10:00Z")},
		{schedule.Definition{Cron: "0 3 1 1 *"}, at("2030-01-01T03:00:00Z"), at("2034-06-01T00:00:00Z"), at("2034-01-01T03:00:00Z")},
		{schedule.Definition{Cron: "0 3 * * *"}, at("2030-01-01T03:00:00Z"), at("2030-01-01T03:00:00Z"), at("2030-01-01T03:00:00Z")},
	} {
		tc.def.Name, tc.def.Type = "sched", "sys.echo"
		p, err := schedule.Compile(tc.def)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.LastBy(tc.first, tc.bound); !got.Equal(tc.want) {
			t.Errorf("%+v: LastBy(%s, %s) = %s, want %s", tc.def, tc.first, tc.bound, got, tc.want)
		}
	}
}

func TestJitterIsTheSameEverywhereAndBounded(t *testing.T) {
	t.Parallel()
	def := schedule.Definition{Name: "sched-jitter", Every: jobs.Duration(time.Minute), Jitter: jobs.Duration(10 * time.Second), Type: "sys.echo"}
	p1, _ := schedule.Compile(def)
	p2, _ := schedule.Compile(def)
	seen := map[time.Duration]bool{}
	tick := at("2030-01-01T00:00:00Z")
	for range 200 {
		tick = p1.Next(tick)
		j := p1.Jitter(tick)
		if j != p2.Jitter(tick) {
			t.Fatalf("two processes disagree on the jitter of %s", tick)
		}
		if j < 0 || j > 10*time.Second {
			t.Fatalf("jitter %s out of 0–10s", j)
		}
		seen[j] = true
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct jitters in 200 ticks", len(seen))
	}
}

func TestTickKeyNamesTheTick(t *testing.T) {
	t.Parallel()
	if got := schedule.TickKey("nightly", at("2030-01-02T03:00:00+02:00")); got != "schedule:nightly:2030-01-02T01:00:00Z" {
		t.Errorf("TickKey = %q", got)
	}
}

// FuzzCompile holds that no definition text makes Compile panic, and that
// what it accepts has a tick to come that moves forward.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{"0 3 * * *", "@hourly", "TZ=UTC", "CRON_TZ=Europe/Paris 0 3 * * *", "*/0 * * * *",
		"0-59/1000 * * * *", "@every 1s", "1,2,3 * * * MON-FRI", "0 0 31 2 *", "? ? ? ? ?", "* * * * * *"} {
		f.Add(s, "Europe/Paris", int64(0))
	}
	f.Add("", "UTC", int64(time.Second))
	f.Fuzz(func(t *testing.T, expr, zone string, every int64) {
		p, err := schedule.Compile(schedule.Definition{Name: "f", Type: "sys.echo", Cron: expr, Timezone: zone, Every: jobs.Duration(every)})
		if err != nil {
			return
		}
		now := time.Now()
		if n := p.Next(now); !n.After(now) {
			t.Fatalf("accepted %q every %d in %q, whose next tick %s is not after now", expr, every, zone, n)
		}
	})
}
