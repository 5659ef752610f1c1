package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warrenhq/warren/config"
	"github.com/warrenhq/warren/deploy"
)

// runDeploy runs `warren ARGS` in process with environ.
func runDeploy(t *testing.T, environ []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(t.Context(), args, strings.NewReader(""), &out, &errOut, environ)
	return code, out.String(), errOut.String()
}

const deployTestConfig = `namespace: shop
worker:
  shutdown_grace: 10s
pools:
  sys:
    enabled: true
    autoscale:
      min_replicas: 0
      max_replicas: 3
      target_age: 20s
`

func TestDeployRender(t *testing.T) {
	tmp := t.TempDir()
	cfgPath := filepath.Join(tmp, "warren.yaml")
	if err := os.WriteFile(cfgPath, []byte(deployTestConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "pools")

	code, out, errOut := runDeploy(t, nil, "deploy", "render", "--config", cfgPath, "--dir", dir)
	if code != 0 {
		t.Fatalf("render: exit %d, stderr %s", code, errOut)
	}
	for _, f := range []string{"image.yaml", "kustomization.yaml", "sys.yaml", "webhook.yaml"} {
		if !strings.Contains(out, "wrote "+filepath.Join(dir, f)+"\n") {
			t.Errorf("render output does not mention %s:\n%s", f, out)
		}
	}
	cfg, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := deploy.Render(cfg, deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s: not what deploy.Render returns (%v)", name, err)
		}
	}
	if !bytes.Contains(want["sys.yaml"], []byte(`warren_namespace="shop",pool="sys"`)) {
		t.Errorf("sys.yaml has no age trigger for namespace shop:\n%s", want["sys.yaml"])
	}

	// The config comes from WARREN_CONFIG as well; other WARREN_* variables
	// do not change the output, which the pods' ConfigMap alone decides.
	environ := []string{"WARREN_CONFIG=" + cfgPath, "WARREN_NAMESPACE=other", "WARREN_SHUTDOWN_GRACE=5m"}
	code, out, errOut = runDeploy(t, environ, "deploy", "render", "--dir", dir, "--check")
	if code != 0 || !strings.Contains(out, "is up to date") {
		t.Fatalf("check after render: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	if err := os.WriteFile(filepath.Join(dir, "sys.yaml"), []byte(deploy.Header+"edited by hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runDeploy(t, nil, "deploy", "render", "--config", cfgPath, "--dir", dir, "--check")
	if code != 1 || out != filepath.Join(dir, "sys.yaml")+": differs\n" || !strings.Contains(errOut, "run 'warren deploy render'") {
		t.Errorf("check of an edited file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "sys.yaml")); !bytes.Contains(b, []byte("edited by hand")) {
		t.Error("--check wrote a file")
	}

	code, out, _ = runDeploy(t, nil, "deploy", "render", "--config", cfgPath, "--dir", dir)
	if code != 0 || out != "wrote "+filepath.Join(dir, "sys.yaml")+"\n" {
		t.Errorf("second render: exit %d, stdout %q", code, out)
	}
}

func TestDeployRenderErrors(t *testing.T) {
	tmp := t.TempDir()
	bad := filepath.Join(tmp, "bad.yaml")
	if err := os.WriteFile(bad, []byte("pools:\n  text:\n    command: [python3, w.py]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"pool without image", []string{"--config", bad}, "set pools.text.image"},
		{"missing config", []string{"--config", filepath.Join(tmp, "none.yaml")}, "no such file"},
		{"empty dir", []string{"--config", bad, "--dir", " "}, "--dir must name a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"deploy", "render", "--dir", filepath.Join(tmp, "out")}, tc.args...)
			code, _, errOut := runDeploy(t, nil, args...)
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(tmp, "out")); err == nil {
		t.Error("a failed render created its directory")
	}
}

// TestDeployRenderRepository checks the repository's generated files through
// the command with its default options, as CI would.
func TestDeployRenderRepository(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	code, out, errOut := runDeploy(t, nil, "deploy", "render", "--check",
		"--config", filepath.Join(root, "deploy", "k8s", "warren.yaml"),
		"--dir", filepath.Join(root, "deploy", "k8s", "pools"))
	if code != 0 {
		t.Errorf("deploy/k8s/pools is out of date (run `go run ./cmd/warren deploy render` at the top of the repository): exit %d\n%s%s", code, out, errOut)
	}
}
