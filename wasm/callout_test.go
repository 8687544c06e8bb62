package wasm

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
)

// testUpstreams is a small filter.Upstreams over net/http for the wasm
// package's tests (the proxy's own implementation is tested through the
// proxy): cluster name → address, HTTP/2 cleartext when h2.
type testUpstreams struct {
	clusters map[string]string
	h2       map[string]bool
}

func (u *testUpstreams) HasCluster(name string) bool { _, ok := u.clusters[name]; return ok }

func (u *testUpstreams) transport(cluster string) http.RoundTripper {
	if u.h2[cluster] {
		return &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, n, a)
		}}
	}
	return &http.Transport{}
}

func (u *testUpstreams) request(ctx context.Context, cluster string, headers []filter.Pair, body io.Reader) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+u.clusters[cluster], body)
	for _, p := range headers {
		switch p.Key {
		case ":method":
			req.Method = p.Value
		case ":path":
			req.URL.Opaque = p.Value
		case ":authority":
			req.Host = p.Value
		case ":scheme", "content-length":
		default:
			req.Header.Add(p.Key, p.Value)
		}
	}
	return req
}

func (u *testUpstreams) HTTPCall(ctx context.Context, cluster string, headers []filter.Pair, body []byte, trailers []filter.Pair) (*filter.CalloutResponse, error) {
	req := u.request(ctx, cluster, headers, strings.NewReader(string(body)))
	req.ContentLength = int64(len(body))
	resp, err := u.transport(cluster).RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := &filter.CalloutResponse{Headers: []filter.Pair{{Key: ":status", Value: strconv.Itoa(resp.StatusCode)}}, Body: data}
	for k, vs := range resp.Header {
		out.Headers = append(out.Headers, filter.Pair{Key: strings.ToLower(k), Value: vs[0]})
	}
	for k, vs := range resp.Trailer {
		for _, v := range vs {
			out.Trailers = append(out.Trailers, filter.Pair{Key: strings.ToLower(k), Value: v})
		}
	}
	return out, nil
}

type testStream struct {
	pw    *io.PipeWriter
	ready chan struct{}
	resp  *http.Response
	err   error
}

func (u *testUpstreams) OpenStream(ctx context.Context, cluster string, headers []filter.Pair) (filter.UpstreamStream, error) {
	pr, pw := io.Pipe()
	req := u.request(ctx, cluster, headers, pr)
	req.ContentLength = -1
	s := &testStream{pw: pw, ready: make(chan struct{})}
	go func() {
		s.resp, s.err = u.transport(cluster).RoundTrip(req)
		close(s.ready)
	}()
	return s, nil
}

func (s *testStream) Write(p []byte) error { _, err := s.pw.Write(p); return err }
func (s *testStream) CloseWrite() error    { return s.pw.Close() }
func (s *testStream) Response() ([]filter.Pair, error) {
	<-s.ready
	if s.err != nil {
		return nil, s.err
	}
	out := []filter.Pair{{Key: ":status", Value: strconv.Itoa(s.resp.StatusCode)}}
	for k, vs := range s.resp.Header {
		out = append(out, filter.Pair{Key: strings.ToLower(k), Value: vs[0]})
	}
	return out, nil
}
func (s *testStream) Read(p []byte) (int, error) {
	<-s.ready
	if s.err != nil {
		return 0, s.err
	}
	return s.resp.Body.Read(p)
}
func (s *testStream) Trailers() []filter.Pair {
	var out []filter.Pair
	for k, vs := range s.resp.Trailer {
		for _, v := range vs {
			out = append(out, filter.Pair{Key: strings.ToLower(k), Value: v})
		}
	}
	return out
}
func (s *testStream) Close() { s.pw.CloseWithError(errors.New("cancelled")) }

func calloutPlugin(t *testing.T, mode string) *config.WasmPlugin {
	return &config.WasmPlugin{Name: "callouts", CodeFile: buildPlugin(t, "callouts"), PluginConfiguration: []byte(mode)}
}

const calloutPrefix = "wasm log callouts: "

