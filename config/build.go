package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/wasmproxy/wasmproxy/filters"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	httpwasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Envoy's defaults for fields the model always carries.
const (
	defaultBufferLimit         = 1 << 20 // per_connection_buffer_limit_bytes
	defaultServerName          = "wasmproxy"
	defaultMaxRequestHeadersKB = 60
	defaultRouteTimeout        = 15 * time.Second
	defaultConnectTimeout      = 5 * time.Second
	defaultDNSRefreshRate      = 5 * time.Second
)

// Wasm runtimes a config may name. All run on wazero; the null runtime
// (code compiled into Envoy) has no module to run.
var acceptedRuntimes = map[string]bool{
	"":                            true,
	"envoy.wasm.runtime.v8":       true,
	"envoy.wasm.runtime.wasmtime": true,
	"envoy.wasm.runtime.wamr":     true,
	"envoy.wasm.runtime.wavm":     true,
}

const nullRuntime = "envoy.wasm.runtime.null"

// The enum values the model implements; any other is "not supported yet".
var (
	codecs = map[hcmv3.HttpConnectionManager_CodecType]Codec{
		hcmv3.HttpConnectionManager_AUTO:  CodecAuto,
		hcmv3.HttpConnectionManager_HTTP1: CodecHTTP1,
		hcmv3.HttpConnectionManager_HTTP2: CodecHTTP2,
	}
	failurePolicies = map[wasmv3.FailurePolicy]FailurePolicy{
		// Envoy's default is FAIL_CLOSED; ours replaces a poisoned
		// instance as well (FailDefault).
		wasmv3.FailurePolicy_UNSPECIFIED: FailDefault,
		wasmv3.FailurePolicy_FAIL_CLOSED: FailClosed,
		wasmv3.FailurePolicy_FAIL_OPEN:   FailOpen,
		wasmv3.FailurePolicy_FAIL_RELOAD: FailReload,
	}
	clusterTypes = map[clusterv3.Cluster_DiscoveryType]ClusterType{
		clusterv3.Cluster_STATIC:      ClusterStatic,
		clusterv3.Cluster_STRICT_DNS:  ClusterStrictDNS,
		clusterv3.Cluster_LOGICAL_DNS: ClusterLogicalDNS,
	}
	lbPolicies = map[clusterv3.Cluster_LbPolicy]LBPolicy{
		clusterv3.Cluster_ROUND_ROBIN:   LBRoundRobin,
		clusterv3.Cluster_RANDOM:        LBRandom,
		clusterv3.Cluster_LEAST_REQUEST: LBLeastRequest,
		clusterv3.Cluster_RING_HASH:     LBRingHash,
		clusterv3.Cluster_MAGLEV:        LBMaglev,
	}
)

// buildBootstrap maps a validated bootstrap, whose fields checkSupported
// has accepted, into the model, filling Envoy's defaults and checking the
// rules Envoy applies across fields.
func buildBootstrap(pb *bootstrapv3.Bootstrap) (*Bootstrap, error) {
	b := &Bootstrap{Listeners: []*Listener{}, Clusters: []*Cluster{}}
	if node := pb.GetNode(); node != nil {
		raw, err := nodeProto(pb)
		if err != nil {
			return nil, fieldError("node", "%v", err)
		}
		b.Node = &Node{ID: node.GetId(), Cluster: node.GetCluster(), Proto: raw}
	}
	if addr := pb.GetAdmin().GetAddress(); addr != nil {
		// Envoy starts no admin server when admin has no address.
		hostPort, err := socketAddress(addr, "admin.address", true)
		if err != nil {
			return nil, err
		}
		b.Admin = &Admin{Address: hostPort}
	}

	var err error
	if b.Runtime, err = buildRuntime(pb.GetLayeredRuntime(), pb.GetNode().GetCluster()); err != nil {
		return nil, err
	}

	for i, pc := range pb.GetStaticResources().GetClusters() {
		c, err := buildCluster(pc, indexPath("static_resources.clusters", i))
		if err != nil {
			return nil, err
		}
		b.Clusters = append(b.Clusters, c)
	}

	// Envoy refuses a local cluster it does not have; wasmproxy has no
	// zone-aware routing to use it for, but keeps the check.
	if name := pb.GetClusterManager().GetLocalClusterName(); name != "" {
		found := false
		for _, c := range b.Clusters {
			found = found || c.Name == name
		}
		if !found {
			return nil, fieldError("cluster_manager.local_cluster_name", "local cluster %q must be defined in static_resources.clusters", name)
		}
	}

	listenerAddrs := map[string]int{}
	for i, pl := range pb.GetStaticResources().GetListeners() {
		path := indexPath("static_resources.listeners", i)
		l, err := buildListener(pl, path)
		if err != nil {
			return nil, err
		}
		if first, dup := listenerAddrs[l.Address]; dup {
			return nil, fieldError(joinPath(path, "address"), "%s is also the address of static_resources.listeners[%d]", l.Address, first)
		}
		listenerAddrs[l.Address] = i
		b.Listeners = append(b.Listeners, l)
	}
	if b.Tracer, err = buildBootstrapTracer(pb.GetTracing()); err != nil { // build_tracing.go
		return nil, err
	}
	// Names unique, routes and tcp_proxy naming known clusters (check.go).
	if err := b.check(); err != nil {
		return nil, err
	}
	if err := buildBootstrapExtras(b, pb); err != nil { // build_bootstrap.go
		return nil, err
	}
	return b, nil
}

// socketAddress returns "host:port" for addr. Envoy binds listeners and
// the admin server, and connects STATIC clusters, to IP addresses only
// (requireIP); DNS clusters take host names.
func socketAddress(addr *corev3.Address, path string, requireIP bool) (string, error) {
	sa := addr.GetSocketAddress()
	if sa == nil {
		return "", fieldError(path, "missing socket_address")
	}
	host := sa.GetAddress()
	if requireIP && net.ParseIP(host) == nil {
		return "", fieldError(joinPath(path, "socket_address.address"), "%q is not an IP address", host)
	}
	return net.JoinHostPort(host, strconv.FormatUint(uint64(sa.GetPortValue()), 10)), nil
}

