package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Worker is one pool of one live worker process, as its lease said when it
// last renewed it (every few seconds).
type Worker struct {
	// ID names the process; job records name it as their worker.
	ID      string `json:"id"`
	Pool    string `json:"pool"`
	Host    string `json:"host"`
	PID     int    `json:"pid"`
	Version string `json:"version"`
	// Concurrency is how many jobs of the pool the process runs at once,
	// Busy how many it has in hand.
	Concurrency int `json:"concurrency"`
	Busy        int `json:"busy"`
	// Done and Failed count the attempts the process ended since it
	// started: succeeded, and ended with an error (retried or failed).
	Done   int64 `json:"done"`
	Failed int64 `json:"failed"`
	// StartedAt is when the process started, LastSeenAt when it last
	// renewed its lease; zero when its lease does not say.
	StartedAt  time.Time `json:"started_at,omitzero"`
	LastSeenAt time.Time `json:"last_seen_at,omitzero"`
}

// Workers returns the live worker processes, one entry per process and
// pool, sorted by pool and id; with pool set, that pool's alone (an
// APIError with code not_found for a pool the API does not know).
func (c *Client) Workers(ctx context.Context, pool string) ([]Worker, error) {
	var q url.Values
	if pool != "" {
		q = url.Values{"pool": {pool}}
	}
	var r struct {
		Workers []Worker `json:"workers"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/v1/workers", q, nil, &r); err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	return r.Workers, nil
}

// PoolState is a pool's state after a pause or resume.
type PoolState struct {
	Pool   string `json:"pool"`
	Paused bool   `json:"paused"`
	// PausedAt and PausedBy say when and by which API key the pool was
	// paused; zero unless paused.
	PausedAt time.Time `json:"paused_at,omitzero"`
	PausedBy string    `json:"paused_by,omitempty"`
	// Changed is false when the pool already was in that state.
	Changed bool `json:"changed"`
}

// PausePool pauses a pool: its workers finish the jobs they run and take no
// new ones until ResumePool; jobs are still accepted and wait in the
// queue. The pause outlives every process. Pausing a paused pool changes
// nothing.
func (c *Client) PausePool(ctx context.Context, pool string) (*PoolState, error) {
	return c.poolAction(ctx, pool, "pause")
}

// ResumePool ends a pool's pause: its workers take jobs again.
func (c *Client) ResumePool(ctx context.Context, pool string) (*PoolState, error) {
	return c.poolAction(ctx, pool, "resume")
}

func (c *Client) poolAction(ctx context.Context, pool, action string) (*PoolState, error) {
	if pool == "" {
		return nil, errors.New(action + " pool: pool is empty")
	}
	var st PoolState
	if _, err := c.do(ctx, http.MethodPost, "/v1/queues/"+url.PathEscape(pool)+"/"+action, nil, nil, &st); err != nil {
		return nil, fmt.Errorf("%s pool %s: %w", action, pool, err)
	}
	return &st, nil
}
