// Package buffer is envoy.filters.http.buffer: the whole request body is
// buffered before the request goes upstream, with Envoy's semantics
// restated from source/extensions/filters/http/buffer/buffer_filter.cc:
//
//   - A request with a body is held until its end; the stream's request
//     buffer limit becomes max_request_bytes (Envoy's
//     setDecoderBufferLimit), so a larger body is answered 413 "Payload
//     Too Large" (details request_payload_too_large) by the proxy, and a
//     body the listener's default limit would refuse passes when
//     max_request_bytes allows it.
//   - When the body is complete and the request had no content-length,
//     it gets one (the buffered length), as Envoy does.
//   - A route's or virtual host's BufferPerRoute disables the filter
//     (disabled: true) or replaces its config (buffer), the most
//     specific entry winning.
package buffer

import (
	"strconv"

	bufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
)

// Name is the filter's canonical name.
const Name = "envoy.filters.http.buffer"

func init() {
	filters.Register(&filters.Native{
		Name:          Name,
		Config:        "envoy.extensions.filters.http.buffer.v3.Buffer",
		Parse:         parse,
		PerRoute:      "envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
		ParsePerRoute: parsePerRoute,
		New:           newFactory,
	})
}

// Config is a Buffer.
type Config struct {
	MaxRequestBytes uint32 `json:"max_request_bytes"`
}

// PerRoute is a BufferPerRoute: Disabled, or Config.
type PerRoute struct {
	Disabled bool    `json:"disabled,omitempty"`
	Config   *Config `json:"buffer,omitempty"`
}

func parse(msg proto.Message, path string) (any, error) {
	pb, ok := msg.(*bufferv3.Buffer)
	if !ok || pb == nil {
		return nil, config.FieldError(path, "missing: the buffer filter needs a typed_config with max_request_bytes")
	}
	return build(pb, path)
}

func build(pb *bufferv3.Buffer, path string) (*Config, error) {
	if pb.GetMaxRequestBytes() == nil || pb.GetMaxRequestBytes().GetValue() == 0 {
		return nil, config.FieldError(config.JoinPath(path, "max_request_bytes"), "missing: must be above 0")
	}
	return &Config{MaxRequestBytes: pb.GetMaxRequestBytes().GetValue()}, nil
}

func parsePerRoute(msg proto.Message, path string) (any, error) {
	pb, ok := msg.(*bufferv3.BufferPerRoute)
	if !ok {
		return nil, config.FieldError(path, "want envoy.extensions.filters.http.buffer.v3.BufferPerRoute")
	}
	if pb.GetDisabled() {
		return &PerRoute{Disabled: true}, nil
	}
	if pb.GetBuffer() == nil {
		return nil, config.FieldError(path, "missing: disabled or buffer")
	}
	c, err := build(pb.GetBuffer(), config.JoinPath(path, "buffer"))
	if err != nil {
		return nil, err
	}
	return &PerRoute{Config: c}, nil
}

type factory struct {
	name string
	cfg  *Config
}

func newFactory(cfg any, env filters.Env) (filter.Factory, error) {
	return &factory{name: env.FilterName, cfg: cfg.(*Config)}, nil
}

func (f *factory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &stream{f: f, cb: cb}
}

type stream struct {
	filter.PassThrough
	f         *factory
	cb        filter.Callbacks
	buffering bool
}

// config is the one that applies to the stream, nil when disabled.
func (s *stream) config() *Config {
	route, vhost := filters.PerRoute(s.cb, s.f.name)
	for _, c := range [2]any{route, vhost} {
		if p, ok := c.(*PerRoute); ok && p != nil {
			if p.Disabled {
				return nil
			}
			return p.Config
		}
	}
	return s.f.cfg
}

func (s *stream) DecodeHeaders(_ *filter.HeaderMap, endStream bool) filter.HeadersStatus {
	if endStream {
		return filter.HeadersContinue
	}
	c := s.config()
	if c == nil {
		return filter.HeadersContinue
	}
	if l, ok := s.cb.(filter.BufferLimiter); ok {
		l.SetBufferLimit(filter.Request, int(c.MaxRequestBytes))
	}
	s.buffering = true
	return filter.HeadersStopIteration
}

func (s *stream) DecodeData(data *filter.Buffer, endStream bool) filter.DataStatus {
	if !s.buffering {
		return filter.DataContinue
	}
	if !endStream {
		return filter.DataStopIterationAndBuffer
	}
	s.setContentLength(data.Len())
	return filter.DataContinue
}

func (s *stream) setContentLength(n int) {
	h := s.cb.RequestHeaders()
	if h == nil {
		return
	}
	if _, ok := h.Get("content-length"); !ok {
		h.Set("content-length", strconv.Itoa(n))
	}
}