func buildListener(pl *listenerv3.Listener, path string) (*Listener, error) {
	if pl.GetAddress() == nil {
		return nil, fieldError(joinPath(path, "address"), "missing")
	}
	hostPort, err := socketAddress(pl.GetAddress(), joinPath(path, "address"), true)
	if err != nil {
		return nil, err
	}
	l := &Listener{
		Name:                          pl.GetName(),
		Address:                       hostPort,
		PerConnectionBufferLimitBytes: uint32Or(pl.GetPerConnectionBufferLimitBytes(), defaultBufferLimit),
		Metadata:                      buildMetadata(pl.GetMetadata()),
	}
	l.StatPrefix = pl.GetStatPrefix()
	if d := pl.GetTrafficDirection(); d != corev3.TrafficDirection_UNSPECIFIED {
		l.TrafficDirection = d.String()
	}
	// enable_reuse_port defaults to true (Envoy's listener_impl); the
	// deprecated reuse_port is not read (refused by the allow-list).
	if v := pl.GetEnableReusePort(); v != nil && !v.GetValue() {
		l.DisableReusePort = true
	}
	l.IgnoreGlobalConnLimit = pl.GetIgnoreGlobalConnLimit()

	if err := buildListenerFilters(pl.GetListenerFilters(), joinPath(path, "listener_filters"), l); err != nil {
		return nil, err
	}
	l.FilterChains, err = buildFilterChains(pl.GetFilterChains(), joinPath(path, "filter_chains"))
	if err != nil {
		return nil, err
	}
	return l, nil
}

func buildHCM(pb *hcmv3.HttpConnectionManager, path string) (*HTTPConnectionManager, error) {
	h := &HTTPConnectionManager{
		StatPrefix:          pb.GetStatPrefix(),
		ServerName:          pb.GetServerName(),
		MaxRequestHeadersKB: uint32Or(pb.GetMaxRequestHeadersKb(), defaultMaxRequestHeadersKB),
	}
	if h.ServerName == "" {
		h.ServerName = defaultServerName
	}
	var ok bool
	if h.Codec, ok = codecs[pb.GetCodecType()]; !ok {
		return nil, notSupported(joinPath(path, "codec_type"), pb.GetCodecType().String())
	}
	if err := buildHCMTimeouts(pb, path, h); err != nil {
		return nil, err
	}
	h.StripMatchingHostPort = pb.GetStripMatchingHostPort()
	h.StripAnyHostPort = pb.GetStripAnyHostPort()
	if h.StripMatchingHostPort && h.StripAnyHostPort {
		return nil, fieldError(joinPath(path, "strip_any_host_port"), "only one of strip_matching_host_port and strip_any_host_port can be set (as on Envoy)")
	}

	rc := pb.GetRouteConfig()
	if rc == nil {
		return nil, fieldError(joinPath(path, "route_config"), "missing (an inline route_config is required)")
	}
	var err error
	h.Routes, err = buildRouteConfig(rc, joinPath(path, "route_config"))
	if err != nil {
		return nil, err
	}

	if h.Filters, err = buildHTTPFilters(pb.GetHttpFilters(), joinPath(path, "http_filters"), h.StatPrefix); err != nil {
		return nil, err
	}
	if h.AccessLogs, err = buildAccessLogs(pb.GetAccessLog(), joinPath(path, "access_log")); err != nil {
		return nil, err
	}
	if err := collectWasmRouteConfigs(h, path); err != nil {
		return nil, err
	}
	applyLegacyCors(h)
	buildRequestID(pb, h)
	if h.Tracing, err = buildTracing(pb.GetTracing(), joinPath(path, "tracing")); err != nil {
		return nil, err
	}
	if err := buildHCMRequestHandling(pb, path, h); err != nil { // build_hcm.go
		return nil, err
	}
	return h, nil
}

// Envoy's defaults for the connection manager's timeouts and limits.
const (
	defaultIdleTimeout       = time.Hour
	defaultStreamIdleTimeout = 5 * time.Minute
	defaultMaxHeadersCount   = 100
)

// buildHCMTimeouts reads the connection manager's timeouts, protocol
// options and header limits, with Envoy's defaults where a field is
// unset (an explicit 0 turns idle_timeout and stream_idle_timeout off).
func buildHCMTimeouts(pb *hcmv3.HttpConnectionManager, path string, h *HTTPConnectionManager) error {
	h.IdleTimeout = Duration(defaultIdleTimeout)
	h.StreamIdleTimeout = Duration(defaultStreamIdleTimeout)
	h.MaxHeadersCount = defaultMaxHeadersCount
	type durationField struct {
		d    *durationpb.Duration
		path string
		to   *Duration
	}
	durations := []durationField{
		{pb.GetRequestHeadersTimeout(), joinPath(path, "request_headers_timeout"), &h.RequestHeadersTimeout},
		{pb.GetStreamIdleTimeout(), joinPath(path, "stream_idle_timeout"), &h.StreamIdleTimeout},
		{pb.GetRequestTimeout(), joinPath(path, "request_timeout"), &h.RequestTimeout},
	}
	common := joinPath(path, "common_http_protocol_options")
	if o := pb.GetCommonHttpProtocolOptions(); o != nil {
		durations = append(durations,
			durationField{o.GetIdleTimeout(), joinPath(common, "idle_timeout"), &h.IdleTimeout},
			durationField{o.GetMaxConnectionDuration(), joinPath(common, "max_connection_duration"), &h.MaxConnectionDuration},
			durationField{o.GetMaxStreamDuration(), joinPath(common, "max_stream_duration"), &h.MaxStreamDuration},
		)
		if o.GetMaxRequestsPerConnection() != nil {
			return notSupported(joinPath(common, "max_requests_per_connection"), "on the connection manager (supported on clusters)")
		}
		if a := o.GetHeadersWithUnderscoresAction(); a != corev3.HttpProtocolOptions_ALLOW {
			h.HeadersWithUnderscoresAction = a.String()
		}
		if n := o.GetMaxHeadersCount(); n != nil {
			if n.GetValue() < 1 {
				return fieldError(joinPath(common, "max_headers_count"), "must be at least 1")
			}
			h.MaxHeadersCount = n.GetValue()
		}
	}
	for _, d := range durations {
		if d.d == nil {
			continue
		}
		v, err := nonNegative(d.d, d.path)
		if err != nil {
			return err
		}
		*d.to = v
	}
	if o := pb.GetHttpProtocolOptions(); o != nil {
		h.AcceptHTTP10 = o.GetAcceptHttp_10()
		h.DefaultHostForHTTP10 = o.GetDefaultHostForHttp_10()
	}
	if err := buildHCMCodec(pb, path, h); err != nil { // codec.go
		return err
	}
	if o := pb.GetHttp2ProtocolOptions(); o != nil {
		if err := buildHTTP2Options(o, joinPath(path, "http2_protocol_options"), &h.HTTP2); err != nil { // http2.go
			return err
		}
	}
	var err error
	if h.UpgradeTypes, h.UpgradeFilters, err = buildHCMUpgrades(pb.GetUpgradeConfigs(), path, h.StatPrefix); err != nil { // upgrade.go
		return err
	}
	return nil
}

