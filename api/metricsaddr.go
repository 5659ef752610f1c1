package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// metricsServer serves GET /metrics alone on an address of its own
// (Config.MetricsAddr), without keys, for a scraper on a private network.
type metricsServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
}

func (s *Server) startMetrics() (*metricsServer, error) {
	if s.cfg.MetricsAddr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("api: listen for metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler(s.moreCollectors()...))
	m := &metricsServer{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		},
		ln:   newLimitListener(ln, 64),
		done: make(chan error, 1),
	}
	go func() {
		err := m.srv.Serve(m.ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		m.done <- err
	}()
	s.log.Info("metrics listening", "addr", ln.Addr().String())
	return m, nil
}

// Addr is where the metrics are served.
func (m *metricsServer) Addr() string { return m.ln.Addr().String() }

func (m *metricsServer) stop(ctx context.Context) error {
	if m == nil {
		return nil
	}
	err := m.srv.Shutdown(ctx)
	if serr := <-m.done; err == nil {
		err = serr
	}
	return err
}
