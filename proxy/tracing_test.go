package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is a real OTLP/gRPC trace receiver: the collector trace
// service of the OTel proto module on grpc-go.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
	res   []*tracepb.ResourceSpans
	got   chan struct{}
}

func (r *otlpReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) add(req *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		r.res = append(r.res, rs)
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	select {
	case r.got <- struct{}{}:
	default:
	}
}

func (r *otlpReceiver) snapshot() ([]*tracepb.Span, []*tracepb.ResourceSpans) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...), r.res
}

func startOTLPGRPC(t testing.TB) (*otlpReceiver, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &otlpReceiver{got: make(chan struct{}, 1)}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, rec)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return rec, ln.Addr().String()
}

// upstreamSeen records the request headers an upstream received.
type upstreamSeen struct {
	mu sync.Mutex
	h  []http.Header
}

func (u *upstreamSeen) handler(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.h = append(u.h, r.Header.Clone())
	u.mu.Unlock()
	_, _ = io.WriteString(w, "ok")
}

func (u *upstreamSeen) last(t *testing.T) http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.h) == 0 {
		t.Fatal("the upstream saw no request")
	}
	return u.h[len(u.h)-1]
}

func tracingYAML(tracing, decorator, router string, upstream, collector string, collectorH2 bool) string {
	host, port, _ := net.SplitHostPort(upstream)
	chost, cport, _ := net.SplitHostPort(collector)
	h2 := ""
	if collectorH2 {
		h2 = `
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {http2_protocol_options: {}}`
	}
	return fmt.Sprintf(`
node: {id: node-1, cluster: front}
static_resources:
  listeners:
    - name: main
      address: {socket_address: {address: 127.0.0.1, port_value: 0}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: ingress_http
                tracing:
%s
                route_config:
                  virtual_hosts:
                    - name: backend
                      domains: ["*"]
                      routes:
                        - match: {prefix: "/"}
                          route: {cluster: backend}
%s
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
%s
  clusters:
    - name: backend
      type: STATIC
      load_assignment:
        cluster_name: backend
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]
    - name: collector
      type: STATIC%s
      load_assignment:
        cluster_name: collector
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]
`, tracing, decorator, router, host, port, h2, chost, cport)
}

func attrs(s *tracepb.Span) map[string]string {
	m := map[string]string{}
	for _, kv := range s.GetAttributes() {
		m[kv.GetKey()] = anyString(kv.GetValue())
	}
	return m
}

func anyString(v *commonpb.AnyValue) string {
	if v == nil {
		return ""
	}
	return v.GetStringValue()
}

func hexID(b []byte) string { return fmt.Sprintf("%x", b) }

