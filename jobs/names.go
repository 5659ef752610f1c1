package jobs

import (
	"fmt"
	"math/bits"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Namespace prefixes every exchange, queue and Redis key of one warren
// deployment, so several stacks (and parallel tests) can share one broker
// and one Redis. Every name warren derives is derived here, and
// docs/protocol.md lists the same names for workers in other languages.
type Namespace string

// DefaultNamespace is the namespace when none is configured.
const DefaultNamespace Namespace = "warren"

var namespaceRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$`)

// Validate reports whether ns can prefix names in RabbitMQ and Redis.
func (ns Namespace) Validate() error {
	if !namespaceRE.MatchString(string(ns)) {
		return fmt.Errorf("namespace %q: want letters, digits, '-' or '_' (at most 63)", string(ns))
	}
	return nil
}

// Exchange is the durable topic exchange jobs are published to, with the job
// type as routing key.
func (ns Namespace) Exchange() string { return string(ns) + ".jobs" }

// Queue is the durable quorum queue of a worker pool: its normal lane,
// which holds the jobs of priority 0–4 (docs/priorities.md).
func (ns Namespace) Queue(pool string) string { return string(ns) + ".pool." + pool }

// HighQueue is the quorum queue of a pool's high lane: the jobs of
// priority 5–9, which the pool's workers take first. Pool names hold no
// dot, so no pool's queue can be named so.
func (ns Namespace) HighQueue(pool string) string { return ns.Queue(pool) + ".high" }

// LaneQueue is the queue of a pool's lane (Lane).
func (ns Namespace) LaneQueue(pool string, high bool) string {
	if high {
		return ns.HighQueue(pool)
	}
	return ns.Queue(pool)
}

// Priorities. A job's priority is 0 to MaxPriority, higher running first;
// the pool's two lanes split them as RabbitMQ 4's quorum queues do (0–4
// normal, 5–9 high), and within a lane jobs keep their order.
const (
	// MaxPriority is the highest priority.
	MaxPriority = 9
	// HighPriority is the lowest priority of the high lane.
	HighPriority = 5
)

// ValidPriority reports whether p is a priority a job may have.
func ValidPriority(p int) bool { return p >= 0 && p <= MaxPriority }

// Lane reports whether a job of priority p goes to its pool's high lane.
func Lane(p int) (high bool) { return p >= HighPriority }

// highKey starts the routing key of a job in the high lane. A type name is
// lower-case words joined by dots (ValidTypeName), so no type is "!".
const highKey = "!"

// RoutingKey is the routing key of a job of type jobType and priority p:
// the type itself in the normal lane (so jobs of priority 0 are routed as
// they were before priorities), "!." and the type in the high lane. The
// lane is part of the key end to end, through the delay levels
// (DelayRoutingKey), so that retries and parked copies keep it.
func (ns Namespace) RoutingKey(jobType string, p int) string {
	if Lane(p) {
		return highKey + "." + jobType
	}
	return jobType
}

// KeyPrefix starts every Redis key of the namespace.
func (ns Namespace) KeyPrefix() string { return string(ns) + ":" }

// JobKey is the Redis hash holding one job's record.
func (ns Namespace) JobKey(id string) string { return string(ns) + ":job:" + id }

// TypesKey is the Redis hash of declared types: field = type name, value =
// the Type as JSON.
func (ns Namespace) TypesKey() string { return string(ns) + ":types" }

// IdempotencyKey is the Redis string mapping an idempotency key to a job
// id, scoped by its submitter (the name of the API key that sent it, ""
// without keys), so that one submitter's key never finds another's job.
// Key names hold no colon, so the first colon after "idem:" ends the
// submitter, whatever the idempotency key holds.
func (ns Namespace) IdempotencyKey(submitter, key string) string {
	return string(ns) + ":idem:" + submitter + ":" + key
}

// UniqueKey is the Redis string naming the job that holds a unique key of
// a job type (docs/unique.md): the holder's id, expiring when its window
// ends. Type names hold no colon, so the first colon after "unique:" ends
// the type, whatever the key holds.
func (ns Namespace) UniqueKey(jobType, key string) string {
	return string(ns) + ":unique:" + jobType + ":" + key
}

// ArtifactKey is the Redis hash holding a job's output bytes ("data") and
// their media type ("content_type").
func (ns Namespace) ArtifactKey(id string) string { return string(ns) + ":artifact:" + id }

// WorkerKey is the Redis string a live worker process keeps with a short
// expiry (its lease); a running job whose worker's key is gone was lost.
func (ns Namespace) WorkerKey(worker string) string { return string(ns) + ":worker:" + worker }

// WorkersKey is the Redis sorted set of the worker processes that keep a
// lease: member = worker id, score = when its lease lapses unless renewed
// (Unix ms). Each renewal of a lease adds to it, so the live workers are
// listed without a scan of the keyspace.
func (ns Namespace) WorkersKey() string { return string(ns) + ":workers" }

// PausedKey is the Redis hash of the paused pools: field = pool, value =
// when and by whom it was paused, as JSON. A pool's workers take no new
// jobs while it has an entry.
func (ns Namespace) PausedKey() string { return string(ns) + ":paused" }

// WaitingKey is the Redis sorted set of a pool's waiting jobs: member = job
// id, score = the Unix time in milliseconds at which the job became or
// becomes runnable. RabbitMQ cannot tell how long a queue's oldest message
// has waited, so the scripts that move a job into or out of a waiting state
// keep this index, and the autoscaler reads the oldest due entry from it.
func (ns Namespace) WaitingKey(pool string) string { return string(ns) + ":waiting:" + pool }

// RunningKey is the Redis sorted set of a pool's running jobs: member = job
// id, score = the Unix time in milliseconds at which its attempt started (or
// was last rescued). The start script adds a job and every outcome takes it
// out, so the rescuer finds a job whose worker was lost without a scan.
func (ns Namespace) RunningKey(pool string) string { return string(ns) + ":running:" + pool }

// StartedKey is the Redis sorted set in which workers record how far each
// pool's queue has come: member = pool, score = the latest due time (Unix
// ms) of a job a worker of the pool started. The queue hands out jobs
// roughly in the order they became due, so a job due well before it that
// has not started is not waiting in the queue: its message was lost.
func (ns Namespace) StartedKey() string { return string(ns) + ":started" }

// StartedMember is the member of StartedKey for one lane of a pool: the
// pool for its normal lane, the pool and ".high" for its high lane. Each
// lane has its own mark, since each hands out its jobs in its own order:
// a high job started now says nothing of a normal one due before it.
func StartedMember(pool string, high bool) string {
	if high {
		return pool + ".high"
	}
	return pool
}

// RescuedKey counts a pool's rescued jobs in one minute (minute = Unix
// time in minutes); each counter expires after two hours.
func (ns Namespace) RescuedKey(pool string, minute int64) string {
	return string(ns) + ":rescued:" + pool + ":" + strconv.FormatInt(minute, 10)
}

// RescuerKey is the Redis string holding the rescuer's lease: the process
// that holds it is the one that looks for lost jobs, so that one process at
// a time does it per namespace.
func (ns Namespace) RescuerKey() string { return string(ns) + ":rescuer" }

// SupervisorKey is the Redis string holding a pool's supervisor lease: the
// id of the `warren autoscale` process that runs the pool's worker
// processes, with an expiry, so that of several supervisors configured for
// the pool one at a time does.
func (ns Namespace) SupervisorKey(pool string) string { return string(ns) + ":supervisor:" + pool }

// ScheduleKey is the Redis hash of one schedule (docs/schedules.md): its
// definition as JSON ("def"), who made it and when, whether it is paused,
// the last tick it handled ("after") and fired, and the tick in flight
// ("pending_tick", "pending_job"). Schedule names hold no colon.
func (ns Namespace) ScheduleKey(name string) string { return string(ns) + ":schedule:" + name }

// SchedulesKey is the Redis sorted set of a namespace's schedules: member =
// name, score = when it is next due (Unix ms, jitter included), +inf while
// it is paused. The scheduler reads only the entries that are due.
func (ns Namespace) SchedulesKey() string { return string(ns) + ":schedules" }

// SchedulerKey is the Redis string holding the scheduler's lease: the
// process that holds it fires the namespace's schedules, so that one
// process at a time does.
func (ns Namespace) SchedulerKey() string { return string(ns) + ":scheduler" }

// AutoscaleKey is the Redis hash in which autoscalers publish each pool's
// replica counts: field = pool, value = JSON.
func (ns Namespace) AutoscaleKey() string { return string(ns) + ":autoscale" }

// AutoscaleDecisionsKey is the Redis list of a pool's recent scaling
// decisions, newest first, as JSON: an autoscaler pushes a decision that
// changed the size or gave another reason than the one before, and keeps
// the list short and expiring.
func (ns Namespace) AutoscaleDecisionsKey(pool string) string {
	return string(ns) + ":autoscale:decisions:" + pool
}

// EventsChannel is the Redis pub/sub channel of what every process of a
// namespace hears: type declarations ("types <name>"), cancellations
// ("cancel <id>"), and pauses and resumes of pools ("pause <pool>",
// "resume <pool>").
func (ns Namespace) EventsChannel() string { return string(ns) + ":events" }

// DoneChannel is the Redis pub/sub channel on which a job's end is
// announced (the message is its terminal status). A channel per job, not
// one for all, so that only those waiting for a job hear of it: a
// publication nobody subscribed to costs Redis a lookup, and no worker or
// API process wakes for jobs it does not wait for.
func (ns Namespace) DoneChannel(id string) string { return string(ns) + ":done:" + id }

// Delays are made of RabbitMQ queues whose messages all wait the same time
// (a fixed TTL per queue), so no message blocks one behind it that is due
// earlier. Level n waits DelayUnit·2ⁿ; a delay of k units passes through the
// levels of the bits set in k, from the highest down, steered by its routing
// key, then reaches the pools through DelayDeliverExchange.
const (
	// DelayUnit is the resolution of delays.
	DelayUnit = 100 * time.Millisecond
	// DelayLevels is the number of levels: the longest delay is
	// (2^DelayLevels − 1) units, about 13.6 years.
	DelayLevels = 32
)

// MaxDelay is the longest delay the levels can express.
const MaxDelay = time.Duration(1<<DelayLevels-1) * DelayUnit

// DelayExchange is the topic exchange of delay level n; a delayed message
// enters at DelayEntry.
func (ns Namespace) DelayExchange(level int) string {
	return string(ns) + ".delay." + strconv.Itoa(level)
}

// DelayQueue is the quorum queue of delay level n (TTL DelayUnit·2ⁿ). Its
// name is not its exchange's: namespaces made before the levels were quorum
// queues hold classic queues under the exchanges' names, and a queue cannot
// change its type, so the quorum levels took new names and the classic ones
// drain into them (queue.declareDelays).
func (ns Namespace) DelayQueue(level int) string {
	return string(ns) + ".delay-q." + strconv.Itoa(level)
}

// ClassicDelayQueue is the name of delay level n's queue in namespaces made
// before the levels were quorum queues: a classic queue named as its
// exchange. It is only ever drained and deleted.
func (ns Namespace) ClassicDelayQueue(level int) string { return ns.DelayExchange(level) }

// DelayDeliverExchange receives messages whose delay has passed and routes
// them to pool queues by the type at the end of their routing key. One it
// cannot route (no pool queue is bound for the type) goes to its alternate
// exchange, DelayUnrouted.
func (ns Namespace) DelayDeliverExchange() string { return string(ns) + ".delay.due" }

// DelayUnrouted names the fanout exchange, and the queue bound to it, that
// hold the delayed messages DelayDeliverExchange could not route: the queue
// sends each back to DelayDeliverExchange every minute, until a pool queue
// is bound for its type. Without it, such a message would stay with the
// delay level it expired from, and enough of them (about 32) would stop that
// level from moving anything on, for every pool.
func (ns Namespace) DelayUnrouted() string { return string(ns) + ".delay.unrouted" }

// ClassicDelayDeliverExchange is the deliver exchange of namespaces made
// before the levels were quorum queues; the classic levels drain through
// it, and it is deleted with the last of them.
func (ns Namespace) ClassicDelayDeliverExchange() string { return string(ns) + ".delay.deliver" }

// DelayRoutingKey is the routing key of a job delayed by d whose routing
// key is routingKey (RoutingKey: its type, after "!." in the high lane):
// DelayLevels words "0" or "1" (the bits of d in units, highest first)
// followed by routingKey. d is rounded to the nearest unit and capped at
// MaxDelay.
func (ns Namespace) DelayRoutingKey(d time.Duration, routingKey string) string {
	units := delayUnits(d)
	var b strings.Builder
	for level := DelayLevels - 1; level >= 0; level-- {
		b.WriteByte('0' + byte(units>>level&1))
		b.WriteByte('.')
	}
	b.WriteString(routingKey)
	return b.String()
}

// delayUnits is d in units, rounded to the nearest and capped at MaxDelay.
func delayUnits(d time.Duration) uint64 {
	units := uint64(min(max(d, 0), MaxDelay)+DelayUnit/2) / uint64(DelayUnit)
	return min(units, 1<<DelayLevels-1)
}

// DelayEntry is the exchange a message delayed by d enters the levels at:
// that of the highest level whose bit of d is set. Entering at level
// DelayLevels-1 would be as right, the levels above passing the message
// down; but each passes it by matching a topic pattern of 33 words against
// a key of as many, and those 20 to 30 matches cost the broker five times
// what the rest of a delayed message's trip does (bench/rabbitcost). A
// delay under one unit has no bit set and enters at level 0, which passes
// it straight on.
func (ns Namespace) DelayEntry(d time.Duration) string {
	return ns.DelayExchange(max(bits.Len64(delayUnits(d))-1, 0))
}

// DelayBitPattern is the binding pattern at level n that matches keys whose
// bit n is bit ('0' or '1').
func DelayBitPattern(level int, bit byte) string {
	return strings.Repeat("*.", DelayLevels-1-level) + string(bit) + ".#"
}

// DelayDeliverPattern binds a pool's lane queue to DelayDeliverExchange for
// one routing key (RoutingKey: a type in one lane): any bits, then exactly
// that key. A type's normal pattern cannot match its high keys, which have
// one word more.
func DelayDeliverPattern(routingKey string) string {
	return strings.Repeat("*.", DelayLevels) + routingKey
}

// DeadExchange is the topic exchange of dead letters. Messages a worker gave
// up on are published with routing key "failed.POOL"; those the broker
// dead-letters (delivery limit reached) arrive with "limit.POOL", and those
// it dead-letters from the intake queue with "intake.POOL".
func (ns Namespace) DeadExchange() string { return string(ns) + ".dead" }

// DeadQueue is a pool's dead-letter queue, bound to DeadExchange with
// "*.POOL": every dead letter of the pool waits there for replay or purge.
func (ns Namespace) DeadQueue(pool string) string { return string(ns) + ".dead." + pool }

// DeadIntakeQueue is bound with "limit.POOL" only: the pool's workers
// consume it to mark jobs failed whose messages the broker dead-lettered.
// It has a delivery limit of its own, past which the broker dead-letters the
// message again, with "intake.POOL", into DeadQueue alone. Its name is not
// the one it had before it had a limit: a quorum queue cannot change its
// arguments, so the limited queue took a new name and the old one is drained
// into it (queue.retireUnlimitedIntake).
func (ns Namespace) DeadIntakeQueue(pool string) string {
	return string(ns) + ".intake." + pool
}

// UnlimitedIntakeQueue is the name of a pool's intake queue in namespaces
// made before intake queues had a delivery limit. It is only ever drained
// and deleted.
func (ns Namespace) UnlimitedIntakeQueue(pool string) string {
	return string(ns) + ".dead-intake." + pool
}

// DeadRoutingKey is the routing key of a dead letter: reason is "failed"
// (a worker gave up), "limit" (the pool queue's delivery limit) or
// "intake" (the intake queue's delivery limit).
func DeadRoutingKey(reason, pool string) string { return reason + "." + pool }

// RateLimitKey is the Redis hash of one token bucket of an API key (by its
// name): "requests" or "jobs".
func (ns Namespace) RateLimitKey(keyName, bucket string) string {
	return string(ns) + ":ratelimit:" + keyName + ":" + bucket
}

// LimitsKey is the Redis hash of the job types' rate limits
// (docs/ratelimits.md): field = type, value = the Limit as JSON with who set
// it and when. Every worker of the namespace reads it.
func (ns Namespace) LimitsKey() string { return string(ns) + ":limits" }

// LimitBucketKey is the Redis hash of one token bucket of a type's limit:
// the type's own (tenant false) or one tenant's (the value of the limit's
// metadata key, "" for jobs without it). Type names hold no colon, so the
// type ends at the first colon after "bucket:", whatever the tenant holds.
func (ns Namespace) LimitBucketKey(jobType string, tenant bool, value string) string {
	if !tenant {
		return string(ns) + ":bucket:" + jobType
	}
	return string(ns) + ":bucket:" + jobType + ":tenant:" + value
}

// LimitedKey is the Redis sorted set of a type's jobs held back by its
// rate limit: member = job id, score = when the job is offered again (Unix
// ms). The token script keeps it.
func (ns Namespace) LimitedKey(jobType string) string { return string(ns) + ":limited:" + jobType }

// ListKey is the prefix of the Redis sorted sets that list jobs, newest
// first: member = job id, score = the job's creation time (Unix ms). Each
// list's key is the prefix and a suffix: ListAll, ListOfType, ListOfStatus
// or ListOfMeta. The scripts that change a job's state keep the lists of
// status up to date; listing drops entries whose record has expired.
func (ns Namespace) ListKey() string { return string(ns) + ":list:" }

// ListAll is the suffix of the list of every job.
const ListAll = "all"

// ListOfType is the suffix of the list of a type's jobs.
func ListOfType(typ string) string { return "t:" + typ }

// ListOfStatus is the suffix of the list of a pool's jobs in one status.
// The scripts build it as the same three parts, so pool names hold no ':'.
func ListOfStatus(pool string, status Status) string { return "s:" + pool + ":" + string(status) }

// MetaScheduleTick is the metadata key of the tick a schedule's job was
// made for, in RFC 3339, UTC (docs/schedules.md). Jobs carry it, but it has
// no list of its own: see Listed.
const MetaScheduleTick = "schedule_tick"

// Listed reports whether the jobs labelled with metadata key k are in a
// list per value (ListOfMeta). A schedule's tick differs for every job the
// schedule makes, so a list per value would be a list per job, which the
// rescuer's trimming would then walk; a listing filtered on an unlisted
// key walks another list and checks each record instead.
func Listed(k string) bool { return k != MetaScheduleTick }

// ListOfMeta is the suffix of the list of the jobs labelled key=value. The
// key's length comes first, so no key and value run into another pair.
func ListOfMeta(key, value string) string {
	return "m:" + strconv.Itoa(len(key)) + ":" + key + "=" + value
}

// ListsKey is the Redis set of the metadata lists' suffixes, which the
// rescuer trims with the others (metadata is free-form, so its lists
// cannot be derived from the registry as the others are).
func (ns Namespace) ListsKey() string { return string(ns) + ":lists" }

// OutcomesKey counts a pool's succeeded and failed jobs in one minute
// (minute = Unix time in minutes), as a hash of outcome to count; each
// expires after two hours.
func (ns Namespace) OutcomesKey(pool string, minute int64) string {
	return ns.OutcomesPrefix() + pool + ":" + strconv.FormatInt(minute, 10)
}

// OutcomesPrefix starts every OutcomesKey; the finish script builds the
// rest from the pool and the time.
func (ns Namespace) OutcomesPrefix() string { return string(ns) + ":outcomes:" }

// WorkflowKey is the Redis hash holding one workflow's record: its name,
// failure rule, status, steps (as JSON) and times.
func (ns Namespace) WorkflowKey(id string) string { return string(ns) + ":wf:" + id }

// WorkflowMembersKey is the Redis hash of a workflow's members: field = the
// step's path ("steps.chain[2].chord.then"), value = the member as JSON:
// the id of the job made for the step, or why none could be made.
func (ns Namespace) WorkflowMembersKey(id string) string {
	return string(ns) + ":wf:" + id + ":members"
}

// WorkflowsKey is the Redis sorted set of every workflow: member = id,
// score = its creation (Unix ms). Listing drops entries whose record has
// expired.
func (ns Namespace) WorkflowsKey() string { return string(ns) + ":workflows" }

// ActiveWorkflowsKey is the Redis sorted set of the workflows the advancer
// still looks after (running, or ended with members not yet ended):
// member = id, score = its creation (Unix ms).
func (ns Namespace) ActiveWorkflowsKey() string { return string(ns) + ":workflows:active" }

// AdvancerKey is the Redis string holding the workflow advancer's lease, so
// that one process at a time per namespace advances workflows.
func (ns Namespace) AdvancerKey() string { return string(ns) + ":advancer" }

// WorkflowEventsChannel is the Redis pub/sub channel on which an accepted
// workflow's id is announced, so that the advancer watches its first
// members at once.
func (ns Namespace) WorkflowEventsChannel() string { return string(ns) + ":wf:events" }
