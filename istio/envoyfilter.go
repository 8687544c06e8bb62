package istio

// EnvoyFilter resources (networking.istio.io/v1alpha3): their patches are
// applied to the decoded bootstrap proto before it is validated and
// built, restating what istiod does in
// pilot/pkg/networking/core/envoyfilter (listener_patch.go,
// cluster_patch.go, rc_patch.go): the same walk (listener → filter
// chains → network filters → HTTP filters), the same operation rules
// (INSERT_BEFORE without a filter match inserts first, INSERT_AFTER
// without one appends, REPLACE and REMOVE need one), MERGE as proto merge
// with Any-typed filter configs merged inside their type. The listener's
// traffic_direction gives its patch context (Context).

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/wasmproxy/wasmproxy/config/redact"
)

// EnvoyFilter kind and the API versions read.
const (
	EnvoyFilterKind = "EnvoyFilter"
)

var envoyFilterAPIVersions = map[string]bool{"networking.istio.io/v1alpha3": true, "networking.istio.io/v1beta1": true, "networking.istio.io/v1": true}

// DefaultIstioVersion is the Istio version wasmproxy declares to
// EnvoyFilter patches' match.proxy.proxyVersion (istiod matches it
// against the proxy's ISTIO_VERSION): the istio.io/api release whose
// EnvoyFilter API is implemented here.
const DefaultIstioVersion = "1.31.1"

// EnvoyFilter is one EnvoyFilter resource with its patches decoded.
type EnvoyFilter struct {
	Name      string
	Namespace string
	File      string
	// Created is metadata.creationTimestamp (zero when absent); order is
	// the position in the files read, which stands in for it.
	Created time.Time
	order   int
	Spec    *networking.EnvoyFilter
	patches []*Patch
}

// FullName is "<namespace>/<name>", as istiod names EnvoyFilters.
func (f *EnvoyFilter) FullName() string { return f.Namespace + "/" + f.Name }

func (f *EnvoyFilter) errorf(format string, args ...any) error {
	return errors.New(redact.Text(fmt.Sprintf("%s: EnvoyFilter %s: %s", f.File, f.FullName(), fmt.Sprintf(format, args...))))
}

// Patch is one configPatches entry, its value decoded into the Envoy
// message its applyTo names.
type Patch struct {
	Filter  *EnvoyFilter
	Index   int
	ApplyTo networking.EnvoyFilter_ApplyTo
	Op      networking.EnvoyFilter_Patch_Operation
	Match   *networking.EnvoyFilter_EnvoyConfigObjectMatch
	Value   proto.Message
	version *regexp.Regexp
	// Applied lists where the patch took effect; Misses why it did not
	// (deduplicated), for the log line of a patch that matched nothing.
	Applied []string
	Misses  []string
}

// Key names the patch in messages: "ns/name configPatches[i]".
func (p *Patch) Key() string {
	return fmt.Sprintf("%s configPatches[%d]", p.Filter.FullName(), p.Index)
}

func (p *Patch) miss(format string, args ...any) {
	m := fmt.Sprintf(format, args...)
	for _, s := range p.Misses {
		if s == m {
			return
		}
	}
	if len(p.Misses) < 8 {
		p.Misses = append(p.Misses, m)
	}
}

func (p *Patch) hit(where string) { p.Applied = append(p.Applied, where) }

// Patches returns the filter's patches (after a successful load).
func (f *EnvoyFilter) Patches() []*Patch { return f.patches }

// allowedOps is what istiod's validation accepts per applyTo, restricted
// to what a static bootstrap holds.
var allowedOps = map[networking.EnvoyFilter_ApplyTo][]networking.EnvoyFilter_Patch_Operation{
	networking.EnvoyFilter_LISTENER:            {networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE, networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_MERGE_AND_REPLACE_LIST},
	networking.EnvoyFilter_FILTER_CHAIN:        {networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE, networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_MERGE_AND_REPLACE_LIST},
	networking.EnvoyFilter_NETWORK_FILTER:      {networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE, networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_INSERT_BEFORE, networking.EnvoyFilter_Patch_INSERT_AFTER, networking.EnvoyFilter_Patch_INSERT_FIRST, networking.EnvoyFilter_Patch_REPLACE},
	networking.EnvoyFilter_HTTP_FILTER:         {networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE, networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_INSERT_BEFORE, networking.EnvoyFilter_Patch_INSERT_AFTER, networking.EnvoyFilter_Patch_INSERT_FIRST, networking.EnvoyFilter_Patch_REPLACE},
	networking.EnvoyFilter_ROUTE_CONFIGURATION: {networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_MERGE_AND_REPLACE_LIST},
	networking.EnvoyFilter_VIRTUAL_HOST:        {networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE, networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_MERGE_AND_REPLACE_LIST},
	networking.EnvoyFilter_HTTP_ROUTE:          {networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE, networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_INSERT_BEFORE, networking.EnvoyFilter_Patch_INSERT_AFTER, networking.EnvoyFilter_Patch_INSERT_FIRST, networking.EnvoyFilter_Patch_MERGE_AND_REPLACE_LIST},
	networking.EnvoyFilter_CLUSTER:             {networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE, networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_MERGE_AND_REPLACE_LIST},
	networking.EnvoyFilter_BOOTSTRAP:           {networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_MERGE_AND_REPLACE_LIST},
}

