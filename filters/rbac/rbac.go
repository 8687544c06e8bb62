// Package rbac is envoy.filters.http.rbac: role-based access control by
// the policies of config.rbac.v3.RBAC, with Envoy's semantics restated
// from source/extensions/filters/http/rbac/ and filters/common/rbac/:
//
//   - A policy matches a request when one of its permissions and one of
//     its principals match. Policies are tried by name (Envoy keeps them
//     in a sorted map); the first that matches is the effective policy.
//   - action ALLOW lets a request through when a policy matches, DENY
//     when none does, LOG always (the matched policy is only reported).
//   - shadow_rules are decided first and only counted
//     (rbac.<shadow_rules_stat_prefix>shadow_allowed / shadow_denied);
//     then rules decide: rbac.<rules_stat_prefix>allowed, or
//     rbac.<rules_stat_prefix>denied and a 403 "RBAC: access denied" with
//     details rbac_access_denied_matched_policy[<policy or none>]. Stats
//     are under http.<stat_prefix>.
//   - Without rules (and without a per-route entry) the filter allows
//     everything. A route's or virtual host's RBACPerRoute replaces the
//     filter's config; its rbac unset disables the filter there.
//   - authenticated matches a TLS connection; with principal_name, a
//     peer certificate whose URI SAN, else DNS SAN, else subject
//     matches. source_ip, direct_remote_ip and remote_ip all match the
//     downstream peer address (wasmproxy derives no address from
//     x-forwarded-for or the PROXY protocol).
package rbac

import (
	"sync"

	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Name is the filter's canonical name.
const Name = "envoy.filters.http.rbac"

func init() {
	filters.Register(&filters.Native{
		Name:          Name,
		Config:        "envoy.extensions.filters.http.rbac.v3.RBAC",
		Parse:         parse,
		PerRoute:      "envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
		ParsePerRoute: parsePerRoute,
		New:           newFactory,
	})
}

// Config is one HTTP RBAC config: the filter's or a route's.
type Config struct {
	Rules             *Engine `json:"rules,omitempty"`
	RulesStatPrefix   string  `json:"rules_stat_prefix,omitempty"`
	Shadow            *Engine `json:"shadow_rules,omitempty"`
	ShadowStatPrefix  string  `json:"shadow_rules_stat_prefix,omitempty"`
	TrackPerRuleStats bool    `json:"track_per_rule_stats,omitempty"`

	once sync.Once
	st   counters
}

// PerRoute is an RBACPerRoute: Config nil disables the filter.
type PerRoute struct {
	Config *Config `json:"rbac"`
}

func parse(msg proto.Message, path string) (any, error) {
	if msg == nil {
		return &Config{}, nil
	}
	pb, ok := msg.(*rbachttpv3.RBAC)
	if !ok {
		return nil, config.FieldError(path, "want envoy.extensions.filters.http.rbac.v3.RBAC")
	}
	return build(pb, path)
}

func build(pb *rbachttpv3.RBAC, path string) (*Config, error) {
	if pb.GetMatcher() != nil {
		return nil, config.NotSupportedError(config.JoinPath(path, "matcher"), "use rules")
	}
	if pb.GetShadowMatcher() != nil {
		return nil, config.NotSupportedError(config.JoinPath(path, "shadow_matcher"), "use shadow_rules")
	}
	if pb.GetTrackPerRuleStats() {
		return nil, config.NotSupportedError(config.JoinPath(path, "track_per_rule_stats"), "")
	}
	c := &Config{RulesStatPrefix: pb.GetRulesStatPrefix(), ShadowStatPrefix: pb.GetShadowRulesStatPrefix()}
	var err error
	if r := pb.GetRules(); r != nil {
		if c.Rules, err = BuildEngine(r, config.JoinPath(path, "rules")); err != nil {
			return nil, err
		}
	}
	if r := pb.GetShadowRules(); r != nil {
		if c.Shadow, err = BuildEngine(r, config.JoinPath(path, "shadow_rules")); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func parsePerRoute(msg proto.Message, path string) (any, error) {
	pb, ok := msg.(*rbachttpv3.RBACPerRoute)
	if !ok {
		return nil, config.FieldError(path, "want envoy.extensions.filters.http.rbac.v3.RBACPerRoute")
	}
	if pb.GetRbac() == nil {
		return &PerRoute{}, nil
	}
	c, err := build(pb.GetRbac(), config.JoinPath(path, "rbac"))
	if err != nil {
		return nil, err
	}
	return &PerRoute{Config: c}, nil
}

type counters struct {
	allowed, denied, shadowAllowed, shadowDenied *stats.Counter
}

type factory struct {
	name   string
	cfg    *Config
	store  *stats.Store
	prefix string
}

func newFactory(cfg any, env filters.Env) (filter.Factory, error) {
	return &factory{name: env.FilterName, cfg: cfg.(*Config), store: env.Stats, prefix: env.StatPrefix + "rbac."}, nil
}

// counters of c, made on first use: a per-route config has its own stat
// prefixes and no store until a stream uses it.
func (f *factory) counters(c *Config) *counters {
	c.once.Do(func() {
		if f.store == nil {
			return
		}
		c.st.allowed = f.store.Counter(f.prefix + c.RulesStatPrefix + "allowed")
		c.st.denied = f.store.Counter(f.prefix + c.RulesStatPrefix + "denied")
		c.st.shadowAllowed = f.store.Counter(f.prefix + c.ShadowStatPrefix + "shadow_allowed")
		c.st.shadowDenied = f.store.Counter(f.prefix + c.ShadowStatPrefix + "shadow_denied")
	})
	return &c.st
}

func (f *factory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &stream{f: f, cb: cb}
}

type stream struct {
	filter.PassThrough
	f  *factory
	cb filter.Callbacks
}

// config is the one that applies to the stream: the most specific
// per-route entry, else the filter's; nil when a route disables it.
func (s *stream) config() *Config {
	route, vhost := filters.PerRoute(s.cb, s.f.name)
	for _, c := range [2]any{route, vhost} {
		if p, ok := c.(*PerRoute); ok && p != nil {
			return p.Config
		}
	}
	return s.f.cfg
}

func (s *stream) DecodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	c := s.config()
	if c == nil {
		return filter.HeadersContinue
	}
	in := &Input{Info: s.cb.Info(), Headers: h}
	st := s.f.counters(c)
	if c.Shadow != nil {
		if ok, _ := c.Shadow.Decide(in); ok {
			inc(st.shadowAllowed)
		} else {
			inc(st.shadowDenied)
		}
	}
	if c.Rules == nil {
		return filter.HeadersContinue
	}
	ok, policy := c.Rules.Decide(in)
	if ok {
		inc(st.allowed)
		return filter.HeadersContinue
	}
	inc(st.denied)
	if policy == "" {
		policy = "none"
	}
	s.cb.SendLocalReply(403, []byte("RBAC: access denied"), nil, "rbac_access_denied_matched_policy["+policy+"]")
	return filter.HeadersStopIteration
}

func inc(c *stats.Counter) {
	if c != nil {
		c.Inc()
	}
}
