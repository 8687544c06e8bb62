// Package config turns an Envoy v3 bootstrap (YAML or JSON) into the
// validated model the proxy runs. Parsing knows nothing of sockets: the
// model is plain data, printable as JSON for golden tests.
package config

import (
	"encoding/json"
	"time"
)

// Bootstrap is the validated model of one config file.
type Bootstrap struct {
	// Source is the file the model was loaded from ("" for in-memory).
	Source    string      `json:"source,omitempty"`
	Node      *Node       `json:"node,omitempty"`
	Admin     *Admin      `json:"admin,omitempty"`
	Listeners []*Listener `json:"listeners"`
	Clusters  []*Cluster  `json:"clusters"`
	// WasmServices are the bootstrap_extensions of type
	// envoy.bootstrap.wasm (model_extensions.go).
	WasmServices []*WasmService `json:"wasm_services,omitempty"`
	// StatsConfig is stats_config; nil when the config has none.
	StatsConfig *StatsConfig `json:"stats_config,omitempty"`
	// StatsSinks are stats_sinks (statsd and DogStatsD over UDP), flushed
	// every StatsFlushInterval (zero: DefaultStatsFlushInterval, 5s).
	StatsSinks         []*StatsSink `json:"stats_sinks,omitempty"`
	StatsFlushInterval Duration     `json:"stats_flush_interval,omitempty"`
	// Tracer is the bootstrap's deprecated tracing.http: the tracer of
	// connection managers whose tracing names no provider, as in Envoy.
	// Nil when the bootstrap has none.
	Tracer *TracingProvider `json:"tracing,omitempty"`
	// ADS is dynamic_resources: listeners and clusters from a control
	// plane (nil without one). Fixed for the process's lifetime, as
	// Envoy's bootstrap is.
	ADS *ADS `json:"ads,omitempty"`
	// Runtime is layered_runtime (build_runtime.go); nil without one.
	Runtime *Runtime `json:"runtime,omitempty"`
	// OverloadManager is overload_manager; nil without one.
	OverloadManager *OverloadManager `json:"overload_manager,omitempty"`
	// RawJSON is the bootstrap as protojson, for /config_dump.
	RawJSON json.RawMessage `json:"-"`
	// ExtensionConfigs are the filters delivered apart from the bootstrap
	// (Istio WasmPlugins, which istiod sends over ECDS), each a protojson
	// envoy.config.core.v3.TypedExtensionConfig, for /config_dump.
	ExtensionConfigs []json.RawMessage `json:"-"`
}

// Node is the bootstrap's node identity (xds.node).
type Node struct {
	ID      string `json:"id,omitempty"`
	Cluster string `json:"cluster,omitempty"`
	// Proto is the serialized envoy.config.core.v3.Node, as Envoy
	// returns it for the xds.node property.
	Proto []byte `json:"-"`
}

// Admin is the admin server's listening address ("host:port").
type Admin struct {
	Address string `json:"address"`
}

// Listener is one static listener with a single HTTP connection manager.
type Listener struct {
	Name    string `json:"name"`
	Address string `json:"address"` // "host:port"
	// PerConnectionBufferLimitBytes bounds what a filter may buffer;
	// Envoy's default is 1 MiB.
	PerConnectionBufferLimitBytes uint32 `json:"per_connection_buffer_limit_bytes"`
	// FilterChains in config order, at least one. Each connection takes
	// the chain whose match fits it best (FilterChainMatch).
	FilterChains []*FilterChain `json:"filter_chains"`
	// Metadata is metadata.filter_metadata: namespace → fields as JSON
	// values, for the plugins' xds.*_metadata properties.
	Metadata map[string]map[string]any `json:"metadata,omitempty"`
	// TrafficDirection is traffic_direction: "INBOUND", "OUTBOUND" or ""
	// (unspecified). Istio resources read it as the listener's Istio
	// context (sidecar inbound, sidecar outbound, gateway); tracing reads
	// OUTBOUND as Envoy's egress operation.
	TrafficDirection string `json:"traffic_direction,omitempty"`
	// StatPrefix is stat_prefix: listener stats are named
	// "listener.<StatPrefix>." when it is set, else by the address.
	StatPrefix string `json:"stat_prefix,omitempty"`
	// ProxyProtocol is the proxy_protocol listener filter; nil without
	// it. OriginalDst is the original_dst listener filter.
	ProxyProtocol *ProxyProtocol `json:"proxy_protocol,omitempty"`
	OriginalDst   bool           `json:"original_dst,omitempty"`
	// DisableReusePort is enable_reuse_port: false. Envoy's default (and
	// so the zero value here) binds the listening socket with
	// SO_REUSEPORT on Linux; other platforms never set it for TCP.
	DisableReusePort bool `json:"disable_reuse_port,omitempty"`
	// IgnoreGlobalConnLimit is ignore_global_conn_limit: the listener's
	// connections are outside the overload manager's
	// global_downstream_max_connections monitor.
	IgnoreGlobalConnLimit bool `json:"ignore_global_conn_limit,omitempty"`
	// HTTPInspector is the http_inspector listener filter: plaintext
	// connections get "http/1.0", "http/1.1" or "h2c" as their
	// application protocol for filter_chain_match.application_protocols.
	HTTPInspector bool `json:"http_inspector,omitempty"`
}

// ProxyProtocol is the proxy_protocol listener filter: each connection
// starts with a PROXY protocol header (v1 or v2) whose addresses become
// the connection's (proxy/proxyproto.go).
type ProxyProtocol struct {
	// AllowWithout is allow_requests_without_proxy_protocol: a
	// connection that does not start with a header goes on as it is.
	AllowWithout bool `json:"allow_requests_without_proxy_protocol,omitempty"`
	// DisallowV1 and DisallowV2 are disallowed_versions.
	DisallowV1 bool   `json:"disallow_v1,omitempty"`
	DisallowV2 bool   `json:"disallow_v2,omitempty"`
	StatPrefix string `json:"stat_prefix,omitempty"`
}

