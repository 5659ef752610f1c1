package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/warrenhq/warren/jobs"
)

// PoolScaling is one pool's scaling: its policy, its autoscaler's latest
// word and its recent decisions.
type PoolScaling struct {
	Pool string `json:"pool"`
	// Autoscaler names what reports on the pool ("warren autoscale"); empty
	// when nothing reported within three of its intervals: the pool runs
	// at a fixed size, or KEDA scales it, which reports nothing to the API.
	// The figures below, up to Policy, are then zero.
	Autoscaler string `json:"autoscaler"`
	// Stale says Decisions are those of an autoscaler that stopped
	// reporting.
	Stale bool `json:"stale"`
	// Current is the worker processes running at the latest report;
	// Desired the size the latest decision chose, at At, from Backlog and
	// OldestAgeSeconds; Recommended the size the measurement alone asked
	// for.
	Current          int       `json:"current"`
	Desired          int       `json:"desired"`
	Recommended      int       `json:"recommended"`
	Backlog          int       `json:"backlog"`
	OldestAgeSeconds float64   `json:"oldest_age_seconds"`
	Reason           string    `json:"reason"`
	At               time.Time `json:"at,omitzero"`
	// Policy is the pool's policy as its autoscaler reports it; nil when
	// none reports.
	Policy *ScalingPolicy `json:"policy"`
	// Decisions are the recent decisions, newest first: those that changed
	// the size or gave another reason than the one before (at most 50).
	Decisions []ScalingDecision `json:"decisions"`
	// Note says, for people, why there is no policy.
	Note string `json:"note,omitempty"`
}

// ScalingPolicy is a pool's scaling policy, defaults filled in
// (docs/autoscaling.md).
type ScalingPolicy struct {
	Min               int           `json:"min"`
	Max               int           `json:"max"`
	TargetBacklog     int           `json:"target_backlog"`
	ActivationBacklog int           `json:"activation_backlog"`
	TargetAge         jobs.Duration `json:"target_age"`
	Interval          jobs.Duration `json:"interval"`
	ScaleUpWindow     jobs.Duration `json:"scale_up_window"`
	// ScaleDownWindow is negative for none.
	ScaleDownWindow jobs.Duration `json:"scale_down_window"`
	MaxStep         int           `json:"max_step"`
}

// ScalingDecision is one recorded decision: from Current to Desired.
type ScalingDecision struct {
	At               time.Time `json:"at"`
	Current          int       `json:"current"`
	Desired          int       `json:"desired"`
	Recommended      int       `json:"recommended"`
	Backlog          int       `json:"backlog"`
	OldestAgeSeconds float64   `json:"oldest_age_seconds"`
	Reason           string    `json:"reason"`
}

// Autoscale returns the scaling of every pool the API knows (those of
// declared types, and those an autoscaler reports on), sorted by pool; with
// pool set, that pool's alone (an APIError with code not_found for a pool
// the API does not know).
func (c *Client) Autoscale(ctx context.Context, pool string) ([]PoolScaling, error) {
	var q url.Values
	if pool != "" {
		q = url.Values{"pool": {pool}}
	}
	var r struct {
		Pools []PoolScaling `json:"pools"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/v1/autoscale", q, nil, &r); err != nil {
		return nil, fmt.Errorf("list autoscaling: %w", err)
	}
	return r.Pools, nil
}