// waitLogs waits until the plugin logged every line of want in order.
func waitLogs(t *testing.T, h *testHost, prefix string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := h.logs.pluginLogs(prefix)
		i := 0
		for _, g := range got {
			if i < len(want) && g == want[i] {
				i++
			}
		}
		if i == len(want) {
			return
		}
		if time.Now().After(deadline) {
			requireLogs(t, got, want...)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHTTPCall(t *testing.T) {
	var mu sync.Mutex
	var seen []*http.Request
	var bodies []string
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r)
		bodies = append(bodies, string(b))
		mu.Unlock()
		w.Header().Set("Trailer", "X-Resp-Trailer")
		if r.URL.Path == "/deny" {
			w.WriteHeader(401)
			io.WriteString(w, "nope")
			return
		}
		io.WriteString(w, "user-1")
		w.Header().Set("X-Resp-Trailer", "tv")
	}))
	defer auth.Close()
	h := newTestHost(t, 1)
	h.SetUpstreams(&testUpstreams{clusters: map[string]string{"auth": auth.Listener.Addr().String(), "dead": "127.0.0.1:1"}})
	p := h.load(t, calloutPlugin(t, "http_call"))

	// Allowed: the stream pauses, the reply arrives on the root context,
	// the plugin switches to the stream, adds a header and continues.
	s := newStream(p)
	if st := s.decodeHeaders(true, ":path", "/allow", ":method", "GET"); st != filter.HeadersStopAllIterationAndWatermark {
		t.Fatalf("DecodeHeaders = %v, want a pause", st)
	}
	waitFor(t, "continue", func() bool { s.cb.mu.Lock(); defer s.cb.mu.Unlock(); return len(s.cb.continued) == 1 })
	if v, _ := s.cb.reqHeaders.Get("x-auth"); v != "user-1" {
		t.Errorf("x-auth = %q, want user-1", v)
	}
	waitLogs(t, h, calloutPrefix, "http_call 0", "token_low_bits 0",
		"http_response root=1 headers=3 body=6 trailers=1", "status 0 ",
		"response 200 user-1 trailer=tv", "request_body_in_callout 1", "effective 0",
		"after_switch 200", "add_header 0", "continue 0")
	s.finish()

	mu.Lock()
	r := seen[0]
	if r.Method != "POST" || r.URL.Path != "/allow" || r.Host != "auth.local" || r.Header.Get("X-From") != "plugin" ||
		r.ContentLength != 5 || bodies[0] != "hello" {
		t.Errorf("callout request: %s %s host=%s x-from=%q len=%d body=%q", r.Method, r.URL.Path, r.Host, r.Header.Get("X-From"), r.ContentLength, bodies[0])
	}
	mu.Unlock()

	// Denied: answered with a local reply from the callout.
	s = newStream(p)
	s.decodeHeaders(true, ":path", "/deny", ":method", "GET")
	waitFor(t, "local reply", func() bool { s.cb.mu.Lock(); defer s.cb.mu.Unlock(); return len(s.cb.replies) == 1 })
	if rp := s.cb.replies[0]; rp.status != 403 || rp.body != "denied: nope" || rp.details != "auth_denied" {
		t.Errorf("reply = %+v", rp)
	}
	s.finish()

	// A failed call: on_http_call_response with no headers, status 11.
	s = newStream(p)
	s.decodeHeaders(true, ":path", "/x", ":method", "GET", "x-cluster", "dead")
	waitLogs(t, h, calloutPrefix, "http_response root=1 headers=0 body=0 trailers=0", "status 11 reset")
	s.finish()
}

func TestHTTPCallBadArguments(t *testing.T) {
	h := newTestHost(t, 1)
	h.SetUpstreams(&testUpstreams{clusters: map[string]string{"auth": "127.0.0.1:1"}})
	p := h.load(t, calloutPlugin(t, "http_call_bad"))
	s := newStream(p)
	s.decodeHeaders(true, ":path", "/")
	s.finish()
	requireLogs(t, h.logs.pluginLogs(calloutPrefix), "no_path 2", "no_method 2", "no_authority 2",
		"host_as_authority 0", "unknown_cluster 2")
}

func TestHTTPCallFromTick(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tick-ok") }))
	defer srv.Close()
	h := newTestHost(t, 1)
	h.SetUpstreams(&testUpstreams{clusters: map[string]string{"auth": srv.Listener.Addr().String()}})
	h.load(t, calloutPlugin(t, "tick_call"))
	waitLogs(t, h, calloutPrefix, "http_call 0", "http_response root=1 headers=4 body=7 trailers=0", "response 200 tick-ok trailer=")
}

// healthServer answers grpc.health.v1.Health: Check "ok" → SERVING,
// "unknown" → NOT_FOUND, "slow" waits; Watch streams one status.
type healthServer struct {
	healthpb.UnimplementedHealthServer
	md chan []string
}

