package store

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/jobs"
)

// Listing jobs. Every job is in sorted sets scored by its creation time
// (jobs.Namespace.ListKey): the list of all jobs, of its type, of its
// metadata labels, and its pool's list of its status, which the scripts
// that change its state keep up to date in the same call. A listing walks
// the most specific list its filters allow, newest first, checks each
// entry against its record (the truth: a list may hold an entry a moment
// longer than the record, or an expired job), and stops after a bounded
// number of entries, so that every call costs about the same whatever the
// lists hold; its cursor says where to go on.

// Query is what a listing asks for. Zero fields do not filter.
type Query struct {
	Status jobs.Status
	Type   string
	Pool   string
	// Meta holds labels a job must carry, all of them.
	Meta map[string]string
	// Since and Until bound the jobs' creation time, inclusive.
	Since, Until time.Time
	// Limit is the most jobs to return; at most MaxList, zero means 100.
	Limit int
	// After continues a listing where an earlier page's Next left it.
	After *Cursor
}

// MaxList is the most jobs one page holds.
const MaxList = 1000

// Page is one page of a listing.
type Page struct {
	Jobs []*jobs.Job
	// Next continues the listing; nil when it has reached its end. A page
	// may hold fewer than Limit jobs (even none) and still have a Next:
	// each call looks at a bounded number of entries.
	Next *Cursor
}

// Cursor is a position in a listing: the creation time and id of the last
// job looked at.
type Cursor struct {
	Created int64 // Unix ms
	ID      string
}

// String encodes the cursor for a client, who treats it as opaque.
func (c Cursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.Created, 10) + ":" + c.ID))
}

// ErrBadCursor means a cursor was not one String made.
var ErrBadCursor = errors.New("not a cursor this API gave")

// ParseCursor reads a cursor String made.
func ParseCursor(s string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, ErrBadCursor
	}
	score, id, ok := strings.Cut(string(b), ":")
	n, err := strconv.ParseInt(score, 10, 64)
	if !ok || err != nil || n < 0 || !jobs.ValidID(id) {
		return Cursor{}, ErrBadCursor
	}
	return Cursor{Created: n, ID: id}, nil
}

// listLua looks at the newest entries of the lists KEYS (merged, newest
// first: by score, then id, both descending), after the cursor, and
// returns the ids of those whose record matches the filters. ARGV: max
// score (the cursor's or the until bound, inclusive), cursor id ("" for
// none: nothing at the max score is skipped), min score, limit, bound (the
// most entries to look at), job key prefix, status, type, pool ("" for
// any), then metadata key/value pairs. Returns {next score, next id, ids…},
// next score "" when the lists hold nothing more. An entry without a
// record is removed from its list.
const listLua = `
local maxs, cid, mins = ARGV[1], ARGV[2], ARGV[3]
local limit, bound = tonumber(ARGV[4]), tonumber(ARGV[5])
local fetch = bound + 32
local cands, horizon = {}, nil
local function before(a, b) -- a comes before b: newer
  if a.s ~= b.s then return a.s > b.s end
  return a.id > b.id
end
for k = 1, #KEYS do
  local got = redis.call('ZREVRANGEBYSCORE', KEYS[k], maxs, mins, 'WITHSCORES', 'LIMIT', 0, fetch)
  local last = nil
  for i = 1, #got, 2 do
    local e = {id = got[i], s = tonumber(got[i + 1]), k = k}
    last = e
    if not (cid ~= '' and e.s == tonumber(maxs) and e.id >= cid) then cands[#cands + 1] = e end
  end
  -- A list that had more to give bounds how far the merge may go.
  if #got / 2 == fetch and (not horizon or before(horizon, last)) then horizon = last end
end
table.sort(cands, before)
local meta = {}
for i = 10, #ARGV, 2 do meta[#meta + 1] = {ARGV[i], ARGV[i + 1]} end
local out, examined, last = {}, 0, nil
for _, e in ipairs(cands) do
  if #out >= limit or examined >= bound then break end
  if horizon and before(horizon, e) then break end
  examined = examined + 1
  last = e
  local r = redis.call('HMGET', ARGV[6] .. e.id, 'status', 'type', 'pool', 'metadata')
  if not r[1] then
    redis.call('ZREM', KEYS[e.k], e.id)
  elseif (ARGV[7] == '' or r[1] == ARGV[7]) and (ARGV[8] == '' or r[2] == ARGV[8]) and (ARGV[9] == '' or r[3] == ARGV[9]) then
    local ok = true
    if #meta > 0 then
      local m = r[4] and cjson.decode(r[4]) or {}
      for _, kv in ipairs(meta) do
        if m[kv[1]] ~= kv[2] then ok = false end
      end
    end
    if ok then out[#out + 1] = e.id end
  end
end
local done = not horizon and (examined == #cands)
local reply = {'', ''}
if not done and last then reply = {tostring(last.s), last.id} end
for _, id in ipairs(out) do reply[#reply + 1] = id end
return reply
`

