package main

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenhq/warren/jobs"
)

// delayVariant is a delayed message's trip through delay levels built as
// warren builds them: published (unless skip) to the top level's exchange with the
// routing key warren gives a job delayed by delay, it passes the levels
// whose bit is 0 through exchange-to-exchange bindings, waits out the TTL of
// each level whose bit is 1 in that level's queue (one hop each), and
// reaches the pool queue through the deliver exchange.
//
// levels is jobs.DelayLevels for warren's own topology. There, routing
// through 33 topic exchanges with 33-word keys costs the broker far more
// than the hops, so the hops' cost is lost in its noise; a chain of 3
// levels of the same shape shows it clearly.
type delayVariant struct {
	name    string
	levels  int
	classic bool          // the old levels: classic queues, dead-lettering at most once
	delay   time.Duration // its bits are the levels a message waits in
	n       int           // messages
	rate    int           // messages a second; 0 is as fast as confirms allow
	// skip publishes to the exchange of the highest level whose bit is set
	// rather than to the top level's, past the levels a message would only
	// pass through, as warren does since this measurement showed what the
	// routing through them costs (jobs.Namespace.DelayEntry).
	skip bool
}

// hops is how many level queues a message of v passes through.
func (v delayVariant) hops() int {
	units := uint64(v.delay / jobs.DelayUnit)
	n := 0
	for ; units != 0; units &= units - 1 {
		n++
	}
	return n
}

// delayVariants: 0 hops is the floor every delayed message pays (the level
// exchanges, the deliver exchange, the pool queue, the consumer), so a hop
// costs (variant − floor) / hops. 700 ms waits 400, 200 and 100 ms in
// levels 2, 1 and 0. The paced variants show the latency of a broker that
// is not saturated.
var delayVariants = []delayVariant{
	{name: "delay 3 levels 0 hops", levels: 3, n: 20000},
	{name: "delay 3 levels classic 1 hop", levels: 3, classic: true, delay: 100 * time.Millisecond, n: 20000},
	{name: "delay 3 levels quorum 1 hop", levels: 3, delay: 100 * time.Millisecond, n: 20000},
	{name: "delay 3 levels classic 3 hops", levels: 3, classic: true, delay: 700 * time.Millisecond, n: 20000},
	{name: "delay 3 levels quorum 3 hops", levels: 3, delay: 700 * time.Millisecond, n: 20000},
	{name: "delay 32 levels 0 hops", levels: jobs.DelayLevels, n: 2000},
	{name: "delay 32 levels classic 3 hops", levels: jobs.DelayLevels, classic: true, delay: 700 * time.Millisecond, n: 2000},
	{name: "delay 32 levels quorum 3 hops", levels: jobs.DelayLevels, delay: 700 * time.Millisecond, n: 2000},
	{name: "delay 32 levels quorum 3 hops skip", levels: jobs.DelayLevels, delay: 700 * time.Millisecond, n: 10000, skip: true},
	{name: "delay 32 levels classic 3 hops 50/s", levels: jobs.DelayLevels, classic: true, delay: 700 * time.Millisecond, n: 500, rate: 50},
	{name: "delay 32 levels quorum 3 hops 50/s", levels: jobs.DelayLevels, delay: 700 * time.Millisecond, n: 500, rate: 50},
}

// quiet is the most CPU per second a broker doing nothing else spends with
// a delay variant's topology declared, and some: a run starts once the
// broker is that quiet, or after 20 s.
const quiet = 30 * time.Millisecond

// delayResult is what one run of a delay variant measured.
type delayResult struct {
	wall, publish time.Duration // first publish to last delivery; to last confirm
	beam          time.Duration // broker CPU over wall and a second after
	idle          time.Duration // broker CPU in the idle second before the run
	latency       []time.Duration
}

// delayTopology is the levels of one namespace as warren declares them
// (queue.declareDelays), with classic queues in place of quorum ones for
// the old design, and one pool queue bound to the deliver exchange.
type delayTopology struct {
	ns      jobs.Namespace
	levels  int
	classic bool
	jobType string
}

// bitPattern, routingKey and deliverPattern are jobs.DelayBitPattern,
// jobs.Namespace.DelayRoutingKey and jobs.DelayDeliverPattern for any
// number of levels; checkShape holds them to warren's for its own.
func (t delayTopology) bitPattern(level int, bit byte) string {
	return strings.Repeat("*.", t.levels-1-level) + string(bit) + ".#"
}

func (t delayTopology) routingKey(d time.Duration) string {
	units := uint64(d / jobs.DelayUnit)
	var b strings.Builder
	for level := t.levels - 1; level >= 0; level-- {
		b.WriteByte('0' + byte(units>>level&1))
		b.WriteByte('.')
	}
	b.WriteString(t.jobType)
	return b.String()
}

