// Package csrf is envoy.filters.http.csrf: cross-site request forgery
// protection by origin, with Envoy's semantics restated from
// source/extensions/filters/http/csrf/csrf_filter.cc:
//
//   - The policy is the filter's CsrfPolicy or the most specific one of
//     the route or virtual host, which replaces it.
//   - Only mutating requests are checked (POST, PUT, DELETE, PATCH), and
//     only when filter_enabled or shadow_enabled samples the request
//     (their default_value; there is no runtime layer).
//   - The source origin is the host (and port) of the Origin header, or
//     else of the Referer; the target origin is the Host (:authority).
//     A request is valid when they are equal or a matcher of
//     additional_origins matches the source origin.
//   - No source origin counts csrf.missing_source_origin; an invalid
//     request counts csrf.request_invalid, a valid one
//     csrf.request_valid (under http.<stat_prefix>.). An invalid request
//     is answered 403 "Invalid origin" (details csrf_origin_mismatch)
//     when the filter is enabled; in shadow mode it goes on.
package csrf

import (
	"math/rand/v2"
	"net/url"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	csrfv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/csrf/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Name is the filter's canonical name.
const Name = "envoy.filters.http.csrf"

const message = "envoy.extensions.filters.http.csrf.v3.CsrfPolicy"

func init() {
	filters.Register(&filters.Native{
		Name:          Name,
		Config:        message,
		Parse:         parse,
		PerRoute:      message,
		ParsePerRoute: parse,
		New:           newFactory,
	})
}

// Percent is a fraction: Numerator out of Denominator.
type Percent struct {
	Numerator   uint32 `json:"numerator"`
	Denominator uint32 `json:"denominator"`
}

func (p *Percent) sample() bool {
	switch {
	case p == nil || p.Numerator == 0:
		return false
	case p.Numerator >= p.Denominator:
		return true
	}
	return rand.Uint32N(p.Denominator) < p.Numerator
}

// Policy is a CsrfPolicy.
type Policy struct {
	FilterEnabled     *Percent               `json:"filter_enabled"`
	ShadowEnabled     *Percent               `json:"shadow_enabled,omitempty"`
	AdditionalOrigins []config.StringMatcher `json:"additional_origins,omitempty"`
}

func parse(msg proto.Message, path string) (any, error) {
	pb, ok := msg.(*csrfv3.CsrfPolicy)
	if !ok || pb == nil {
		return nil, config.FieldError(path, "missing: csrf needs a CsrfPolicy with filter_enabled")
	}
	p := &Policy{}
	var err error
	if p.FilterEnabled, err = percent(pb.GetFilterEnabled(), config.JoinPath(path, "filter_enabled")); err != nil {
		return nil, err
	}
	if p.FilterEnabled == nil {
		return nil, config.FieldError(config.JoinPath(path, "filter_enabled"), "missing")
	}
	if p.ShadowEnabled, err = percent(pb.GetShadowEnabled(), config.JoinPath(path, "shadow_enabled")); err != nil {
		return nil, err
	}
	for i, m := range pb.GetAdditionalOrigins() {
		sm, err := config.BuildStringMatcher(m, config.IndexPath(config.JoinPath(path, "additional_origins"), i))
		if err != nil {
			return nil, err
		}
		p.AdditionalOrigins = append(p.AdditionalOrigins, sm)
	}
	return p, nil
}

var denominators = map[typev3.FractionalPercent_DenominatorType]uint32{
	typev3.FractionalPercent_HUNDRED:      100,
	typev3.FractionalPercent_TEN_THOUSAND: 10_000,
	typev3.FractionalPercent_MILLION:      1_000_000,
}

func percent(pb *corev3.RuntimeFractionalPercent, path string) (*Percent, error) {
	if pb == nil {
		return nil, nil
	}
	dv := pb.GetDefaultValue()
	d, ok := denominators[dv.GetDenominator()]
	if !ok {
		return nil, config.FieldError(config.JoinPath(path, "default_value.denominator"), "unknown denominator %v", dv.GetDenominator())
	}
	return &Percent{Numerator: dv.GetNumerator(), Denominator: d}, nil
}

type factory struct {
	name                    string
	policy                  *Policy
	missing, invalid, valid *stats.Counter
}

func newFactory(cfg any, env filters.Env) (filter.Factory, error) {
	f := &factory{name: env.FilterName, policy: cfg.(*Policy)}
	if env.Stats != nil {
		p := env.StatPrefix + "csrf."
		f.missing = env.Stats.Counter(p + "missing_source_origin")
		f.invalid = env.Stats.Counter(p + "request_invalid")
		f.valid = env.Stats.Counter(p + "request_valid")
	}
	return f, nil
}

func (f *factory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &stream{f: f, cb: cb}
}

type stream struct {
	filter.PassThrough
	f  *factory
	cb filter.Callbacks
}

func (s *stream) policy() *Policy {
	route, vhost := filters.PerRoute(s.cb, s.f.name)
	for _, c := range [2]any{route, vhost} {
		if p, ok := c.(*Policy); ok && p != nil {
			return p
		}
	}
	return s.f.policy
}

// hostAndPort is the host[:port] of an absolute URL, or the value itself
// when it is not one (Envoy's hostAndPort).
func hostAndPort(v string) string {
	if v == "" {
		return ""
	}
	if u, err := url.Parse(v); err == nil && u.Scheme != "" && u.Host != "" {
		return u.Host
	}
	return v
}

func (s *stream) DecodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	p := s.policy()
	enabled := p.FilterEnabled.sample()
	if !enabled && !p.ShadowEnabled.sample() {
		return filter.HeadersContinue
	}
	switch m, _ := h.Get(":method"); m {
	case "POST", "PUT", "DELETE", "PATCH":
	default:
		return filter.HeadersContinue
	}
	origin, _ := h.Get("origin")
	source := hostAndPort(origin)
	if source == "" {
		referer, _ := h.Get("referer")
		source = hostAndPort(referer)
	}
	valid := true
	if source == "" {
		valid = false
		inc(s.f.missing)
	}
	if !validOrigin(p, source, h) {
		valid = false
		inc(s.f.invalid)
	}
	if valid {
		inc(s.f.valid)
		return filter.HeadersContinue
	}
	if !enabled {
		return filter.HeadersContinue // shadow mode: stats only
	}
	s.cb.SendLocalReply(403, []byte("Invalid origin"), nil, "csrf_origin_mismatch")
	return filter.HeadersStopIteration
}

func validOrigin(p *Policy, source string, h *filter.HeaderMap) bool {
	host, _ := h.Get(":authority")
	if source == hostAndPort(host) {
		return true
	}
	for i := range p.AdditionalOrigins {
		if p.AdditionalOrigins[i].Match(source) {
			return true
		}
	}
	return false
}

func inc(c *stats.Counter) {
	if c != nil {
		c.Inc()
	}
}
