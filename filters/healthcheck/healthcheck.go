// Package healthcheck is envoy.filters.http.health_check: requests that
// match the headers are health checks of the proxy itself, with Envoy's
// semantics restated from
// source/extensions/filters/http/health_check/health_check.cc:
//
//   - Every matcher of headers must match (none: every request is a
//     health check).
//   - pass_through_mode false: the proxy answers a health check itself
//     once its request has ended: 200 (details health_check_ok), or 503
//     (health_check_failed) while the server fails health checks — it
//     is draining. The request never goes upstream.
//   - pass_through_mode true: the health check goes upstream; while the
//     server fails health checks its response status becomes 503.
//   - cache_time and cluster_min_healthy_percentages are not supported
//     (refused by name).
package healthcheck

import (
	"strconv"

	hcv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
)

// Name is the filter's canonical name.
const Name = "envoy.filters.http.health_check"

func init() {
	filters.Register(&filters.Native{
		Name:   Name,
		Config: "envoy.extensions.filters.http.health_check.v3.HealthCheck",
		Parse:  parse,
		New:    newFactory,
	})
}

// Config is a HealthCheck.
type Config struct {
	PassThrough bool                   `json:"pass_through_mode"`
	Headers     []config.HeaderMatcher `json:"headers,omitempty"`
}

func parse(msg proto.Message, path string) (any, error) {
	pb, ok := msg.(*hcv3.HealthCheck)
	if !ok || pb == nil {
		return nil, config.FieldError(path, "missing: health_check needs a typed_config with pass_through_mode")
	}
	if pb.GetPassThroughMode() == nil {
		return nil, config.FieldError(config.JoinPath(path, "pass_through_mode"), "missing")
	}
	if pb.GetCacheTime() != nil {
		return nil, config.NotSupportedError(config.JoinPath(path, "cache_time"), "")
	}
	if len(pb.GetClusterMinHealthyPercentages()) > 0 {
		return nil, config.NotSupportedError(config.JoinPath(path, "cluster_min_healthy_percentages"), "")
	}
	c := &Config{PassThrough: pb.GetPassThroughMode().GetValue()}
	for i, h := range pb.GetHeaders() {
		m, err := config.BuildHeaderMatcher(h, config.IndexPath(config.JoinPath(path, "headers"), i))
		if err != nil {
			return nil, err
		}
		c.Headers = append(c.Headers, m)
	}
	return c, nil
}

type factory struct {
	cfg    *Config
	server filters.ServerState
}

func newFactory(cfg any, env filters.Env) (filter.Factory, error) {
	return &factory{cfg: cfg.(*Config), server: env.Server}, nil
}

func (f *factory) failed() bool { return f.server != nil && f.server.HealthCheckFailed() }

func (f *factory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &stream{f: f, cb: cb}
}

type stream struct {
	filter.PassThrough
	f  *factory
	cb filter.Callbacks
	// healthCheck: the request matched; handling: the filter answers it.
	healthCheck, handling bool
}

func (s *stream) DecodeHeaders(h *filter.HeaderMap, endStream bool) filter.HeadersStatus {
	for i := range s.f.cfg.Headers {
		m := &s.f.cfg.Headers[i]
		if !m.Match(h.Values(m.Name)) {
			return filter.HeadersContinue
		}
	}
	s.healthCheck = true
	if s.f.cfg.PassThrough {
		return filter.HeadersContinue
	}
	s.handling = true
	if endStream {
		s.answer()
	}
	return filter.HeadersStopIteration
}

// answer is Envoy's onComplete.
func (s *stream) answer() {
	if s.f.failed() {
		s.cb.SendLocalReply(503, nil, nil, "health_check_failed")
		return
	}
	s.cb.SendLocalReply(200, nil, nil, "health_check_ok")
}

func (s *stream) DecodeData(_ *filter.Buffer, endStream bool) filter.DataStatus {
	if !s.handling {
		return filter.DataContinue
	}
	if endStream {
		s.answer()
	}
	return filter.DataStopIterationNoBuffer
}

func (s *stream) DecodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	if !s.handling {
		return filter.TrailersContinue
	}
	s.answer()
	return filter.TrailersStopIteration
}

func (s *stream) EncodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	if s.healthCheck && !s.handling && s.f.failed() {
		h.Set(":status", strconv.Itoa(503))
	}
	return filter.HeadersContinue
}
