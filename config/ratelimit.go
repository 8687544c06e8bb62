package config

import (
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// RateLimit is a route.v3.RateLimit of a route action or a virtual host
// (rate_limits): one descriptor for the global rate limit filter
// (envoy.filters.http.ratelimit), made of one entry per action, in
// order. The filter reads the policies of its stage only.
type RateLimit struct {
	Stage   uint32             `json:"stage,omitempty"`
	Actions []*RateLimitAction `json:"actions"`
}

// RateLimitAction is one RateLimit.Action. Kind names the action
// (source_cluster, destination_cluster, request_headers,
// remote_address, generic_key, header_value_match); the other fields
// are that action's, with Envoy's defaults filled in (generic_key's key
// "generic_key", header_value_match's "header_match" and expect_match
// true).
type RateLimitAction struct {
	Kind          string          `json:"kind"`
	HeaderName    string          `json:"header_name,omitempty"` // lower-cased
	Key           string          `json:"descriptor_key,omitempty"`
	Value         string          `json:"descriptor_value,omitempty"`
	SkipIfAbsent  bool            `json:"skip_if_absent,omitempty"`
	ExpectMatch   bool            `json:"expect_match,omitempty"`
	HeaderMatches []HeaderMatcher `json:"headers,omitempty"`
}

// rate-limit action kinds.
const (
	RateLimitSourceCluster      = "source_cluster"
	RateLimitDestinationCluster = "destination_cluster"
	RateLimitRequestHeaders     = "request_headers"
	RateLimitRemoteAddress      = "remote_address"
	RateLimitGenericKey         = "generic_key"
	RateLimitHeaderValueMatch   = "header_value_match"
)

// buildRateLimits reads rate_limits (path is that field). The fields
// and actions not listed in supported.go were refused before.
func buildRateLimits(pbs []*routev3.RateLimit, path string) ([]*RateLimit, error) {
	var out []*RateLimit
	for i, pb := range pbs {
		p := indexPath(path, i)
		rl := &RateLimit{Stage: pb.GetStage().GetValue()}
		if rl.Stage > 10 {
			// The proto's validation: stage lte 10.
			return nil, fieldError(joinPath(p, "stage"), "%d is over 10", rl.Stage)
		}
		if len(pb.GetActions()) == 0 {
			return nil, fieldError(joinPath(p, "actions"), "missing: a rate limit needs at least one action")
		}
		for j, a := range pb.GetActions() {
			ap := indexPath(joinPath(p, "actions"), j)
			act, err := buildRateLimitAction(a, ap)
			if err != nil {
				return nil, err
			}
			rl.Actions = append(rl.Actions, act)
		}
		out = append(out, rl)
	}
	return out, nil
}

func buildRateLimitAction(a *routev3.RateLimit_Action, path string) (*RateLimitAction, error) {
	switch {
	case a.GetSourceCluster() != nil:
		return &RateLimitAction{Kind: RateLimitSourceCluster}, nil
	case a.GetDestinationCluster() != nil:
		return &RateLimitAction{Kind: RateLimitDestinationCluster}, nil
	case a.GetRemoteAddress() != nil:
		return &RateLimitAction{Kind: RateLimitRemoteAddress}, nil
	case a.GetRequestHeaders() != nil:
		rh := a.GetRequestHeaders()
		p := joinPath(path, "request_headers")
		if rh.GetHeaderName() == "" {
			return nil, fieldError(joinPath(p, "header_name"), "missing: the header to read")
		}
		if rh.GetDescriptorKey() == "" {
			return nil, fieldError(joinPath(p, "descriptor_key"), "missing: the descriptor entry's key")
		}
		return &RateLimitAction{Kind: RateLimitRequestHeaders, HeaderName: strings.ToLower(rh.GetHeaderName()), Key: rh.GetDescriptorKey(), SkipIfAbsent: rh.GetSkipIfAbsent()}, nil
	case a.GetGenericKey() != nil:
		g := a.GetGenericKey()
		if g.GetDescriptorValue() == "" {
			return nil, fieldError(joinPath(path, "generic_key.descriptor_value"), "missing: the descriptor entry's value")
		}
		k := g.GetDescriptorKey()
		if k == "" {
			k = "generic_key"
		}
		return &RateLimitAction{Kind: RateLimitGenericKey, Key: k, Value: g.GetDescriptorValue()}, nil
	case a.GetHeaderValueMatch() != nil:
		m := a.GetHeaderValueMatch()
		p := joinPath(path, "header_value_match")
		if m.GetDescriptorValue() == "" {
			return nil, fieldError(joinPath(p, "descriptor_value"), "missing: the descriptor entry's value")
		}
		if len(m.GetHeaders()) == 0 {
			return nil, fieldError(joinPath(p, "headers"), "missing: at least one header matcher")
		}
		act := &RateLimitAction{Kind: RateLimitHeaderValueMatch, Key: m.GetDescriptorKey(), Value: m.GetDescriptorValue(), ExpectMatch: true}
		if act.Key == "" {
			act.Key = "header_match"
		}
		if m.GetExpectMatch() != nil {
			act.ExpectMatch = m.GetExpectMatch().GetValue()
		}
		for i, h := range m.GetHeaders() {
			hm, err := buildHeaderMatcher(h, indexPath(joinPath(p, "headers"), i))
			if err != nil {
				return nil, err
			}
			act.HeaderMatches = append(act.HeaderMatches, hm)
		}
		return act, nil
	}
	return nil, fieldError(path, "missing: a rate limit action (source_cluster, destination_cluster, request_headers, remote_address, generic_key or header_value_match)")
}
