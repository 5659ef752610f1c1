package api

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/warrenhq/warren/store"
)

// supervisorName is what reports scaling decisions to Redis: the
// supervisor of `warren autoscale` (which `warren dev` runs too). KEDA,
// which scales pools on Kubernetes, reports nothing there.
const supervisorName = "warren autoscale"

// autoscaleEntry is one pool as GET /v1/autoscale shows it.
type autoscaleEntry struct {
	Pool string `json:"pool"`
	// Autoscaler names what reports on the pool; null when nothing
	// reported within three of its intervals.
	Autoscaler *string `json:"autoscaler"`
	// Stale says the decisions are those of an autoscaler that stopped
	// reporting.
	Stale bool `json:"stale"`
	// The latest report's figures, at the top level; absent when no
	// autoscaler reports.
	*decisionEntry
	// Policy is the pool's policy, defaults filled in, as store.ScalePolicy
	// writes it.
	Policy    *store.ScalePolicy `json:"policy"`
	Decisions []decisionEntry    `json:"decisions"`
	// Note says, for people, why there is no policy.
	Note string `json:"note,omitempty"`
}

// decisionEntry is a decision from Current to Desired, made at At from
// Backlog and OldestAgeSeconds: one of the pool's recent ones or, at the
// top of its entry, the autoscaler's latest word, whose Current is the
// processes running once it acted.
type decisionEntry struct {
	At               time.Time `json:"at"`
	Current          int       `json:"current"`
	Desired          int       `json:"desired"`
	Recommended      int       `json:"recommended"`
	Backlog          int       `json:"backlog"`
	OldestAgeSeconds float64   `json:"oldest_age_seconds"`
	Reason           string    `json:"reason"`
}

// Notes of a pool without a current report.
const (
	noteUnmanaged = "no autoscaler reports on this pool: it runs at the size it was started with, or KEDA scales it, which reports nothing here"
	noteStopped   = "the autoscaler of this pool stopped reporting; the decisions are its last"
)

// listAutoscale handles GET /v1/autoscale?pool=P: every pool of the type
// registry or with a current report from an autoscaler, sorted, with its
// policy, its autoscaler's latest word and its recent decisions (newest
// first); with pool, that pool's alone (404 for a pool neither declared nor
// reported on). It reads Redis only: two round trips, three when a report
// is stale.
func (s *Server) listAutoscale(w http.ResponseWriter, r *http.Request) {
	pool, bad := poolFilter(r)
	if bad != nil {
		writeError(w, bad)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), queuesTimeout)
	defer cancel()
	pools, err := s.registryPools(ctx)
	if err != nil {
		writeError(w, s.queuesError(err))
		return
	}
	scaling, err := s.store.Scaling(ctx, pools...)
	if err != nil {
		writeError(w, s.queuesError(err))
		return
	}
	if pool != "" {
		ps, ok := scaling[pool]
		if !ok {
			writeError(w, unknownPool(pool))
			return
		}
		scaling = map[string]store.PoolScaling{pool: ps}
	}
	names := make([]string, 0, len(scaling))
	for name := range scaling {
		names = append(names, name)
	}
	slices.Sort(names)
	entries := make([]autoscaleEntry, 0, len(names))
	for _, name := range names {
		entries = append(entries, newAutoscaleEntry(name, scaling[name]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"pools": entries})
}

func newAutoscaleEntry(pool string, ps store.PoolScaling) autoscaleEntry {
	e := autoscaleEntry{Pool: pool, Decisions: make([]decisionEntry, 0, len(ps.Decisions))}
	for _, d := range ps.Decisions {
		e.Decisions = append(e.Decisions, newDecisionEntry(d))
	}
	r := ps.Replicas
	if r == nil {
		e.Stale = len(e.Decisions) > 0
		e.Note = noteUnmanaged
		if e.Stale {
			e.Note = noteStopped
		}
		return e
	}
	name := supervisorName
	e.Autoscaler = &name
	latest := newDecisionEntry(store.ScaleDecision{At: r.At, Current: r.Current, Desired: r.Desired,
		Recommended: r.Recommended, Backlog: r.Backlog, OldestAge: r.OldestAge, Reason: r.Reason})
	e.decisionEntry = &latest
	e.Policy = r.Policy
	return e
}

func newDecisionEntry(d store.ScaleDecision) decisionEntry {
	return decisionEntry{At: d.At, Current: d.Current, Desired: d.Desired, Recommended: d.Recommended,
		Backlog: d.Backlog, OldestAgeSeconds: d.OldestAge.Seconds(), Reason: d.Reason}
}
