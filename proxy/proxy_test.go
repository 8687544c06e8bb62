package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
)

// nativeFilter is a Go filter driven by hooks, to exercise the chain the
// way a Wasm filter does (pause, buffer, local reply, async continue).
type nativeFilter struct {
	filter.StreamFilter
	cb    filter.Callbacks
	hooks *hooks
}

type hooks struct {
	decodeHeaders func(cb filter.Callbacks, h *filter.HeaderMap, end bool) filter.HeadersStatus
	decodeData    func(cb filter.Callbacks, b *filter.Buffer, end bool) filter.DataStatus
	encodeHeaders func(cb filter.Callbacks, h *filter.HeaderMap, end bool) filter.HeadersStatus
	mu            sync.Mutex
	log           []string
}

func (h *hooks) record(s string) {
	h.mu.Lock()
	h.log = append(h.log, s)
	h.mu.Unlock()
}

func (h *hooks) events() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.log...)
}

func (f *nativeFilter) DecodeHeaders(h *filter.HeaderMap, end bool) filter.HeadersStatus {
	f.hooks.record("decodeHeaders")
	if f.hooks.decodeHeaders != nil {
		return f.hooks.decodeHeaders(f.cb, h, end)
	}
	return filter.HeadersContinue
}

func (f *nativeFilter) DecodeData(b *filter.Buffer, end bool) filter.DataStatus {
	f.hooks.record(fmt.Sprintf("decodeData(%d,%v)", b.Len(), end))
	if f.hooks.decodeData != nil {
		return f.hooks.decodeData(f.cb, b, end)
	}
	return filter.DataContinue
}

func (f *nativeFilter) DecodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	f.hooks.record("decodeTrailers")
	return filter.TrailersContinue
}

func (f *nativeFilter) EncodeHeaders(h *filter.HeaderMap, end bool) filter.HeadersStatus {
	f.hooks.record("encodeHeaders")
	if f.hooks.encodeHeaders != nil {
		return f.hooks.encodeHeaders(f.cb, h, end)
	}
	return filter.HeadersContinue
}

func (f *nativeFilter) EncodeData(b *filter.Buffer, end bool) filter.DataStatus {
	f.hooks.record(fmt.Sprintf("encodeData(%d,%v)", b.Len(), end))
	return filter.DataContinue
}

func (f *nativeFilter) EncodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	f.hooks.record("encodeTrailers")
	return filter.TrailersContinue
}

func (f *nativeFilter) OnLog()     { f.hooks.record("log") }
func (f *nativeFilter) OnDestroy() { f.hooks.record("destroy") }

type nativeFactory struct{ hooks *hooks }

func (n nativeFactory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &nativeFilter{cb: cb, hooks: n.hooks}
}

// loader hands out native filters by filter name.
type loader map[string]*hooks

func (l loader) LoadHTTPFilter(_ context.Context, _ string, f *config.HTTPFilter) (filter.Factory, error) {
	h, ok := l[f.Name]
	if !ok {
		return nil, fmt.Errorf("no test filter %q", f.Name)
	}
	return nativeFactory{h}, nil
}

