package conformance

// The raw-ABI areas: what only the C and Rust plugins implement, because
// they import host functions directly (conformance/README.md, "The
// raw-ABI areas"). Each area is asserted through the real binary.

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
)

// rawAreas run after allAreas for the C and Rust plugins; "lifecycle"
// stops the proxy, so it comes last.
var rawAreas = []string{"trailers", "setpairs", "status", "closestream", "grpc", "foreignmore", "dns", "misc", "tcp", "lifecycle"} // lifecycle stops the proxy: last

// rustRawAreas are the raw-ABI areas the Rust plugin implements too.
var rustRawAreas = []string{"trailers", "setpairs", "closestream", "dns", "misc", "tcp", "lifecycle"}

func init() {
	areaChecks["trailers"] = checkTrailers
	areaChecks["setpairs"] = checkSetPairs
	areaChecks["status"] = checkStatus
	areaChecks["closestream"] = checkCloseStream
	areaChecks["grpc"] = checkGrpc
	areaChecks["foreignmore"] = checkForeignMore
	areaChecks["dns"] = checkDNS
	areaChecks["misc"] = checkMisc
	areaChecks["lifecycle"] = checkLifecycle
	areaChecks["tcp"] = checkTCP
}

// checkTCP: the plugin as a network filter ahead of tcp_proxy (Envoy's
// envoy.filters.network.wasm) reads the client's data, prepends to it,
// appends to what the upstream sends back, and sees the connection open
// and close on both sides.
func checkTCP(t *testing.T, p *proxy, pl *plugin) {
	c, err := net.DialTimeout("tcp", pl.tcpAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading: %v (got %q)", err, b)
	}
	got, marker := string(b), "[<"+pl.lang+"]"
	// The echo may come back in several chunks; each gets the marker.
	if !strings.HasSuffix(got, marker) || strings.ReplaceAll(got, marker, "") != "["+pl.lang+">]hello" {
		t.Errorf("client got %q, want %q with %q after each chunk", got, "["+pl.lang+">]hello", marker)
	}
	p.waitLog(t, "tcp new")
	p.waitLog(t, "tcp down", " 0 hello")
	p.waitLog(t, "tcp upstream close")
	p.waitLog(t, "tcp downstream close")
}

// healthServer is the grpc-go upstream of cluster "grpc": the standard
// health service, with a Watch that sends initial metadata, two messages,
// trailing metadata and ends with ABORTED.
type healthServer struct {
	healthpb.UnimplementedHealthServer
	mu      sync.Mutex
	callers []string // x-caller metadata of every call
}

func (s *healthServer) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.callers = append(s.callers, strings.Join(md.Get("x-caller"), ","))
	s.mu.Unlock()
}

func (s *healthServer) seen(caller string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.callers {
		if c == caller {
			n++
		}
	}
	return n
}

func (s *healthServer) Check(ctx context.Context, r *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	s.record(ctx)
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (s *healthServer) Watch(r *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	s.record(stream.Context())
	if err := stream.SendHeader(metadata.Pairs("x-watch", r.Service)); err != nil {
		return err
	}
	for _, st := range []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING} {
		if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
			return err
		}
	}
	stream.SetTrailer(metadata.Pairs("x-trailer", "bye"))
	return grpcstatus.Error(codes.Aborted, "watch over")
}

func startGrpcUpstream(t *testing.T) (*healthServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	h := &healthServer{}
	healthpb.RegisterHealthServer(gs, h)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return h, ln.Addr().String()
}

