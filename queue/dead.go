package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenhq/warren/jobs"
)

// DeadLetter is a message in a pool's dead-letter queue: the job as it was
// published, and why it failed.
type DeadLetter struct {
	Job       *jobs.Job
	ErrorCode string
	Error     string
	// FailedAt is when the worker gave up on the job; zero for a message
	// the broker dead-lettered itself (see Reason).
	FailedAt time.Time
	// Reason is "failed" (a worker gave up) or "limit" (the broker's
	// delivery limit).
	Reason string
}

func deadLetter(d amqp.Delivery) (DeadLetter, error) {
	j, err := DecodeJob(d.Body)
	if err != nil {
		return DeadLetter{}, err
	}
	dl := DeadLetter{Job: j, Reason: "failed"}
	dl.ErrorCode, _ = d.Headers[headerErrorCode].(string)
	dl.Error, _ = d.Headers[headerError].(string)
	if ms, err := strconv.ParseInt(fmt.Sprint(d.Headers[headerFailedAt]), 10, 64); err == nil {
		dl.FailedAt = time.UnixMilli(ms).UTC()
	}
	if n, ok := intHeader(d.Headers[headerAttempts]); ok {
		j.Attempt = n
	}
	switch reason, _, _ := strings.Cut(d.RoutingKey, "."); reason {
	case "limit":
		dl.Reason = "limit"
		dl.ErrorCode = "delivery_limit"
		dl.Error = fmt.Sprintf("the broker dead-lettered the message after %d deliveries", DeliveryLimit)
		dl.FailedAt = deathTime(d.Headers)
	case "intake":
		// The intake queue's own limit (intakeQueueArgs): the workers could
		// not record the job failed, so its record may still say queued or
		// running.
		dl.Reason = "limit"
		dl.ErrorCode = "delivery_limit"
		dl.Error = fmt.Sprintf("the broker dead-lettered the message after %d deliveries, then %d more on the dead-letter intake, whose workers could not record the job failed",
			DeliveryLimit, DeliveryLimit)
		dl.FailedAt = deathTime(d.Headers)
	}
	return dl, nil
}

// deathTime reads when the broker dead-lettered a message, from x-death.
func deathTime(h amqp.Table) time.Time {
	deaths, _ := h["x-death"].([]any)
	if len(deaths) == 0 {
		return time.Time{}
	}
	first, _ := deaths[0].(amqp.Table)
	t, _ := first["time"].(time.Time)
	return t.UTC()
}

// DeadLetters lists up to limit dead letters of a pool, oldest first, and
// how many there are in all. It reads them without removing them: they are
// taken and returned within one channel.
func (b *Broker) DeadLetters(ctx context.Context, pool string, limit int) (total int, dead []DeadLetter, err error) {
	ch, _, err := b.channel(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("list dead letters of %s: %w", pool, err)
	}
	// Closing the channel returns every message taken, in order.
	defer ch.Close()
	q := b.cfg.Namespace.DeadQueue(pool)
	info, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil {
		return 0, nil, poolErr("list dead letters", pool, err)
	}
	for len(dead) < limit {
		d, ok, err := ch.Get(q, false)
		if err != nil {
			return 0, nil, fmt.Errorf("list dead letters of %s: %w", pool, connectionLost(err))
		}
		if !ok {
			break
		}
		dl, err := deadLetter(d)
		if err != nil {
			b.log.Warn("unreadable dead letter", "queue", q, "message_id", d.MessageId, "err", err)
			continue
		}
		dead = append(dead, dl)
	}
	return max(info.Messages, len(dead)), dead, nil
}

// ErrNoPool means the pool's queues do not exist: no worker of that pool
// ever ran (or its namespace was deleted). Every method that names a pool
// says so with it, never with the broker's own 404.
var ErrNoPool = errors.New("no such pool")

// notFound reports whether the broker answered that what was asked for
// does not exist (its 404, which also closes the channel).
func notFound(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == amqp.NotFound
}

// poolErr wraps an error of doing what on pool, saying ErrNoPool where the
// broker found no queue, and ErrUnavailable where the connection was lost.
func poolErr(what, pool string, err error) error {
	if notFound(err) {
		return fmt.Errorf("%s of %s: %w", what, pool, ErrNoPool)
	}
	return fmt.Errorf("%s of %s: %w", what, pool, connectionLost(err))
}

// Records is what a replay needs of the jobs' records (store.Store is
// one): Revive makes a failed job queued again with its attempts reset,
// and says false when the job is no longer failed (replayed already, or
// retried); Refail puts it back as failed, with its error, when its
// message could not be published.
type Records interface {
	Revive(ctx context.Context, j *jobs.Job) (bool, error)
	Refail(ctx context.Context, id string, e *jobs.Error) error
}

