package config

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// HTTP2Options are the connection manager's http2_protocol_options:
// the settings of its downstream HTTP/2 connections. Zero values leave
// the HTTP/2 server's own defaults.
type HTTP2Options struct {
	// MaxConcurrentStreams is the SETTINGS_MAX_CONCURRENT_STREAMS the
	// proxy advertises (0: the server's default, 250).
	MaxConcurrentStreams uint32 `json:"max_concurrent_streams,omitempty"`
	// InitialStreamWindowSize and InitialConnectionWindowSize are the
	// flow-control windows the proxy grants a client for request bodies
	// (0: the server's defaults, 1 MiB per stream and per connection).
	InitialStreamWindowSize     uint32 `json:"initial_stream_window_size,omitempty"`
	InitialConnectionWindowSize uint32 `json:"initial_connection_window_size,omitempty"`
	// HpackTableSize bounds the HPACK dynamic tables both ways (0: 4096,
	// Envoy's default too).
	HpackTableSize uint32 `json:"hpack_table_size,omitempty"`
	// KeepaliveInterval sends a PING on a connection that received no
	// frame for this long; KeepaliveTimeout closes it when the PING is
	// not answered in time (connection_keepalive; zero: no PINGs).
	KeepaliveInterval Duration `json:"keepalive_interval,omitempty"`
	KeepaliveTimeout  Duration `json:"keepalive_timeout,omitempty"`
	// AllowConnect is allow_connect: the connections offer RFC 8441
	// extended CONNECT (WebSocket over HTTP/2), when the process has it
	// on in x/net/http2 (proxy/xconnect).
	AllowConnect bool `json:"allow_connect,omitempty"`
}

// buildHTTP2Options reads a connection manager's http2_protocol_options.
// The proto's validation rules have already bounded the values as
// Envoy does (windows in [65535, 2^31-1], streams ≥ 1, keepalive
// timeout required, ≥ 1ms); fields the HTTP/2 server cannot honour are
// refused by the allow-list (supported.go).
func buildHTTP2Options(pb *corev3.Http2ProtocolOptions, path string, o *HTTP2Options) error {
	o.MaxConcurrentStreams = pb.GetMaxConcurrentStreams().GetValue()
	o.InitialStreamWindowSize = pb.GetInitialStreamWindowSize().GetValue()
	o.InitialConnectionWindowSize = pb.GetInitialConnectionWindowSize().GetValue()
	if v := pb.GetHpackTableSize(); v != nil {
		if v.GetValue() == 0 {
			// The HTTP/2 library reads 0 as "its default": a table
			// turned off cannot be asked for.
			return notSupported(joinPath(path, "hpack_table_size"), "0 (no dynamic table)")
		}
		o.HpackTableSize = v.GetValue()
	}
	if ka := pb.GetConnectionKeepalive(); ka != nil {
		o.KeepaliveInterval = Duration(ka.GetInterval().AsDuration())
		o.KeepaliveTimeout = Duration(ka.GetTimeout().AsDuration())
	}
	o.AllowConnect = pb.GetAllowConnect()
	return nil
}

// refuseUpstreamHTTP2Settings refuses the settings of a cluster's
// http2_protocol_options: the allow-list accepts the message's fields
// for the connection manager, where they are implemented, but upstream
// connections take none of them yet (the message only selects HTTP/2).
func refuseUpstreamHTTP2Settings(pb *corev3.Http2ProtocolOptions, path string) error {
	if pb == nil {
		return nil
	}
	var set protoreflect.FieldDescriptor
	pb.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if set == nil || fd.Number() < set.Number() {
			set = fd
		}
		return true
	})
	if set == nil {
		return nil
	}
	return notSupported(joinPath(path, string(set.Name())), "on a cluster (its HTTP/2 settings are the client's defaults)")
}
