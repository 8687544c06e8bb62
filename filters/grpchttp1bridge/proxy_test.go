package grpchttp1bridge_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
)

// startProxy runs the library proxy with the bridge (extra typed_config
// fields) in front of a grpc-go health service over HTTP/2.
func startProxy(t *testing.T, extra string) string {
	t.Helper()
	port := inproc.GRPCServer(t, func(gs *grpc.Server) {
		hs := health.NewServer()
		hs.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
		healthpb.RegisterHealthServer(gs, hs)
	},
		// Any other method sends its headers, then fails: a gRPC error in
		// trailers after headers (not a trailers-only answer).
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			stream.SendHeader(metadata.MD{})
			return grpcstatus.Error(codes.ResourceExhausted, "quota spent")
		}))
	p := inproc.Start(t, inproc.Config(`
              routes:
              - {match: {prefix: "/", grpc: {}}, route: {cluster: grpc}}
              - {match: {prefix: "/"}, direct_response: {status: 404, body: {inline_string: "no gRPC route"}}}`, `
          - name: envoy.filters.http.grpc_http1_bridge
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.grpc_http1_bridge.v3.Config`+extra, inproc.H2Cluster("grpc", port)))
	return "http://" + p.Addr("main")
}

func frame(msg []byte) []byte {
	out := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

func post(t *testing.T, url, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Post(url, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestBridge: an HTTP/1.1 client calls a grpc-go service through the
// proxy. A success is 200 with the framed answer, grpc-status 0 in the
// headers and a content-length; a gRPC error is 503 with grpc-status and
// grpc-message in the headers; ignore_query_parameters lets a path with
// a query string reach the exact gRPC route.
func TestBridge(t *testing.T) {
	base := startProxy(t, `
              ignore_query_parameters: true`)
	req, _ := proto.Marshal(&healthpb.HealthCheckRequest{Service: "up"})
	resp, body := post(t, base+"/grpc.health.v1.Health/Check?trace=1", "application/grpc", frame(req))
	want, _ := proto.Marshal(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
	if resp.StatusCode != 200 || !bytes.Equal(body, frame(want)) || resp.Header.Get("Grpc-Status") != "0" ||
		resp.ContentLength != int64(len(frame(want))) {
		t.Errorf("SERVING: %d %x grpc-status %q content-length %d; want 200 %x grpc-status 0", resp.StatusCode, body, resp.Header.Get("Grpc-Status"), resp.ContentLength, frame(want))
	}

	// A trailers-only answer (the error comes in the headers): its
	// headers stand for the trailers, as in Envoy's bridge: 503, the
	// status and message kept, content-length 0.
	req, _ = proto.Marshal(&healthpb.HealthCheckRequest{Service: "nope"})
	resp, body = post(t, base+"/grpc.health.v1.Health/Check", "application/grpc", frame(req))
	if resp.StatusCode != 503 || resp.Header.Get("Grpc-Status") != "5" || resp.Header.Get("Grpc-Message") != "unknown service" || len(body) != 0 || resp.ContentLength != 0 {
		t.Errorf("NOT_FOUND: %d %q grpc-status %q grpc-message %q content-length %d; want 503, 5, \"unknown service\", 0", resp.StatusCode, body, resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message"), resp.ContentLength)
	}
	// An error in trailers after the headers: 503, the trailers' status
	// and message moved into the headers.
	resp, body = post(t, base+"/x.Quota/Spend", "application/grpc", frame(nil))
	if resp.StatusCode != 503 || resp.Header.Get("Grpc-Status") != "8" || resp.Header.Get("Grpc-Message") != "quota spent" || len(body) != 0 || resp.ContentLength != 0 {
		t.Errorf("RESOURCE_EXHAUSTED: %d %q grpc-status %q grpc-message %q content-length %d; want 503, 8, \"quota spent\", 0", resp.StatusCode, body, resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message"), resp.ContentLength)
	}
}

// TestUpgradeProtobuf: with upgrade_protobuf_to_grpc a plain
// application/x-protobuf body is framed as gRPC on the way up (the
// route matches only gRPC requests) and the answer comes back unframed.
func TestUpgradeProtobuf(t *testing.T) {
	base := startProxy(t, `
              upgrade_protobuf_to_grpc: true`)
	req, _ := proto.Marshal(&healthpb.HealthCheckRequest{Service: "up"})
	resp, body := post(t, base+"/grpc.health.v1.Health/Check", "application/x-protobuf", req)
	var got healthpb.HealthCheckResponse
	if err := proto.Unmarshal(body, &got); resp.StatusCode != 200 || err != nil || got.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("x-protobuf: %d %x (%v); want 200 and a bare HealthCheckResponse SERVING", resp.StatusCode, body, err)
	}
	// Without the option the same request is not gRPC: no route.
	base = startProxy(t, "")
	if resp, body = post(t, base+"/grpc.health.v1.Health/Check", "application/x-protobuf", req); resp.StatusCode != 404 {
		t.Errorf("without upgrade: %d %q, want the 404 of the non-gRPC route", resp.StatusCode, body)
	}
}