// upstream is a real HTTP server standing in for a service.
func upstream(t testing.TB, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

type fixture struct {
	srv  *Server
	addr string
	st   *stats.Store
}

// start runs a proxy for one listener with the given routes and filters
// in front of the given clusters.
func start(t *testing.T, routes []*config.Route, filters []string, l loader, clusters ...*config.Cluster) *fixture {
	t.Helper()
	return startWith(t, routes, filters, l, nil, clusters...)
}

// startWith is start with a hook to adjust the listener before the
// proxy starts.
func startWith(t *testing.T, routes []*config.Route, filters []string, l loader, adjust func(*config.Listener), clusters ...*config.Cluster) *fixture {
	t.Helper()
	hf := []*config.HTTPFilter{}
	for _, name := range filters {
		hf = append(hf, &config.HTTPFilter{Name: name})
	}
	hf = append(hf, &config.HTTPFilter{Name: "envoy.filters.http.router", Router: true})
	cfg := &config.Bootstrap{
		Listeners: []*config.Listener{{
			Name: "main", Address: "127.0.0.1:0", PerConnectionBufferLimitBytes: 1 << 20,
			FilterChains: []*config.FilterChain{{HTTP: &config.HTTPConnectionManager{
				StatPrefix: "ingress_http", Codec: config.CodecAuto, MaxRequestHeadersKB: 60,
				Routes: &config.RouteConfig{Name: "local", VirtualHosts: []*config.VirtualHost{
					{Name: "vh", Domains: []string{"*"}, Routes: routes},
				}},
				Filters: hf,
			}}},
		}},
		Clusters: clusters,
	}
	if adjust != nil {
		adjust(cfg.Listeners[0])
	}
	st := stats.New()
	srv, err := New(context.Background(), cfg, Options{Logs: logging.NewRegistry(io.Discard, logging.LevelInfo), Stats: st, Loader: l})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return &fixture{srv: srv, addr: srv.Addr("main"), st: st}
}

func staticCluster(name string, addrs ...string) *config.Cluster {
	c := &config.Cluster{Name: name, Type: config.ClusterStatic, LBPolicy: config.LBRoundRobin, ConnectTimeout: config.Duration(time.Second)}
	for _, a := range addrs {
		c.Endpoints = append(c.Endpoints, config.Endpoint{Address: a})
	}
	return c
}

func prefixRoute(prefix, cluster string) *config.Route {
	return &config.Route{Match: config.RouteMatch{Prefix: prefix, CaseSensitive: true}, Cluster: cluster, Timeout: config.Duration(15 * time.Second)}
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestProxyBasics(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Path", r.URL.RequestURI())
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Proto", r.Header.Get("X-Forwarded-Proto"))
		w.Header().Set("Server", "upstream")
		fmt.Fprint(w, "hello from the server\n")
	})
	bad := &config.Route{Match: config.RouteMatch{Prefix: "/missing-cluster", CaseSensitive: true}, Cluster: "empty", Timeout: config.Duration(time.Second)}
	routes := []*config.Route{
		{Match: config.RouteMatch{Path: "/direct", CaseSensitive: true}, DirectResponse: &config.DirectResponse{Status: 201, Body: []byte("made here")}},
		{Match: config.RouteMatch{Prefix: "/api/", CaseSensitive: true}, Cluster: "web", PrefixRewrite: "/v2/", Timeout: config.Duration(time.Second)},
		{Match: config.RouteMatch{SafeRegex: &config.Regexp{Regexp: regexp.MustCompile(`/re/[0-9]+`)}, CaseSensitive: true}, DirectResponse: &config.DirectResponse{Status: 200, Body: []byte("regex")}},
		{Match: config.RouteMatch{Prefix: "/hdr", CaseSensitive: true, Headers: []config.HeaderMatcher{{Name: "x-mode", StringMatcher: config.StringMatcher{Exact: ptr("blue")}}}}, DirectResponse: &config.DirectResponse{Status: 200, Body: []byte("blue")}},
		{Match: config.RouteMatch{Prefix: "/refused", CaseSensitive: true}, Cluster: "refused", Timeout: config.Duration(time.Second)},
		bad,
		prefixRoute("/ok", "web"),
	}
	refused := refusedAddr(t)
	f := start(t, routes, nil, nil, staticCluster("web", up), staticCluster("empty"), staticCluster("refused", refused))
	base := "http://" + f.addr

	tests := []struct {
		name       string
		method     string
		path       string
		header     map[string]string
		wantStatus int
		wantBody   string
		wantHeader map[string]string
	}{
		{"proxied", "GET", "/ok/x?q=1", nil, 200, "hello from the server\n", map[string]string{"X-Seen-Path": "/ok/x?q=1", "Server": "wasmproxy", "X-Seen-Proto": "http"}},
		{"prefix rewrite", "GET", "/api/items", nil, 200, "hello from the server\n", map[string]string{"X-Seen-Path": "/v2/items"}},
		{"direct response", "GET", "/direct", nil, 201, "made here", map[string]string{"Content-Type": "text/plain", "Content-Length": "9"}},
		{"regex route", "GET", "/re/42", nil, 200, "regex", nil},
		{"regex must match whole path", "GET", "/re/42x", nil, 404, "", nil},
		{"header route", "GET", "/hdr", map[string]string{"X-Mode": "blue"}, 200, "blue", nil},
		{"header route mismatch", "GET", "/hdr", map[string]string{"X-Mode": "red"}, 404, "", nil},
		{"no route", "GET", "/nothing", nil, 404, "", nil},
		{"no healthy upstream", "GET", "/missing-cluster", nil, 503, "no healthy upstream", nil},
		{"connection refused", "GET", "/refused", nil, 503, "upstream connect error or disconnect/reset before headers. reset reason: connection failure", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, base+tc.path, nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, body := do(t, req)
			if resp.StatusCode != tc.wantStatus || body != tc.wantBody {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
			for k, v := range tc.wantHeader {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if resp.Header.Get("Date") == "" {
				t.Error("no date header")
			}
			if resp.Header.Get("Server") != "wasmproxy" {
				t.Errorf("server = %q", resp.Header.Get("Server"))
			}
		})
	}
	resp, _ := do(t, mustReq("GET", base+"/ok", nil))
	if resp.Header.Get("X-Envoy-Upstream-Service-Time") == "" {
		t.Error("proxied response lacks x-envoy-upstream-service-time")
	}
	if got := f.st.Counter("http.ingress_http.downstream_rq_4xx").Value(); got < 3 {
		t.Errorf("downstream_rq_4xx = %d, want >= 3", got)
	}
	if got := f.st.Counter("cluster.web.upstream_rq_200").Value(); got < 2 {
		t.Errorf("cluster.web.upstream_rq_200 = %d", got)
	}
}

func TestRouteTimeout(t *testing.T) {
	release := make(chan struct{})
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	route := prefixRoute("/", "slow")
	route.Timeout = config.Duration(150 * time.Millisecond)
	f := start(t, []*config.Route{route}, nil, nil, staticCluster("slow", up))
	resp, body := do(t, mustReq("GET", "http://"+f.addr+"/", nil))
	if resp.StatusCode != 504 || body != "upstream request timeout" {
		t.Fatalf("got %d %q, want 504 upstream request timeout", resp.StatusCode, body)
	}
	if f.st.Counter("cluster.slow.upstream_rq_timeout").Value() != 1 {
		t.Error("upstream_rq_timeout not counted")
	}
}

// A filter that pauses on body until the end sees the whole body, however
// many chunks the client sent.
func TestBufferedBodyAcrossChunks(t *testing.T) {
	var gotUpstream string
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotUpstream = string(b)
		fmt.Fprint(w, "ok")
	})
	var seen []int
	h := &hooks{decodeData: func(cb filter.Callbacks, b *filter.Buffer, end bool) filter.DataStatus {
		seen = append(seen, b.Len())
		if !end {
			return filter.DataStopIterationAndBuffer
		}
		if !bytes.Equal(b.Bytes, []byte("part1-part2-part3")) {
			cb.SendLocalReply(403, []byte("bad body "+string(b.Bytes)), nil, "test")
			return filter.DataStopIterationNoBuffer
		}
		return filter.DataContinue
	}}
	f := start(t, []*config.Route{prefixRoute("/", "web")}, []string{"buf"}, loader{"buf": h}, staticCluster("web", up))
	pr, pw := io.Pipe()
	go func() {
		for _, part := range []string{"part1-", "part2-", "part3"} {
			pw.Write([]byte(part))
			time.Sleep(20 * time.Millisecond)
		}
		pw.Close()
	}()
	resp, body := do(t, mustReq("POST", "http://"+f.addr+"/", pr))
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if gotUpstream != "part1-part2-part3" {
		t.Errorf("upstream got %q", gotUpstream)
	}
	if len(seen) < 2 || seen[len(seen)-1] != 17 {
		t.Errorf("filter saw buffered sizes %v, want growing to 17", seen)
	}
}

