package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/warrenhq/warren/config"
	"github.com/warrenhq/warren/deploy"
)

const (
	baseDir    = "k8s"
	poolsDir   = "k8s/pools"
	rabbitDir  = "k8s/rabbitmq"
	promDir    = "k8s/prometheus"
	clusterDir = "overlays/cluster"
	configFile = "k8s/warren.yaml"
	secretFile = "k8s/secret.example.yaml"
	// k8sNamespace is the Kubernetes namespace the kustomizations set.
	k8sNamespace = "warren"
)

// repoConfig is deploy/k8s/warren.yaml, read strictly as warren reads it,
// without the environment.
func repoConfig(t *testing.T) config.Config {
	t.Helper()
	cfg, err := config.Load(configFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("%s: %v", configFile, err)
	}
	return cfg
}

// TestGeneratedFilesAreCurrent checks that deploy/k8s/pools is what
// `warren deploy render` writes from deploy/k8s/warren.yaml.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	files, err := deploy.Render(repoConfig(t), deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	changes, err := deploy.Diff(poolsDir, files)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		got, _ := os.ReadFile(filepath.Join(poolsDir, c.File))
		t.Errorf("deploy/%s/%s: %s (-committed +rendered):\n%s", poolsDir, c.File, c.What, cmp.Diff(string(got), string(files[c.File])))
	}
	if len(changes) > 0 {
		t.Errorf("deploy/k8s/pools is out of date with deploy/k8s/warren.yaml; run `go run ./cmd/warren deploy render` at the top of the repository and commit the result")
	}
}

// TestRenderIsDeterministic renders the same config several times.
func TestRenderIsDeterministic(t *testing.T) {
	cfg := repoConfig(t)
	cfg.Pools["zeta"] = config.Pool{Image: "example.com/zeta:1"}
	cfg.Pools["alpha"] = config.Pool{Image: "example.com/alpha:1", Concurrency: 3}
	first, err := deploy.Render(cfg, deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		again, err := deploy.Render(cfg, deploy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(first, again); d != "" {
			t.Fatalf("second render differs:\n%s", d)
		}
	}
	for name, b := range first {
		if !bytes.HasPrefix(b, []byte(deploy.Header)) {
			t.Errorf("%s does not start with the generated-code header", name)
		}
	}
	k := first["kustomization.yaml"]
	for _, want := range []string{"- alpha.yaml\n- image.yaml\n- webhook.yaml\n- zeta.yaml\n"} {
		if !bytes.Contains(k, []byte(want)) {
			t.Errorf("kustomization.yaml does not list the pools in order:\n%s", k)
		}
	}
}

// The sys pool (sys.spin burns a CPU for whoever submits it) is rendered
// only when enabled; any pool can be left out.
func TestRenderLeavesOutPoolsNotEnabled(t *testing.T) {
	yes, no := true, false
	for _, tt := range []struct {
		pools map[string]config.Pool
		want  []string
	}{
		{nil, []string{"image.yaml", "kustomization.yaml", "webhook.yaml"}},
		{map[string]config.Pool{"sys": {Enabled: &yes}}, []string{"image.yaml", "kustomization.yaml", "sys.yaml", "webhook.yaml"}},
		{map[string]config.Pool{"image": {Enabled: &no}, "text": {Image: "example.com/text:1"}}, []string{"kustomization.yaml", "text.yaml", "webhook.yaml"}},
	} {
		cfg := config.Default()
		cfg.Pools = tt.pools
		files, err := deploy.Render(cfg, deploy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Sorted(maps.Keys(files)); !slices.Equal(got, tt.want) {
			t.Errorf("pools %v: rendered %v, want %v", tt.pools, got, tt.want)
		}
	}
}

// TestManifestsDecodeStrictly builds every kustomization under deploy/ (the
// base, its optional parts and the overlays, including any added later) and
// decodes every object, and every file on its own, into its Kubernetes type
// (or, for the CRDs of KEDA and the operators, into the documented fields
// below), refusing unknown and misspelt fields; then it checks that the
// objects refer to each other correctly, and what each kustomization is for.
func TestManifestsDecodeStrictly(t *testing.T) {
	secrets := map[string][]string{deploy.SecretName: exampleSecretKeys(t)}
	cfg := repoConfig(t)
	dirs := kustomizationDirs(t)
	baseBuild := build(t, baseDir)
	baseObjs := decodeAll(t, baseBuild)

	// What each kustomization must hold beyond decoding strictly, given its
	// build and the objects decoded from it. A kustomization not listed is
	// still built and decoded.
	checks := map[string]func(t *testing.T, b []byte, objs []any){
		baseDir:   func(t *testing.T, _ []byte, objs []any) { checkBase(t, cfg, objs, secrets) },
		rabbitDir: func(t *testing.T, _ []byte, objs []any) { checkRabbitDir(t, objs) },
		promDir: func(t *testing.T, _ []byte, objs []any) {
			for _, o := range objs {
				pm, ok := o.(*podMonitor)
				if !ok {
					t.Errorf("unexpected %T", o)
					continue
				}
				checkNamespace(t, pm.Kind, pm.Metadata.Name, pm.Metadata.Namespace)
				checkPodMonitor(t, pm, baseObjs)
			}
		},
		clusterDir: func(t *testing.T, b []byte, objs []any) {
			checkCluster(t, cfg, objs, objectNames(t, b), objectNames(t, baseBuild), secrets)
		},
	}
	for dir := range checks {
		if !slices.Contains(dirs, dir) {
			t.Errorf("%s has no kustomization.yaml, so its checks did not run", dir)
		}
	}

	t.Run("files", func(t *testing.T) {
		for _, dir := range dirs {
			checkFiles(t, dir)
		}
	})

	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Log("kubectl is not on PATH, so `kubectl kustomize` was not tried (the kustomize library builds below were)")
	}
	for _, dir := range dirs {
		t.Run("kustomize/"+dir, func(t *testing.T) {
			b := build(t, dir)
			objs := decodeAll(t, b)
			if check := checks[dir]; check != nil {
				check(t, b, objs)
			}
			if kubectl == "" {
				return
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			out, err := exec.CommandContext(ctx, kubectl, "kustomize", dir).Output()
			cancel()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					err = errors.New(string(ee.Stderr))
				}
				t.Fatalf("kubectl kustomize %s: %v", dir, err)
			}
			if d := cmp.Diff(objectNames(t, b), objectNames(t, out)); d != "" {
				t.Errorf("kubectl kustomize %s builds other objects than the kustomize library (-library +kubectl):\n%s", dir, d)
			}
		})
	}
}

