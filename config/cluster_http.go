package config

import (
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// DefaultUpstreamIdleTimeout is Envoy's idle_timeout of an upstream
// connection when a cluster's common_http_protocol_options leave it unset.
const DefaultUpstreamIdleTimeout = time.Hour

// UpstreamHTTP are a cluster's upstream HTTP connection settings: the
// core HttpProtocolOptions (common_http_protocol_options, from the
// deprecated Cluster field or from
// envoy.extensions.upstreams.http.v3.HttpProtocolOptions), the deprecated
// Cluster.max_requests_per_connection, and UpstreamHttpProtocolOptions.
type UpstreamHTTP struct {
	// IdleTimeout closes a connection that has carried no request this
	// long; nil is Envoy's default (1h), 0 turns it off.
	IdleTimeout *Duration `json:"idle_timeout,omitempty"`
	// MaxRequestsPerConnection closes a connection after this many
	// requests (0: no limit).
	MaxRequestsPerConnection uint32 `json:"max_requests_per_connection,omitempty"`
	// MaxConnectionDuration drains a connection this long after it was
	// opened: no new request goes on it, and it closes once idle (0: none).
	MaxConnectionDuration Duration `json:"max_connection_duration,omitempty"`
	// MaxHeadersCount bounds the header fields of a response (0: Envoy's
	// default, 100).
	MaxHeadersCount uint32 `json:"max_headers_count,omitempty"`
	// AutoSNI sends the request's host (or the OverrideAutoSNIHeader's
	// value) as SNI, port removed, unless it is an IP address.
	AutoSNI bool `json:"auto_sni,omitempty"`
	// AutoSANValidation checks the upstream certificate against that host
	// instead of the context's SAN matchers.
	AutoSANValidation     bool   `json:"auto_san_validation,omitempty"`
	OverrideAutoSNIHeader string `json:"override_auto_sni_header,omitempty"`
	// MaxStreamDuration bounds each upstream attempt's stream from the
	// attempt's start, response body included (0: none); the router
	// resets the attempt when it is reached (proxy/maxduration.go).
	MaxStreamDuration Duration `json:"max_stream_duration,omitempty"`
}

// IdleTimeoutOrDefault is IdleTimeout with Envoy's default.
func (u *UpstreamHTTP) IdleTimeoutOrDefault() time.Duration {
	if u == nil || u.IdleTimeout == nil {
		return DefaultUpstreamIdleTimeout
	}
	return u.IdleTimeout.D()
}

// buildUpstreamCommon reads a cluster's common_http_protocol_options into
// u. max_stream_duration bounds each upstream attempt, as Envoy's router
// does (reset, retry, 408/504 upstream_max_stream_duration_reached);
// 0 turns it off. headers_with_underscores_action
// has no effect on a cluster in Envoy either (it is about requests a
// downstream client sends) and is accepted as such.
func buildUpstreamCommon(pb *corev3.HttpProtocolOptions, u *UpstreamHTTP, path string) error {
	if pb == nil {
		return nil
	}
	if d := pb.GetMaxStreamDuration(); d != nil {
		v, err := nonNegative(d, joinPath(path, "max_stream_duration"))
		if err != nil {
			return err
		}
		u.MaxStreamDuration = v
	}
	if d := pb.GetIdleTimeout(); d != nil {
		v, err := nonNegative(d, joinPath(path, "idle_timeout"))
		if err != nil {
			return err
		}
		u.IdleTimeout = &v
	}
	if d := pb.GetMaxConnectionDuration(); d != nil {
		v, err := nonNegative(d, joinPath(path, "max_connection_duration"))
		if err != nil {
			return err
		}
		u.MaxConnectionDuration = v
	}
	if n := pb.GetMaxHeadersCount(); n != nil {
		if n.GetValue() < 1 {
			return fieldError(joinPath(path, "max_headers_count"), "must be at least 1")
		}
		u.MaxHeadersCount = n.GetValue()
	}
	if n := pb.GetMaxRequestsPerConnection(); n != nil {
		u.MaxRequestsPerConnection = n.GetValue()
	}
	return nil
}

// buildUpstreamHTTPProtocol reads UpstreamHttpProtocolOptions into u.
func buildUpstreamHTTPProtocol(pb *corev3.UpstreamHttpProtocolOptions, u *UpstreamHTTP, path string) error {
	if pb == nil {
		return nil
	}
	u.AutoSNI = pb.GetAutoSni()
	u.AutoSANValidation = pb.GetAutoSanValidation()
	if h := pb.GetOverrideAutoSniHeader(); h != "" {
		if name, pseudo := strings.CutPrefix(h, ":"); (pseudo && !httpguts.ValidHeaderFieldName(name)) || (!pseudo && !httpguts.ValidHeaderFieldName(h)) {
			return fieldError(joinPath(path, "override_auto_sni_header"), "%q is not a header name", h)
		}
		u.OverrideAutoSNIHeader = strings.ToLower(h)
	}
	return nil
}

// legacyUpstreamHTTP reads the deprecated Cluster fields:
// common_http_protocol_options, upstream_http_protocol_options and
// max_requests_per_connection (refused together with the common
// options' own, as Envoy refuses it).
func legacyUpstreamHTTP(pb *clusterv3.Cluster, u *UpstreamHTTP, path string) error {
	common := joinPath(path, "common_http_protocol_options")
	if err := buildUpstreamCommon(pb.GetCommonHttpProtocolOptions(), u, common); err != nil {
		return err
	}
	if n := pb.GetMaxRequestsPerConnection(); n != nil {
		if pb.GetCommonHttpProtocolOptions().GetMaxRequestsPerConnection() != nil {
			return fieldError(joinPath(path, "max_requests_per_connection"), "set together with common_http_protocol_options.max_requests_per_connection; set one")
		}
		u.MaxRequestsPerConnection = n.GetValue()
	}
	return buildUpstreamHTTPProtocol(pb.GetUpstreamHttpProtocolOptions(), u, joinPath(path, "upstream_http_protocol_options"))
}

// empty reports settings that change nothing from Envoy's defaults.
func (u *UpstreamHTTP) empty() bool { return *u == UpstreamHTTP{} }

// refuseRespectDNSTTL refuses respect_dns_ttl: true. wasmproxy resolves
// through Go's resolver (the system's /etc/hosts, resolv.conf search
// domains and options), which reports no record TTL, so re-resolving
// "after the TTL" cannot be honoured; the refusal says how to get the
// behaviour that is implemented.
func refuseRespectDNSTTL(path string) error {
	return notSupported(path, "the resolver reports no record TTLs; without it the cluster re-resolves every dns_refresh_rate (default 5s)")
}
