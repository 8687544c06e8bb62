package istio

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpwasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wasmproxy/wasmproxy/config"
)

// seedPlugin is the seed's WasmPlugin for json-validation, with its
// registry placeholder filled in.
const seedPlugin = `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: json-validation
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  url: oci://127.0.0.1:5000/json-validation:v3
  imagePullPolicy: IfNotPresent
  phase: AUTHN
  pluginConfig:
    requiredKeys: ["id", "token"]
`

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSeedPluginConverts(t *testing.T) {
	plugins, err := Load(writeFile(t, t.TempDir(), "wasmplugin.yaml", seedPlugin))
	if err != nil {
		t.Fatal(err)
	}
	if len(plugins) != 1 {
		t.Fatalf("%d plugins", len(plugins))
	}
	f, err := plugins[0].Filter()
	if err != nil {
		t.Fatal(err)
	}
	w := f.Wasm
	if w.Name != "istio-system.json-validation" || string(w.PluginConfiguration) != `{"requiredKeys":["id","token"]}` ||
		w.FailurePolicy != config.FailClosed || w.Remote == nil || w.Remote.URL != "oci://127.0.0.1:5000/json-validation:v3" ||
		w.Remote.PullPolicy != "IfNotPresent" || w.Runtime != "envoy.wasm.runtime.v8" {
		t.Fatalf("converted to %+v remote %+v", w, w.Remote)
	}
}

func TestFieldsConvert(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "regcred.yaml", "kind: Secret\n")
	file := writeFile(t, dir, "p.yaml", `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: all, namespace: ns}
spec:
  url: registry.example.com/p@sha256:`+strings.Repeat("a", 64)+`
  imagePullPolicy: Always
  imagePullSecret: regcred
  pluginName: root
  failStrategy: FAIL_OPEN
  vmConfig:
    env:
      - {name: FROM_HOST, valueFrom: HOST}
      - {name: INLINE, value: "v"}
---
apiVersion: v1
kind: Secret
metadata: {name: other}
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: local}
spec:
  url: file://plugin.wasm
  failStrategy: FAIL_RELOAD
`)
	plugins, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(plugins) != 2 {
		t.Fatalf("%d plugins", len(plugins))
	}
	a, _ := plugins[0].Filter()
	r := a.Wasm.Remote
	if r.URL != "oci://registry.example.com/p@sha256:"+strings.Repeat("a", 64) || r.PullPolicy != "Always" ||
		r.PullSecret != filepath.Join(dir, "regcred.yaml") || a.Wasm.RootID != "root" || a.Wasm.FailurePolicy != config.FailOpen ||
		a.Wasm.EnvHostKeys[0] != "FROM_HOST" || a.Wasm.EnvKeyValues["INLINE"] != "v" {
		t.Fatalf("%+v %+v", a.Wasm, r)
	}
	b, _ := plugins[1].Filter()
	if b.Name != "default.local" || b.Wasm.CodeFile != filepath.Join(dir, "plugin.wasm") || b.Wasm.Remote != nil || b.Wasm.FailurePolicy != config.FailReload {
		t.Fatalf("%+v", b.Wasm)
	}
}

