// Package istio reads Istio's extensions.istio.io/v1alpha1 WasmPlugin
// resources and turns them into filters of a config.Bootstrap, the way
// istiod and its agent turn them into Envoy filters
// (istio/istio: pilot's WasmPlugin conversion and the agent's pkg/wasm): the plugin's name is
// "<namespace>.<name>", pluginName is the root id, pluginConfig is the
// configuration as JSON text, failStrategy maps to the failure policy,
// vmConfig.env to environment variables, and the url becomes remote code
// (oci://, http(s)://) or a local file (file://).
//
// wasmproxy stands where an Istio gateway does: one workload, so
// selector and targetRefs select it and are not consulted; traffic
// selectors match by listener port and by mode against the listener's
// traffic_direction (INBOUND is sidecar inbound, which SERVER selects;
// OUTBOUND and unset, a gateway, are what CLIENT selects).
//
// EnvoyFilter resources (envoyfilter.go) patch the bootstrap proto
// before it is built.
package istio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	extensions "istio.io/api/extensions/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	typev1beta1 "istio.io/api/type/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/config/redact"
)

// APIVersion and Kind of the resources this package reads.
const (
	APIVersion = "extensions.istio.io/v1alpha1"
	Kind       = "WasmPlugin"
)

// Plugin is one WasmPlugin resource.
type Plugin struct {
	Name      string
	Namespace string
	// File is where the resource was read, for messages and relative
	// paths (imagePullSecret, file:// urls).
	File string
	Spec *extensions.WasmPlugin
}

// FullName is "<namespace>.<name>", the plugin name istiod gives Envoy.
func (p *Plugin) FullName() string { return p.Namespace + "." + p.Name }

// errorf is an error about the plugin. It may quote the resource's
// values, but never a password in its url or a private key.
func (p *Plugin) errorf(format string, args ...any) error {
	return errors.New(redact.Text(fmt.Sprintf("%s: WasmPlugin %s/%s: %s", p.File, p.Namespace, p.Name, fmt.Sprintf(format, args...))))
}

// Load reads every WasmPlugin in path: a YAML or JSON file (several
// documents separated by "---"), or a directory of *.yaml, *.yml and
// *.json files read in name order. Documents of other kinds (a Secret
// next to the plugin, say) are skipped; a file given by name must hold
// at least one WasmPlugin.
func Load(path string) ([]*Plugin, error) {
	r, err := load(path, false)
	if err != nil {
		return nil, err
	}
	return r.Plugins, nil
}

// Resources are the Istio resources wasmproxy reads.
type Resources struct {
	Plugins      []*Plugin
	EnvoyFilters []*EnvoyFilter
}

// LoadResources reads every WasmPlugin and EnvoyFilter in path (a file or
// a directory, as Load); a file given by name must hold at least one of
// them. EnvoyFilters' patches are checked and decoded here, so a bad one
// is refused with its file, name, patch index and field.
func LoadResources(path string) (*Resources, error) {
	return load(path, true)
}

func load(path string, filters bool) (*Resources, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if fi.IsDir() {
		files = nil
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			switch filepath.Ext(e.Name()) {
			case ".yaml", ".yml", ".json":
				if !e.IsDir() {
					files = append(files, filepath.Join(path, e.Name()))
				}
			}
		}
	}
	out := &Resources{}
	seen := map[string]string{}
	seenEF := map[string]string{}
	for _, file := range files {
		plugins, efs, err := loadFile(file, filters)
		if err != nil {
			return nil, err
		}
		if len(plugins)+len(efs) == 0 && !fi.IsDir() {
			if filters {
				return nil, fmt.Errorf("%s: no %s %s nor networking.istio.io/v1alpha3 %s resource", file, APIVersion, Kind, EnvoyFilterKind)
			}
			return nil, fmt.Errorf("%s: no %s %s resource", file, APIVersion, Kind)
		}
		for _, p := range plugins {
			if first, dup := seen[p.FullName()]; dup {
				return nil, p.errorf("defined twice (also in %s)", first)
			}
			seen[p.FullName()] = file
			out.Plugins = append(out.Plugins, p)
		}
		for _, f := range efs {
			if first, dup := seenEF[f.FullName()]; dup {
				return nil, f.errorf("defined twice (also in %s)", first)
			}
			seenEF[f.FullName()] = file
			f.order = len(out.EnvoyFilters)
			out.EnvoyFilters = append(out.EnvoyFilters, f)
		}
	}
	return out, nil
}

var documentSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

