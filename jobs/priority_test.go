package jobs_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/jobs"
)

func TestPriorityLanes(t *testing.T) {
	ns := jobs.Namespace("prio")
	type lane struct {
		Valid, High bool
		Key         string
	}
	got := map[int]lane{}
	for p := -1; p <= 10; p++ {
		got[p] = lane{jobs.ValidPriority(p), jobs.Lane(p), ns.RoutingKey("img.resize", p)}
	}
	want := map[int]lane{-1: {false, false, "img.resize"}, 10: {false, true, "!.img.resize"}}
	for p := 0; p <= 4; p++ {
		want[p] = lane{true, false, "img.resize"} // as before priorities
	}
	for p := 5; p <= 9; p++ {
		want[p] = lane{true, true, "!.img.resize"} // 6 and 9 alike
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("lanes (-want +got):\n%s", d)
	}
	if got, want := ns.HighQueue("img"), "prio.pool.img.high"; got != want {
		t.Errorf("HighQueue = %q, want %q", got, want)
	}
	if ns.LaneQueue("img", false) != ns.Queue("img") || ns.LaneQueue("img", true) != ns.HighQueue("img") {
		t.Error("LaneQueue does not name the lanes' queues")
	}
	if jobs.StartedMember("img", false) != "img" || jobs.StartedMember("img", true) != "img.high" {
		t.Error("StartedMember: want the pool, and the pool with .high")
	}
	if jobs.ValidTypeName("!") || jobs.ValidTypeName("!.img") {
		t.Error("a type name may start like a high routing key")
	}
}

// Each lane's delayed key is matched by its own deliver pattern and by no
// other: a retry comes back to the lane it left.
func TestPriorityDelayedKeys(t *testing.T) {
	ns := jobs.Namespace("prio")
	const typ = "img.resize"
	normal, high := ns.RoutingKey(typ, 0), ns.RoutingKey(typ, 9)
	for _, d := range []time.Duration{0, 100 * time.Millisecond, 1300 * time.Millisecond, time.Hour} {
		nk, hk := ns.DelayRoutingKey(d, normal), ns.DelayRoutingKey(d, high)
		if !strings.HasSuffix(hk, ".!."+typ) {
			t.Errorf("delayed high key %q does not end with its lane's key", hk)
		}
		for _, c := range []struct {
			pattern, key string
			want         bool
		}{
			{jobs.DelayDeliverPattern(normal), nk, true},
			{jobs.DelayDeliverPattern(high), hk, true},
			{jobs.DelayDeliverPattern(normal), hk, false},
			{jobs.DelayDeliverPattern(high), nk, false},
		} {
			if topicMatch(c.pattern, c.key) != c.want {
				t.Errorf("pattern %q on key %q: match %v, want %v", c.pattern, c.key, !c.want, c.want)
			}
		}
	}
}
