package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/jobs"
)

// staleIntervals is how many of its own intervals a pool's replica counts
// stay current: an autoscaler that has not written for that long stopped,
// and what it last wrote must not be shown as if it still held.
const staleIntervals = 3

// Replicas is an autoscaler's latest word on one pool, as it publishes it
// for the API and the CLI to show.
type Replicas struct {
	// Current is how many replicas the pool ran when the autoscaler
	// reported, once it had started or stopped them after its decision.
	Current int `json:"current"`
	// Desired is how many it decided the pool should have.
	Desired int `json:"desired"`
	// Reason says why, for people; empty when nothing changed.
	Reason string `json:"reason,omitempty"`
	// At is when the autoscaler decided; zero means now (the store's clock)
	// to PutReplicas.
	At time.Time `json:"at"`
	// Interval is how often the autoscaler decides; it must be positive.
	// The counts are stale, and dropped, once At is more than three
	// intervals old. It is Go duration text in JSON ("15s"), as every
	// duration warren writes.
	Interval time.Duration `json:"interval"`
	// From is the size the decision started from: what the pool had when
	// the autoscaler looked. A decision with From != Desired changed the
	// size.
	From int `json:"from,omitempty"`
	// Recommended is the size the measurement alone asked for, before the
	// policy's bounds, windows and step.
	Recommended int `json:"recommended,omitempty"`
	// Backlog and OldestAge are what the autoscaler measured: the queue's
	// ready and unacknowledged messages, and how long the oldest waiting
	// job had waited (zero when the policy has no target age).
	Backlog   int           `json:"backlog,omitempty"`
	OldestAge time.Duration `json:"oldest_age,omitempty"`
	// Policy is the pool's scaling policy; nil when the autoscaler does not
	// say.
	Policy *ScalePolicy `json:"policy,omitempty"`
}

// MarshalJSON writes r with its durations as text.
func (r Replicas) MarshalJSON() ([]byte, error) {
	type plain Replicas // no methods: no recursion
	return json.Marshal(struct {
		plain
		Interval  jobs.Duration `json:"interval"`
		OldestAge jobs.Duration `json:"oldest_age,omitempty"`
	}{plain(r), jobs.Duration(r.Interval), jobs.Duration(r.OldestAge)})
}

