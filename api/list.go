package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// listTimeout bounds a listing's two round trips to Redis.
const listTimeout = 5 * time.Second

// Bounds on a listing's metadata filters.
const (
	maxMetaFilters = 8
	maxMetaText    = 256
)

// listJobs handles GET /v1/jobs: jobs newest first, filtered by status,
// type, pool, metadata labels (meta.KEY=VALUE) and creation time (since,
// until: RFC 3339 times, or durations meaning that long ago), limit at
// most store.MaxList, cursor from the previous page's next_cursor.
func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	q, err := s.listQuery(r)
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), listTimeout)
	defer cancel()
	page, err := s.store.List(ctx, q)
	if err != nil {
		writeError(w, s.queuesError(err))
		return
	}
	c := callerOf(r.Context())
	out := struct {
		Jobs       []*jobs.Job `json:"jobs"`
		NextCursor string      `json:"next_cursor,omitempty"`
	}{Jobs: []*jobs.Job{}}
	for _, j := range page.Jobs {
		// A key limited to some types sees only those: its pages may be
		// shorter, its cursor goes on all the same.
		if c.allowsType(j.Type) {
			out.Jobs = append(out.Jobs, s.store.Present(ctx, j))
		}
	}
	if page.Next != nil {
		out.NextCursor = page.Next.String()
	}
	writeJSON(w, http.StatusOK, out)
}

// listQuery reads and checks a listing's parameters; an unknown one is
// refused, so a misspelt filter does not silently list everything.
func (s *Server) listQuery(r *http.Request) (store.Query, error) {
	var q store.Query
	now := s.cfg.Now()
	for name, values := range r.URL.Query() {
		if len(values) != 1 {
			return q, apiErr("invalid_field", name, "give %s once", name)
		}
		v := values[0]
		switch {
		case name == "status":
			q.Status = jobs.Status(v)
			if !slices.Contains(jobs.Statuses, q.Status) {
				return q, apiErr("invalid_field", "status", "status must be one of %s", statusNames())
			}
		case name == "type":
			if !jobs.ValidTypeName(v) {
				return q, apiErr("invalid_field", "type", "%q is not a type name", truncateText(v, 64))
			}
			q.Type = v
		case name == "pool":
			if !jobs.ValidPoolName(v) {
				return q, apiErr("invalid_field", "pool", "%q is not a pool name", truncateText(v, 64))
			}
			q.Pool = v
		case name == "since", name == "until":
			t, err := timeParam(v, now)
			if err != nil {
				return q, apiErr("invalid_field", name, "%s must be a time (RFC 3339, such as 2026-01-02T15:04:05Z) or a duration ago (such as 1h)", name)
			}
			if name == "since" {
				q.Since = t
			} else {
				q.Until = t
			}
		case name == "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > store.MaxList {
				return q, apiErr("invalid_field", "limit", "limit must be from 1 to %d", store.MaxList)
			}
			q.Limit = n
		case name == "cursor":
			c, err := store.ParseCursor(v)
			if err != nil {
				return q, apiErr("invalid_field", "cursor", "cursor: %v; pass next_cursor of the previous page as it is", err)
			}
			q.After = &c
		case strings.HasPrefix(name, "meta."):
			key := strings.TrimPrefix(name, "meta.")
			if key == "" || len(key) > maxMetaText || len(v) > maxMetaText {
				return q, apiErr("invalid_field", truncateText(name, 64), "meta.KEY=VALUE: a key of 1 to %d bytes and a value of at most %d", maxMetaText, maxMetaText)
			}
			if q.Meta == nil {
				q.Meta = map[string]string{}
			}
			if len(q.Meta) == maxMetaFilters {
				return q, apiErr("invalid_field", truncateText(name, 64), "at most %d metadata filters", maxMetaFilters)
			}
			q.Meta[key] = v
		default:
			return q, apiErr("unknown_field", truncateText(name, 64),
				"unknown parameter %s; filter with status, type, pool, meta.KEY, since, until; page with limit and cursor", truncateText(name, 64))
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since) {
		return q, apiErr("invalid_field", "until", "until is before since")
	}
	return q, nil
}

// timeParam reads an RFC 3339 time, or a duration meaning that long before
// now.
func timeParam(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, errors.New("not a time")
	}
	return now.Add(-d), nil
}

func statusNames() string {
	names := make([]string, len(jobs.Statuses))
	for i, s := range jobs.Statuses {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}