func (t delayTopology) deliverPattern() string {
	return strings.Repeat("*.", t.levels) + t.jobType
}

// checkShape reports whether t, with warren's number of levels, names,
// binds and routes as warren does.
func (t delayTopology) checkShape() error {
	w := t
	w.levels = jobs.DelayLevels
	for level := range jobs.DelayLevels {
		for _, bit := range []byte("01") {
			if w.bitPattern(level, bit) != jobs.DelayBitPattern(level, bit) {
				return fmt.Errorf("level %d bit %c: pattern %q, warren's %q", level, bit, w.bitPattern(level, bit), jobs.DelayBitPattern(level, bit))
			}
		}
	}
	for _, d := range []time.Duration{0, 100 * time.Millisecond, 700 * time.Millisecond, 1234500 * time.Millisecond} {
		if w.routingKey(d) != t.ns.DelayRoutingKey(d, t.jobType) {
			return fmt.Errorf("delay %v: key %q, warren's %q", d, w.routingKey(d), t.ns.DelayRoutingKey(d, t.jobType))
		}
	}
	if w.deliverPattern() != jobs.DelayDeliverPattern(t.jobType) {
		return fmt.Errorf("deliver pattern %q, warren's %q", w.deliverPattern(), jobs.DelayDeliverPattern(t.jobType))
	}
	return nil
}

func (t delayTopology) levelQueue(level int) string {
	if t.classic {
		return t.ns.ClassicDelayQueue(level)
	}
	return t.ns.DelayQueue(level)
}

func (t delayTopology) pool() string { return t.ns.Queue("sys") }

// levelArgs are the arguments of a level's queue: queue.delayQueueArgs for
// the quorum levels, the arguments the classic levels had before.
func (t delayTopology) levelArgs(level int, next string) amqp.Table {
	args := amqp.Table{
		"x-message-ttl":          int64(jobs.DelayUnit/time.Millisecond) << level,
		"x-dead-letter-exchange": next,
	}
	if !t.classic {
		args[amqp.QueueTypeArg] = amqp.QueueTypeQuorum
		args["x-dead-letter-strategy"] = "at-least-once"
		args["x-overflow"] = "reject-publish"
	}
	return args
}

func (t delayTopology) declare(ch *amqp.Channel) error {
	deliver := t.ns.DelayDeliverExchange()
	if err := ch.ExchangeDeclare(deliver, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", deliver, err)
	}
	next := deliver
	for level := range t.levels {
		ex, q := t.ns.DelayExchange(level), t.levelQueue(level)
		if err := ch.ExchangeDeclare(ex, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare exchange %s: %w", ex, err)
		}
		if _, err := ch.QueueDeclare(q, true, false, false, false, t.levelArgs(level, next)); err != nil {
			return fmt.Errorf("declare queue %s: %w", q, err)
		}
		if err := ch.QueueBind(q, t.bitPattern(level, '1'), ex, false, nil); err != nil {
			return fmt.Errorf("bind %s: %w", q, err)
		}
		if err := ch.ExchangeBind(next, t.bitPattern(level, '0'), ex, false, nil); err != nil {
			return fmt.Errorf("bind %s to %s: %w", next, ex, err)
		}
		next = ex
	}
	// A warren pool queue (queue.poolQueueArgs); nothing is dead-lettered
	// here, so its dead-letter exchange need not exist.
	if _, err := ch.QueueDeclare(t.pool(), true, false, false, false, amqp.Table{
		amqp.QueueTypeArg:           amqp.QueueTypeQuorum,
		"x-delivery-limit":          int64(20),
		"x-dead-letter-exchange":    t.ns.DeadExchange(),
		"x-dead-letter-routing-key": "limit.sys",
		"x-dead-letter-strategy":    "at-least-once",
		"x-overflow":                "reject-publish",
	}); err != nil {
		return fmt.Errorf("declare queue %s: %w", t.pool(), err)
	}
	if err := ch.QueueBind(t.pool(), t.deliverPattern(), deliver, false, nil); err != nil {
		return fmt.Errorf("bind %s: %w", t.pool(), err)
	}
	return nil
}

// remove deletes whatever declare may have declared, on a channel of its
// own (a failed step closes the channel it ran on).
func (t delayTopology) remove(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	var errs []error
	queues := []string{t.pool()}
	exchanges := []string{t.ns.DelayDeliverExchange()}
	for level := range t.levels {
		queues = append(queues, t.levelQueue(level))
		exchanges = append(exchanges, t.ns.DelayExchange(level))
	}
	// Deleting what does not exist succeeds.
	for _, q := range queues {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			errs = append(errs, fmt.Errorf("delete queue %s: %w", q, err))
		}
	}
	for _, ex := range exchanges {
		if err := ch.ExchangeDelete(ex, false, false); err != nil {
			errs = append(errs, fmt.Errorf("delete exchange %s: %w", ex, err))
		}
	}
	return errors.Join(errs...)
}

