package kubernetes

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/deploy/image"
	"github.com/wasmproxy/wasmproxy/istio"
)

// manifests is what the kustomization lists, decoded strictly into the
// Kubernetes API types: a field the API does not have, a quantity that
// does not parse or a wrong type fails here as the API server would
// refuse it.
type manifests struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	pdbs        []*policyv1.PodDisruptionBudget
}

func load(t *testing.T) manifests {
	t.Helper()
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Labels     []any    `json:"labels"`
		Resources  []string `json:"resources"`
		Images     []struct {
			Name    string `json:"name"`
			NewName string `json:"newName"`
			NewTag  string `json:"newTag"`
		} `json:"images"`
	}
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.Kind != "Kustomization" || k.APIVersion != "kustomize.config.k8s.io/v1beta1" {
		t.Fatalf("kustomization.yaml: kind %q apiVersion %q", k.Kind, k.APIVersion)
	}
	// Every manifest in the directory is in the kustomization, and the
	// other way round.
	files, _ := filepath.Glob("*.yaml")
	files = slices.DeleteFunc(files, func(f string) bool { return f == "kustomization.yaml" })
	listed := slices.Clone(k.Resources)
	sort.Strings(files)
	sort.Strings(listed)
	if !slices.Equal(files, listed) {
		t.Fatalf("kustomization.yaml resources %v, directory has %v", listed, files)
	}

	m := manifests{configMaps: map[string]*corev1.ConfigMap{}}
	for _, file := range k.Resources {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			where := fmt.Sprintf("%s document %d", file, i)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var obj interface {
				GetName() string
			}
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 Deployment":
				d := &appsv1.Deployment{}
				m.deployments, obj = append(m.deployments, d), d
			case "v1 Service":
				s := &corev1.Service{}
				m.services, obj = append(m.services, s), s
			case "v1 ConfigMap":
				c := &corev1.ConfigMap{}
				obj = c
				defer func() { m.configMaps[c.Name] = c }()
			case "policy/v1 PodDisruptionBudget":
				p := &policyv1.PodDisruptionBudget{}
				m.pdbs, obj = append(m.pdbs, p), p
			default:
				t.Fatalf("%s: %s %s is not a kind this test checks", where, tm.APIVersion, tm.Kind)
			}
			if err := decodeStrict(doc, obj); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if errs := validation.IsDNS1123Subdomain(obj.GetName()); len(errs) > 0 {
				t.Errorf("%s: name %q: %s", where, obj.GetName(), strings.Join(errs, "; "))
			}
		}
	}
	return m
}

