// Package ratelimit is envoy.filters.http.ratelimit: each request whose
// route has rate limit policies is checked with a global rate limit
// service (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit)
// before it goes on, with Envoy's semantics restated from
// source/extensions/filters/http/ratelimit/ and
// source/common/router/router_ratelimit.cc:
//
// Descriptors come from the matched route's rate_limits of the filter's
// stage, then its virtual host's: only when the route has none
// (vh_rate_limits OVERRIDE, the default), always (INCLUDE, or the
// route's include_vh_rate_limits) or never (IGNORE), the option read
// from the route's RateLimitPerRoute. Each policy makes one descriptor,
// its actions one entry each: source_cluster (node.cluster),
// destination_cluster (the route's cluster), request_headers (the
// header's first value; absent: no descriptor, or with skip_if_absent no
// entry), remote_address (the client's address), generic_key,
// header_value_match (an entry when every header matcher matches, or
// with expect_match false when not; else no descriptor). A request with
// no descriptor, no route or no cluster goes on unchecked, as does one
// that request_type excludes (x-envoy-internal: true is internal) or
// that filter_enabled does not sample (unset: every request).
//
// The service is a cluster reached through the proxy's own cluster
// access (filters.Env.Upstreams) with the gRPC framing ext_authz uses
// (internal/grpcstream); the call is bounded by timeout (default 20ms).
// OK: the request goes on with the service's request_headers_to_add;
// its response_headers_to_add go on the response. OVER_LIMIT: when
// filter_enforced samples it (unset: always), the client gets
// rate_limited_status (default 429), the service's raw_body and
// response headers, and x-envoy-ratelimited: true (unless
// disable_x_envoy_ratelimited_header). Error (unreachable, timeout, a
// failed gRPC status, UNKNOWN): the request goes on unless
// failure_mode_deny, when the client gets status_on_error (default
// 500). With enable_x_ratelimit_headers DRAFT_VERSION_03 the response
// gets x-ratelimit-limit, -remaining and -reset from the descriptor
// statuses with the least remaining. The service's dynamic_metadata is
// written to the stream's dynamic metadata under
// envoy.filters.http.ratelimit.
//
// Stats cluster.<route cluster>.ratelimit.[<stat_prefix>.]ok,
// over_limit, error, failure_mode_allowed.
package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
	"github.com/wasmproxy/wasmproxy/filters/internal/async"
	"github.com/wasmproxy/wasmproxy/internal/grpcstream"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Name is the filter's canonical name, and its metadata namespace.
const Name = "envoy.filters.http.ratelimit"

const method = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"

func init() {
	filters.Register(&filters.Native{
		Name:          Name,
		Config:        "envoy.extensions.filters.http.ratelimit.v3.RateLimit",
		Parse:         parse,
		PerRoute:      "envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute",
		ParsePerRoute: parsePerRoute,
		New:           newFactory,
	})
}

// RouteHost is what the proxy's stream offers a native filter about its
// route (through filter.StreamInfo.PerFilterConfig): the matched route
// and virtual host, and node.cluster.
type RouteHost interface {
	Route() (*config.Route, *config.VirtualHost)
	ServiceCluster() string
}

type factory struct {
	name  string
	cfg   *Config
	ups   filter.Upstreams
	store *stats.Store

	mu       sync.Mutex
	counters map[string]*counters // by route cluster
}

type counters struct {
	ok, overLimit, errors, failureModeAllowed *stats.Counter
}

func newFactory(cfg any, env filters.Env) (filter.Factory, error) {
	return &factory{name: env.FilterName, cfg: cfg.(*Config), ups: env.Upstreams, store: env.Stats, counters: map[string]*counters{}}, nil
}

