// Package extauthz is envoy.filters.http.ext_authz: each request is
// checked by an external authorization service before it goes on, with
// Envoy's semantics restated from source/extensions/filters/http/ext_authz/
// and .../filters/common/ext_authz/:
//
// The service is a cluster reached through the proxy's own cluster
// access (filters.Env.Upstreams, the filter.Upstreams that Wasm callouts
// use): a grpc_service (envoy_grpc) is called with
// envoy.service.auth.v3.Authorization/Check; an http_service gets the
// request's :method, :path (under path_prefix), :authority,
// authorization and allowed_headers, plus headers_to_add, and its 200
// allows, 5xx is an error and any other status denies.
//
// While the check is in flight the request is held (headers, and body
// with with_request_body up to max_request_bytes: over it without
// allow_partial_message the client gets 413). Allowed: the service's
// headers are applied to the upstream request and its response headers
// to the client response. Denied: the client gets the service's status
// (gRPC default 403), headers and body. Error (unreachable, timeout,
// 5xx, bad answer): with failure_mode_allow the request goes on (with
// x-envoy-auth-failure-mode-allowed: true when
// failure_mode_allow_header_add), else the client gets status_on_error
// (default 403). ExtAuthzPerRoute disables the check or adds
// context_extensions (route over virtual host).
//
// Stats http.<stat_prefix>.ext_authz.[<filter stat_prefix>.]ok, denied,
// error, failure_mode_allowed.
package extauthz

import (
	"context"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
	"github.com/wasmproxy/wasmproxy/filters/internal/async"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Name is the filter's canonical name.
const Name = "envoy.filters.http.ext_authz"

func init() {
	filters.Register(&filters.Native{
		Name:          Name,
		Config:        "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
		Parse:         parse,
		PerRoute:      "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
		ParsePerRoute: parsePerRoute,
		New:           newFactory,
	})
}

type counters struct {
	ok, denied, errors, failureModeAllowed *stats.Counter
}

type factory struct {
	name string
	cfg  *Config
	ups  filter.Upstreams
	st   counters
}

func newFactory(cfg any, env filters.Env) (filter.Factory, error) {
	f := &factory{name: env.FilterName, cfg: cfg.(*Config), ups: env.Upstreams}
	if env.Stats != nil {
		p := env.StatPrefix + "ext_authz."
		if f.cfg.StatPrefix != "" {
			p += f.cfg.StatPrefix + "."
		}
		f.st = counters{
			ok: env.Stats.Counter(p + "ok"), denied: env.Stats.Counter(p + "denied"),
			errors: env.Stats.Counter(p + "error"), failureModeAllowed: env.Stats.Counter(p + "failure_mode_allowed"),
		}
	}
	return f, nil
}

func (f *factory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &stream{f: f, cb: cb}
}

// state is where a stream stands with its check.
type state int

const (
	idle      state = iota // not started (or not needed)
	buffering              // holding the body until it is complete or large enough
	checking               // the check is in flight; the request is held
	done                   // decided; the request went on or was answered
)

type stream struct {
	filter.PassThrough
	f     *factory
	cb    filter.Callbacks
	state state
	ext   map[string]string
	body  bool           // buffer the body for the check
	buf   *filter.Buffer // the body held here while buffering

	respAdd, respSet []filter.Pair

	call async.Call
}

func (s *stream) DecodeHeaders(h *filter.HeaderMap, endStream bool) filter.HeadersStatus {
	route, vhost := filters.PerRoute(s.cb, s.f.name)
	rc, _ := route.(*PerRoute)
	vc, _ := vhost.(*PerRoute)
	if rc != nil && rc.Disabled || rc == nil && vc != nil && vc.Disabled {
		s.state = done
		return filter.HeadersContinue
	}
	// context_extensions merge from the less specific to the more
	// specific, as Envoy's per-route merge does.
	for _, pr := range []*PerRoute{vc, rc} {
		if pr == nil {
			continue
		}
		for k, v := range pr.ContextExtensions {
			if s.ext == nil {
				s.ext = map[string]string{}
			}
			s.ext[k] = v
		}
	}
	s.body = s.f.cfg.WithBody != nil && !(rc != nil && rc.DisableBody || rc == nil && vc != nil && vc.DisableBody)
	if s.body && !endStream {
		s.state = buffering
		return filter.HeadersStopIteration
	}
	s.start(nil, false)
	return filter.HeadersStopAllIterationAndWatermark
}

func (s *stream) DecodeData(data *filter.Buffer, endStream bool) filter.DataStatus {
	switch s.state {
	case buffering:
		s.buf = data
		w := s.f.cfg.WithBody
		max := int(w.MaxBytes)
		if data.Len() > max && !w.AllowPartial {
			// Envoy sets the decoder buffer limit to max_request_bytes:
			// the connection manager answers 413.
			s.state = done
			s.cb.SendLocalReply(413, []byte("Payload Too Large"), nil, "request_payload_too_large")
			return filter.DataStopIterationAndBuffer
		}
		if !endStream && !(w.AllowPartial && data.Len() >= max) {
			return filter.DataStopIterationAndBuffer
		}
		body := data.Bytes[:min(len(data.Bytes), max)]
		s.start(append([]byte(nil), body...), !endStream || data.Len() > max)
		return filter.DataStopIterationAndWatermark
	case checking:
		return filter.DataStopIterationAndWatermark
	}
	return filter.DataContinue
}

func (s *stream) DecodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	switch s.state {
	case buffering:
		// Trailers end a body shorter than max_request_bytes: check now.
		var body []byte
		if s.buf != nil {
			body = append(body, s.buf.Bytes...)
		}
		s.start(body, false)
		return filter.TrailersStopIteration
	case checking:
		return filter.TrailersStopIteration
	}
	return filter.TrailersContinue
}