// kustomizationDirs lists the directories under deploy/ that hold a
// kustomization.yaml, in order.
func kustomizationDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "kustomization.yaml" {
			dirs = append(dirs, filepath.Dir(path))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no kustomization.yaml under deploy/")
	}
	return dirs
}

// checkFiles decodes each YAML file of dir strictly on its own: the
// kustomization, every manifest and strategic-merge patch (a partial object),
// and every JSON patch.
func checkFiles(t *testing.T, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case path == configFile:
			// Read strictly by repoConfig.
		case filepath.Base(path) == "kustomization.yaml":
			var k types.Kustomization
			if err := yaml.UnmarshalStrict(b, &k); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		default:
			for i, doc := range splitDocs(t, b) {
				if err := decodeFileDoc(doc); err != nil {
					t.Errorf("%s, document %d: %v", path, i+1, err)
				}
			}
		}
	}
}

// decodeFileDoc decodes one document of a file: a JSON patch (a YAML list)
// or an object.
func decodeFileDoc(doc []byte) error {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(bytes.TrimSpace(j), []byte("[")) {
		_, err := decodeStrict(doc)
		return err
	}
	var ops []struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		From  string `json:"from,omitempty"`
		Value any    `json:"value,omitempty"`
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ops); err != nil {
		return err
	}
	for _, op := range ops {
		if !slices.Contains([]string{"add", "remove", "replace", "move", "copy", "test"}, op.Op) || !strings.HasPrefix(op.Path, "/") {
			return errors.New("JSON patch operation " + strconv.Quote(op.Op) + " on " + strconv.Quote(op.Path) + " is not one RFC 6902 defines")
		}
	}
	return nil
}

// checkRabbitDir checks deploy/k8s/rabbitmq: one three-node cluster.
func checkRabbitDir(t *testing.T, objs []any) {
	var clusters int
	for _, o := range objs {
		rc, ok := o.(*rabbitmqCluster)
		if !ok {
			t.Errorf("unexpected %T", o)
			continue
		}
		clusters++
		if rc.Metadata.Namespace != k8sNamespace || rc.Spec.Replicas == nil || *rc.Spec.Replicas != 3 {
			t.Errorf("RabbitmqCluster %s: want 3 replicas in namespace %s, got %+v", rc.Metadata.Name, k8sNamespace, rc.Spec.Replicas)
		}
	}
	if clusters != 1 {
		t.Errorf("builds %d RabbitmqClusters, want 1", clusters)
	}
}