// refusedApplyTo says why an applyTo has no place in a static bootstrap.
var refusedApplyTo = map[networking.EnvoyFilter_ApplyTo]string{
	networking.EnvoyFilter_EXTENSION_CONFIG: "EXTENSION_CONFIG patches ECDS resources, which a static bootstrap does not reference (use a WasmPlugin, or put the filter in the bootstrap)",
	networking.EnvoyFilter_LISTENER_FILTER:  "LISTENER_FILTER is not supported: wasmproxy runs only the TLS inspector, which it adds itself",
	networking.EnvoyFilter_INVALID:          "applyTo is missing",
}

// newMessage is the Envoy message a patch value of applyTo decodes into,
// as istiod's xds.BuildXDSObjectFromStruct.
func newMessage(a networking.EnvoyFilter_ApplyTo) proto.Message {
	switch a {
	case networking.EnvoyFilter_LISTENER:
		return &listenerv3.Listener{}
	case networking.EnvoyFilter_FILTER_CHAIN:
		return &listenerv3.FilterChain{}
	case networking.EnvoyFilter_NETWORK_FILTER:
		return &listenerv3.Filter{}
	case networking.EnvoyFilter_HTTP_FILTER:
		return &hcmv3.HttpFilter{}
	case networking.EnvoyFilter_ROUTE_CONFIGURATION:
		return &routev3.RouteConfiguration{}
	case networking.EnvoyFilter_VIRTUAL_HOST:
		return &routev3.VirtualHost{}
	case networking.EnvoyFilter_HTTP_ROUTE:
		return &routev3.Route{}
	case networking.EnvoyFilter_CLUSTER:
		return &clusterv3.Cluster{}
	case networking.EnvoyFilter_BOOTSTRAP:
		return &bootstrapv3.Bootstrap{}
	}
	return nil
}

// deprecatedNames maps Envoy's legacy filter names to the canonical ones
// (Istio's pkg/config/xds DeprecatedFilterNames, reversed). istiod
// rewrites a match's legacy name to the canonical one; canonicalName does
// the same on both sides of a comparison, so a bootstrap that still uses
// a legacy name matches too.
var deprecatedNames = map[string]string{
	"envoy.buffer":                  "envoy.filters.http.buffer",
	"envoy.cors":                    "envoy.filters.http.cors",
	"envoy.csrf":                    "envoy.filters.http.csrf",
	"envoy.http_dynamo_filter":      "envoy.filters.http.dynamo",
	"envoy.fault":                   "envoy.filters.http.fault",
	"envoy.grpc_http1_bridge":       "envoy.filters.http.grpc_http1_bridge",
	"envoy.grpc_json_transcoder":    "envoy.filters.http.grpc_json_transcoder",
	"envoy.grpc_web":                "envoy.filters.http.grpc_web",
	"envoy.gzip":                    "envoy.filters.http.gzip",
	"envoy.health_check":            "envoy.filters.http.health_check",
	"envoy.ip_tagging":              "envoy.filters.http.ip_tagging",
	"envoy.lua":                     "envoy.filters.http.lua",
	"envoy.rate_limit":              "envoy.filters.http.ratelimit",
	"envoy.router":                  "envoy.filters.http.router",
	"envoy.squash":                  "envoy.filters.http.squash",
	"envoy.listener.http_inspector": "envoy.filters.listener.http_inspector",
	"envoy.listener.original_dst":   "envoy.filters.listener.original_dst",
	"envoy.listener.original_src":   "envoy.filters.listener.original_src",
	"envoy.listener.proxy_protocol": "envoy.filters.listener.proxy_protocol",
	"envoy.listener.tls_inspector":  "envoy.filters.listener.tls_inspector",
	"envoy.client_ssl_auth":         "envoy.filters.network.client_ssl_auth",
	"envoy.http_connection_manager": "envoy.filters.network.http_connection_manager",
	"envoy.mongo_proxy":             "envoy.filters.network.mongo_proxy",
	"envoy.ratelimit":               "envoy.filters.network.ratelimit",
	"envoy.redis_proxy":             "envoy.filters.network.redis_proxy",
	"envoy.tcp_proxy":               "envoy.filters.network.tcp_proxy",
	// envoy.ext_authz named both the HTTP and the network filter; the
	// HTTP one is what a subFilter means.
	"envoy.ext_authz": "envoy.filters.http.ext_authz",
}

func canonicalName(n string) string {
	if c, ok := deprecatedNames[n]; ok {
		return c
	}
	return n
}

func sameFilterName(a, b string) bool {
	return a == b || canonicalName(a) == canonicalName(b) ||
		// envoy.ext_authz as a network filter
		(a == "envoy.ext_authz" && b == "envoy.filters.network.ext_authz") ||
		(b == "envoy.ext_authz" && a == "envoy.filters.network.ext_authz")
}

// legacyTypes are the typed configs a legacy `config:` struct becomes,
// by canonical filter name: the Wasm filters and the filters wasmproxy
// implements.
var legacyTypes = map[string]string{
	"envoy.filters.http.wasm":                       "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
	"envoy.filters.network.wasm":                    "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
	"envoy.filters.http.router":                     "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
	"envoy.filters.network.http_connection_manager": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
	"envoy.filters.network.tcp_proxy":               "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
}