func TestLocalReplyFromBodyAndHeaders(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "upstream") })
	h := &hooks{
		decodeHeaders: func(cb filter.Callbacks, h *filter.HeaderMap, end bool) filter.HeadersStatus {
			if v, _ := h.Get("x-deny"); v != "" {
				cb.SendLocalReply(403, []byte("denied"), []filter.Pair{{Key: "x-why", Value: v}}, "denied")
				return filter.HeadersStopIteration
			}
			return filter.HeadersContinue
		},
		decodeData: func(cb filter.Callbacks, b *filter.Buffer, end bool) filter.DataStatus {
			if !end {
				return filter.DataStopIterationAndBuffer
			}
			if string(b.Bytes) == "bad" {
				cb.SendLocalReply(403, []byte("invalid payload"), nil, "invalid")
				return filter.DataStopIterationAndBuffer
			}
			return filter.DataContinue
		},
		encodeHeaders: func(cb filter.Callbacks, h *filter.HeaderMap, end bool) filter.HeadersStatus {
			h.Add("resp-header-demo", "added by our filter")
			return filter.HeadersContinue
		},
	}
	f := start(t, []*config.Route{prefixRoute("/", "web")}, []string{"f"}, loader{"f": h}, staticCluster("web", up))
	base := "http://" + f.addr + "/"

	req := mustReq("GET", base, nil)
	req.Header.Set("X-Deny", "because")
	resp, body := do(t, req)
	if resp.StatusCode != 403 || body != "denied" || resp.Header.Get("X-Why") != "because" {
		t.Fatalf("headers local reply: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if resp.Header.Get("Resp-Header-Demo") != "added by our filter" {
		t.Error("local reply did not pass through the response filter")
	}
	if resp.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("content-type = %q", resp.Header.Get("Content-Type"))
	}

	resp, body = do(t, mustReq("POST", base, strings.NewReader("bad")))
	if resp.StatusCode != 403 || body != "invalid payload" {
		t.Fatalf("body local reply: %d %q", resp.StatusCode, body)
	}
	resp, body = do(t, mustReq("POST", base, strings.NewReader("good")))
	if resp.StatusCode != 200 || body != "upstream" || resp.Header.Get("Resp-Header-Demo") == "" {
		t.Fatalf("pass: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	ev := h.events()
	if ev[len(ev)-2] != "log" || ev[len(ev)-1] != "destroy" {
		t.Errorf("stream did not end with log, destroy: %v", ev)
	}
}

// A filter can hold the headers and resume later from another goroutine
// (what a plugin does after an http_call answer).
func TestAsyncContinue(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %s", b)
	})
	h := &hooks{decodeHeaders: func(cb filter.Callbacks, h *filter.HeaderMap, end bool) filter.HeadersStatus {
		go func() {
			time.Sleep(30 * time.Millisecond)
			cb.Continue(filter.Request)
		}()
		return filter.HeadersStopAllIterationAndWatermark
	}}
	f := start(t, []*config.Route{prefixRoute("/", "web")}, []string{"f"}, loader{"f": h}, staticCluster("web", up))
	resp, body := do(t, mustReq("POST", "http://"+f.addr+"/", strings.NewReader("payload")))
	if resp.StatusCode != 200 || body != "got payload" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	// The filter that stopped all iteration sees the held body when it
	// continues, as in Envoy.
	found := false
	for _, e := range h.events() {
		if e == "decodeData(7,true)" {
			found = true
		}
	}
	if !found {
		t.Errorf("held body not delivered to the filter: %v", h.events())
	}
}

