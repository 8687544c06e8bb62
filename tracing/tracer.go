// Package tracing is the proxy's distributed tracing, as Envoy's HTTP
// connection manager does it: request ids and the sampling decision
// (requestid.go), W3C and B3 propagation (propagation.go), one server
// span per downstream request and a client span per upstream attempt,
// recorded with OpenTelemetry's Go SDK and exported in batches over
// OTLP (otlp.go) or as Zipkin JSON v2 (zipkin.go) through the proxy's
// own clusters.
//
// Span processing never blocks a stream: ended spans go to the SDK's
// batch span processor, whose bounded queue drops spans when full, and
// are exported on its goroutine. Registry.Shutdown flushes them.
package tracing

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// Options are what tracers need from the proxy.
type Options struct {
	// Upstreams reaches the collector clusters (the proxy's own cluster
	// transport, as Envoy's tracers use its cluster manager).
	Upstreams filter.Upstreams
	// NodeID is the node_id tag; ServiceCluster names the local service
	// of Zipkin spans (Envoy's --service-cluster, the node's cluster).
	NodeID, ServiceCluster string
	Log                    *slog.Logger
}

// Registry holds one exporting provider per distinct tracer config, so
// reloads that keep a tracer keep its queue. Safe for concurrent use.
type Registry struct {
	opts Options
	mu   sync.Mutex
	m    map[string]*provider
}

// NewRegistry returns an empty registry.
func NewRegistry(opts Options) *Registry {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	errorLog.Store(opts.Log)
	errorHandlerOnce.Do(func() {
		// The SDK reports failed exports (and dropped spans) to the
		// process-wide OTel error handler; they go to the proxy's log
		// instead of the standard logger.
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			errorLog.Load().Warn("tracing: export failed", "error", err)
		}))
	})
	return &Registry{opts: opts, m: map[string]*provider{}}
}

// errorLog is the logger of the latest registry, for the process-wide
// OTel error handler.
var (
	errorLog         atomic.Pointer[slog.Logger]
	errorHandlerOnce sync.Once
)

type provider struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	zipkin *config.ZipkinTracer // nil: OpenTelemetry
}

// Tracer returns the tracer of one connection manager's tracing config;
// nil when cfg is nil. egress is the listener's traffic_direction
// OUTBOUND (Envoy's egress operation name).
func (r *Registry) Tracer(cfg *config.Tracing, egress bool) (*Tracer, error) {
	if cfg == nil {
		return nil, nil
	}
	t := &Tracer{cfg: cfg, egress: egress, nodeID: r.opts.NodeID}
	for _, ct := range cfg.CustomTags {
		tag := customTag{name: ct.Tag, header: ct.RequestHeader, value: ct.Literal}
		if ct.Environment != "" {
			v, ok := os.LookupEnv(ct.Environment)
			if !ok {
				v = ct.Default
			}
			if v == "" {
				continue
			}
			tag.value = v
		} else if ct.RequestHeader != "" {
			tag.value = ct.Default
		}
		t.tags = append(t.tags, tag)
	}
	if cfg.Provider == nil {
		return t, nil
	}
	key, err := json.Marshal(cfg.Provider)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.m[string(key)]
	if p == nil {
		if p, err = r.newProvider(cfg.Provider); err != nil {
			return nil, err
		}
		r.m[string(key)] = p
	}
	t.p = p
	return t, nil
}

// exportTimeout bounds one export when the config gives no timeout.
const exportTimeout = 10 * time.Second

func (r *Registry) newProvider(cfg *config.TracingProvider) (*provider, error) {
	p := &provider{zipkin: cfg.Zipkin}
	var exp sdktrace.SpanExporter
	var res *resource.Resource
	timeout := exportTimeout
	switch {
	case cfg.Zipkin != nil:
		exp = newZipkinExporter(r.opts.Upstreams, cfg.Zipkin, r.opts.ServiceCluster)
		res = resource.Empty()
	case cfg.OpenTelemetry != nil:
		o := cfg.OpenTelemetry
		if o.Timeout > 0 {
			timeout = o.Timeout.D()
		}
		res = resource.NewSchemaless(attribute.String("service.name", o.ServiceName))
		if o.GRPCCluster != "" || o.HTTPCluster != "" {
			var err error
			if exp, err = otlptrace.New(context.Background(), newOTLPClient(r.opts.Upstreams, o)); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("tracing provider %q: no tracer", cfg.Name)
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(decisionSampler{}),
		sdktrace.WithIDGenerator(&idGenerator{zipkin: cfg.Zipkin}),
	}
	if exp != nil {
		// The SDK's defaults: a queue of 2048 spans (dropping when full,
		// never blocking), batches of up to 512, sent every 5s (Envoy's
		// flush interval too).
		opts = append(opts, sdktrace.WithBatcher(exp, sdktrace.WithExportTimeout(timeout)))
	}
	p.tp = sdktrace.NewTracerProvider(opts...)
	p.tracer = p.tp.Tracer("wasmproxy")
	return p, nil
}

// Shutdown flushes every provider and stops it.
func (r *Registry) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for k, p := range r.m {
		errs = append(errs, p.tp.Shutdown(ctx))
		delete(r.m, k)
	}
	return errors.Join(errs...)
}

