// Package config turns an Envoy v3 bootstrap (YAML or JSON) into the
// validated model the proxy runs. Parsing knows nothing of sockets: the
// model is plain data, printable as JSON for golden tests.
package config

import (
	"encoding/json"
	"regexp"
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
	// RawJSON is the bootstrap as protojson, for /config_dump.
	RawJSON json.RawMessage `json:"-"`
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
	PerConnectionBufferLimitBytes uint32                 `json:"per_connection_buffer_limit_bytes"`
	HTTP                          *HTTPConnectionManager `json:"http,omitempty"`
	// Metadata is metadata.filter_metadata: namespace → fields as JSON
	// values, for the plugins' xds.*_metadata properties.
	Metadata map[string]map[string]any `json:"metadata,omitempty"`
}

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
	// RequestHeadersTimeout, StreamIdleTimeout: zero means none.
	RequestHeadersTimeout Duration `json:"request_headers_timeout,omitempty"`
	// MaxRequestHeadersKB: Envoy's default 60.
	MaxRequestHeadersKB uint32 `json:"max_request_headers_kb"`
}

// RouteConfig is an inline route_config.
type RouteConfig struct {
	Name         string         `json:"name"`
	VirtualHosts []*VirtualHost `json:"virtual_hosts"`
}

// VirtualHost picks routes by the request's :authority.
type VirtualHost struct {
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
	Routes  []*Route `json:"routes"`
	// Metadata is metadata.filter_metadata: namespace → fields as JSON
	// values, for the plugins' xds.*_metadata properties.
	Metadata map[string]map[string]any `json:"metadata,omitempty"`
}

// Route is one match and its action: exactly one of Cluster or
// DirectResponse is set.
type Route struct {
	Name          string     `json:"name,omitempty"`
	Match         RouteMatch `json:"match"`
	Cluster       string     `json:"cluster,omitempty"`
	PrefixRewrite string     `json:"prefix_rewrite,omitempty"`
	// Timeout is the route timeout; Envoy's default is 15s, 0 disables.
	Timeout        Duration        `json:"timeout"`
	DirectResponse *DirectResponse `json:"direct_response,omitempty"`
	// Metadata is metadata.filter_metadata: namespace → fields as JSON
	// values, for the plugins' xds.*_metadata properties.
	Metadata map[string]map[string]any `json:"metadata,omitempty"`
}

// RouteMatch: exactly one of Prefix, Path, SafeRegex is set.
type RouteMatch struct {
	Prefix    string          `json:"prefix,omitempty"`
	Path      string          `json:"path,omitempty"`
	SafeRegex *Regexp         `json:"safe_regex,omitempty"`
	Headers   []HeaderMatcher `json:"headers,omitempty"`
	// CaseSensitive defaults to true, as in Envoy.
	CaseSensitive bool `json:"case_sensitive"`
}

// HeaderMatcher matches one request header. With no matcher set it
// matches on presence. InvertMatch negates the result.
type HeaderMatcher struct {
	Name        string  `json:"name"`
	Exact       *string `json:"exact,omitempty"`
	Prefix      *string `json:"prefix,omitempty"`
	Suffix      *string `json:"suffix,omitempty"`
	Contains    *string `json:"contains,omitempty"`
	SafeRegex   *Regexp `json:"safe_regex,omitempty"`
	Present     *bool   `json:"present,omitempty"`
	InvertMatch bool    `json:"invert_match,omitempty"`
}

// DirectResponse is a route answered by the proxy itself.
type DirectResponse struct {
	Status int    `json:"status"`
	Body   []byte `json:"body,omitempty"`
}

// HTTPFilter is one entry of http_filters: exactly one of Wasm or
// Router is set.
type HTTPFilter struct {
	Name   string      `json:"name"`
	Wasm   *WasmPlugin `json:"wasm,omitempty"`
	Router bool        `json:"router,omitempty"`
}

// FailurePolicy is envoy.extensions.wasm.v3.FailurePolicy.
type FailurePolicy string

const (
	FailClosed FailurePolicy = "FAIL_CLOSED"
	FailOpen   FailurePolicy = "FAIL_OPEN"
	FailReload FailurePolicy = "FAIL_RELOAD"
)

// WasmPlugin is envoy.extensions.wasm.v3.PluginConfig with its VmConfig.
type WasmPlugin struct {
	Name    string `json:"name"`
	RootID  string `json:"root_id"`
	VMID    string `json:"vm_id"`
	Runtime string `json:"runtime"`
	// Exactly one of CodeFile and Code: CodeFile for local.filename,
	// Code for inline_bytes / inline_string. Parse keeps local.filename
	// exactly as written; the command line resolves a relative one
	// against the working directory (Envoy's rule) and, when nothing is
	// there, beside the config file (docs/decisions.md).
	CodeFile string `json:"code_file,omitempty"`
	Code     []byte `json:"code,omitempty"`
	// VMConfiguration and PluginConfiguration are the bytes the guest
	// reads: StringValue/BytesValue unwrapped, Struct as JSON text.
	VMConfiguration     []byte        `json:"vm_configuration,omitempty"`
	PluginConfiguration []byte        `json:"plugin_configuration,omitempty"`
	FailurePolicy       FailurePolicy `json:"failure_policy"`
	// AllowOnHeadersStopIteration passes a headers Pause through as
	// StopIteration instead of StopAllIterationAndWatermark.
	AllowOnHeadersStopIteration bool `json:"allow_on_headers_stop_iteration,omitempty"`
	// EnvHostKeys and EnvKeyValues are vm_config.environment_variables.
	EnvHostKeys  []string          `json:"env_host_keys,omitempty"`
	EnvKeyValues map[string]string `json:"env_key_values,omitempty"`
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
	// DNSRefreshRate for STRICT_DNS/LOGICAL_DNS; Envoy default 5s.
	DNSRefreshRate Duration   `json:"dns_refresh_rate,omitempty"`
	Endpoints      []Endpoint `json:"endpoints"`
	// HTTP2 is true when the cluster speaks HTTP/2 to its endpoints
	// (typed_extension_protocol_options / http2_protocol_options).
	HTTP2 bool `json:"http2,omitempty"`
	// PerConnectionBufferLimitBytes bounds response buffering (default 1 MiB).
	PerConnectionBufferLimitBytes uint32 `json:"per_connection_buffer_limit_bytes"`
	// Metadata is metadata.filter_metadata: namespace → fields as JSON
	// values, for the plugins' xds.*_metadata properties.
	Metadata map[string]map[string]any `json:"metadata,omitempty"`
}

// Endpoint is one lb_endpoint ("host:port"; host may be a DNS name).
type Endpoint struct {
	Address string `json:"address"`
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

// Regexp is a compiled RE2 regular expression printed as its source.
// Envoy requires a safe_regex to match the whole path or header value;
// the expression is kept as written, Anchored gives the whole-value form.
type Regexp struct {
	*regexp.Regexp
}

func (r *Regexp) MarshalJSON() ([]byte, error) {
	return json.Marshal(r.String())
}

func (r *Regexp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	re, err := regexp.Compile(s)
	r.Regexp = re
	return err
}
