// Package fault is envoy.filters.http.fault: delays and aborts injected
// into requests, with Envoy's semantics restated from
// source/extensions/filters/http/fault/fault_filter.cc:
//
//   - The config is the filter's HTTPFault, or the most specific one of
//     the route or virtual host (typed_per_filter_config), which replaces
//     it whole.
//   - A request is eligible when upstream_cluster (if set) is its route's
//     cluster, x-envoy-downstream-service-node is one of downstream_nodes
//     (if any), and every matcher of headers matches.
//   - A delay applies when delay.percentage samples the request; its
//     length is fixed_delay, or with header_delay the milliseconds of
//     x-envoy-fault-delay-request (no valid header: no delay). An abort
//     likewise: http_status, grpc_status, or with header_abort
//     x-envoy-fault-abort-request (an HTTP status in [200, 600)) or
//     x-envoy-fault-abort-grpc-request. With header_* the percentage can
//     be lowered per request by x-envoy-fault-delay-request-percentage /
//     x-envoy-fault-abort-request-percentage (the numerator over the
//     configured denominator, never above the configured numerator).
//   - A fault is not injected when max_active_faults requests already
//     have one (fault.faults_overflow). An injected fault counts in the
//     gauge fault.active_faults until the stream ends.
//   - A delay holds the request (and its body) for the duration on a
//     timer, then the abort, if any, is decided, else the request goes
//     on; a stream that ends meanwhile stops the timer. An abort answers
//     with its status and response_body (default "fault filter abort"),
//     details fault_filter_abort (gRPC: status 200 with grpc-status).
//
// Stats under http.<stat_prefix>.fault.: delays_injected,
// aborts_injected, faults_overflow, active_faults. The per-downstream-
// cluster stats and response_rate_limit are not supported.
package fault

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Name is the filter's canonical name.
const Name = "envoy.filters.http.fault"

const message = "envoy.extensions.filters.http.fault.v3.HTTPFault"

// The request headers that control header_delay and header_abort faults.
const (
	HeaderDelay           = "x-envoy-fault-delay-request"
	HeaderDelayPercentage = "x-envoy-fault-delay-request-percentage"
	HeaderAbort           = "x-envoy-fault-abort-request"
	HeaderAbortGRPC       = "x-envoy-fault-abort-grpc-request"
	HeaderAbortPercentage = "x-envoy-fault-abort-request-percentage"
	headerDownstreamNode  = "x-envoy-downstream-service-node"
)

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

// Percent is a FractionalPercent: Numerator out of Denominator.
type Percent struct {
	Numerator   uint32 `json:"numerator"`
	Denominator uint32 `json:"denominator"`
}

func (p Percent) sample() bool {
	switch {
	case p.Numerator == 0:
		return false
	case p.Numerator >= p.Denominator:
		return true
	}
	return rand.Uint32N(p.Denominator) < p.Numerator
}

// Delay is a FaultDelay: Fixed, or FromHeader.
type Delay struct {
	Fixed      config.Duration `json:"fixed_delay,omitempty"`
	FromHeader bool            `json:"header_delay,omitempty"`
	Percentage Percent         `json:"percentage"`
}

// Abort is a FaultAbort: HTTPStatus, GRPCStatus, or FromHeader.
type Abort struct {
	HTTPStatus int     `json:"http_status,omitempty"`
	GRPCStatus *uint32 `json:"grpc_status,omitempty"`
	FromHeader bool    `json:"header_abort,omitempty"`
	Percentage Percent `json:"percentage"`
	Body       string  `json:"response_body,omitempty"`
}

// Config is one HTTPFault: the filter's or a route's.
type Config struct {
	Delay           *Delay                 `json:"delay,omitempty"`
	Abort           *Abort                 `json:"abort,omitempty"`
	UpstreamCluster string                 `json:"upstream_cluster,omitempty"`
	Headers         []config.HeaderMatcher `json:"headers,omitempty"`
	DownstreamNodes []string               `json:"downstream_nodes,omitempty"`
	// MaxActiveFaults: nil is no limit.
	MaxActiveFaults *uint32 `json:"max_active_faults,omitempty"`
}

