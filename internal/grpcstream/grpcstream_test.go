package grpcstream_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/internal/grpcstream"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/proxy"
	"github.com/wasmproxy/wasmproxy/stats"
)

// clusterTo is a proxy whose HTTP/2 cluster "grpc" reaches a real
// grpc-go health server.
func clusterTo(t *testing.T) *proxy.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	cl := &config.Cluster{Name: "grpc", Type: config.ClusterStatic, LBPolicy: config.LBRoundRobin,
		ConnectTimeout: config.Duration(5 * time.Second), HTTP2: true, Endpoints: []config.Endpoint{{Address: ln.Addr().String()}}}
	srv, err := proxy.New(context.Background(), &config.Bootstrap{Clusters: []*config.Cluster{cl}},
		proxy.Options{Logs: logging.NewRegistry(io.Discard, logging.LevelInfo), Stats: stats.New()})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestUnaryAndStatus: a unary call's one response message comes back;
// a call the server fails (an unknown service: a trailers-only
// response) is a *StatusError with the server's code and message.
func TestUnaryAndStatus(t *testing.T) {
	srv := clusterTo(t)
	req, _ := proto.Marshal(&healthpb.HealthCheckRequest{Service: "svc"})
	out, err := grpcstream.Unary(context.Background(), srv, "grpc", grpcstream.Headers("grpc", "/grpc.health.v1.Health/Check"), req)
	if err != nil {
		t.Fatal(err)
	}
	var resp healthpb.HealthCheckResponse
	if err := proto.Unmarshal(out, &resp); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("response %v, %v; want SERVING", &resp, err)
	}
	req, _ = proto.Marshal(&healthpb.HealthCheckRequest{Service: "nope"})
	_, err = grpcstream.Unary(context.Background(), srv, "grpc", grpcstream.Headers("grpc", "/grpc.health.v1.Health/Check"), req)
	var se *grpcstream.StatusError
	if !errors.As(err, &se) || se.Code != "5" || se.Message == "" {
		t.Fatalf("unknown service: %v; want grpc-status 5 (NOT_FOUND) with a message", err)
	}
}

// TestStreamEndsWithContext: a server-streaming call (Watch never ends
// by itself) delivers messages as they come, and cancelling the call's
// context ends a Recv blocked on the next one.
func TestStreamEndsWithContext(t *testing.T) {
	srv := clusterTo(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := grpcstream.Open(ctx, srv, "grpc", grpcstream.Headers("grpc", "/grpc.health.v1.Health/Watch"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req, _ := proto.Marshal(&healthpb.HealthCheckRequest{Service: "svc"})
	if err := s.Send(req); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	out, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var resp healthpb.HealthCheckResponse
	if err := proto.Unmarshal(out, &resp); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first message %v, %v; want SERVING", &resp, err)
	}
	done := make(chan error, 1)
	go func() { _, err := s.Recv(); done <- err }()
	cancel()
	select {
	case err := <-done:
		if err == nil || err == io.EOF {
			t.Fatalf("Recv after cancel: %v, want an error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Recv still blocked 30s after cancel")
	}
}