// FilterChain is one listener filter chain: an optional TLS transport,
// Wasm network filters, and exactly one terminal filter (HTTP or
// TCPProxy).
type FilterChain struct {
	Name  string           `json:"name,omitempty"`
	Match FilterChainMatch `json:"match,omitzero"`
	// TLS is the downstream TLS transport socket; nil for plaintext.
	TLS *DownstreamTLS `json:"tls,omitempty"`
	// NetworkFilters run ahead of the TCP proxy or the HTTP connection
	// manager, in order.
	NetworkFilters []*NetworkFilter       `json:"network_filters,omitempty"`
	HTTP           *HTTPConnectionManager `json:"http,omitempty"`
	TCPProxy       *TCPProxy              `json:"tcp_proxy,omitempty"`
	// terminalAt is where Parse found the terminal filter's config, for
	// Check's errors (check.go).
	terminalAt string
}

// FilterChainMatch selects a filter chain for a connection. Empty fields
// match anything; of the chains that match, the one with the most
// specific server name wins (exact, then the longest "*.suffix"), then
// one with a transport protocol over one without, as in Envoy.
type FilterChainMatch struct {
	// ServerNames are SNI values: exact names or "*.example.com" wildcards.
	ServerNames []string `json:"server_names,omitempty"`
	// TransportProtocol is "tls", "raw_buffer" or "" (any).
	TransportProtocol string `json:"transport_protocol,omitempty"`
	// ApplicationProtocols match the connection's application protocols:
	// the TLS ALPN offered by the client, or, with the http_inspector
	// listener filter, "http/1.0", "http/1.1" or "h2c" for plaintext
	// HTTP. Empty matches any connection.
	ApplicationProtocols []string `json:"application_protocols,omitempty"`
}

// NetworkFilter is one network filter ahead of the chain's terminal
// filter: an envoy.filters.network.wasm (Wasm) or a native network
// filter of the registry (Native: package filters, RegisterNetwork).
type NetworkFilter struct {
	Name   string        `json:"name"`
	Wasm   *WasmPlugin   `json:"wasm,omitempty"`
	Native *NativeFilter `json:"native,omitempty"`
}

// TCPProxy is envoy.filters.network.tcp_proxy.
type TCPProxy struct {
	StatPrefix string `json:"stat_prefix"`
	Cluster    string `json:"cluster"`
	// IdleTimeout closes a connection with no data either way for this
	// long; Envoy's default is 1h, 0 disables it.
	IdleTimeout Duration `json:"idle_timeout"`
	// MaxConnectAttempts bounds upstream connection attempts (default 1).
	MaxConnectAttempts uint32 `json:"max_connect_attempts"`
	// AccessLogs are written once per connection, when it ends.
	AccessLogs []*AccessLog `json:"access_log,omitempty"`
}

// DataSource is a config.core.v3.DataSource: a file, read when the proxy
// starts, or inline bytes.
type DataSource struct {
	Filename string `json:"filename,omitempty"`
	Inline   []byte `json:"inline,omitempty"`
}

// TLSCertificate is a certificate chain and its private key (PEM).
type TLSCertificate struct {
	CertificateChain DataSource `json:"certificate_chain"`
	PrivateKey       DataSource `json:"private_key"`
}

// CommonTLS is envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.
type CommonTLS struct {
	Certificates []TLSCertificate `json:"tls_certificates,omitempty"`
	// ALPN protocols offered (upstream) or accepted (downstream), in
	// preference order.
	ALPN []string `json:"alpn_protocols,omitempty"`
	// MinVersion, MaxVersion: "TLSv1_0" … "TLSv1_3"; Envoy's defaults are
	// TLSv1_2 and TLSv1_3.
	MinVersion string `json:"min_version"`
	MaxVersion string `json:"max_version"`
	// TrustedCA verifies the peer's certificate chain; nil: the chain is
	// not verified (Envoy's default).
	TrustedCA *DataSource `json:"trusted_ca,omitempty"`
	// MatchSANs: when set, the peer's certificate must carry a subject
	// alternative name matching one of them (SANMatcher.Match).
	MatchSANs []SANMatcher `json:"match_typed_subject_alt_names,omitempty"`
}

// SANMatcher matches subject alternative names of one type.
type SANMatcher struct {
	// Type is "DNS", "URI", "EMAIL" or "IP_ADDRESS".
	Type    string        `json:"san_type"`
	Matcher StringMatcher `json:"matcher"`
}

// DownstreamTLS is a listener filter chain's DownstreamTlsContext.
type DownstreamTLS struct {
	CommonTLS
	// RequireClientCertificate fails the handshake of a client that
	// presents no certificate. With a TrustedCA (or MatchSANs) a client
	// certificate is requested, and verified when presented, either way.
	RequireClientCertificate bool `json:"require_client_certificate,omitempty"`
}

// UpstreamTLS is a cluster's UpstreamTlsContext.
type UpstreamTLS struct {
	CommonTLS
	// SNI is the server name sent; "" sends none.
	SNI string `json:"sni,omitempty"`
	// SecretsNotReady: the context's SDS secrets did not arrive within
	// their initial fetch timeout (the transport socket is named
	// SecretsNotReadySocket), so every connection fails, as through
	// Envoy's NotReadySslSocket.
	SecretsNotReady bool `json:"secrets_not_ready,omitempty"`
}

// SecretsNotReadySocket is the transport socket name the xDS layer gives
// a cluster's UpstreamTlsContext whose SDS secrets did not arrive within
// their initial fetch timeout (see UpstreamTLS.SecretsNotReady).
const SecretsNotReadySocket = "wasmproxy.sds.secrets_not_ready"

// Codec is the downstream HTTP codec choice.
type Codec string

const (
	CodecAuto  Codec = "AUTO"
	CodecHTTP1 Codec = "HTTP1"
	CodecHTTP2 Codec = "HTTP2"
)