func parse(msg proto.Message, path string) (any, error) {
	if msg == nil {
		return &Config{}, nil
	}
	pb, ok := msg.(*faultv3.HTTPFault)
	if !ok {
		return nil, config.FieldError(path, "want "+message)
	}
	if pb.GetResponseRateLimit() != nil {
		return nil, config.NotSupportedError(config.JoinPath(path, "response_rate_limit"), "")
	}
	if pb.GetFilterMetadata() != nil {
		return nil, config.NotSupportedError(config.JoinPath(path, "filter_metadata"), "")
	}
	c := &Config{UpstreamCluster: pb.GetUpstreamCluster(), DownstreamNodes: pb.GetDownstreamNodes()}
	if v := pb.GetMaxActiveFaults(); v != nil {
		n := v.GetValue()
		c.MaxActiveFaults = &n
	}
	for i, h := range pb.GetHeaders() {
		m, err := config.BuildHeaderMatcher(h, config.IndexPath(config.JoinPath(path, "headers"), i))
		if err != nil {
			return nil, err
		}
		c.Headers = append(c.Headers, m)
	}
	if d := pb.GetDelay(); d != nil {
		dp := config.JoinPath(path, "delay")
		c.Delay = &Delay{}
		switch s := d.GetFaultDelaySecifier().(type) {
		case *faultcommonv3.FaultDelay_FixedDelay:
			c.Delay.Fixed = config.Duration(s.FixedDelay.AsDuration())
		case *faultcommonv3.FaultDelay_HeaderDelay_:
			c.Delay.FromHeader = true
		default:
			return nil, config.FieldError(dp, "missing: fixed_delay or header_delay")
		}
		var err error
		if c.Delay.Percentage, err = percent(d.GetPercentage(), config.JoinPath(dp, "percentage")); err != nil {
			return nil, err
		}
	}
	if a := pb.GetAbort(); a != nil {
		ap := config.JoinPath(path, "abort")
		c.Abort = &Abort{Body: a.GetResponseBody()}
		switch s := a.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			if s.HttpStatus < 200 || s.HttpStatus >= 600 {
				return nil, config.FieldError(config.JoinPath(ap, "http_status"), "%d is not in [200, 600)", s.HttpStatus)
			}
			c.Abort.HTTPStatus = int(s.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			g := s.GrpcStatus
			c.Abort.GRPCStatus = &g
		case *faultv3.FaultAbort_HeaderAbort_:
			c.Abort.FromHeader = true
		default:
			return nil, config.FieldError(ap, "missing: http_status, grpc_status or header_abort")
		}
		var err error
		if c.Abort.Percentage, err = percent(a.GetPercentage(), config.JoinPath(ap, "percentage")); err != nil {
			return nil, err
		}
	}
	return c, nil
}

var denominators = map[typev3.FractionalPercent_DenominatorType]uint32{
	typev3.FractionalPercent_HUNDRED:      100,
	typev3.FractionalPercent_TEN_THOUSAND: 10_000,
	typev3.FractionalPercent_MILLION:      1_000_000,
}

// percent reads a FractionalPercent; unset is 0%, as in Envoy.
func percent(pb *typev3.FractionalPercent, path string) (Percent, error) {
	d, ok := denominators[pb.GetDenominator()]
	if !ok {
		return Percent{}, config.FieldError(config.JoinPath(path, "denominator"), "unknown denominator %v", pb.GetDenominator())
	}
	return Percent{Numerator: pb.GetNumerator(), Denominator: d}, nil
}

type factory struct {
	name                     string
	cfg                      *Config
	delays, aborts, overflow *stats.Counter
	activeGauge              *stats.Gauge
	// active counts the streams with a fault injected, for
	// max_active_faults (the gauge may be absent).
	active atomic.Int64
}

func newFactory(cfg any, env filters.Env) (filter.Factory, error) {
	f := &factory{name: env.FilterName, cfg: cfg.(*Config)}
	if env.Stats != nil {
		p := env.StatPrefix + "fault."
		f.delays = env.Stats.Counter(p + "delays_injected")
		f.aborts = env.Stats.Counter(p + "aborts_injected")
		f.overflow = env.Stats.Counter(p + "faults_overflow")
		f.activeGauge = env.Stats.Gauge(p + "active_faults")
	}
	return f, nil
}

// tryActive takes an active-fault slot under max.
func (f *factory) tryActive(max *uint32) bool {
	for {
		n := f.active.Load()
		if max != nil && n >= int64(*max) {
			inc(f.overflow)
			return false
		}
		if f.active.CompareAndSwap(n, n+1) {
			if f.activeGauge != nil {
				f.activeGauge.Add(1)
			}
			return true
		}
	}
}

func (f *factory) release() {
	f.active.Add(-1)
	if f.activeGauge != nil {
		f.activeGauge.Add(-1)
	}
}

func (f *factory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &stream{f: f, cb: cb}
}

// stream is the filter on one stream. The timer's callback runs on its
// own goroutine and only posts to the stream's; mu guards what they
// share.
type stream struct {
	filter.PassThrough
	f  *factory
	cb filter.Callbacks

	active bool // holds an active-fault slot
	// abort is the abort decided with the delay, applied when it ends.
	abort *abortAction

	mu       sync.Mutex
	timer    *time.Timer
	gone     bool
	delaying bool
}

type abortAction struct {
	status int
	grpc   *uint32
	body   string
}

func (s *stream) config() *Config {
	route, vhost := filters.PerRoute(s.cb, s.f.name)
	for _, c := range [2]any{route, vhost} {
		if rc, ok := c.(*Config); ok && rc != nil {
			return rc
		}
	}
	return s.f.cfg
}