// TestTracingOTLPGRPC: with envoy.tracers.opentelemetry over
// grpc_service, a request carrying a W3C traceparent gets a server span
// (named by the route's decorator, child of the caller's span, with
// Envoy's tags) and, under spawn_upstream_span, a client span for the
// upstream attempt whose id the upstream receives in its traceparent;
// a real OTLP/gRPC receiver gets both, flushed when the proxy stops.
func TestTracingOTLPGRPC(t *testing.T) {
	rec, collector := startOTLPGRPC(t)
	var seen upstreamSeen
	up := upstream(t, seen.handler)
	f := startYAML(t, tracingYAML(`
                  spawn_upstream_span: true
                  custom_tags:
                    - {tag: env, literal: {value: prod}}
                    - {tag: tenant, request_header: {name: x-tenant, default_value: none}}
                  provider:
                    name: envoy.tracers.opentelemetry
                    typed_config:
                      "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                      service_name: front-proxy
                      grpc_service: {envoy_grpc: {cluster_name: collector}, timeout: 10s}`,
		`                          decorator: {operation: checkout}`, "", up, collector, true), "")

	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req := mustReq("GET", "http://"+f.addr+"/cart?id=1", nil)
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	req.Header.Set("tracestate", "vendor=x")
	req.Header.Set("x-tenant", "acme")
	resp, _ := do(t, req)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := seen.last(t)
	if err := f.srv.Shutdown(context.Background()); err != nil { // flushes the spans
		t.Fatal(err)
	}
	spans, res := rec.snapshot()
	if len(spans) != 2 {
		t.Fatalf("receiver got %d spans, want 2 (server and upstream)", len(spans))
	}
	var server, client *tracepb.Span
	for _, s := range spans {
		switch s.GetKind() {
		case tracepb.Span_SPAN_KIND_SERVER:
			server = s
		case tracepb.Span_SPAN_KIND_CLIENT:
			client = s
		}
	}
	if server == nil || client == nil {
		t.Fatalf("want one server and one client span, got %v", spans)
	}
	if server.GetName() != "checkout" {
		t.Errorf("server span name %q, want the decorator's operation", server.GetName())
	}
	if client.GetName() != "router backend egress" {
		t.Errorf("client span name %q", client.GetName())
	}
	if hexID(server.GetTraceId()) != traceID || hexID(client.GetTraceId()) != traceID {
		t.Errorf("trace ids %x %x, want the caller's %s", server.GetTraceId(), client.GetTraceId(), traceID)
	}
	if hexID(server.GetParentSpanId()) != parentID {
		t.Errorf("server span's parent %x, want the caller's span %s", server.GetParentSpanId(), parentID)
	}
	if hexID(client.GetParentSpanId()) != hexID(server.GetSpanId()) {
		t.Errorf("client span's parent %x, want the server span %x", client.GetParentSpanId(), server.GetSpanId())
	}
	wantTP := "00-" + traceID + "-" + hexID(client.GetSpanId()) + "-01"
	if tp := got.Get("traceparent"); tp != wantTP {
		t.Errorf("upstream traceparent %q, want %q (the upstream span's)", tp, wantTP)
	}
	if ts := got.Get("tracestate"); ts != "vendor=x" {
		t.Errorf("upstream tracestate %q", ts)
	}
	a := attrs(server)
	for k, v := range map[string]string{
		"component": "proxy", "node_id": "node-1", "http.method": "GET", "http.status_code": "200",
		"http.url": "http://" + f.addr + "/cart?id=1", "upstream_cluster": "backend",
		"response_flags": "-", "guid:x-request-id": got.Get("x-request-id"), "env": "prod", "tenant": "acme",
		"http.protocol": "HTTP/1.1", "peer.address": "127.0.0.1",
	} {
		if a[k] != v {
			t.Errorf("server span tag %s = %q, want %q", k, a[k], v)
		}
	}
	if _, bad := a["error"]; bad {
		t.Error("a 200 is tagged error")
	}
	if ca := attrs(client); ca["http.status_code"] != "200" || ca["upstream_cluster"] != "backend" || ca["component"] != "proxy" {
		t.Errorf("client span tags %v", ca)
	}
	var service string
	for _, kv := range res[0].GetResource().GetAttributes() {
		if kv.GetKey() == "service.name" {
			service = anyString(kv.GetValue())
		}
	}
	if service != "front-proxy" {
		t.Errorf("service.name %q", service)
	}
}

// TestTracingOTLPHTTP: over http_service, spans are POSTed as OTLP
// protobuf to the http_uri's path on its cluster. A request without a
// trace context starts a trace (sampled by random_sampling's default of
// 100%, which the x-request-id records), and the upstream gets its
// traceparent from the server span (no upstream span without
// spawn_upstream_span or start_child_span). A 5xx is tagged error.
func TestTracingOTLPHTTP(t *testing.T) {
	rec := &otlpReceiver{got: make(chan struct{}, 1)}
	var paths sync.Map
	collector := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		paths.Store(r.URL.Path+" "+r.Header.Get("content-type")+" "+r.Header.Get("authorization"), true)
		b, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		rec.add(&req)
		w.Header().Set("content-type", "application/x-protobuf")
	})
	var seen upstreamSeen
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		seen.mu.Lock()
		seen.h = append(seen.h, r.Header.Clone())
		seen.mu.Unlock()
		w.WriteHeader(503)
	})
	f := startYAML(t, tracingYAML(`
                  provider:
                    name: envoy.tracers.opentelemetry
                    typed_config:
                      "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                      http_service:
                        http_uri: {uri: "http://otel-collector:4318/v1/traces", cluster: collector, timeout: 10s}
                        request_headers_to_add: [{header: {key: authorization, value: "Bearer abc"}}]`,
		"", "", up, collector, false), "")
	resp, _ := do(t, mustReq("POST", "http://"+f.addr+"/orders", strings.NewReader("x")))
	if resp.StatusCode != 503 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := seen.last(t)
	if err := f.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := paths.Load("/v1/traces application/x-protobuf Bearer abc"); !ok {
		var all []any
		paths.Range(func(k, _ any) bool { all = append(all, k); return true })
		t.Errorf("collector requests %v, want a protobuf POST to /v1/traces with the configured header", all)
	}
	spans, _ := rec.snapshot()
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.GetName() != "ingress" || s.GetKind() != tracepb.Span_SPAN_KIND_SERVER || len(s.GetParentSpanId()) != 0 {
		t.Errorf("span %q kind %v parent %x, want a root server span named ingress", s.GetName(), s.GetKind(), s.GetParentSpanId())
	}
	want := "00-" + hexID(s.GetTraceId()) + "-" + hexID(s.GetSpanId()) + "-01"
	if tp := got.Get("traceparent"); tp != want {
		t.Errorf("upstream traceparent %q, want %q", tp, want)
	}
	if rid := got.Get("x-request-id"); len(rid) != 36 || rid[14] != '9' {
		t.Errorf("x-request-id %q: want a UUID marked sampled ('9' at 14), as Envoy writes it", rid)
	}
	a := attrs(s)
	if a["error"] != "true" || a["http.status_code"] != "503" || a["http.method"] != "POST" {
		t.Errorf("tags %v: want error=true, 503, POST", a)
	}
	if s.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("status %v, want error", s.GetStatus())
	}
}