// buildHTTPFilters reads a connection manager's list of HTTP filters
// (its http_filters, or an upgrade_configs entry's filters): the router
// last, and not disabled.
func buildHTTPFilters(pbs []*hcmv3.HttpFilter, filtersPath, statPrefix string) ([]*HTTPFilter, error) {
	var out []*HTTPFilter
	for i, hf := range pbs {
		f, err := buildHTTPFilter(hf, indexPath(filtersPath, i))
		if err != nil {
			return nil, err
		}
		if len(out) > 0 && out[len(out)-1].Router {
			return nil, fieldError(indexPath(filtersPath, i-1), "the router (%s) must be the last HTTP filter", out[i-1].Name)
		}
		if f.Router && f.Disabled {
			// Envoy refuses a terminal filter disabled by default.
			return nil, fieldError(joinPath(indexPath(filtersPath, i), "disabled"), "the router (%s) cannot be disabled", f.Name)
		}
		if f.Native != nil {
			f.Native.StatPrefix = "http." + statPrefix + "."
		}
		out = append(out, f)
	}
	if len(out) == 0 || !out[len(out)-1].Router {
		return nil, fieldError(filtersPath, "the last HTTP filter must be the router (envoy.filters.http.router)")
	}
	return out, nil
}

func buildHTTPFilter(pb *hcmv3.HttpFilter, path string) (*HTTPFilter, error) {
	f := &HTTPFilter{Name: pb.GetName(), Disabled: pb.GetDisabled()}
	payload, payloadPath, err := unpackAny(pb.GetTypedConfig(), joinPath(path, "typed_config"))
	if err != nil {
		return nil, err
	}
	switch p := payload.(type) {
	case *routerv3.Router:
		f.Router = true
		f.StartChildSpan = p.GetStartChildSpan()
	case *httpwasmv3.Wasm:
		f.Wasm, err = buildWasmPlugin(p.GetConfig(), joinPath(payloadPath, "config"))
		if err != nil {
			return nil, err
		}
	case nil:
		// No typed_config (or typed_config: {}): Envoy picks the filter
		// by name, which only the router can do without config.
		switch {
		case routerFilterNames[f.Name]:
			f.Router = true
		case httpWasmFilterNames[f.Name]:
			return nil, fieldError(joinPath(path, "typed_config"), "missing: %s needs its Wasm config", f.Name)
		case filters.LookupName(f.Name) != nil:
			native := filters.LookupName(f.Name)
			cfg, err := native.Parse(nil, joinPath(path, "typed_config"))
			if err != nil {
				return nil, asConfigError(err, joinPath(path, "typed_config"))
			}
			f.Native = &NativeFilter{Type: string(native.Config), Config: cfg}
		default:
			return nil, notSupported(path, fmt.Sprintf("HTTP filter %q", f.Name))
		}
	default:
		native := filters.Lookup(messageName(p))
		if native == nil || (native.Internal && f.Name != native.Name) {
			return nil, notSupported(joinPath(path, "typed_config"), string(messageName(p)))
		}
		cfg, err := native.Parse(p, payloadPath)
		if err != nil {
			return nil, asConfigError(err, payloadPath)
		}
		f.Native = &NativeFilter{Type: string(native.Config), Config: cfg}
	}
	return f, nil
}

func buildWasmPlugin(pc *wasmv3.PluginConfig, path string) (*WasmPlugin, error) {
	if pc == nil {
		return nil, fieldError(path, "missing")
	}
	vm := pc.GetVmConfig()
	vmPath := joinPath(path, "vm_config")
	if vm == nil {
		return nil, fieldError(vmPath, "missing: the plugin needs a vm_config with its code")
	}
	w := &WasmPlugin{
		Name:                        pc.GetName(),
		RootID:                      pc.GetRootId(),
		VMID:                        vm.GetVmId(),
		Runtime:                     vm.GetRuntime(),
		AllowOnHeadersStopIteration: pc.GetAllowOnHeadersStopIteration().GetValue(),
	}
	// capability_restriction_config: Envoy's stub behaviour, the
	// allow-list's keys (sanitization configs are empty in Envoy).
	for name := range pc.GetCapabilityRestrictionConfig().GetAllowedCapabilities() {
		w.AllowedCapabilities = append(w.AllowedCapabilities, name)
	}
	sort.Strings(w.AllowedCapabilities)
	switch {
	case w.Runtime == nullRuntime:
		return nil, notSupported(joinPath(vmPath, "runtime"), nullRuntime+" (plugins compiled into Envoy); wasmproxy runs Wasm modules only")
	case !acceptedRuntimes[w.Runtime]:
		return nil, fieldError(joinPath(vmPath, "runtime"), "unknown runtime %q (envoy.wasm.runtime.v8, .wasmtime, .wamr or .wavm; all run on wazero)", w.Runtime)
	}

	codePath := joinPath(vmPath, "code")
	local := vm.GetCode().GetLocal()
	if remote := vm.GetCode().GetRemote(); remote != nil {
		var err error
		if w.Remote, err = buildRemoteCode(remote, joinPath(codePath, "remote")); err != nil {
			return nil, err
		}
	} else if local == nil {
		return nil, fieldError(codePath, "missing: the plugin needs code.local (filename, inline_bytes or inline_string) or code.remote")
	}
	localPath := joinPath(codePath, "local")
	switch s := local.GetSpecifier().(type) {
	case *corev3.DataSource_Filename:
		w.CodeFile = s.Filename
	case *corev3.DataSource_InlineBytes:
		w.Code = s.InlineBytes
	case *corev3.DataSource_InlineString:
		w.Code = []byte(s.InlineString)
	case nil:
		if w.Remote == nil {
			return nil, fieldError(localPath, "missing filename, inline_bytes or inline_string")
		}
	default:
		return nil, fieldError(localPath, "missing filename, inline_bytes or inline_string")
	}
	if w.CodeFile == "" && len(w.Code) == 0 && w.Remote == nil {
		return nil, fieldError(localPath, "the code is empty")
	}

	var err error
	if w.VMConfiguration, err = configurationBytes(vm.GetConfiguration(), joinPath(vmPath, "configuration")); err != nil {
		return nil, err
	}
	if w.PluginConfiguration, err = configurationBytes(pc.GetConfiguration(), joinPath(path, "configuration")); err != nil {
		return nil, err
	}

	if env := vm.GetEnvironmentVariables(); env != nil {
		envPath := joinPath(vmPath, "environment_variables")
		w.EnvHostKeys = env.GetHostEnvKeys()
		fromHost := map[string]bool{}
		for _, key := range w.EnvHostKeys {
			fromHost[key] = true
		}
		for key, value := range env.GetKeyValues() {
			if fromHost[key] {
				return nil, fieldError(keyPath(joinPath(envPath, "key_values"), key), "%q is also in host_env_keys", key)
			}
			if w.EnvKeyValues == nil {
				w.EnvKeyValues = map[string]string{}
			}
			w.EnvKeyValues[key] = value
		}
	}

	policy := pc.GetFailurePolicy()
	if pc.GetFailOpen() {
		if policy != wasmv3.FailurePolicy_UNSPECIFIED {
			return nil, fieldError(joinPath(path, "fail_open"), "set together with failure_policy; use failure_policy only")
		}
		policy = wasmv3.FailurePolicy_FAIL_OPEN
	}
	var ok bool
	if w.FailurePolicy, ok = failurePolicies[policy]; !ok {
		return nil, notSupported(joinPath(path, "failure_policy"), policy.String())
	}
	if b := pc.GetReloadConfig().GetBackoff(); b != nil {
		bpath := joinPath(joinPath(path, "reload_config"), "backoff")
		if w.ReloadBackoff, err = nonNegative(b.GetBaseInterval(), joinPath(bpath, "base_interval")); err != nil {
			return nil, err
		}
		if w.ReloadMaxBackoff, err = nonNegative(b.GetMaxInterval(), joinPath(bpath, "max_interval")); err != nil {
			return nil, err
		}
		if w.ReloadMaxBackoff != 0 && w.ReloadMaxBackoff < w.ReloadBackoff {
			return nil, fieldError(joinPath(bpath, "max_interval"), "less than base_interval")
		}
	}
	return w, nil
}

