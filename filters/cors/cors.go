// Package cors is envoy.filters.http.cors: Cross-Origin Resource Sharing
// by the policies of typed_per_filter_config
// (envoy.extensions.filters.http.cors.v3.CorsPolicy) on the route and its
// virtual host, with Envoy's semantics (restated from Envoy's
// source/extensions/filters/http/cors/cors_filter.cc):
//
//   - Each setting comes from the most specific policy that sets it
//     (route, then virtual host); enabled and shadow come from the most
//     specific policy. Without a policy the filter does nothing.
//   - A request with a non-empty Origin counts cors.origin_valid or
//     cors.origin_invalid (under http.<stat_prefix>.) when the policy is
//     enabled or in shadow mode; in shadow mode nothing else happens.
//   - An origin is allowed when a matcher of allow_origin_string_match
//     matches it, or matches "*" (a matcher such as exact "*" or
//     safe_regex ".*" allows every origin).
//   - A preflight (OPTIONS with Origin and Access-Control-Request-Method)
//     is answered by the filter with 200 and the access-control-allow-*
//     and max-age headers, unless the origin is not allowed and
//     forward_not_matching_preflights (default true) sends it upstream.
//     allow_methods or allow_headers "*" echo the request's
//     Access-Control-Request-Method / -Headers.
//   - Any other response to an allowed origin gets
//     Access-Control-Allow-Origin (the request's origin, never "*"),
//     -Allow-Credentials: true when allowed, and -Expose-Headers.
package cors

