package layers_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/warrenhq/warren/"

// rank is each package's floor in docs/architecture.md: a package may
// import only packages of a lower rank. A new package needs a place here.
var rank = map[string]int{
	// The ground, and small libraries that import nothing of ours.
	"jobs": 0, "internal/backoff": 0, "internal/combine": 0, "internal/redact": 0, "internal/lifecycle": 0, "internal/apicheck": 0, "internal/layers": 0,

	"apikey": 1, "schema": 1, "egress": 1, "telemetry": 1, "ui": 1, "autoscale": 1,

	"queue": 2, "store": 2, "client": 2, "config": 2,

	"metrics": 3,

	"producer": 4, "rescue": 4, "workers": 4, "workers/sys": 4, "workers/image": 4, "workers/webhook": 4,
	"internal/testenv": 4,

	"schedule": 5, "workflow": 5, "jobstest": 5, "workers/builtin": 5, "internal/servicesprobe": 5,

	// The API serves the schedules' Book, so it stands above schedule.
	"api": 6, "deploy": 6, "conformance": 7,

	"cmd/warren/cli": 7, "examples/upper": 7,

	"cmd/warren": 8, "ha": 8,
}

// amqpAllowed may import amqp091-go besides queue: what checks the broker
// from outside (the services probe, the tests' servers, the conformance
// suite, which sees what a worker in another language sees) and the
// benchmark's raw baseline.
var amqpAllowed = map[string]bool{
	"queue": true, "internal/testenv": true, "internal/servicesprobe": true, "conformance": true,
}

func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func TestImportsPointDown(t *testing.T) {
	out, err := exec.Command(goCommand(), "list", "-f", "{{.ImportPath}}:{{join .Imports \" \"}}", "github.com/warrenhq/warren/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, imports, _ := strings.Cut(line, ":")
		pkg := strings.TrimPrefix(path, module)
		if strings.HasPrefix(pkg, "bench") {
			continue // measurements may reach anywhere, the raw baseline included
		}
		r, ok := rank[pkg]
		if !ok {
			t.Errorf("package %s has no place in the layers: add it to rank (and docs/architecture.md)", pkg)
			continue
		}
		for _, imp := range strings.Fields(imports) {
			if strings.Contains(imp, "amqp091-go") && !amqpAllowed[pkg] {
				t.Errorf("%s imports %s: only queue speaks AMQP", pkg, imp)
			}
			dep, ours := strings.CutPrefix(imp, module)
			if !ours {
				continue
			}
			if rank[dep] >= r {
				t.Errorf("%s (layer %d) imports %s (layer %d): imports must point down", pkg, r, dep, rank[dep])
			}
			// The services are handlers: the runtime stores what they
			// return, so they need neither the broker nor Redis.
			if strings.HasPrefix(pkg, "workers/") && pkg != "workers/builtin" && (dep == "queue" || dep == "store") {
				t.Errorf("service %s imports %s: a service depends on jobs, not on the runtime's servers", pkg, dep)
			}
		}
	}
}