// runDelay publishes v.n persistent messages into the levels, pipelined under
// publisher confirms as warren publishes, and consumes them from the pool
// queue as they arrive (32 handlers, prefetch 128, one ack per message).
// The consumer runs from the start, so the broker CPU over the whole run is
// the cost of n trips, and each delivery's age is its end-to-end latency.
func runDelay(conn *amqp.Connection, br broker, v delayVariant) (res delayResult, err error) {
	n := v.n
	t := delayTopology{
		ns:      jobs.Namespace(fmt.Sprintf("rcdelay-%d", time.Now().UnixNano())),
		levels:  v.levels,
		classic: v.classic,
		jobType: "sys.t1",
	}
	if err := t.checkShape(); err != nil {
		return res, fmt.Errorf("not warren's delay levels: %w", err)
	}
	defer func() { err = errors.Join(err, t.remove(conn)) }()
	ch, err := conn.Channel()
	if err != nil {
		return res, fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if err := t.declare(ch); err != nil {
		return res, err
	}
	if err := ch.Confirm(false); err != nil {
		return res, fmt.Errorf("confirm mode: %w", err)
	}
	lost := conn.NotifyClose(make(chan *amqp.Error, 1))
	returns := ch.NotifyReturn(make(chan amqp.Return, 16))
	returned := make(chan int, 1)
	go func() {
		k := 0
		for range returns {
			k++
		}
		returned <- k
	}()

	cc, err := conn.Channel()
	if err != nil {
		return res, fmt.Errorf("open channel: %w", err)
	}
	defer cc.Close() // closing again is harmless
	if err := cc.Qos(128, 0, false); err != nil {
		return res, fmt.Errorf("qos: %w", err)
	}
	dl, err := cc.Consume(t.pool(), "", false, false, false, false, nil)
	if err != nil {
		return res, fmt.Errorf("consume %s: %w", t.pool(), err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		got  int
		last time.Time
		done = make(chan struct{})
	)
	res.latency = make([]time.Duration, 0, n)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range dl {
				now := time.Now()
				d.Ack(false)
				sent := time.Unix(0, int64(binary.BigEndian.Uint64(d.Body)))
				mu.Lock()
				res.latency = append(res.latency, now.Sub(sent))
				got++
				if got == n {
					last = now
					close(done)
				}
				mu.Unlock()
			}
		}()
	}
	stopConsumers := func() {
		cc.Close()
		wg.Wait()
	}

	// Let the new queues settle (quorum queues elect their leaders), then
	// wait for a quiet broker: others may share it, and what they cost it
	// is counted with ours.
	time.Sleep(time.Second)
	for try := 0; ; try++ {
		i0, err := br.cpu()
		time.Sleep(time.Second)
		i1, err1 := br.cpu()
		if err := errors.Join(err, err1); err != nil {
			stopConsumers()
			return res, err
		}
		if res.idle = i1 - i0; res.idle <= quiet || try == 20 {
			break
		}
	}

	key := t.routingKey(v.delay)
	ex := t.ns.DelayExchange(t.levels - 1)
	if v.skip {
		ex = t.ns.DelayExchange(bits.Len64(uint64(v.delay/jobs.DelayUnit)) - 1)
	}
	c0, err := br.cpu()
	if err != nil {
		stopConsumers()
		return res, err
	}
	t0 := time.Now()
	var pend []*amqp.DeferredConfirmation
	nacked := 0
	for i := range n {
		if v.rate > 0 {
			time.Sleep(time.Until(t0.Add(time.Duration(i) * time.Second / time.Duration(v.rate))))
		}
		body := make([]byte, 220)
		p := amqp.Publishing{
			DeliveryMode: amqp.Persistent,
			ContentType:  "application/json",
			Headers:      amqp.Table{"x-warren-attempts": int32(0), "x-warren-max-attempts": int32(3), "x-warren-timeout-ms": int64(30000)},
			MessageId:    fmt.Sprintf("id-%d", i),
			Type:         t.jobType,
			Body:         body,
		}
		p.Timestamp = time.Now()
		binary.BigEndian.PutUint64(body, uint64(p.Timestamp.UnixNano()))
		dc, err := ch.PublishWithDeferredConfirm(ex, key, true, false, p)
		if err != nil {
			stopConsumers()
			return res, fmt.Errorf("publish: %w", err)
		}
		pend = append(pend, dc)
		if len(pend) == 1000 {
			for _, d := range pend[:500] {
				if !d.Wait() {
					nacked++
				}
			}
			pend = append(pend[:0], pend[500:]...)
		}
	}
	for _, d := range pend {
		if !d.Wait() {
			nacked++
		}
	}
	res.publish = time.Since(t0)
	select {
	case <-done:
		// What the broker does after the last delivery (the acks, the
		// levels settling what they dead-lettered) is part of the cost.
		time.Sleep(time.Second)
	case <-lost:
	case <-time.After(2 * time.Minute):
	}
	c1, err := br.cpu()
	stopConsumers()
	if err != nil {
		return res, err
	}
	if got < n {
		return res, fmt.Errorf("%d of %d messages reached the pool queue in time (%d nacked)", got, n, nacked)
	}
	res.wall = last.Sub(t0)
	res.beam = c1 - c0
	if err := ch.Close(); err != nil {
		return res, fmt.Errorf("close channel: %w", err)
	}
	if k := <-returned; k > 0 || nacked > 0 {
		return res, fmt.Errorf("%d messages returned unroutable, %d nacked", k, nacked)
	}
	return res, nil
}