// configurationBytes is what a plugin reads as its (VM or plugin)
// configuration: a StringValue's string, a BytesValue's bytes, a Struct
// as compact JSON text with sorted keys, any other message in its proto
// binary form.
func configurationBytes(a *anypb.Any, path string) ([]byte, error) {
	if a == nil || a.GetTypeUrl() == "" {
		return nil, nil
	}
	msg, err := a.UnmarshalNew()
	if err != nil {
		return nil, fieldError(path, "cannot decode %q: %v", a.GetTypeUrl(), err)
	}
	var out []byte
	switch m := msg.(type) {
	case *wrapperspb.StringValue:
		out = []byte(m.GetValue())
	case *wrapperspb.BytesValue:
		out = m.GetValue()
	case *structpb.Struct:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(m.AsMap()); err != nil {
			return nil, fieldError(path, "%v", err)
		}
		out = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	default:
		out = a.GetValue()
	}
	// Each instance of the plugin's pool gets a copy (limits.go).
	if len(out) > MaxPluginConfigurationBytes {
		return nil, fieldError(path, "the configuration is %d bytes as the plugin reads it; maximum is %d (16 MiB)", len(out), MaxPluginConfigurationBytes)
	}
	return out, nil
}

func buildRouteConfig(pb *routev3.RouteConfiguration, path string) (*RouteConfig, error) {
	rc := &RouteConfig{Name: pb.GetName(), VirtualHosts: []*VirtualHost{}, IgnorePortInHostMatching: pb.GetIgnorePortInHostMatching(),
		MostSpecificHeaderMutationsWins: pb.GetMostSpecificHeaderMutationsWins()}
	var err error
	if rc.RequestHeaders, rc.ResponseHeaders, err = buildHeaderLevel(pb, path); err != nil {
		return nil, err
	}
	maxBody := uint32Or(pb.GetMaxDirectResponseBodySizeBytes(), DefaultMaxDirectResponseBodyBytes)
	domainOwner := map[string]string{}
	for i, pv := range pb.GetVirtualHosts() {
		vhPath := indexPath(joinPath(path, "virtual_hosts"), i)
		vh := &VirtualHost{Name: pv.GetName(), Domains: pv.GetDomains(), Routes: []*Route{}, Metadata: buildMetadata(pv.GetMetadata())}
		if vh.RequestHeaders, vh.ResponseHeaders, err = buildHeaderLevel(pv, vhPath); err != nil {
			return nil, err
		}
		if vh.RetryPolicy, err = buildRetryPolicy(pv.GetRetryPolicy(), joinPath(vhPath, "retry_policy")); err != nil {
			return nil, err
		}
		vh.IncludeRequestAttemptCount = pv.GetIncludeRequestAttemptCount()
		if v := pv.GetPerRequestBufferLimitBytes(); v != nil {
			n := v.GetValue()
			vh.PerRequestBufferLimitBytes = &n
		}
		if vh.RateLimits, err = buildRateLimits(pv.GetRateLimits(), joinPath(vhPath, "rate_limits")); err != nil {
			return nil, err
		}
		if vh.Cors, err = buildLegacyCors(pv.GetCors(), joinPath(vhPath, "cors")); err != nil {
			return nil, err
		}
		if vh.FilterOverrides, err = buildFilterOverrides(pv.GetTypedPerFilterConfig(), joinPath(vhPath, "typed_per_filter_config")); err != nil {
			return nil, err
		}
		for j, domain := range vh.Domains {
			// Envoy matches domains case-insensitively and allows each
			// once per route configuration (one "*" at most).
			key := strings.ToLower(domain)
			if owner, dup := domainOwner[key]; dup {
				return nil, fieldError(indexPath(joinPath(vhPath, "domains"), j), "duplicate domain %q (also %s)", domain, owner)
			}
			domainOwner[key] = fmt.Sprintf("virtual_hosts[%d].domains[%d]", i, j)
		}
		for j, pr := range pv.GetRoutes() {
			r, err := buildRoute(pr, indexPath(joinPath(vhPath, "routes"), j), maxBody)
			if err != nil {
				return nil, err
			}
			vh.Routes = append(vh.Routes, r)
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	return rc, nil
}

// buildRoute reads one route; a direct response body may be at most
// maxBody bytes (route_config.max_direct_response_body_size_bytes).
func buildRoute(pb *routev3.Route, path string, maxBody uint32) (*Route, error) {
	r := &Route{Name: pb.GetName(), Metadata: buildMetadata(pb.GetMetadata())}
	if v := pb.GetPerRequestBufferLimitBytes(); v != nil {
		n := v.GetValue()
		r.PerRequestBufferLimitBytes = &n
	}
	var err error
	if r.RequestHeaders, r.ResponseHeaders, err = buildHeaderLevel(pb, path); err != nil {
		return nil, err
	}
	if r.Cors, err = buildLegacyCors(pb.GetRoute().GetCors(), joinPath(path, "route.cors")); err != nil {
		return nil, err
	}
	if r.FilterOverrides, err = buildFilterOverrides(pb.GetTypedPerFilterConfig(), joinPath(path, "typed_per_filter_config")); err != nil {
		return nil, err
	}
	if r.Match, err = buildRouteMatch(pb.GetMatch(), joinPath(path, "match")); err != nil {
		return nil, err
	}
	if r.Decorator, err = buildDecorator(pb.GetDecorator(), joinPath(path, "decorator")); err != nil {
		return nil, err
	}
	switch a := pb.GetAction().(type) {
	case *routev3.Route_Route:
		actionPath := joinPath(path, "route")
		if wc := a.Route.GetWeightedClusters(); wc != nil {
			if r.WeightedClusters, err = buildWeightedClusters(wc, joinPath(actionPath, "weighted_clusters")); err != nil {
				return nil, err
			}
		} else if ch := a.Route.GetClusterHeader(); ch != "" {
			r.ClusterHeader = strings.ToLower(ch)
		} else if r.Cluster = a.Route.GetCluster(); r.Cluster == "" {
			return nil, fieldError(actionPath, "missing cluster")
		}
		if r.IdleTimeout, r.MaxStreamDuration, err = buildRouteStreamTimeouts(a.Route, actionPath); err != nil {
			return nil, err
		}
		if r.MirrorPolicies, err = buildMirrorPolicies(a.Route.GetRequestMirrorPolicies(), joinPath(actionPath, "request_mirror_policies")); err != nil {
			return nil, err
		}
		if r.HashPolicy, err = buildHashPolicies(a.Route.GetHashPolicy(), joinPath(actionPath, "hash_policy")); err != nil {
			return nil, err
		}
		if r.Upgrades, r.ConnectConfig, err = buildRouteUpgrades(a.Route.GetUpgradeConfigs(), joinPath(actionPath, "upgrade_configs")); err != nil { // upgrade.go
			return nil, err
		}
		r.PrefixRewrite = a.Route.GetPrefixRewrite()
		if pr := a.Route.GetPathRewritePolicy(); pr != nil {
			if r.PrefixRewrite != "" || a.Route.GetRegexRewrite() != nil {
				// Envoy's words (router/config_impl.cc).
				return nil, fieldError(actionPath, "Specify only one of prefix_rewrite, regex_rewrite or path_rewrite_policy")
			}
			if r.PathTemplateRewrite, err = buildPathRewritePolicy(pr, joinPath(actionPath, "path_rewrite_policy"), r.Match.PathTemplate); err != nil {
				return nil, err
			}
		}
		if r.PrefixRewrite != "" && r.Match.PathTemplate != nil {
			// Envoy would replace the template's text, never a prefix of
			// the path: no config means that.
			return nil, notSupported(joinPath(actionPath, "prefix_rewrite"), "with match.path_match_policy (use path_rewrite_policy)")
		}
		if rr := a.Route.GetRegexRewrite(); rr != nil {
			if r.PrefixRewrite != "" {
				// Envoy's words (router/config_impl.cc).
				return nil, fieldError(actionPath, "Specify only one of prefix_rewrite, regex_rewrite or path_rewrite_policy")
			}
			if r.RegexRewrite, err = buildRegexRewrite(rr, joinPath(actionPath, "regex_rewrite")); err != nil {
				return nil, err
			}
		}
		if r.RetryPolicy, err = buildRetryPolicy(a.Route.GetRetryPolicy(), joinPath(actionPath, "retry_policy")); err != nil {
			return nil, err
		}
		if r.RateLimits, err = buildRateLimits(a.Route.GetRateLimits(), joinPath(actionPath, "rate_limits")); err != nil {
			return nil, err
		}
		r.IncludeVHRateLimits = a.Route.GetIncludeVhRateLimits().GetValue()
		switch h := a.Route.GetHostRewriteSpecifier().(type) {
		case *routev3.RouteAction_HostRewriteLiteral:
			r.HostRewriteLiteral = h.HostRewriteLiteral
		case *routev3.RouteAction_AutoHostRewrite:
			r.AutoHostRewrite = h.AutoHostRewrite.GetValue()
		case *routev3.RouteAction_HostRewriteHeader:
			r.HostRewriteHeader = strings.ToLower(h.HostRewriteHeader)
		}
		r.Timeout = Duration(defaultRouteTimeout)
		if t := a.Route.GetTimeout(); t != nil {
			if r.Timeout, err = nonNegative(t, joinPath(actionPath, "timeout")); err != nil {
				return nil, err
			}
		}
	case *routev3.Route_DirectResponse:
		actionPath := joinPath(path, "direct_response")
		r.DirectResponse = &DirectResponse{Status: int(a.DirectResponse.GetStatus())}
		if body := a.DirectResponse.GetBody(); body != nil {
			switch s := body.GetSpecifier().(type) {
			case *corev3.DataSource_InlineString:
				r.DirectResponse.Body = []byte(s.InlineString)
			case *corev3.DataSource_InlineBytes:
				r.DirectResponse.Body = s.InlineBytes
			case *corev3.DataSource_Filename:
				return nil, notSupported(joinPath(actionPath, "body.filename"), "use inline_string or inline_bytes")
			}
			// Envoy's words (router/config_utility.cc).
			if n := len(r.DirectResponse.Body); n > int(maxBody) {
				return nil, fieldError(joinPath(actionPath, "body"), "response body size is %d bytes; maximum is %d", n, maxBody)
			}
		}
	case *routev3.Route_Redirect:
		if r.Redirect, err = buildRedirect(a.Redirect, joinPath(path, "redirect")); err != nil {
			return nil, err
		}
	default:
		return nil, fieldError(path, "missing route action (route, redirect or direct_response)")
	}
	return r, nil
}

// buildWeightedClusters reads route.weighted_clusters with Envoy's
// checks: every entry names a cluster, the weights add up to more than
// 0 and fit in 32 bits, and to total_weight (deprecated) when it is set.
func buildWeightedClusters(pb *routev3.WeightedCluster, path string) ([]*WeightedCluster, error) {
	var out []*WeightedCluster
	var sum uint64
	for i, pc := range pb.GetClusters() {
		cPath := indexPath(joinPath(path, "clusters"), i)
		c := &WeightedCluster{Name: pc.GetName(), Weight: pc.GetWeight().GetValue()}
		if c.Name == "" {
			return nil, fieldError(joinPath(cPath, "name"), "missing cluster name")
		}
		var err error
		if c.RequestHeaders, c.ResponseHeaders, err = buildHeaderLevel(pc, cPath); err != nil {
			return nil, err
		}
		sum += uint64(c.Weight)
		out = append(out, c)
	}
	// Envoy's words (router/config_impl.cc).
	if sum > math.MaxUint32 {
		return nil, fieldError(path, "the sum of weights of all weighted clusters exceeds %d", uint32(math.MaxUint32))
	}
	if sum == 0 {
		return nil, fieldError(path, "Sum of weights in the weighted_cluster must be greater than 0.")
	}
	if t := pb.GetTotalWeight(); t != nil && uint64(t.GetValue()) != sum {
		return nil, fieldError(joinPath(path, "total_weight"), "Sum of weights in the weighted_cluster should add up to %d (they add up to %d)", t.GetValue(), sum)
	}
	return out, nil
}

// redirectCodes are RedirectAction.response_code's values.
var redirectCodes = map[routev3.RedirectAction_RedirectResponseCode]int{
	routev3.RedirectAction_MOVED_PERMANENTLY:  301,
	routev3.RedirectAction_FOUND:              302,
	routev3.RedirectAction_SEE_OTHER:          303,
	routev3.RedirectAction_TEMPORARY_REDIRECT: 307,
	routev3.RedirectAction_PERMANENT_REDIRECT: 308,
}

func buildRedirect(pb *routev3.RedirectAction, path string) (*Redirect, error) {
	rd := &Redirect{Host: pb.GetHostRedirect(), Port: pb.GetPortRedirect(), StripQuery: pb.GetStripQuery()}
	var ok bool
	if rd.Status, ok = redirectCodes[pb.GetResponseCode()]; !ok {
		return nil, fieldError(joinPath(path, "response_code"), "unknown value %d", pb.GetResponseCode())
	}
	switch s := pb.GetSchemeRewriteSpecifier().(type) {
	case *routev3.RedirectAction_HttpsRedirect:
		if s.HttpsRedirect {
			rd.Scheme = "https"
		}
	case *routev3.RedirectAction_SchemeRedirect:
		rd.Scheme = strings.ToLower(s.SchemeRedirect)
	}
	switch s := pb.GetPathRewriteSpecifier().(type) {
	case *routev3.RedirectAction_PathRedirect:
		rd.Path = s.PathRedirect
	case *routev3.RedirectAction_PrefixRewrite:
		rd.PrefixRewrite = s.PrefixRewrite
	case *routev3.RedirectAction_RegexRewrite:
		return nil, notSupported(joinPath(path, "regex_rewrite"), "")
	}
	return rd, nil
}

func buildRouteMatch(pb *routev3.RouteMatch, path string) (RouteMatch, error) {
	m := RouteMatch{CaseSensitive: pb.GetCaseSensitive() == nil || pb.GetCaseSensitive().GetValue()}
	switch s := pb.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		// An empty prefix matches every path, as "/" does.
		m.Prefix = s.Prefix
		if m.Prefix == "" {
			m.Prefix = "/"
		}
	case *routev3.RouteMatch_Path:
		if s.Path == "" {
			return m, fieldError(joinPath(path, "path"), "empty (it would match no request)")
		}
		m.Path = s.Path
	case *routev3.RouteMatch_SafeRegex:
		re, err := compileRegex(s.SafeRegex, joinPath(path, "safe_regex"))
		if err != nil {
			return m, err
		}
		m.SafeRegex = re
	case *routev3.RouteMatch_PathSeparatedPrefix:
		p := s.PathSeparatedPrefix
		if p == "" || p[0] != '/' || strings.HasSuffix(p, "/") || strings.ContainsAny(p, "?#") {
			return m, fieldError(joinPath(path, "path_separated_prefix"), "%q: must start with \"/\", not end with \"/\" and hold no \"?\" or \"#\" (as Envoy requires)", p)
		}
		m.PathSeparatedPrefix = p
	case *routev3.RouteMatch_ConnectMatcher_:
		// CONNECT requests only (whatever their path, which they lack).
		m.Connect = true
	case *routev3.RouteMatch_PathMatchPolicy:
		t, err := buildPathMatchPolicy(s.PathMatchPolicy, joinPath(path, "path_match_policy"))
		if err != nil {
			return m, err
		}
		m.PathTemplate = t
	default:
		return m, fieldError(path, "missing prefix, path, safe_regex, path_separated_prefix, path_match_policy or connect_matcher")
	}
	for i, ph := range pb.GetHeaders() {
		h, err := buildHeaderMatcher(ph, indexPath(joinPath(path, "headers"), i))
		if err != nil {
			return m, err
		}
		m.Headers = append(m.Headers, h)
	}
	for i, pq := range pb.GetQueryParameters() {
		qPath := indexPath(joinPath(path, "query_parameters"), i)
		if pq.GetName() == "" {
			return m, fieldError(joinPath(qPath, "name"), "missing")
		}
		q := QueryParameterMatcher{Name: pq.GetName()}
		switch s := pq.GetQueryParameterMatchSpecifier().(type) {
		case *routev3.QueryParameterMatcher_StringMatch:
			sm, err := buildStringMatcher(s.StringMatch, joinPath(qPath, "string_match"))
			if err != nil {
				return m, err
			}
			q.StringMatcher = sm
		case *routev3.QueryParameterMatcher_PresentMatch:
			q.Present = &s.PresentMatch
		}
		m.QueryParameters = append(m.QueryParameters, q)
	}
	m.GRPC = pb.GetGrpc() != nil
	if rf := pb.GetRuntimeFraction(); rf != nil {
		var err error
		if m.RuntimeFraction, err = BuildPercent(rf.GetDefaultValue(), joinPath(path, "runtime_fraction.default_value")); err != nil {
			return m, err
		}
		if m.RuntimeFraction == nil {
			// Envoy requires default_value; without one nothing matches.
			return m, fieldError(joinPath(path, "runtime_fraction.default_value"), "missing")
		}
	}
	return m, nil
}

func buildHeaderMatcher(pb *routev3.HeaderMatcher, path string) (HeaderMatcher, error) {
	h := HeaderMatcher{Name: pb.GetName(), InvertMatch: pb.GetInvertMatch()}
	var err error
	switch s := pb.GetHeaderMatchSpecifier().(type) {
	case nil:
		// No matcher: the header must be present.
	case *routev3.HeaderMatcher_PresentMatch:
		h.Present = &s.PresentMatch
	case *routev3.HeaderMatcher_StringMatch:
		h.StringMatcher, err = buildStringMatcher(s.StringMatch, joinPath(path, "string_match"))
	// The deprecated forms of string_match.
	case *routev3.HeaderMatcher_ExactMatch:
		h.Exact = &s.ExactMatch
	case *routev3.HeaderMatcher_PrefixMatch:
		h.Prefix = &s.PrefixMatch
	case *routev3.HeaderMatcher_SuffixMatch:
		h.Suffix = &s.SuffixMatch
	case *routev3.HeaderMatcher_ContainsMatch:
		h.Contains = &s.ContainsMatch
	case *routev3.HeaderMatcher_SafeRegexMatch:
		h.SafeRegex, err = compileRegex(s.SafeRegexMatch, joinPath(path, "safe_regex_match"))
	default:
		return h, notSupported(path, "this header match")
	}
	return h, err
}

// compileRegex compiles a RegexMatcher's RE2 expression, as written and
// in the whole-value form Envoy matches with (Regexp.FullMatch).
//
// Its program may have at most MaxRegexProgramSize instructions, as in
// Envoy; the deprecated google_re2.max_program_size, when set, is checked
// first with its own words, as Envoy does.
func compileRegex(pb *matcherv3.RegexMatcher, path string) (*Regexp, error) {
	regexPath := joinPath(path, "regex")
	if limit := pb.GetGoogleRe2().GetMaxProgramSize(); limit != nil {
		size, err := regexProgramSize(pb.GetRegex())
		if err != nil {
			return nil, fieldError(regexPath, "invalid regular expression: %v", err)
		}
		if size > int(limit.GetValue()) {
			return nil, fieldError(regexPath, "regex '%s' RE2 program size of %d > max program size of %d (google_re2.max_program_size)", shortRegex(pb.GetRegex()), size, limit.GetValue())
		}
	}
	re, err := compileBoundedRegex(pb.GetRegex(), MaxRegexProgramSize, regexPath, "set for the error level threshold")
	if err != nil {
		return nil, err
	}
	return newRegexp(re), nil
}

func buildCluster(pb *clusterv3.Cluster, path string) (*Cluster, error) {
	c := &Cluster{
		Name:                                pb.GetName(),
		ConnectTimeout:                      Duration(defaultConnectTimeout),
		PerConnectionBufferLimitBytes:       uint32Or(pb.GetPerConnectionBufferLimitBytes(), defaultBufferLimit),
		Endpoints:                           []Endpoint{},
		Metadata:                            buildMetadata(pb.GetMetadata()),
		CloseConnectionsOnHostHealthFailure: pb.GetCloseConnectionsOnHostHealthFailure(),
	}
	if t := pb.GetCommonLbConfig().GetHealthyPanicThreshold(); t != nil {
		v := t.GetValue()
		c.HealthyPanicThreshold = &v
	}
	var ok bool
	if c.Type, ok = clusterTypes[pb.GetType()]; !ok {
		return nil, notSupported(joinPath(path, "type"), pb.GetType().String())
	}
	if c.LBPolicy, ok = lbPolicies[pb.GetLbPolicy()]; !ok {
		return nil, notSupported(joinPath(path, "lb_policy"), pb.GetLbPolicy().String())
	}
	var lbErr error
	if c.LB, lbErr = buildLBConfig(pb, c.LBPolicy, path); lbErr != nil {
		return nil, lbErr
	}
	if d := pb.GetConnectTimeout(); d != nil {
		c.ConnectTimeout = Duration(d.AsDuration())
	}
	if ka := pb.GetUpstreamConnectionOptions().GetTcpKeepalive(); ka != nil {
		var err error
		if c.TCPKeepalive, err = buildTCPKeepalive(ka, joinPath(path, "upstream_connection_options.tcp_keepalive")); err != nil {
			return nil, err
		}
	}
	if c.Type != ClusterStatic {
		c.DNSRefreshRate = Duration(defaultDNSRefreshRate)
		if d := pb.GetDnsRefreshRate(); d != nil {
			c.DNSRefreshRate = Duration(d.AsDuration())
		}
		if pb.GetRespectDnsTtl() {
			return nil, refuseRespectDNSTTL(joinPath(path, "respect_dns_ttl"))
		}
		if f := pb.GetDnsLookupFamily(); f != clusterv3.Cluster_AUTO {
			c.DNSLookupFamily = f.String()
		}
	}

	laPath := joinPath(path, "load_assignment")
	for i, locality := range pb.GetLoadAssignment().GetEndpoints() {
		localityPath := indexPath(joinPath(laPath, "endpoints"), i)
		for j, lbe := range locality.GetLbEndpoints() {
			lbePath := indexPath(joinPath(localityPath, "lb_endpoints"), j)
			ep := lbe.GetEndpoint()
			if ep.GetAddress() == nil {
				return nil, fieldError(joinPath(lbePath, "endpoint.address"), "missing")
			}
			hostPort, err := socketAddress(ep.GetAddress(), joinPath(lbePath, "endpoint.address"), c.Type == ClusterStatic)
			var ce *Error
			if errors.As(err, &ce) && c.Type == ClusterStatic {
				ce.Reason += " (a STATIC cluster takes IP addresses; use STRICT_DNS or LOGICAL_DNS for host names)"
			}
			if err != nil {
				return nil, err
			}
			c.Endpoints = append(c.Endpoints, Endpoint{
				Address: hostPort, Hostname: ep.GetHostname(),
				Weight:       lbe.GetLoadBalancingWeight().GetValue(),
				Priority:     locality.GetPriority(),
				EDSUnhealthy: edsUnhealthy(lbe.GetHealthStatus()),
			})
		}
	}
	if c.Type == ClusterLogicalDNS && len(c.Endpoints) != 1 {
		return nil, fieldError(laPath, "a LOGICAL_DNS cluster takes exactly one endpoint, found %d", len(c.Endpoints))
	}

	var err error
	if cb := pb.GetCircuitBreakers(); cb != nil {
		if c.CircuitBreakers, err = buildCircuitBreakers(cb, joinPath(path, "circuit_breakers")); err != nil {
			return nil, err
		}
	}
	if err = clusterHTTP2(pb, c, path); err != nil {
		return nil, err
	}
	if c.UpstreamHTTPFilters, err = clusterUpstreamFilters(pb, path); err != nil {
		return nil, err
	}
	if ts := pb.GetTransportSocket(); ts != nil {
		if c.TLS, err = buildUpstreamTLS(ts, joinPath(path, "transport_socket")); err != nil {
			return nil, err
		}
	}
	if c.OutlierDetection, err = buildOutlierDetection(pb.GetOutlierDetection(), joinPath(path, "outlier_detection")); err != nil {
		return nil, err
	}
	if c.HealthCheck, err = buildHealthChecks(pb.GetHealthChecks(), c, joinPath(path, "health_checks")); err != nil {
		return nil, err
	}
	return c, nil
}

// buildCircuitBreakers reads the DEFAULT priority's thresholds; unset
// ones keep Envoy's default. Routes have no priority in wasmproxy, so
// HIGH thresholds would never apply: they are refused rather than
// silently ignored, as is a priority given twice.
func buildCircuitBreakers(pb *clusterv3.CircuitBreakers, path string) (*CircuitBreakers, error) {
	cb := &CircuitBreakers{
		MaxConnections:     DefaultCircuitBreakerLimit,
		MaxPendingRequests: DefaultCircuitBreakerLimit,
		MaxRequests:        DefaultCircuitBreakerLimit,
		MaxRetries:         DefaultMaxRetries,
	}
	seen := false
	for i, t := range pb.GetThresholds() {
		tPath := indexPath(joinPath(path, "thresholds"), i)
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			return nil, notSupported(joinPath(tPath, "priority"), t.GetPriority().String()+" (routes have no priority; only DEFAULT thresholds apply)")
		}
		if seen {
			return nil, fieldError(joinPath(tPath, "priority"), "DEFAULT thresholds given twice")
		}
		seen = true
		if v := t.GetMaxConnections(); v != nil {
			cb.MaxConnections = v.GetValue()
		}
		if v := t.GetMaxPendingRequests(); v != nil {
			cb.MaxPendingRequests = v.GetValue()
		}
		if v := t.GetMaxRequests(); v != nil {
			cb.MaxRequests = v.GetValue()
		}
		if v := t.GetMaxRetries(); v != nil {
			cb.MaxRetries = v.GetValue()
		}
	}
	return cb, nil
}