// UnmarshalJSON reads what MarshalJSON writes (durations also as numbers
// of seconds, as jobs.Duration reads them).
func (r *Replicas) UnmarshalJSON(b []byte) error {
	type plain Replicas
	v := struct {
		*plain
		Interval  jobs.Duration `json:"interval"`
		OldestAge jobs.Duration `json:"oldest_age"`
	}{plain: (*plain)(r)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	r.Interval, r.OldestAge = v.Interval.Std(), v.OldestAge.Std()
	return nil
}

// ScalePolicy is a pool's scaling policy as its autoscaler reports it,
// defaults filled in: the fields of autoscale.Policy, which the store does
// not import (see there for their meaning). Durations are Go duration text
// in JSON; a negative ScaleDownWindow means none.
type ScalePolicy struct {
	Min, Max                         int
	TargetBacklog, ActivationBacklog int
	TargetAge, Interval              time.Duration
	ScaleUpWindow, ScaleDownWindow   time.Duration
	MaxStep                          int
}

// scalePolicyJSON is ScalePolicy as JSON.
type scalePolicyJSON struct {
	Min               int           `json:"min"`
	Max               int           `json:"max"`
	TargetBacklog     int           `json:"target_backlog"`
	ActivationBacklog int           `json:"activation_backlog"`
	TargetAge         jobs.Duration `json:"target_age"`
	Interval          jobs.Duration `json:"interval"`
	ScaleUpWindow     jobs.Duration `json:"scale_up_window"`
	ScaleDownWindow   jobs.Duration `json:"scale_down_window"`
	MaxStep           int           `json:"max_step"`
}

// MarshalJSON writes p with snake_case names and its durations as text.
func (p ScalePolicy) MarshalJSON() ([]byte, error) {
	return json.Marshal(scalePolicyJSON{
		Min: p.Min, Max: p.Max, TargetBacklog: p.TargetBacklog, ActivationBacklog: p.ActivationBacklog,
		TargetAge: jobs.Duration(p.TargetAge), Interval: jobs.Duration(p.Interval),
		ScaleUpWindow: jobs.Duration(p.ScaleUpWindow), ScaleDownWindow: jobs.Duration(p.ScaleDownWindow),
		MaxStep: p.MaxStep,
	})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *ScalePolicy) UnmarshalJSON(b []byte) error {
	var v scalePolicyJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = ScalePolicy{
		Min: v.Min, Max: v.Max, TargetBacklog: v.TargetBacklog, ActivationBacklog: v.ActivationBacklog,
		TargetAge: v.TargetAge.Std(), Interval: v.Interval.Std(),
		ScaleUpWindow: v.ScaleUpWindow.Std(), ScaleDownWindow: v.ScaleDownWindow.Std(),
		MaxStep: v.MaxStep,
	}
	return nil
}

// ScaleDecision is one recorded decision of an autoscaler on a pool.
type ScaleDecision struct {
	At time.Time
	// Current is the size the decision started from, Desired the size it
	// chose, Recommended what the measurement alone asked for.
	Current, Desired, Recommended int
	// Backlog and OldestAge are what was measured.
	Backlog   int
	OldestAge time.Duration
	Reason    string
}

// scaleDecisionJSON is ScaleDecision as JSON.
type scaleDecisionJSON struct {
	At          time.Time     `json:"at"`
	Current     int           `json:"current"`
	Desired     int           `json:"desired"`
	Recommended int           `json:"recommended"`
	Backlog     int           `json:"backlog"`
	OldestAge   jobs.Duration `json:"oldest_age"`
	Reason      string        `json:"reason"`
}

// MarshalJSON writes d with snake_case names and OldestAge as text.
func (d ScaleDecision) MarshalJSON() ([]byte, error) {
	return json.Marshal(scaleDecisionJSON{At: d.At, Current: d.Current, Desired: d.Desired, Recommended: d.Recommended,
		Backlog: d.Backlog, OldestAge: jobs.Duration(d.OldestAge), Reason: d.Reason})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (d *ScaleDecision) UnmarshalJSON(b []byte) error {
	var v scaleDecisionJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*d = ScaleDecision{At: v.At, Current: v.Current, Desired: v.Desired, Recommended: v.Recommended,
		Backlog: v.Backlog, OldestAge: v.OldestAge.Std(), Reason: v.Reason}
	return nil
}

// A pool's recent decisions: at most decisionsKept, and the list expires
// decisionsTTL after its autoscaler last reported, as every record warren
// writes expires.
const (
	decisionsKept = 50
	decisionsTTL  = 7 * 24 * time.Hour
)

// reportLua stores an autoscaler's report on a pool and, if the decision
// changed the size or gives another reason than the last one recorded,
// pushes it onto the pool's recent decisions, keeping the newest. Reasons
// are compared without their figures, so that a steady pool under a
// changing backlog does not push out the decisions that mattered. KEYS[1]:
// the hash of replica counts; KEYS[2]: the pool's decisions. ARGV: the
// pool, the record, the decision, "1" if it changed the size, its reason,
// how many decisions to keep, their expiry in ms. Returns 1 if the
// decision was pushed.
const reportLua = `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
-- A reason's kind is its words: "backlog 38 at 10 per replica" and
-- "backlog 41 at 10 per replica" are the same kind of decision.
local function kind(reason) return (string.gsub(reason, '[%d%.]+', '#')) end
local push = ARGV[4] == '1'
if not push then
  local head = redis.call('LINDEX', KEYS[2], 0)
  if not head then
    push = true
  else
    local ok, last = pcall(cjson.decode, head)
    push = not ok or type(last) ~= 'table' or type(last.reason) ~= 'string' or kind(last.reason) ~= kind(ARGV[5])
  end
end
if push then
  redis.call('LPUSH', KEYS[2], ARGV[3])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[6]) - 1)
end
redis.call('PEXPIRE', KEYS[2], ARGV[7])
if push then return 1 end
return 0
`

var reportScript = redis.NewScript(reportLua)

// scalingLua reads every pool's replica counts and the recent decisions of
// each pool they name and of the pools asked for. KEYS[1]: the hash of
// replica counts. ARGV[1]: the key of a pool's decisions without the pool;
// ARGV[2..]: more pools. Returns {the hash as HGETALL gives it, the pools,
// each one's decisions}.
const scalingLua = `
local records = redis.call('HGETALL', KEYS[1])
local pools, seen = {}, {}
local function add(p)
  if not seen[p] then
    seen[p] = true
    pools[#pools + 1] = p
  end
end
for i = 1, #records, 2 do add(records[i]) end
for i = 2, #ARGV do add(ARGV[i]) end
local lists = {}
for i, p in ipairs(pools) do lists[i] = redis.call('LRANGE', ARGV[1] .. p, 0, -1) end
return {records, pools, lists}
`

var scalingScript = redis.NewScript(scalingLua)

// dropStaleLua deletes fields of a hash only if they still hold the values
// the caller judged stale, so that counts an autoscaler wrote in between
// survive. KEYS[1]: the hash. ARGV: field/value pairs. Returns the number
// of fields deleted.
const dropStaleLua = `
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n
`

var dropStaleScript = redis.NewScript(dropStaleLua)

// PutReplicas publishes an autoscaler's replica counts for pool, replacing
// the pool's earlier ones, and records the decision among the pool's recent
// ones if it changed the size (From != Desired) or gives another kind of
// reason (its words, figures aside) than the last one recorded: one round
// trip.
func (s *Store) PutReplicas(ctx context.Context, pool string, r Replicas) error {
	if !jobs.ValidPoolName(pool) {
		return fmt.Errorf("replicas of pool %q: want a pool name", pool)
	}
	if r.Interval <= 0 {
		return fmt.Errorf("replicas of pool %s: interval %s: want a positive interval", pool, r.Interval)
	}
	if r.At.IsZero() {
		r.At = s.now()
	}
	r.At = r.At.UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("replicas of pool %s: encode: %w", pool, err)
	}
	d, err := json.Marshal(ScaleDecision{At: r.At, Current: r.From, Desired: r.Desired, Recommended: r.Recommended,
		Backlog: r.Backlog, OldestAge: r.OldestAge, Reason: r.Reason})
	if err != nil {
		return fmt.Errorf("replicas of pool %s: encode the decision: %w", pool, err)
	}
	changed := 0
	if r.From != r.Desired {
		changed = 1
	}
	keys := []string{s.ns.AutoscaleKey(), s.ns.AutoscaleDecisionsKey(pool)}
	if err := s.run(ctx, reportScript, keys, pool, b, d, changed, r.Reason, decisionsKept, decisionsTTL.Milliseconds()).Err(); err != nil {
		return unavailable("replicas of pool "+pool, err)
	}
	return nil
}

// Replicas returns the current replica counts of every pool an autoscaler
// publishes, by pool. Counts older than three of their intervals are left
// out and deleted: their autoscaler stopped. So are counts that cannot be
// read.
func (s *Store) Replicas(ctx context.Context) (map[string]Replicas, error) {
	h, err := s.rdb.HGetAll(ctx, s.ns.AutoscaleKey()).Result()
	if err != nil {
		return nil, unavailable("read replicas", err)
	}
	return s.currentReplicas(ctx, h), nil
}

// currentReplicas reads the hash of replica counts h, leaving out and
// deleting the counts that are stale or cannot be read.
func (s *Store) currentReplicas(ctx context.Context, h map[string]string) map[string]Replicas {
	now := s.now()
	out := make(map[string]Replicas, len(h))
	var stale []any // field, value pairs
	for pool, v := range h {
		var r Replicas
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			s.log.Warn("dropping unreadable replica counts", "pool", pool, "err", err)
			stale = append(stale, pool, v)
			continue
		}
		if r.Interval <= 0 || now.Sub(r.At) > staleIntervals*r.Interval {
			stale = append(stale, pool, v)
			continue
		}
		out[pool] = r
	}
	if len(stale) > 0 {
		// The answer is right without the cleanup; a failed one is tried
		// again by the next call.
		if err := s.run(ctx, dropStaleScript, []string{s.ns.AutoscaleKey()}, stale...).Err(); err != nil {
			s.log.Warn("cannot delete stale replica counts", "err", unavailable("delete stale replicas", err))
		}
	}
	return out
}