// HTTPConnectionManager is envoy.filters.network.http_connection_manager.
type HTTPConnectionManager struct {
	StatPrefix string `json:"stat_prefix"`
	Codec      Codec  `json:"codec"`
	// ServerName is the value of the server header; default "wasmproxy".
	ServerName string        `json:"server_name"`
	Routes     *RouteConfig  `json:"route_config"`
	Filters    []*HTTPFilter `json:"http_filters"`
	// RequestHeadersTimeout bounds the time from a request's first byte
	// to the end of its headers (HTTP/1); zero means none, Envoy's
	// default.
	RequestHeadersTimeout Duration `json:"request_headers_timeout,omitempty"`
	// MaxRequestHeadersKB: Envoy's default 60.
	MaxRequestHeadersKB uint32 `json:"max_request_headers_kb"`
	// HTTP2 is http2_protocol_options: the settings of downstream
	// HTTP/2 connections (config/http2.go).
	HTTP2 HTTP2Options `json:"http2_protocol_options,omitzero"`
	// MaxHeadersCount is common_http_protocol_options.max_headers_count:
	// the most header (or trailer) fields a request may have; Envoy's
	// default 100.
	MaxHeadersCount uint32 `json:"max_headers_count"`
	// HeadersWithUnderscoresAction is
	// common_http_protocol_options.headers_with_underscores_action for
	// request header names with an underscore: "" (ALLOW, the default),
	// "REJECT_REQUEST" or "DROP_HEADER".
	HeadersWithUnderscoresAction string `json:"headers_with_underscores_action,omitempty"`
	// IdleTimeout closes a downstream connection without streams for
	// this long (common_http_protocol_options.idle_timeout; Envoy's
	// default 1h, zero when set to 0: none).
	IdleTimeout Duration `json:"idle_timeout"`
	// MaxConnectionDuration drains a downstream connection this long
	// after it opened (common_http_protocol_options; zero: none).
	MaxConnectionDuration Duration `json:"max_connection_duration,omitempty"`
	// MaxStreamDuration ends a stream this long after it began
	// (common_http_protocol_options; zero: none).
	MaxStreamDuration Duration `json:"max_stream_duration,omitempty"`
	// StreamIdleTimeout ends a stream with no activity either way for
	// this long (Envoy's default 5m; zero when set to 0: none).
	StreamIdleTimeout Duration `json:"stream_idle_timeout"`
	// RequestTimeout bounds the time until the whole request has been
	// received, or the response began (zero: none, Envoy's default).
	RequestTimeout Duration `json:"request_timeout,omitempty"`
	// AcceptHTTP10 is http_protocol_options.accept_http_10: without it,
	// HTTP/1.0 requests get 426 Upgrade Required, as on Envoy.
	AcceptHTTP10 bool `json:"accept_http_10,omitempty"`
	// DefaultHostForHTTP10 is the authority given to HTTP/1.0 requests
	// without a Host header (http_protocol_options).
	DefaultHostForHTTP10 string `json:"default_host_for_http_10,omitempty"`
	// ProperCaseHeaderKeys is http_protocol_options.header_key_format
	// with proper_case_words: HTTP/1.1 response (and trailer) field names
	// go out as Proper-Case-Words instead of lower case.
	ProperCaseHeaderKeys bool `json:"header_key_format_proper_case_words,omitempty"`
	// PreserveCase is http_protocol_options.header_key_format's
	// stateful_formatter preserve_case: the request field names an
	// HTTP/1.1 client sent are remembered, and the request goes to an
	// HTTP/1.1 upstream with them spelled so (proxy/headerkey.go).
	PreserveCase *PreserveCase `json:"header_key_format_preserve_case,omitempty"`
	// StreamErrorOnInvalidHTTPMessage is the HTTP/1.1 value of
	// stream_error_on_invalid_http_message (or http_protocol_options'
	// override of it): false, Envoy's default, closes an HTTP/1.1
	// connection after a 400 the proxy answers itself.
	StreamErrorOnInvalidHTTPMessage bool `json:"stream_error_on_invalid_http_message,omitempty"`
	// DrainTimeout is drain_timeout, nil for Envoy's default of 5s: how
	// long a draining connection (idle_timeout or
	// max_connection_duration reached) stays open before it closes
	// (DrainTime).
	DrainTimeout *Duration `json:"drain_timeout,omitempty"`
	// DelayedCloseTimeout is delayed_close_timeout, nil for Envoy's
	// default of 1s: how long a connection the proxy closes after its
	// answer waits for the client to close first (DelayedCloseTime;
	// zero: no wait).
	DelayedCloseTimeout *Duration `json:"delayed_close_timeout,omitempty"`
	// UpgradeTypes are the upgrade_configs' upgrade_type values that are
	// enabled, lower-cased (Envoy compares them case-insensitively): an
	// HTTP/1.1 request whose Upgrade header names one is proxied, and a
	// 101 from the upstream splices the two connections; "connect"
	// enables CONNECT requests (a 2xx splices). Other upgrades get 403.
	// Only "websocket" and "connect" are accepted; a route's Upgrades
	// override these (UpgradeEnabled, upgrade.go).
	UpgradeTypes []string `json:"upgrade_types,omitempty"`
	// UpgradeFilters are the upgrade_configs entries' filters, by type
	// (lower-cased), for the entries that have some: a request upgraded
	// under the type (by these upgrade_configs or its route's) runs this
	// chain instead of Filters, as Envoy's createUpgradeFilterChain
	// (config/upgrade.go). Native filters and the router, last.
	UpgradeFilters map[string][]*HTTPFilter `json:"upgrade_filters,omitempty"`
	// StripMatchingHostPort removes the port from the Host header when
	// it is the listener's port; StripAnyHostPort removes any port. Both
	// happen before the filters and route selection see the header, as
	// Envoy's connection manager does; at most one is set.
	StripMatchingHostPort bool `json:"strip_matching_host_port,omitempty"`
	StripAnyHostPort      bool `json:"strip_any_host_port,omitempty"`
	// AccessLogs are written once per stream, when it ends.
	AccessLogs []*AccessLog `json:"access_log,omitempty"`
	// Tracing is tracing (model_tracing.go); nil: no tracing.
	Tracing *Tracing `json:"tracing,omitempty"`
	// NoRequestIDGeneration is generate_request_id: false. By default
	// (true, as in Envoy) an x-request-id is made for requests without
	// one, and for edge requests unless PreserveExternalRequestID.
	NoRequestIDGeneration     bool `json:"generate_request_id_disabled,omitempty"`
	PreserveExternalRequestID bool `json:"preserve_external_request_id,omitempty"`

	// HCMRequestHandling: local replies, forwarding headers, path
	// normalization (model_hcm.go).
	HCMRequestHandling
}

