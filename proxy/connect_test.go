package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"golang.org/x/net/http2"
)

// upgradeTypes is the listener adjustment of the connection manager's
// upgrade_configs enabling these types (lower-cased, as the model has
// them).
func upgradeTypes(types ...string) func(*config.Listener) {
	return func(l *config.Listener) { l.FilterChains[0].HTTP.UpgradeTypes = types }
}

// connectRoute is a route with match {connect_matcher: {}} to cluster,
// with these upgrade_configs.
func connectRoute(cluster string, cc *config.ConnectConfig, ups ...config.RouteUpgrade) *config.Route {
	return &config.Route{Match: config.RouteMatch{Connect: true, CaseSensitive: true}, Cluster: cluster, Timeout: config.Duration(15 * time.Second), ConnectConfig: cc, Upgrades: ups}
}

// echoServer is a raw TCP server that writes back what it reads, on
// every connection, until the client closes.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	return ln.Addr().String()
}

// connectProxyServer is a real HTTP CONNECT proxy (the upstream of a
// proxied CONNECT): it dials the request's authority, answers 200, and
// relays both ways. targets receives each CONNECT's authority.
func connectProxyServer(t *testing.T, targets chan<- string) string {
	t.Helper()
	return upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		targets <- r.Host
		dst, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer dst.Close()
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
			return
		}
		done := make(chan struct{})
		go func() {
			_, _ = io.Copy(c, dst)
			_ = c.Close()
			close(done)
		}()
		_, _ = io.Copy(dst, brw.Reader)
		_ = dst.Close()
		<-done
	})
}

// TestConnectThroughProxy: Go's HTTP client, with the proxy as its HTTP
// proxy, reaches a real TLS server through a CONNECT tunnel: the TLS
// handshake and two requests on the tunnel's one connection pass end to
// end. Terminated (the route's connect_config), the proxy itself
// connects to the cluster's endpoint, the TLS server; proxied (no
// connect_config), the cluster is a real CONNECT proxy that receives
// the CONNECT for the TLS server's authority.
func TestConnectThroughProxy(t *testing.T) {
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %s %s", r.Method, r.URL.Path)
	}))
	t.Cleanup(tlsSrv.Close)
	tlsAddr := strings.TrimPrefix(tlsSrv.URL, "https://")
	targets := make(chan string, 4)
	cp := connectProxyServer(t, targets)

	for _, tc := range []struct {
		name  string
		route *config.Route
		// cluster's endpoint
		endpoint string
		// the CONNECT reached the upstream CONNECT proxy
		proxied bool
	}{
		{"terminated", connectRoute("c", &config.ConnectConfig{}), tlsAddr, false},
		{"proxied", connectRoute("c", nil), cp, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &hooks{}
			f := startWith(t, []*config.Route{tc.route, prefixRoute("/", "c")}, []string{"f"}, loader{"f": h}, upgradeTypes(config.UpgradeConnect), staticCluster("c", tc.endpoint))
			proxyURL, _ := url.Parse("http://" + f.addr)
			tr := tlsSrv.Client().Transport.(*http.Transport).Clone()
			tr.Proxy = http.ProxyURL(proxyURL)
			client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			defer tr.CloseIdleConnections()
			for i, path := range []string{"/one", "/two"} {
				resp, err := client.Get(tlsSrv.URL + path)
				if err != nil {
					t.Fatalf("request %d through the CONNECT tunnel: %v", i, err)
				}
				b, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(b) != "tls GET "+path {
					t.Fatalf("request %d: %d %q %v", i, resp.StatusCode, b, err)
				}
			}
			if tc.proxied {
				select {
				case got := <-targets:
					if got != tlsAddr {
						t.Fatalf("upstream CONNECT proxy got CONNECT %q, want %q", got, tlsAddr)
					}
				default:
					t.Fatal("the CONNECT did not reach the upstream CONNECT proxy")
				}
			}
			select {
			case got := <-targets:
				t.Fatalf("unexpected CONNECT %q upstream", got)
			default:
			}
			// The CONNECT ran through the HTTP filter chain.
			if ev := strings.Join(h.events(), ","); !strings.Contains(ev, "decodeHeaders") {
				t.Fatalf("filter events %q: the CONNECT did not run through the filters", ev)
			}
		})
	}
}

