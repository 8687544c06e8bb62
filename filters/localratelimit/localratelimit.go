// Package localratelimit is envoy.filters.http.local_ratelimit: a token
// bucket per configuration (the filter's, or a route's or virtual host's
// in typed_per_filter_config, the most specific replacing the others),
// with Envoy's semantics restated from
// source/extensions/filters/http/local_ratelimit/:
//
// The filter acts on a request when filter_enabled samples it (unset:
// never, as in Envoy). A request takes a token; without one it is rate
// limited, and, when filter_enforced samples it (unset: never), answered
// with status (default 429), body "local_rate_limited",
// x-envoy-ratelimited: true and response_headers_to_add; when not
// enforced it goes on with request_headers_to_add_when_not_enforced.
// The bucket starts full (max_tokens) and gains tokens_per_fill (default
// 1) every fill_interval, up to max_tokens.
//
// Stats <stat_prefix>.http_local_rate_limit.enabled, .ok, .rate_limited,
// .enforced. Descriptors and the other fields are not supported yet.
package localratelimit

import (
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Name is the filter's canonical name.
const Name = "envoy.filters.http.local_ratelimit"

const message = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"

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

// Percent is a RuntimeFractionalPercent's default value (config.Percent).
type Percent = config.Percent

// Header is a HeaderValueOption: Overwrite for OVERWRITE_IF_EXISTS_OR_ADD,
// else added.
type Header struct {
	Key       string `json:"key"`
	Value     string `json:"value"`
	Overwrite bool   `json:"overwrite,omitempty"`
}

// Config is one LocalRateLimit: the filter's or a route's. It owns its
// bucket, shared by every stream it applies to.
type Config struct {
	StatPrefix     string   `json:"stat_prefix"`
	Status         int      `json:"status"`
	MaxTokens      uint32   `json:"max_tokens,omitempty"`
	TokensPerFill  uint32   `json:"tokens_per_fill,omitempty"`
	FillInterval   string   `json:"fill_interval,omitempty"`
	FilterEnabled  *Percent `json:"filter_enabled,omitempty"`
	FilterEnforced *Percent `json:"filter_enforced,omitempty"`
	RequestHeaders []Header `json:"request_headers_to_add_when_not_enforced,omitempty"`
	ResponseHeads  []Header `json:"response_headers_to_add,omitempty"`

	bucket *bucket
	once   sync.Once
	st     *counters
}

func parse(msg proto.Message, path string) (any, error) {
	pb, ok := msg.(*lrlv3.LocalRateLimit)
	if !ok || pb == nil {
		return nil, config.FieldError(path, "missing: local_ratelimit needs a typed_config with stat_prefix")
	}
	supported := map[protoreflect.Name]bool{
		"stat_prefix": true, "status": true, "token_bucket": true, "filter_enabled": true, "filter_enforced": true,
		"request_headers_to_add_when_not_enforced": true, "response_headers_to_add": true,
	}
	var unsupported error
	pb.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !supported[fd.Name()] {
			unsupported = config.NotSupportedError(config.JoinPath(path, string(fd.Name())), "")
			return false
		}
		return true
	})
	if unsupported != nil {
		return nil, unsupported
	}
	c := &Config{StatPrefix: pb.GetStatPrefix(), Status: 429}
	if s := pb.GetStatus(); s != nil {
		if s.GetCode() < 400 {
			// Envoy's rule: a rate-limit status is an error status.
			return nil, config.FieldError(config.JoinPath(path, "status.code"), "%d is not an error status (400 or above)", s.GetCode())
		}
		c.Status = int(s.GetCode())
	}
	if tb := pb.GetTokenBucket(); tb != nil {
		c.MaxTokens = tb.GetMaxTokens()
		c.TokensPerFill = 1
		if v := tb.GetTokensPerFill(); v != nil {
			c.TokensPerFill = v.GetValue()
		}
		d := tb.GetFillInterval().AsDuration()
		if d < 50*time.Millisecond {
			// Envoy refuses intervals under 50ms.
			return nil, config.FieldError(config.JoinPath(path, "token_bucket.fill_interval"), "%v is under 50ms", d)
		}
		c.FillInterval = d.String()
		c.bucket = &bucket{tokens: c.MaxTokens, max: c.MaxTokens, perFill: c.TokensPerFill, interval: d, last: time.Now()}
	}
	var err error
	if c.FilterEnabled, err = percent(pb.GetFilterEnabled(), config.JoinPath(path, "filter_enabled")); err != nil {
		return nil, err
	}
	if c.FilterEnforced, err = percent(pb.GetFilterEnforced(), config.JoinPath(path, "filter_enforced")); err != nil {
		return nil, err
	}
	if c.RequestHeaders, err = headers(pb.GetRequestHeadersToAddWhenNotEnforced(), config.JoinPath(path, "request_headers_to_add_when_not_enforced")); err != nil {
		return nil, err
	}
	if c.ResponseHeads, err = headers(pb.GetResponseHeadersToAdd(), config.JoinPath(path, "response_headers_to_add")); err != nil {
		return nil, err
	}
	return c, nil
}