// start sends the check in the background; its outcome is applied on the
// stream's goroutine (apply).
func (s *stream) start(body []byte, partial bool) {
	s.state = checking
	in := &checkInput{
		headers: append([]filter.Pair(nil), s.cb.RequestHeaders().Pairs()...), body: body, partial: partial,
		withBody: s.body, ext: s.ext,
	}
	if info := s.cb.Info(); info != nil {
		in.protocol, in.src, in.dst, in.start = info.Protocol, info.DownstreamAddr, info.LocalAddr, info.StartTime
	}
	f := s.f
	s.call.Go(s.cb, func(ctx context.Context) func() {
		var r *result
		switch {
		case f.ups == nil:
			r = failure("no cluster access")
		case f.cfg.GRPC != nil:
			r = checkGRPC(ctx, f.ups, f.cfg.GRPC, in, f.cfg.WithBody != nil && f.cfg.WithBody.PackAsBytes)
		default:
			r = checkHTTP(ctx, f.ups, f.cfg.HTTP, in)
		}
		return func() { s.apply(r) }
	})
}

// apply acts on a check's result (Envoy's onComplete).
func (s *stream) apply(r *result) {
	if s.state != checking {
		return
	}
	s.state = done
	cfg := s.f.cfg
	switch r.outcome {
	case allowed:
		inc(s.f.st.ok)
		if h := s.cb.RequestHeaders(); h != nil {
			for _, p := range r.set {
				h.Set(p.Key, p.Value)
			}
			for _, p := range r.add {
				h.Add(p.Key, p.Value)
			}
			for _, p := range r.addIfAbsent {
				if _, ok := h.Get(p.Key); !ok {
					h.Add(p.Key, p.Value)
				}
			}
			for _, p := range r.setIfExists {
				if _, ok := h.Get(p.Key); ok {
					h.Set(p.Key, p.Value)
				}
			}
			for _, k := range r.remove {
				if k != "" && k[0] != ':' && k != "host" {
					h.Del(k)
				}
			}
		}
		s.respAdd, s.respSet = r.respAdd, r.respSet
		s.cb.Continue(filter.Request)
	case denied:
		inc(s.f.st.denied)
		s.cb.SendLocalReply(r.status, r.body, r.reply, "ext_authz_denied")
	default:
		inc(s.f.st.errors)
		if cfg.FailureModeAllow {
			inc(s.f.st.failureModeAllowed)
			if cfg.FailureModeAllowHeaderAdd {
				if h := s.cb.RequestHeaders(); h != nil {
					h.Set("x-envoy-auth-failure-mode-allowed", "true")
				}
			}
			s.cb.Continue(filter.Request)
			return
		}
		s.cb.SendLocalReply(cfg.StatusOnError, nil, nil, "ext_authz_error")
	}
}

func inc(c *stats.Counter) {
	if c != nil {
		c.Inc()
	}
}

func (s *stream) EncodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	for _, p := range s.respSet {
		h.Set(p.Key, p.Value)
	}
	for _, p := range s.respAdd {
		h.Add(p.Key, p.Value)
	}
	return filter.HeadersContinue
}

// OnDestroy cancels a check in flight.
func (s *stream) OnDestroy() { s.call.End() }