// RouteConfig is an inline route_config.
type RouteConfig struct {
	Name         string         `json:"name"`
	VirtualHosts []*VirtualHost `json:"virtual_hosts"`
	// IgnorePortInHostMatching matches virtual host domains against the
	// Host without its port (the header itself is left as it is).
	IgnorePortInHostMatching bool `json:"ignore_port_in_host_matching,omitempty"`
	// RequestHeaders and ResponseHeaders are the route configuration's
	// request_/response_headers_to_add and _to_remove; nil when none.
	RequestHeaders  *HeaderMutations `json:"request_headers,omitempty"`
	ResponseHeaders *HeaderMutations `json:"response_headers,omitempty"`
	// MostSpecificHeaderMutationsWins applies the header mutations from
	// the least specific level (route configuration) to the most
	// specific (route), so the route's overwrite last; by default the
	// route's are applied first, as in Envoy.
	MostSpecificHeaderMutationsWins bool `json:"most_specific_header_mutations_wins,omitempty"`
}

// VirtualHost picks routes by the request's :authority.
type VirtualHost struct {
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
	Routes  []*Route `json:"routes"`
	// Metadata is metadata.filter_metadata: namespace → fields as JSON
	// values, for the plugins' xds.*_metadata properties.
	Metadata map[string]map[string]any `json:"metadata,omitempty"`
	// Cors is the legacy cors policy as the CORS filter parsed it
	// (legacycors.go); nil without one.
	Cors any `json:"cors,omitempty"`
	// FilterOverrides is typed_per_filter_config: which HTTP filters the
	// virtual host disables or enables (perfilter.go).
	FilterOverrides map[string]FilterOverride `json:"typed_per_filter_config,omitempty"`
	// RetryPolicy is the virtual host's retry_policy, for its routes
	// without one; IncludeRequestAttemptCount sends
	// x-envoy-attempt-count upstream.
	RetryPolicy                *RetryPolicy `json:"retry_policy,omitempty"`
	IncludeRequestAttemptCount bool         `json:"include_request_attempt_count,omitempty"`
	// PerRequestBufferLimitBytes is per_request_buffer_limit_bytes: the
	// most of a request body the router keeps to retry or shadow it,
	// for routes without their own (nil: unset).
	PerRequestBufferLimitBytes *uint32 `json:"per_request_buffer_limit_bytes,omitempty"`
	// RateLimits are the virtual host's rate_limits (ratelimit.go).
	RateLimits []*RateLimit `json:"rate_limits,omitempty"`
	// RequestHeaders and ResponseHeaders are the virtual host's header
	// mutations; nil when none.
	RequestHeaders  *HeaderMutations `json:"request_headers,omitempty"`
	ResponseHeaders *HeaderMutations `json:"response_headers,omitempty"`
}

// Route is one match and its action: exactly one of Cluster,
// WeightedClusters, ClusterHeader, DirectResponse or Redirect is set.
type Route struct {
	Name    string     `json:"name,omitempty"`
	Match   RouteMatch `json:"match"`
	Cluster string     `json:"cluster,omitempty"`
	// WeightedClusters is route.weighted_clusters.clusters: each request
	// goes to one of them, picked at random in proportion to the
	// weights (PickWeighted); their weights add up to more than 0.
	WeightedClusters []*WeightedCluster `json:"weighted_clusters,omitempty"`
	PrefixRewrite    string             `json:"prefix_rewrite,omitempty"`
	// RegexRewrite is regex_rewrite; at most one of PrefixRewrite and
	// RegexRewrite is set.
	RegexRewrite *RegexRewrite `json:"regex_rewrite,omitempty"`
	// PathTemplateRewrite is path_rewrite_policy's uri_template
	// rewriter, which takes its variables from Match.PathTemplate; at
	// most one of the three path rewrites is set.
	PathTemplateRewrite *URITemplateRewrite `json:"path_rewrite_policy,omitempty"`
	// At most one host rewrite is set: HostRewriteLiteral is the Host
	// sent upstream; AutoHostRewrite sends the picked endpoint's
	// hostname (when it has one: a DNS cluster's, or endpoint.hostname);
	// HostRewriteHeader sends the value of that request header, when
	// the request has it.
	HostRewriteLiteral string `json:"host_rewrite_literal,omitempty"`
	AutoHostRewrite    bool   `json:"auto_host_rewrite,omitempty"`
	HostRewriteHeader  string `json:"host_rewrite_header,omitempty"`
	// HashPolicy is route.hash_policy, for RING_HASH and MAGLEV clusters.
	HashPolicy []HashPolicy `json:"hash_policy,omitempty"`
	// RetryPolicy is route.retry_policy; nil: the virtual host's.
	RetryPolicy *RetryPolicy `json:"retry_policy,omitempty"`
	// PerRequestBufferLimitBytes is the route's
	// per_request_buffer_limit_bytes (nil: the virtual host's).
	PerRequestBufferLimitBytes *uint32 `json:"per_request_buffer_limit_bytes,omitempty"`
	// RateLimits are route.rate_limits (ratelimit.go);
	// IncludeVHRateLimits is route.include_vh_rate_limits.
	RateLimits          []*RateLimit `json:"rate_limits,omitempty"`
	IncludeVHRateLimits bool         `json:"include_vh_rate_limits,omitempty"`
	// Timeout is the route timeout; Envoy's default is 15s, 0 disables.
	Timeout        Duration        `json:"timeout"`
	DirectResponse *DirectResponse `json:"direct_response,omitempty"`
	Redirect       *Redirect       `json:"redirect,omitempty"`
	// Metadata is metadata.filter_metadata: namespace → fields as JSON
	// values, for the plugins' xds.*_metadata properties.
	Metadata map[string]map[string]any `json:"metadata,omitempty"`
	// Cors is the legacy cors policy as the CORS filter parsed it
	// (legacycors.go); nil without one.
	Cors any `json:"cors,omitempty"`
	// FilterOverrides is typed_per_filter_config: which HTTP filters the
	// route disables or enables, over its virtual host's (perfilter.go).
	FilterOverrides map[string]FilterOverride `json:"typed_per_filter_config,omitempty"`
	// RequestHeaders and ResponseHeaders are the route's header
	// mutations; nil when none.
	RequestHeaders  *HeaderMutations `json:"request_headers,omitempty"`
	ResponseHeaders *HeaderMutations `json:"response_headers,omitempty"`
	// Decorator names the route's spans; nil when it has none.
	Decorator *Decorator `json:"decorator,omitempty"`
	// ClusterHeader is route.cluster_header (lower-cased): the request
	// header whose value names the cluster, read when the router
	// forwards; set instead of Cluster and WeightedClusters.
	ClusterHeader string `json:"cluster_header,omitempty"`
	// IdleTimeout is route.idle_timeout: nil, the connection manager's
	// stream_idle_timeout applies; else it replaces it for the stream
	// (0 turns it off).
	IdleTimeout *Duration `json:"idle_timeout,omitempty"`
	// MaxStreamDuration is route.max_stream_duration; nil without it.
	MaxStreamDuration *RouteMaxStreamDuration `json:"max_stream_duration,omitempty"`
	// MirrorPolicies is route.request_mirror_policies: each sampled
	// request is also sent, fire and forget, to the policy's cluster
	// (proxy/mirror.go).
	MirrorPolicies []*MirrorPolicy `json:"request_mirror_policies,omitempty"`
	// Upgrades is route.upgrade_configs: per type, enabled or not for
	// this route's requests over the connection manager's UpgradeTypes;
	// ConnectConfig is the CONNECT entry's connect_config (the proxy
	// terminates CONNECT), nil without one (upgrade.go).
	Upgrades      []RouteUpgrade `json:"upgrade_configs,omitempty"`
	ConnectConfig *ConnectConfig `json:"connect_config,omitempty"`
}

