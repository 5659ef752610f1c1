package jobs_test

import (
	"maps"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/warrenhq/warren/jobs"
)

// Fuzz targets for the names and ids every queue, routing key and Redis key
// is derived from (names.go, id.go). Their seed corpora are in
// testdata/fuzz/FuzzXxx; `make test` runs the seeds, `make fuzz` fuzzes.

// maxAMQPName is the longest exchange name, queue name, routing key or
// binding key AMQP 0-9-1 carries (a short string).
const maxAMQPName = 255

// longestNamespace and longestPool are the longest valid names: whatever
// is derived from them must still fit.
var (
	longestNamespace = jobs.Namespace("N" + strings.Repeat("n", 62))
	longestPool      = "p" + strings.Repeat("q", 62)
	longestType      = "t." + strings.Repeat("y", jobs.MaxTypeName-2)
)

// namespaces to derive names in: the default and the longest.
var namespaces = []jobs.Namespace{jobs.DefaultNamespace, longestNamespace}

// amqpNames are every exchange and queue name of a namespace and pool, by
// what they are.
func amqpNames(ns jobs.Namespace, pool string) map[string]string {
	return map[string]string{
		"Exchange":                    ns.Exchange(),
		"Queue":                       ns.Queue(pool),
		"DeadExchange":                ns.DeadExchange(),
		"DeadQueue":                   ns.DeadQueue(pool),
		"DeadIntakeQueue":             ns.DeadIntakeQueue(pool),
		"UnlimitedIntakeQueue":        ns.UnlimitedIntakeQueue(pool),
		"DelayDeliverExchange":        ns.DelayDeliverExchange(),
		"DelayUnrouted":               ns.DelayUnrouted(),
		"ClassicDelayDeliverExchange": ns.ClassicDelayDeliverExchange(),
		"DelayExchange(31)":           ns.DelayExchange(jobs.DelayLevels - 1),
		"DelayQueue(31)":              ns.DelayQueue(jobs.DelayLevels - 1),
		"ClassicDelayQueue(31)":       ns.ClassicDelayQueue(jobs.DelayLevels - 1),
	}
}

// amqpKeys are the routing and binding keys of a pool and a type, by what
// they are.
func amqpKeys(ns jobs.Namespace, pool, jobType string) map[string]string {
	return map[string]string{
		"RoutingKey":             ns.RoutingKey(jobType, 0),
		"DelayRoutingKey":        ns.DelayRoutingKey(jobs.MaxDelay, jobType),
		"DelayDeliverPattern":    jobs.DelayDeliverPattern(jobType),
		"DelayBitPattern(0)":     jobs.DelayBitPattern(0, '1'),
		"DeadRoutingKey(limit)":  jobs.DeadRoutingKey("limit", pool),
		"DeadRoutingKey(intake)": jobs.DeadRoutingKey("intake", pool),
		"DeadRoutingKey(failed)": jobs.DeadRoutingKey("failed", pool),
		"DeadQueue binding":      "*." + pool,
	}
}

