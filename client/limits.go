package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/warrenhq/warren/jobs"
)

// Limit is a job type's rate limit as the API shows it
// (docs/ratelimits.md).
type Limit struct {
	jobs.Limit
	// SetAt and SetBy say when and by which key it was last set.
	SetAt time.Time `json:"set_at"`
	SetBy string    `json:"set_by,omitempty"`
	// Limited is how many of the type's jobs it holds back now.
	Limited int `json:"limited"`
	// Replaced, from SetLimit, says the type had a limit, which this one
	// replaced.
	Replaced bool `json:"replaced,omitempty"`
}

// LimitRequest is what SetLimit sends: the type's own rate, a rate for
// each tenant, or both.
type LimitRequest struct {
	Rate   *jobs.Rate       `json:"rate,omitempty"`
	Tenant *jobs.TenantRate `json:"tenant,omitempty"`
}

// SetLimit sets a type's rate limit, replacing any it had.
func (c *Client) SetLimit(ctx context.Context, typ string, req LimitRequest) (*Limit, error) {
	return c.limitAction(ctx, http.MethodPut, typ, req)
}

// Limits returns the rate limits of every type the key may see, by type.
func (c *Client) Limits(ctx context.Context) ([]Limit, error) {
	var r struct {
		Limits []Limit `json:"limits"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/v1/limits", nil, nil, &r); err != nil {
		return nil, fmt.Errorf("list limits: %w", err)
	}
	return r.Limits, nil
}

// Limit returns one type's rate limit (an APIError with code not_found when
// it has none).
func (c *Client) Limit(ctx context.Context, typ string) (*Limit, error) {
	return c.limitAction(ctx, http.MethodGet, typ, nil)
}

// DeleteLimit removes a type's rate limit and returns it as it was.
func (c *Client) DeleteLimit(ctx context.Context, typ string) (*Limit, error) {
	return c.limitAction(ctx, http.MethodDelete, typ, nil)
}

func (c *Client) limitAction(ctx context.Context, method, typ string, in any) (*Limit, error) {
	if typ == "" {
		return nil, errors.New("job type is empty")
	}
	var l Limit
	if _, err := c.do(ctx, method, "/v1/limits/"+url.PathEscape(typ), nil, in, &l); err != nil {
		return nil, err
	}
	return &l, nil
}