// checkTrailers: request trailers of a chunked request are read, sized
// and added to in proxy_on_request_trailers and reach the upstream; the
// upstream's response trailers are edited in proxy_on_response_trailers;
// trailers added from the response body callback at end of stream reach
// the client.
func checkTrailers(t *testing.T, p *proxy, pl *plugin) {
	req, err := http.NewRequest("POST", "http://"+pl.addr+"/trailers/x", io.MultiReader(strings.NewReader("hello")))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Conf-Req-Trailer": {"t1"}}
	resp, body := send(t, req)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	e := (&response{body: body}).echo(t)
	want(t, "upstream body", e.Body, "hello")
	tr := func(k string) string { return strings.Join(e.Trailers[k], ",") }
	// Map size: Envoy's byte size of names and values of the one trailer.
	want(t, "request trailers seen by the plugin", tr("x-conf-req-trailer")+" | "+tr("x-conf-trailer-seen"),
		"t1 | n=1 value=t1 size="+strconv.Itoa(len("x-conf-req-trailer")+len("t1")))
	want(t, "request trailer added", tr("x-conf-trailer-lang"), pl.lang)
	want(t, "response trailer replaced", resp.Trailer.Get("X-Upstream-Trailer"), "replaced-by-"+pl.lang)
	want(t, "response trailer added", resp.Trailer.Get("X-Conf-Resp-Trailer"), pl.lang)
	want(t, "num_trailers of proxy_on_response_trailers", resp.Trailer.Get("X-Conf-Resp-Trailer-N"), "1")

	r := do(t, pl, "GET", "/trailers-new", nil, nil)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	resp, body = send(t, mustRequest(t, "GET", "http://"+pl.addr+"/trailers-new"))
	want(t, "trailer created in on_response_body at end of stream", resp.Trailer.Get("X-Conf-Created-Trailer"), pl.lang)
	if !strings.HasSuffix(body, "["+pl.lang+" was here]\n") {
		t.Errorf("body %q lacks the appended tag", body)
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// send does one request on a fresh connection and reads the whole body
// (so resp.Trailer is filled in).
func send(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

// checkSetPairs: proxy_set_header_map_pairs replaces the whole request
// header map (one header dropped, one added, the rest kept).
func checkSetPairs(t *testing.T, p *proxy, pl *plugin) {
	h := http.Header{"X-Conf-Remove": {"gone"}, "X-Conf-Keep": {"kept"}}
	r := do(t, pl, "GET", "/setpairs", h, nil)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	e := r.echo(t)
	want(t, "status", e.header("x-conf-set-pairs-status"), "0")
	want(t, "added", e.header("x-conf-set-pairs"), pl.lang)
	want(t, "kept", e.header("x-conf-keep"), "kept")
	want(t, "path kept", e.Path, "/setpairs")
	if v, ok := e.Headers["x-conf-remove"]; ok {
		t.Errorf("x-conf-remove reached the upstream: %q", v)
	}
}

// checkStatus: proxy_get_status in proxy_on_http_call_response. As in
// Envoy, whose async client runs the router, a refused connection is an
// answer (the router's 503 local reply, status 0 ""); a reset after the
// upstream's headers is a failure: no headers, 11 (BROKEN_CONNECTION)
// "reset". After a successful call: 0 "".
func checkStatus(t *testing.T, p *proxy, pl *plugin) {
	e := do(t, pl, "GET", "/status", nil, nil).echo(t)
	want(t, "refused: :status, proxy_get_status", e.header("x-conf-callout-status")+" | "+e.header("x-conf-get-status"), "503 | 0")
	e = do(t, pl, "GET", "/status-reset", nil, nil).echo(t)
	want(t, "reset mid-body: headers, proxy_get_status", e.header("x-conf-callout-headers")+" | "+e.header("x-conf-get-status"), "0 | 11 reset")
	e = do(t, pl, "GET", "/callout", nil, nil).echo(t)
	want(t, "success: proxy_get_status", e.header("x-conf-get-status"), "0")
}

// checkCloseStream: proxy_close_stream(0) from on_request_headers resets
// the stream: the client gets no response, the upstream nothing.
func checkCloseStream(t *testing.T, p *proxy, pl *plugin) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 15 * time.Second}).Get("http://" + pl.addr + "/close")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Errorf("got a response (%d %q), want the stream reset", resp.StatusCode, b)
	}
	p.waitLog(t, logPrefix(pl), "close_stream 0")
	if got := p.upstream.requests("/close"); len(got) != 0 {
		t.Errorf("the upstream received %d /close requests", len(got))
	}
}