// legacyValue turns a patch value in the legacy form — a filter `name`
// and a `config` struct, which Envoy's v2 API converted by the filter's
// name — into the typed_config form. Other values are returned as they
// are.
func legacyValue(applyTo networking.EnvoyFilter_ApplyTo, v map[string]any, field string) (map[string]any, error) {
	if applyTo != networking.EnvoyFilter_HTTP_FILTER && applyTo != networking.EnvoyFilter_NETWORK_FILTER {
		return v, nil
	}
	cfg, ok := v["config"]
	if !ok {
		return v, nil
	}
	name, _ := v["name"].(string)
	if name == "" {
		return nil, fmt.Errorf("%s.config: the legacy config form needs the filter's name", field)
	}
	if _, typed := v["typed_config"]; typed {
		return nil, fmt.Errorf("%s: both config and typed_config", field)
	}
	if _, typed := v["typedConfig"]; typed {
		return nil, fmt.Errorf("%s: both config and typedConfig", field)
	}
	url, ok := legacyTypes[canonicalName(name)]
	if !ok {
		return nil, fmt.Errorf("%s.config: no typed config known for filter %q; write typed_config with an @type", field, name)
	}
	body, ok := cfg.(map[string]any)
	if !ok && cfg != nil {
		return nil, fmt.Errorf("%s.config: want an object", field)
	}
	typed := map[string]any{"@type": url}
	for k, x := range body {
		typed[k] = x
	}
	out := map[string]any{}
	for k, x := range v {
		if k != "config" {
			out[k] = x
		}
	}
	out["typed_config"] = typed
	return out, nil
}

// decode checks and decodes the filter's patches.
func (f *EnvoyFilter) decode() error {
	if len(f.Spec.GetConfigPatches()) == 0 {
		return f.errorf("spec.configPatches: empty")
	}
	f.patches = nil
	for i, cp := range f.Spec.GetConfigPatches() {
		field := fmt.Sprintf("spec.configPatches[%d]", i)
		p := &Patch{Filter: f, Index: i, ApplyTo: cp.GetApplyTo(), Match: cp.GetMatch()}
		if why, refused := refusedApplyTo[p.ApplyTo]; refused {
			return f.errorf("%s.applyTo: %s: %s", field, p.ApplyTo, why)
		}
		if cp.GetPatch() == nil {
			return f.errorf("%s.patch: missing", field)
		}
		p.Op = cp.GetPatch().GetOperation()
		ok := false
		for _, o := range allowedOps[p.ApplyTo] {
			ok = ok || o == p.Op
		}
		if !ok {
			return f.errorf("%s.patch.operation: %s does not apply to %s", field, p.Op, p.ApplyTo)
		}
		if p.Match == nil {
			p.Match = &networking.EnvoyFilter_EnvoyConfigObjectMatch{}
		}
		if err := checkMatch(p); err != nil {
			return f.errorf("%s.match.%v", field, err)
		}
		if (p.Op == networking.EnvoyFilter_Patch_REPLACE) &&
			!hasNetworkFilterMatch(p) {
			return f.errorf("%s.match.listener.filterChain.filter.name: REPLACE needs the filter to replace", field)
		}
		if v := cp.GetPatch().GetValue(); v != nil && len(v.GetFields()) > 0 {
			m, err := legacyValue(p.ApplyTo, v.AsMap(), field+".patch.value")
			if err != nil {
				return f.errorf("%v", err)
			}
			js, err := json.Marshal(m)
			if err != nil {
				return f.errorf("%s.patch.value: %v", field, err)
			}
			p.Value = newMessage(p.ApplyTo)
			if err := protojson.Unmarshal(js, p.Value); err != nil {
				return f.errorf("%s.patch.value: %s", field, cleanProtoError(err))
			}
		} else if p.Op != networking.EnvoyFilter_Patch_REMOVE {
			return f.errorf("%s.patch.value: missing (needed by %s)", field, p.Op)
		}
		if pv := p.Match.GetProxy().GetProxyVersion(); pv != "" {
			re, err := regexp.Compile(pv)
			if err != nil {
				return f.errorf("%s.match.proxy.proxyVersion: %v", field, err)
			}
			p.version = re
		}
		f.patches = append(f.patches, p)
	}
	return nil
}

// checkMatch refuses a match object of the wrong kind for applyTo, as
// istiod's validation does.
func checkMatch(p *Patch) error {
	m := p.Match
	switch p.ApplyTo {
	case networking.EnvoyFilter_LISTENER, networking.EnvoyFilter_FILTER_CHAIN, networking.EnvoyFilter_NETWORK_FILTER, networking.EnvoyFilter_HTTP_FILTER:
		if m.GetRouteConfiguration() != nil || m.GetCluster() != nil {
			return fmt.Errorf("listener: %s patches match a listener", p.ApplyTo)
		}
	case networking.EnvoyFilter_ROUTE_CONFIGURATION, networking.EnvoyFilter_VIRTUAL_HOST, networking.EnvoyFilter_HTTP_ROUTE:
		if m.GetListener() != nil || m.GetCluster() != nil {
			return fmt.Errorf("routeConfiguration: %s patches match a route configuration", p.ApplyTo)
		}
	case networking.EnvoyFilter_CLUSTER:
		if m.GetListener() != nil || m.GetRouteConfiguration() != nil {
			return fmt.Errorf("cluster: CLUSTER patches match a cluster")
		}
	}
	if m.GetContext() == networking.EnvoyFilter_WAYPOINT {
		return fmt.Errorf("context: WAYPOINT: wasmproxy is not an ambient waypoint")
	}
	return nil
}