// TestRenderScaleToZeroWithAge renders a pool that scales from zero and on
// the age of its oldest job, and checks where each setting lands.
func TestRenderScaleToZeroWithAge(t *testing.T) {
	cfg := config.Default()
	cfg.Namespace = "shop"
	cfg.Worker.ShutdownGrace = config.Duration(45 * time.Second)
	enabled := true
	cfg.Pools = map[string]config.Pool{
		"sys": {Enabled: &enabled, Autoscale: &config.Autoscale{
			Min:               0,
			Max:               6,
			TargetBacklog:     20,
			ActivationBacklog: 5,
			TargetAge:         config.Duration(90 * time.Second),
			Interval:          config.Duration(10 * time.Second),
			ScaleUpWindow:     config.Duration(30 * time.Second),
			ScaleDownWindow:   config.Duration(2 * time.Minute),
			MaxStep:           2,
		}},
	}
	files, err := deploy.Render(cfg, deploy.Options{Image: "registry.example.com/warren:v1", PrometheusURL: "http://prom.example:9090"})
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeFile(t, files["sys.yaml"])
	if len(objs) != 2 {
		t.Fatalf("sys.yaml holds %d objects, want a Deployment and a ScaledObject", len(objs))
	}
	dep, ok1 := objs[0].(*appsv1.Deployment)
	so, ok2 := objs[1].(*scaledObject)
	if !ok1 || !ok2 {
		t.Fatalf("sys.yaml holds %T and %T", objs[0], objs[1])
	}

	if dep.Spec.Replicas != nil {
		t.Errorf("the Deployment sets replicas %d; KEDA owns the size", *dep.Spec.Replicas)
	}
	pod := dep.Spec.Template.Spec
	if got := *pod.TerminationGracePeriodSeconds; got != 65 {
		t.Errorf("terminationGracePeriodSeconds = %d, want 65 (shutdown_grace 45s + 20s)", got)
	}
	c := pod.Containers[0]
	if c.Image != "registry.example.com/warren:v1" || !slices.Equal(c.Args, []string{"worker", "sys"}) {
		t.Errorf("container runs %s %q", c.Image, c.Args)
	}

	one := func(n int32) *int32 { return &n }
	policy := []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 2, PeriodSeconds: 10}}
	maxPolicy := autoscalingv2.MaxChangePolicySelect
	want := scaledObjectSpec{
		ScaleTargetRef:  scaleTargetRef{Name: "warren-worker-sys"},
		PollingInterval: one(10),
		CooldownPeriod:  one(120),
		MinReplicaCount: one(0),
		MaxReplicaCount: one(6),
		Advanced: &advanced{HorizontalPodAutoscalerConfig: &hpaConfig{Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{
			ScaleUp:   &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: one(30), SelectPolicy: &maxPolicy, Policies: policy},
			ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: one(120), SelectPolicy: &maxPolicy, Policies: policy},
		}}},
		Triggers: []trigger{
			{
				Type: "rabbitmq",
				Name: "backlog",
				Metadata: map[string]string{
					"protocol":              "http",
					"mode":                  "QueueLength",
					"queueName":             "shop.pool.sys",
					"value":                 "20",
					"activationValue":       "5",
					"excludeUnacknowledged": "false",
				},
				AuthenticationRef: &authRef{Name: deploy.TriggerAuthName},
			},
			{
				Type: "rabbitmq",
				Name: "backlog-high", // the pool's high lane (docs/priorities.md)
				Metadata: map[string]string{
					"protocol":              "http",
					"mode":                  "QueueLength",
					"queueName":             "shop.pool.sys.high",
					"value":                 "20",
					"activationValue":       "5",
					"excludeUnacknowledged": "false",
				},
				AuthenticationRef: &authRef{Name: deploy.TriggerAuthName},
			},
			{
				Type:       "prometheus",
				Name:       "age",
				MetricType: "Value",
				Metadata: map[string]string{
					"serverAddress":       "http://prom.example:9090",
					"query":               `max(warren_oldest_job_age_seconds{warren_namespace="shop",pool="sys"})`,
					"threshold":           "90",
					"activationThreshold": "90",
				},
			},
		},
	}
	if d := cmp.Diff(want, so.Spec); d != "" {
		t.Errorf("ScaledObject spec (-want +got):\n%s", d)
	}
}

// TestRenderDefaultPolicy renders a built-in pool with no autoscale block.
func TestRenderDefaultPolicy(t *testing.T) {
	cfg := config.Default()
	files, err := deploy.Render(cfg, deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(files)); !slices.Equal(got, []string{"image.yaml", "kustomization.yaml", "webhook.yaml"}) {
		t.Errorf("files %q", got)
	}
	objs := decodeFile(t, files["webhook.yaml"])
	so := objs[1].(*scaledObject)
	d := config.DefaultAutoscale
	if *so.Spec.MinReplicaCount != int32(d.Min) || *so.Spec.MaxReplicaCount != int32(d.Max) || so.Spec.Triggers[0].Metadata["value"] != strconv.Itoa(d.TargetBacklog) {
		t.Errorf("default policy not applied: %+v", so.Spec)
	}
	if len(so.Spec.Triggers) != 2 {
		t.Errorf("a pool without target_age has %d triggers, want the rabbitmq ones of its two lanes", len(so.Spec.Triggers))
	}
	b := so.Spec.Advanced.HorizontalPodAutoscalerConfig.Behavior
	if *b.ScaleUp.StabilizationWindowSeconds != 0 || *b.ScaleDown.StabilizationWindowSeconds != 60 || *so.Spec.CooldownPeriod != 60 {
		t.Errorf("default windows: up %d down %d cooldown %d, want 0, 60, 60", *b.ScaleUp.StabilizationWindowSeconds, *b.ScaleDown.StabilizationWindowSeconds, *so.Spec.CooldownPeriod)
	}
	// No max_step: one decision may move the pool across its whole range.
	if p := b.ScaleUp.Policies; len(p) != 1 || p[0].Value != int32(d.Max) || p[0].PeriodSeconds != 5 {
		t.Errorf("scale-up policies %+v, want %d pods per 5s", p, d.Max)
	}
	dep := objs[0].(*appsv1.Deployment)
	var secrets []string
	for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			secrets = append(secrets, e.Name)
		}
	}
	if !slices.Contains(secrets, "WARREN_WEBHOOK_SECRETS") {
		t.Errorf("the webhook pool does not get its signing secrets from the Secret: %q", secrets)
	}
}