// TestConnectTerminatedRaw: a terminated CONNECT written by hand gets
// Envoy's bare 200 (no framing fields), after which the bytes reach a
// raw TCP echo server and come back, both before and after a large
// write, and the client's close ends the tunnel.
func TestConnectTerminatedRaw(t *testing.T) {
	echo := echoServer(t)
	f := startWith(t, []*config.Route{connectRoute("echo", &config.ConnectConfig{})}, nil, loader{}, upgradeTypes(config.UpgradeConnect), staticCluster("echo", echo))
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	// Bytes sent right behind the head go through the tunnel too.
	if _, err := io.WriteString(c, "CONNECT echo.example:7 HTTP/1.1\r\nHost: echo.example:7\r\n\r\nearly"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	for _, k := range []string{"Content-Length", "Transfer-Encoding", "Connection"} {
		if v := resp.Header.Get(k); v != "" {
			t.Fatalf("200 to CONNECT has %s: %q", k, v)
		}
	}
	// The open tunnel is an active upgrade, as in Envoy's stats.
	if n := f.st.Counter("http.ingress_http.downstream_cx_upgrades_total").Value(); n != 1 {
		t.Fatalf("downstream_cx_upgrades_total %d, want 1", n)
	}
	if g := f.st.Gauge("http.ingress_http.downstream_cx_upgrades_active").Value(); g != 1 {
		t.Fatalf("downstream_cx_upgrades_active %d during the tunnel, want 1", g)
	}
	big := strings.Repeat("0123456789", 50000)
	for _, msg := range []string{"", " and more", big} {
		if msg != "" {
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatal(err)
			}
		}
		want := msg
		if msg == "" {
			want = "early"
		}
		got := make([]byte, len(want))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
			t.Fatalf("echo of %.20q: %.20q, %v", want, got, err)
		}
	}
	// The client's write side closing ends the tunnel: the proxy
	// closes the connection.
	_ = c.(*net.TCPConn).CloseWrite()
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the client's close: %d bytes, %v; want EOF", n, err)
	}
	// The gauge drops once the tunnel is torn down (after the close
	// the client saw).
	for deadline := time.Now().Add(30 * time.Second); f.st.Gauge("http.ingress_http.downstream_cx_upgrades_active").Value() != 0; {
		if time.Now().After(deadline) {
			t.Fatal("downstream_cx_upgrades_active did not drop to 0 after the tunnel ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUpgradeConfigsByRoute: whether a request's upgrade is allowed is
// decided as on Envoy: its route's RouteAction.upgrade_configs entry
// for the type, else the connection manager's upgrade_configs. A
// refused one gets 403; a CONNECT matches only a connect_matcher route
// (else 404); a terminated CONNECT whose endpoint refuses gets 503, as
// does a proxied CONNECT to an HTTP/2 cluster (not supported yet); a
// terminated one opens its TCP connection whatever the cluster speaks.
func TestUpgradeConfigsByRoute(t *testing.T) {
	ws := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			fmt.Fprint(w, "no upgrade")
			return
		}
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	})
	echo := echoServer(t)
	refused := refusedAddr(t)
	wsOn := config.RouteUpgrade{Type: "websocket", Enabled: true}
	wsOff := config.RouteUpgrade{Type: "websocket", Enabled: false}
	connectOn := config.RouteUpgrade{Type: config.UpgradeConnect, Enabled: true}
	connectOff := config.RouteUpgrade{Type: config.UpgradeConnect, Enabled: false}
	withUpgrades := func(r *config.Route, ups ...config.RouteUpgrade) *config.Route {
		r.Upgrades = ups
		return r
	}
	const (
		wsReq      = "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n"
		connectReq = "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n"
	)
	for _, tc := range []struct {
		name   string
		hcm    []string
		routes []*config.Route
		req    string
		want   string
	}{
		{"websocket enabled by the route alone", nil, []*config.Route{withUpgrades(prefixRoute("/", "ws"), wsOn)}, wsReq, "HTTP/1.1 101 Switching Protocols"},
		{"websocket disabled by the route", []string{"websocket"}, []*config.Route{withUpgrades(prefixRoute("/ws", "ws"), wsOff), prefixRoute("/", "ws")}, wsReq, "HTTP/1.1 403 Forbidden"},
		{"websocket on another route of the same HCM", []string{"websocket"}, []*config.Route{withUpgrades(prefixRoute("/other", "ws"), wsOff), prefixRoute("/", "ws")}, wsReq, "HTTP/1.1 101 Switching Protocols"},
		{"websocket not enabled anywhere", nil, []*config.Route{withUpgrades(prefixRoute("/", "ws"), connectOn)}, wsReq, "HTTP/1.1 403 Forbidden"},
		{"CONNECT not enabled", nil, []*config.Route{connectRoute("echo", &config.ConnectConfig{})}, connectReq, "HTTP/1.1 403 Forbidden"},
		{"CONNECT enabled by the route alone", nil, []*config.Route{connectRoute("echo", &config.ConnectConfig{}, connectOn)}, connectReq, "HTTP/1.1 200 OK"},
		{"CONNECT disabled by the route", []string{config.UpgradeConnect}, []*config.Route{connectRoute("echo", &config.ConnectConfig{}, connectOff)}, connectReq, "HTTP/1.1 403 Forbidden"},
		{"CONNECT matches no prefix route", []string{config.UpgradeConnect}, []*config.Route{prefixRoute("/", "echo")}, connectReq, "HTTP/1.1 404 Not Found"},
		{"GET does not match connect_matcher", []string{config.UpgradeConnect}, []*config.Route{connectRoute("echo", &config.ConnectConfig{})}, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 404 Not Found"},
		{"terminated CONNECT, endpoint refuses", []string{config.UpgradeConnect}, []*config.Route{connectRoute("refused", &config.ConnectConfig{})}, connectReq, "HTTP/1.1 503 Service Unavailable"},
		{"CONNECT to an HTTP/2 cluster", []string{config.UpgradeConnect}, []*config.Route{connectRoute("h2", nil)}, connectReq, "HTTP/1.1 503 Service Unavailable"},
		{"terminated CONNECT to an HTTP/2 cluster", []string{config.UpgradeConnect}, []*config.Route{connectRoute("h2", &config.ConnectConfig{})}, connectReq, "HTTP/1.1 200 OK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h2 := staticCluster("h2", echo)
			h2.HTTP2 = true
			f := startWith(t, tc.routes, nil, loader{}, upgradeTypes(tc.hcm...), staticCluster("ws", ws), staticCluster("echo", echo), staticCluster("refused", refused), h2)
			if got := rawExchange(t, f.addr, tc.req); got != tc.want {
				t.Fatalf("status line %q, want %q", got, tc.want)
			}
			// Envoy's count of refused upgrades.
			refusedWant := uint64(0)
			if tc.want == "HTTP/1.1 403 Forbidden" {
				refusedWant = 1
			}
			if n := f.st.Counter("http.ingress_http.downstream_rq_ws_on_non_ws_route").Value(); n != refusedWant {
				t.Fatalf("downstream_rq_ws_on_non_ws_route %d, want %d", n, refusedWant)
			}
		})
	}
}

