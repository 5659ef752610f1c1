package deploy_test

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/warrenhq/warren/config"
)

// The clustered overlay, deploy/overlays/cluster: warren with a three-node
// RabbitMQ and Redis with Sentinel, each surviving the loss of a node.

// rabbitUserSecretKeys are the keys of the Secret NAME-default-user that the
// RabbitMQ Cluster Operator makes for the RabbitmqCluster NAME.
var rabbitUserSecretKeys = []string{"username", "password", "host", "port", "provider", "type", "default_user.conf", "connection_string"}

// pinnedImage is an image (its registry may have a port) named by a full
// version (x.y.z), a digest or both.
var pinnedImage = regexp.MustCompile(`^([^@/]+/)*[^@:/]+(:v?[0-9]+\.[0-9]+\.[0-9]+(@sha256:[0-9a-f]{64})?|@sha256:[0-9a-f]{64})$`)

// checkCluster checks the clustered overlay: the base is all there; RabbitMQ
// has three nodes, one per Kubernetes node; Redis has replicas and an odd
// number of Sentinels at pinned versions; the API has several pods, spread
// over nodes and under a PodDisruptionBudget of their own; and every warren
// container is pointed at each RabbitMQ node and each Sentinel, with the
// credentials the operators and Redis use.
func checkCluster(t *testing.T, cfg config.Config, objs []any, names, baseNames []string, secrets map[string][]string) {
	t.Helper()
	for _, n := range baseNames {
		if !slices.Contains(names, n) {
			t.Errorf("the overlay leaves out %s of the base", n)
		}
	}

	var (
		warren       []any
		rabbits      []*rabbitmqCluster
		replications []*redisReplication
		sentinels    []*redisSentinel
		pdbs         []*policyv1.PodDisruptionBudget
		deployments  []*appsv1.Deployment
		configMaps   = map[string]*corev1.ConfigMap{}
	)
	for _, o := range objs {
		switch o := o.(type) {
		case *rabbitmqCluster:
			rabbits = append(rabbits, o)
			checkNamespace(t, o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		case *redisReplication:
			replications = append(replications, o)
			checkNamespace(t, o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		case *redisSentinel:
			sentinels = append(sentinels, o)
			checkNamespace(t, o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		case *policyv1.PodDisruptionBudget:
			pdbs = append(pdbs, o)
		case *appsv1.Deployment:
			deployments = append(deployments, o)
		case *corev1.ConfigMap:
			configMaps[o.Name] = o
		}
		if !isInfra(o) {
			warren = append(warren, o)
		}
	}
	if len(rabbits) != 1 || len(replications) != 1 || len(sentinels) != 1 {
		t.Fatalf("%d RabbitmqClusters, %d RedisReplications and %d RedisSentinels; want one of each", len(rabbits), len(replications), len(sentinels))
	}
	rc, rr, rs := rabbits[0], replications[0], sentinels[0]
	secrets = maps.Clone(secrets)
	secrets[rc.Metadata.Name+"-default-user"] = rabbitUserSecretKeys
	checkBase(t, cfg, warren, secrets)

	// The labels the operators give the pods they make.
	rabbitPods := labels.Set{"app.kubernetes.io/name": rc.Metadata.Name, "app.kubernetes.io/component": "rabbitmq", "app.kubernetes.io/part-of": "rabbitmq"}
	redisPods := labels.Merge(rr.Metadata.Labels, labels.Set{"app": rr.Metadata.Name, "redis_setup_type": "replication", "role": "replication"})
	sentinelPods := labels.Merge(rs.Metadata.Labels, labels.Set{"app": rs.Metadata.Name + "-sentinel", "redis_setup_type": "sentinel", "role": "sentinel"})

	nodes := int(deref(rc.Spec.Replicas))
	if nodes != 3 {
		t.Errorf("RabbitmqCluster %s has %d nodes, want 3", rc.Metadata.Name, nodes)
	}
	if !spreadOverNodes(rc.Spec.Affinity, nil, rabbitPods) {
		t.Errorf("RabbitmqCluster %s: two of its nodes may run on one machine, and take the quorum queues' majority with it", rc.Metadata.Name)
	}
	// A drain may take one RabbitMQ node at a time, never the majority.
	if p := selecting(t, pdbs, rabbitPods); len(p) != 1 || disruptionsAllowed(t, p[0], nodes) != 1 {
		t.Errorf("RabbitMQ pods: want one PodDisruptionBudget letting one of %d go at a time", nodes)
	}

	checkRedis(t, rr, rs, configMaps, secrets, redisPods, sentinelPods)

	var api *appsv1.Deployment
	for _, d := range deployments {
		if d.Name == "warren-api" {
			api = d
		}
	}
	if api == nil {
		t.Fatal("no warren-api Deployment")
	}
	replicas := int(deref(api.Spec.Replicas))
	apiPods := labels.Set(api.Spec.Template.Labels)
	if replicas < 2 {
		t.Errorf("warren-api has %d replicas, want 2 or more", replicas)
	}
	if !spreadOverNodes(api.Spec.Template.Spec.Affinity, api.Spec.Template.Spec.TopologySpreadConstraints, apiPods) {
		t.Error("warren-api: its pods may all run on one node")
	}
	apiPDBs := selecting(t, pdbs, apiPods)
	if len(apiPDBs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets select the API pods, want 1", len(apiPDBs))
	}
	pdb := apiPDBs[0]
	others := []labels.Set{rabbitPods, redisPods, sentinelPods}
	for _, d := range deployments {
		if d != api {
			others = append(others, d.Spec.Template.Labels)
		}
	}
	sel := selector(t, pdb)
	for _, pod := range others {
		if sel.Matches(pod) {
			t.Errorf("PodDisruptionBudget %s selects pods other than the API's too: %v", pdb.Name, pod)
		}
	}
	if n := disruptionsAllowed(t, pdb, replicas); n < 1 || n >= replicas {
		t.Errorf("PodDisruptionBudget %s lets %d of %d API pods go at once; want at least one kept and one let go", pdb.Name, n, replicas)
	}

	// What every warren container is told.
	ns := rc.Metadata.Namespace
	rabbitUser := rc.Metadata.Name + "-default-user"
	var amqpURLs []string
	for i := range nodes {
		amqpURLs = append(amqpURLs, fmt.Sprintf("amqp://%s:%s@%s-server-%d.%s-nodes.%s.svc:5672/",
			secretValue(rabbitUser, "username"), secretValue(rabbitUser, "password"), rc.Metadata.Name, i, rc.Metadata.Name, ns))
	}
	var sentinelAddrs []string
	for i := range deref(rs.Spec.ClusterSize) {
		sentinelAddrs = append(sentinelAddrs, fmt.Sprintf("%[1]s-sentinel-%[2]d.%[1]s-sentinel-headless.%[3]s.svc:26379", rs.Metadata.Name, i, ns))
	}
	sc := deref(rs.Spec.RedisSentinelConfig)
	want := map[string]string{
		"WARREN_AMQP_URL":                strings.Join(amqpURLs, ","),
		"WARREN_AMQP_QUORUM_GROUP_SIZE":  strconv.Itoa(nodes),
		"WARREN_REDIS_SENTINEL_ADDRS":    strings.Join(sentinelAddrs, ","),
		"WARREN_REDIS_SENTINEL_MASTER":   cmp.Or(sc.MasterGroupName, "myMaster"), // the CRD's default
		"WARREN_REDIS_SENTINEL_PASSWORD": rs.Spec.KubernetesConfig.RedisSecret.value(),
	}
	for _, d := range deployments {
		if d.Labels["app.kubernetes.io/name"] != "warren" {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			env, err := expandEnv(c.Env)
			if err != nil {
				t.Errorf("Deployment %s, container %s: %v", d.Name, c.Name, err)
				continue
			}
			got := map[string]string{}
			for k := range want {
				got[k] = env[k]
			}
			if diff := gocmp.Diff(want, got); diff != "" {
				t.Errorf("Deployment %s, container %s: environment (-want +got):\n%s", d.Name, c.Name, diff)
			}
			// Redis: the password Redis is given, and WAIT for a replica
			// while leaving another to spare, so that writes go on while
			// one replica is away.
			if u, err := url.Parse(env["WARREN_REDIS_URL"]); err != nil || u.User == nil || u.User.String() != ":"+rr.Spec.KubernetesConfig.RedisSecret.value() {
				t.Errorf("Deployment %s: WARREN_REDIS_URL %q does not carry the Redis password %s (%v)", d.Name, env["WARREN_REDIS_URL"], rr.Spec.KubernetesConfig.RedisSecret.value(), err)
			}
			if n, err := strconv.Atoi(env["WARREN_REDIS_WAIT_REPLICAS"]); err != nil || n < 1 || n > int(deref(rr.Spec.ClusterSize))-2 {
				t.Errorf("Deployment %s: WARREN_REDIS_WAIT_REPLICAS %q, want 1 to %d (Redis pods less the primary and a spare)", d.Name, env["WARREN_REDIS_WAIT_REPLICAS"], deref(rr.Spec.ClusterSize)-2)
			}
		}
	}
}

// checkRedis checks the RedisReplication and the RedisSentinel watching it.
func checkRedis(t *testing.T, rr *redisReplication, rs *redisSentinel, configMaps map[string]*corev1.ConfigMap, secrets map[string][]string, redisPods, sentinelPods labels.Set) {
	t.Helper()
	for _, image := range []string{rr.Spec.KubernetesConfig.Image, rs.Spec.KubernetesConfig.Image} {
		if !pinnedImage.MatchString(image) {
			t.Errorf("image %q is not pinned to a version (x.y.z) or a digest", image)
		}
	}
	if n := deref(rr.Spec.ClusterSize); n < 3 {
		t.Errorf("RedisReplication %s has %d pods; want a primary and two replicas, so one replica can be away", rr.Metadata.Name, n)
	}
	sc := deref(rs.Spec.RedisSentinelConfig)
	if sc.RedisReplicationName != rr.Metadata.Name {
		t.Errorf("RedisSentinel %s watches %q, not the RedisReplication %s", rs.Metadata.Name, sc.RedisReplicationName, rr.Metadata.Name)
	}
	// The Sentinels log in to Redis with Redis's password.
	if p := rr.Spec.KubernetesConfig.RedisSecret; p == nil || sc.RedisReplicationPassword == nil || sc.RedisReplicationPassword.SecretKeyRef == nil ||
		p.value() != secretValue(sc.RedisReplicationPassword.SecretKeyRef.Name, sc.RedisReplicationPassword.SecretKeyRef.Key) {
		t.Errorf("Redis has no password, or the Sentinels do not use it")
	}
	for _, s := range []*redisSecret{rr.Spec.KubernetesConfig.RedisSecret, rs.Spec.KubernetesConfig.RedisSecret} {
		if s != nil && !slices.Contains(secrets[s.Name], s.Key) {
			t.Errorf("Redis reads %s/%s, which is not a known Secret key", s.Name, s.Key)
		}
	}
	if !spreadOverNodes(rr.Spec.Affinity, rr.Spec.TopologySpreadConstraints, redisPods) {
		t.Errorf("RedisReplication %s: a primary and its replica may share a node", rr.Metadata.Name)
	}
	if !spreadOverNodes(rs.Spec.Affinity, rs.Spec.TopologySpreadConstraints, sentinelPods) {
		t.Errorf("RedisSentinel %s: a node may take the Sentinels' majority with it", rs.Metadata.Name)
	}

	// Persistence and no eviction, as deploy/README.md ("Redis") asks.
	var conf []string
	if rc := rr.Spec.RedisConfig; rc != nil && rc.AdditionalRedisConfig != nil {
		if cm := configMaps[*rc.AdditionalRedisConfig]; cm != nil {
			for line := range strings.Lines(cm.Data["redis-additional.conf"]) {
				conf = append(conf, strings.Join(strings.Fields(line), " "))
			}
		}
	}
	for _, want := range []string{"appendonly yes", "maxmemory-policy noeviction"} {
		if !slices.Contains(conf, want) {
			t.Errorf("RedisReplication %s: its additional config (a ConfigMap of the build) lacks %q", rr.Metadata.Name, want)
		}
	}
}

// isInfra says whether o belongs to RabbitMQ or Redis rather than to warren.
func isInfra(o any) bool {
	switch o := o.(type) {
	case *rabbitmqCluster, *redisReplication, *redisSentinel:
		return true
	case metav1.Object:
		c := o.GetLabels()["app.kubernetes.io/component"]
		return c == "rabbitmq" || c == "redis"
	}
	return false
}

// spreadOverNodes says whether the pods with these labels are kept on
// different nodes: by a required anti-affinity, or a topology spread that
// does not schedule a pod where it would break the spread.
func spreadOverNodes(a *corev1.Affinity, spread []corev1.TopologySpreadConstraint, pod labels.Set) bool {
	const host = "kubernetes.io/hostname"
	matches := func(ls *metav1.LabelSelector) bool {
		s, err := metav1.LabelSelectorAsSelector(ls)
		return err == nil && ls != nil && s.Matches(pod)
	}
	if a != nil && a.PodAntiAffinity != nil {
		for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			if term.TopologyKey == host && matches(term.LabelSelector) {
				return true
			}
		}
	}
	for _, c := range spread {
		if c.TopologyKey == host && c.MaxSkew == 1 && c.WhenUnsatisfiable == corev1.DoNotSchedule && matches(c.LabelSelector) {
			return true
		}
	}
	return false
}

func selector(t *testing.T, pdb *policyv1.PodDisruptionBudget) labels.Selector {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		t.Fatalf("PodDisruptionBudget %s: %v", pdb.Name, err)
	}
	return s
}

// selecting returns the PodDisruptionBudgets that select a pod with these
// labels.
func selecting(t *testing.T, pdbs []*policyv1.PodDisruptionBudget, pod labels.Set) []*policyv1.PodDisruptionBudget {
	t.Helper()
	var out []*policyv1.PodDisruptionBudget
	for _, p := range pdbs {
		if selector(t, p).Matches(pod) {
			out = append(out, p)
		}
	}
	return out
}

// disruptionsAllowed is how many of replicas pods pdb lets go at once.
func disruptionsAllowed(t *testing.T, pdb *policyv1.PodDisruptionBudget, replicas int) int {
	t.Helper()
	minimum, maximum := pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable
	switch {
	case minimum != nil && maximum == nil && minimum.Type == intstr.Int:
		return replicas - minimum.IntValue()
	case maximum != nil && minimum == nil && maximum.Type == intstr.Int:
		return maximum.IntValue()
	}
	t.Errorf("PodDisruptionBudget %s: want one of minAvailable and maxUnavailable, as a number of pods", pdb.Name)
	return 0
}

// envRef is a reference $(NAME) to another variable, which Kubernetes
// expands when NAME is listed before.
var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandEnv returns a container's environment as Kubernetes gives it to the
// process, with each value from a Secret written as secretValue shows it.
// A reference to a variable not listed before is an error (Kubernetes would
// leave it as it is), and so is a variable listed twice (a patch that added
// where it meant to replace).
func expandEnv(env []corev1.EnvVar) (map[string]string, error) {
	out := map[string]string{}
	var errs []error
	for _, e := range env {
		if _, ok := out[e.Name]; ok {
			errs = append(errs, fmt.Errorf("%s is listed twice", e.Name))
		}
		v := e.Value
		if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil {
			v = secretValue(r.SecretKeyRef.Name, r.SecretKeyRef.Key)
		}
		out[e.Name] = envRef.ReplaceAllStringFunc(v, func(ref string) string {
			name := envRef.FindStringSubmatch(ref)[1]
			val, ok := out[name]
			if !ok {
				errs = append(errs, fmt.Errorf("%s refers to $(%s), which is not listed before it", e.Name, name))
			}
			return val
		})
	}
	return out, errors.Join(errs...)
}

// secretValue stands for the value of a Secret's key; it is URL-safe, so
// URLs built from it parse.
func secretValue(name, key string) string { return "secret." + name + "." + key }

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// The types below mirror the fields of the OT-CONTAINER-KIT redis-operator's
// CRDs (redis.redis.opstreelabs.in/v1beta2, v0.26.0: api/redisreplication,
// api/redissentinel and api/common in its repository) that the overlay uses
// or may soon: only those, so that a misspelt or unknown field fails to
// decode.

type redisReplication struct {
	resourceHeader
	Spec struct {
		redisSpec
		RedisConfig *struct {
			MaxMemoryPercentOfLimit *int     `json:"maxMemoryPercentOfLimit,omitempty"`
			DynamicConfig           []string `json:"dynamicConfig,omitempty"`
			AdditionalRedisConfig   *string  `json:"additionalRedisConfig,omitempty"`
		} `json:"redisConfig,omitempty"`
		Storage *struct {
			KeepAfterDelete     bool                         `json:"keepAfterDelete,omitempty"`
			VolumeClaimTemplate corev1.PersistentVolumeClaim `json:"volumeClaimTemplate,omitempty"`
		} `json:"storage,omitempty"`
	} `json:"spec"`
}

func (r *redisReplication) check() error { return r.Spec.check() }

type redisSentinel struct {
	resourceHeader
	Spec struct {
		redisSpec
		RedisSentinelConfig *sentinelConfig `json:"redisSentinelConfig,omitempty"`
	} `json:"spec"`
}

type sentinelConfig struct {
	RedisReplicationName     string               `json:"redisReplicationName"`
	RedisReplicationPassword *corev1.EnvVarSource `json:"redisReplicationPassword,omitempty"`
	MasterGroupName          string               `json:"masterGroupName,omitempty"`
	RedisPort                string               `json:"redisPort,omitempty"`
	Quorum                   string               `json:"quorum,omitempty"`
	ParallelSyncs            string               `json:"parallelSyncs,omitempty"`
	FailoverTimeout          string               `json:"failoverTimeout,omitempty"`
	DownAfterMilliseconds    string               `json:"downAfterMilliseconds,omitempty"`
	ResolveHostnames         string               `json:"resolveHostnames,omitempty"`
	AnnounceHostnames        string               `json:"announceHostnames,omitempty"`
	AdditionalSentinelConfig *string              `json:"additionalSentinelConfig,omitempty"`
}

func (s *redisSentinel) check() error {
	if n := s.Spec.ClusterSize; n != nil && *n%2 == 0 {
		return errors.New("an even number of Sentinels cannot keep a majority through a split")
	}
	if c := s.Spec.RedisSentinelConfig; c == nil || c.RedisReplicationName == "" {
		return errors.New("redisSentinelConfig.redisReplicationName is empty")
	}
	return s.Spec.check()
}

// redisSpec is what the specs of RedisReplication and RedisSentinel share:
// their size, their KubernetesConfig and their pods' settings.
type redisSpec struct {
	ClusterSize                   *int32                            `json:"clusterSize"`
	KubernetesConfig              redisKubernetesConfig             `json:"kubernetesConfig"`
	NodeSelector                  map[string]string                 `json:"nodeSelector,omitempty"`
	PodSecurityContext            *corev1.PodSecurityContext        `json:"podSecurityContext,omitempty"`
	SecurityContext               *corev1.SecurityContext           `json:"securityContext,omitempty"`
	PriorityClassName             string                            `json:"priorityClassName,omitempty"`
	Affinity                      *corev1.Affinity                  `json:"affinity,omitempty"`
	Tolerations                   []corev1.Toleration               `json:"tolerations,omitempty"`
	TopologySpreadConstraints     []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`
	TerminationGracePeriodSeconds *int64                            `json:"terminationGracePeriodSeconds,omitempty"`
	ServiceAccountName            *string                           `json:"serviceAccountName,omitempty"`
	EnvVars                       []corev1.EnvVar                   `json:"env,omitempty"`
	PDB                           *struct {
		Enabled        bool   `json:"enabled,omitempty"`
		MinAvailable   *int32 `json:"minAvailable,omitempty"`
		MaxUnavailable *int32 `json:"maxUnavailable,omitempty"`
	} `json:"pdb,omitempty"`
}

func (r redisSpec) check() error {
	switch k := r.KubernetesConfig; {
	case r.ClusterSize == nil || *r.ClusterSize < 1:
		return errors.New("clusterSize must be 1 or more")
	case k.Image == "":
		return errors.New("kubernetesConfig.image is empty")
	case k.RedisSecret != nil && (k.RedisSecret.Name == "" || k.RedisSecret.Key == ""):
		return errors.New("kubernetesConfig.redisSecret needs a name and a key")
	}
	return nil
}

// redisKubernetesConfig is the operator's KubernetesConfig.
type redisKubernetesConfig struct {
	Image                                string                                                  `json:"image"`
	ImagePullPolicy                      corev1.PullPolicy                                       `json:"imagePullPolicy,omitempty"`
	Resources                            *corev1.ResourceRequirements                            `json:"resources,omitempty"`
	RedisSecret                          *redisSecret                                            `json:"redisSecret,omitempty"`
	ImagePullSecrets                     []corev1.LocalObjectReference                           `json:"imagePullSecrets,omitempty"`
	UpdateStrategy                       *appsv1.StatefulSetUpdateStrategy                       `json:"updateStrategy,omitempty"`
	PersistentVolumeClaimRetentionPolicy *appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy `json:"persistentVolumeClaimRetentionPolicy,omitempty"`
	IgnoreAnnotations                    []string                                                `json:"ignoreAnnotations,omitempty"`
	MinReadySeconds                      *int32                                                  `json:"minReadySeconds,omitempty"`
}

// redisSecret is the operator's ExistingPasswordSecret: a Secret's key
// holding the password.
type redisSecret struct {
	Name string `json:"name,omitempty"`
	Key  string `json:"key,omitempty"`
}

// value is what expandEnv gives a variable read from the same key.
func (s *redisSecret) value() string {
	if s == nil {
		return ""
	}
	return secretValue(s.Name, s.Key)
}