func TestRenderVHost(t *testing.T) {
	for vhost, want := range map[string]string{"": "", "/": "", "jobs": "jobs"} {
		files, err := deploy.Render(config.Default(), deploy.Options{VHost: vhost})
		if err != nil {
			t.Fatal(err)
		}
		so := decodeFile(t, files["webhook.yaml"])[1].(*scaledObject)
		if got := so.Spec.Triggers[0].Metadata["vhostName"]; got != want {
			t.Errorf("vhost %q: vhostName %q, want %q", vhost, got, want)
		}
	}
}

// TestRenderOwnImage renders a pool served by a worker of its own image.
func TestRenderOwnImage(t *testing.T) {
	cfg := config.Default()
	cfg.Pools = map[string]config.Pool{"text": {
		Image:       "registry.example.com/wordcount:3",
		Command:     []string{"python3", "/app/wordcount.py"},
		Concurrency: 8,
	}}
	files, err := deploy.Render(cfg, deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dep := decodeFile(t, files["text.yaml"])[0].(*appsv1.Deployment)
	c := dep.Spec.Template.Spec.Containers[0]
	if c.Image != "registry.example.com/wordcount:3" || !slices.Equal(c.Command, []string{"python3", "/app/wordcount.py"}) || c.Args != nil {
		t.Errorf("container %s command %q args %q", c.Image, c.Command, c.Args)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for k, v := range map[string]string{"WARREN_NAMESPACE": "warren", "WARREN_SHUTDOWN_GRACE": "30s", "WARREN_POOL_TEXT_CONCURRENCY": "8"} {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
	if c.ReadinessProbe != nil || c.LivenessProbe != nil {
		t.Error("a worker of another image gets probes it may not answer")
	}
}

func TestRenderRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		pool config.Pool
		want string
	}{
		{"custom pool without image", config.Pool{}, "set pools.custom.image"},
		{"command without image", config.Pool{Command: []string{"python3", "w.py"}}, "needs an image"},
		{"no replicas", config.Pool{Image: "x", Autoscale: &config.Autoscale{Min: 0, Max: 0}}, "max_replicas is 0"},
		{"window over an hour", config.Pool{Image: "x", Autoscale: &config.Autoscale{Max: 2, ScaleDownWindow: config.Duration(2 * time.Hour)}}, "stabilization windows up to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Pools = map[string]config.Pool{"custom": tc.pool}
			_, err := deploy.Render(cfg, deploy.Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	cfg := config.Default()
	cfg.Pools = map[string]config.Pool{"a_b": {Image: "x"}, "a-b": {Image: "x"}}
	if _, err := deploy.Render(cfg, deploy.Options{}); err == nil || !strings.Contains(err.Error(), "both become") {
		t.Errorf("pools a_b and a-b: error %v, want a name collision", err)
	}
}

func TestWriteAndDiff(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pools")
	files, err := deploy.Render(config.Default(), deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := deploy.Write(dir, files); err != nil {
		t.Fatal(err)
	}
	if changes, err := deploy.Diff(dir, files); err != nil || len(changes) != 0 {
		t.Fatalf("after Write: %v, %v", changes, err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "webhook.yaml"), []byte(deploy.Header+"edited\n"), 0o644))
	must(os.Remove(filepath.Join(dir, "image.yaml")))
	must(os.WriteFile(filepath.Join(dir, "gone.yaml"), []byte(deploy.Header+"a pool since removed\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "mine.yaml"), []byte("# written by hand\n"), 0o644))
	changes, err := deploy.Diff(dir, files)
	must(err)
	want := []deploy.Change{{File: "gone.yaml", What: "stale"}, {File: "image.yaml", What: "missing"}, {File: "webhook.yaml", What: "differs"}}
	if d := cmp.Diff(want, changes); d != "" {
		t.Errorf("Diff (-want +got):\n%s", d)
	}
	if _, err := deploy.Write(dir, files); err != nil {
		t.Fatal(err)
	}
	if changes, err := deploy.Diff(dir, files); err != nil || len(changes) != 0 {
		t.Errorf("after the second Write: %v, %v", changes, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "mine.yaml")); err != nil {
		t.Errorf("Write touched a file it did not generate: %v", err)
	}
}

// checkBase checks how the objects of the base kustomization (or the warren
// part of an overlay) refer to each other and to the Secrets they read:
// secrets maps each Secret they may read to its keys.
func checkBase(t *testing.T, cfg config.Config, objs []any, secrets map[string][]string) {
	t.Helper()
	deployments := map[string]*appsv1.Deployment{}
	triggerAuths := map[string]bool{}
	configMaps := map[string]bool{}
	var scaled []*scaledObject
	var services []*corev1.Service
	for _, o := range objs {
		switch o := o.(type) {
		case *appsv1.Deployment:
			deployments[o.Name] = o
			checkNamespace(t, o.Kind, o.Name, o.Namespace)
		case *scaledObject:
			scaled = append(scaled, o)
			checkNamespace(t, o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		case *triggerAuthentication:
			triggerAuths[o.Metadata.Name] = true
			checkNamespace(t, o.Kind, o.Metadata.Name, o.Metadata.Namespace)
			for _, r := range o.Spec.SecretTargetRef {
				if !slices.Contains(secrets[r.Name], r.Key) {
					t.Errorf("TriggerAuthentication %s reads %s/%s, which is not a known Secret key", o.Metadata.Name, r.Name, r.Key)
				}
			}
		case *corev1.ConfigMap:
			configMaps[o.Name] = true
			checkNamespace(t, o.Kind, o.Name, o.Namespace)
			if _, ok := o.Data["warren.yaml"]; !ok {
				t.Errorf("ConfigMap %s has no warren.yaml", o.Name)
			}
		case *corev1.Service:
			services = append(services, o)
			checkNamespace(t, o.Kind, o.Name, o.Namespace)
		case *policyv1.PodDisruptionBudget:
			checkNamespace(t, o.Kind, o.Name, o.Namespace)
		default:
			t.Errorf("unexpected object %T in the base", o)
		}
	}

	pools := deploy.Pools(cfg)
	if len(scaled) != len(pools) {
		t.Errorf("%d ScaledObjects for %d pools", len(scaled), len(pools))
	}
	for _, so := range scaled {
		dep, ok := deployments[so.Spec.ScaleTargetRef.Name]
		if !ok {
			t.Errorf("ScaledObject %s scales Deployment %q, which is not in the build", so.Metadata.Name, so.Spec.ScaleTargetRef.Name)
			continue
		}
		if dep.Spec.Replicas != nil {
			t.Errorf("Deployment %s sets replicas, which KEDA owns", dep.Name)
		}
		if g := dep.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= cfg.Worker.ShutdownGrace.Std() {
			t.Errorf("Deployment %s: terminationGracePeriodSeconds %v is not above shutdown_grace %s", dep.Name, g, cfg.Worker.ShutdownGrace.Std())
		}
		for _, tr := range so.Spec.Triggers {
			if tr.AuthenticationRef != nil && !triggerAuths[tr.AuthenticationRef.Name] {
				t.Errorf("ScaledObject %s: authenticationRef %q is not in the build", so.Metadata.Name, tr.AuthenticationRef.Name)
			}
			if pool := dep.Labels["warren/pool"]; tr.Type == "rabbitmq" && tr.Metadata["queueName"] != cfg.Namespace.Queue(pool) && tr.Metadata["queueName"] != cfg.Namespace.HighQueue(pool) {
				t.Errorf("ScaledObject %s watches queue %q", so.Metadata.Name, tr.Metadata["queueName"])
			}
		}
	}
	for _, dep := range deployments {
		sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
			t.Errorf("Deployment %s: selector does not match its pods (%v)", dep.Name, err)
		}
		pod := dep.Spec.Template.Spec
		for _, v := range pod.Volumes {
			if v.ConfigMap != nil && !configMaps[v.ConfigMap.Name] {
				t.Errorf("Deployment %s mounts ConfigMap %q, which is not in the build", dep.Name, v.ConfigMap.Name)
			}
		}
		for _, c := range pod.Containers {
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "WARREN_") && !isSetting(e.Name) {
					t.Errorf("Deployment %s: %s is not a variable warren reads (config.Settings)", dep.Name, e.Name)
				}
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					continue
				}
				if r := e.ValueFrom.SecretKeyRef; !slices.Contains(secrets[r.Name], r.Key) {
					t.Errorf("Deployment %s: %s reads %s/%s, which is not a known Secret key", dep.Name, e.Name, r.Name, r.Key)
				}
			}
			warren := len(c.Args) > 0 && (c.Args[0] == "api" || c.Args[0] == "worker")
			if warren && (c.ReadinessProbe == nil || c.LivenessProbe == nil) {
				t.Errorf("Deployment %s: container %s lacks a readiness or liveness probe", dep.Name, c.Name)
			}
		}
	}
	for _, s := range services {
		var found bool
		for _, dep := range deployments {
			sel := metav1.LabelSelector{MatchLabels: s.Spec.Selector}
			if ls, err := metav1.LabelSelectorAsSelector(&sel); err == nil && ls.Matches(labels.Set(dep.Spec.Template.Labels)) {
				found = true
			}
		}
		if !found {
			t.Errorf("Service %s selects no Deployment's pods", s.Name)
		}
	}
	if _, ok := deployments["warren-api"]; !ok {
		t.Error("no warren-api Deployment in the build")
	}
}

// isSetting says whether warren reads the variable name: a setting's, its
// _FILE form for secrets, WARREN_CONFIG, or a pool's concurrency or prefetch.
func isSetting(name string) bool {
	if name == "WARREN_CONFIG" {
		return true
	}
	if pool, ok := strings.CutPrefix(name, "WARREN_POOL_"); ok {
		return strings.HasSuffix(pool, "_CONCURRENCY") || strings.HasSuffix(pool, "_PREFETCH")
	}
	for _, s := range config.Settings() {
		if name == s.Env || s.Secret && name == s.Env+"_FILE" {
			return true
		}
	}
	return false
}

func checkNamespace(t *testing.T, kind, name, ns string) {
	t.Helper()
	if ns != k8sNamespace {
		t.Errorf("%s %s is in namespace %q, want %q", kind, name, ns, k8sNamespace)
	}
}

// exampleSecretKeys are the keys of the Secret in secret.example.yaml.
func exampleSecretKeys(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(secretFile)
	if err != nil {
		t.Fatal(err)
	}
	var s corev1.Secret
	if err := yaml.UnmarshalStrict(b, &s); err != nil {
		t.Fatalf("%s: %v", secretFile, err)
	}
	if s.Name != deploy.SecretName {
		t.Errorf("%s names Secret %q, want %q", secretFile, s.Name, deploy.SecretName)
	}
	return slices.Sorted(maps.Keys(s.StringData))
}

// build runs kustomize on dir, as `kubectl kustomize dir` does.
func build(t *testing.T, dir string) []byte {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	b, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func splitDocs(t *testing.T, b []byte) [][]byte {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

func decodeAll(t *testing.T, b []byte) []any {
	t.Helper()
	var objs []any
	for i, doc := range splitDocs(t, b) {
		o, err := decodeStrict(doc)
		if err != nil {
			t.Errorf("object %d: %v\n%s", i+1, err, doc)
			continue
		}
		objs = append(objs, o)
	}
	return objs
}

func decodeFile(t *testing.T, b []byte) []any {
	t.Helper()
	objs := decodeAll(t, b)
	if t.Failed() {
		t.FailNow()
	}
	return objs
}

// objectNames lists "Kind namespace/name" of the objects in a build.
func objectNames(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	for _, doc := range splitDocs(t, b) {
		var m struct {
			Kind     string            `json:"kind"`
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Kind+" "+m.Metadata.Namespace+"/"+m.Metadata.Name)
	}
	slices.Sort(out)
	return out
}

// strictCodec decodes the built-in Kubernetes kinds, refusing unknown and
// duplicate fields.
var strictCodec = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// decodeStrict decodes one YAML document into its type.
func decodeStrict(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	var into interface{ check() error }
	switch tm.APIVersion + " " + tm.Kind {
	case "keda.sh/v1alpha1 ScaledObject":
		into = &scaledObject{}
	case "keda.sh/v1alpha1 TriggerAuthentication":
		into = &triggerAuthentication{}
	case "rabbitmq.com/v1beta1 RabbitmqCluster":
		into = &rabbitmqCluster{}
	case "monitoring.coreos.com/v1 PodMonitor":
		into = &podMonitor{}
	case "redis.redis.opstreelabs.in/v1beta2 RedisReplication":
		into = &redisReplication{}
	case "redis.redis.opstreelabs.in/v1beta2 RedisSentinel":
		into = &redisSentinel{}
	default:
		obj, _, err := strictCodec.Decode(doc, nil, nil)
		if err != nil {
			if runtime.IsNotRegisteredError(err) {
				return nil, errors.New("no Go type to check " + tm.APIVersion + " " + tm.Kind + " against: " + err.Error())
			}
			return nil, err
		}
		return obj, nil
	}
	// YAML to JSON without looking at the Go type (which would turn an
	// unquoted number into the string a field wants, as the API server's
	// schema check would not), then decode refusing unknown fields.
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return nil, err
	}
	return into, into.check()
}

// resourceHeader is what every object has: its type and its metadata.
type resourceHeader struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
}

// The types below mirror the fields that KEDA's documentation lists for
// ScaledObject and TriggerAuthentication (keda.sh/v1alpha1), the RabbitMQ
// Cluster Operator's for RabbitmqCluster (rabbitmq.com/v1beta1) and the
// Prometheus Operator's for PodMonitor (monitoring.coreos.com/v1): only
// those, so that a misspelt or unknown field fails to decode.

type scaledObject struct {
	resourceHeader
	Spec scaledObjectSpec `json:"spec"`
}

type scaledObjectSpec struct {
	ScaleTargetRef        scaleTargetRef `json:"scaleTargetRef"`
	PollingInterval       *int32         `json:"pollingInterval,omitempty"`
	CooldownPeriod        *int32         `json:"cooldownPeriod,omitempty"`
	InitialCooldownPeriod *int32         `json:"initialCooldownPeriod,omitempty"`
	IdleReplicaCount      *int32         `json:"idleReplicaCount,omitempty"`
	MinReplicaCount       *int32         `json:"minReplicaCount,omitempty"`
	MaxReplicaCount       *int32         `json:"maxReplicaCount,omitempty"`
	Fallback              *struct {
		FailureThreshold int32  `json:"failureThreshold"`
		Replicas         int32  `json:"replicas"`
		Behavior         string `json:"behavior,omitempty"`
	} `json:"fallback,omitempty"`
	Advanced *advanced `json:"advanced,omitempty"`
	Triggers []trigger `json:"triggers"`
}

type scaleTargetRef struct {
	APIVersion             string `json:"apiVersion,omitempty"`
	Kind                   string `json:"kind,omitempty"`
	Name                   string `json:"name"`
	EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
}

type advanced struct {
	RestoreToOriginalReplicaCount bool       `json:"restoreToOriginalReplicaCount,omitempty"`
	HorizontalPodAutoscalerConfig *hpaConfig `json:"horizontalPodAutoscalerConfig,omitempty"`
	ScalingModifiers              *struct {
		Target           string `json:"target"`
		ActivationTarget string `json:"activationTarget,omitempty"`
		MetricType       string `json:"metricType,omitempty"`
		Formula          string `json:"formula"`
	} `json:"scalingModifiers,omitempty"`
}

type hpaConfig struct {
	Name     string                                         `json:"name,omitempty"`
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
}

type trigger struct {
	Type              string            `json:"type"`
	Name              string            `json:"name,omitempty"`
	UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
	MetricType        string            `json:"metricType,omitempty"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *authRef          `json:"authenticationRef,omitempty"`
}

type authRef struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"`
}

// scalerKeys are the metadata keys KEDA documents for each scaler Render
// uses (rabbitmq-queue and prometheus pages; the deprecated queueLength is
// left out), and which of them are required.
var scalerKeys = map[string]struct{ known, required []string }{
	"rabbitmq": {
		known: []string{"host", "protocol", "mode", "value", "activationValue", "queueName", "vhostName",
			"hostFromEnv", "usernameFromEnv", "passwordFromEnv", "unsafeSsl", "timeout", "useRegex",
			"pageSize", "operation", "excludeUnacknowledged"},
		required: []string{"queueName", "mode", "value"},
	},
	"prometheus": {
		known: []string{"serverAddress", "query", "threshold", "activationThreshold", "namespace",
			"customHeaders", "ignoreNullValues", "queryParameters", "unsafeSsl", "timeout", "authModes"},
		required: []string{"serverAddress", "query", "threshold"},
	},
}

func (s *scaledObject) check() error {
	var errs []error
	if s.Spec.ScaleTargetRef.Name == "" {
		errs = append(errs, errors.New("scaleTargetRef.name is empty"))
	}
	if s.Spec.MinReplicaCount != nil && s.Spec.MaxReplicaCount != nil && *s.Spec.MinReplicaCount > *s.Spec.MaxReplicaCount {
		errs = append(errs, errors.New("minReplicaCount above maxReplicaCount"))
	}
	if len(s.Spec.Triggers) == 0 {
		errs = append(errs, errors.New("no triggers"))
	}
	for _, tr := range s.Spec.Triggers {
		keys, ok := scalerKeys[tr.Type]
		if !ok {
			errs = append(errs, errors.New("trigger type "+tr.Type+": no documented keys to check against"))
			continue
		}
		for k, v := range tr.Metadata {
			if !slices.Contains(keys.known, k) {
				errs = append(errs, errors.New(tr.Type+" trigger: metadata key "+k+" is not one KEDA documents"))
			}
			switch k {
			case "value", "activationValue", "threshold", "activationThreshold":
				if _, err := strconv.ParseFloat(v, 64); err != nil {
					errs = append(errs, errors.New(tr.Type+" trigger: "+k+" "+strconv.Quote(v)+" is not a number"))
				}
			}
		}
		for _, k := range keys.required {
			if tr.Metadata[k] == "" {
				errs = append(errs, errors.New(tr.Type+" trigger: no "+k))
			}
		}
		if tr.Type == "rabbitmq" {
			if m := tr.Metadata["mode"]; !slices.Contains([]string{"QueueLength", "MessageRate", "DeliverGetRate", "PublishedToDeliveredRatio", "ExpectedQueueConsumptionTime"}, m) {
				errs = append(errs, errors.New("rabbitmq trigger: unknown mode "+m))
			}
			if p := tr.Metadata["protocol"]; p != "" && !slices.Contains([]string{"auto", "http", "amqp"}, p) {
				errs = append(errs, errors.New("rabbitmq trigger: unknown protocol "+p))
			}
			if tr.Metadata["host"] == "" && tr.Metadata["hostFromEnv"] == "" && tr.AuthenticationRef == nil {
				errs = append(errs, errors.New("rabbitmq trigger: no host, hostFromEnv or authenticationRef"))
			}
		}
		if mt := tr.MetricType; mt != "" && mt != "AverageValue" && mt != "Value" {
			errs = append(errs, errors.New("metricType "+mt+" is not AverageValue or Value"))
		}
	}
	return errors.Join(errs...)
}

type triggerAuthentication struct {
	resourceHeader
	Spec struct {
		PodIdentity *struct {
			Provider   string `json:"provider"`
			IdentityID string `json:"identityId,omitempty"`
		} `json:"podIdentity,omitempty"`
		SecretTargetRef    []targetRef `json:"secretTargetRef,omitempty"`
		ConfigMapTargetRef []targetRef `json:"configMapTargetRef,omitempty"`
		Env                []struct {
			Parameter     string `json:"parameter"`
			Name          string `json:"name"`
			ContainerName string `json:"containerName,omitempty"`
		} `json:"env,omitempty"`
	} `json:"spec"`
}

type targetRef struct {
	Parameter string `json:"parameter"`
	Name      string `json:"name"`
	Key       string `json:"key"`
}

func (a *triggerAuthentication) check() error {
	for _, r := range a.Spec.SecretTargetRef {
		// The rabbitmq scaler's authentication parameters.
		if !slices.Contains([]string{"host", "vhostName", "username", "password", "tls", "ca", "cert", "key"}, r.Parameter) {
			return errors.New("secretTargetRef parameter " + r.Parameter + " is not one the rabbitmq scaler documents")
		}
	}
	return nil
}

type rabbitmqCluster struct {
	resourceHeader
	Spec struct {
		Replicas         *int32                        `json:"replicas,omitempty"`
		Image            string                        `json:"image,omitempty"`
		ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
		Service          *struct {
			Type        corev1.ServiceType `json:"type,omitempty"`
			Annotations map[string]string  `json:"annotations,omitempty"`
		} `json:"service,omitempty"`
		Persistence *struct {
			StorageClassName *string            `json:"storageClassName,omitempty"`
			Storage          *resource.Quantity `json:"storage,omitempty"`
		} `json:"persistence,omitempty"`
		Resources   *corev1.ResourceRequirements `json:"resources,omitempty"`
		Affinity    *corev1.Affinity             `json:"affinity,omitempty"`
		Tolerations []corev1.Toleration          `json:"tolerations,omitempty"`
		Rabbitmq    *struct {
			AdditionalPlugins []string `json:"additionalPlugins,omitempty"`
			AdditionalConfig  string   `json:"additionalConfig,omitempty"`
			AdvancedConfig    string   `json:"advancedConfig,omitempty"`
			EnvConfig         string   `json:"envConfig,omitempty"`
		} `json:"rabbitmq,omitempty"`
		TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty"`
		SkipPostDeploySteps           bool   `json:"skipPostDeploySteps,omitempty"`
	} `json:"spec"`
}

func (c *rabbitmqCluster) check() error {
	if r := c.Spec.Replicas; r != nil && *r%2 == 0 {
		return errors.New("an even number of RabbitMQ nodes cannot keep a quorum through a split")
	}
	return nil
}

type podMonitor struct {
	resourceHeader
	Spec struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		PodTargetLabels   []string             `json:"podTargetLabels,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		PodMetricsEndpoints []struct {
			Port          string `json:"port,omitempty"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
			HonorLabels   bool   `json:"honorLabels,omitempty"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

func (m *podMonitor) check() error {
	for _, e := range m.Spec.PodMetricsEndpoints {
		for _, d := range []string{e.Interval, e.ScrapeTimeout} {
			if d == "" {
				continue
			}
			if _, err := time.ParseDuration(d); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkPodMonitor checks that the PodMonitor scrapes the API and every
// worker on their /metrics ports.
func checkPodMonitor(t *testing.T, pm *podMonitor, base []any) {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]bool{}
	for _, e := range pm.Spec.PodMetricsEndpoints {
		if e.Path == "/metrics" {
			ports[e.Port] = true
		}
	}
	for _, o := range base {
		dep, ok := o.(*appsv1.Deployment)
		if !ok {
			continue
		}
		if !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
			t.Errorf("PodMonitor %s does not select the pods of %s", pm.Metadata.Name, dep.Name)
		}
		var scraped bool
		for _, c := range dep.Spec.Template.Spec.Containers {
			for _, p := range c.Ports {
				scraped = scraped || ports[p.Name]
			}
		}
		if !scraped {
			t.Errorf("PodMonitor %s scrapes no port of %s", pm.Metadata.Name, dep.Name)
		}
	}
}
