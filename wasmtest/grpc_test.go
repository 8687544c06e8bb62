package wasmtest_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/wasmtest"
)

// The gRPC test plugin is e2e's: it calls grpc.health.v1.Health on
// cluster "grpc" (path /call/<service>: unary Check; /watch/<service>: a
// Watch stream) and writes what it saw into a request header.
func grpcPlugin(t *testing.T) string {
	t.Helper()
	return wasmtest.Build(t, "../e2e/testdata/grpcsdk")
}

// healthRequest is grpc.health.v1.HealthCheckRequest{service}.
func healthRequest(service string) []byte {
	return append([]byte{0x0a, byte(len(service))}, service...)
}

var (
	serving    = []byte{0x08, 0x01}
	notServing = []byte{0x08, 0x02}
)

// upstreamHeader runs one request through the plugin, waits for the
// plugin to resume it, and returns header key as the upstream got it.
func upstreamHeader(t *testing.T, p *wasmtest.Plugin, path, key string) string {
	t.Helper()
	s := p.NewHTTPStream()
	s.SendRequestHeaders(wasmtest.Request("GET", path), true).ExpectPause()
	s.AwaitResumed(true)
	h := s.Upstream().Headers
	if h == nil {
		t.Fatalf("the request never reached the upstream: %s", strings.Join(s.Trace(), "\n"))
	}
	v, _ := h.Get(key)
	s.Complete()
	return v
}

// TestGrpcUnary: a unary call reaches the test's handler with the
// plugin's service, method, metadata, timeout and message; the handler's
// answer, or its error status, reaches the plugin's callback.
func TestGrpcUnary(t *testing.T) {
	wasm := grpcPlugin(t)
	t.Run("answer", func(t *testing.T) {
		var got *wasmtest.GrpcCall
		var msg []byte
		p := wasmtest.Load(t, wasm, wasmtest.GrpcCluster("grpc", func(call *wasmtest.GrpcCall) {
			got = call
			msg, _ = call.Recv()
			if _, more := call.Recv(); more {
				t.Errorf("a unary call carried a second message")
			}
			call.Send(serving)
		}))
		if r := upstreamHeader(t, p, "/call/db", "x-grpc-result"); r != "OK SERVING" {
			t.Errorf("plugin saw %q, want OK SERVING", r)
		}
		if got == nil || got.Service != "grpc.health.v1.Health" || got.Method != "Check" || got.Timeout != 5*time.Second {
			t.Fatalf("call = %+v", got)
		}
		if v, _ := got.Metadata.Get("x-caller"); v != "wasm" {
			t.Errorf("metadata x-caller = %q", v)
		}
		if !bytes.Equal(msg, healthRequest("db")) {
			t.Errorf("request message %x, want %x", msg, healthRequest("db"))
		}
		if n := len(p.GrpcCalls()); n != 1 {
			t.Errorf("GrpcCalls() has %d calls", n)
		}
	})
	t.Run("error status", func(t *testing.T) {
		p := wasmtest.Load(t, wasm, wasmtest.GrpcCluster("grpc", func(call *wasmtest.GrpcCall) {
			call.Finish(5, "no such service", nil)
		}))
		if r := upstreamHeader(t, p, "/call/nope", "x-grpc-result"); !strings.Contains(r, `5 "no such service"`) {
			t.Errorf("plugin saw %q, want status 5 and its message", r)
		}
	})
	t.Run("handler panics", func(t *testing.T) {
		p := wasmtest.Load(t, wasm, wasmtest.GrpcCluster("grpc", func(call *wasmtest.GrpcCall) { panic("boom") }))
		if r := upstreamHeader(t, p, "/call/x", "x-grpc-result"); !strings.Contains(r, "13") || !strings.Contains(r, "panicked: boom") {
			t.Errorf("plugin saw %q, want INTERNAL (13) naming the panic", r)
		}
	})
	t.Run("undeclared cluster", func(t *testing.T) {
		p := wasmtest.Load(t, wasm)
		s := p.NewHTTPStream()
		s.SendRequestHeaders(wasmtest.Request("GET", "/call/x"), true)
		s.ExpectLocalResponse(500, "dispatch failed: bad argument")
		s.Complete()
	})
}

// TestGrpcStream: a server-streaming call delivers initial metadata,
// each message, trailing metadata and the close, in order; the plugin's
// half-close ends the handler's Recv.
func TestGrpcStream(t *testing.T) {
	p := wasmtest.Load(t, grpcPlugin(t), wasmtest.GrpcCluster("grpc", func(call *wasmtest.GrpcCall) {
		if msg, ok := call.Recv(); !ok || !bytes.Equal(msg, healthRequest("db")) {
			t.Errorf("first message %x %v", msg, ok)
		}
		if _, ok := call.Recv(); ok {
			t.Errorf("Recv after the plugin's half-close returned a message")
		}
		call.SendHeader(wasmtest.Headers{{Key: "x-watch", Value: "1"}})
		call.Send(serving)
		call.Send(notServing)
		call.Finish(0, "", wasmtest.Headers{{Key: "x-trailer", Value: "t"}})
	}))
	events := upstreamHeader(t, p, "/watch/db", "x-grpc-events")
	want := "send-after-close(bad argument);initial(x-watch=1 <nil>);message(SERVING <nil>);message(NOT_SERVING <nil>);trailing(x-trailer=t <nil>);close(OK )"
	if events != want {
		t.Errorf("events:\n got %s\nwant %s", events, want)
	}
	select {
	case <-p.GrpcCalls()[0].Done():
	case <-time.After(30 * time.Second):
		t.Error("the call is not done after its close reached the plugin")
	}
}
