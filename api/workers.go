package api

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// workerEntry is one pool of one live worker process, as GET /v1/workers
// shows it: a process serving several pools has an entry for each.
type workerEntry struct {
	ID      string `json:"id"`
	Pool    string `json:"pool"`
	Host    string `json:"host"`
	PID     int    `json:"pid"`
	Version string `json:"version"`
	// Concurrency is how many jobs of the pool the process runs at once,
	// Busy how many it has in hand now.
	Concurrency int `json:"concurrency"`
	Busy        int `json:"busy"`
	// Done and Failed count the attempts the process ended since it
	// started: succeeded, and ended with an error (retried or failed).
	Done   int64 `json:"done"`
	Failed int64 `json:"failed"`
	// StartedAt is when the process started; LastSeenAt when it last
	// renewed its lease (every few seconds), which the figures date from.
	StartedAt  *time.Time `json:"started_at,omitempty"`
	LastSeenAt *time.Time `json:"last_seen_at,omitempty"`
}

// listWorkers handles GET /v1/workers?pool=P: the worker processes whose
// leases are current, one entry per process and pool, sorted by pool and
// id; with pool, that pool's alone (404 for a pool neither declared nor
// served). It reads Redis only: two round trips, whatever the number of
// jobs.
func (s *Server) listWorkers(w http.ResponseWriter, r *http.Request) {
	pool, bad := poolFilter(r)
	if bad != nil {
		writeError(w, bad)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), queuesTimeout)
	defer cancel()
	ws, err := s.store.Workers(ctx)
	if err != nil {
		writeError(w, s.queuesError(err))
		return
	}
	entries := []workerEntry{}
	for _, wi := range ws {
		if len(wi.Pools) == 0 && pool == "" {
			// A lease that names no pool: a process that only holds
			// attempts alive.
			entries = append(entries, workerEntry{ID: wi.ID, Host: wi.Host, PID: wi.PID, Version: wi.Version,
				StartedAt: timeOrNil(wi.Started), LastSeenAt: timeOrNil(wi.Seen)})
		}
		for name, l := range wi.Pools {
			if pool != "" && name != pool {
				continue
			}
			entries = append(entries, workerEntry{
				ID: wi.ID, Pool: name, Host: wi.Host, PID: wi.PID, Version: wi.Version,
				Concurrency: l.Concurrency, Busy: l.Busy, Done: l.Done, Failed: l.Failed,
				StartedAt: timeOrNil(wi.Started), LastSeenAt: timeOrNil(wi.Seen),
			})
		}
	}
	if pool != "" && len(entries) == 0 {
		known, err := s.knownPool(ctx, pool)
		if err != nil {
			writeError(w, s.queuesError(err))
			return
		}
		if !known {
			writeError(w, unknownPool(pool))
			return
		}
	}
	slices.SortFunc(entries, func(a, b workerEntry) int {
		return cmp.Or(strings.Compare(a.Pool, b.Pool), strings.Compare(a.ID, b.ID))
	})
	writeJSON(w, http.StatusOK, map[string]any{"workers": entries})
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// poolState is what pausing or resuming a pool answers.
type poolState struct {
	Pool     string     `json:"pool"`
	Paused   bool       `json:"paused"`
	PausedAt *time.Time `json:"paused_at,omitempty"`
	PausedBy string     `json:"paused_by,omitempty"`
	// Changed is false when the pool already was in that state.
	Changed bool `json:"changed"`
}

// pausePool handles POST /v1/queues/{pool}/pause: the pool's workers take
// no new jobs until it is resumed, and finish those they run. The pause is
// kept in Redis, so it outlives every process; pausing a paused pool
// changes nothing (its first pause's time and author stay).
func (s *Server) pausePool(w http.ResponseWriter, r *http.Request) {
	pool, ok := s.poolAction(w, r, false)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), queuesTimeout)
	defer cancel()
	p, changed, err := s.store.PausePool(ctx, pool, callerOf(r.Context()).name())
	if err != nil {
		writeError(w, s.queuesError(err))
		return
	}
	s.audit(r, "pause", "pool", pool, "changed", changed)
	st := poolState{Pool: pool, Paused: true, PausedBy: p.By, Changed: changed}
	st.PausedAt = timeOrNil(p.At)
	writeJSON(w, http.StatusOK, st)
}

// resumePool handles POST /v1/queues/{pool}/resume: the pool's workers take
// jobs again. Resuming a pool that is not paused changes nothing.
func (s *Server) resumePool(w http.ResponseWriter, r *http.Request) {
	pool, ok := s.poolAction(w, r, true)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), queuesTimeout)
	defer cancel()
	changed, err := s.store.ResumePool(ctx, pool)
	if err != nil {
		writeError(w, s.queuesError(err))
		return
	}
	s.audit(r, "resume", "pool", pool, "changed", changed)
	writeJSON(w, http.StatusOK, poolState{Pool: pool, Changed: changed})
}

// poolAction checks a request to act on the pool its path names: the
// caller may touch every type (a pool holds jobs of all its types), the
// name is a pool name, and the pool is known (declared by a worker; for a
// resume, paused will do, so that a pause outliving its pool's types can
// still be lifted).
func (s *Server) poolAction(w http.ResponseWriter, r *http.Request, resume bool) (string, bool) {
	pool := r.PathValue("pool")
	if c := callerOf(r.Context()); c.limited() {
		writeError(w, apiErr("forbidden", "", "key %s is limited to some job types; pausing or resuming a pool needs a key that is not", c.key.Name))
		return "", false
	}
	if !jobs.ValidPoolName(pool) {
		writeError(w, apiErr("invalid_field", "pool", "%q is not a pool name: want a lower-case word, such as sys", truncateText(pool, 64)))
		return "", false
	}
	ctx, cancel := context.WithTimeout(r.Context(), queuesTimeout)
	defer cancel()
	known, err := s.knownPool(ctx, pool)
	if err == nil && !known && resume {
		var paused map[string]store.Pause
		paused, err = s.store.Paused(ctx)
		_, known = paused[pool]
	}
	if err != nil {
		writeError(w, s.queuesError(err))
		return "", false
	}
	if !known {
		writeError(w, unknownPool(pool))
		return "", false
	}
	return pool, true
}

// knownPool reports whether a worker has declared types of pool.
func (s *Server) knownPool(ctx context.Context, pool string) (bool, error) {
	pools, err := s.registryPools(ctx)
	if err != nil {
		return false, err
	}
	return slices.Contains(pools, pool), nil
}

func unknownPool(pool string) *Error {
	return apiErr("not_found", "pool", "no pool %s: a pool is known once a worker of it has declared its types", pool)
}

// poolFilter reads the optional ?pool= of a listing, refusing what is not
// a pool name.
func poolFilter(r *http.Request) (string, *Error) {
	pool := r.URL.Query().Get("pool")
	if pool != "" && !jobs.ValidPoolName(pool) {
		return "", apiErr("invalid_field", "pool", "%q is not a pool name: want a lower-case word, such as sys", truncateText(pool, 64))
	}
	return pool, nil
}