import (
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Name is the filter's canonical name.
const Name = "envoy.filters.http.cors"

func init() {
	filters.Register(&filters.Native{
		Name:          Name,
		Config:        "envoy.extensions.filters.http.cors.v3.Cors",
		Parse:         parse,
		PerRoute:      "envoy.extensions.filters.http.cors.v3.CorsPolicy",
		ParsePerRoute: parsePolicy,
		New:           newFactory,
	})
}

// Config is the filter's own config: envoy.extensions.filters.http.cors.v3.Cors
// has no fields.
type Config struct{}

func parse(msg proto.Message, path string) (any, error) {
	if msg != nil {
		if _, ok := msg.(*corsv3.Cors); !ok {
			return nil, config.FieldError(path, "want envoy.extensions.filters.http.cors.v3.Cors")
		}
	}
	return &Config{}, nil
}

// Percent is a RuntimeFractionalPercent's default value (config.Percent).
type Percent = config.Percent

// Policy is one CorsPolicy of a route or virtual host. Pointer fields are
// unset when nil (a less specific policy may set them).
type Policy struct {
	AllowOrigins                 []config.StringMatcher `json:"allow_origin_string_match,omitempty"`
	AllowMethods                 string                 `json:"allow_methods,omitempty"`
	AllowHeaders                 string                 `json:"allow_headers,omitempty"`
	ExposeHeaders                string                 `json:"expose_headers,omitempty"`
	MaxAge                       string                 `json:"max_age,omitempty"`
	AllowCredentials             *bool                  `json:"allow_credentials,omitempty"`
	AllowPrivateNetworkAccess    *bool                  `json:"allow_private_network_access,omitempty"`
	ForwardNotMatchingPreflights *bool                  `json:"forward_not_matching_preflights,omitempty"`
	// FilterEnabled (default: all requests) and ShadowEnabled (default:
	// none) are filter_enabled and shadow_enabled.
	FilterEnabled *Percent `json:"filter_enabled,omitempty"`
	ShadowEnabled *Percent `json:"shadow_enabled,omitempty"`
}

func parsePolicy(msg proto.Message, path string) (any, error) {
	pb, ok := msg.(*corsv3.CorsPolicy)
	if !ok {
		return nil, config.FieldError(path, "want envoy.extensions.filters.http.cors.v3.CorsPolicy")
	}
	p := &Policy{
		AllowMethods:                 pb.GetAllowMethods(),
		AllowHeaders:                 pb.GetAllowHeaders(),
		ExposeHeaders:                pb.GetExposeHeaders(),
		MaxAge:                       pb.GetMaxAge(),
		AllowCredentials:             optBool(pb.GetAllowCredentials()),
		AllowPrivateNetworkAccess:    optBool(pb.GetAllowPrivateNetworkAccess()),
		ForwardNotMatchingPreflights: optBool(pb.GetForwardNotMatchingPreflights()),
	}
	originsPath := config.JoinPath(path, "allow_origin_string_match")
	for i, m := range pb.GetAllowOriginStringMatch() {
		sm, err := config.BuildStringMatcher(m, config.IndexPath(originsPath, i))
		if err != nil {
			return nil, err
		}
		p.AllowOrigins = append(p.AllowOrigins, sm)
	}
	if p.MaxAge != "" && !isDecimal(p.MaxAge) {
		// Envoy's proto validation: max_age matches ^\d+$.
		return nil, config.FieldError(config.JoinPath(path, "max_age"), "%q is not a number of seconds", p.MaxAge)
	}
	var err error
	if p.FilterEnabled, err = config.BuildPercent(pb.GetFilterEnabled().GetDefaultValue(), config.JoinPath(path, "filter_enabled.default_value")); err != nil {
		return nil, err
	}
	if p.ShadowEnabled, err = config.BuildPercent(pb.GetShadowEnabled().GetDefaultValue(), config.JoinPath(path, "shadow_enabled.default_value")); err != nil {
		return nil, err
	}
	if pb.GetFilterEnabled() != nil && p.FilterEnabled == nil {
		return nil, config.FieldError(config.JoinPath(path, "filter_enabled"), "missing default_value")
	}
	if pb.GetShadowEnabled() != nil && p.ShadowEnabled == nil {
		return nil, config.FieldError(config.JoinPath(path, "shadow_enabled"), "missing default_value")
	}
	return p, nil
}

func optBool(v *wrapperspb.BoolValue) *bool {
	if v == nil {
		return nil
	}
	b := v.GetValue()
	return &b
}

func isDecimal(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// counters are the filter's stats, shared by its streams.
type counters struct {
	originValid, originInvalid *stats.Counter
}

type factory struct {
	name  string // the http_filters entry's name: the per-route key
	stats counters
}

func newFactory(_ any, env filters.Env) (filter.Factory, error) {
	f := &factory{name: env.FilterName}
	if env.Stats != nil {
		f.stats.originValid = env.Stats.Counter(env.StatPrefix + "cors.origin_valid")
		f.stats.originInvalid = env.Stats.Counter(env.StatPrefix + "cors.origin_invalid")
	}
	return f, nil
}

func (f *factory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &stream{f: f, cb: cb}
}

// stream is the filter on one stream.
type stream struct {
	filter.PassThrough
	f  *factory
	cb filter.Callbacks
	// policies, most specific first; n of them are set.
	policies [2]*Policy
	n        int
	// isCORS: an enabled policy saw an Origin; origin is the allowed
	// origin ("" when it was not allowed).
	isCORS bool
	origin string
}

func (s *stream) loadPolicies() {
	route, vhost := filters.PerRoute(s.cb, s.f.name)
	for _, c := range [2]any{route, vhost} {
		if p, ok := c.(*Policy); ok && p != nil {
			s.policies[s.n] = p
			s.n++
		}
	}
}

func (s *stream) DecodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	s.loadPolicies()
	if s.n == 0 {
		return filter.HeadersContinue
	}
	first := s.policies[0]
	enabled := first.FilterEnabled == nil || first.FilterEnabled.Sample()
	shadow := first.ShadowEnabled != nil && first.ShadowEnabled.Sample()
	if !enabled && !shadow {
		return filter.HeadersContinue
	}
	origin, _ := h.Get("origin")
	if origin == "" {
		return filter.HeadersContinue
	}
	allowed := s.originAllowed(origin)
	if allowed {
		inc(s.f.stats.originValid)
		s.origin = origin
	} else {
		inc(s.f.stats.originInvalid)
	}
	if !enabled {
		return filter.HeadersContinue // shadow mode: stats only
	}
	s.isCORS = true
	if m, _ := h.Get(":method"); m != "OPTIONS" {
		return filter.HeadersContinue
	}
	reqMethod, _ := h.Get("access-control-request-method")
	if reqMethod == "" {
		return filter.HeadersContinue
	}
	if !allowed && s.forwardNotMatchingPreflights() {
		return filter.HeadersContinue
	}
	out := make([]filter.Pair, 0, 6)
	if allowed {
		out = append(out, filter.Pair{Key: "access-control-allow-origin", Value: origin})
	}
	if s.allowCredentials() {
		out = append(out, filter.Pair{Key: "access-control-allow-credentials", Value: "true"})
	}
	if v := s.str(func(p *Policy) string { return p.AllowMethods }); v == "*" {
		out = append(out, filter.Pair{Key: "access-control-allow-methods", Value: reqMethod})
	} else if v != "" {
		out = append(out, filter.Pair{Key: "access-control-allow-methods", Value: v})
	}
	if v := s.str(func(p *Policy) string { return p.AllowHeaders }); v == "*" {
		rh, _ := h.Get("access-control-request-headers")
		out = append(out, filter.Pair{Key: "access-control-allow-headers", Value: rh})
	} else if v != "" {
		out = append(out, filter.Pair{Key: "access-control-allow-headers", Value: v})
	}
	if v := s.str(func(p *Policy) string { return p.MaxAge }); v != "" {
		out = append(out, filter.Pair{Key: "access-control-max-age", Value: v})
	}
	if s.flag(func(p *Policy) *bool { return p.AllowPrivateNetworkAccess }, false) {
		if v, _ := h.Get("access-control-request-private-network"); v == "true" {
			out = append(out, filter.Pair{Key: "access-control-allow-private-network", Value: "true"})
		}
	}
	s.cb.SendLocalReply(200, nil, out, "cors_response")
	return filter.HeadersStopIteration
}

func (s *stream) EncodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	if !s.isCORS || s.origin == "" {
		return filter.HeadersContinue
	}
	h.Set("access-control-allow-origin", s.origin)
	if s.allowCredentials() {
		h.Set("access-control-allow-credentials", "true")
	}
	if v := s.str(func(p *Policy) string { return p.ExposeHeaders }); v != "" {
		h.Set("access-control-expose-headers", v)
	}
	return filter.HeadersContinue
}