// FuzzValidTypeName: the check never panics, and a type name it accepts is
// plain ASCII words that derive routing and binding keys within AMQP's 255
// bytes in any namespace, and that route by topic patterns exactly: the
// delay exit's binding for the type matches the type's delayed keys, and
// no other type's.
func FuzzValidTypeName(f *testing.F) {
	f.Fuzz(func(t *testing.T, name string) {
		if !jobs.ValidTypeName(name) {
			return
		}
		if len(name) > jobs.MaxTypeName {
			t.Fatalf("accepted %d bytes, over MaxTypeName %d", len(name), jobs.MaxTypeName)
		}
		words := strings.Split(name, ".")
		if len(words) < 2 {
			t.Fatalf("accepted %q: one word", name)
		}
		for _, w := range words {
			if w == "" || w[0] < 'a' || w[0] > 'z' || strings.Trim(w, "abcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
				t.Fatalf("accepted %q: word %q is not a lower-case word", name, w)
			}
		}
		for _, ns := range namespaces {
			for what, n := range amqpKeys(ns, longestPool, name) {
				if len(n) > maxAMQPName {
					t.Errorf("%s of %q in namespace %s is %d bytes, over AMQP's %d", what, name, ns, len(n), maxAMQPName)
				}
			}
			if ns.RoutingKey(name, 0) != name {
				t.Errorf("RoutingKey(%q) = %q, want the type itself", name, ns.RoutingKey(name, 0))
			}
		}
		key := jobs.DefaultNamespace.DelayRoutingKey(time.Hour, name)
		if !topicMatch(jobs.DelayDeliverPattern(name), key) {
			t.Errorf("DelayDeliverPattern(%q) does not match its delayed key %q", name, key)
		}
		for _, other := range []string{name + ".x", name[:strings.LastIndexByte(name, '.')], "a.b"} {
			if other != name && topicMatch(jobs.DelayDeliverPattern(other), key) {
				t.Errorf("the binding of type %q matches the delayed key of %q", other, name)
			}
		}
	})
}

// FuzzValidPoolName: the check never panics, and a pool name it accepts is
// one word (no dot, no topic wildcard) whose queue names fit AMQP in any
// namespace, give the pool back, and whose dead-letter routing keys reach
// the right queues: "*.POOL" (the dead-letter queue) takes every reason,
// "limit.POOL" (the intake) only the pool queue's limit, never the
// intake's own.
func FuzzValidPoolName(f *testing.F) {
	f.Fuzz(func(t *testing.T, pool string) {
		if !jobs.ValidPoolName(pool) {
			return
		}
		if len(pool) > 63 || strings.ContainsAny(pool, ".*#: \t\n") || strings.ToLower(pool) != pool {
			t.Fatalf("accepted pool %q", pool)
		}
		for _, ns := range namespaces {
			all := amqpNames(ns, pool)
			maps.Copy(all, amqpKeys(ns, pool, longestType))
			for what, n := range all {
				if len(n) > maxAMQPName {
					t.Errorf("%s of pool %q in namespace %s is %d bytes, over AMQP's %d", what, pool, ns, len(n), maxAMQPName)
				}
			}
			queues := map[string]string{
				ns.Queue(pool):                string(ns) + ".pool.",
				ns.DeadQueue(pool):            string(ns) + ".dead.",
				ns.DeadIntakeQueue(pool):      string(ns) + ".intake.",
				ns.UnlimitedIntakeQueue(pool): string(ns) + ".dead-intake.",
			}
			if len(queues) != 4 {
				t.Errorf("pool %q: two kinds of queue share a name: %v", pool, queues)
			}
			for q, prefix := range queues {
				if got, ok := strings.CutPrefix(q, prefix); !ok || got != pool {
					t.Errorf("queue %q does not give pool %q back after %q", q, pool, prefix)
				}
			}
		}
		for _, reason := range []string{"failed", "limit", "intake"} {
			key := jobs.DeadRoutingKey(reason, pool)
			if r, p, _ := strings.Cut(key, "."); r != reason || p != pool {
				t.Errorf("DeadRoutingKey(%q, %q) = %q splits into %q, %q", reason, pool, key, r, p)
			}
			if !topicMatch("*."+pool, key) {
				t.Errorf("the dead-letter queue's binding misses %q", key)
			}
			if topicMatch(jobs.DeadRoutingKey("limit", pool), key) != (reason == "limit") {
				t.Errorf("the intake's binding %q and key %q: matched %v", jobs.DeadRoutingKey("limit", pool), key, reason != "limit")
			}
			if topicMatch("*."+pool, jobs.DeadRoutingKey(reason, pool+"x")) {
				t.Errorf("the dead-letter queue of pool %q takes pool %q's dead letters", pool, pool+"x")
			}
		}
	})
}