// MirrorPolicy is one of route.request_mirror_policies (Envoy's shadow
// policy). Exactly one of Cluster and ClusterHeader is set.
type MirrorPolicy struct {
	Cluster string `json:"cluster,omitempty"`
	// ClusterHeader (lower-cased) names a request header whose value is
	// the mirror cluster; an absent header or unknown cluster mirrors
	// nothing.
	ClusterHeader string `json:"cluster_header,omitempty"`
	// Fraction is runtime_fraction.default_value; without
	// runtime_fraction every request is mirrored (100%), as Envoy.
	Fraction *Percent `json:"fraction"`
	// DisableHostSuffix is disable_shadow_host_suffix_append: keep the
	// Host as it is instead of adding "-shadow" to its host part.
	DisableHostSuffix bool `json:"disable_shadow_host_suffix_append,omitempty"`
}

// WeightedCluster is one entry of weighted_clusters.clusters.
type WeightedCluster struct {
	Name   string `json:"name"`
	Weight uint32 `json:"weight"`
	// RequestHeaders and ResponseHeaders are the entry's own header
	// mutations, applied before the route's (as Envoy's
	// WeightedClusterEntry does); nil when none.
	RequestHeaders  *HeaderMutations `json:"request_headers,omitempty"`
	ResponseHeaders *HeaderMutations `json:"response_headers,omitempty"`
}

// PickWeighted is Envoy's pick of a weighted cluster for a request whose
// random value is random: the entry whose share of the total weight
// holds random modulo the total. Nil when r has no weighted clusters.
func (r *Route) PickWeighted(random uint64) *WeightedCluster {
	var total uint64
	for _, c := range r.WeightedClusters {
		total += uint64(c.Weight)
	}
	if total == 0 {
		return nil
	}
	v := random % total
	var end uint64
	for _, c := range r.WeightedClusters {
		end += uint64(c.Weight)
		if v < end {
			return c
		}
	}
	return nil
}

// RouteMatch: exactly one of Prefix, Path, SafeRegex is set (none: the
// empty prefix, every path). Matches applies it (match.go).
type RouteMatch struct {
	Prefix    string          `json:"prefix,omitempty"`
	Path      string          `json:"path,omitempty"`
	SafeRegex *Regexp         `json:"safe_regex,omitempty"`
	Headers   []HeaderMatcher `json:"headers,omitempty"`
	// PathSeparatedPrefix matches the path equal to it or followed by
	// "/" (path_separated_prefix).
	PathSeparatedPrefix string `json:"path_separated_prefix,omitempty"`
	// PathTemplate is path_match_policy's uri_template matcher.
	PathTemplate *URITemplate `json:"path_match_policy,omitempty"`
	// CaseSensitive defaults to true, as in Envoy.
	CaseSensitive bool `json:"case_sensitive"`
	// QueryParameters must all match the :path's query string.
	QueryParameters []QueryParameterMatcher `json:"query_parameters,omitempty"`
	// GRPC requires a gRPC request (content-type application/grpc...).
	GRPC bool `json:"grpc,omitempty"`
	// RuntimeFraction, when set, matches that share of requests
	// (runtime_fraction's default_value).
	RuntimeFraction *Percent `json:"runtime_fraction,omitempty"`
	// Connect is connect_matcher: CONNECT requests match (instead of a
	// path matcher); no other path matcher matches a CONNECT request,
	// which has no :path.
	Connect bool `json:"connect_matcher,omitempty"`
}

// QueryParameterMatcher is one of a route's query_parameters: the first
// value of the named parameter (percent-decoded) must match; with
// Present set, a parameter that is there matches when *Present (Envoy's
// present_match: false matches nothing).
type QueryParameterMatcher struct {
	Name string `json:"name"`
	StringMatcher
	Present *bool `json:"present_match,omitempty"`
}

