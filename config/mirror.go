package config

import (
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// buildMirrorPolicies reads route.request_mirror_policies with Envoy's
// rules (router/config_impl.cc ShadowPolicyImpl): exactly one of cluster
// and cluster_header, and a missing runtime_fraction mirrors every
// request. That the cluster exists is checked with the other route
// clusters (check.go).
func buildMirrorPolicies(pbs []*routev3.RouteAction_RequestMirrorPolicy, path string) ([]*MirrorPolicy, error) {
	var out []*MirrorPolicy
	for i, pb := range pbs {
		at := indexPath(path, i)
		m := &MirrorPolicy{
			Cluster:           pb.GetCluster(),
			ClusterHeader:     strings.ToLower(pb.GetClusterHeader()),
			DisableHostSuffix: pb.GetDisableShadowHostSuffixAppend(),
		}
		// Envoy's words.
		switch {
		case m.Cluster != "" && m.ClusterHeader != "":
			return nil, fieldError(at, "Only one of cluster '%s' or cluster_header '%s' in request mirror policy can be specified", m.Cluster, m.ClusterHeader)
		case m.Cluster == "" && m.ClusterHeader == "":
			return nil, fieldError(at, "Exactly one of cluster or cluster_header in request mirror policy need to be specified")
		}
		m.Fraction = &Percent{Numerator: 100, Denominator: 100}
		if rf := pb.GetRuntimeFraction(); rf != nil {
			p, err := BuildPercent(rf.GetDefaultValue(), joinPath(at, "runtime_fraction.default_value"))
			if err != nil {
				return nil, err
			}
			if p == nil {
				// A runtime_fraction without a default value is 0%.
				p = &Percent{Denominator: 100}
			}
			m.Fraction = p
		}
		out = append(out, m)
	}
	return out, nil
}