// TestConnectHTTP2: an HTTP/2 CONNECT (golang.org/x/net/http2's client
// over h2c: :method CONNECT and :authority, no :path) is routed by
// connect_matcher and tunnelled: terminated to a raw TCP echo server,
// or proxied to a real CONNECT proxy that reaches the echo server; the
// tunnel's DATA frames echo back both ways. Without CONNECT enabled the
// answer is 403.
func TestConnectHTTP2(t *testing.T) {
	echo := echoServer(t)
	targets := make(chan string, 4)
	cp := connectProxyServer(t, targets)
	for _, tc := range []struct {
		name     string
		hcm      []string
		route    *config.Route
		endpoint string
		status   int
	}{
		{"terminated", []string{config.UpgradeConnect}, connectRoute("c", &config.ConnectConfig{}), echo, 200},
		{"proxied", []string{config.UpgradeConnect}, connectRoute("c", nil), cp, 200},
		{"not enabled", nil, connectRoute("c", &config.ConnectConfig{}), echo, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startWith(t, []*config.Route{tc.route}, nil, loader{}, upgradeTypes(tc.hcm...), staticCluster("c", tc.endpoint))
			tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			}}
			defer tr.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			pr, pw := io.Pipe()
			defer pw.Close()
			req := (&http.Request{Method: http.MethodConnect, URL: &url.URL{Scheme: "http", Host: f.addr}, Host: echo, Header: http.Header{}, Body: pr}).WithContext(ctx)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != 200 {
				return
			}
			for _, msg := range []string{"hello", strings.Repeat("abcdefgh", 40000)} {
				go func() { _, _ = io.WriteString(pw, msg) }()
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != msg {
					t.Fatalf("echo of %.20q: %.20q, %v", msg, got, err)
				}
			}
			// The client ending its side ends the tunnel.
			_ = pw.Close()
			if b, err := io.ReadAll(resp.Body); len(b) != 0 {
				t.Fatalf("after the client's end: %q, %v", b, err)
			}
			if tc.endpoint == cp {
				if got := <-targets; got != echo {
					t.Fatalf("upstream CONNECT proxy got CONNECT %q, want %q", got, echo)
				}
			}
		})
	}
}

