package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/warrenhq/warren/metrics"
	"github.com/warrenhq/warren/queue"
	"github.com/warrenhq/warren/store"
)

// queuesTimeout bounds GET /v1/queues's wait for the broker and Redis, so it
// answers 503 rather than hanging while one is away.
const queuesTimeout = 5 * time.Second

// queueEntry is one pool's queue as GET /v1/queues shows it.
type queueEntry struct {
	Pool    string `json:"pool"`
	Ready   int    `json:"ready"`
	Unacked int    `json:"unacked"`
	Backlog int    `json:"backlog"`
	// High is the part of the backlog in the pool's high lane: jobs of
	// priority 5 to 9 (docs/priorities.md).
	High      int `json:"high"`
	Consumers int `json:"consumers"`
	// Source is what measured the queue: "management", or "amqp", which
	// cannot count unacknowledged messages (unacked is then 0).
	Source           string  `json:"source"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	Dead             int     `json:"dead"`
	// RescuedLastHour is how many of the pool's jobs the rescuer published
	// again in the last hour because their messages were lost.
	RescuedLastHour int            `json:"rescued_last_hour"`
	Replicas        *replicasEntry `json:"replicas,omitempty"`
	// Paused says the pool's workers take no new jobs (POST
	// /v1/queues/{pool}/pause), since PausedAt, by PausedBy.
	Paused   bool       `json:"paused"`
	PausedAt *time.Time `json:"paused_at,omitempty"`
	PausedBy string     `json:"paused_by,omitempty"`
	// The pool's jobs by recorded status, from its job lists.
	Scheduled int `json:"scheduled"`
	Running   int `json:"running"`
	Retrying  int `json:"retrying"`
	// Limited is how many of the pool's jobs their types' rate limits hold
	// back now (docs/ratelimits.md); their messages wait in the delay
	// levels, not in the queue.
	Limited int `json:"limited"`
	// Outcomes over the last hour, in all and per minute (oldest first).
	SucceededLastHour int           `json:"succeeded_last_hour"`
	FailedLastHour    int           `json:"failed_last_hour"`
	PerMinute         []minuteEntry `json:"per_minute"`
}

// minuteEntry is one minute's outcomes of a pool.
type minuteEntry struct {
	Minute    time.Time `json:"minute"`
	Succeeded int       `json:"succeeded"`
	Failed    int       `json:"failed"`
}

// replicasEntry is an autoscaler's latest word on a pool.
type replicasEntry struct {
	Current int       `json:"current"`
	Desired int       `json:"desired"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// newMetrics returns the collector of the pools in the type registry, which
// GET /metrics serves; GET /v1/queues measures with it too.
func (s *Server) newMetrics() (*metrics.Collector, error) {
	return metrics.New(metrics.Config{
		Broker:     s.broker,
		Store:      s.store,
		Management: s.cfg.Management,
		Pools:      s.registryPools,
		Namespace:  s.broker.Namespace(),
		Logger:     s.cfg.Logger,
	})
}

// registryPools returns the pools of the declared types, sorted.
func (s *Server) registryPools(ctx context.Context) ([]string, error) {
	ts, err := s.store.Types(ctx)
	if err != nil {
		return nil, err
	}
	pools := make([]string, 0, len(ts))
	for _, t := range ts {
		pools = append(pools, t.Pool)
	}
	slices.Sort(pools)
	return slices.Compact(pools), nil
}

// listQueues handles GET /v1/queues: every pool of the type registry or with
// replica counts from an autoscaler, sorted, with its queue's backlog, its
// oldest waiting job's age, its dead letters and its replicas.
func (s *Server) listQueues(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), queuesTimeout)
	defer cancel()
	entries, err := s.queues(ctx)
	if err != nil {
		writeError(w, s.queuesError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"queues": entries})
}

func (s *Server) queues(ctx context.Context) ([]queueEntry, error) {
	pools, err := s.registryPools(ctx)
	if err != nil {
		return nil, err
	}
	replicas, err := s.store.Replicas(ctx)
	if err != nil {
		return nil, err
	}
	for pool := range replicas {
		pools = append(pools, pool)
	}
	rescued, err := s.store.Rescued(ctx, pools, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	paused, err := s.store.Paused(ctx)
	if err != nil {
		return nil, err
	}
	counts, err := s.store.Counts(ctx, pools, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	limited, err := s.limitedByPool(ctx)
	if err != nil {
		return nil, err
	}
	entries := []queueEntry{}
	for _, m := range s.metrics.Measure(ctx, pools) {
		if m.Err != nil {
			return nil, m.Err
		}
		e := queueEntry{
			Pool:             m.Pool,
			Ready:            m.Depth.Ready,
			Unacked:          m.Depth.Unacked,
			Backlog:          m.Depth.Backlog(),
			High:             m.Depth.High,
			Consumers:        m.Depth.Consumers,
			Source:           m.Depth.Source,
			OldestAgeSeconds: m.OldestAge.Seconds(),
			Dead:             *m.Dead,
			RescuedLastHour:  rescued[m.Pool],
		}
		c := counts[m.Pool]
		e.Scheduled, e.Running, e.Retrying = c.Scheduled, c.Running, c.Retrying
		e.Limited = limited[m.Pool]
		e.SucceededLastHour, e.FailedLastHour = c.SucceededLastHour, c.FailedLastHour
		e.PerMinute = make([]minuteEntry, len(c.PerMinute))
		for i, mc := range c.PerMinute {
			e.PerMinute[i] = minuteEntry{Minute: mc.Minute, Succeeded: mc.Succeeded, Failed: mc.Failed}
		}
		if r, ok := replicas[m.Pool]; ok {
			e.Replicas = &replicasEntry{Current: r.Current, Desired: r.Desired, Reason: r.Reason, At: r.At}
		}
		if p, ok := paused[m.Pool]; ok {
			e.Paused, e.PausedAt, e.PausedBy = true, timeOrNil(p.At), p.By
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// queuesError says which server is away without toAPIError's word about
// submissions, which does not fit a read.
func (s *Server) queuesError(err error) *Error {
	switch {
	case errors.Is(err, store.ErrUnavailable):
		s.log.Warn("redis unavailable", "err", err)
		return apiErr("unavailable", "", "the job store (Redis) is unavailable; try again")
	case errors.Is(err, queue.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		s.log.Warn("broker unavailable", "err", err)
		return apiErr("unavailable", "", "the broker (RabbitMQ) is unavailable; try again")
	}
	return toAPIError(s.log, err)
}
