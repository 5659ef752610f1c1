package cli

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"

	"github.com/warrenhq/warren/autoscale"
	"github.com/warrenhq/warren/metrics"
	"github.com/warrenhq/warren/telemetry"
)

// setupTracing starts the process's tracing as the standard OTEL_*
// variables say (off unless they ask for it), its service named
// warren-NAME unless OTEL_SERVICE_NAME says otherwise.
func (a *app) setupTracing(ctx context.Context, name string, log *slog.Logger) (*telemetry.Tracing, error) {
	tr, err := telemetry.Setup(ctx, telemetry.Config{
		Service: "warren-" + name,
		Getenv:  func(k string) string { return getenv(a.environ, k) },
		Console: a.out,
	})
	if err != nil {
		return nil, err
	}
	if tr.Provider() != nil {
		// The SDK reports failed exports through one process-wide hook;
		// main's layer owns it, as it owns go-redis's logger.
		tlog := log.With("component", "tracing")
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			tlog.Warn("cannot export traces", "err", err)
		}))
		tlog.Info("tracing on", "exporter", tr.Exporter())
	}
	return tr, nil
}

// listen listens on a side endpoint's address: "unix:PATH" for a Unix
// socket (as a supervisor gives its worker processes), else TCP.
func listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}

// textDurations writes durations as text ("1.5s") in JSON log lines,
// where slog would write nanoseconds; a terminal's handler (tint) does so
// already.
func textDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// workerCollectors are the figures a worker process serves besides its
// pools' gauges (and Go's and the process's): its rescuer's and its jobs'.
func (s *stack) workerCollectors(runs *metrics.Runs) []prometheus.Collector {
	return []prometheus.Collector{s.rescuer.Collector(), runs}
}

// supervisorCollectors are the figures a supervisor adds to its process's:
// its replica counts and what its worker processes serve on the sockets it
// gave them.
func (s *stack) supervisorCollectors(sup *autoscale.Supervisor) []prometheus.Collector {
	return []prometheus.Collector{
		metrics.NewReplicas(s.cfg.Namespace, func() []metrics.PoolReplicas {
			var out []metrics.PoolReplicas
			for _, st := range sup.Status() {
				out = append(out, metrics.PoolReplicas{Pool: st.Pool, Current: st.Running, Desired: st.Desired})
			}
			return out
		}),
		metrics.NewChildren(metrics.ChildrenConfig{
			List: func() []metrics.Child {
				var out []metrics.Child
				for _, p := range sup.Processes() {
					if p.HealthAddr != "" {
						out = append(out, metrics.Child{PID: p.PID, Addr: p.HealthAddr})
					}
				}
				return out
			},
			Logger: s.log,
		}),
	}
}

// supervisorMetrics serves a supervisor's GET /metrics: the gauges of its
// pools, measured once here rather than by each of its processes, its
// rescuer's counter and the supervisorCollectors.
func (s *stack) supervisorMetrics(sup *autoscale.Supervisor, pools []string) (http.Handler, error) {
	coll, err := metrics.New(metrics.Config{
		Broker:     s.broker,
		Store:      s.store,
		Management: s.mgmt,
		Pools:      func(context.Context) ([]string, error) { return pools, nil },
		Namespace:  s.cfg.Namespace,
		Logger:     s.log,
	})
	if err != nil {
		return nil, err
	}
	return coll.Handler(append([]prometheus.Collector{s.rescuer.Collector()}, s.supervisorCollectors(sup)...)...), nil
}

// socketDirPrefix starts the name of a supervisor's socket directory, which
// goes on with the supervisor's pid.
const socketDirPrefix = "warren-sup-"

// socketDir makes the private directory in which a supervisor's worker
// processes get their sockets, and remembers it for close to remove; ""
// when none can be had (a TMPDIR too long for socket paths, say), and the
// processes then serve no metrics. It first removes the directories of
// supervisors that were killed before they could.
func (s *stack) socketDir() string {
	sweepSocketDirs(os.TempDir())
	dir, err := os.MkdirTemp("", socketDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		s.log.Warn("no metrics from the worker processes: cannot make a directory for their sockets", "err", err)
		return ""
	}
	if len(filepath.Join(dir, "1000000.sock")) > autoscale.MaxSocketPath {
		_ = os.Remove(dir)
		s.log.Warn("no metrics from the worker processes: the temporary directory's path is too long for Unix sockets; set TMPDIR to a shorter one", "dir", dir)
		return ""
	}
	s.socketDirs = append(s.socketDirs, dir)
	return dir
}

// sweepSocketDirs removes the socket directories in tmp whose supervisor
// is gone.
func sweepSocketDirs(tmp string) {
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), socketDirPrefix)
		pid, _, _ := strings.Cut(rest, "-")
		n, err := strconv.Atoi(pid)
		if !ok || !e.IsDir() || err != nil || n <= 0 || n == os.Getpid() || processAlive(n) {
			continue
		}
		_ = os.RemoveAll(filepath.Join(tmp, e.Name()))
	}
}

// removeSocketDirs removes the directories socketDir made.
func (s *stack) removeSocketDirs() {
	for _, dir := range s.socketDirs {
		if err := os.RemoveAll(dir); err != nil {
			s.log.Warn("cannot remove the worker processes' socket directory", "dir", dir, "err", err)
		}
	}
}

// closeTracing exports the spans still buffered.
func (s *stack) closeTracing() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.tracing.Shutdown(ctx); err != nil {
		s.log.Warn("stopping tracing", "err", err)
	}
}