// zipkinV2Span is Zipkin's JSON v2 span, decoded independently of the
// exporter's own type.
type zipkinV2Span struct {
	TraceID       string            `json:"traceId"`
	ID            string            `json:"id"`
	ParentID      string            `json:"parentId"`
	Name          string            `json:"name"`
	Kind          string            `json:"kind"`
	Timestamp     int64             `json:"timestamp"`
	Duration      int64             `json:"duration"`
	Shared        bool              `json:"shared"`
	LocalEndpoint map[string]any    `json:"localEndpoint"`
	Tags          map[string]string `json:"tags"`
}

// TestTracingZipkin: envoy.tracers.zipkin reads B3 (here the single b3
// header), shares the caller's span id (shared_span_context's default),
// sends x-b3-* upstream (a child span's under start_child_span), and
// POSTs Zipkin JSON v2 to collector_endpoint. A request whose b3 says
// "not sampled" is propagated but not exported.
func TestTracingZipkin(t *testing.T) {
	var mu sync.Mutex
	var zspans []zipkinV2Span
	var badPaths []string
	collector := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/api/v2/spans" || r.Header.Get("content-type") != "application/json" || r.Host != "zipkin" {
			badPaths = append(badPaths, r.Host+r.URL.Path+" "+r.Header.Get("content-type"))
		}
		var batch []zipkinV2Span
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		zspans = append(zspans, batch...)
		w.WriteHeader(202)
	})
	var seen upstreamSeen
	up := upstream(t, seen.handler)
	f := startYAML(t, tracingYAML(`
                  provider:
                    name: envoy.tracers.zipkin
                    typed_config:
                      "@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig
                      collector_cluster: collector
                      collector_endpoint: "/api/v2/spans"
                      collector_endpoint_version: HTTP_JSON
                      collector_hostname: zipkin`,
		"", `                      start_child_span: true`, up, collector, false), "")

	const tid, sid, pid = "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312", "0020000000000001"
	req := mustReq("GET", "http://"+f.addr+"/", nil)
	req.Header.Set("b3", tid+"-"+sid+"-1-"+pid)
	do(t, req)
	first := seen.last(t)
	unsampled := mustReq("GET", "http://"+f.addr+"/quiet", nil)
	unsampled.Header.Set("x-b3-traceid", "1111111111111111")
	unsampled.Header.Set("x-b3-spanid", "2222222222222222")
	unsampled.Header.Set("x-b3-sampled", "0")
	do(t, unsampled)
	second := seen.last(t)
	if err := f.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(badPaths) > 0 {
		t.Errorf("collector requests %v, want JSON POSTs to zipkin/api/v2/spans", badPaths)
	}
	if len(zspans) != 2 {
		t.Fatalf("collector got %d spans, want 2 (server and child of the sampled request): %+v", len(zspans), zspans)
	}
	var server, child zipkinV2Span
	for _, s := range zspans {
		if s.Kind == "SERVER" {
			server = s
		} else {
			child = s
		}
	}
	if server.TraceID != tid || server.ID != sid || server.ParentID != pid || !server.Shared {
		t.Errorf("server span %+v: want trace %s, the shared id %s, parent %s", server, tid, sid, pid)
	}
	if server.Name != "ingress" || server.LocalEndpoint["serviceName"] != "front" || server.Tags["http.status_code"] != "200" || server.Duration <= 0 {
		t.Errorf("server span %+v", server)
	}
	if child.Kind != "CLIENT" || child.ParentID != sid || child.TraceID != tid || child.Name != "router backend egress" {
		t.Errorf("child span %+v", child)
	}
	if first.Get("x-b3-traceid") != tid || first.Get("x-b3-spanid") != child.ID || first.Get("x-b3-parentspanid") != sid || first.Get("x-b3-sampled") != "1" || first.Get("b3") != "" {
		t.Errorf("upstream B3 headers %v, want the child span's", first)
	}
	if second.Get("x-b3-traceid") != "1111111111111111" || second.Get("x-b3-sampled") != "0" {
		t.Errorf("unsampled request's upstream headers %v: want the trace propagated, not sampled", second)
	}
}