// PoolScaling is what autoscalers say of one pool.
type PoolScaling struct {
	// Replicas is the pool's autoscaler's latest word, as Replicas gives
	// it; nil when none reported within three of its intervals.
	Replicas *Replicas
	// Decisions are the pool's recent decisions, newest first: at most 50,
	// kept 7 days after the last report. Without Replicas they are those
	// of an autoscaler that stopped.
	Decisions []ScaleDecision
}

// Scaling returns what autoscalers say of each pool one reports on now and
// of each pool named, by pool: its current replica counts and its recent
// decisions (Decisions is empty, not nil, when there are none). A name
// that is not a pool name has nothing and is left out. It reads them in
// one round trip; stale counts are left out and deleted as Replicas does,
// and a decision that cannot be read is left out.
func (s *Store) Scaling(ctx context.Context, pools ...string) (map[string]PoolScaling, error) {
	args := []any{s.ns.AutoscaleDecisionsKey("")}
	asked := make(map[string]bool, len(pools))
	for _, p := range pools {
		if jobs.ValidPoolName(p) && !asked[p] {
			asked[p] = true
			args = append(args, p)
		}
	}
	v, err := s.run(ctx, scalingScript, []string{s.ns.AutoscaleKey()}, args...).Slice()
	if err != nil {
		return nil, unavailable("read scaling", err)
	}
	if len(v) != 3 {
		return nil, fmt.Errorf("read scaling: unexpected reply %v", v)
	}
	records, _ := v[0].([]any)
	names, _ := v[1].([]any)
	lists, _ := v[2].([]any)
	h := make(map[string]string, len(records)/2)
	for i := 0; i+1 < len(records); i += 2 {
		field, _ := records[i].(string)
		value, _ := records[i+1].(string)
		h[field] = value
	}
	current := s.currentReplicas(ctx, h)
	out := make(map[string]PoolScaling, len(names))
	for i, n := range names {
		pool, _ := n.(string)
		r, ok := current[pool]
		if !ok && !asked[pool] {
			continue // a stale or unreadable record of a pool nobody asked for
		}
		ps := PoolScaling{Decisions: []ScaleDecision{}}
		if ok {
			ps.Replicas = &r
		}
		if i < len(lists) {
			entries, _ := lists[i].([]any)
			for _, e := range entries {
				var d ScaleDecision
				raw, _ := e.(string)
				if err := json.Unmarshal([]byte(raw), &d); err != nil {
					s.log.Warn("leaving out an unreadable scaling decision", "pool", pool, "err", err)
					continue
				}
				ps.Decisions = append(ps.Decisions, d)
			}
		}
		out[pool] = ps
	}
	return out, nil
}
