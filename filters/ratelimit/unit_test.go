package ratelimit

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// TestDescriptors: each action's entry, an absent header dropping the
// descriptor (or only its entry with skip_if_absent), header_value_match
// both ways, and policies of another stage left out.
func TestDescriptors(t *testing.T) {
	present := true
	in := &actionInput{
		headers:        filter.NewHeaderMap(filter.Pair{Key: ":method", Value: "GET"}, filter.Pair{Key: "x-user", Value: "a"}, filter.Pair{Key: "x-user", Value: "b"}),
		info:           &filter.StreamInfo{ClusterName: "backend", DownstreamAddr: netip.MustParseAddrPort("[::ffff:10.0.0.1]:555")},
		serviceCluster: "edge",
	}
	get := config.HeaderMatcher{Name: ":method", Present: &present}
	missing := config.HeaderMatcher{Name: "x-none", Present: &present}
	policies := []*config.RateLimit{
		{Actions: []*config.RateLimitAction{{Kind: config.RateLimitSourceCluster}, {Kind: config.RateLimitDestinationCluster}, {Kind: config.RateLimitRemoteAddress}}},
		{Actions: []*config.RateLimitAction{{Kind: config.RateLimitRequestHeaders, HeaderName: "x-user", Key: "user"}, {Kind: config.RateLimitGenericKey, Key: "generic_key", Value: "g"}}},
		{Actions: []*config.RateLimitAction{{Kind: config.RateLimitGenericKey, Key: "k", Value: "dropped"}, {Kind: config.RateLimitRequestHeaders, HeaderName: "x-none", Key: "n"}}},
		{Actions: []*config.RateLimitAction{{Kind: config.RateLimitGenericKey, Key: "k", Value: "kept"}, {Kind: config.RateLimitRequestHeaders, HeaderName: "x-none", Key: "n", SkipIfAbsent: true}}},
		{Actions: []*config.RateLimitAction{{Kind: config.RateLimitHeaderValueMatch, Key: "header_match", Value: "m1", ExpectMatch: true, HeaderMatches: []config.HeaderMatcher{get}}}},
		{Actions: []*config.RateLimitAction{{Kind: config.RateLimitHeaderValueMatch, Key: "header_match", Value: "m2", ExpectMatch: true, HeaderMatches: []config.HeaderMatcher{get, missing}}}},
		{Actions: []*config.RateLimitAction{{Kind: config.RateLimitHeaderValueMatch, Key: "header_match", Value: "m3", ExpectMatch: false, HeaderMatches: []config.HeaderMatcher{get, missing}}}},
		{Stage: 2, Actions: []*config.RateLimitAction{{Kind: config.RateLimitGenericKey, Key: "k", Value: "stage2"}}},
		{Actions: []*config.RateLimitAction{{Kind: config.RateLimitRequestHeaders, HeaderName: "x-none", Key: "n", SkipIfAbsent: true}}},
	}
	got := descriptors(nil, policies, 0, in)
	want := []descriptor{
		{{Key: "source_cluster", Value: "edge"}, {Key: "destination_cluster", Value: "backend"}, {Key: "remote_address", Value: "10.0.0.1"}},
		{{Key: "user", Value: "a"}, {Key: "generic_key", Value: "g"}},
		{{Key: "k", Value: "kept"}},
		{{Key: "header_match", Value: "m1"}},
		{{Key: "header_match", Value: "m3"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("descriptors:\n got %v\nwant %v", got, want)
	}
	if got := descriptors(nil, policies, 2, in); !reflect.DeepEqual(got, []descriptor{{{Key: "k", Value: "stage2"}}}) {
		t.Errorf("stage 2: %v", got)
	}
}

// TestXRateLimitHeaders: draft 03 from the least-remaining status; a
// status without a current limit is ignored, an UNKNOWN unit adds no
// quota policy, and no limit at all adds no headers.
func TestXRateLimitHeaders(t *testing.T) {
	st := func(name string, n, remaining uint32, unit rlsv3.RateLimitResponse_RateLimit_Unit, reset time.Duration) *rlsv3.RateLimitResponse_DescriptorStatus {
		return &rlsv3.RateLimitResponse_DescriptorStatus{CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{Name: name, RequestsPerUnit: n, Unit: unit}, LimitRemaining: remaining, DurationUntilReset: durationpb.New(reset)}
	}
	got := xRateLimitHeaders([]*rlsv3.RateLimitResponse_DescriptorStatus{
		st("", 100, 40, rlsv3.RateLimitResponse_RateLimit_HOUR, time.Hour),
		{LimitRemaining: 0},
		st("burst", 5, 2, rlsv3.RateLimitResponse_RateLimit_SECOND, time.Second),
		st("", 9, 3, rlsv3.RateLimitResponse_RateLimit_UNKNOWN, 0),
	})
	want := []filter.Pair{
		{Key: "x-ratelimit-limit", Value: `5, 100;w=3600, 5;w=1;name="burst"`},
		{Key: "x-ratelimit-remaining", Value: "2"},
		{Key: "x-ratelimit-reset", Value: "1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if got := xRateLimitHeaders([]*rlsv3.RateLimitResponse_DescriptorStatus{{LimitRemaining: 1}}); got != nil {
		t.Errorf("no limits: %v", got)
	}
}