// TestTracingNoProvider: tracing without a provider still decides (the
// request id records it) but sends no trace headers.
func TestTracingNoProvider(t *testing.T) {
	var seen upstreamSeen
	up := upstream(t, seen.handler)
	f := startYAML(t, tracingYAML(`                  random_sampling: {value: 100}`, "", "", up, "127.0.0.1:1", false), "")
	do(t, mustReq("GET", "http://"+f.addr+"/", nil))
	got := seen.last(t)
	if got.Get("traceparent") != "" || got.Get("x-b3-traceid") != "" {
		t.Errorf("trace headers sent without a tracer: %v", got)
	}
	if rid := got.Get("x-request-id"); len(rid) != 36 || rid[14] != '9' {
		t.Errorf("x-request-id %q, want it marked sampled", rid)
	}
}

// exportedSpans stops the proxy (flushing its spans) and returns what
// the receiver got.
func exportedSpans(t *testing.T, f *fixture, rec *otlpReceiver) []*tracepb.Span {
	t.Helper()
	if err := f.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans, _ := rec.snapshot()
	return spans
}

const otelGRPCProvider = `
                  provider:
                    name: envoy.tracers.opentelemetry
                    typed_config:
                      "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                      grpc_service: {envoy_grpc: {cluster_name: collector}, timeout: 10s}`

// TestTracingDecoratorOperation: on an egress listener (traffic_direction
// OUTBOUND) the span is a client span named by the decorator, which is
// sent upstream in x-envoy-decorator-operation; without a decorator it
// is "egress <host>". On ingress a caller's x-envoy-decorator-operation
// names the span and is not forwarded.
func TestTracingDecoratorOperation(t *testing.T) {
	t.Run("egress", func(t *testing.T) {
		rec, collector := startOTLPGRPC(t)
		var seen upstreamSeen
		up := upstream(t, seen.handler)
		y := tracingYAML(otelGRPCProvider, `                          decorator: {operation: pay}
                        - match: {prefix: "/"}
                          route: {cluster: backend}`, "", up, collector, true)
		y = strings.Replace(y, `routes:
                        - match: {prefix: "/"}`, `routes:
                        - match: {prefix: "/pay"}`, 1)
		y = strings.Replace(y, "    - name: main\n", "    - name: main\n      traffic_direction: OUTBOUND\n", 1)
		f := startYAML(t, y, "")
		do(t, mustReq("GET", "http://"+f.addr+"/pay", nil))
		if op := seen.last(t).Get("x-envoy-decorator-operation"); op != "pay" {
			t.Errorf("upstream x-envoy-decorator-operation %q, want the decorator's", op)
		}
		req := mustReq("GET", "http://"+f.addr+"/other", nil)
		req.Host = "shop.example"
		do(t, req)
		if op := seen.last(t).Get("x-envoy-decorator-operation"); op != "" {
			t.Errorf("undecorated route sent x-envoy-decorator-operation %q", op)
		}
		names := map[string]tracepb.Span_SpanKind{}
		for _, s := range exportedSpans(t, f, rec) {
			names[s.GetName()] = s.GetKind()
		}
		if names["pay"] != tracepb.Span_SPAN_KIND_CLIENT || names["egress shop.example"] != tracepb.Span_SPAN_KIND_CLIENT {
			t.Errorf("spans %v, want client spans pay and egress shop.example", names)
		}
	})
	t.Run("ingress", func(t *testing.T) {
		rec, collector := startOTLPGRPC(t)
		var seen upstreamSeen
		up := upstream(t, seen.handler)
		f := startYAML(t, tracingYAML(otelGRPCProvider, `                          decorator: {operation: route-op}`, "", up, collector, true), "")
		req := mustReq("GET", "http://"+f.addr+"/", nil)
		req.Header.Set("x-envoy-decorator-operation", "caller-op")
		do(t, req)
		if op := seen.last(t).Get("x-envoy-decorator-operation"); op != "" {
			t.Errorf("ingress forwarded x-envoy-decorator-operation %q", op)
		}
		spans := exportedSpans(t, f, rec)
		if len(spans) != 1 || spans[0].GetName() != "caller-op" || spans[0].GetKind() != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("spans %v, want one server span named by the caller's header", spans)
		}
	})
}