// originAllowed: the most specific non-empty allow list decides.
func (s *stream) originAllowed(origin string) bool {
	for _, p := range s.policies[:s.n] {
		if len(p.AllowOrigins) == 0 {
			continue
		}
		for i := range p.AllowOrigins {
			m := &p.AllowOrigins[i]
			if m.Match("*") || m.Match(origin) {
				return true
			}
		}
		return false
	}
	return false
}

// str is the most specific non-empty value of a string setting.
func (s *stream) str(get func(*Policy) string) string {
	for _, p := range s.policies[:s.n] {
		if v := get(p); v != "" {
			return v
		}
	}
	return ""
}

// flag is the most specific set value of a bool setting, or def.
func (s *stream) flag(get func(*Policy) *bool, def bool) bool {
	for _, p := range s.policies[:s.n] {
		if v := get(p); v != nil {
			return *v
		}
	}
	return def
}

func (s *stream) allowCredentials() bool {
	return s.flag(func(p *Policy) *bool { return p.AllowCredentials }, false)
}

func (s *stream) forwardNotMatchingPreflights() bool {
	return s.flag(func(p *Policy) *bool { return p.ForwardNotMatchingPreflights }, true)
}

func inc(c *stats.Counter) {
	if c != nil {
		c.Inc()
	}
}