// FuzzNamespaceValidate: validation never panics, and a namespace it
// accepts is one AMQP word and one Redis key segment: every name derived
// from it starts with it and a separator it cannot contain, so no other
// namespace's names (nor a sweep of "{ns}.*" and "{ns}:*") can reach them.
func FuzzNamespaceValidate(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		ns := jobs.Namespace(s)
		if ns.Validate() != nil {
			return
		}
		if len(s) > 63 || strings.ContainsAny(s, ".:*#?[]{} \t\n/") {
			t.Fatalf("accepted namespace %q", s)
		}
		for what, n := range amqpNames(ns, longestPool) {
			if len(n) > maxAMQPName {
				t.Errorf("%s in namespace %q is %d bytes, over AMQP's %d", what, s, len(n), maxAMQPName)
			}
			if before, _, _ := strings.Cut(n, "."); before != s {
				t.Errorf("%s %q does not start with namespace %q and a dot", what, n, s)
			}
		}
		const id = "01a21480-02c3-71b4-a283-a008d207c224"
		for _, k := range []string{ns.KeyPrefix(), ns.JobKey(id), ns.TypesKey(), ns.ArtifactKey(id),
			ns.WorkerKey("w"), ns.WaitingKey(longestPool), ns.RunningKey(longestPool), ns.StartedKey(),
			ns.RescuedKey(longestPool, math.MaxInt64), ns.RescuerKey(), ns.SupervisorKey(longestPool), ns.AutoscaleKey(), ns.AutoscaleDecisionsKey(longestPool), ns.EventsChannel(), ns.DoneChannel(id)} {
			if before, _, _ := strings.Cut(k, ":"); before != s {
				t.Errorf("Redis key %q does not start with namespace %q and a colon", k, s)
			}
		}
		if got, ok := strings.CutPrefix(ns.JobKey(id), ns.KeyPrefix()+"job:"); !ok || got != id {
			t.Errorf("JobKey(%q) = %q does not give the id back", id, ns.JobKey(id))
		}
	})
}

// FuzzValidID: the check never panics and accepts exactly the canonical
// form of a UUID (what uuid.Parse reads and String writes back unchanged),
// which names a job key it can be read back from.
func FuzzValidID(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		u, err := uuid.Parse(s)
		canonical := err == nil && u.String() == s
		if got := jobs.ValidID(s); got != canonical {
			t.Fatalf("ValidID(%q) = %v, want %v (uuid.Parse: %v)", s, got, canonical, err)
		}
		if !canonical {
			return
		}
		if len(s) != 36 || strings.ToLower(s) != s {
			t.Fatalf("accepted %q", s)
		}
		key := jobs.DefaultNamespace.JobKey(s)
		if got, ok := strings.CutPrefix(key, jobs.DefaultNamespace.KeyPrefix()+"job:"); !ok || got != s {
			t.Errorf("JobKey(%q) = %q does not give the id back", s, key)
		}
		if upper := strings.ToUpper(s); upper != s && jobs.ValidID(upper) {
			t.Errorf("ValidID accepts the upper-case %q", upper)
		}
	})
}