// checkGrpc: proxy_grpc_call and proxy_grpc_stream to the grpc-go health
// service over the HTTP/2 cluster "grpc", with every callback in order on
// the root context and the statuses of cancel, close and misuse.
func checkGrpc(t *testing.T, p *proxy, pl *plugin) {
	before := p.health.seen(pl.lang)
	e := do(t, pl, "GET", "/grpc-call", nil, nil).echo(t)
	if msg := e.header("x-conf-grpc-error"); msg != "" {
		t.Fatalf("proxy_grpc_call: %s", msg)
	}
	// HealthCheckResponse{status: SERVING} is 08 01.
	want(t, "call events", e.header("x-conf-grpc-events"), "message(0801);status(0 )")
	want(t, "call misc", e.header("x-conf-grpc-misc"), "call=0 low_bits=1 cancel=0 cancel_again=1 send_on_call=2 close_call=0")

	e = do(t, pl, "GET", "/grpc-stream", nil, nil).echo(t)
	if msg := e.header("x-conf-grpc-error"); msg != "" {
		t.Fatalf("proxy_grpc_stream: %s", msg)
	}
	// Initial metadata are the response headers (map 4), trailing
	// metadata the trailers with grpc-status and grpc-message (map 5);
	// num_elements counts every pair.
	events := sortedMetadata(e.header("x-conf-grpc-events"))
	events = strings.Replace(events, "initial(3 :status content-type", "initial(2 content-type", 1)
	want(t, "stream events", events,
		"low_bits=2 send=0 close=0 send_after_close=2 cancel=0;"+
			"initial(2 content-type x-watch=conf);message(0801);message(0802);trailing(3 grpc-message grpc-status x-trailer=bye);close(10 status=10 watch over)")
	// The calls that were cancelled at once may or may not have reached
	// grpc-go; the two answered ones did, with the plugin's metadata.
	if n := p.health.seen(pl.lang) - before; n < 2 {
		t.Errorf("grpc-go saw %d calls with x-caller %q, want at least 2", n, pl.lang)
	}
	if strings.Contains(p.Logs(), "grpc_close for unknown token") {
		t.Errorf("a callback arrived for a cancelled call:\n%s", p.Logs())
	}
}

// checkForeignMore: declare_property (read-only: set once, then
// BAD_ARGUMENT), set_envoy_filter_state read back as filter_state.<key>,
// clear_route_cache re-matching the route after a header edit.
func checkForeignMore(t *testing.T, p *proxy, pl *plugin) {
	e := do(t, pl, "GET", "/foreign-more", nil, nil).echo(t)
	want(t, "declare_property", e.header("x-conf-declare"), "0")
	want(t, "proxy_set_property on a read-only declared property, twice", e.header("x-conf-readonly"), "0 2")
	want(t, "read-only property value", e.header("x-conf-readonly-value"), "one")
	want(t, "set_envoy_filter_state", e.header("x-conf-filter-state-status"), "0")
	want(t, "filter_state.envoy.tcp_proxy.cluster", e.header("x-conf-filter-state"), "conf-"+pl.lang)
	want(t, "clear_route_cache", e.header("x-conf-clear-route-cache"), "0")
	want(t, "path after the route was matched again", e.Path, "/rerouted/foreign-more")
}

// checkDNS: envoy_resolve_dns("localhost") answers on the root context
// through envoy_on_resolve_dns with the addresses in buffer 8.
func checkDNS(t *testing.T, p *proxy, pl *plugin) {
	e := do(t, pl, "GET", "/dns", nil, nil).echo(t)
	if msg := e.header("x-conf-dns-error"); msg != "" {
		t.Fatalf("envoy_resolve_dns: %s", msg)
	}
	addrs := strings.Split(e.header("x-conf-dns"), ",")
	if !contains(addrs, "127.0.0.1") && !contains(addrs, "::1") {
		t.Errorf("localhost resolved to %q", addrs)
	}
}