// runDelays runs the selected delay variants count times, round-robin so
// that a burst of someone else's load on the broker does not hit one
// variant every time, and prints a line per run, then a summary: the least
// broker CPU per 10,000 delayed messages of each variant's runs (others'
// load only ever adds to it), per hop above the 0-hop floor of the same
// levels, the quorum levels against the classic ones, and the median wall
// time and end-to-end latency beyond the delay.
func runDelays(conn *amqp.Connection, br broker, selected func(string) bool, count int) error {
	var vs []delayVariant
	for _, v := range delayVariants {
		if selected(v.name) {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return nil
	}
	runs := make([][]delayResult, len(vs))
	for rep := range count {
		for i, v := range vs {
			r, err := runDelay(conn, br, v)
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			slices.Sort(r.latency)
			runs[i] = append(runs[i], r)
			fmt.Printf("%-36s run %d n %5d beam %6.2fs/10k (idle before %3dms/s) | wall %5.2fs publish %5.2fs (%5.0f/s) | latency beyond delay p50 %v p99 %v\n",
				v.name, rep+1, v.n, v.per10k(r.beam), r.idle.Milliseconds(), r.wall.Seconds(), r.publish.Seconds(),
				float64(v.n)/r.publish.Seconds(), r.beyond(v, 0.5), r.beyond(v, 0.99))
		}
	}

	best := make([]float64, len(vs))
	floor := map[int]float64{} // levels → least CPU per 10k at 0 hops
	for i, v := range vs {
		best[i] = v.per10k(slices.MinFunc(runs[i], func(a, b delayResult) int { return cmp.Compare(a.beam, b.beam) }).beam)
		if v.hops() == 0 {
			floor[v.levels] = best[i]
		}
	}
	fmt.Printf("\nleast of %d run(s); wall and latency are medians\n", count)
	for i, v := range vs {
		med := func(f func(delayResult) time.Duration) time.Duration {
			ds := make([]time.Duration, len(runs[i]))
			for k, r := range runs[i] {
				ds[k] = f(r)
			}
			slices.Sort(ds)
			return ds[len(ds)/2]
		}
		perHop := ""
		if f, ok := floor[v.levels]; ok && v.hops() > 0 && v.rate == 0 && !v.skip {
			perHop = fmt.Sprintf("%.2fs/10k a hop", (best[i]-f)/float64(v.hops()))
		}
		fmt.Printf("%-36s beam %6.2fs/10k %-18s | wall %5.2fs | latency beyond delay p50 %v p99 %v\n", v.name, best[i], perHop,
			med(func(r delayResult) time.Duration { return r.wall }).Seconds(),
			med(func(r delayResult) time.Duration { return r.beyond(v, 0.5) }),
			med(func(r delayResult) time.Duration { return r.beyond(v, 0.99) }))
	}
	for i, q := range vs {
		for j, c := range vs {
			if q.classic || !c.classic || q.levels != c.levels || q.delay != c.delay || q.rate != c.rate || q.skip != c.skip {
				continue
			}
			line := fmt.Sprintf("quorum/classic, %-32s %.2f a message", strings.Replace(c.name, "classic ", "", 1)+":", best[i]/best[j])
			if f, ok := floor[q.levels]; ok && best[j] > f && q.rate == 0 && !q.skip {
				line += fmt.Sprintf(", %.2f a hop", (best[i]-f)/(best[j]-f))
			}
			fmt.Println(line)
		}
	}
	return nil
}

func (v delayVariant) per10k(d time.Duration) float64 { return d.Seconds() * 10000 / float64(v.n) }

// beyond is the f-quantile of r's end-to-end latencies less v's delay;
// r.latency is sorted.
func (r delayResult) beyond(v delayVariant, f float64) time.Duration {
	return (r.latency[int(f*float64(len(r.latency)-1))] - v.delay).Round(time.Millisecond)
}