// Tracer traces the requests of one connection manager.
type Tracer struct {
	cfg    *config.Tracing
	p      *provider // nil: no provider (Envoy's null tracer)
	egress bool
	nodeID string
	tags   []customTag
}

type customTag struct {
	name, header string
	value        string // the literal, the variable's value, or the header's default
}

type ctxKey int

const (
	sampledKey ctxKey = iota // bool: the decision for a new server span
	spanIDKey                // trace.SpanID: the id a new span must take
)

// decisionSampler applies the decision Start took (Envoy decides before
// the tracer runs); child spans follow their parent.
type decisionSampler struct{}

func (decisionSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	psc := trace.SpanContextFromContext(p.ParentContext)
	sampled := psc.IsSampled()
	if v, ok := p.ParentContext.Value(sampledKey).(bool); ok {
		sampled = v
	}
	d := sdktrace.Drop
	if sampled {
		d = sdktrace.RecordAndSample
	}
	return sdktrace.SamplingResult{Decision: d, Tracestate: psc.TraceState()}
}

func (decisionSampler) Description() string { return "EnvoyDecision" }

// idGenerator makes random ids; for Zipkin, 64-bit trace ids unless
// trace_id_128bit, and the client's span id for a server span sharing
// it (shared_span_context).
type idGenerator struct{ zipkin *config.ZipkinTracer }

func (g *idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	var t trace.TraceID
	for !t.IsValid() {
		_, _ = rand.Read(t[:])
		if g.zipkin != nil && !g.zipkin.TraceID128Bit {
			clear(t[:8])
		}
	}
	return t, g.NewSpanID(ctx, t)
}

func (g *idGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if id, ok := ctx.Value(spanIDKey).(trace.SpanID); ok && id.IsValid() {
		return id
	}
	var s trace.SpanID
	for !s.IsValid() {
		binary.BigEndian.PutUint64(s[:], randUint64())
	}
	return s
}

func randUint64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// Span is one request's server span, or one upstream attempt's client
// span. Its methods are called from the stream's goroutine only. A nil
// *Span (no tracer) does nothing.
type Span struct {
	t      *Tracer
	span   trace.Span
	ctx    context.Context
	parent trace.SpanID // the parent's id, for B3's x-b3-parentspanid
	// opFromHeader: an ingress x-envoy-decorator-operation named the
	// span, which a route decorator does not override.
	opFromHeader bool
	ended        bool
}

// Start takes the tracing decision for a request whose request id is
// set (Decide), and, with a provider, starts its server span from the
// propagated context (W3C for OpenTelemetry, B3 for Zipkin): a
// sampling flag that arrives wins over the decision, as in Envoy's
// tracers. nil when the tracer has no provider. edge: see Decide.
func (t *Tracer) Start(h Headers, start time.Time, edge bool) *Span {
	if t == nil {
		return nil
	}
	traced := Decide(h, t.cfg, edge)
	if t.p == nil {
		return nil
	}
	ctx := context.Background()
	var rem remote
	var ok bool
	if t.p.zipkin != nil {
		rem, ok = extractB3(h)
	} else {
		rem, ok = extractW3C(h)
	}
	sampled := traced
	if ok && rem.sampledSet {
		sampled = rem.sc.IsSampled()
	}
	ctx = context.WithValue(ctx, sampledKey, sampled)
	s := &Span{t: t}
	if ok && rem.sc.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, rem.sc)
		s.parent = rem.sc.SpanID()
		if z := t.p.zipkin; z != nil && z.SharedSpanContext {
			// One span id for the client's and the server's halves of
			// the exchange; its parent is the client span's.
			ctx = context.WithValue(ctx, spanIDKey, rem.sc.SpanID())
			s.parent = rem.parentID
		}
	}
	name := "ingress"
	if t.egress {
		host, _ := h.Get(":authority")
		name = "egress " + host
	} else if op, ok := h.Get("x-envoy-decorator-operation"); ok {
		// An ingress request names its own operation (Envoy's
		// traceRequest), and the header is not sent on.
		h.Del("x-envoy-decorator-operation")
		if op != "" {
			name, s.opFromHeader = op, true
		}
	}
	kind := trace.SpanKindServer
	if t.egress && !t.cfg.SpawnUpstreamSpan {
		kind = trace.SpanKindClient
	}
	ctx, s.span = t.p.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithTimestamp(start))
	s.ctx = ctx
	if s.span.IsRecording() {
		if sid, ok := ctx.Value(spanIDKey).(trace.SpanID); ok && sid.IsValid() && s.parent.IsValid() {
			// Zipkin shared span: the exporter reads the real parent here.
			s.span.SetAttributes(attribute.String(zipkinParentAttr, s.parent.String()))
		}
	}
	return s
}

