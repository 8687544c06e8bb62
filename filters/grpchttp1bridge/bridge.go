// Package grpchttp1bridge is envoy.filters.http.grpc_http1_bridge: it
// lets an HTTP/1.x client call a gRPC service, with Envoy's semantics
// restated from source/extensions/filters/http/grpc_http1_bridge/:
//
// A request over HTTP/1.0 or 1.1 whose content-type is application/grpc
// (or application/grpc+<subtype>) is bridged: the response headers are
// held and the response body buffered until the trailers, whose
// grpc-status and grpc-message are copied into the headers; a
// grpc-status other than 0 (or not a number) turns the status into 503;
// content-length is set to the buffered body's length (the HTTP/1 codec
// drops the trailers). A gRPC trailers-only response (the headers end
// the stream) is treated the same way, its headers standing for the
// trailers: 503 unless grpc-status is 0, content-length 0 (as Envoy
// since it handles trailers-only answers). A body that ends without
// trailers passes unchanged.
//
// upgrade_protobuf_to_grpc: a request with content-type
// application/x-protobuf becomes a gRPC request (content-type
// application/grpc, content-length removed, the whole body prefixed with
// a gRPC frame header), and the response body loses its frame header.
// ignore_query_parameters: a bridged request's query string is removed
// from :path. The filter has no per-route config and no stats.
package grpchttp1bridge

import (
	"encoding/binary"
	"strconv"
	"strings"

	bridgev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_http1_bridge/v3"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
)

// Name is the filter's canonical name.
const Name = "envoy.filters.http.grpc_http1_bridge"

func init() {
	filters.Register(&filters.Native{
		Name:   Name,
		Config: "envoy.extensions.filters.http.grpc_http1_bridge.v3.Config",
		Parse:  parse,
		New:    newFactory,
	})
}

// Config is the filter's Config message.
type Config struct {
	UpgradeProtobuf       bool `json:"upgrade_protobuf_to_grpc,omitempty"`
	IgnoreQueryParameters bool `json:"ignore_query_parameters,omitempty"`
}

func parse(msg proto.Message, _ string) (any, error) {
	pb, _ := msg.(*bridgev3.Config)
	return &Config{UpgradeProtobuf: pb.GetUpgradeProtobufToGrpc(), IgnoreQueryParameters: pb.GetIgnoreQueryParameters()}, nil
}

type factory struct{ cfg *Config }

func newFactory(cfg any, _ filters.Env) (filter.Factory, error) {
	return &factory{cfg: cfg.(*Config)}, nil
}

func (f *factory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &stream{cfg: f.cfg, cb: cb}
}

// frameHeader is a gRPC message's 5-byte prefix: a compressed flag and
// the length.
const frameHeader = 5

type stream struct {
	filter.PassThrough
	cfg      *Config
	cb       filter.Callbacks
	bridging bool
	// framing: the request was upgraded from application/x-protobuf; the
	// response's frame header is still to strip.
	framing  bool
	respHead *filter.HeaderMap
	respBody *filter.Buffer
}

func isGRPC(ct string) bool {
	return ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+")
}

func (s *stream) DecodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	if ct, _ := h.Get("content-type"); s.cfg.UpgradeProtobuf && ct == "application/x-protobuf" {
		// The route is matched again for the changed headers, as
		// Envoy's clearRouteCache here.
		s.framing = true
		h.Set("content-type", "application/grpc")
		h.Del("content-length")
		if rc, ok := s.cb.(filter.RouteCacheClearer); ok {
			rc.ClearRouteCache()
		}
	}
	ct, _ := h.Get("content-type")
	if info := s.cb.Info(); info != nil && strings.HasPrefix(info.Protocol, "HTTP/1") && isGRPC(ct) {
		s.bridging = true
		if s.cfg.IgnoreQueryParameters {
			if p, _ := h.Get(":path"); strings.Contains(p, "?") {
				h.Set(":path", p[:strings.IndexByte(p, '?')])
			}
		}
	}
	return filter.HeadersContinue
}

func (s *stream) DecodeData(data *filter.Buffer, endStream bool) filter.DataStatus {
	if !s.bridging || !s.framing {
		return filter.DataContinue
	}
	if !endStream {
		return filter.DataStopIterationAndBuffer
	}
	framed := make([]byte, frameHeader, frameHeader+len(data.Bytes))
	binary.BigEndian.PutUint32(framed[1:], uint32(len(data.Bytes)))
	data.Bytes = append(framed, data.Bytes...)
	return filter.DataContinue
}

func (s *stream) EncodeHeaders(h *filter.HeaderMap, endStream bool) filter.HeadersStatus {
	if !s.bridging {
		return filter.HeadersContinue
	}
	s.respHead = h
	if endStream {
		// A gRPC trailers-only answer: its headers are its trailers.
		s.finish(h)
		return filter.HeadersContinue
	}
	return filter.HeadersStopIteration
}

func (s *stream) EncodeData(data *filter.Buffer, endStream bool) filter.DataStatus {
	if !s.bridging {
		return filter.DataContinue
	}
	if s.framing && data.Len() >= frameHeader {
		data.Bytes = data.Bytes[frameHeader:]
		s.framing = false
	}
	s.respBody = data
	if endStream {
		return filter.DataContinue
	}
	return filter.DataStopIterationAndBuffer
}

func (s *stream) EncodeTrailers(t *filter.HeaderMap) filter.TrailersStatus {
	if !s.bridging || s.respHead == nil {
		return filter.TrailersContinue
	}
	s.finish(t)
	return filter.TrailersContinue
}

// finish is Envoy's doResponseTrailers: the status from the trailers'
// grpc-status (503 unless 0), content-length from the held body, and
// grpc-status and grpc-message moved into the headers.
func (s *stream) finish(t *filter.HeaderMap) {
	h := s.respHead
	if st, ok := t.Get("grpc-status"); ok {
		if code, err := strconv.ParseUint(st, 10, 64); err != nil || code != 0 {
			h.Set(":status", "503")
		}
		h.Set("grpc-status", st)
	}
	if msg, ok := t.Get("grpc-message"); ok {
		h.Set("grpc-message", msg)
	}
	n := 0
	if s.respBody != nil {
		n = s.respBody.Len()
	}
	h.Set("content-length", strconv.Itoa(n))
}