func TestBadPlugins(t *testing.T) {
	head := "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: p, namespace: ns}\n"
	tests := []struct{ name, body, want string }{
		{"no url", head + "spec: {phase: AUTHN}\n", "spec.url: missing"},
		{"bad sha", head + "spec: {url: oci://r/p:v1, sha256: ABC}\n", `spec.sha256: "ABC" is not 64 lower-case`},
		{"bad scheme", head + "spec: {url: ftp://r/p.wasm}\n", `spec.url: unsupported scheme "ftp"`},
		// The url's password is never quoted.
		{"bad scheme with credentials", head + "spec: {url: \"ftp://robot:s3cret@r/p.wasm\"}\n", `spec.url: unsupported scheme "ftp" in "ftp://robot:[redacted]@r/p.wasm"`},
		{"unknown field", head + "spec: {url: oci://r/p:v1, colour: red}\n", `spec: unknown field "colour"`},
		{"bad enum", head + "spec: {url: oci://r/p:v1, phase: LAST}\n", "spec: invalid value for enum"},
		{"bad env name", head + "spec: {url: oci://r/p:v1, vmConfig: {env: [{name: 1X}]}}\n", `spec.vmConfig.env[0].name: "1X"`},
		{"missing secret", head + "spec: {url: oci://r/p:v1, imagePullSecret: nope}\n", `spec.imagePullSecret: no file "nope"`},
		{"no plugin", "apiVersion: v1\nkind: Secret\n", "no extensions.istio.io/v1alpha1 WasmPlugin resource"},
		{"bad yaml", "a: [\n", "document 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, t.TempDir(), "p.yaml", tc.body)
			_, err := Load(file)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), file) {
				t.Fatalf("err = %v, want %q after the file name", err, tc.want)
			}
		})
	}
}

// TestApplyOrder: plugins go into the listeners whose port they match,
// AUTHN < AUTHZ < STATS ahead of the config's own filters and
// UNSPECIFIED just before the router; higher priority first in a phase.
func TestApplyOrder(t *testing.T) {
	dir := t.TempDir()
	plugin := func(name, extra string) string {
		return "---\napiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: " + name + ", namespace: ns}\nspec:\n  url: oci://r/" + name + ":v1\n" + extra
	}
	writeFile(t, dir, "plugins.yaml", strings.Join([]string{
		plugin("last", ""),
		plugin("stats", "  phase: STATS\n"),
		plugin("authz", "  phase: AUTHZ\n"),
		plugin("authn-low", "  phase: AUTHN\n  priority: -5\n"),
		plugin("authn-high", "  phase: AUTHN\n  priority: 10\n"),
		plugin("only-8080", "  phase: AUTHN\n  match: [{ports: [{number: 8080}]}]\n"),
		plugin("server-only", "  match: [{mode: SERVER}]\n"),
	}, "\n"))
	plugins, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := &config.Bootstrap{Listeners: []*config.Listener{
		{Name: "a", Address: "0.0.0.0:10000", FilterChains: []*config.FilterChain{{HTTP: &config.HTTPConnectionManager{Filters: []*config.HTTPFilter{{Name: "own"}, {Name: "router", Router: true}}}}}},
		{Name: "b", Address: "0.0.0.0:8080", FilterChains: []*config.FilterChain{{HTTP: &config.HTTPConnectionManager{Filters: []*config.HTTPFilter{{Name: "router", Router: true}}}}}},
	}}
	applied, err := Apply(b, plugins)
	if err != nil {
		t.Fatal(err)
	}
	names := func(l int) string {
		var out []string
		for _, f := range b.Listeners[l].FilterChains[0].HTTP.Filters {
			out = append(out, f.Name)
		}
		return strings.Join(out, " ")
	}
	if got, want := names(0), "ns.authn-high ns.authn-low ns.authz ns.stats own ns.last router"; got != want {
		t.Errorf("listener a: %s, want %s", got, want)
	}
	if got, want := names(1), "ns.authn-high ns.only-8080 ns.authn-low ns.authz ns.stats ns.last router"; got != want {
		t.Errorf("listener b: %s, want %s", got, want)
	}
	if len(applied["ns.server-only"]) != 0 || len(applied["ns.only-8080"]) != 1 {
		t.Errorf("applied = %v", applied)
	}
}