func loadFile(file string, filters bool) ([]*Plugin, []*EnvoyFilter, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	var out []*Plugin
	var efs []*EnvoyFilter
	for i, doc := range documentSeparator.Split(string(raw), -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: document %d: %v", file, i+1, err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue
		}
		var res struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name              string    `json:"name"`
				Namespace         string    `json:"namespace"`
				CreationTimestamp time.Time `json:"creationTimestamp"`
			} `json:"metadata"`
			Spec json.RawMessage `json:"spec"`
		}
		if err := json.Unmarshal(js, &res); err != nil {
			return nil, nil, fmt.Errorf("%s: document %d: %v", file, i+1, err)
		}
		if res.Kind == EnvoyFilterKind && filters {
			f, err := envoyFilterDoc(file, i+1, res.APIVersion, res.Metadata.Name, res.Metadata.Namespace, res.Metadata.CreationTimestamp, res.Spec)
			if err != nil {
				return nil, nil, err
			}
			efs = append(efs, f)
			continue
		}
		if res.Kind != Kind {
			continue
		}
		if res.APIVersion != APIVersion && res.APIVersion != "extensions.istio.io/v1beta1" {
			return nil, nil, fmt.Errorf("%s: document %d: apiVersion %q, want %s", file, i+1, res.APIVersion, APIVersion)
		}
		p := &Plugin{Name: res.Metadata.Name, Namespace: res.Metadata.Namespace, File: file, Spec: &extensions.WasmPlugin{}}
		if p.Namespace == "" {
			p.Namespace = "default"
		}
		if p.Name == "" {
			return nil, nil, fmt.Errorf("%s: document %d: WasmPlugin without metadata.name", file, i+1)
		}
		if len(res.Spec) == 0 {
			return nil, nil, p.errorf("no spec")
		}
		if err := protojson.Unmarshal(res.Spec, p.Spec); err != nil {
			return nil, nil, p.errorf("spec: %s", cleanProtoError(err))
		}
		if _, err := p.Filter(); err != nil {
			return nil, nil, err
		}
		out = append(out, p)
	}
	return out, efs, nil
}

// envoyFilterDoc decodes one EnvoyFilter document.
func envoyFilterDoc(file string, doc int, apiVersion, name, namespace string, created time.Time, spec json.RawMessage) (*EnvoyFilter, error) {
	if !envoyFilterAPIVersions[apiVersion] {
		return nil, fmt.Errorf("%s: document %d: apiVersion %q, want networking.istio.io/v1alpha3", file, doc, apiVersion)
	}
	if name == "" {
		return nil, fmt.Errorf("%s: document %d: EnvoyFilter without metadata.name", file, doc)
	}
	if namespace == "" {
		namespace = "default"
	}
	f := &EnvoyFilter{Name: name, Namespace: namespace, File: file, Created: created, Spec: &networking.EnvoyFilter{}}
	if len(spec) == 0 {
		return nil, f.errorf("no spec")
	}
	if err := protojson.Unmarshal(spec, f.Spec); err != nil {
		// Name the patch at fault when it is one of them.
		var parts struct {
			ConfigPatches []json.RawMessage `json:"configPatches"`
		}
		if json.Unmarshal(spec, &parts) == nil {
			for i, raw := range parts.ConfigPatches {
				if perr := protojson.Unmarshal(raw, &networking.EnvoyFilter_EnvoyConfigObjectPatch{}); perr != nil {
					return nil, f.errorf("spec.configPatches[%d]: %s", i, cleanProtoError(perr))
				}
			}
		}
		return nil, f.errorf("spec: %s", cleanProtoError(err))
	}
	if err := f.decode(); err != nil {
		return nil, err
	}
	return f, nil
}

var jsonPosition = regexp.MustCompile(`\(line \d+:\d+\): `)

