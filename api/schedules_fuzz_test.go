package api

import (
	"testing"
	"time"
	"unicode/utf8"

	"github.com/warrenhq/warren/schedule"
)

// FuzzDecodeSchedule feeds the body of POST /v1/schedules to its decoder
// and to the schedule package's checks (the type and payload are the
// Book's business, checked against the registry after): whatever it is,
// it is refused with a 4xx of the table, or compiled into a plan whose
// ticks move forward.
//
//	go test -run '^$' -fuzz FuzzDecodeSchedule -fuzztime 60s ./api/
func FuzzDecodeSchedule(f *testing.F) {
	for _, s := range []string{
		`{"name":"nightly","cron":"0 3 * * *","timezone":"Europe/Paris","type":"sys.echo","payload":{"r":1},"catch_up":true}`,
		`{"name":"hb","every":"30s","type":"sys.echo","overlap":"skip","jitter":"5s"}`,
		`{"name":"hb","every":1,"type":"sys.echo","metadata":{"team":"a"}}`,
		`{"name":"x","cron":"@hourly","type":"sys.echo","jitter":null,"every":null}`,
		`{"name":"x","cron":"TZ=","type":"sys.echo"}`,
		`{"name":"feb30","cron":"0 0 30 2 *","type":"sys.echo"}`,
		`{"name":"x","cron":"*/0 * * * *","type":"sys.echo"}`,
		`{"name":"x","every":"0s","type":"sys.echo"}`,
		`{"name":"x","cron":"0 3 * * *","every":"1m","type":"sys.echo"}`,
		`{"name":"x","cron":"0 3 * * *","type":"sys.echo","timezone":"Local"}`,
		`{"name":"x","cron":"0 3 * * *","type":"sys.echo","metadata":{"schedule_tick":"t"}}`,
		"{\"name\":\"\\ud800\",\"every\":\"1s\",\"type\":\"sys.echo\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := decodeSchedule(body, fuzzDepth)
		checkSyntaxVerdict(t, body, fuzzDepth, 0)
		var p *schedule.Plan
		if err == nil {
			p, err = schedule.Compile(d)
			err = scheduleError(d.Name, err)
		}
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if !schedule.ValidName(p.Def.Name) || !utf8.ValidString(p.Def.Timezone) {
			t.Fatalf("accepted %q as %+v", body, p.Def)
		}
		from := time.Date(2026, 12, 5, 7, 0, 0, 0, time.UTC)
		next := p.Next(from)
		if !next.After(from) || p.Next(next).Before(next) {
			t.Fatalf("accepted %q, whose ticks go from %s to %s to %s", body, from, next, p.Next(next))
		}
		if j := p.Jitter(next); j < 0 || j > schedule.MaxJitter {
			t.Fatalf("accepted %q, whose jitter at %s is %s", body, next, j)
		}
		if err := wellFormed(body, fuzzDepth); err != nil {
			t.Fatalf("accepted %q: %v", body, err)
		}
	})
}