// checkMisc: pthread_equal and emscripten_notify_memory_growth (the
// helpers Envoy links for emscripten modules); proxy_done from a stream is
// NOT_FOUND (only a root context whose on_done returned false waits for
// it); the metadata callbacks and proxy_on_foreign_function, exported,
// are never called (Envoy: METADATA frames exist only in HTTP/2, and no
// host-initiated foreign function exists).
func checkMisc(t *testing.T, p *proxy, pl *plugin) {
	e := do(t, pl, "GET", "/misc", nil, nil).echo(t)
	want(t, "pthread_equal(7,7) pthread_equal(7,8)", e.header("x-conf-pthread-equal"), "1 0")
	want(t, "proxy_done from a stream", e.header("x-conf-done-stream"), "1")
	if strings.Contains(p.Logs(), "unexpected on_") {
		t.Errorf("a callback no host calls for HTTP/1 was called:\n%s", p.Logs())
	}
}

// checkLifecycle: a stream's on_log, on_done and on_delete in that order;
// at shutdown each root context's on_done then on_delete.
func checkLifecycle(t *testing.T, p *proxy, pl *plugin) {
	path := "/lifecycle-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	do(t, pl, "GET", path, nil, nil)
	prefix := logPrefix(pl)
	p.waitLog(t, prefix+"delete "+path)
	logs := p.Logs()
	l, d, del := strings.Index(logs, prefix+"log "+path+" "), strings.Index(logs, prefix+"done "+path), strings.Index(logs, prefix+"delete "+path)
	if l < 0 || !(l < d && d < del) {
		t.Errorf("want log, done, delete in order (at %d, %d, %d):\n%s", l, d, del, logs)
	}
	p.stop()
	logs = p.Logs()
	for _, ev := range []string{"root_done", "root_delete"} {
		if n := strings.Count(logs, prefix+ev+" "); n != 2 {
			t.Errorf("%s logged %d times at shutdown, want 2 (one root context per instance):\n%s", ev, n, logs)
		}
	}
	if i, j := strings.Index(logs, prefix+"root_done"), strings.Index(logs, prefix+"root_delete"); i < 0 || j < i {
		t.Errorf("root_delete before root_done")
	}
}

var metadataEvent = regexp.MustCompile(`(initial|trailing)\((\d+)([^)]*)\)`)

// sortedMetadata sorts the keys the plugin listed for a metadata
// callback: their order is the map's, which the ABI leaves open.
func sortedMetadata(events string) string {
	return metadataEvent.ReplaceAllStringFunc(events, func(m string) string {
		g := metadataEvent.FindStringSubmatch(m)
		keys := strings.Fields(g[3])
		sort.Strings(keys)
		return g[1] + "(" + strings.Join(append([]string{g[2]}, keys...), " ") + ")"
	})
}

// TestABI010 runs c/abi010.c, a module declaring ABI 0.1.0: its
// 2-argument header callbacks are called, proxy_get_configuration gives
// the VM configuration in on_vm_start and the plugin configuration in
// on_configure, a missing header is OK with an empty value, and a request
// and response paused with StopIteration are resumed by
// proxy_continue_request and proxy_continue_response.
func TestABI010(t *testing.T) {
	wasm := cABI010Build.get(t, "c abi010", buildCABI010)
	pl := &plugin{name: "conformance-c-abi010", lang: "c010", wasm: wasm}
	p := startProxy(t, pl)
	r := do(t, pl, "GET", "/abi010", nil, nil)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	e := r.echo(t)
	want(t, "proxy_get_configuration in on_vm_start", e.header("x-conf-vm-config"), "0 "+pl.vmConfig())
	want(t, "proxy_get_configuration in on_configure", e.header("x-conf-config"), "0 "+pl.pluginConfig())
	want(t, "missing header (0.1.0: OK, empty)", e.header("x-conf-missing"), "0 0")
	want(t, "proxy_clear_route_cache", e.header("x-conf-clear-route-cache"), "0")
	want(t, "proxy_continue_request", e.header("x-conf-continue-request"), "0")
	if n, _ := strconv.Atoi(e.header("x-conf-num-headers")); n < 5 {
		t.Errorf("num_headers %q, want the request's header count", e.header("x-conf-num-headers"))
	}
	want(t, "response header", r.header.Get("X-Conf-Abi"), "0.1.0")
	want(t, "proxy_continue_response", r.header.Get("X-Conf-Continue-Response"), "0")
	_ = p
}
