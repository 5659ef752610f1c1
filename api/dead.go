package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
)

// maxDeadList bounds one listing of dead letters.
const maxDeadList = 1000

// deadTimeout bounds a dead-letter operation's wait for the broker, so it
// answers 503 rather than hanging while RabbitMQ is away.
const deadTimeout = 10 * time.Second

// deadEntry is one dead letter as the API shows it.
type deadEntry struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Error    *jobs.Error     `json:"error"`
	Attempts int             `json:"attempts"`
	FailedAt *time.Time      `json:"failed_at,omitempty"`
	Reason   string          `json:"reason"`
	Payload  json.RawMessage `json:"payload"`
}

func poolParam(pool string) error {
	if pool == "" {
		return apiErr("missing_field", "pool", "pool is required, such as pool=sys")
	}
	if !jobs.ValidPoolName(pool) {
		return apiErr("invalid_field", "pool", "%q is not a pool name", pool)
	}
	return nil
}

// everyType refuses dead letters to a key limited to some job types: a
// pool's dead letters hold jobs of every type of the pool.
func everyType(r *http.Request) error {
	if c := callerOf(r.Context()); c.limited() {
		return apiErr("forbidden", "", "key %s is limited to some job types; dead letters need a key that is not", c.key.Name)
	}
	return nil
}

// deadError maps a missing dead-letter queue to a 404 naming the pool.
func (s *Server) deadError(w http.ResponseWriter, pool string, err error) {
	if errors.Is(err, queue.ErrNoPool) {
		writeError(w, apiErr("not_found", "pool", "pool %s has no dead-letter queue: no worker of that pool has run", pool))
		return
	}
	writeError(w, toAPIError(s.log, err))
}

// listDead handles GET /v1/dead?pool=P&limit=N.
func (s *Server) listDead(w http.ResponseWriter, r *http.Request) {
	pool := r.URL.Query().Get("pool")
	if err := cmp.Or(everyType(r), poolParam(pool)); err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxDeadList {
			writeError(w, apiErr("invalid_field", "limit", "limit must be from 1 to %d", maxDeadList))
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), deadTimeout)
	defer cancel()
	total, dead, err := s.broker.DeadLetters(ctx, pool, limit)
	if err != nil {
		s.deadError(w, pool, err)
		return
	}
	out := make([]deadEntry, len(dead))
	for i, d := range dead {
		out[i] = deadEntry{
			ID: d.Job.ID, Type: d.Job.Type, Attempts: d.Job.Attempt, Reason: d.Reason, Payload: d.Job.Payload,
			Error: &jobs.Error{Code: d.ErrorCode, Message: d.Error},
		}
		if !d.FailedAt.IsZero() {
			out[i].FailedAt = &d.FailedAt
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"pool": pool, "total": total, "dead": out})
}

type replayRequest struct {
	Pool string   `json:"pool"`
	IDs  []string `json:"ids"`
	All  bool     `json:"all"`
}

// replayDead handles POST /v1/dead/replay: the jobs chosen go back to their
// pool's queue with their attempts reset and status queued.
func (s *Server) replayDead(w http.ResponseWriter, r *http.Request) {
	body, err := s.readBody(w, r)
	if err == nil {
		var req replayRequest
		if err = decodeBody(body, &req, s.cfg.MaxJSONDepth, 0); err == nil {
			ctx, cancel := context.WithTimeout(r.Context(), deadTimeout)
			defer cancel()
			err = s.replay(w, r, ctx, req)
		}
	}
	if err != nil {
		writeError(w, toAPIError(s.log, err))
	}
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request, ctx context.Context, req replayRequest) error {
	if err := cmp.Or(everyType(r), poolParam(req.Pool)); err != nil {
		return err
	}
	switch {
	case req.All && len(req.IDs) > 0:
		return apiErr("invalid_field", "ids", "send ids or all, not both")
	case !req.All && len(req.IDs) == 0:
		return apiErr("missing_field", "ids", "send the ids to replay, or \"all\": true")
	}
	var ids []string // nil: all
	missing := map[string]bool{}
	if !req.All {
		for _, id := range req.IDs {
			lower := strings.ToLower(id) // UUIDs are case-insensitive, as in paths
			if !jobs.ValidID(lower) {
				return apiErr("invalid_field", "ids", "%q is not a job id", id)
			}
			missing[lower] = true
			ids = append(ids, lower)
		}
	}
	replayed, err := s.broker.ReplayDead(ctx, req.Pool, ids, s.store)
	if err != nil {
		s.deadError(w, req.Pool, err)
		return nil
	}
	notFound := []string{}
	for _, id := range replayed {
		delete(missing, id)
	}
	for _, id := range req.IDs {
		if missing[strings.ToLower(id)] {
			notFound = append(notFound, id) // as sent
		}
	}
	s.audit(r, "replay", "pool", req.Pool, "replayed", len(replayed), "missing", len(notFound), "all", req.All)
	writeJSON(w, http.StatusOK, map[string]any{"replayed": len(replayed), "missing": notFound})
	return nil
}

// purgeDead handles DELETE /v1/dead?pool=P.
func (s *Server) purgeDead(w http.ResponseWriter, r *http.Request) {
	pool := r.URL.Query().Get("pool")
	if err := cmp.Or(everyType(r), poolParam(pool)); err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), deadTimeout)
	defer cancel()
	n, err := s.broker.PurgeDead(ctx, pool)
	if err != nil {
		s.deadError(w, pool, err)
		return
	}
	s.audit(r, "purge", "pool", pool, "purged", n)
	writeJSON(w, http.StatusOK, map[string]int{"purged": n})
}