func (s *healthServer) Check(ctx context.Context, r *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	switch r.Service {
	case "unknown":
		return nil, grpcstatus.Error(codes.NotFound, "unknown service")
	case "slow":
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (s *healthServer) Watch(r *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	if err := stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func TestGrpcCallouts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, &healthServer{})
	_ = health.NewServer
	go gs.Serve(ln)
	defer gs.Stop()

	h := newTestHost(t, 1)
	h.SetUpstreams(&testUpstreams{clusters: map[string]string{"grpc": ln.Addr().String()}, h2: map[string]bool{"grpc": true}})
	p := h.load(t, calloutPlugin(t, "grpc"))

	run := func(what string, wantResult string) {
		t.Helper()
		s := newStream(p)
		s.decodeHeaders(true, ":path", "/", "x-grpc", what, "x-grpc-upstream", "grpc")
		waitFor(t, what+" continue", func() bool { s.cb.mu.Lock(); defer s.cb.mu.Unlock(); return len(s.cb.continued) == 1 })
		if v, _ := s.cb.reqHeaders.Get("x-grpc-result"); v != wantResult {
			t.Errorf("%s: x-grpc-result = %q, want %q", what, v, wantResult)
		}
		s.finish()
	}
	run("call", "grpc_0")
	// A unary call's success is one proxy_on_grpc_receive, no metadata
	// callbacks and no proxy_on_grpc_close (Envoy's async request).
	waitLogs(t, h, calloutPrefix, "grpc_call 0", "grpc_token_bits 1", "grpc_send_on_call 2", "grpc_receive 0801")
	for _, l := range h.logs.pluginLogs(calloutPrefix) {
		if strings.Contains(l, "grpc_initial_metadata") || strings.Contains(l, "grpc_trailing_metadata") || strings.Contains(l, "grpc_close 0") {
			t.Errorf("unary call got an extra callback: %s", l)
		}
	}
	run("unknown", "grpc_5")
	waitLogs(t, h, calloutPrefix, "grpc_close 5 5 unknown service")
	run("stream", "stream_done")
	waitLogs(t, h, calloutPrefix, "grpc_stream 0", "grpc_token_bits 2", "grpc_send 0", "grpc_send_after_end 2",
		"grpc_receive 0801", "grpc_stream_cancel 0")

	s := newStream(p)
	s.decodeHeaders(true, ":path", "/", "x-grpc", "cancel", "x-grpc-upstream", "grpc")
	s.finish()
	requireLogs(t, h.logs.pluginLogs(calloutPrefix), "grpc_cancel 0", "grpc_cancel_again 1", "grpc_close_unknown 1", "grpc_cancel_http_token 2")

	s = newStream(p)
	s.decodeHeaders(true, ":path", "/", "x-grpc", "bad", "x-grpc-upstream", "grpc")
	s.finish()
	requireLogs(t, h.logs.pluginLogs(calloutPrefix), "grpc_unknown_cluster 2", "grpc_send_unknown 1", "grpc_send_not_stream 2")

	// A serialized GrpcService naming the cluster works like the name.
	svc := []byte{0x0a, 0x06, 0x0a, 0x04, 'g', 'r', 'p', 'c'} // envoy_grpc{cluster_name: "grpc"}
	s = newStream(p)
	s.decodeHeaders(true, ":path", "/", "x-grpc", "call", "x-grpc-upstream", string(svc))
	waitFor(t, "grpc service continue", func() bool { s.cb.mu.Lock(); defer s.cb.mu.Unlock(); return len(s.cb.continued) == 1 })
	s.finish()
}

func TestSharedQueue(t *testing.T) {
	h := newTestHost(t, 2)
	p := h.load(t, calloutPlugin(t, "queue"))
	// Both instances register "q": the same id; the last registrant gets
	// the notifications.
	requireLogs(t, h.logs.pluginLogs(calloutPrefix), "register 0", "same_id true", "register 0", "same_id true")
	for i := 0; i < 2; i++ {
		s := newStream(p)
		s.decodeHeaders(true, ":path", "/")
		s.finish()
	}
	requireLogs(t, h.logs.pluginLogs(calloutPrefix), "resolve 0", "resolve_missing 1", "resolve_other_vm 1",
		"enqueue 0", "enqueue_missing 1", "dequeue_missing 1")
	waitLogs(t, h, calloutPrefix, "queue_ready 1 true 0 item-2", "dequeue_empty 7")
}

func TestForeignFunctionsAndSetProperty(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, calloutPlugin(t, "foreign"))
	s := newStream(p)
	s.decodeHeaders(true, ":path", "/")
	s.finish()
	requireLogs(t, h.logs.pluginLogs(calloutPrefix),
		"compress 0", "compressed_smaller true", "uncompress 0", "roundtrip true", "uncompress_bad 3",
		"unknown_function 1", "clear_route_cache 0", "declare 0", "declare_again 2",
		"set_ro 0", "set_ro_again 2", "get_ro 0 v1", "set_rw 0", "set_rw_again 0", "get_rw 0 b",
		"get_filter_state 0 b", "set_envoy_filter_state 0", "get_envoy_filter_state 0 fsv", "discard_result 0")
	if v, ok := s.cb.info.FilterState.Get("wasm.my.prop"); !ok || string(v) != "b" {
		t.Errorf("filter state wasm.my.prop = %q, %v", v, ok)
	}
}