// ReplayDead takes the pool's dead letters of the given job ids (all of
// them when ids is nil), revives each job's record and publishes the job
// again with its attempts reset. A dead letter is removed only once its job
// is published again (or its record says it lives already). If a publish
// fails, the record is set back to failed and the dead letter stays for a
// later replay. It returns the ids replayed.
func (b *Broker) ReplayDead(ctx context.Context, pool string, ids []string, records Records) ([]string, error) {
	ch, _, err := b.channel(ctx)
	if err != nil {
		return nil, fmt.Errorf("replay dead letters of %s: %w", pool, err)
	}
	defer ch.Close() // returns the dead letters left alone
	q := b.cfg.Namespace.DeadQueue(pool)
	if _, err := ch.QueueDeclarePassive(q, true, false, false, false, nil); err != nil {
		return nil, poolErr("replay dead letters", pool, err)
	}
	var want func(string) bool
	if ids != nil {
		set := make(map[string]bool, len(ids))
		for _, id := range ids {
			set[id] = true
		}
		want = func(id string) bool { return set[id] }
	}
	var replayed []string
	seen := map[string]bool{}
	// Dead letters just listed come back to the queue a moment after the
	// listing's channel closes (a quorum queue applies returns through its
	// log), so ids asked for but not yet found are looked for again,
	// briefly.
	deadline := time.Now().Add(2 * time.Second)
	for {
		if err := b.replayPass(ctx, ch, q, want, records, seen, &replayed); err != nil {
			return replayed, err
		}
		if ids == nil || time.Now().After(deadline) || allSeen(ids, seen) {
			return replayed, nil
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return replayed, nil
		}
	}
}

func allSeen(ids []string, seen map[string]bool) bool {
	for _, id := range ids {
		if !seen[id] {
			return false
		}
	}
	return true
}

// replayPass takes every dead letter in the queue once. A second copy of a
// job replayed in this call (it failed again at once) is held, not
// replayed again, so the pass ends.
func (b *Broker) replayPass(ctx context.Context, ch *amqp.Channel, q string, want func(id string) bool,
	records Records, seen map[string]bool, replayed *[]string) error {
	for {
		d, ok, err := ch.Get(q, false)
		if err != nil {
			return fmt.Errorf("replay dead letters: %w", connectionLost(err))
		}
		if !ok {
			return nil
		}
		dl, err := deadLetter(d)
		if err != nil || seen[dl.Job.ID] || (want != nil && !want(dl.Job.ID)) {
			continue // left unacknowledged: back in the queue when the channel closes
		}
		seen[dl.Job.ID] = true
		j := *dl.Job
		j.Attempt = 0
		alive, err := records.Revive(ctx, &j)
		if err != nil {
			return err
		}
		if alive {
			traceparent, _ := d.Headers[headerTraceParent].(string)
			m, err := NewMessage(&j, traceparent)
			if err == nil {
				var errs []error
				if errs, err = b.Publish(ctx, []Message{m}); err == nil {
					err = errs[0]
				}
			}
			if err != nil {
				refail := &jobs.Error{Code: dl.ErrorCode, Message: dl.Error}
				if uerr := records.Refail(context.WithoutCancel(ctx), j.ID, refail); uerr != nil {
					b.log.Error("replay failed and the job's record could not be set back to failed", "job", j.ID, "err", uerr)
				}
				return fmt.Errorf("replay job %s: %w", j.ID, err)
			}
			*replayed = append(*replayed, j.ID)
		}
		if err := d.Ack(false); err != nil {
			return fmt.Errorf("replay job %s: remove dead letter: %w", j.ID, connectionLost(err))
		}
	}
}

// PurgeDead deletes every dead letter of a pool and says how many.
func (b *Broker) PurgeDead(ctx context.Context, pool string) (int, error) {
	ch, _, err := b.channel(ctx)
	if err != nil {
		return 0, fmt.Errorf("purge dead letters of %s: %w", pool, err)
	}
	defer ch.Close()
	n, err := ch.QueuePurge(b.cfg.Namespace.DeadQueue(pool), false)
	if err != nil {
		return 0, poolErr("purge dead letters", pool, err)
	}
	return n, nil
}

// intHeader reads an integer header of any width: workers in other
// languages may send any.
func intHeader(v any) (int, bool) {
	switch n := v.(type) {
	case int8:
		return int(n), true
	case int16:
		return int(n), true
	case int32:
		return int(n), true
	case int64:
		return int(n), true
	case uint8:
		return int(n), true
	case uint16:
		return int(n), true
	case uint32:
		return int(n), true
	}
	return 0, false
}