// Decorate applies the matched route's decorator: it names the span
// (unless an ingress request named it), and on egress sends the
// operation upstream when the decorator propagates it.
func (s *Span) Decorate(d *config.Decorator, h Headers) {
	if s == nil || d == nil {
		return
	}
	if !s.opFromHeader {
		s.span.SetName(d.Operation)
	}
	if s.t.egress && d.Propagate {
		h.Set("x-envoy-decorator-operation", d.Operation)
	}
}

// Upstream starts the client span of one upstream attempt when the
// config asks for one (spawn_upstream_span or the router's
// start_child_span); nil otherwise. Its name is Envoy's router span
// name.
func (s *Span) Upstream(cluster string, startChildSpan bool, start time.Time) *Span {
	if s == nil || !(startChildSpan || s.t.cfg.SpawnUpstreamSpan) {
		return nil
	}
	// A zero spanIDKey: the server span's shared id is not the child's.
	ctx := context.WithValue(s.ctx, spanIDKey, trace.SpanID{})
	ctx, sp := s.t.p.tracer.Start(ctx, "router "+cluster+" egress", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start))
	return &Span{t: s.t, span: sp, ctx: ctx, parent: s.span.SpanContext().SpanID()}
}

// Inject writes the span's context into the upstream request headers.
func (s *Span) Inject(h Headers) {
	if s == nil {
		return
	}
	sc := s.span.SpanContext()
	if s.t.p.zipkin != nil {
		injectB3(h, sc, s.parent)
		return
	}
	injectW3C(h, sc)
}

// SpanContext is the span's context (for tests and logs).
func (s *Span) SpanContext() trace.SpanContext {
	if s == nil {
		return trace.SpanContext{}
	}
	return s.span.SpanContext()
}

// Result is what the end of a request or attempt tells its span.
type Result struct {
	// Request are the request headers as the span saw them last (nil
	// for an upstream attempt).
	Request Headers
	// Protocol is "HTTP/1.1", "HTTP/2", …; Peer the downstream (server
	// span) or upstream (attempt) address.
	Protocol string
	Peer     netip.AddrPort
	Upstream string // upstream host address of an attempt
	// Status is the response code, 0 when there was none.
	Status          int
	ResponseFlags   string
	UpstreamCluster string
	RequestSize     uint64
	ResponseSize    uint64
}

// Finish sets the tags Envoy sets (finalizeDownstreamSpan,
// finalizeUpstreamSpan) and ends the span at end. A span ends once.
func (s *Span) Finish(r Result, end time.Time) {
	if s == nil || s.ended {
		return
	}
	s.ended = true
	if !s.span.IsRecording() {
		s.span.End(trace.WithTimestamp(end))
		return
	}
	attrs := make([]attribute.KeyValue, 0, 20)
	str := func(k, v string) { attrs = append(attrs, attribute.String(k, v)) }
	str("component", "proxy")
	str("node_id", s.t.nodeID)
	if r.Protocol != "" {
		str("http.protocol", r.Protocol)
	}
	if h := r.Request; h != nil {
		get := func(k string) string { v, _ := h.Get(k); return v }
		if v := get("x-request-id"); v != "" {
			str("guid:x-request-id", v)
		}
		str("http.url", requestURL(h, s.t.cfg.MaxPathTagLength))
		str("http.method", get(":method"))
		str("downstream_cluster", orDash(get("x-envoy-downstream-service-cluster")))
		str("user_agent", orDash(get("user-agent")))
		if r.Peer.IsValid() {
			str("peer.address", r.Peer.Addr().String())
		}
		if v := get("x-client-trace-id"); v != "" {
			str("guid:x-client-trace-id", v)
		}
		for _, ct := range s.t.tags {
			v := ct.value
			if ct.header != "" {
				if hv, ok := h.Get(ct.header); ok {
					v = hv
				}
			}
			if v != "" {
				str(ct.name, v)
			}
		}
		str("request_size", strconv.FormatUint(r.RequestSize, 10))
		str("response_size", strconv.FormatUint(r.ResponseSize, 10))
	} else if r.Upstream != "" {
		str("upstream_address", r.Upstream)
	}
	if r.UpstreamCluster != "" {
		str("upstream_cluster", r.UpstreamCluster)
		str("upstream_cluster.name", r.UpstreamCluster)
	}
	str("http.status_code", strconv.Itoa(r.Status))
	str("response_flags", orDash(r.ResponseFlags))
	if r.Status == 0 || r.Status >= 500 {
		str("error", "true")
		s.span.SetStatus(codes.Error, "")
	}
	s.span.SetAttributes(attrs...)
	s.span.End(trace.WithTimestamp(end))
}

// requestURL is Envoy's http.url tag: x-forwarded-proto://host path,
// the path (x-envoy-original-path when a rewrite kept it) cut to max.
func requestURL(h Headers, max uint32) string {
	path, ok := h.Get("x-envoy-original-path")
	if !ok {
		path, _ = h.Get(":path")
	}
	if max > 0 && uint32(len(path)) > max {
		path = path[:max]
	}
	scheme, _ := h.Get("x-forwarded-proto")
	host, _ := h.Get(":authority")
	return scheme + "://" + host + path
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