// clusterHTTP2 reads the upstream protocol and connection settings
// from either the deprecated Cluster fields (http_protocol_options,
// http2_protocol_options, common_http_protocol_options,
// upstream_http_protocol_options) or the current
// typed_extension_protocol_options; Envoy rejects a mix. It sets the
// cluster's HTTP2, AutoHTTP, ProperCaseHeaderKeys and UpstreamHTTP.
func clusterHTTP2(pb *clusterv3.Cluster, c *Cluster, path string) error {
	legacy := pb.GetHttpProtocolOptions() != nil || pb.GetHttp2ProtocolOptions() != nil ||
		pb.GetCommonHttpProtocolOptions() != nil || pb.GetUpstreamHttpProtocolOptions() != nil
	if pb.GetHttpProtocolOptions() != nil && pb.GetHttp2ProtocolOptions() != nil {
		return fieldError(joinPath(path, "http2_protocol_options"), "set together with http_protocol_options; set one")
	}
	c.HTTP2 = pb.GetHttp2ProtocolOptions() != nil
	var err error
	if c.ProperCaseHeaderKeys, c.PreserveCase, err = headerKeyFormat(pb.GetHttpProtocolOptions(), joinPath(path, "http_protocol_options")); err != nil { // codec.go
		return err
	}
	if err := refuseUpstreamHTTP2Settings(pb.GetHttp2ProtocolOptions(), joinPath(path, "http2_protocol_options")); err != nil { // http2.go
		return err
	}
	u := &UpstreamHTTP{}
	if err := legacyUpstreamHTTP(pb, u, path); err != nil { // cluster_http.go
		return err
	}
	optionsPath := joinPath(path, "typed_extension_protocol_options")
	options := pb.GetTypedExtensionProtocolOptions()
	keys := make([]string, 0, len(options))
	for key := range options {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		a := options[key]
		entryPath := keyPath(optionsPath, key)
		if !httpProtocolOptionsKeys[key] {
			return notSupported(entryPath, "")
		}
		if legacy {
			return fieldError(entryPath, "set together with the deprecated http_protocol_options/http2_protocol_options/common_http_protocol_options/upstream_http_protocol_options; use one")
		}
		payload, payloadPath, err := unpackAny(a, entryPath)
		if err != nil {
			return err
		}
		opts, ok := payload.(*upstreamhttpv3.HttpProtocolOptions)
		if !ok {
			return notSupported(entryPath, string(messageName(payload)))
		}
		switch opts.GetUpstreamProtocolOptions().(type) {
		case *upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_:
			c.HTTP2 = opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
			if c.ProperCaseHeaderKeys, c.PreserveCase, err = headerKeyFormat(opts.GetExplicitHttpConfig().GetHttpProtocolOptions(), joinPath(payloadPath, "explicit_http_config.http_protocol_options")); err != nil {
				return err
			}
			if err := refuseUpstreamHTTP2Settings(opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions(), joinPath(payloadPath, "explicit_http_config.http2_protocol_options")); err != nil {
				return err
			}
		case *upstreamhttpv3.HttpProtocolOptions_AutoConfig:
			auto := opts.GetAutoConfig()
			autoPath := joinPath(payloadPath, "auto_config")
			if auto.GetHttp3ProtocolOptions() != nil {
				return notSupported(joinPath(autoPath, "http3_protocol_options"), "HTTP/3")
			}
			// Envoy refuses ALPN on a cluster whose transport socket
			// cannot negotiate it (plaintext).
			if pb.GetTransportSocket() == nil {
				return fieldError(autoPath, "ALPN configured for cluster %q which has a non-ALPN transport socket (auto_config needs a TLS transport_socket)", pb.GetName())
			}
			c.AutoHTTP = true
			if c.ProperCaseHeaderKeys, c.PreserveCase, err = headerKeyFormat(auto.GetHttpProtocolOptions(), joinPath(autoPath, "http_protocol_options")); err != nil {
				return err
			}
			if err := refuseUpstreamHTTP2Settings(auto.GetHttp2ProtocolOptions(), joinPath(autoPath, "http2_protocol_options")); err != nil {
				return err
			}
		default:
			return notSupported(payloadPath, "upstream protocol other than explicit_http_config or auto_config")
		}
		if err := buildUpstreamCommon(opts.GetCommonHttpProtocolOptions(), u, joinPath(payloadPath, "common_http_protocol_options")); err != nil {
			return err
		}
		if n := pb.GetMaxRequestsPerConnection(); n != nil {
			// Envoy's words (ClusterInfoImpl): the Cluster field and the
			// options' cannot both be set; the Cluster field applies.
			if opts.GetCommonHttpProtocolOptions().GetMaxRequestsPerConnection() != nil {
				return fieldError(joinPath(path, "max_requests_per_connection"), "Only one of max_requests_per_connection from Cluster or HttpProtocolOptions can be specified")
			}
			u.MaxRequestsPerConnection = n.GetValue()
		}
		if err := buildUpstreamHTTPProtocol(opts.GetUpstreamHttpProtocolOptions(), u, joinPath(payloadPath, "upstream_http_protocol_options")); err != nil {
			return err
		}
	}
	if (u.AutoSNI || u.AutoSANValidation) && pb.GetTransportSocket() == nil {
		// Envoy accepts this and the settings do nothing without TLS; so do we.
		u.AutoSNI, u.AutoSANValidation, u.OverrideAutoSNIHeader = false, false, ""
	}
	if !u.empty() {
		c.UpstreamHTTP = u
	}
	return nil
}

func uint32Or(v *wrapperspb.UInt32Value, def uint32) uint32 {
	if v == nil {
		return def
	}
	return v.GetValue()
}

func nonNegative(d *durationpb.Duration, path string) (Duration, error) {
	if d.AsDuration() < 0 {
		return 0, fieldError(path, "negative duration %s", d.AsDuration())
	}
	return Duration(d.AsDuration()), nil
}