// RootNamespace is Istio's default root namespace, whose EnvoyFilters
// istiod applies ahead of others of the same priority.
const RootNamespace = "istio-system"

// SortEnvoyFilters orders filters as istiod does: by priority, then the
// root namespace's first, then by creation time, then (here, where
// resources read from files have no creationTimestamp, as `kubectl
// apply` of the same files would create them) by the order they were
// read.
func SortEnvoyFilters(fs []*EnvoyFilter) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.Spec.GetPriority() != b.Spec.GetPriority() {
			return a.Spec.GetPriority() < b.Spec.GetPriority()
		}
		if a.Namespace != b.Namespace && (a.Namespace == RootNamespace || b.Namespace == RootNamespace) {
			return a.Namespace == RootNamespace
		}
		if !a.Created.Equal(b.Created) {
			return a.Created.Before(b.Created)
		}
		return a.order < b.order
	})
}

// Context is the EnvoyFilter patch context of a listener, from Envoy's
// own traffic_direction: INBOUND is a sidecar's inbound listener,
// OUTBOUND its outbound one, unset a gateway's.
func Context(l *listenerv3.Listener) networking.EnvoyFilter_PatchContext {
	switch l.GetTrafficDirection() {
	case corev3.TrafficDirection_INBOUND:
		return networking.EnvoyFilter_SIDECAR_INBOUND
	case corev3.TrafficDirection_OUTBOUND:
		return networking.EnvoyFilter_SIDECAR_OUTBOUND
	}
	return networking.EnvoyFilter_GATEWAY
}

// patchSet is every patch of every filter, in order, by applyTo.
type patchSet map[networking.EnvoyFilter_ApplyTo][]*Patch

// ApplyEnvoyFilters applies the filters' patches to pb, as istiod would
// for a proxy of Istio version version. Patches whose proxyVersion does
// not match are skipped (noted in their Misses). It returns the patches
// in the order applied, with Applied and Misses filled in.
func ApplyEnvoyFilters(pb *bootstrapv3.Bootstrap, filters []*EnvoyFilter, version string) ([]*Patch, error) {
	sorted := append([]*EnvoyFilter(nil), filters...)
	SortEnvoyFilters(sorted)
	ps := patchSet{}
	var all []*Patch
	for _, f := range sorted {
		for _, p := range f.patches {
			p.Applied, p.Misses = nil, nil
			all = append(all, p)
			if p.version != nil && !p.version.MatchString(version) {
				p.miss("match.proxy.proxyVersion %q does not match Istio version %s", p.version.String(), version)
				continue
			}
			ps[p.ApplyTo] = append(ps[p.ApplyTo], p)
		}
	}
	for _, p := range ps[networking.EnvoyFilter_BOOTSTRAP] {
		mergeValue(p.Op, pb, p.Value)
		p.hit("bootstrap")
	}
	if pb.StaticResources == nil {
		pb.StaticResources = &bootstrapv3.Bootstrap_StaticResources{}
	}
	sr := pb.StaticResources
	if err := patchListeners(ps, sr); err != nil {
		return nil, err
	}
	patchClusters(ps, sr)
	return all, nil
}

func contextMatch(p *Patch, ctx networking.EnvoyFilter_PatchContext, where string) bool {
	c := p.Match.GetContext()
	if c == networking.EnvoyFilter_ANY || c == ctx {
		return true
	}
	p.miss("context %s, but %s is %s", c, where, ctx)
	return false
}

func listenerPortOf(l *listenerv3.Listener) uint32 {
	return l.GetAddress().GetSocketAddress().GetPortValue()
}

func listenerMatch(p *Patch, l *listenerv3.Listener) bool {
	lm := p.Match.GetListener()
	if lm == nil {
		return true
	}
	if lm.GetName() != "" && lm.GetName() != l.GetName() {
		p.miss("listener.name %q, no listener of that name", lm.GetName())
		return false
	}
	if lm.GetPortNumber() != 0 && listenerPortOf(l) != lm.GetPortNumber() {
		p.miss("listener.portNumber %d, no listener on that port in context %s", lm.GetPortNumber(), p.Match.GetContext())
		return false
	}
	return true
}

