package config

import (
	"math/big"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// Hash-based load balancers (RING_HASH, MAGLEV) and their settings.
const (
	LBRingHash LBPolicy = "RING_HASH"
	LBMaglev   LBPolicy = "MAGLEV"
)

// Envoy's defaults for the load balancer configs.
const (
	DefaultChoiceCount     = 2
	DefaultMinRingSize     = 1024
	DefaultMaxRingSize     = 8 * 1024 * 1024
	DefaultMaglevTableSize = 65537
)

// LBConfig is the policy-specific part of a cluster's load balancer;
// zero fields take Envoy's defaults (the accessors).
type LBConfig struct {
	// ChoiceCount is least_request_lb_config.choice_count (default 2).
	ChoiceCount uint32 `json:"choice_count,omitempty"`
	// MinRingSize, MaxRingSize are ring_hash_lb_config's
	// minimum_ring_size and maximum_ring_size (1024 and 8M).
	MinRingSize uint64 `json:"minimum_ring_size,omitempty"`
	MaxRingSize uint64 `json:"maximum_ring_size,omitempty"`
	// MaglevTableSize is maglev_lb_config.table_size (65537, a prime).
	MaglevTableSize uint64 `json:"table_size,omitempty"`
}

// Choices is ChoiceCount with its default.
func (c *LBConfig) Choices() int {
	if c == nil || c.ChoiceCount == 0 {
		return DefaultChoiceCount
	}
	return int(c.ChoiceCount)
}

// RingSizes are the ring size bounds with their defaults.
func (c *LBConfig) RingSizes() (minSize, maxSize uint64) {
	minSize, maxSize = DefaultMinRingSize, DefaultMaxRingSize
	if c != nil && c.MinRingSize != 0 {
		minSize = c.MinRingSize
	}
	if c != nil && c.MaxRingSize != 0 {
		maxSize = c.MaxRingSize
	}
	return
}

// TableSize is the Maglev table size with its default.
func (c *LBConfig) TableSize() uint64 {
	if c == nil || c.MaglevTableSize == 0 {
		return DefaultMaglevTableSize
	}
	return c.MaglevTableSize
}

// buildLBConfig reads the lb_config oneof for the cluster's policy, with
// Envoy's checks; a config for another policy is ignored, as Envoy does.
func buildLBConfig(pb *clusterv3.Cluster, policy LBPolicy, path string) (*LBConfig, error) {
	out := &LBConfig{}
	switch policy {
	case LBLeastRequest:
		lr := pb.GetLeastRequestLbConfig()
		if lr == nil {
			return nil, nil
		}
		if lr.GetActiveRequestBias() != nil {
			return nil, notSupported(joinPath(path, "least_request_lb_config.active_request_bias"), "")
		}
		out.ChoiceCount = lr.GetChoiceCount().GetValue()
	case LBRingHash:
		rh := pb.GetRingHashLbConfig()
		if rh == nil {
			return nil, nil
		}
		rhPath := joinPath(path, "ring_hash_lb_config")
		if rh.GetHashFunction() != clusterv3.Cluster_RingHashLbConfig_XX_HASH {
			return nil, notSupported(joinPath(rhPath, "hash_function"), rh.GetHashFunction().String())
		}
		out.MinRingSize = rh.GetMinimumRingSize().GetValue()
		out.MaxRingSize = rh.GetMaximumRingSize().GetValue()
		if minS, maxS := out.RingSizes(); minS > maxS {
			// Envoy's words (ring_hash_lb.cc).
			return nil, fieldError(rhPath, "ring hash: minimum_ring_size (%d) > maximum_ring_size (%d)", minS, maxS)
		}
	case LBMaglev:
		m := pb.GetMaglevLbConfig()
		if m == nil {
			return nil, nil
		}
		out.MaglevTableSize = m.GetTableSize().GetValue()
		if n := out.TableSize(); !new(big.Int).SetUint64(n).ProbablyPrime(20) {
			// Envoy's words (maglev_lb.cc).
			return nil, fieldError(joinPath(path, "maglev_lb_config.table_size"), "The table size of maglev must be prime number")
		}
	default:
		return nil, nil
	}
	return out, nil
}

// HashPolicy is one entry of a route's hash_policy: exactly one of
// Header, Cookie, SourceIP and QueryParameter is set.
type HashPolicy struct {
	// Header is a lower-cased request header name.
	Header string      `json:"header,omitempty"`
	Cookie *CookieHash `json:"cookie,omitempty"`
	// SourceIP hashes the downstream address's IP
	// (connection_properties.source_ip).
	SourceIP       bool   `json:"source_ip,omitempty"`
	QueryParameter string `json:"query_parameter,omitempty"`
	// Terminal stops at this policy when it produced a hash.
	Terminal bool `json:"terminal,omitempty"`
}

// CookieHash hashes a request cookie; with TTL set, a request without
// it gets one generated and set on the response (Envoy's sticky
// sessions).
type CookieHash struct {
	Name string    `json:"name"`
	TTL  *Duration `json:"ttl,omitempty"`
	Path string    `json:"path,omitempty"`
	// Attributes are extra "; name=value" cookie attributes.
	Attributes []CookieAttribute `json:"attributes,omitempty"`
}

// CookieAttribute is one cookie attribute (value may be empty).
type CookieAttribute struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

func buildHashPolicies(pbs []*routev3.RouteAction_HashPolicy, path string) ([]HashPolicy, error) {
	var out []HashPolicy
	for i, pb := range pbs {
		p := indexPath(path, i)
		h := HashPolicy{Terminal: pb.GetTerminal()}
		switch s := pb.GetPolicySpecifier().(type) {
		case *routev3.RouteAction_HashPolicy_Header_:
			if s.Header.GetRegexRewrite() != nil {
				return nil, notSupported(joinPath(p, "header.regex_rewrite"), "")
			}
			h.Header = strings.ToLower(s.Header.GetHeaderName())
		case *routev3.RouteAction_HashPolicy_Cookie_:
			c := &CookieHash{Name: s.Cookie.GetName(), Path: s.Cookie.GetPath()}
			if t := s.Cookie.GetTtl(); t != nil {
				d := Duration(t.AsDuration())
				c.TTL = &d
			}
			for _, a := range s.Cookie.GetAttributes() {
				c.Attributes = append(c.Attributes, CookieAttribute{Name: a.GetName(), Value: a.GetValue()})
			}
			h.Cookie = c
		case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
			if !s.ConnectionProperties.GetSourceIp() {
				return nil, fieldError(joinPath(p, "connection_properties.source_ip"), "must be true")
			}
			h.SourceIP = true
		case *routev3.RouteAction_HashPolicy_QueryParameter_:
			h.QueryParameter = s.QueryParameter.GetName()
		case *routev3.RouteAction_HashPolicy_FilterState_:
			return nil, notSupported(joinPath(p, "filter_state"), "")
		default:
			return nil, fieldError(p, "a hash policy needs header, cookie, connection_properties or query_parameter")
		}
		out = append(out, h)
	}
	return out, nil
}

// HealthStatus is an endpoint's health_status from the assignment:
// UNHEALTHY, DRAINING and TIMEOUT keep it out of load balancing, as
// Envoy's FAILED_EDS_HEALTH flag.
func edsUnhealthy(s corev3.HealthStatus) bool {
	return s == corev3.HealthStatus_UNHEALTHY || s == corev3.HealthStatus_DRAINING || s == corev3.HealthStatus_TIMEOUT
}