func TestCalloutHostilePointers(t *testing.T) {
	h := newTestHost(t, 1)
	h.SetUpstreams(&testUpstreams{clusters: map[string]string{"auth": "127.0.0.1:1", "grpc": "127.0.0.1:1"}})
	p := h.load(t, calloutPlugin(t, "hostile"))
	s := newStream(p)
	s.decodeHeaders(true, ":path", "/")
	s.finish()
	got := map[string]string{}
	for _, l := range h.logs.pluginLogs(calloutPrefix) {
		if i := strings.LastIndexByte(l, ' '); i > 0 {
			got[l[:i]] = l[i+1:]
		}
	}
	want := map[string]string{
		"http_call_upstream": "6", "http_call_headers": "6", "http_call_body": "6", "http_call_trailers": "6",
		"http_call_token": "6", "get_status": "6", "grpc_call": "6", "grpc_call_msg": "6", "grpc_call_token": "6",
		"grpc_stream": "6", "grpc_send": "6", "register_queue": "6", "register_queue_out": "6",
		"resolve_queue": "6", "enqueue": "6", "dequeue_out": "6", "foreign_name": "6", "foreign_args": "6",
		"foreign_out": "6", "set_property_path": "6", "set_property_value": "6", "resolve_dns": "6",
		"map_type_8": "2", "map_type_6_outside": "0", "buffer_type_9": "2", "buffer_type_4_outside": "1",
		"set_map_6_outside": "2",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("hostile %s = %q, want %q", k, got[k], v)
		}
	}
	if p.currentInstances()[0].broken.Load() {
		t.Error("hostile calls broke the instance")
	}
}

func TestResolveDNS(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, calloutPlugin(t, "dns"))
	s := newStream(p)
	s.decodeHeaders(true, ":path", "/")
	s.finish()
	waitLogs(t, h, calloutPrefix, "resolve_dns 0", "dns 1 true")
}

// TestRootDoneDeferred: proxy_on_done returning false keeps the root
// context until the plugin calls proxy_done (from a tick here).
func TestRootDoneDeferred(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, calloutPlugin(t, "done"))
	waitLogs(t, h, calloutPrefix, "tick_done 1")
	done := make(chan struct{})
	go func() { p.Close(context.Background()); close(done) }()
	<-done
	requireLogs(t, h.logs.pluginLogs(calloutPrefix), "done 1", "delete 1")
}

// TestVMSharing: plugins with the same VM key share instances, each with
// its own root context chosen by root_id; a different vm_id gets its own
// VM.
func TestVMSharing(t *testing.T) {
	h := newTestHost(t, 1)
	a := calloutPlugin(t, "foreign")
	a.Name, a.RootID = "a", "root_a"
	b := calloutPlugin(t, "queue")
	b.Name, b.RootID = "b", "root_b"
	c := calloutPlugin(t, "foreign")
	c.Name, c.VMID = "c", "other"
	pa, pb, pc := h.load(t, a), h.load(t, b), h.load(t, c)
	if pa.vm != pb.vm || pa.vm == pc.vm {
		t.Fatalf("VM sharing: a==b %v, a==c %v", pa.vm == pb.vm, pa.vm == pc.vm)
	}
	requireLogs(t, h.logs.pluginLogs("wasm log a root_a: "), "configure 1 foreign root_id=root_a")
	requireLogs(t, h.logs.pluginLogs("wasm log b root_b: "), "configure 2 queue root_id=root_b")
	requireLogs(t, h.logs.pluginLogs("wasm log c other: "), "configure 1 foreign root_id=")
	if g := h.stats.Gauge("wasm." + defaultRuntime + ".active").Value(); g != 2 {
		t.Errorf("active VMs = %d, want 2", g)
	}
	// Closing one sharer keeps the VM for the other.
	pa.Close(context.Background())
	s := newStream(pb)
	s.decodeHeaders(true, ":path", "/")
	s.finish()
	requireLogs(t, h.logs.pluginLogs("wasm log b root_b: "), "enqueue 0")
}