// eligible: the request is one the config's faults may apply to.
func (s *stream) eligible(c *Config, h *filter.HeaderMap) bool {
	if c.UpstreamCluster != "" {
		if info := s.cb.Info(); info == nil || info.ClusterName != c.UpstreamCluster {
			return false
		}
	}
	if len(c.DownstreamNodes) > 0 {
		node, _ := h.Get(headerDownstreamNode)
		found := false
		for _, n := range c.DownstreamNodes {
			if n == node {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	for i := range c.Headers {
		if !c.Headers[i].Match(h.Values(c.Headers[i].Name)) {
			return false
		}
	}
	return true
}

// headerPercent is the configured percentage, lowered by the request's
// percentage header when the fault is header-controlled.
func headerPercent(p Percent, fromHeader bool, h *filter.HeaderMap, name string) Percent {
	if !fromHeader {
		return p
	}
	if v, ok := h.Get(name); ok {
		if n, err := strconv.ParseUint(v, 10, 32); err == nil {
			p.Numerator = min(uint32(n), p.Numerator)
		}
	}
	return p
}

// delayFor is the delay to inject into this request, or 0.
func delayFor(d *Delay, h *filter.HeaderMap) time.Duration {
	if d == nil || !headerPercent(d.Percentage, d.FromHeader, h, HeaderDelayPercentage).sample() {
		return 0
	}
	if !d.FromHeader {
		return time.Duration(d.Fixed)
	}
	v, _ := h.Get(HeaderDelay)
	ms, err := strconv.ParseUint(v, 10, 63)
	if err != nil {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// abortFor is the abort to inject into this request, or nil.
func abortFor(a *Abort, h *filter.HeaderMap) *abortAction {
	if a == nil || !headerPercent(a.Percentage, a.FromHeader, h, HeaderAbortPercentage).sample() {
		return nil
	}
	body := a.Body
	if body == "" {
		body = "fault filter abort"
	}
	switch {
	case a.HTTPStatus != 0:
		return &abortAction{status: a.HTTPStatus, body: body}
	case a.GRPCStatus != nil:
		return &abortAction{status: 200, grpc: a.GRPCStatus, body: body}
	}
	if v, ok := h.Get(HeaderAbort); ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 200 && n < 600 {
			return &abortAction{status: n, body: body}
		}
	}
	if v, ok := h.Get(HeaderAbortGRPC); ok {
		if n, err := strconv.ParseUint(v, 10, 32); err == nil {
			g := uint32(n)
			return &abortAction{status: 200, grpc: &g, body: body}
		}
	}
	return nil
}

func (s *stream) DecodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	c := s.config()
	if (c.Delay == nil && c.Abort == nil) || !s.eligible(c, h) {
		return filter.HeadersContinue
	}
	delay, abort := delayFor(c.Delay, h), abortFor(c.Abort, h)
	if delay == 0 && abort == nil {
		return filter.HeadersContinue
	}
	if !s.f.tryActive(c.MaxActiveFaults) {
		return filter.HeadersContinue
	}
	s.active = true
	if delay > 0 {
		inc(s.f.delays)
		s.abort = abort
		s.mu.Lock()
		defer s.mu.Unlock()
		s.delaying = true
		s.timer = time.AfterFunc(delay, s.delayDone)
		return filter.HeadersStopIteration
	}
	s.doAbort(abort)
	return filter.HeadersStopIteration
}

// delayDone runs on the timer's goroutine: the rest happens on the
// stream's (Post), and not at all once the stream has ended.
func (s *stream) delayDone() {
	s.mu.Lock()
	gone := s.gone
	s.mu.Unlock()
	if gone {
		return
	}
	if p, ok := s.cb.(filter.Poster); ok {
		p.Post(s.afterDelay)
		return
	}
	s.afterDelay()
}

// afterDelay is Envoy's postDelayInjection: the abort decided with the
// delay, else the request goes on.
func (s *stream) afterDelay() {
	s.mu.Lock()
	was := s.delaying
	s.delaying = false
	s.mu.Unlock()
	if !was {
		return
	}
	if s.abort != nil {
		s.doAbort(s.abort)
		return
	}
	s.cb.Continue(filter.Request)
}

func (s *stream) doAbort(a *abortAction) {
	inc(s.f.aborts)
	if a.grpc != nil {
		s.cb.SendLocalReply(a.status, nil, []filter.Pair{
			{Key: "content-type", Value: "application/grpc"},
			{Key: "grpc-status", Value: strconv.FormatUint(uint64(*a.grpc), 10)},
			{Key: "grpc-message", Value: a.body},
		}, "fault_filter_abort")
		return
	}
	s.cb.SendLocalReply(a.status, []byte(a.body), nil, "fault_filter_abort")
}

func inc(c *stats.Counter) {
	if c != nil {
		c.Inc()
	}
}

// holding reports a delay in progress: body and trailers wait behind it
// (Envoy's decodeData answers StopIterationAndWatermark then).
func (s *stream) holding() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delaying
}

func (s *stream) DecodeData(*filter.Buffer, bool) filter.DataStatus {
	if s.holding() {
		return filter.DataStopIterationAndWatermark
	}
	return filter.DataContinue
}

func (s *stream) DecodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	if s.holding() {
		return filter.TrailersStopIteration
	}
	return filter.TrailersContinue
}

// OnDestroy stops a delay in progress and frees the active-fault slot.
func (s *stream) OnDestroy() {
	s.mu.Lock()
	s.gone = true
	s.delaying = false
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	if s.active {
		s.active = false
		s.f.release()
	}
}