func filterChainMatch(p *Patch, l *listenerv3.Listener, fc *listenerv3.FilterChain) bool {
	m := p.Match.GetListener().GetFilterChain()
	if m == nil {
		return true
	}
	where := fmt.Sprintf("listener %q", l.GetName())
	fcm := fc.GetFilterChainMatch()
	if m.GetName() != "" && m.GetName() != fc.GetName() {
		p.miss("filterChain.name %q: no such chain in %s", m.GetName(), where)
		return false
	}
	if m.GetSni() != "" && !contains(fcm.GetServerNames(), m.GetSni()) {
		p.miss("filterChain.sni %q: no chain of %s has that server name", m.GetSni(), where)
		return false
	}
	if m.GetTransportProtocol() != "" && fcm.GetTransportProtocol() != m.GetTransportProtocol() {
		p.miss("filterChain.transportProtocol %q: no chain of %s has it", m.GetTransportProtocol(), where)
		return false
	}
	if m.GetApplicationProtocols() != "" {
		for _, ap := range strings.Split(m.GetApplicationProtocols(), ",") {
			if !contains(fcm.GetApplicationProtocols(), ap) {
				p.miss("filterChain.applicationProtocols %q: no chain of %s has them all", m.GetApplicationProtocols(), where)
				return false
			}
		}
	}
	if m.GetDestinationPort() != 0 && (fcm.GetDestinationPort() == nil || fcm.GetDestinationPort().GetValue() != m.GetDestinationPort()) {
		p.miss("filterChain.destinationPort %d: no chain of %s matches that port", m.GetDestinationPort(), where)
		return false
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hasNetworkFilterMatch(p *Patch) bool {
	return p.Match.GetListener().GetFilterChain().GetFilter() != nil
}

func networkFilterMatch(p *Patch, f *listenerv3.Filter) bool {
	if !hasNetworkFilterMatch(p) {
		return true
	}
	return sameFilterName(p.Match.GetListener().GetFilterChain().GetFilter().GetName(), f.GetName())
}

func hasHTTPFilterMatch(p *Patch) bool {
	return p.Match.GetListener().GetFilterChain().GetFilter().GetSubFilter() != nil
}

func httpFilterMatch(p *Patch, f *hcmv3.HttpFilter) bool {
	if !hasHTTPFilterMatch(p) {
		return true
	}
	return sameFilterName(p.Match.GetListener().GetFilterChain().GetFilter().GetSubFilter().GetName(), f.GetName())
}

func patchListeners(ps patchSet, sr *bootstrapv3.Bootstrap_StaticResources) error {
	var kept []*listenerv3.Listener
	for _, l := range sr.Listeners {
		ctx := Context(l)
		where := fmt.Sprintf("listener %q", l.GetName())
		removed := false
		for _, p := range ps[networking.EnvoyFilter_LISTENER] {
			if p.Op == networking.EnvoyFilter_Patch_ADD || !contextMatch(p, ctx, where) || !listenerMatch(p, l) {
				continue
			}
			p.hit(where)
			if p.Op == networking.EnvoyFilter_Patch_REMOVE {
				removed = true
				break
			}
			mergeValue(p.Op, l, p.Value)
		}
		if removed {
			continue
		}
		if err := patchFilterChains(ps, l, ctx); err != nil {
			return err
		}
		kept = append(kept, l)
	}
	for _, p := range ps[networking.EnvoyFilter_LISTENER] {
		if p.Op != networking.EnvoyFilter_Patch_ADD {
			continue
		}
		// An ADD with context ANY adds to sidecar outbound and gateway
		// listeners only (istiod); a static bootstrap is one of those.
		if c := p.Match.GetContext(); c == networking.EnvoyFilter_SIDECAR_INBOUND {
			p.miss("ADD of a LISTENER in context SIDECAR_INBOUND: istiod adds inbound listeners to no proxy's listener list")
			continue
		}
		nl := proto.Clone(p.Value).(*listenerv3.Listener)
		kept = append(kept, nl)
		p.hit(fmt.Sprintf("listener %q added", nl.GetName()))
	}
	sr.Listeners = kept
	return nil
}

func patchFilterChains(ps patchSet, l *listenerv3.Listener, ctx networking.EnvoyFilter_PatchContext) error {
	where := fmt.Sprintf("listener %q", l.GetName())
	var kept []*listenerv3.FilterChain
	for i, fc := range l.FilterChains {
		fwhere := fmt.Sprintf("%s filter_chains[%d]", where, i)
		removed := false
		for _, p := range ps[networking.EnvoyFilter_FILTER_CHAIN] {
			if p.Op == networking.EnvoyFilter_Patch_ADD || !contextMatch(p, ctx, where) || !listenerMatch(p, l) || !filterChainMatch(p, l, fc) {
				continue
			}
			p.hit(fwhere)
			if p.Op == networking.EnvoyFilter_Patch_REMOVE {
				removed = true
				break
			}
			mergeFilterChain(p, fc)
		}
		if removed {
			continue
		}
		if err := patchNetworkFilters(ps, l, ctx, fc, fwhere); err != nil {
			return err
		}
		kept = append(kept, fc)
	}
	for _, p := range ps[networking.EnvoyFilter_FILTER_CHAIN] {
		if p.Op != networking.EnvoyFilter_Patch_ADD || !contextMatch(p, ctx, where) || !listenerMatch(p, l) {
			continue
		}
		kept = append(kept, proto.Clone(p.Value).(*listenerv3.FilterChain))
		p.hit(where + " filter chain added")
	}
	l.FilterChains = kept
	return nil
}

// mergeFilterChain merges a FILTER_CHAIN value; a transport socket of the
// same name is merged inside its typed config (istiod's
// mergeTransportSocketListener).
func mergeFilterChain(p *Patch, fc *listenerv3.FilterChain) {
	v := p.Value.(*listenerv3.FilterChain)
	if ts := v.GetTransportSocket(); ts != nil && fc.GetTransportSocket() != nil && ts.GetName() == fc.GetTransportSocket().GetName() {
		if merged, err := mergeAny(fc.GetTransportSocket().GetTypedConfig(), ts.GetTypedConfig()); err == nil && merged != nil {
			fc.GetTransportSocket().ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: merged}
		}
		rest := proto.Clone(v).(*listenerv3.FilterChain)
		rest.TransportSocket = nil
		mergeValue(p.Op, fc, rest)
		return
	}
	mergeValue(p.Op, fc, v)
}

func patchNetworkFilters(ps patchSet, l *listenerv3.Listener, ctx networking.EnvoyFilter_PatchContext, fc *listenerv3.FilterChain, where string) error {
	for _, p := range ps[networking.EnvoyFilter_NETWORK_FILTER] {
		if !contextMatch(p, ctx, where) || !listenerMatch(p, l) || !filterChainMatch(p, l, fc) {
			continue
		}
		value := func() *listenerv3.Filter { return proto.Clone(p.Value).(*listenerv3.Filter) }
		match := func(f *listenerv3.Filter) bool { return networkFilterMatch(p, f) }
		applied := applyListOp(p, &fc.Filters, value, match, hasNetworkFilterMatch(p))
		if applied {
			p.hit(where)
		} else if p.Op != networking.EnvoyFilter_Patch_MERGE {
			p.miss("filterChain.filter.name %q: no such network filter in %s", p.Match.GetListener().GetFilterChain().GetFilter().GetName(), where)
		}
	}
	for i, f := range fc.Filters {
		fwhere := fmt.Sprintf("%s filters[%d] %q", where, i, f.GetName())
		for _, p := range ps[networking.EnvoyFilter_NETWORK_FILTER] {
			if p.Op != networking.EnvoyFilter_Patch_MERGE || !contextMatch(p, ctx, where) || !listenerMatch(p, l) || !filterChainMatch(p, l, fc) {
				continue
			}
			if !networkFilterMatch(p, f) {
				p.miss("filterChain.filter.name %q: no such network filter in %s", p.Match.GetListener().GetFilterChain().GetFilter().GetName(), where)
				continue
			}
			v := p.Value.(*listenerv3.Filter)
			if v.GetName() != "" {
				f.Name = v.GetName()
			}
			if v.GetTypedConfig() != nil && f.GetTypedConfig() != nil {
				if merged, err := mergeAny(f.GetTypedConfig(), v.GetTypedConfig()); err == nil {
					f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: merged}
				} else {
					p.miss("%s: %v", fwhere, err)
					continue
				}
			}
			p.hit(fwhere)
		}
		if canonicalName(f.GetName()) == "envoy.filters.network.http_connection_manager" {
			if err := patchHCM(ps, l, ctx, fc, f, fwhere); err != nil {
				return err
			}
		}
	}
	return nil
}