var listScript = redis.NewScript(listLua)

// List returns a page of the jobs q asks for, newest first, in two round
// trips: the listing, then the records.
func (s *Store) List(ctx context.Context, q Query) (Page, error) {
	q.Limit = min(cmp.Or(q.Limit, 100), MaxList)
	keys, err := s.listKeys(ctx, q)
	if err != nil {
		return Page{}, err
	}
	maxs, cid, mins := "+inf", "", "-inf"
	if !q.Until.IsZero() {
		maxs = strconv.FormatInt(q.Until.UnixMilli(), 10)
	}
	if q.After != nil {
		if u := q.Until.UnixMilli(); q.Until.IsZero() || q.After.Created <= u {
			maxs, cid = strconv.FormatInt(q.After.Created, 10), q.After.ID
		}
	}
	if !q.Since.IsZero() {
		mins = strconv.FormatInt(q.Since.UnixMilli(), 10)
	}
	args := []any{maxs, cid, mins, q.Limit, max(2*q.Limit, 1000), s.ns.JobKey(""), string(q.Status), q.Type, q.Pool}
	for _, k := range slices.Sorted(maps.Keys(q.Meta)) {
		args = append(args, k, q.Meta[k])
	}
	res, err := s.run(ctx, listScript, keys, args...).StringSlice()
	if err != nil {
		return Page{}, unavailable("list jobs", err)
	}
	var page Page
	if res[0] != "" {
		n, _ := strconv.ParseInt(res[0], 10, 64)
		page.Next = &Cursor{Created: n, ID: res[1]}
	}
	ids := res[2:]
	if len(ids) == 0 {
		return page, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, s.ns.JobKey(id))
		}
		return nil
	}); err != nil {
		return Page{}, unavailable("list jobs", err)
	}
	for _, c := range cmds {
		if len(c.Val()) == 0 {
			continue // expired between the two round trips
		}
		j, err := decode(c.Val())
		if err != nil {
			return Page{}, fmt.Errorf("list jobs: %w", err)
		}
		page.Jobs = append(page.Jobs, j)
	}
	return page, nil
}

// listKeys picks the lists a query walks: the most specific its filters
// allow. The other filters are checked against each record.
func (s *Store) listKeys(ctx context.Context, q Query) ([]string, error) {
	prefix := s.ns.ListKey()
	var listed []string
	for k := range q.Meta {
		if jobs.Listed(k) {
			listed = append(listed, k)
		}
	}
	switch {
	case len(listed) > 0:
		k := slices.Min(listed)
		return []string{prefix + jobs.ListOfMeta(k, q.Meta[k])}, nil
	case q.Status != "":
		pools := []string{q.Pool}
		if q.Pool == "" && q.Type != "" {
			t, err := s.Type(ctx, q.Type)
			if errors.Is(err, ErrNotFound) {
				return nil, nil // no such type: nothing to list
			}
			if err != nil {
				return nil, err
			}
			pools = []string{t.Pool}
		} else if q.Pool == "" {
			var err error
			if pools, err = s.pools(ctx); err != nil {
				return nil, err
			}
		}
		keys := make([]string, len(pools))
		for i, p := range pools {
			keys[i] = prefix + jobs.ListOfStatus(p, q.Status)
		}
		return keys, nil
	case q.Type != "":
		return []string{prefix + jobs.ListOfType(q.Type)}, nil
	case q.Pool != "":
		keys := make([]string, len(jobs.Statuses))
		for i, st := range jobs.Statuses {
			keys[i] = prefix + jobs.ListOfStatus(q.Pool, st)
		}
		return keys, nil
	}
	return []string{prefix + jobs.ListAll}, nil
}

// pools returns the pools of the declared types.
func (s *Store) pools(ctx context.Context) ([]string, error) {
	types, err := s.Types(ctx)
	if err != nil {
		return nil, err
	}
	var pools []string
	for _, t := range types {
		if !slices.Contains(pools, t.Pool) {
			pools = append(pools, t.Pool)
		}
	}
	return pools, nil
}

// Counts are a pool's jobs by status, and its outcomes over the last hour.
type Counts struct {
	Scheduled, Queued, Running, Retrying int
	SucceededLastHour, FailedLastHour    int
	// PerMinute holds the last 60 minutes, oldest first, this one last.
	PerMinute []MinuteCount
}

