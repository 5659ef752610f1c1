package workers

import (
	"encoding/json"
	"net/http"
)

// HealthHandler serves GET /healthz (the process is up) and GET /readyz
// (every pool is consuming on a live connection; 503 otherwise), for
// supervisors and probes, and GET /metrics when Config.Metrics is set.
func (w *Worker) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	reply := func(rw http.ResponseWriter, status int, state string) {
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(status)
		_ = json.NewEncoder(rw).Encode(map[string]any{"status": state, "worker": w.cfg.ID, "pools": w.Pools()})
	}
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		reply(rw, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		if w.Ready() {
			reply(rw, http.StatusOK, "ready")
			return
		}
		reply(rw, http.StatusServiceUnavailable, "starting")
	})
	if w.cfg.Metrics != nil {
		mux.Handle("GET /metrics", w.cfg.Metrics)
	}
	return mux
}