// Redirect is a route answered with a redirect (route.v3.RedirectAction):
// the Location is the request's URL with the parts set here replaced.
type Redirect struct {
	// Scheme is scheme_redirect, or "https" for https_redirect.
	Scheme string `json:"scheme,omitempty"`
	Host   string `json:"host,omitempty"`
	Port   uint32 `json:"port,omitempty"`
	// Path is path_redirect (it may carry its own query);
	// PrefixRewrite replaces the matched prefix instead.
	Path          string `json:"path,omitempty"`
	PrefixRewrite string `json:"prefix_rewrite,omitempty"`
	StripQuery    bool   `json:"strip_query,omitempty"`
	// Status is the response code: 301 (Envoy's default), 302, 303,
	// 307 or 308.
	Status int `json:"status"`
}

// DirectResponse is a route answered by the proxy itself.
type DirectResponse struct {
	Status int    `json:"status"`
	Body   []byte `json:"body,omitempty"`
}

// HTTPFilter is one entry of http_filters: exactly one of Wasm, Native
// or Router is set.
type HTTPFilter struct {
	Name   string      `json:"name"`
	Wasm   *WasmPlugin `json:"wasm,omitempty"`
	Router bool        `json:"router,omitempty"`
	// StartChildSpan is the router's start_child_span: a span per
	// upstream attempt, child of the request's.
	StartChildSpan bool `json:"start_child_span,omitempty"`
	// Native is a native Go filter (package filters), set when
	// typed_config is one of their messages.
	Native *NativeFilter `json:"native,omitempty"`
	// Disabled is http_filters[].disabled: the filter runs only on routes
	// or virtual hosts whose typed_per_filter_config enables it
	// (FilterDisabled).
	Disabled bool `json:"disabled,omitempty"`
}

// NativeFilter is the config of a native HTTP filter.
type NativeFilter struct {
	// Type is the typed_config message's full name, its registry key.
	Type string `json:"type"`
	// Config is what the filter's Parse made of typed_config.
	Config any `json:"config,omitempty"`
	// StatPrefix is the connection manager's, as Envoy prefixes HTTP
	// filter stats: "http.<stat_prefix>.".
	StatPrefix string `json:"stat_prefix"`
}

// FailurePolicy is envoy.extensions.wasm.v3.FailurePolicy: what happens
// to a plugin's streams and instance when a trap, the call deadline or
// the memory cap poisons the instance (docs/decisions.md §11 and "The
// default failure policy").
type FailurePolicy string

const (
	// FailDefault is failure_policy unset (UNSPECIFIED, and no
	// deprecated fail_open): the streams on a poisoned instance fail as
	// under FAIL_CLOSED (503, wasm_fail_stream) and the instance is
	// replaced as under FAIL_RELOAD, so no configuration written without
	// a policy leaves a listener failing forever. Envoy's own default
	// is FAIL_CLOSED; the difference is deliberate (docs/decisions.md,
	// "The default failure policy").
	FailDefault FailurePolicy = ""
	// FailClosed, set explicitly, is Envoy's: a poisoned instance stays
	// dead, its streams and every later one on it get a 503, until a
	// reload (which replaces poisoned instances) or a config change.
	FailClosed FailurePolicy = "FAIL_CLOSED"
	// FailOpen skips the plugin on a poisoned instance.
	FailOpen FailurePolicy = "FAIL_OPEN"
	// FailReload fails the streams closed and replaces the instance,
	// with a backoff.
	FailReload FailurePolicy = "FAIL_RELOAD"
)

// WasmPlugin is envoy.extensions.wasm.v3.PluginConfig with its VmConfig.
type WasmPlugin struct {
	Name    string `json:"name"`
	RootID  string `json:"root_id"`
	VMID    string `json:"vm_id"`
	Runtime string `json:"runtime"`
	// After Parse, exactly one of CodeFile and Code: CodeFile for
	// local.filename, Code for inline_bytes / inline_string. Parse keeps
	// local.filename exactly as written; resolving (the library's first
	// step of a load or reload, internal/resolve) finds a relative one
	// against the working directory (Envoy's rule) or, when nothing is
	// there, beside the config file (docs/decisions.md), and puts the
	// bytes of a file or remote module in Code, CodeFile then naming it.
	CodeFile string `json:"code_file,omitempty"`
	Code     []byte `json:"code,omitempty"`
	// CodeDigest is never parsed: resolving sets it to the sha256 (hex)
	// of the code, so a reload that finds a module rebuilt sees the
	// plugin changed (proxy.Diff compares digests, not bytes).
	CodeDigest string `json:"code_digest,omitempty"`
	// VMConfiguration and PluginConfiguration are the bytes the guest
	// reads: StringValue/BytesValue unwrapped, Struct as JSON text.
	VMConfiguration     []byte `json:"vm_configuration,omitempty"`
	PluginConfiguration []byte `json:"plugin_configuration,omitempty"`
	// RouteConfigurations are the distinct per-route plugin
	// configurations (WasmRouteConfig) that the connection manager's
	// routes and virtual hosts give this HTTP filter, sorted; each is one
	// more root context of the plugin in the same VM.
	RouteConfigurations [][]byte      `json:"route_configurations,omitempty"`
	FailurePolicy       FailurePolicy `json:"failure_policy,omitempty"`
	// ReloadBackoff and ReloadMaxBackoff are reload_config.backoff's
	// base_interval and max_interval (0 = unset: the host's defaults,
	// 1 s and ten times the base). FAIL_RELOAD and the default
	// (FailDefault) use them.
	ReloadBackoff    Duration `json:"reload_backoff,omitempty"`
	ReloadMaxBackoff Duration `json:"reload_max_backoff,omitempty"`
	// AllowOnHeadersStopIteration passes a headers Pause through as
	// StopIteration instead of StopAllIterationAndWatermark.
	AllowOnHeadersStopIteration bool `json:"allow_on_headers_stop_iteration,omitempty"`
	// EnvHostKeys and EnvKeyValues are vm_config.environment_variables.
	EnvHostKeys  []string          `json:"env_host_keys,omitempty"`
	EnvKeyValues map[string]string `json:"env_key_values,omitempty"`
	// Remote is vm_config.code.remote (or an Istio WasmPlugin's url):
	// the code is fetched by package source and resolving puts it in
	// Code before loading. Exactly one of CodeFile, Code, Remote is set
	// after Parse.
	Remote *RemoteCode `json:"remote,omitempty"`
	// AllowedCapabilities are the keys of
	// capability_restriction_config.allowed_capabilities: when any is
	// listed, every other ABI function answers INTERNAL_FAILURE (WASI:
	// ENOTCAPABLE) and unlisted callbacks are never called, as in Envoy.
	AllowedCapabilities []string `json:"allowed_capabilities,omitempty"`
}