// FuzzDelayRoutingKey: for any delay, negative, huge or in between, the
// routing key of a delayed message holds 32 bits that add up to the delay
// rounded to the nearest DelayUnit (within 0 and MaxDelay), it is bound
// into exactly the delay levels of its set bits and passed through the
// others, it enters at the level of its highest bit, and it leaves for
// the pool bound for its type.
func FuzzDelayRoutingKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, d int64, jobType string) {
		if !jobs.ValidTypeName(jobType) {
			jobType = "sys.echo"
		}
		ns := jobs.DefaultNamespace
		delay := time.Duration(d)
		key := ns.DelayRoutingKey(delay, jobType)
		if len(key) > maxAMQPName {
			t.Fatalf("DelayRoutingKey(%v, %q) is %d bytes", delay, jobType, len(key))
		}
		bits, rest, ok := strings.Cut(key, "."+jobType)
		if !ok || rest != "" {
			t.Fatalf("DelayRoutingKey(%v, %q) = %q does not end with the type", delay, jobType, key)
		}
		words := strings.Split(bits, ".")
		if len(words) != jobs.DelayLevels {
			t.Fatalf("key %q has %d bits, want %d", key, len(words), jobs.DelayLevels)
		}
		var units uint64
		for i, w := range words {
			if w != "0" && w != "1" {
				t.Fatalf("key %q: bit %d is %q", key, i, w)
			}
			units = units<<1 | uint64(w[0]-'0')
		}
		want := min(max(delay, 0), jobs.MaxDelay)
		if got := time.Duration(units) * jobs.DelayUnit; got-want > jobs.DelayUnit/2 || want-got > jobs.DelayUnit/2 {
			t.Errorf("delay %v: key %q holds %v, want %v to the nearest %v", delay, key, got, want, jobs.DelayUnit)
		}
		highest := 0
		for level := range jobs.DelayLevels {
			set := units>>level&1 == 1
			if set {
				highest = level
			}
			if topicMatch(jobs.DelayBitPattern(level, '1'), key) != set || topicMatch(jobs.DelayBitPattern(level, '0'), key) == set {
				t.Errorf("key %q at level %d (bit set: %v): bound into the level %v, passed on %v", key, level, set,
					topicMatch(jobs.DelayBitPattern(level, '1'), key), topicMatch(jobs.DelayBitPattern(level, '0'), key))
			}
		}
		if got, want := ns.DelayEntry(delay), ns.DelayExchange(highest); got != want {
			t.Errorf("DelayEntry(%v) = %q, want %q (units %d)", delay, got, want, units)
		}
		if !topicMatch(jobs.DelayDeliverPattern(jobType), key) {
			t.Errorf("DelayDeliverPattern(%q) does not match %q", jobType, key)
		}
	})
}

// TestIntakeQueueNames pins the names of the intake queues, which are the
// wire protocol (docs/protocol.md, section 1).
func TestIntakeQueueNames(t *testing.T) {
	t.Parallel()
	ns := jobs.DefaultNamespace
	if got := ns.DeadIntakeQueue("sys"); got != "warren.intake.sys" {
		t.Errorf("DeadIntakeQueue = %q, want warren.intake.sys", got)
	}
	if got := ns.UnlimitedIntakeQueue("sys"); got != "warren.dead-intake.sys" {
		t.Errorf("UnlimitedIntakeQueue = %q, want warren.dead-intake.sys", got)
	}
	if got := jobs.DeadRoutingKey("intake", "sys"); got != "intake.sys" {
		t.Errorf("DeadRoutingKey(intake) = %q, want intake.sys", got)
	}
}

// topicMatch reports whether a topic exchange routes key by binding
// pattern: words split at dots, "*" matches one word, "#" zero or more.
func topicMatch(pattern, key string) bool {
	return matchWords(strings.Split(pattern, "."), strings.Split(key, "."))
}

func matchWords(p, k []string) bool {
	for len(p) > 0 {
		switch p[0] {
		case "#":
			for i := 0; i <= len(k); i++ {
				if matchWords(p[1:], k[i:]) {
					return true
				}
			}
			return false
		case "*":
			if len(k) == 0 {
				return false
			}
		default:
			if len(k) == 0 || k[0] != p[0] {
				return false
			}
		}
		p, k = p[1:], k[1:]
	}
	return len(k) == 0
}

// TestTopicMatch checks the test's own matcher against RabbitMQ's rules.
func TestTopicMatch(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		pattern, key string
		want         bool
	}{
		{"a.b", "a.b", true},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{"a.#", "a", true},
		{"a.#", "a.b.c", true},
		{"#", "", true},
		{"*.1.#", "0.1.x.y", true},
		{"*.1.#", "0.0.x.y", false},
		{"*.p", "limit.p", true},
		{"limit.p", "intake.p", false},
	} {
		if got := topicMatch(tt.pattern, tt.key); got != tt.want {
			t.Errorf("topicMatch(%q, %q) = %v, want %v", tt.pattern, tt.key, got, tt.want)
		}
	}
}
