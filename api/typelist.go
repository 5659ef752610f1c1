package api

import (
	"context"
	"net/http"
	"time"

	"github.com/warrenhq/warren/jobs"
)

// typesTimeout bounds GET /v1/types, which reads one Redis hash: the
// endpoint answers 503 rather than hanging while Redis is away.
const typesTimeout = 5 * time.Second

// listTypes handles GET /v1/types: the declared job types the caller may
// submit, sorted by name, each with its pool, defaults and payload schema,
// as the workers declared them. It takes no parameters (a query is
// ignored) and needs the read scope; its size is that of the type
// registry, a few hundred types at most in practice. The command line's
// completion of type names reads it.
func (s *Server) listTypes(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), typesTimeout)
	defer cancel()
	all, err := s.store.Types(ctx)
	if err != nil {
		writeError(w, toAPIError(s.log, err))
		return
	}
	c := callerOf(r.Context())
	out := make([]jobs.Type, 0, len(all))
	for _, t := range all {
		if c.allowsType(t.Name) {
			out = append(out, t.WithDefaults())
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"types": out})
}
