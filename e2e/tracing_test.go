package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// spanReceiver is a real OTLP/gRPC trace receiver (the OTel proto
// module's collector service on grpc-go).
type spanReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (r *spanReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// TestTracingSeedTwoHops runs the binary on the seed's config (the Wasm
// JSON validation plugin in front of the proxy's own second listener)
// with OpenTelemetry tracing on both connection managers, a route
// decorator and an access log of the request id, as deployments combine
// them. One request makes two server spans in one trace, the second a
// child of the first (the traceparent crossed a real hop), both tagged
// with the one x-request-id the access log also wrote; SIGTERM flushes
// them to the receiver.
func TestTracingSeedTwoHops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &spanReceiver{}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, rec)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	_, collectorPort, _ := net.SplitHostPort(ln.Addr().String())

	tracing := `                stat_prefix: ingress_http
                codec_type: auto
                tracing:
                  provider:
                    name: envoy.tracers.opentelemetry
                    typed_config:
                      "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                      service_name: seed
                      grpc_service:
                        envoy_grpc: {cluster_name: otel_collector}
                        timeout: 10s
`
	dir, listen, admin := setup(t, seedConfig, plugin(t, "examples/json-validation"), func(s string) string {
		s = strings.ReplaceAll(s, "                stat_prefix: ingress_http\n                codec_type: auto\n", tracing)
		// The first connection manager (the plugin's) also logs.
		s = strings.Replace(s, "                        timeout: 10s\n", `                        timeout: 10s
                access_log:
                  - name: envoy.access_loggers.file
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
                      path: ./access.log
                      log_format: {text_format: "%REQ(X-REQUEST-ID)% %RESPONSE_CODE%\n"}
`, 1)
		s = strings.Replace(s, "                          route:\n                            cluster: web_service\n",
			"                          route:\n                            cluster: web_service\n                          decorator: {operation: validate-and-forward}\n", 1)
		return strings.Replace(s, "\nadmin:", fmt.Sprintf(`
    - name: otel_collector
      type: STATIC
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {http2_protocol_options: {}}
      load_assignment:
        cluster_name: otel_collector
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}}]}]

admin:`, collectorPort), 1)
	})
	in := run(t, dir, listen, admin, "-c", "envoy.yaml")

	const traceID, callerSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	req, err := http.NewRequest("POST", "http://"+listen+"/", strings.NewReader(`{"id": "1", "token": "t"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-"+callerSpan+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	in.stop() // SIGTERM: the proxy flushes its spans before it exits

	rec.mu.Lock()
	spans := rec.spans
	rec.mu.Unlock()
	if len(spans) != 2 {
		t.Fatalf("receiver got %d spans, want 2 (one per hop)\n%s", len(spans), in.Logs())
	}
	var first, second *tracepb.Span
	for _, s := range spans {
		if fmt.Sprintf("%x", s.GetParentSpanId()) == callerSpan {
			first = s
		} else {
			second = s
		}
	}
	if first == nil {
		t.Fatalf("no span is a child of the caller's: %v", spans)
	}
	if first.GetName() != "validate-and-forward" || second.GetName() != "ingress" {
		t.Errorf("span names %q, %q; want the decorator's, then ingress", first.GetName(), second.GetName())
	}
	if fmt.Sprintf("%x", second.GetParentSpanId()) != fmt.Sprintf("%x", first.GetSpanId()) {
		t.Errorf("second hop's parent %x, want the first hop's span %x", second.GetParentSpanId(), first.GetSpanId())
	}
	for _, s := range spans {
		if fmt.Sprintf("%x", s.GetTraceId()) != traceID {
			t.Errorf("span %q trace %x, want %s", s.GetName(), s.GetTraceId(), traceID)
		}
	}
	rid := func(s *tracepb.Span) string {
		for _, kv := range s.GetAttributes() {
			if kv.GetKey() == "guid:x-request-id" {
				return kv.GetValue().GetStringValue()
			}
		}
		return ""
	}
	log, _ := os.ReadFile(filepath.Join(dir, "access.log"))
	if id := rid(first); id == "" || id != rid(second) || string(log) != id+" 200\n" {
		t.Errorf("request ids: first hop %q, second %q, access log %q: want one id everywhere", id, rid(second), log)
	}
}