// ClusterType is the cluster discovery type.
type ClusterType string

const (
	ClusterStatic     ClusterType = "STATIC"
	ClusterStrictDNS  ClusterType = "STRICT_DNS"
	ClusterLogicalDNS ClusterType = "LOGICAL_DNS"
)

// LBPolicy is the cluster load-balancing policy.
type LBPolicy string

const (
	LBRoundRobin   LBPolicy = "ROUND_ROBIN"
	LBRandom       LBPolicy = "RANDOM"
	LBLeastRequest LBPolicy = "LEAST_REQUEST"
)

// Cluster is a static upstream cluster.
type Cluster struct {
	Name           string      `json:"name"`
	Type           ClusterType `json:"type"`
	LBPolicy       LBPolicy    `json:"lb_policy"`
	ConnectTimeout Duration    `json:"connect_timeout"` // Envoy default 5s
	// TCPKeepalive is upstream_connection_options.tcp_keepalive: the
	// keep-alive settings of every connection to the cluster's hosts;
	// nil without it.
	TCPKeepalive *TCPKeepalive `json:"tcp_keepalive,omitempty"`
	// DNSRefreshRate for STRICT_DNS/LOGICAL_DNS; Envoy default 5s.
	DNSRefreshRate Duration `json:"dns_refresh_rate,omitempty"`
	// DNSLookupFamily is dns_lookup_family for STRICT_DNS/LOGICAL_DNS:
	// "V4_ONLY", "V6_ONLY", "V4_PREFERRED", "ALL", or "" for Envoy's
	// default AUTO (IPv6 addresses when the name has any, else IPv4).
	DNSLookupFamily string     `json:"dns_lookup_family,omitempty"`
	Endpoints       []Endpoint `json:"endpoints"`
	// HTTP2 is true when the cluster speaks HTTP/2 to its endpoints
	// (typed_extension_protocol_options / http2_protocol_options).
	HTTP2 bool `json:"http2,omitempty"`
	// AutoHTTP is HttpProtocolOptions.auto_config: each TLS connection
	// speaks HTTP/2 or HTTP/1.1 as ALPN negotiates it (HTTP/1.1 when the
	// upstream picks none). Only with a TLS transport socket.
	AutoHTTP bool `json:"auto_http,omitempty"`
	// UpstreamHTTP are the upstream connection settings
	// (common_http_protocol_options, upstream_http_protocol_options,
	// max_requests_per_connection); nil when none is set.
	UpstreamHTTP *UpstreamHTTP `json:"upstream_http,omitempty"`
	// ProperCaseHeaderKeys is the HTTP/1.1 protocol options'
	// header_key_format with proper_case_words: the request field names
	// the pool writes go out in Proper-Case (proxy/headerkey.go) rather
	// than in lower case.
	ProperCaseHeaderKeys bool `json:"header_key_format_proper_case_words,omitempty"`
	// PreserveCase is the HTTP/1.1 protocol options' header_key_format
	// stateful_formatter preserve_case: the response field names the
	// upstream sent are remembered, and the response goes to an
	// HTTP/1.1 client with them spelled so (and, with
	// forward_reason_phrase, the upstream's reason phrase).
	PreserveCase *PreserveCase `json:"header_key_format_preserve_case,omitempty"`
	// UpstreamHTTPFilters are HttpProtocolOptions.http_filters without
	// their terminal upstream_codec: the filters every upstream attempt
	// runs (config/upstream_filters.go, proxy/upstream_filters.go).
	UpstreamHTTPFilters []*HTTPFilter `json:"upstream_http_filters,omitempty"`
	// PerConnectionBufferLimitBytes bounds response buffering (default 1 MiB).
	PerConnectionBufferLimitBytes uint32 `json:"per_connection_buffer_limit_bytes"`
	// TLS is the upstream TLS transport socket; nil for plaintext.
	TLS *UpstreamTLS `json:"tls,omitempty"`
	// CircuitBreakers are circuit_breakers.thresholds of priority
	// DEFAULT; nil means Envoy's defaults (1024 each).
	CircuitBreakers *CircuitBreakers `json:"circuit_breakers,omitempty"`
	// Metadata is metadata.filter_metadata: namespace → fields as JSON
	// values, for the plugins' xds.*_metadata properties.
	Metadata map[string]map[string]any `json:"metadata,omitempty"`
	// HealthCheck is the active health checker (health_checks); nil
	// when the cluster has none and every host is healthy.
	HealthCheck *HealthCheck `json:"health_check,omitempty"`
	// HealthyPanicThreshold is common_lb_config.healthy_panic_threshold
	// in percent (nil: Envoy's default, 50): below that share of healthy
	// hosts, the load balancer uses every host, healthy or not, as Envoy
	// does; 0 disables panic mode.
	HealthyPanicThreshold *float64 `json:"healthy_panic_threshold,omitempty"`
	// LB is the policy's lb_config (least_request_lb_config,
	// ring_hash_lb_config, maglev_lb_config); nil: Envoy's defaults.
	LB *LBConfig `json:"lb_config,omitempty"`
	// OutlierDetection is passive health checking; nil when unset.
	OutlierDetection *OutlierDetection `json:"outlier_detection,omitempty"`
	// CloseConnectionsOnHostHealthFailure closes a host's pooled
	// connections when it fails its health check.
	CloseConnectionsOnHostHealthFailure bool `json:"close_connections_on_host_health_failure,omitempty"`
}