// stats of a route cluster, made on first use.
func (f *factory) stats(cluster string) *counters {
	if f.store == nil {
		return &counters{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.counters[cluster]
	if c == nil {
		p := "cluster." + cluster + ".ratelimit."
		if f.cfg.StatPrefix != "" {
			p += f.cfg.StatPrefix + "."
		}
		c = &counters{
			ok: f.store.Counter(p + "ok"), overLimit: f.store.Counter(p + "over_limit"),
			errors: f.store.Counter(p + "error"), failureModeAllowed: f.store.Counter(p + "failure_mode_allowed"),
		}
		f.counters[cluster] = c
	}
	return c
}

func (f *factory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &stream{f: f, cb: cb}
}

type state int

const (
	idle     state = iota // no call
	calling               // the call is in flight; the request is held
	complete              // decided and the request went on (or was answered)
)

type stream struct {
	filter.PassThrough
	f       *factory
	cb      filter.Callbacks
	state   state
	cluster string
	// respHeaders go on the response (service headers, x-ratelimit-*).
	respHeaders []filter.Pair

	call async.Call
}

// descriptor is one RateLimitDescriptor's entries.
type descriptor []filter.Pair

func (s *stream) DecodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	cfg := s.f.cfg
	if cfg.FilterEnabled != nil && !cfg.FilterEnabled.Sample() {
		return filter.HeadersContinue
	}
	internal := false
	if v, ok := h.Get("x-envoy-internal"); ok && v == "true" {
		internal = true
	}
	if internal && cfg.RequestType == "external" || !internal && cfg.RequestType == "internal" {
		return filter.HeadersContinue
	}
	info := s.cb.Info()
	if info == nil || info.ClusterName == "" {
		return filter.HeadersContinue // no route, or a route with no cluster
	}
	rh, ok := info.PerFilterConfig.(RouteHost)
	if !ok {
		return filter.HeadersContinue
	}
	route, vh := rh.Route()
	if route == nil {
		return filter.HeadersContinue
	}
	domain := cfg.Domain
	vhOption := "OVERRIDE"
	rc, vc := filters.PerRoute(s.cb, s.f.name)
	pr, _ := rc.(*PerRoute)
	if pr == nil {
		pr, _ = vc.(*PerRoute)
	}
	if pr != nil {
		vhOption = pr.VHRateLimits
		if pr.Domain != "" {
			domain = pr.Domain
		}
	}
	if route.IncludeVHRateLimits {
		vhOption = "INCLUDE"
	}
	in := &actionInput{headers: h, info: info, serviceCluster: rh.ServiceCluster()}
	descs := descriptors(nil, route.RateLimits, cfg.Stage, in)
	if vh != nil && (vhOption == "INCLUDE" || vhOption == "OVERRIDE" && len(route.RateLimits) == 0) {
		descs = descriptors(descs, vh.RateLimits, cfg.Stage, in)
	}
	if len(descs) == 0 {
		return filter.HeadersContinue
	}
	s.cluster = info.ClusterName
	s.start(domain, descs)
	return filter.HeadersStopIteration
}

// actionInput is what rate limit actions read.
type actionInput struct {
	headers        *filter.HeaderMap
	info           *filter.StreamInfo
	serviceCluster string
}

// descriptors appends the descriptors of the policies of stage.
func descriptors(out []descriptor, policies []*config.RateLimit, stage uint32, in *actionInput) []descriptor {
	for _, rl := range policies {
		if rl.Stage != stage {
			continue
		}
		if d, ok := makeDescriptor(rl, in); ok && len(d) > 0 {
			out = append(out, d)
		}
	}
	return out
}

// makeDescriptor runs a policy's actions in order (Envoy's
// RateLimitPolicyEntryImpl::populateDescriptors): an action that cannot
// produce its entry drops the whole descriptor.
func makeDescriptor(rl *config.RateLimit, in *actionInput) (descriptor, bool) {
	var d descriptor
	for _, a := range rl.Actions {
		switch a.Kind {
		case config.RateLimitSourceCluster:
			d = append(d, filter.Pair{Key: "source_cluster", Value: in.serviceCluster})
		case config.RateLimitDestinationCluster:
			d = append(d, filter.Pair{Key: "destination_cluster", Value: in.info.ClusterName})
		case config.RateLimitRequestHeaders:
			v, ok := in.headers.Get(a.HeaderName)
			if !ok {
				if a.SkipIfAbsent {
					continue
				}
				return nil, false
			}
			d = append(d, filter.Pair{Key: a.Key, Value: v})
		case config.RateLimitRemoteAddress:
			if !in.info.DownstreamAddr.IsValid() {
				return nil, false
			}
			d = append(d, filter.Pair{Key: "remote_address", Value: in.info.DownstreamAddr.Addr().Unmap().String()})
		case config.RateLimitGenericKey:
			d = append(d, filter.Pair{Key: a.Key, Value: a.Value})
		case config.RateLimitHeaderValueMatch:
			matched := true
			for i := range a.HeaderMatches {
				if !a.HeaderMatches[i].Match(in.headers.Values(a.HeaderMatches[i].Name)) {
					matched = false
					break
				}
			}
			if matched != a.ExpectMatch {
				return nil, false
			}
			d = append(d, filter.Pair{Key: a.Key, Value: a.Value})
		default:
			return nil, false
		}
	}
	return d, true
}

// start sends the call in the background; its outcome is applied on
// the stream's goroutine (apply).
func (s *stream) start(domain string, descs []descriptor) {
	s.state = calling
	req := &rlsv3.RateLimitRequest{Domain: domain}
	for _, d := range descs {
		rd := &commonrl.RateLimitDescriptor{}
		for _, e := range d {
			rd.Entries = append(rd.Entries, &commonrl.RateLimitDescriptor_Entry{Key: e.Key, Value: e.Value})
		}
		req.Descriptors = append(req.Descriptors, rd)
	}
	f := s.f
	s.call.Go(s.cb, func(ctx context.Context) func() {
		var r *result
		if f.ups == nil {
			r = &result{status: statusError, reason: "no cluster access"}
		} else {
			r = call(ctx, f.ups, f.cfg, req)
		}
		return func() { s.apply(r) }
	})
}

// limitStatus is Envoy's LimitStatus.
type limitStatus int

const (
	statusOK limitStatus = iota
	statusOverLimit
	statusError
)

// result is a call's outcome, as Envoy's gRPC rate limit client reads
// a RateLimitResponse.
type result struct {
	status   limitStatus
	reason   string // why it failed, for tests and logs
	resp     *rlsv3.RateLimitResponse
	reqAdd   []filter.Pair
	respAdd  []filter.Pair
	body     []byte
	metadata map[string]any
}

func call(ctx context.Context, ups filter.Upstreams, cfg *Config, req *rlsv3.RateLimitRequest) *result {
	msg, err := proto.Marshal(req)
	if err != nil {
		return &result{status: statusError, reason: err.Error()}
	}
	svc := cfg.Service
	authority := svc.Authority
	if authority == "" {
		authority = svc.Cluster // Envoy's default :authority for envoy_grpc
	}
	hdrs := grpcstream.Headers(authority, method)
	if cfg.Timeout > 0 {
		hdrs = append(hdrs, filter.Pair{Key: "grpc-timeout", Value: strconv.FormatInt(cfg.Timeout.Milliseconds(), 10) + "m"})
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	for _, m := range svc.Metadata {
		hdrs = append(hdrs, filter.Pair{Key: m.Key, Value: m.Value})
	}
	out, err := grpcstream.Unary(ctx, ups, svc.Cluster, hdrs, msg)
	if err != nil {
		return &result{status: statusError, reason: err.Error()}
	}
	var resp rlsv3.RateLimitResponse
	if err := proto.Unmarshal(out, &resp); err != nil {
		return &result{status: statusError, reason: fmt.Sprintf("bad RateLimitResponse: %v", err)}
	}
	r := &result{resp: &resp, body: resp.GetRawBody()}
	switch resp.GetOverallCode() {
	case rlsv3.RateLimitResponse_OK:
		r.status = statusOK
	case rlsv3.RateLimitResponse_OVER_LIMIT:
		r.status = statusOverLimit
	default:
		r.status, r.reason = statusError, "overall_code UNKNOWN"
	}
	for _, h := range resp.GetResponseHeadersToAdd() {
		r.respAdd = append(r.respAdd, filter.Pair{Key: strings.ToLower(h.GetKey()), Value: h.GetValue()})
	}
	for _, h := range resp.GetRequestHeadersToAdd() {
		r.reqAdd = append(r.reqAdd, filter.Pair{Key: strings.ToLower(h.GetKey()), Value: h.GetValue()})
	}
	if md := resp.GetDynamicMetadata(); md != nil && len(md.GetFields()) > 0 {
		r.metadata = md.AsMap()
	}
	return r
}

// apply acts on a call's result (Envoy's Filter::complete).
func (s *stream) apply(r *result) {
	if s.state != calling {
		return
	}
	s.state = complete
	cfg := s.f.cfg
	st := s.f.stats(s.cluster)
	if r.metadata != nil {
		if info := s.cb.Info(); info != nil {
			info.DynamicMetadata.Merge(Name, r.metadata)
		}
	}
	s.respHeaders = append(s.respHeaders, r.respAdd...)
	switch r.status {
	case statusOK:
		inc(st.ok)
	case statusError:
		inc(st.errors)
	case statusOverLimit:
		inc(st.overLimit)
		if !cfg.DisableXEnvoyRateLimited {
			s.respHeaders = append(s.respHeaders, filter.Pair{Key: "x-envoy-ratelimited", Value: "true"})
		}
	}
	if cfg.XRateLimitHeaders && r.resp != nil {
		s.respHeaders = append(s.respHeaders, xRateLimitHeaders(r.resp.GetStatuses())...)
	}
	switch {
	case r.status == statusOverLimit && (cfg.FilterEnforced == nil || cfg.FilterEnforced.Sample()):
		hdrs := s.respHeaders
		s.respHeaders = nil
		s.cb.SendLocalReply(cfg.RateLimitedStatus, r.body, hdrs, "request_rate_limited")
	case r.status == statusError && cfg.FailureModeDeny:
		s.respHeaders = nil
		s.cb.SendLocalReply(cfg.StatusOnError, r.body, nil, "rate_limiter_error")
	default:
		if r.status == statusError {
			inc(st.failureModeAllowed)
		}
		if h := s.cb.RequestHeaders(); h != nil {
			for _, p := range r.reqAdd {
				h.Add(p.Key, p.Value)
			}
		}
		s.cb.Continue(filter.Request)
	}
}

// xRateLimitHeaders are the draft-03 headers: the limit, remaining and
// reset of the status with the least remaining, the limit followed by
// the quota policy of every status with a known unit.
func xRateLimitHeaders(statuses []*rlsv3.RateLimitResponse_DescriptorStatus) []filter.Pair {
	var least *rlsv3.RateLimitResponse_DescriptorStatus
	var policy strings.Builder
	for _, s := range statuses {
		if s.GetCurrentLimit() == nil {
			continue
		}
		if least == nil || s.GetLimitRemaining() < least.GetLimitRemaining() {
			least = s
		}
		if w := window(s.GetCurrentLimit().GetUnit()); w > 0 {
			fmt.Fprintf(&policy, ", %d;w=%d", s.GetCurrentLimit().GetRequestsPerUnit(), w)
			if n := s.GetCurrentLimit().GetName(); n != "" {
				fmt.Fprintf(&policy, ";name=%q", n)
			}
		}
	}
	if least == nil {
		return nil
	}
	return []filter.Pair{
		{Key: "x-ratelimit-limit", Value: strconv.FormatUint(uint64(least.GetCurrentLimit().GetRequestsPerUnit()), 10) + policy.String()},
		{Key: "x-ratelimit-remaining", Value: strconv.FormatUint(uint64(least.GetLimitRemaining()), 10)},
		{Key: "x-ratelimit-reset", Value: strconv.FormatInt(least.GetDurationUntilReset().GetSeconds(), 10)},
	}
}

// window is a unit in seconds; 0 for UNKNOWN.
func window(u rlsv3.RateLimitResponse_RateLimit_Unit) int {
	switch u {
	case rlsv3.RateLimitResponse_RateLimit_SECOND:
		return 1
	case rlsv3.RateLimitResponse_RateLimit_MINUTE:
		return 60
	case rlsv3.RateLimitResponse_RateLimit_HOUR:
		return 3600
	case rlsv3.RateLimitResponse_RateLimit_DAY:
		return 86400
	case rlsv3.RateLimitResponse_RateLimit_WEEK:
		return 7 * 86400
	case rlsv3.RateLimitResponse_RateLimit_MONTH:
		return 30 * 86400
	case rlsv3.RateLimitResponse_RateLimit_YEAR:
		return 365 * 86400
	}
	return 0
}

func inc(c *stats.Counter) {
	if c != nil {
		c.Inc()
	}
}

func (s *stream) DecodeData(*filter.Buffer, bool) filter.DataStatus {
	if s.state == calling {
		return filter.DataStopIterationAndWatermark
	}
	return filter.DataContinue
}

func (s *stream) DecodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	if s.state == calling {
		return filter.TrailersStopIteration
	}
	return filter.TrailersContinue
}

// EncodeHeaders adds the response headers the call left (Envoy's
// populateResponseHeaders).
func (s *stream) EncodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	for _, p := range s.respHeaders {
		h.Add(p.Key, p.Value)
	}
	s.respHeaders = nil
	return filter.HeadersContinue
}

// OnDestroy cancels a call in flight.
func (s *stream) OnDestroy() { s.call.End() }
