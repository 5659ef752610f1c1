package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// The rate limits of job types (docs/ratelimits.md): GET /v1/limits and
// GET /v1/limits/{type} need the read scope; PUT and DELETE the admin
// scope, since a limit slows every submitter's jobs of the type. A key
// limited to some job types sees and sets only their limits. The API only
// writes them: the workers enforce them.

// limitRecords is what the limits' endpoints read and change.
type limitRecords interface {
	Limits(ctx context.Context) ([]store.LimitRecord, error)
	Limit(ctx context.Context, typ string) (store.LimitRecord, error)
	PutLimit(ctx context.Context, rec store.LimitRecord, max int) (bool, error)
	DeleteLimit(ctx context.Context, typ string) (store.LimitRecord, error)
	Limited(ctx context.Context, types []string, now time.Time) (map[string]int, error)
}

// limitRequest is the body of PUT /v1/limits/{type}.
type limitRequest struct {
	Rate   json.RawMessage `json:"rate"`
	Tenant json.RawMessage `json:"tenant"`
}

// rateRequest is a rate in a limitRequest; the tenant's has Key too.
type rateRequest struct {
	Key   *string         `json:"key,omitempty"`
	Limit int             `json:"limit"`
	Per   json.RawMessage `json:"per"`
	Burst int             `json:"burst"`
}

// limitView is a limit as the API shows it.
type limitView struct {
	store.LimitRecord
	// Limited is how many of the type's jobs the limit holds back now.
	Limited int `json:"limited"`
}

// limitList is the answer of GET /v1/limits.
type limitList struct {
	Limits []limitView `json:"limits"`
}

// limitChange is the answer of a PUT.
type limitChange struct {
	limitView
	// Replaced says the type had a limit, which this one replaced.
	Replaced bool `json:"replaced"`
}

// decodeLimit reads a type's limit from a request body; tenantKey is the
// key of a tenant rate that names none ("": it must name one).
func decodeLimit(typ string, body []byte, maxDepth int, tenantKey string) (jobs.Limit, error) {
	l := jobs.Limit{Type: typ}
	var req limitRequest
	if err := decodeBody(body, &req, maxDepth, 0); err != nil {
		return l, err
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"rate", req.Rate}, {"tenant", req.Tenant}} {
		if len(f.raw) == 0 || string(f.raw) == "null" {
			continue
		}
		var rr rateRequest
		if err := decodeStrict(f.raw, &rr, f.name); err != nil {
			return l, err
		}
		r := jobs.Rate{Limit: rr.Limit, Burst: rr.Burst}
		if len(rr.Per) == 0 {
			return l, apiErr("missing_field", f.name+".per", "%s.per is required: the period, such as \"1s\" or \"1m\"", f.name)
		}
		if err := json.Unmarshal(rr.Per, &r.Per); err != nil {
			return l, apiErr("invalid_field", f.name+".per", "%s.per: %v", f.name, err)
		}
		if f.name == "rate" {
			if rr.Key != nil {
				return l, apiErr("unknown_field", "rate.key", "unknown field rate.key (a tenant rate has a key)")
			}
			l.Rate = &r
			continue
		}
		if rr.Key == nil && tenantKey != "" {
			rr.Key = &tenantKey
		}
		if rr.Key == nil {
			return l, apiErr("missing_field", "tenant.key", "tenant.key is required (the API's api.tenant_key names no default): the metadata key that names a job's tenant")
		}
		l.Tenant = &jobs.TenantRate{Key: *rr.Key, Rate: r}
	}
	if err := l.Validate(); err != nil {
		var le *jobs.LimitError
		if errors.As(err, &le) {
			return l, apiErr("invalid_field", le.Field, "%s", le.Message)
		}
		return l, err
	}
	return l, nil
}

// limitError is how the API answers what the store refused.
func limitError(typ string, err error) error {
	switch {
	case errors.Is(err, store.ErrLimitNotFound):
		return apiErr("not_found", "", "type %s has no rate limit", typ)
	case errors.Is(err, store.ErrLimitsFull):
		return apiErr("conflict", "", "the namespace has rate limits for %d types, the most it may; remove one first", jobs.MaxLimits)
	}
	return err
}

// pathLimitType reads the type a path names, and refuses a caller limited
// to other types.
func (s *Server) pathLimitType(w http.ResponseWriter, r *http.Request) (string, bool) {
	typ := r.PathValue("type")
	if !jobs.ValidTypeName(typ) {
		writeError(w, apiErr("invalid_field", "type", "%q is not a job type name (such as \"image.thumbnail\")", truncateText(typ, 128)))
		return "", false
	}
	if err := checkType(callerOf(r.Context()), typ); err != nil {
		writeError(w, toAPIError(s.log, err))
		return "", false
	}
	return typ, true
}

