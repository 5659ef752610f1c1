package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"
)

// documented reads the metrics docs/metrics.md lists, with their types.
func documented(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, "| `warren_") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 2 {
			continue
		}
		out[strings.Trim(strings.TrimSpace(cells[0]), "`")] = strings.TrimSpace(cells[1])
	}
	if len(out) == 0 {
		t.Fatal("docs/metrics.md lists no metric")
	}
	return out
}

var metricName = regexp.MustCompile(`\b(?:warren|go|process)_[a-zA-Z0-9_]+\b`)

// checkMetrics fails the test for every metric expr uses that no process
// serves: a warren_ metric docs/metrics.md does not list (a histogram's
// _bucket, _sum and _count count as the histogram), or a go_ or process_
// metric at all (their names change with the client library).
func checkMetrics(t *testing.T, where, expr string, docs map[string]string) {
	t.Helper()
	used := metricName.FindAllString(expr, -1)
	if len(used) == 0 {
		t.Errorf("%s: %q uses no warren metric", where, expr)
	}
	for _, name := range used {
		if name == "warren_namespace" { // the label every metric carries
			continue
		}
		if _, ok := docs[name]; ok {
			continue
		}
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if docs[base] == "histogram" {
			continue
		}
		t.Errorf("%s: %q uses %s, which no process serves (docs/metrics.md)", where, expr, name)
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// The alert rules parse, alert on what docs/metrics.md says they do, and
// use only metrics the processes serve; with promtool installed, they pass
// its check and the unit tests in alerts_test.yaml.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(b, &rf); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	docs := documented(t)
	var alerts []string
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("alerts.yaml: group %q has no name or no rules", g.Name)
		}
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if r.Alert == "" || strings.TrimSpace(r.Expr) == "" {
				t.Errorf("alerts.yaml: a rule without alert or expr: %+v", r)
			}
			if _, err := model.ParseDuration(r.For); err != nil {
				t.Errorf("alerts.yaml: %s: for %q: %v", r.Alert, r.For, err)
			}
			if sev := r.Labels["severity"]; sev != "warning" && sev != "critical" {
				t.Errorf("alerts.yaml: %s: severity %q", r.Alert, sev)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alerts.yaml: %s lacks a summary or a description", r.Alert)
			}
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") {
				t.Errorf("alerts.yaml: %s: unbalanced parentheses in %q", r.Alert, r.Expr)
			}
			checkMetrics(t, "alerts.yaml: "+r.Alert, r.Expr, docs)
		}
	}
	slices.Sort(alerts)
	want := []string{"WarrenBacklogTooOld", "WarrenDeadLettersGrowing", "WarrenFailureRatioHigh", "WarrenNoConsumers"}
	if !slices.Equal(alerts, want) {
		t.Errorf("alerts.yaml has %v, want %v (as docs/metrics.md lists)", alerts, want)
	}
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range want {
		if !strings.Contains(string(doc), "`"+a+"`") {
			t.Errorf("docs/metrics.md does not describe %s", a)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool is not installed (Debian: apt-get install prometheus): the rules were checked for structure only")
		return
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	} `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// The Grafana dashboard is well-formed and queries only metrics the
// processes serve.
func TestDashboard(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("grafana/warren.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("warren.json: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("warren.json: title %q uid %q", d.Title, d.UID)
	}
	docs := documented(t)
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Errorf("variable %s: %v", v.Name, err)
		}
		checkMetrics(t, "variable "+v.Name, q.Query, docs)
	}
	for _, name := range []string{"datasource", "namespace", "pool", "type"} {
		if !vars[name] {
			t.Errorf("warren.json has no variable %s", name)
		}
	}
	ids := map[int]bool{}
	queries := 0
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d twice", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: grid position %+v", p.Title, p.GridPos)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q does not use the datasource variable", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, q := range p.Targets {
				queries++
				checkMetrics(t, "panel "+p.Title, q.Expr, docs)
				if !strings.Contains(q.Expr, `warren_namespace="$namespace"`) {
					t.Errorf("panel %q: %q ignores the namespace variable", p.Title, q.Expr)
				}
			}
		}
	}
	walk(d.Panels)
	if queries == 0 {
		t.Error("the dashboard queries nothing")
	}
	// Every metric a process counts as it goes is on the dashboard.
	for name := range docs {
		if !strings.Contains(string(b), name) {
			t.Errorf("the dashboard does not show %s", name)
		}
	}
}