// TestVMSharingLimits: a plugin that joins another's VM with other
// limits is told that the VM's apply.
func TestVMSharingLimits(t *testing.T) {
	h := newTestHost(t, 1)
	a := calloutPlugin(t, "foreign")
	a.Name, a.RootID = "a", "root_a"
	b := calloutPlugin(t, "foreign")
	b.Name, b.RootID = "b", "root_b"
	b.EnvKeyValues = map[string]string{EnvCallDeadline: "5", EnvMemoryLimit: "64"}
	pa, pb := h.load(t, a), h.load(t, b)
	if pa.vm != pb.vm {
		t.Fatal("a and b do not share their VM")
	}
	want := `wasm: plugin b: shares a VM with plugin a (same vm_id, configuration and code), whose limits apply (call deadline 100ms, start deadline 10s, memory 256 MiB); its own (call deadline 5ms, start deadline 10s, memory 64 MiB) are ignored: give it another vm_id to run under them`
	if !strings.Contains(h.logs.text(), want) {
		t.Errorf("logs lack %q:\n%s", want, h.logs.text())
	}
}

func TestTraceHostCalls(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, calloutPlugin(t, "foreign"))
	s := newStream(p)
	s.decodeHeaders(true, ":path", "/")
	s.finish()
	text := h.logs.text()
	for _, want := range []string{"[vm->host] env.proxy_call_foreign_function(", "[vm<-host] env.proxy_call_foreign_function return: 1", "[vm->host] wasi_snapshot_preview1."} {
		if !strings.Contains(text, want) && !strings.Contains(text, strings.ReplaceAll(want, "wasi_snapshot_preview1.", "")) {
			t.Errorf("trace log lacks %q", want)
		}
	}
	// The level is read on every host call: changing it at run time (the
	// admin's /logging) turns the lines off and on again.
	for _, tc := range []struct {
		level slog.Level
		more  bool
	}{{logging.LevelInfo, false}, {logging.LevelTrace, true}} {
		if err := h.Host.logs.SetLevel("wasm", tc.level); err != nil {
			t.Fatal(err)
		}
		before := strings.Count(h.logs.text(), "[vm->host] env.proxy_call_foreign_function(")
		s := newStream(p)
		s.decodeHeaders(true, ":path", "/")
		s.finish()
		after := strings.Count(h.logs.text(), "[vm->host] env.proxy_call_foreign_function(")
		if (after > before) != tc.more {
			t.Errorf("at level %v: %d host call lines before a stream, %d after", tc.level, before, after)
		}
	}
}

func TestCapabilityRestriction(t *testing.T) {
	h := newTestHost(t, 1)
	cfg := calloutPlugin(t, "foreign")
	cfg.AllowedCapabilities = []string{"proxy_on_configure", "proxy_on_request_headers", "proxy_log", "proxy_get_buffer_bytes", "proxy_on_memory_allocate",
		// What the Go runtime needs to start.
		"args_sizes_get", "args_get", "environ_sizes_get", "environ_get", "clock_time_get", "random_get", "fd_write",
		"proc_exit", "sched_yield", "poll_oneoff", "fd_close", "fd_fdstat_get", "fd_fdstat_set_flags", "fd_prestat_get", "fd_prestat_dir_name"}
	p := h.load(t, cfg)
	s := newStream(p)
	s.decodeHeaders(true, ":path", "/")
	s.finish()
	requireLogs(t, h.logs.pluginLogs(calloutPrefix), "compress 10", "unknown_function 10")
	if !strings.Contains(h.logs.text(), "Attempted call to restricted proxy-wasm capability: env.proxy_call_foreign_function") {
		t.Error("restricted call not logged")
	}
}