// applyListOp runs the list operations (everything but MERGE) of a
// NETWORK_FILTER, HTTP_FILTER or HTTP_ROUTE patch on list, with istiod's
// rules: INSERT_BEFORE without a match inserts first, INSERT_AFTER
// without one appends, REPLACE and REMOVE without one do nothing. It
// reports whether the list changed.
func applyListOp[E any](p *Patch, list *[]E, value func() E, match func(E) bool, hasMatch bool) bool {
	s := *list
	switch p.Op {
	case networking.EnvoyFilter_Patch_ADD:
		*list = append(s, value())
		return true
	case networking.EnvoyFilter_Patch_INSERT_FIRST:
		*list = append([]E{value()}, s...)
		return true
	case networking.EnvoyFilter_Patch_INSERT_BEFORE, networking.EnvoyFilter_Patch_INSERT_AFTER:
		if !hasMatch {
			if p.Op == networking.EnvoyFilter_Patch_INSERT_BEFORE {
				*list = append([]E{value()}, s...)
			} else {
				*list = append(s, value())
			}
			return true
		}
		for i, e := range s {
			if match(e) {
				at := i
				if p.Op == networking.EnvoyFilter_Patch_INSERT_AFTER {
					at = i + 1
				}
				out := append(append(append([]E{}, s[:at]...), value()), s[at:]...)
				*list = out
				return true
			}
		}
		return false
	case networking.EnvoyFilter_Patch_REPLACE:
		for i, e := range s {
			if match(e) {
				s[i] = value()
				return true
			}
		}
		return false
	case networking.EnvoyFilter_Patch_REMOVE:
		if !hasMatch {
			return false
		}
		var out []E
		for _, e := range s {
			if !match(e) {
				out = append(out, e)
			}
		}
		*list = out
		return len(out) != len(s)
	}
	return false
}

func patchHCM(ps patchSet, l *listenerv3.Listener, ctx networking.EnvoyFilter_PatchContext, fc *listenerv3.FilterChain, f *listenerv3.Filter, where string) error {
	if f.GetTypedConfig() == nil {
		return nil
	}
	h := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
		return nil // the config's own validation names it
	}
	changed := false
	for _, p := range ps[networking.EnvoyFilter_HTTP_FILTER] {
		if !contextMatch(p, ctx, where) || !listenerMatch(p, l) || !filterChainMatch(p, l, fc) || !networkFilterMatch(p, f) {
			if hasNetworkFilterMatch(p) && !networkFilterMatch(p, f) {
				p.miss("filterChain.filter.name %q: %s is %q", p.Match.GetListener().GetFilterChain().GetFilter().GetName(), where, f.GetName())
			}
			continue
		}
		if p.Op == networking.EnvoyFilter_Patch_MERGE {
			continue
		}
		value := func() *hcmv3.HttpFilter { return proto.Clone(p.Value).(*hcmv3.HttpFilter) }
		match := func(hf *hcmv3.HttpFilter) bool { return httpFilterMatch(p, hf) }
		if applyListOp(p, &h.HttpFilters, value, match, hasHTTPFilterMatch(p)) {
			p.hit(where + " http_filters")
			changed = true
		} else {
			p.miss("subFilter.name %q: no such HTTP filter in %s", p.Match.GetListener().GetFilterChain().GetFilter().GetSubFilter().GetName(), where)
		}
	}
	for i, hf := range h.HttpFilters {
		hwhere := fmt.Sprintf("%s http_filters[%d] %q", where, i, hf.GetName())
		for _, p := range ps[networking.EnvoyFilter_HTTP_FILTER] {
			if p.Op != networking.EnvoyFilter_Patch_MERGE || !contextMatch(p, ctx, where) || !listenerMatch(p, l) || !filterChainMatch(p, l, fc) || !networkFilterMatch(p, f) {
				continue
			}
			if !httpFilterMatch(p, hf) {
				p.miss("subFilter.name %q: no such HTTP filter in %s", p.Match.GetListener().GetFilterChain().GetFilter().GetSubFilter().GetName(), where)
				continue
			}
			if hf.GetTypedConfig() == nil {
				p.miss("%s has no typed_config to merge into", hwhere)
				continue
			}
			v := p.Value.(*hcmv3.HttpFilter)
			if v.GetName() != "" {
				hf.Name = v.GetName()
			}
			if v.GetTypedConfig() != nil {
				merged, err := mergeAny(hf.GetTypedConfig(), v.GetTypedConfig())
				if err != nil {
					p.miss("%s: %v", hwhere, err)
					continue
				}
				hf.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: merged}
			}
			p.hit(hwhere)
			changed = true
		}
	}
	if rc := h.GetRouteConfig(); rc != nil {
		if patchRouteConfig(ps, l, ctx, rc, where+" route_config") {
			changed = true
		}
	}
	if changed {
		a, err := anypb.New(h)
		if err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
		f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	}
	return nil
}

