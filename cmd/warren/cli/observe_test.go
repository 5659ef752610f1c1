package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/config"
	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/metrics"
)

// JSON log lines write durations as text, as a terminal's lines do.
func TestLogDurationsAsText(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	a := &app{errOut: &buf}
	cfg := config.Default()
	log := a.logger(cfg)
	log.With("grace", 30*time.Second).Info("stopping", "took", 1500*time.Millisecond,
		slog.Group("g", slog.Duration("wait", 250*time.Millisecond)))
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%s: %v", buf.Bytes(), err)
	}
	if line["took"] != "1.5s" || line["grace"] != "30s" || line["g"].(map[string]any)["wait"] != "250ms" {
		t.Errorf("durations not written as text: %s", buf.Bytes())
	}
}

// docMetric is a row of docs/metrics.md's table.
type docMetric struct {
	Type      string
	Labels    []string
	Processes []string
}

// docMetrics reads the table of docs/metrics.md.
func docMetrics(t *testing.T) map[string]docMetric {
	t.Helper()
	b, err := os.ReadFile("../../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	code := regexp.MustCompile("`([^`]+)`")
	out := map[string]docMetric{}
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, "| `warren_") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 5 {
			t.Fatalf("docs/metrics.md: a row of %d cells, want 5 (metric, type, labels, served by, meaning): %s", len(cells), line)
		}
		name := strings.Trim(strings.TrimSpace(cells[0]), "`")
		var labels []string
		for _, m := range code.FindAllStringSubmatch(cells[2], -1) {
			labels = append(labels, m[1])
		}
		var procs []string
		for p := range strings.SplitSeq(cells[3], ",") {
			procs = append(procs, strings.TrimSpace(p))
		}
		sort.Strings(labels)
		sort.Strings(procs)
		if _, dup := out[name]; dup {
			t.Errorf("docs/metrics.md lists %s twice", name)
		}
		out[name] = docMetric{Type: strings.TrimSpace(cells[1]), Labels: labels, Processes: procs}
	}
	if len(out) == 0 {
		t.Fatal("docs/metrics.md lists no metric")
	}
	return out
}

var variableLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}\}$`)

// describe returns the metric names and variable labels cs describe.
func describe(t *testing.T, cs ...prometheus.Collector) map[string][]string {
	t.Helper()
	ch := make(chan *prometheus.Desc, 100)
	go func() {
		for _, c := range cs {
			c.Describe(ch)
		}
		close(ch)
	}()
	out := map[string][]string{}
	name := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		s := d.String()
		n := name.FindStringSubmatch(s)
		v := variableLabels.FindStringSubmatch(s)
		if n == nil || v == nil {
			t.Fatalf("cannot read %s", s)
		}
		var labels []string
		if v[1] != "" {
			labels = strings.Split(v[1], ",")
		}
		sort.Strings(labels)
		out[n[1]] = labels
		if !strings.Contains(s, metrics.LabelNamespace+"=") {
			t.Errorf("%s lacks the %s label", n[1], metrics.LabelNamespace)
		}
	}
	return out
}

// docs/metrics.md lists exactly the metrics the API, a worker and a
// supervisor register (besides Go's and the process's), with their labels
// and the processes that serve them.
func TestDocsListTheMetrics(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	cfg := config.Default()
	cfg.AMQPURL, cfg.RedisURL, cfg.Namespace = testenv.AMQPURL(), testenv.RedisURL(), env.NS
	a := &app{out: io.Discard, errOut: io.Discard}
	ctx := context.Background()
	s, err := a.openStack(ctx, cfg, "docs")
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	srv, err := s.newAPI()
	if err != nil {
		t.Fatal(err)
	}
	sup, err := s.newSupervisor(a, []string{"sys"})
	if err != nil {
		t.Fatal(err)
	}
	pools, err := metrics.New(metrics.Config{Broker: s.broker, Pools: func(context.Context) ([]string, error) { return nil, nil }, Namespace: cfg.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	runs := metrics.NewRuns(cfg.Namespace)
	processes := map[string][]prometheus.Collector{
		"api":        srv.Collectors(),
		"worker":     append([]prometheus.Collector{pools}, s.workerCollectors(runs)...),
		"supervisor": append([]prometheus.Collector{pools, s.rescuer.Collector()}, s.supervisorCollectors(sup)...),
	}
	registered := map[string]docMetric{}
	for proc, cs := range processes {
		for name, labels := range describe(t, cs...) {
			m := registered[name]
			m.Labels = labels
			m.Processes = append(m.Processes, proc)
			sort.Strings(m.Processes)
			registered[name] = m
		}
	}
	docs := docMetrics(t)
	for name, m := range docs {
		if !slices.Contains([]string{"counter", "gauge", "histogram"}, m.Type) {
			t.Errorf("docs/metrics.md: %s is a %q", name, m.Type)
		}
		if strings.HasSuffix(name, "_total") != (m.Type == "counter") {
			t.Errorf("docs/metrics.md: %s is a %s", name, m.Type)
		}
		m.Type = ""
		docs[name] = m
	}
	if diff := cmp.Diff(registered, docs); diff != "" {
		t.Errorf("docs/metrics.md and the registered metrics differ (-registered +docs):\n%s", diff)
	}
}

// A killed supervisor's socket directory is removed by the next one; a
// live one's is kept.
func TestSweepSocketDirs(t *testing.T) {
	t.Parallel()
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Skip("no true command:", err)
	}
	tmp := t.TempDir()
	dead := socketDirPrefix + strconv.Itoa(done.Process.Pid) + "-123"
	live := socketDirPrefix + strconv.Itoa(os.Getppid()) + "-456"
	other := "warren-sup-notapid"
	for _, d := range []string{dead, live, other} {
		if err := os.MkdirAll(filepath.Join(tmp, d, "x"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	sweepSocketDirs(tmp)
	for d, want := range map[string]bool{dead: false, live: true, other: true} {
		if _, err := os.Stat(filepath.Join(tmp, d)); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", d, err == nil, want)
		}
	}
}