// percent reads a RuntimeFractionalPercent's default value; nil stays nil.
func percent(pb *corev3.RuntimeFractionalPercent, path string) (*Percent, error) {
	if pb == nil {
		return nil, nil
	}
	return config.BuildPercent(pb.GetDefaultValue(), config.JoinPath(path, "default_value"))
}

func headers(opts []*corev3.HeaderValueOption, path string) ([]Header, error) {
	var out []Header
	for i, o := range opts {
		p := config.IndexPath(path, i)
		h := Header{Key: o.GetHeader().GetKey(), Value: o.GetHeader().GetValue()}
		switch o.GetAppendAction() {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			h.Overwrite = true
		default:
			return nil, config.NotSupportedError(config.JoinPath(p, "append_action"), o.GetAppendAction().String())
		}
		if o.GetAppend() != nil {
			return nil, config.NotSupportedError(config.JoinPath(p, "append"), "deprecated; use append_action")
		}
		if len(o.GetHeader().GetRawValue()) > 0 {
			return nil, config.NotSupportedError(config.JoinPath(p, "header.raw_value"), "")
		}
		out = append(out, h)
	}
	return out, nil
}

// bucket is a token bucket refilled lazily: the tokens a timer firing
// every interval would have added are added when a request looks.
type bucket struct {
	mu       sync.Mutex
	tokens   uint32
	max      uint32
	perFill  uint32
	interval time.Duration
	last     time.Time // the last fill instant
}

func (b *bucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if fills := now.Sub(b.last) / b.interval; fills > 0 {
		add := uint64(fills) * uint64(b.perFill)
		b.tokens = uint32(min(uint64(b.max), uint64(b.tokens)+add))
		b.last = b.last.Add(fills * b.interval)
	}
	if b.tokens == 0 {
		return false
	}
	b.tokens--
	return true
}

type counters struct {
	enabled, ok, rateLimited, enforced *stats.Counter
}

type factory struct {
	name  string
	cfg   *Config
	store *stats.Store
}

func newFactory(cfg any, env filters.Env) (filter.Factory, error) {
	return &factory{name: env.FilterName, cfg: cfg.(*Config), store: env.Stats}, nil
}

// counters of c, made on first use (a per-route config has no store
// until a stream uses it).
func (f *factory) counters(c *Config) *counters {
	c.once.Do(func() {
		st := &counters{}
		if f.store != nil {
			p := c.StatPrefix + ".http_local_rate_limit."
			st.enabled, st.ok = f.store.Counter(p+"enabled"), f.store.Counter(p+"ok")
			st.rateLimited, st.enforced = f.store.Counter(p+"rate_limited"), f.store.Counter(p+"enforced")
		}
		c.st = st
	})
	return c.st
}

func (f *factory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &stream{f: f, cb: cb}
}

type stream struct {
	filter.PassThrough
	f  *factory
	cb filter.Callbacks
}

func (s *stream) DecodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	c := s.f.cfg
	route, vhost := filters.PerRoute(s.cb, s.f.name)
	if rc, ok := route.(*Config); ok && rc != nil {
		c = rc
	} else if vc, ok := vhost.(*Config); ok && vc != nil {
		c = vc
	}
	if !c.FilterEnabled.Sample() {
		return filter.HeadersContinue
	}
	st := s.f.counters(c)
	inc(st.enabled)
	if c.bucket == nil || c.bucket.take(time.Now()) {
		inc(st.ok)
		return filter.HeadersContinue
	}
	inc(st.rateLimited)
	if !c.FilterEnforced.Sample() {
		for _, hd := range c.RequestHeaders {
			apply(h, hd)
		}
		return filter.HeadersContinue
	}
	inc(st.enforced)
	out := make([]filter.Pair, 0, 1+len(c.ResponseHeads))
	out = append(out, filter.Pair{Key: "x-envoy-ratelimited", Value: "true"})
	for _, hd := range c.ResponseHeads {
		out = append(out, filter.Pair{Key: hd.Key, Value: hd.Value})
	}
	s.cb.SendLocalReply(c.Status, []byte("local_rate_limited"), out, "local_rate_limited")
	return filter.HeadersStopIteration
}

func apply(h *filter.HeaderMap, hd Header) {
	if hd.Overwrite {
		h.Set(hd.Key, hd.Value)
	} else {
		h.Add(hd.Key, hd.Value)
	}
}

func inc(c *stats.Counter) {
	if c != nil {
		c.Inc()
	}
}
