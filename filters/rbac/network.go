package rbac

import (
	"strings"

	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
)

// NetworkName is the network filter's canonical name.
const NetworkName = "envoy.filters.network.rbac"

func init() {
	filters.RegisterNetwork(&filters.NativeNetwork{
		Name:   NetworkName,
		Config: "envoy.extensions.filters.network.rbac.v3.RBAC",
		Parse:  parseNetwork,
		New:    newNetworkFactory,
	})
}

// NetworkConfig is envoy.filters.network.rbac: the same Engine as the
// HTTP filter, decided on the connection alone (Input without headers:
// header and url_path never match, as in Envoy's network filter), with
// Envoy's semantics (source/extensions/filters/network/rbac/):
//
//   - The decision is made when the first client data (or the client's
//     half-close) reaches the filter, before the filters after it see
//     it: a denied connection is closed and nothing reaches the
//     upstream. CONTINUOUS decides again on every read (the rules and
//     the shadow rules, each decision counted); by default
//     (ONE_TIME_ON_FIRST_BYTE) the first decision stands and the
//     shadow rules are decided once per connection. The inputs the
//     engine reads (addresses, ports, SNI, the peer certificate) do not
//     change within a connection, so CONTINUOUS cannot turn an allowed
//     connection into a denied one here; it shows in the counts.
//   - shadow_rules are only counted.
//   - Stats: <stat_prefix>.rbac.allowed / denied and
//     <stat_prefix>.rbac.<shadow_rules_stat_prefix>shadow_allowed /
//     shadow_denied (Envoy joins stat_prefix and "rbac." with one dot).
type NetworkConfig struct {
	StatPrefix       string  `json:"stat_prefix"`
	Rules            *Engine `json:"rules,omitempty"`
	Shadow           *Engine `json:"shadow_rules,omitempty"`
	ShadowStatPrefix string  `json:"shadow_rules_stat_prefix,omitempty"`
	Continuous       bool    `json:"continuous,omitempty"`
}

func parseNetwork(msg proto.Message, path string) (any, error) {
	pb, ok := msg.(*rbacnetv3.RBAC)
	if msg == nil {
		pb, ok = &rbacnetv3.RBAC{}, true
	}
	if !ok {
		return nil, config.FieldError(path, "want envoy.extensions.filters.network.rbac.v3.RBAC")
	}
	if pb.GetStatPrefix() == "" {
		return nil, config.FieldError(config.JoinPath(path, "stat_prefix"), "missing: the network RBAC filter needs a stat_prefix")
	}
	if pb.GetMatcher() != nil {
		return nil, config.NotSupportedError(config.JoinPath(path, "matcher"), "use rules")
	}
	if pb.GetShadowMatcher() != nil {
		return nil, config.NotSupportedError(config.JoinPath(path, "shadow_matcher"), "use shadow_rules")
	}
	if pb.GetDelayDeny() != nil {
		return nil, config.NotSupportedError(config.JoinPath(path, "delay_deny"), "")
	}
	c := &NetworkConfig{StatPrefix: pb.GetStatPrefix(), ShadowStatPrefix: pb.GetShadowRulesStatPrefix()}
	switch t := pb.GetEnforcementType(); t {
	case rbacnetv3.RBAC_ONE_TIME_ON_FIRST_BYTE:
	case rbacnetv3.RBAC_CONTINUOUS:
		c.Continuous = true
	default:
		return nil, config.FieldError(config.JoinPath(path, "enforcement_type"), "unknown value %d", t)
	}
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

// statPrefixJoin is Envoy's: prefix and suffix joined by one dot.
func statPrefixJoin(prefix, suffix string) string {
	if strings.HasSuffix(prefix, ".") {
		return prefix + suffix
	}
	return prefix + "." + suffix
}

type networkFactory struct {
	cfg *NetworkConfig
	st  counters
}

func newNetworkFactory(cfg any, env filters.Env) (filter.NetworkFactory, error) {
	c := cfg.(*NetworkConfig)
	f := &networkFactory{cfg: c}
	if env.Stats != nil {
		p := statPrefixJoin(c.StatPrefix, "rbac.")
		f.st = counters{
			allowed:       env.Stats.Counter(p + "allowed"),
			denied:        env.Stats.Counter(p + "denied"),
			shadowAllowed: env.Stats.Counter(p + c.ShadowStatPrefix + "shadow_allowed"),
			shadowDenied:  env.Stats.Counter(p + c.ShadowStatPrefix + "shadow_denied"),
		}
	}
	return f, nil
}

// NewNetworkFilter implements filter.NetworkFactory.
func (f *networkFactory) NewNetworkFilter(cb filter.NetworkCallbacks) filter.NetworkFilter {
	return &netFilter{f: f, cb: cb}
}

// netFilter is one connection's network RBAC filter.
type netFilter struct {
	f  *networkFactory
	cb filter.NetworkCallbacks
	// shadowDone: the shadow rules were decided; allowed: the rules
	// allowed the connection once (ONE_TIME_ON_FIRST_BYTE keeps it);
	// denied: the connection is being closed.
	shadowDone, allowed, denied bool
}

func (r *netFilter) OnNewConnection() filter.NetworkStatus { return filter.NetworkContinue }

// OnDownstreamData decides before the data goes on.
func (r *netFilter) OnDownstreamData(*filter.Buffer, bool) filter.NetworkStatus {
	if r.denied {
		return filter.NetworkStopIteration
	}
	c := r.f.cfg
	in := &Input{Info: r.cb.Info()}
	// CONTINUOUS decides both rule sets on every read, as Envoy's;
	// ONE_TIME_ON_FIRST_BYTE once each.
	if (!r.shadowDone || c.Continuous) && c.Shadow != nil {
		r.shadowDone = true
		if ok, _ := c.Shadow.Decide(in); ok {
			inc(r.f.st.shadowAllowed)
		} else {
			inc(r.f.st.shadowDenied)
		}
	}
	if c.Rules == nil || (r.allowed && !c.Continuous) {
		return filter.NetworkContinue
	}
	ok, policy := c.Rules.Decide(in)
	if ok {
		r.allowed = true
		inc(r.f.st.allowed)
		return filter.NetworkContinue
	}
	r.denied = true
	inc(r.f.st.denied)
	if policy == "" {
		policy = "none"
	}
	r.cb.Close("rbac_access_denied_matched_policy[" + policy + "]")
	return filter.NetworkStopIteration
}

func (r *netFilter) OnUpstreamData(*filter.Buffer, bool) filter.NetworkStatus {
	return filter.NetworkContinue
}
func (r *netFilter) OnUpstreamClose(filter.PeerType)   {}
func (r *netFilter) OnDownstreamClose(filter.PeerType) {}
func (r *netFilter) OnDestroy()                        {}