// TestApplyByType: NETWORK plugins go ahead of TCP proxies (around the
// config's own network filters: a phase ahead of them, no phase after),
// HTTP plugins into HTTP
// connection managers; a plugin whose ports match only listeners of the
// other kind goes nowhere and is not reported as applied.
func TestApplyByType(t *testing.T) {
	dir := t.TempDir()
	plugin := func(name, extra string) string {
		return "---\napiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: " + name + ", namespace: ns}\nspec:\n  url: oci://r/" + name + ":v1\n" + extra
	}
	writeFile(t, dir, "plugins.yaml", strings.Join([]string{
		plugin("net-authn", "  type: NETWORK\n  phase: AUTHN\n"),
		plugin("net-last", "  type: NETWORK\n"),
		plugin("http", "  phase: AUTHN\n"),
		plugin("http-on-tcp", "  match: [{ports: [{number: 9000}]}]\n"),
	}, "\n"))
	plugins, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := &config.Bootstrap{Listeners: []*config.Listener{
		{Name: "web", Address: "0.0.0.0:10000", FilterChains: []*config.FilterChain{{HTTP: &config.HTTPConnectionManager{Filters: []*config.HTTPFilter{{Name: "router", Router: true}}}}}},
		{Name: "tcp", Address: "0.0.0.0:9000", FilterChains: []*config.FilterChain{{NetworkFilters: []*config.NetworkFilter{{Name: "own"}}, TCPProxy: &config.TCPProxy{Cluster: "c"}}}},
	}}
	applied, err := Apply(b, plugins)
	if err != nil {
		t.Fatal(err)
	}
	var net []string
	for _, f := range b.Listeners[1].FilterChains[0].NetworkFilters {
		net = append(net, f.Name)
	}
	if got, want := strings.Join(net, " "), "ns.net-authn own ns.net-last"; got != want {
		t.Errorf("tcp listener network filters: %s, want %s", got, want)
	}
	var webNet []string
	for _, f := range b.Listeners[0].FilterChains[0].NetworkFilters {
		webNet = append(webNet, f.Name)
	}
	if got, want := strings.Join(webNet, " "), "ns.net-authn ns.net-last"; got != want {
		t.Errorf("web listener network filters: %s, want %s", got, want)
	}
	var http []string
	for _, f := range b.Listeners[0].FilterChains[0].HTTP.Filters {
		http = append(http, f.Name)
	}
	if got, want := strings.Join(http, " "), "ns.http router"; got != want {
		t.Errorf("web listener HTTP filters: %s, want %s", got, want)
	}
	for name, want := range map[string]string{"ns.net-authn": "web,tcp", "ns.net-last": "web,tcp", "ns.http": "web", "ns.http-on-tcp": ""} {
		if got := strings.Join(applied[name], ","); got != want {
			t.Errorf("applied[%s] = %q, want %q", name, got, want)
		}
	}
}

// TestExtensionConfig: the seed's WasmPlugin renders as istiod's ECDS
// resource: a TypedExtensionConfig named after the plugin, holding the
// HTTP Wasm filter with its configuration, the image URL and digest as
// remote code, and the failure policy.
func TestExtensionConfig(t *testing.T) {
	plugins, err := Load(writeFile(t, t.TempDir(), "wasmplugin.yaml", seedPlugin))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := plugins[0].ExtensionConfig()
	if err != nil {
		t.Fatal(err)
	}
	var ec corev3.TypedExtensionConfig
	if err := protojson.Unmarshal(raw, &ec); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	var w httpwasmv3.Wasm
	if err := ec.GetTypedConfig().UnmarshalTo(&w); err != nil {
		t.Fatalf("typed_config is not the HTTP Wasm filter: %v", err)
	}
	pc := w.GetConfig()
	var conf wrapperspb.StringValue
	if err := pc.GetConfiguration().UnmarshalTo(&conf); err != nil {
		t.Fatal(err)
	}
	remote := pc.GetVmConfig().GetCode().GetRemote()
	if ec.GetName() != "istio-system.json-validation" || pc.GetName() != ec.GetName() ||
		conf.GetValue() != `{"requiredKeys":["id","token"]}` ||
		remote.GetHttpUri().GetUri() != "oci://127.0.0.1:5000/json-validation:v3" ||
		pc.GetVmConfig().GetRuntime() != "envoy.wasm.runtime.v8" || pc.GetFailurePolicy() != wasmv3.FailurePolicy_FAIL_CLOSED {
		t.Errorf("rendered as %s", raw)
	}
}