func TestBufferLimit413(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	h := &hooks{decodeData: func(cb filter.Callbacks, b *filter.Buffer, end bool) filter.DataStatus {
		return filter.DataStopIterationAndBuffer
	}}
	f := start(t, []*config.Route{prefixRoute("/", "web")}, []string{"f"}, loader{"f": h}, staticCluster("web", up))
	resp, body := do(t, mustReq("POST", "http://"+f.addr+"/", bytes.NewReader(make([]byte, 2<<20))))
	if resp.StatusCode != 413 || body != "Payload Too Large" {
		t.Fatalf("got %d %q, want 413", resp.StatusCode, body)
	}
	if f.st.Counter("http.ingress_http.downstream_rq_too_large").Value() != 1 {
		t.Error("downstream_rq_too_large not counted")
	}
}

func TestH2CPriorKnowledge(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "h2 ok") })
	f := start(t, []*config.Route{prefixRoute("/", "web")}, nil, nil, staticCluster("web", up))
	client := &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	resp, err := client.Post("http://"+f.addr+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(b) != "h2 ok" {
		t.Fatalf("got %s %d %q", resp.Proto, resp.StatusCode, b)
	}
}

func TestStreamingResponseAndTrailers(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "chunk%d;", i)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Checksum", "abc")
	})
	f := start(t, []*config.Route{prefixRoute("/", "web")}, nil, nil, staticCluster("web", up))
	resp, body := do(t, mustReq("GET", "http://"+f.addr+"/", nil))
	if body != "chunk0;chunk1;chunk2;" {
		t.Fatalf("body %q", body)
	}
	if resp.Trailer.Get("X-Checksum") != "abc" {
		t.Errorf("trailer = %v", resp.Trailer)
	}
}

func ptr[T any](v T) *T { return &v }

func mustReq(method, url string, body io.Reader) *http.Request {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		panic(err)
	}
	return req
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestUpstreamConnectionsActive: cluster.<name>.upstream_cx_active counts
// the pool's open upstream connections, as Envoy's gauge does: one while
// a kept-alive connection idles in the pool, none once the upstream has
// closed it.
func TestUpstreamConnectionsActive(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(srv.Close)
	f := start(t, []*config.Route{prefixRoute("/", "web")}, nil, loader{}, staticCluster("web", strings.TrimPrefix(srv.URL, "http://")))
	active := f.st.Gauge("cluster.web.upstream_cx_active")
	for i := 0; i < 3; i++ {
		do(t, mustReq("GET", "http://"+f.addr+"/", nil))
	}
	if got, total := active.Value(), f.st.Counter("cluster.web.upstream_cx_total").Value(); got != 1 || total != 1 {
		t.Fatalf("after 3 sequential requests: upstream_cx_active = %d, upstream_cx_total = %d; want 1 and 1", got, total)
	}
	srv.CloseClientConnections()
	deadline := time.Now().Add(30 * time.Second)
	for active.Value() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := active.Value(); got != 0 {
		t.Errorf("after the upstream closed its connections: upstream_cx_active = %d, want 0", got)
	}
}