// patchRouteConfig applies ROUTE_CONFIGURATION, VIRTUAL_HOST and
// HTTP_ROUTE patches to an HTTP connection manager's inline route_config
// (a static bootstrap has no RDS). It reports whether anything changed.
func patchRouteConfig(ps patchSet, l *listenerv3.Listener, ctx networking.EnvoyFilter_PatchContext, rc *routev3.RouteConfiguration, where string) bool {
	changed := false
	rcMatch := func(p *Patch) bool {
		if !contextMatch(p, ctx, where) {
			return false
		}
		m := p.Match.GetRouteConfiguration()
		if m == nil {
			return true
		}
		if m.GetPortNumber() != 0 && m.GetPortNumber() != listenerPortOf(l) {
			p.miss("routeConfiguration.portNumber %d: %s is on port %d", m.GetPortNumber(), where, listenerPortOf(l))
			return false
		}
		if m.GetName() != "" && m.GetName() != rc.GetName() {
			p.miss("routeConfiguration.name %q: %s is named %q", m.GetName(), where, rc.GetName())
			return false
		}
		if m.GetPortName() != "" || m.GetGateway() != "" {
			p.miss("routeConfiguration.portName/gateway name Istio Gateway servers, which a static bootstrap has none of")
			return false
		}
		return true
	}
	vhMatch := func(p *Patch, vh *routev3.VirtualHost) bool {
		m := p.Match.GetRouteConfiguration().GetVhost()
		if m.GetName() != "" && m.GetName() != vh.GetName() {
			p.miss("routeConfiguration.vhost.name %q: no such virtual host in %s", m.GetName(), where)
			return false
		}
		return true
	}
	routeMatch := func(p *Patch, r *routev3.Route) bool {
		m := p.Match.GetRouteConfiguration().GetVhost().GetRoute()
		if m == nil {
			return true
		}
		if m.GetName() != "" && m.GetName() != r.GetName() {
			return false
		}
		switch m.GetAction() {
		case networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch_ROUTE:
			return r.GetRoute() != nil
		case networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch_REDIRECT:
			return r.GetRedirect() != nil
		case networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch_DIRECT_RESPONSE:
			return r.GetDirectResponse() != nil
		}
		return true
	}
	for _, p := range ps[networking.EnvoyFilter_ROUTE_CONFIGURATION] {
		if rcMatch(p) {
			mergeValue(p.Op, rc, p.Value)
			p.hit(where)
			changed = true
		}
	}
	var vhs []*routev3.VirtualHost
	for _, vh := range rc.VirtualHosts {
		removed := false
		for _, p := range ps[networking.EnvoyFilter_VIRTUAL_HOST] {
			if p.Op == networking.EnvoyFilter_Patch_ADD || !rcMatch(p) || !vhMatch(p, vh) {
				continue
			}
			p.hit(fmt.Sprintf("%s virtual host %q", where, vh.GetName()))
			changed = true
			if p.Op == networking.EnvoyFilter_Patch_REMOVE {
				removed = true
				break
			}
			mergeValue(p.Op, vh, p.Value)
		}
		if removed {
			continue
		}
		for _, p := range ps[networking.EnvoyFilter_HTTP_ROUTE] {
			if !rcMatch(p) || !vhMatch(p, vh) {
				continue
			}
			vwhere := fmt.Sprintf("%s virtual host %q", where, vh.GetName())
			if p.Op == networking.EnvoyFilter_Patch_MERGE || p.Op == networking.EnvoyFilter_Patch_MERGE_AND_REPLACE_LIST {
				n := 0
				for _, r := range vh.Routes {
					if routeMatch(p, r) {
						mergeValue(p.Op, r, p.Value)
						n++
					}
				}
				if n > 0 {
					p.hit(vwhere)
					changed = true
				} else {
					p.miss("routeConfiguration.vhost.route: no matching route in %s", vwhere)
				}
				continue
			}
			has := p.Match.GetRouteConfiguration().GetVhost().GetRoute() != nil
			value := func() *routev3.Route { return proto.Clone(p.Value).(*routev3.Route) }
			if applyListOp(p, &vh.Routes, value, func(r *routev3.Route) bool { return routeMatch(p, r) }, has) {
				p.hit(vwhere)
				changed = true
			} else {
				p.miss("routeConfiguration.vhost.route: no matching route in %s", vwhere)
			}
		}
		vhs = append(vhs, vh)
	}
	for _, p := range ps[networking.EnvoyFilter_VIRTUAL_HOST] {
		if p.Op == networking.EnvoyFilter_Patch_ADD && rcMatch(p) {
			vhs = append(vhs, proto.Clone(p.Value).(*routev3.VirtualHost))
			p.hit(where + " virtual host added")
			changed = true
		}
	}
	rc.VirtualHosts = vhs
	return changed
}