// TestConnectTerminatedOwnConnection: a terminated CONNECT to a cluster
// whose endpoint is an HTTP server gets a connection of its own, not
// the one a plain request left idle in the pool: the server sees a
// second connection, and an HTTP request written into the tunnel is
// answered on it.
func TestConnectTerminatedOwnConnection(t *testing.T) {
	conns := make(chan struct{}, 8)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "http %s", r.URL.Path)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns <- struct{}{}
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	f := startWith(t, []*config.Route{connectRoute("web", &config.ConnectConfig{}), prefixRoute("/", "web")}, nil, loader{}, upgradeTypes(config.UpgradeConnect), staticCluster("web", addr))
	resp, body := do(t, mustRequest(t, "GET", "http://"+f.addr+"/plain"))
	if resp.StatusCode != 200 || body != "http /plain" {
		t.Fatalf("plain request: %d %q", resp.StatusCode, body)
	}
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(c, "CONNECT web:80 HTTP/1.1\r\nHost: web:80\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err = http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	if _, err := io.WriteString(c, "GET /tunnelled HTTP/1.1\r\nHost: web\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	if err != nil || string(b) != "http /tunnelled" {
		t.Fatalf("request in the tunnel: %q %v", b, err)
	}
	if n := len(conns); n != 2 {
		t.Fatalf("the endpoint saw %d connections, want 2 (the pooled one and the tunnel's)", n)
	}
}

// TestConnectAnswerChangedByFilter: a response filter that turns the
// tunnel's 200 into another status answers the client with it (the
// upstream connection is dropped, no tunnel opens) instead of cutting
// the connection without a word.
func TestConnectAnswerChangedByFilter(t *testing.T) {
	echo := echoServer(t)
	h := &hooks{encodeHeaders: func(_ filter.Callbacks, m *filter.HeaderMap, _ bool) filter.HeadersStatus {
		m.Set(":status", "403")
		return filter.HeadersContinue
	}}
	f := startWith(t, []*config.Route{connectRoute("echo", &config.ConnectConfig{})}, []string{"f"}, loader{"f": h}, upgradeTypes(config.UpgradeConnect), staticCluster("echo", echo))
	if got := rawExchange(t, f.addr, "CONNECT h:7 HTTP/1.1\r\nHost: h:7\r\n\r\n"); got != "HTTP/1.1 403 Forbidden" {
		t.Fatalf("status line %q, want the filter's 403", got)
	}
}

// TestConnectRefusedClosesConnection: a CONNECT answered without a
// tunnel (403: CONNECT not enabled) ends the connection after the
// answer, so bytes the client sent behind its head (here a would-be
// TLS record) are never read as a request.
func TestConnectRefusedClosesConnection(t *testing.T) {
	echo := echoServer(t)
	f := startWith(t, []*config.Route{connectRoute("echo", &config.ConnectConfig{})}, nil, loader{}, upgradeTypes(), staticCluster("echo", echo))
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(c, "CONNECT h:7 HTTP/1.1\r\nHost: h:7\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403", resp.StatusCode)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(br); len(rest) != 0 || err != nil {
		t.Fatalf("after the 403: %q, %v; want the connection closed", rest, err)
	}
}