// TestTracingUpstreamSpanPerAttempt: with retries, each upstream attempt
// has its own client span, child of the server span, and each attempt's
// request carries its own span id; the failed attempt is tagged error.
func TestTracingUpstreamSpanPerAttempt(t *testing.T) {
	rec, collector := startOTLPGRPC(t)
	var mu sync.Mutex
	var tps []string
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tps = append(tps, r.Header.Get("traceparent"))
		n := len(tps)
		mu.Unlock()
		if n == 1 {
			w.WriteHeader(503)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	y := tracingYAML(otelGRPCProvider, "", `                      start_child_span: true`, up, collector, true)
	y = strings.Replace(y, "route: {cluster: backend}", "route: {cluster: backend, retry_policy: {retry_on: 5xx, num_retries: 2}}", 1)
	f := startYAML(t, y, "")
	resp, _ := do(t, mustReq("GET", "http://"+f.addr+"/", nil))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	spans := exportedSpans(t, f, rec)
	var server *tracepb.Span
	clients := map[string]*tracepb.Span{}
	for _, s := range spans {
		if s.GetKind() == tracepb.Span_SPAN_KIND_SERVER {
			server = s
		} else {
			clients[hexID(s.GetSpanId())] = s
		}
	}
	if server == nil || len(clients) != 2 || len(tps) != 2 {
		t.Fatalf("got %d spans (%d attempts), want a server span and two attempt spans", len(spans), len(tps))
	}
	for i, tp := range tps {
		parts := strings.Split(tp, "-")
		if len(parts) != 4 {
			t.Fatalf("attempt %d traceparent %q", i+1, tp)
		}
		c := clients[parts[2]]
		if c == nil {
			t.Fatalf("attempt %d's traceparent names span %s, not an attempt span", i+1, parts[2])
		}
		if hexID(c.GetParentSpanId()) != hexID(server.GetSpanId()) {
			t.Errorf("attempt %d span's parent %x, want the server span", i+1, c.GetParentSpanId())
		}
		want := map[int]string{0: "503", 1: "200"}[i]
		if a := attrs(c); a["http.status_code"] != want || (i == 0) != (a["error"] == "true") {
			t.Errorf("attempt %d tags %v, want status %s (error on the 503)", i+1, a, want)
		}
	}
}

// TestTracingBootstrapProvider: a connection manager whose tracing names
// no provider uses the bootstrap's (deprecated) tracing.http, as Envoy.
func TestTracingBootstrapProvider(t *testing.T) {
	rec, collector := startOTLPGRPC(t)
	var seen upstreamSeen
	up := upstream(t, seen.handler)
	y := tracingYAML(`                  random_sampling: {value: 100}`, "", "", up, collector, true)
	y = strings.Replace(y, "node: {id: node-1, cluster: front}\n", `node: {id: node-1, cluster: front}
tracing:
  http:
    name: envoy.tracers.opentelemetry
    typed_config:
      "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
      grpc_service: {envoy_grpc: {cluster_name: collector}}
`, 1)
	f := startYAML(t, y, "")
	do(t, mustReq("GET", "http://"+f.addr+"/", nil))
	tp := seen.last(t).Get("traceparent")
	spans := exportedSpans(t, f, rec)
	if len(spans) != 1 || tp != "00-"+hexID(spans[0].GetTraceId())+"-"+hexID(spans[0].GetSpanId())+"-01" {
		t.Errorf("spans %v, upstream traceparent %q: want one exported span, propagated", spans, tp)
	}
}

// TestTracingCollectorDown: a collector that cannot be reached costs the
// requests nothing (spans are exported off the stream) and the final
// flush gives up within its budget instead of holding the shutdown.
func TestTracingCollectorDown(t *testing.T) {
	var seen upstreamSeen
	up := upstream(t, seen.handler)
	f := startYAML(t, tracingYAML(otelGRPCProvider, "", "", up, refusedAddr(t), true), "")
	for i := 0; i < 20; i++ {
		if resp, _ := do(t, mustReq("GET", "http://"+f.addr+"/", nil)); resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	if err := f.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
