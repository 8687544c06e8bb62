package proxy

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
)

func calloutServer(t *testing.T, clusters ...*config.Cluster) *Server {
	t.Helper()
	srv, err := New(context.Background(), &config.Bootstrap{Clusters: clusters},
		Options{Logs: logging.NewRegistry(io.Discard, logging.LevelInfo), Stats: stats.New()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.closeClusters() })
	return srv
}

func TestServerHTTPCall(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/slow" {
			time.Sleep(300 * time.Millisecond)
		}
		w.Header().Set("X-Got", r.Method+" "+r.URL.RequestURI()+" "+r.Host+" "+string(b))
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	srv := calloutServer(t, staticCluster("svc", up.Listener.Addr().String()), staticCluster("dead", "127.0.0.1:1"))
	if !srv.HasCluster("svc") || srv.HasCluster("nope") {
		t.Fatal("HasCluster")
	}
	hdrs := []filter.Pair{{Key: ":method", Value: "POST"}, {Key: ":path", Value: "/a?b=c"}, {Key: ":authority", Value: "x.local"}, {Key: "content-length", Value: "2"}}
	resp, err := srv.HTTPCall(context.Background(), "svc", hdrs, []byte("hi"), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := filter.NewHeaderMap(resp.Headers...)
	if st, _ := h.Get(":status"); st != "200" || string(resp.Body) != "ok" {
		t.Fatalf("status %s body %q", st, resp.Body)
	}
	if got, _ := h.Get("x-got"); got != "POST /a?b=c x.local hi" {
		t.Errorf("upstream saw %q", got)
	}
	// Connection failure and timeout come back as Envoy's local replies.
	resp, err = srv.HTTPCall(context.Background(), "dead", hdrs, []byte("hi"), nil)
	if err != nil || resp.Headers[0].Value != "503" {
		t.Errorf("dead cluster: %v %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	slow := []filter.Pair{{Key: ":method", Value: "GET"}, {Key: ":path", Value: "/slow"}, {Key: ":authority", Value: "x"}}
	resp, err = srv.HTTPCall(ctx, "svc", slow, nil, nil)
	if err != nil || resp.Headers[0].Value != "504" || string(resp.Body) != "upstream request timeout" {
		t.Errorf("timeout: %+v %v", resp, err)
	}
}

// TestServerOpenStreamGrpc speaks gRPC through an HTTP/2 cluster to a
// real grpc-go server.
func TestServerOpenStreamGrpc(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(ln)
	defer gs.Stop()
	cl := staticCluster("grpc", ln.Addr().String())
	cl.HTTP2 = true
	srv := calloutServer(t, cl)
	s, err := srv.OpenStream(context.Background(), "grpc", []filter.Pair{
		{Key: ":method", Value: "POST"}, {Key: ":path", Value: "/grpc.health.v1.Health/Check"},
		{Key: ":authority", Value: "grpc"}, {Key: "content-type", Value: "application/grpc"}, {Key: "te", Value: "trailers"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msg := []byte{0x0a, 0x03, 's', 'v', 'c'}
	frame := append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...)
	go func() {
		_ = s.Write(frame)
		_ = s.CloseWrite()
	}()
	hdrs, err := s.Response()
	if err != nil {
		t.Fatal(err)
	}
	if filter.NewHeaderMap(hdrs...).Len() == 0 || hdrs[0].Value != "200" {
		t.Fatalf("headers %v", hdrs)
	}
	var head [5]byte
	if _, err := io.ReadFull(s, head[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(head[1:]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatal(err)
	}
	if len(body) != 2 || body[1] != 1 { // status: SERVING
		t.Errorf("response message %x", body)
	}
	io.Copy(io.Discard, s)
	if st, _ := filter.NewHeaderMap(s.Trailers()...).Get("grpc-status"); st != "0" {
		t.Errorf("grpc-status %q", st)
	}
}

// TestServerOpenStreamCancel: cancelling the context an open stream was
// started with ends it, as filter.Upstreams promises, even while its
// request body is still open (a bidirectional call such as ADS): a
// reader blocked on the response sees an error. Before, the HTTP/2
// transport only watched the context once the body was written, so
// the read blocked until the server ended the call.
func TestServerOpenStreamCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	reflection.Register(gs)
	go gs.Serve(ln)
	defer gs.Stop()
	cl := staticCluster("grpc", ln.Addr().String())
	cl.HTTP2 = true
	srv := calloutServer(t, cl)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A bidirectional call the server never ends by itself.
	s, err := srv.OpenStream(ctx, "grpc", []filter.Pair{
		{Key: ":method", Value: "POST"}, {Key: ":path", Value: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"},
		{Key: ":authority", Value: "grpc"}, {Key: "content-type", Value: "application/grpc"}, {Key: "te", Value: "trailers"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msg, _ := proto.Marshal(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"}})
	if err := s.Write(append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...)); err != nil {
		t.Fatal(err)
	}
	// No CloseWrite: the request stays open.
	if _, err := s.Response(); err != nil {
		t.Fatal(err)
	}
	var head [5]byte
	if _, err := io.ReadFull(s, head[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, make([]byte, binary.BigEndian.Uint32(head[1:]))); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(head[:])
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Read after cancel returned no error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Read still blocked 30s after the stream's context was cancelled")
	}
	if err := s.Write([]byte{0}); err == nil {
		t.Error("Write after cancel succeeded")
	}
}