func TestManifests(t *testing.T) {
	m := load(t)
	if len(m.deployments) != 1 || len(m.services) != 1 || len(m.pdbs) != 1 {
		t.Fatalf("want one Deployment, Service and PodDisruptionBudget; have %d, %d, %d", len(m.deployments), len(m.services), len(m.pdbs))
	}
	d, svc, pdb := m.deployments[0], m.services[0], m.pdbs[0]
	pod := d.Spec.Template
	podLabels := labels.Set(pod.Labels)

	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Errorf("Deployment selector %v does not match its pods' labels %v (%v)", d.Spec.Selector, pod.Labels, err)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("Service selector %v does not match the pods' labels %v", svc.Spec.Selector, pod.Labels)
	}
	pdbSel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !pdbSel.Matches(podLabels) {
		t.Errorf("PodDisruptionBudget selector does not match the pods (%v)", err)
	}
	if d.Spec.Replicas == nil || pdb.Spec.MinAvailable == nil || int32(pdb.Spec.MinAvailable.IntValue()) >= *d.Spec.Replicas {
		t.Errorf("PodDisruptionBudget minAvailable %v must be below replicas %v, or no node can ever drain", pdb.Spec.MinAvailable, d.Spec.Replicas)
	}

	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("want one container, have %d", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, sp := range svc.Spec.Ports {
		if _, ok := ports[targetName(sp.TargetPort)]; !ok {
			t.Errorf("Service port %s targets %q, not a container port (%v)", sp.Name, sp.TargetPort.String(), ports)
		}
	}

	// The pod runs as the image's non-root user, read-only.
	psc := pod.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != image.UID {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and runAsUser %d (the image's user)", psc, image.UID)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext %+v: want readOnlyRootFilesystem and no privilege escalation", sc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("container resources %+v: want cpu and memory requests", c.Resources)
	}

	// Probes: readiness and start-up on the admin port's /ready.
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/ready" || targetName(p.HTTPGet.Port) != "admin" {
			t.Errorf("%s probe %+v: want GET /ready on the admin port", name, p)
		}
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || targetName(p.HTTPGet.Port) != "admin" {
		t.Errorf("liveness probe %+v: want an admin GET", p)
	}

	// The files the args name are in mounted ConfigMaps, and they load.
	mounts := map[string]string{} // mount path → ConfigMap name
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	for _, vm := range c.VolumeMounts {
		v, ok := volumes[vm.Name]
		if !ok {
			t.Errorf("volumeMount %s: no volume of that name", vm.Name)
			continue
		}
		if v.ConfigMap != nil {
			if _, ok := m.configMaps[v.ConfigMap.Name]; !ok {
				t.Errorf("volume %s: ConfigMap %s is not in the manifests", v.Name, v.ConfigMap.Name)
			}
			mounts[vm.MountPath] = v.ConfigMap.Name
		}
	}
	file := func(path string) (string, bool) {
		cm, ok := m.configMaps[mounts[filepath.Dir(path)]]
		if !ok {
			return "", false
		}
		data, ok := cm.Data[filepath.Base(path)]
		return data, ok
	}
	configPath := argAfter(c.Args, "-c")
	bootstrapText, ok := file(configPath)
	if !ok {
		t.Fatalf("-c %s is not a key of a mounted ConfigMap (mounts %v)", configPath, mounts)
	}
	b, err := config.Parse([]byte(bootstrapText), configPath)
	if err != nil {
		t.Fatalf("the bootstrap does not load: %v", err)
	}
	if b.Admin == nil || fmt.Sprint(ports["admin"]) != portOf(b.Admin.Address) {
		t.Errorf("admin address %v; the container's admin port is %d", b.Admin, ports["admin"])
	}
	var listenerPorts []string
	for _, l := range b.Listeners {
		listenerPorts = append(listenerPorts, portOf(l.Address))
	}
	if !slices.Contains(listenerPorts, fmt.Sprint(ports["http"])) {
		t.Errorf("no listener on the container's http port %d (listeners on %v)", ports["http"], listenerPorts)
	}

	pluginsDir := argAfter(c.Args, "--istio-resources")
	cm, ok := m.configMaps[mounts[pluginsDir]]
	if !ok {
		t.Fatalf("--istio-resources %s is not a mounted ConfigMap", pluginsDir)
	}
	dir := t.TempDir()
	for name, data := range cm.Data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := istio.LoadResources(dir)
	if err != nil {
		t.Fatalf("the WasmPlugins do not load: %v", err)
	}
	if len(res.Plugins) != len(cm.Data) {
		t.Errorf("%d WasmPlugins in %d files", len(res.Plugins), len(cm.Data))
	}
	// SIGTERM starts the drain; the kubelet's SIGKILL must come later.
	drain, err := strconv.Atoi(argAfter(c.Args, "--drain-time-s"))
	if grace := pod.Spec.TerminationGracePeriodSeconds; err != nil || grace == nil || *grace <= int64(drain) {
		t.Errorf("want --drain-time-s N (%v) and terminationGracePeriodSeconds above it (%v)", err, grace)
	}
}

// decodeStrict decodes a manifest as the API server does: field names
// case-sensitive (encoding/json would take "readonly" for "readOnly"),
// unknown and duplicate fields refused.
func decodeStrict(doc []byte, obj any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := k8sjson.UnmarshalStrict(js, obj)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func targetName(p intstr.IntOrString) string {
	if p.Type == intstr.String {
		return p.StrVal
	}
	return ""
}

func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// portOf is the port of a "host:port" address.
func portOf(addr string) string {
	return addr[strings.LastIndexByte(addr, ':')+1:]
}