// views adds to limits how many jobs each holds back now.
func (s *Server) views(ctx context.Context, recs []store.LimitRecord) ([]limitView, error) {
	types := make([]string, len(recs))
	for i, rec := range recs {
		types[i] = rec.Type
	}
	n, err := s.store.Limited(ctx, types, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	out := make([]limitView, len(recs))
	for i, rec := range recs {
		out[i] = limitView{LimitRecord: rec, Limited: n[rec.Type]}
	}
	return out, nil
}

// listLimits handles GET /v1/limits.
func (s *Server) listLimits(w http.ResponseWriter, r *http.Request) {
	all, err := s.store.Limits(r.Context())
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	c := callerOf(r.Context())
	mine := make([]store.LimitRecord, 0, len(all))
	for _, rec := range all {
		if c.allowsType(rec.Type) {
			mine = append(mine, rec)
		}
	}
	views, err := s.views(r.Context(), mine)
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	writeJSON(w, http.StatusOK, limitList{Limits: views})
}

// getLimit handles GET /v1/limits/{type}.
func (s *Server) getLimit(w http.ResponseWriter, r *http.Request) {
	typ, ok := s.pathLimitType(w, r)
	if !ok {
		return
	}
	rec, err := s.store.Limit(r.Context(), typ)
	var v limitView
	if err == nil {
		v, err = s.limitViewOf(r.Context(), rec)
	}
	if err != nil {
		writeError(w, toAPIError(s.log, limitError(typ, err)))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// limitViewOf is one limit as the API shows it.
func (s *Server) limitViewOf(ctx context.Context, rec store.LimitRecord) (limitView, error) {
	views, err := s.views(ctx, []store.LimitRecord{rec})
	if err != nil {
		return limitView{}, err
	}
	return views[0], nil
}

// putLimit handles PUT /v1/limits/{type}: it sets the type's limit,
// replacing any it had. The workers apply it within moments (an event on
// the namespace's channel, or their next reading).
func (s *Server) putLimit(w http.ResponseWriter, r *http.Request) {
	typ, ok := s.pathLimitType(w, r)
	if !ok {
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	l, err := decodeLimit(typ, body, s.cfg.MaxJSONDepth, s.cfg.TenantKey)
	var replaced bool
	rec := store.LimitRecord{Limit: l, SetAt: s.cfg.Now().UTC().Truncate(time.Millisecond), SetBy: callerOf(r.Context()).name()}
	if err == nil {
		replaced, err = s.store.PutLimit(r.Context(), rec, jobs.MaxLimits)
	}
	var v limitView
	if err == nil {
		v, err = s.limitViewOf(r.Context(), rec)
	}
	if err != nil {
		writeError(w, toAPIError(s.log, limitError(typ, err)))
		return
	}
	s.audit(r, "limit_set", "type", typ)
	writeJSON(w, http.StatusOK, limitChange{limitView: v, Replaced: replaced})
}

// deleteLimit handles DELETE /v1/limits/{type}; it answers with the limit
// as it was. The jobs it held back start when they next check back.
func (s *Server) deleteLimit(w http.ResponseWriter, r *http.Request) {
	typ, ok := s.pathLimitType(w, r)
	if !ok {
		return
	}
	rec, err := s.store.DeleteLimit(r.Context(), typ)
	var v limitView
	if err == nil {
		v, err = s.limitViewOf(r.Context(), rec)
	}
	if err != nil {
		writeError(w, toAPIError(s.log, limitError(typ, err)))
		return
	}
	s.audit(r, "limit_delete", "type", typ)
	writeJSON(w, http.StatusOK, v)
}

// limitedByPool counts, per pool, the jobs rate limits hold back now: the
// pools of the limited types in the registry. Without limits it costs one
// read.
func (s *Server) limitedByPool(ctx context.Context) (map[string]int, error) {
	recs, err := s.store.Limits(ctx)
	if err != nil || len(recs) == 0 {
		return map[string]int{}, err
	}
	ts, err := s.store.Types(ctx)
	if err != nil {
		return nil, err
	}
	poolOf := make(map[string]string, len(ts))
	for _, t := range ts {
		poolOf[t.Name] = t.Pool
	}
	types := make([]string, 0, len(recs))
	for _, rec := range recs {
		if poolOf[rec.Type] != "" {
			types = append(types, rec.Type)
		}
	}
	n, err := s.store.Limited(ctx, types, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for typ, c := range n {
		out[poolOf[typ]] += c
	}
	return out, nil
}