// patchClusters applies CLUSTER patches. Clusters of a static bootstrap
// are this proxy's upstreams: they match contexts ANY, GATEWAY and
// SIDECAR_OUTBOUND, never SIDECAR_INBOUND (istiod's inbound|port clusters
// point at the local application, which a static bootstrap does not
// tell apart).
func patchClusters(ps patchSet, sr *bootstrapv3.Bootstrap_StaticResources) {
	ctxOK := func(p *Patch) bool {
		if p.Match.GetContext() == networking.EnvoyFilter_SIDECAR_INBOUND {
			p.miss("context SIDECAR_INBOUND: the bootstrap's clusters are upstream (outbound/gateway) clusters")
			return false
		}
		return true
	}
	clusterMatch := func(p *Patch, c *clusterv3.Cluster) bool {
		m := p.Match.GetCluster()
		if m == nil {
			return true
		}
		if m.GetName() != "" {
			if m.GetName() != c.GetName() {
				p.miss("cluster.name %q: no cluster of that name", m.GetName())
				return false
			}
			return true
		}
		// istiod's subset key: outbound|port|subset|service.
		parts := strings.Split(c.GetName(), "|")
		if len(parts) != 4 {
			p.miss("cluster.service/portNumber/subset match Istio cluster names (outbound|port|subset|host); %q is not one", c.GetName())
			return false
		}
		if m.GetService() != "" && m.GetService() != parts[3] ||
			m.GetPortNumber() != 0 && fmt.Sprint(m.GetPortNumber()) != parts[1] ||
			m.GetSubset() != "" && m.GetSubset() != parts[2] {
			p.miss("cluster match: %q differs", c.GetName())
			return false
		}
		return true
	}
	var kept []*clusterv3.Cluster
	for _, c := range sr.Clusters {
		removed := false
		for _, p := range ps[networking.EnvoyFilter_CLUSTER] {
			if p.Op == networking.EnvoyFilter_Patch_ADD || !ctxOK(p) || !clusterMatch(p, c) {
				continue
			}
			p.hit(fmt.Sprintf("cluster %q", c.GetName()))
			if p.Op == networking.EnvoyFilter_Patch_REMOVE {
				removed = true
				break
			}
			v := p.Value.(*clusterv3.Cluster)
			if ts := v.GetTransportSocket(); ts != nil && c.GetTransportSocket() != nil && ts.GetName() == c.GetTransportSocket().GetName() {
				if merged, err := mergeAny(c.GetTransportSocket().GetTypedConfig(), ts.GetTypedConfig()); err == nil {
					c.GetTransportSocket().ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: merged}
				}
				continue
			}
			mergeValue(p.Op, c, v)
		}
		if !removed {
			kept = append(kept, c)
		}
	}
	for _, p := range ps[networking.EnvoyFilter_CLUSTER] {
		if p.Op == networking.EnvoyFilter_Patch_ADD && ctxOK(p) {
			nc := proto.Clone(p.Value).(*clusterv3.Cluster)
			kept = append(kept, nc)
			p.hit(fmt.Sprintf("cluster %q added", nc.GetName()))
		}
	}
	sr.Clusters = kept
}

// mergeValue is MERGE (proto.Merge: scalars replaced, messages merged,
// lists appended) or MERGE_AND_REPLACE_LIST (lists set in src replace
// dst's).
func mergeValue(op networking.EnvoyFilter_Patch_Operation, dst, src proto.Message) {
	if op == networking.EnvoyFilter_Patch_MERGE_AND_REPLACE_LIST {
		clearListsSetIn(dst.ProtoReflect(), src.ProtoReflect())
	}
	proto.Merge(dst, src)
}

func clearListsSetIn(dst, src protoreflect.Message) {
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			dst.Clear(fd)
		case fd.Message() != nil && !fd.IsMap() && dst.Has(fd):
			clearListsSetIn(dst.Mutable(fd).Message(), v.Message())
		}
		return true
	})
}

// mergeAny merges src into dst inside their type (istiod's
// MergeAnyWithAny): both must carry the same message type.
func mergeAny(dst, src *anypb.Any) (*anypb.Any, error) {
	if dst.GetTypeUrl() != src.GetTypeUrl() {
		return nil, fmt.Errorf("typed_config %s cannot merge into %s", src.GetTypeUrl(), dst.GetTypeUrl())
	}
	d, err := dst.UnmarshalNew()
	if err != nil {
		return nil, err
	}
	s, err := src.UnmarshalNew()
	if err != nil {
		return nil, err
	}
	proto.Merge(d, s)
	return anypb.New(d)
}