// MinuteCount is one minute's outcomes.
type MinuteCount struct {
	Minute            time.Time
	Succeeded, Failed int
}

// Counts returns each pool's counts, in one round trip. The counts of
// status come from the pool's lists, so an entry whose record expired
// counts until a listing or the rescuer's trim drops it.
func (s *Store) Counts(ctx context.Context, pools []string, now time.Time) (map[string]Counts, error) {
	minute := now.Unix() / 60
	type cmds struct {
		status  []*redis.IntCmd
		minutes []*redis.SliceCmd
	}
	statuses := []jobs.Status{jobs.StatusScheduled, jobs.StatusQueued, jobs.StatusRunning, jobs.StatusRetrying}
	all := make(map[string]*cmds, len(pools))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, pool := range pools {
			c := &cmds{}
			for _, st := range statuses {
				c.status = append(c.status, p.ZCard(ctx, s.ns.ListKey()+jobs.ListOfStatus(pool, st)))
			}
			for i := int64(59); i >= 0; i-- {
				c.minutes = append(c.minutes, p.HMGet(ctx, s.ns.OutcomesKey(pool, minute-i), "succeeded", "failed"))
			}
			all[pool] = c
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("count jobs", err)
	}
	out := make(map[string]Counts, len(pools))
	for pool, c := range all {
		var n Counts
		n.Scheduled, n.Queued = int(c.status[0].Val()), int(c.status[1].Val())
		n.Running, n.Retrying = int(c.status[2].Val()), int(c.status[3].Val())
		for i, m := range c.minutes {
			mc := MinuteCount{Minute: time.Unix((minute-59+int64(i))*60, 0).UTC()}
			v := m.Val()
			if str, ok := v[0].(string); ok {
				mc.Succeeded, _ = strconv.Atoi(str)
			}
			if str, ok := v[1].(string); ok {
				mc.Failed, _ = strconv.Atoi(str)
			}
			n.SucceededLastHour += mc.Succeeded
			n.FailedLastHour += mc.Failed
			n.PerMinute = append(n.PerMinute, mc)
		}
		out[pool] = n
	}
	return out, nil
}

// trimLua drops, from the oldest ARGV[2] entries of the list KEYS[1], those
// whose record (ARGV[1] .. id) is gone. Records mostly expire in the order
// they were made, so trimming from the old end keeps up. Returns how many
// it dropped and how many the list still holds.
const trimLua = `
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local gone = 0
for _, id in ipairs(ids) do
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then
    redis.call('ZREM', KEYS[1], id)
    gone = gone + 1
  end
end
return {gone, redis.call('ZCARD', KEYS[1])}
`

var trimScript = redis.NewScript(trimLua)

// TrimLists drops, from the old end of every list, up to batch entries
// whose records have expired, in one round trip, and returns how many it
// dropped. The rescuer calls it each time it looks; listings also drop
// what they meet.
func (s *Store) TrimLists(ctx context.Context, batch int) (int, error) {
	types, err := s.Types(ctx)
	if err != nil {
		return 0, fmt.Errorf("trim lists: %w", err)
	}
	meta, err := s.rdb.SMembers(ctx, s.ns.ListsKey()).Result()
	if err != nil {
		return 0, unavailable("trim lists", err)
	}
	suffixes := append([]string{jobs.ListAll}, meta...)
	pools := map[string]bool{}
	for _, t := range types {
		suffixes = append(suffixes, jobs.ListOfType(t.Name))
		if !pools[t.Pool] {
			pools[t.Pool] = true
			for _, st := range jobs.Statuses {
				suffixes = append(suffixes, jobs.ListOfStatus(t.Pool, st))
			}
		}
	}
	if err := trimScript.Load(ctx, s.rdb).Err(); err != nil {
		return 0, unavailable("trim lists", err)
	}
	cmds := make([]*redis.Cmd, len(suffixes))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, suf := range suffixes {
			cmds[i] = trimScript.EvalSha(ctx, p, []string{s.ns.ListKey() + suf}, s.ns.JobKey(""), batch)
		}
		return nil
	})
	if err != nil {
		return 0, unavailable("trim lists", err)
	}
	dropped := 0
	var empty []any
	for i, c := range cmds {
		v, _ := c.Int64Slice()
		if len(v) == 2 {
			dropped += int(v[0])
			if v[1] == 0 && i >= 1 && i <= len(meta) {
				empty = append(empty, meta[i-1])
			}
		}
	}
	if len(empty) > 0 {
		// A label no job carries any more; a new job with it adds it back.
		if err := s.rdb.SRem(ctx, s.ns.ListsKey(), empty...).Err(); err != nil {
			return dropped, unavailable("trim lists", err)
		}
	}
	return dropped, nil
}