// cleanProtoError drops protojson's prefix, non-breaking spaces and
// positions (which count in the JSON made from the YAML, not the file).
func cleanProtoError(err error) string {
	s := strings.ReplaceAll(err.Error(), "\u00a0", " ")
	return jsonPosition.ReplaceAllString(strings.TrimPrefix(s, "proto: "), "")
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Filter is the plugin as a config.HTTPFilter (also used, by its Wasm
// part, for NETWORK plugins), converted as istiod and its agent do.
func (p *Plugin) Filter() (*config.HTTPFilter, error) {
	s := p.Spec
	w := &config.WasmPlugin{
		Name:    p.FullName(),
		RootID:  s.GetPluginName(),
		Runtime: "envoy.wasm.runtime.v8",
	}
	switch s.GetFailStrategy() {
	case extensions.FailStrategy_FAIL_OPEN:
		w.FailurePolicy = config.FailOpen
	case extensions.FailStrategy_FAIL_RELOAD:
		w.FailurePolicy = config.FailReload
	default:
		// FAIL_CLOSE is the enum's zero value, so an unset failStrategy
		// cannot be told from an explicit one; istiod sends both to Envoy
		// as an explicit FAIL_CLOSED, and Istio documents it as "all
		// subsequent requests fail". Keep that meaning: an explicit
		// FAIL_CLOSED, not wasmproxy's default (docs/decisions.md, "The
		// default failure policy").
		w.FailurePolicy = config.FailClosed
	}
	if pc := s.GetPluginConfig(); pc != nil && len(pc.GetFields()) > 0 {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(pc.AsMap()); err != nil {
			return nil, p.errorf("spec.pluginConfig: %v", err)
		}
		w.PluginConfiguration = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	}
	for i, env := range s.GetVmConfig().GetEnv() {
		if !envName.MatchString(env.GetName()) {
			return nil, p.errorf("spec.vmConfig.env[%d].name: %q is not a C identifier", i, env.GetName())
		}
		switch env.GetValueFrom() {
		case extensions.EnvValueSource_HOST:
			w.EnvHostKeys = append(w.EnvHostKeys, env.GetName())
		default:
			if w.EnvKeyValues == nil {
				w.EnvKeyValues = map[string]string{}
			}
			w.EnvKeyValues[env.GetName()] = env.GetValue()
		}
	}

	url := strings.TrimSpace(s.GetUrl())
	if url == "" {
		return nil, p.errorf("spec.url: missing")
	}
	sha := s.GetSha256()
	if sha != "" && !regexp.MustCompile(`^[a-f0-9]{64}$`).MatchString(sha) {
		return nil, p.errorf("spec.sha256: %q is not 64 lower-case hexadecimal characters", sha)
	}
	if rest, ok := strings.CutPrefix(url, "file://"); ok {
		w.CodeFile = rest
		if !filepath.IsAbs(rest) {
			w.CodeFile = filepath.Join(filepath.Dir(p.File), rest)
		}
	} else {
		if !strings.Contains(url, "://") {
			url = "oci://" + url // Istio's default scheme
		}
		if err := config.CheckRemoteURL(url); err != nil {
			return nil, p.errorf("spec.url: %v", err)
		}
		r := &config.RemoteCode{
			URL:    url,
			SHA256: sha,
			// What istiod sends (30s) and Istio's agent retries (5
			// attempts from 500ms).
			Timeout:     config.Duration(30 * time.Second),
			Retries:     4,
			BackoffBase: config.Duration(500 * time.Millisecond),
		}
		switch s.GetImagePullPolicy() {
		case extensions.PullPolicy_IfNotPresent:
			r.PullPolicy = "IfNotPresent"
		case extensions.PullPolicy_Always:
			r.PullPolicy = "Always"
		}
		if secret := s.GetImagePullSecret(); secret != "" {
			path, err := p.secretFile(secret)
			if err != nil {
				return nil, err
			}
			r.PullSecret = path
		}
		w.Remote = r
	}
	return &config.HTTPFilter{Name: p.FullName(), Wasm: w}, nil
}

// secretFile finds the file an imagePullSecret names: the path itself
// (relative to the WasmPlugin's file), or NAME.yaml, NAME.yml, NAME.json
// beside it.
func (p *Plugin) secretFile(name string) (string, error) {
	candidates := []string{name}
	if !filepath.IsAbs(name) {
		dir := filepath.Dir(p.File)
		candidates = []string{filepath.Join(dir, name), filepath.Join(dir, name+".yaml"), filepath.Join(dir, name+".yml"), filepath.Join(dir, name+".json")}
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return c, nil
		}
	}
	return "", p.errorf("spec.imagePullSecret: no file %q (nor .yaml/.yml/.json) beside %s: wasmproxy reads the docker-config Secret from a file", name, p.File)
}

// phaseRank orders the phases as Istio's filter chain does: AUTHN,
// AUTHZ and STATS plugins ahead of the config's own filters (where
// Istio's authn, rbac and stats filters are), UNSPECIFIED just before
// the router.
func phaseRank(ph extensions.PluginPhase) int {
	switch ph {
	case extensions.PluginPhase_AUTHN:
		return 0
	case extensions.PluginPhase_AUTHZ:
		return 1
	case extensions.PluginPhase_STATS:
		return 2
	}
	return 3
}

// Sort puts plugins in chain order: by phase, then higher priority
// first, then by namespace and name.
func Sort(plugins []*Plugin) {
	sort.SliceStable(plugins, func(i, j int) bool {
		a, b := plugins[i], plugins[j]
		if ra, rb := phaseRank(a.Spec.GetPhase()), phaseRank(b.Spec.GetPhase()); ra != rb {
			return ra < rb
		}
		if pa, pb := a.Spec.GetPriority().GetValue(), b.Spec.GetPriority().GetValue(); pa != pb {
			return pa > pb
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
}

// Matches reports whether the plugin applies to a listener on port with
// traffic direction dir (config.Listener.TrafficDirection): mode SERVER
// matches sidecar inbound listeners (INBOUND), CLIENT sidecar outbound
// (OUTBOUND) and gateway (unset) listeners, as istiod's matchMode.
func (p *Plugin) Matches(port uint32, dir string) bool {
	selectors := p.Spec.GetMatch()
	if len(selectors) == 0 {
		return true
	}
	for _, sel := range selectors {
		switch sel.GetMode() {
		case typev1beta1.WorkloadMode_SERVER:
			if dir != "INBOUND" {
				continue
			}
		case typev1beta1.WorkloadMode_CLIENT:
			if dir == "INBOUND" {
				continue
			}
		}
		if len(sel.GetPorts()) == 0 {
			return true
		}
		for _, ps := range sel.GetPorts() {
			if ps.GetNumber() == port {
				return true
			}
		}
	}
	return false
}

// Apply inserts the plugins into every matching listener of b: HTTP
// plugins into each HTTP connection manager, NETWORK plugins into each
// filter chain's network filters (ahead of its TCP proxy or HTTP
// connection manager), in Sort's order around the config's own filters.
// It returns, per plugin full name, the listeners it went into, so that
// a plugin that went nowhere can be reported: one whose ports match no
// listener, or an HTTP plugin whose listeners only proxy TCP.
func Apply(b *config.Bootstrap, plugins []*Plugin) (map[string][]string, error) {
	sorted := append([]*Plugin(nil), plugins...)
	Sort(sorted)
	applied := map[string][]string{}
	for _, l := range b.Listeners {
		port, err := listenerPort(l.Address)
		if err != nil {
			return nil, fmt.Errorf("listener %q: %v", l.Name, err)
		}
		var front, back []*config.HTTPFilter
		var netFront, netBack []*config.NetworkFilter
		var httpNames, netNames []string
		for _, p := range sorted {
			if !p.Matches(port, l.TrafficDirection) {
				continue
			}
			f, err := p.Filter()
			if err != nil {
				return nil, err
			}
			network := p.Spec.GetType() == extensions.PluginType_NETWORK
			if network {
				nf := &config.NetworkFilter{Name: f.Name, Wasm: f.Wasm}
				if phaseRank(p.Spec.GetPhase()) < 3 {
					netFront = append(netFront, nf)
				} else {
					netBack = append(netBack, nf)
				}
				netNames = append(netNames, p.FullName())
			} else {
				if phaseRank(p.Spec.GetPhase()) < 3 {
					front = append(front, f)
				} else {
					back = append(back, f)
				}
				httpNames = append(httpNames, p.FullName())
			}
		}
		tookHTTP, tookNetwork := false, false
		for _, c := range l.FilterChains {
			tookHTTP = tookHTTP || c.HTTP != nil
			tookNetwork = true
			if h := c.HTTP; h != nil && len(front)+len(back) > 0 {
				own := h.Filters[:len(h.Filters)-1] // the router is last
				router := h.Filters[len(h.Filters)-1]
				filters := append(append(append(append([]*config.HTTPFilter{}, copyFilters(front)...), own...), copyFilters(back)...), router)
				h.Filters = filters
				// Per-route configurations for the plugins (an
				// EnvoyFilter's HTTP_ROUTE or VIRTUAL_HOST patch of
				// typed_per_filter_config under the plugin's name) reach
				// them now that they are in the chain.
				if err := config.CollectWasmRouteConfigs(h, ""); err != nil {
					return nil, fmt.Errorf("listener %q: %w", l.Name, err)
				}
			}
			if len(netFront)+len(netBack) > 0 {
				c.NetworkFilters = append(append(append([]*config.NetworkFilter{}, netFront...), c.NetworkFilters...), netBack...)
			}
		}
		if tookHTTP {
			for _, n := range httpNames {
				applied[n] = append(applied[n], l.Name)
			}
		}
		if tookNetwork {
			for _, n := range netNames {
				applied[n] = append(applied[n], l.Name)
			}
		}
	}
	return applied, nil
}

// copyFilters gives each listener its own filter values, so that the
// command line's per-listener edits (resolved code) do not leak across.
func copyFilters(fs []*config.HTTPFilter) []*config.HTTPFilter {
	out := make([]*config.HTTPFilter, len(fs))
	for i, f := range fs {
		c := *f
		if f.Wasm != nil {
			w := *f.Wasm
			c.Wasm = &w
		}
		out[i] = &c
	}
	return out
}

func listenerPort(address string) (uint32, error) {
	i := strings.LastIndex(address, ":")
	if i < 0 {
		return 0, errors.New("address without a port: " + address)
	}
	var port uint32
	if _, err := fmt.Sscanf(address[i+1:], "%d", &port); err != nil {
		return 0, fmt.Errorf("bad port in %s", address)
	}
	return port, nil
}
