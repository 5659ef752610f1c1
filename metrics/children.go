package metrics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Child is a process whose figures Children gathers, such as one of a
// supervisor's worker processes.
type Child struct {
	// PID is the process id, added to each of its series as LabelPID.
	PID int
	// Addr is where it serves GET /metrics: "unix:PATH" for a Unix socket,
	// else "HOST:PORT".
	Addr string
}

// ChildrenConfig configures Children. Zero fields take the defaults noted.
type ChildrenConfig struct {
	// List returns the processes to gather from at each scrape; required.
	List func() []Child
	// Timeout bounds the gathering from one process; zero means 2s.
	Timeout time.Duration
	// Logger receives the failures to gather (at debug level: a process
	// that has just started, or one that serves no metrics, is not an
	// error); nil means slog.Default().
	Logger *slog.Logger
}

// Children is a prometheus.Collector of the figures other processes serve,
// so that one address serves a supervisor's own figures and those of its
// worker processes. Each series gets the process's id as LabelPID, so the
// series of two processes never collide and a process's counters vanish
// with it, as a scraped target's would. The pool gauges are left out: they
// are measured in the broker, the same for every process, and the
// supervisor measures them once itself.
//
// It is an unchecked collector (it describes nothing ahead), since what
// the processes serve is known only once gathered.
type Children struct {
	cfg ChildrenConfig
	log *slog.Logger
}

var _ prometheus.Collector = (*Children)(nil)

// NewChildren returns a Children gathering from the processes cfg.List
// names.
func NewChildren(cfg ChildrenConfig) *Children {
	cfg.Timeout = cmp.Or(cfg.Timeout, 2*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Children{cfg: cfg, log: cfg.Logger.With("component", "metrics")}
}

// poolGauges are the figures every process measures alike.
var poolGauges = []string{MetricBacklog, MetricReady, MetricUnacked, MetricConsumers, MetricOldestAge, MetricDead}

// Describe sends nothing: Children is an unchecked collector.
func (c *Children) Describe(chan<- *prometheus.Desc) {}

// Collect gathers from every process at once and sends their series.
func (c *Children) Collect(ch chan<- prometheus.Metric) {
	children := c.cfg.List()
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for _, child := range children {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fams, err := c.gather(child)
			if err != nil {
				c.log.Debug("cannot gather the metrics of a worker process", "pid", child.PID, "addr", child.Addr, "err", err)
				return
			}
			pid := strconv.Itoa(child.PID)
			for _, f := range fams {
				if slices.Contains(poolGauges, f.GetName()) {
					continue
				}
				desc := prometheus.NewDesc(f.GetName(), f.GetHelp(), nil, nil)
				for _, m := range f.Metric {
					ch <- gathered{desc: desc, m: withPID(m, pid)}
				}
			}
		})
	}
	wg.Wait()
}

// maxChildMetrics bounds what is read of one process's /metrics (a worker
// serves a few tens of kilobytes).
const maxChildMetrics = 16 << 20

// gather fetches one process's metric families.
func (c *Children) gather(child Child) ([]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	network, address := "tcp", child.Addr
	if path, ok := strings.CutPrefix(child.Addr, "unix:"); ok {
		network, address = "unix", path
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, address)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://worker/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	dec := expfmt.NewDecoder(io.LimitReader(resp.Body, maxChildMetrics), expfmt.ResponseFormat(resp.Header))
	var fams []*dto.MetricFamily
	for {
		f := &dto.MetricFamily{}
		if err := dec.Decode(f); err != nil {
			if errors.Is(err, io.EOF) {
				return fams, nil
			}
			return fams, fmt.Errorf("decode /metrics: %w", err)
		}
		fams = append(fams, f)
	}
}

// withPID returns m with the LabelPID label set to pid, its labels sorted.
func withPID(m *dto.Metric, pid string) *dto.Metric {
	labels := slices.DeleteFunc(slices.Clone(m.Label), func(l *dto.LabelPair) bool { return l.GetName() == LabelPID })
	name := LabelPID
	labels = append(labels, &dto.LabelPair{Name: &name, Value: &pid})
	slices.SortFunc(labels, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
	m.Label = labels
	return m
}

// gathered is one series as a process served it.
type gathered struct {
	desc *prometheus.Desc
	m    *dto.Metric
}

func (g gathered) Desc() *prometheus.Desc { return g.desc }

func (g gathered) Write(out *dto.Metric) error {
	out.Label = g.m.Label
	out.Counter, out.Gauge, out.Untyped = g.m.Counter, g.m.Gauge, g.m.Untyped
	out.Histogram, out.Summary = g.m.Histogram, g.m.Summary
	out.TimestampMs = g.m.TimestampMs
	return nil
}