// DefaultHealthyPanicThreshold is Envoy's healthy_panic_threshold.
const DefaultHealthyPanicThreshold = 50

// PanicThreshold is HealthyPanicThreshold with its default.
func (c *Cluster) PanicThreshold() float64 {
	if c.HealthyPanicThreshold == nil {
		return DefaultHealthyPanicThreshold
	}
	return *c.HealthyPanicThreshold
}

// CircuitBreakers bound a cluster's upstream use, as Envoy's DEFAULT
// priority thresholds: open connections, requests waiting for a
// connection, and requests in flight. Past them a request fails at
// once (503, "overflow").
type CircuitBreakers struct {
	MaxConnections     uint32 `json:"max_connections"`
	MaxPendingRequests uint32 `json:"max_pending_requests"`
	MaxRequests        uint32 `json:"max_requests"`
	// MaxRetries bounds the retries a cluster has outstanding at once
	// (Envoy's default 3): past it a retry is not made and the failed
	// attempt's outcome is the answer (upstream_rq_retry_overflow).
	MaxRetries uint32 `json:"max_retries"`
}

// DefaultCircuitBreakerLimit is Envoy's default for each threshold but
// max_retries.
const DefaultCircuitBreakerLimit = 1024

// DefaultMaxRetries is Envoy's default for max_retries.
const DefaultMaxRetries = 3

// Endpoint is one lb_endpoint ("host:port"; host may be a DNS name).
type Endpoint struct {
	Address string `json:"address"`
	// Hostname is endpoint.hostname: the name auto_host_rewrite puts in
	// the Host header for this endpoint (for DNS clusters the resolved
	// name is used when it is empty).
	Hostname string `json:"hostname,omitempty"`
	// Weight is load_balancing_weight; 0 means 1.
	Weight uint32 `json:"weight,omitempty"`
	// Priority is the locality's priority (0 is the highest).
	Priority uint32 `json:"priority,omitempty"`
	// EDSUnhealthy: health_status is UNHEALTHY, DRAINING or TIMEOUT; the
	// host stays out of load balancing (Envoy's FAILED_EDS_HEALTH).
	EDSUnhealthy bool `json:"eds_unhealthy,omitempty"`
}

// LBWeight is Weight with its default.
func (e Endpoint) LBWeight() uint32 {
	if e.Weight == 0 {
		return 1
	}
	return e.Weight
}

// Duration is a time.Duration printed as Go duration text in JSON.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// StatsSink is one stats_sinks entry: envoy.stat_sinks.statsd
// (metrics.v3.StatsdSink) or envoy.stat_sinks.dog_statsd
// (metrics.v3.DogStatsdSink), sending over UDP to Address.
type StatsSink struct {
	Name string `json:"name"`
	// DogStatsD names stats by their tag-extracted name with the tags as
	// "|#name:value"; plain statsd sends the full name.
	DogStatsD bool   `json:"dog_statsd,omitempty"`
	Address   string `json:"address"`
	// Prefix starts every stat name; Envoy's default is "envoy".
	Prefix string `json:"prefix"`
	// MaxBytesPerDatagram bounds a UDP payload (several lines joined by
	// newlines); 0 means the default, 1432 bytes (under a 1500-byte MTU).
	MaxBytesPerDatagram uint32 `json:"max_bytes_per_datagram,omitempty"`
}

// TCPKeepalive is Envoy's core TcpKeepalive: SO_KEEPALIVE on, and each
// field that is set (non-zero here) replaces the system's default
// (TCP_KEEPCNT, TCP_KEEPIDLE, TCP_KEEPINTVL).
type TCPKeepalive struct {
	Probes   uint32   `json:"keepalive_probes,omitempty"`
	Time     Duration `json:"keepalive_time,omitempty"`
	Interval Duration `json:"keepalive_interval,omitempty"`
}

// RouteMaxStreamDuration is a route's max_stream_duration. Each field is
// nil when unset. MaxStreamDuration replaces the connection manager's
// max_stream_duration for the stream (0 turns it off);
// GrpcTimeoutHeaderMax, when set, makes a gRPC request's grpc-timeout
// the limit instead, capped by it (0: no cap), less
// GrpcTimeoutHeaderOffset.
type RouteMaxStreamDuration struct {
	MaxStreamDuration       *Duration `json:"max_stream_duration,omitempty"`
	GrpcTimeoutHeaderMax    *Duration `json:"grpc_timeout_header_max,omitempty"`
	GrpcTimeoutHeaderOffset *Duration `json:"grpc_timeout_header_offset,omitempty"`
}

// PreserveCase is Envoy's preserve_case stateful header formatter
// (PreserveCaseFormatterConfig): the field names of a message received
// over HTTP/1.1 are written in the case they were received in when the
// message goes out over HTTP/1.1 on the other side.
type PreserveCase struct {
	// ForwardReasonPhrase: a response keeps the upstream's reason
	// phrase (a cluster's formatter remembers it).
	ForwardReasonPhrase bool `json:"forward_reason_phrase,omitempty"`
	// ProperCaseOnEnvoyHeaders is formatter_type_on_envoy_headers
	// PROPER_CASE: a name that was not received (one the proxy or a
	// filter added) goes out in Proper-Case rather than in lower case.
	ProperCaseOnEnvoyHeaders bool `json:"proper_case_on_envoy_headers,omitempty"`
}

// Envoy's defaults of drain_timeout and delayed_close_timeout.
const (
	DefaultDrainTimeout        = 5 * time.Second
	DefaultDelayedCloseTimeout = time.Second
)

// DrainTime is drain_timeout, or Envoy's default.
func (h *HTTPConnectionManager) DrainTime() time.Duration {
	if h.DrainTimeout == nil {
		return DefaultDrainTimeout
	}
	return h.DrainTimeout.D()
}

// DelayedCloseTime is delayed_close_timeout, or Envoy's default.
func (h *HTTPConnectionManager) DelayedCloseTime() time.Duration {
	if h.DelayedCloseTimeout == nil {
		return DefaultDelayedCloseTimeout
	}
	return h.DelayedCloseTimeout.D()
}
