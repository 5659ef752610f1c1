package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// ScheduleRequest asks for a schedule (POST /v1/schedules): a job of Type
// with Payload, at every tick of Cron or Every (docs/schedules.md).
type ScheduleRequest struct {
	Name string `json:"name"`
	// Cron is a 5-field cron expression or a descriptor (@hourly); send it
	// or Every.
	Cron string `json:"cron,omitempty"`
	// Every is an interval as duration text ("1m"), at least 1s.
	Every    string            `json:"every,omitempty"`
	Type     string            `json:"type"`
	Payload  json.RawMessage   `json:"payload,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Timezone is the IANA zone Cron is read in; empty means UTC.
	Timezone string `json:"timezone,omitempty"`
	// Jitter delays each tick's job by up to this much ("30s").
	Jitter string `json:"jitter,omitempty"`
	// Overlap is "allow" (the default) or "skip".
	Overlap string `json:"overlap,omitempty"`
	// CatchUp fires a tick missed while nothing ran once, on return.
	CatchUp bool `json:"catch_up,omitempty"`
}

// Schedule is a schedule as the API shows it.
type Schedule struct {
	Name      string            `json:"name"`
	Cron      string            `json:"cron,omitempty"`
	Every     string            `json:"every,omitempty"`
	Type      string            `json:"type"`
	Payload   json.RawMessage   `json:"payload,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	Timezone  string            `json:"timezone,omitempty"`
	Jitter    string            `json:"jitter,omitempty"`
	Overlap   string            `json:"overlap"`
	CatchUp   bool              `json:"catch_up"`
	Paused    bool              `json:"paused"`
	PausedAt  time.Time         `json:"paused_at,omitzero"`
	PausedBy  string            `json:"paused_by,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	CreatedBy string            `json:"created_by,omitempty"`
	// NextTick is the next tick, NextRunAt when its job is submitted (with
	// the jitter); zero while paused.
	NextTick  time.Time `json:"next_tick,omitzero"`
	NextRunAt time.Time `json:"next_run_at,omitzero"`
	// LastTick, LastJob and LastFiredAt are the last tick fired and its
	// job; zero before the first.
	LastTick    time.Time `json:"last_tick,omitzero"`
	LastJob     string    `json:"last_job,omitempty"`
	LastFiredAt time.Time `json:"last_fired_at,omitzero"`
	// LastSkipped is the last tick not fired, and why.
	LastSkipped *SkippedTick `json:"last_skipped,omitempty"`
	// Changed, in the answer of a pause or resume, is false when the
	// schedule already was in that state.
	Changed bool `json:"changed,omitempty"`
}

// SkippedTick is a tick that was not fired: Reason is overlap, missed or
// refused.
type SkippedTick struct {
	Tick   time.Time `json:"tick"`
	Reason string    `json:"reason"`
	Error  string    `json:"error,omitempty"`
}

// AddSchedule creates a schedule (an APIError with code conflict when the
// name is taken).
func (c *Client) AddSchedule(ctx context.Context, req ScheduleRequest) (*Schedule, error) {
	var s Schedule
	if _, err := c.do(ctx, http.MethodPost, "/v1/schedules", nil, req, &s); err != nil {
		return nil, fmt.Errorf("add schedule: %w", err)
	}
	return &s, nil
}

// Schedules returns every schedule the key may see, by name.
func (c *Client) Schedules(ctx context.Context) ([]Schedule, error) {
	var r struct {
		Schedules []Schedule `json:"schedules"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/v1/schedules", nil, nil, &r); err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	return r.Schedules, nil
}

// Schedule returns one schedule.
func (c *Client) Schedule(ctx context.Context, name string) (*Schedule, error) {
	return c.scheduleAction(ctx, http.MethodGet, name, "")
}

// PauseSchedule pauses a schedule: no tick fires until ResumeSchedule.
func (c *Client) PauseSchedule(ctx context.Context, name string) (*Schedule, error) {
	return c.scheduleAction(ctx, http.MethodPost, name, "/pause")
}

// ResumeSchedule resumes a paused schedule; the ticks that passed while it
// was paused are not fired.
func (c *Client) ResumeSchedule(ctx context.Context, name string) (*Schedule, error) {
	return c.scheduleAction(ctx, http.MethodPost, name, "/resume")
}

// DeleteSchedule deletes a schedule and returns it as it was.
func (c *Client) DeleteSchedule(ctx context.Context, name string) (*Schedule, error) {
	return c.scheduleAction(ctx, http.MethodDelete, name, "")
}

func (c *Client) scheduleAction(ctx context.Context, method, name, action string) (*Schedule, error) {
	if name == "" {
		return nil, errors.New("schedule name is empty")
	}
	var s Schedule
	if _, err := c.do(ctx, method, "/v1/schedules/"+url.PathEscape(name)+action, nil, nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}
