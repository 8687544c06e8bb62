package proxy

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
)

// connWatcher counts the connections an httptest upstream accepted and
// signals each close.
type connWatcher struct {
	mu     sync.Mutex
	opened int
	closed chan struct{}
}

func newConnWatcher() *connWatcher { return &connWatcher{closed: make(chan struct{}, 64)} }

func (w *connWatcher) hook(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		w.mu.Lock()
		w.opened++
		w.mu.Unlock()
	case http.StateClosed, http.StateHijacked:
		w.closed <- struct{}{}
	}
}

func (w *connWatcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.opened
}

// waitClosed waits for the upstream to see n connection closes.
func (w *connWatcher) waitClosed(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-w.closed:
		case <-time.After(30 * time.Second):
			t.Fatalf("upstream saw %d of %d connection closes", i, n)
		}
	}
}

func durationPtr(d time.Duration) *config.Duration {
	v := config.Duration(d)
	return &v
}

// TestClusterConnectionLimits: a cluster's common_http_protocol_options
// bound its upstream HTTP/1.1 connections as Envoy's: a connection
// closes after max_requests_per_connection requests, idle_timeout after
// its last request, max_connection_duration after it opened, and a
// response with more than max_headers_count fields is a protocol error
// (503). The upstream is a real server that sees the connections.
func TestClusterConnectionLimits(t *testing.T) {
	newUpstream := func(t *testing.T, w *connWatcher) *httptest.Server {
		up := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			for i := 0; i < 6; i++ {
				rw.Header().Set(fmt.Sprintf("x-h%d", i), "v")
			}
			fmt.Fprint(rw, "ok")
		}))
		up.Config.ConnState = w.hook
		up.Start()
		t.Cleanup(up.Close)
		return up
	}
	get := func(t *testing.T, f *fixture) int {
		t.Helper()
		resp, body := do(t, mustReq("GET", "http://"+f.addr+"/", nil))
		if resp.StatusCode == 200 && body != "ok" {
			t.Fatalf("body %q", body)
		}
		return resp.StatusCode
	}
	t.Run("max_requests_per_connection", func(t *testing.T) {
		w := newConnWatcher()
		up := newUpstream(t, w)
		cl := staticCluster("up", up.Listener.Addr().String())
		cl.UpstreamHTTP = &config.UpstreamHTTP{MaxRequestsPerConnection: 2}
		f := start(t, []*config.Route{prefixRoute("/", "up")}, nil, loader{}, cl)
		for i := 0; i < 5; i++ {
			if code := get(t, f); code != 200 {
				t.Fatalf("request %d: %d", i, code)
			}
		}
		// Requests 1-2, 3-4 and 5 each had a connection of their own.
		if n := w.count(); n != 3 {
			t.Errorf("upstream saw %d connections for 5 requests, want 3", n)
		}
		w.waitClosed(t, 2)
		f.waitCounter(t, "cluster.up.upstream_cx_max_requests", 2)
	})
	t.Run("idle_timeout", func(t *testing.T) {
		w := newConnWatcher()
		up := newUpstream(t, w)
		cl := staticCluster("up", up.Listener.Addr().String())
		cl.UpstreamHTTP = &config.UpstreamHTTP{IdleTimeout: durationPtr(100 * time.Millisecond)}
		f := start(t, []*config.Route{prefixRoute("/", "up")}, nil, loader{}, cl)
		if code := get(t, f); code != 200 {
			t.Fatal(code)
		}
		w.waitClosed(t, 1) // the proxy closed it, idle
		f.waitCounter(t, "cluster.up.upstream_cx_idle_timeout", 1)
		f.waitCounter(t, "cluster.up.upstream_cx_destroy_local", 1)
		if code := get(t, f); code != 200 || w.count() != 2 {
			t.Fatalf("after the idle close: %d, %d connections", code, w.count())
		}
	})
	t.Run("idle_timeout 0 keeps the connection", func(t *testing.T) {
		w := newConnWatcher()
		up := newUpstream(t, w)
		cl := staticCluster("up", up.Listener.Addr().String())
		cl.UpstreamHTTP = &config.UpstreamHTTP{IdleTimeout: durationPtr(0), MaxConnectionDuration: config.Duration(time.Hour)}
		f := start(t, []*config.Route{prefixRoute("/", "up")}, nil, loader{}, cl)
		for i := 0; i < 3; i++ {
			if code := get(t, f); code != 200 {
				t.Fatal(code)
			}
		}
		if n := w.count(); n != 1 {
			t.Errorf("%d connections, want 1", n)
		}
	})
	t.Run("max_connection_duration", func(t *testing.T) {
		w := newConnWatcher()
		up := newUpstream(t, w)
		cl := staticCluster("up", up.Listener.Addr().String())
		cl.UpstreamHTTP = &config.UpstreamHTTP{MaxConnectionDuration: config.Duration(100 * time.Millisecond)}
		f := start(t, []*config.Route{prefixRoute("/", "up")}, nil, loader{}, cl)
		if code := get(t, f); code != 200 {
			t.Fatal(code)
		}
		w.waitClosed(t, 1)
		f.waitCounter(t, "cluster.up.upstream_cx_max_duration_reached", 1)
		if f.counter("cluster.up.upstream_cx_idle_timeout") != 0 {
			t.Error("counted as an idle timeout")
		}
	})
	t.Run("max_headers_count", func(t *testing.T) {
		w := newConnWatcher()
		up := newUpstream(t, w) // 6 x-h fields + content-length, content-type, date
		cl := staticCluster("up", up.Listener.Addr().String())
		cl.UpstreamHTTP = &config.UpstreamHTTP{MaxHeadersCount: 5}
		f := start(t, []*config.Route{prefixRoute("/", "up")}, nil, loader{}, cl)
		resp, body := do(t, mustReq("GET", "http://"+f.addr+"/", nil))
		if resp.StatusCode != 503 || !strings.Contains(body, "protocol error") {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		f.waitCounter(t, "cluster.up.upstream_cx_protocol_error", 1)

		roomy := staticCluster("roomy", up.Listener.Addr().String())
		roomy.UpstreamHTTP = &config.UpstreamHTTP{MaxHeadersCount: 20}
		g := start(t, []*config.Route{prefixRoute("/", "roomy")}, nil, loader{}, roomy)
		if code := get(t, g); code != 200 {
			t.Fatalf("20 allowed: %d", code)
		}
	})
}

// TestClusterAutoSNI: with auto_sni and auto_san_validation a TLS
// cluster sends each request's host (port removed) as SNI, checks the
// upstream's certificate against that host instead of the context's
// names, and does not share a connection between hosts: the upstream
// sees one handshake per host however many requests. A host the
// certificate does not name fails verification (503,
// ssl.fail_verify_san); override_auto_sni_header takes the name from a
// request header instead. A real TLS upstream picks its certificate by
// SNI.
func TestClusterAutoSNI(t *testing.T) {
	p := newPKI(t)
	var mu sync.Mutex
	handshakes := map[string]int{}
	srvCfg := &tls.Config{
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			mu.Lock()
			handshakes[h.ServerName]++
			mu.Unlock()
			if h.ServerName == "db.example.com" {
				return &p.db.TLS, nil
			}
			return &p.www.TLS, nil // anything else, no SNI included
		},
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "sni=%s", r.TLS.ServerName)
		}))
	}()
	seen := func(sni string) int {
		mu.Lock()
		defer mu.Unlock()
		return handshakes[sni]
	}
	cluster := func(name string, u *config.UpstreamHTTP) *config.Cluster {
		cl := staticCluster(name, ln.Addr().String())
		ds := inline(p.ca.CertPEM)
		// The context names neither host: only the auto_san_validation
		// override lets the handshakes pass.
		only := "nobody.example.com"
		cl.TLS = &config.UpstreamTLS{CommonTLS: config.CommonTLS{TrustedCA: &ds,
			MatchSANs: []config.SANMatcher{{Type: "DNS", Matcher: config.StringMatcher{Exact: &only}}}}}
		cl.UpstreamHTTP = u
		return cl
	}
	auto := cluster("auto", &config.UpstreamHTTP{AutoSNI: true, AutoSANValidation: true})
	f := start(t, []*config.Route{prefixRoute("/", "auto")}, nil, loader{}, auto)
	get := func(host string, hdr map[string]string) (int, string) {
		t.Helper()
		req := mustReq("GET", "http://"+f.addr+"/", nil)
		req.Host = host
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, body := do(t, req)
		return resp.StatusCode, body
	}
	for i := 0; i < 3; i++ {
		for _, host := range []string{"www.example.com:8443", "db.example.com"} {
			code, body := get(host, nil)
			want := "sni=" + strings.TrimSuffix(host, ":8443")
			if code != 200 || body != want {
				t.Fatalf("round %d, host %s: %d %q, want %q", i, host, code, body, want)
			}
		}
	}
	if seen("www.example.com") != 1 || seen("db.example.com") != 1 {
		t.Errorf("handshakes per SNI %v, want one each (connections pooled by SNI)", handshakes)
	}

	// The upstream answers an unknown name with www's certificate, which
	// does not name it.
	if code, body := get("api.example.com", nil); code != 503 {
		t.Errorf("api.example.com: %d %q, want 503", code, body)
	}
	f.waitCounter(t, "cluster.auto.ssl.fail_verify_san", 1)

	t.Run("override_auto_sni_header", func(t *testing.T) {
		o := cluster("override", &config.UpstreamHTTP{AutoSNI: true, AutoSANValidation: true, OverrideAutoSNIHeader: "x-upstream-name"})
		g := start(t, []*config.Route{prefixRoute("/", "override")}, nil, loader{}, o)
		req := mustReq("GET", "http://"+g.addr+"/", nil)
		req.Host = "www.example.com"
		req.Header.Set("x-upstream-name", "db.example.com:443")
		resp, body := do(t, req)
		if resp.StatusCode != 200 || body != "sni=db.example.com" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		req = mustReq("GET", "http://"+g.addr+"/", nil) // without the header: the host
		req.Host = "www.example.com"
		if resp, body := do(t, req); resp.StatusCode != 200 || body != "sni=www.example.com" {
			t.Fatalf("without the header: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("auto_sni alone keeps the context's SAN check", func(t *testing.T) {
		o := cluster("sni_only", &config.UpstreamHTTP{AutoSNI: true})
		g := start(t, []*config.Route{prefixRoute("/", "sni_only")}, nil, loader{}, o)
		req := mustReq("GET", "http://"+g.addr+"/", nil)
		req.Host = "www.example.com"
		if resp, _ := do(t, req); resp.StatusCode != 503 {
			t.Fatalf("got %d, want 503: the certificate does not name nobody.example.com", resp.StatusCode)
		}
		g.waitCounter(t, "cluster.sni_only.ssl.fail_verify_san", 1)
	})
	t.Run("an IP address is no SNI", func(t *testing.T) {
		before := seen("")
		req := mustReq("GET", "http://"+f.addr+"/", nil)
		req.Host = "127.0.0.1:8443"
		resp, body := do(t, req)
		// No SNI: the upstream's default (www) certificate, which does
		// not name 127.0.0.1.
		if resp.StatusCode != 503 {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		if seen("") != before+1 {
			t.Errorf("handshakes without SNI %d, want %d", seen(""), before+1)
		}
	})
}

// TestClusterAutoConfig: an auto_config cluster speaks what ALPN
// negotiates with each host: HTTP/2 with an upstream that offers h2,
// HTTP/1.1 with one that offers only http/1.1 or no ALPN at all, and
// keeps using the connection it made (one connection for several
// requests either way). Real TLS upstreams.
func TestClusterAutoConfig(t *testing.T) {
	p := newPKI(t)
	upstream := func(t *testing.T, alpn []string, w *connWatcher) string {
		up := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(rw, "%s alpn=%q", r.Proto, r.TLS.NegotiatedProtocol)
		}))
		up.EnableHTTP2 = true
		up.TLS = &tls.Config{Certificates: []tls.Certificate{p.www.TLS}, NextProtos: alpn}
		up.Config.ConnState = w.hook
		up.StartTLS()
		t.Cleanup(up.Close)
		return up.Listener.Addr().String()
	}
	autoCluster := func(name, addr string) *config.Cluster {
		cl := staticCluster(name, addr)
		ds := inline(p.ca.CertPEM)
		cl.TLS = &config.UpstreamTLS{SNI: "www.example.com", CommonTLS: config.CommonTLS{TrustedCA: &ds}}
		cl.AutoHTTP = true
		return cl
	}
	for _, tc := range []struct {
		name string
		alpn []string
		want string
	}{
		{"h2 offered", []string{"h2", "http/1.1"}, `HTTP/2.0 alpn="h2"`},
		{"http/1.1 only", []string{"http/1.1"}, `HTTP/1.1 alpn="http/1.1"`},
		{"no ALPN", []string{}, `HTTP/1.1 alpn=""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newConnWatcher()
			cl := autoCluster("auto", upstream(t, tc.alpn, w))
			f := start(t, []*config.Route{prefixRoute("/", "auto")}, nil, loader{}, cl)
			for i := 0; i < 3; i++ {
				resp, body := do(t, mustReq("GET", "http://"+f.addr+"/", nil))
				if resp.StatusCode != 200 || body != tc.want {
					t.Fatalf("request %d: %d %q, want %q", i, resp.StatusCode, body, tc.want)
				}
			}
			if n := w.count(); n != 1 {
				t.Errorf("upstream saw %d connections for 3 requests, want 1", n)
			}
		})
	}
}

// TestClusterAutoSNIMultiplexed: auto_sni and auto_san_validation on an
// HTTP/2 cluster and on an auto_config one (which ALPN makes HTTP/2 here):
// each host's requests go over a connection of its own SNI, one per host
// however many requests, never another host's. A real TLS upstream
// serving HTTP/2 picks its certificate by SNI.
func TestClusterAutoSNIMultiplexed(t *testing.T) {
	p := newPKI(t)
	var mu sync.Mutex
	handshakes := map[string]int{}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(rw, "%s sni=%s", r.Proto, r.TLS.ServerName)
	}))
	up.EnableHTTP2 = true
	up.TLS = &tls.Config{
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			mu.Lock()
			handshakes[h.ServerName]++
			mu.Unlock()
			if h.ServerName == "db.example.com" {
				return &p.db.TLS, nil
			}
			return &p.www.TLS, nil
		},
	}
	up.StartTLS()
	t.Cleanup(up.Close)
	counts := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range handshakes {
			out[k] = v
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		http2, auto bool
	}{{"http2", true, false}, {"auto_config", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			cl := staticCluster("c", up.Listener.Addr().String())
			ds := inline(p.ca.CertPEM)
			cl.TLS = &config.UpstreamTLS{CommonTLS: config.CommonTLS{TrustedCA: &ds}}
			cl.HTTP2, cl.AutoHTTP = tc.http2, tc.auto
			cl.UpstreamHTTP = &config.UpstreamHTTP{AutoSNI: true, AutoSANValidation: true}
			f := start(t, []*config.Route{prefixRoute("/", "c")}, nil, loader{}, cl)
			before := counts()
			for i := 0; i < 3; i++ {
				for _, host := range []string{"www.example.com", "db.example.com:443"} {
					req := mustReq("GET", "http://"+f.addr+"/", nil)
					req.Host = host
					resp, body := do(t, req)
					want := "HTTP/2.0 sni=" + strings.TrimSuffix(host, ":443")
					if resp.StatusCode != 200 || body != want {
						t.Fatalf("round %d, host %s: %d %q, want %q", i, host, resp.StatusCode, body, want)
					}
				}
			}
			after := counts()
			for _, sni := range []string{"www.example.com", "db.example.com"} {
				if n := after[sni] - before[sni]; n != 1 {
					t.Errorf("%d handshakes with SNI %s, want 1", n, sni)
				}
			}
			req := mustReq("GET", "http://"+f.addr+"/", nil)
			req.Host = "api.example.com" // answered with www's certificate
			if resp, body := do(t, req); resp.StatusCode != 503 {
				t.Errorf("api.example.com: %d %q, want 503", resp.StatusCode, body)
			}
			f.waitCounter(t, "cluster.c.ssl.fail_verify_san", 1)
		})
	}
}

// TestClusterHTTP2ConnectionLimits: on an HTTP/2 cluster,
// max_requests_per_connection and max_connection_duration drain a
// connection as Envoy does: it takes no new stream, and closes once its
// streams are done. The upstream is a real h2c server.
func TestClusterHTTP2ConnectionLimits(t *testing.T) {
	newUpstream := func(t *testing.T, w *connWatcher) string {
		up := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			fmt.Fprint(rw, r.Proto)
		}))
		up.Config.Protocols = new(http.Protocols)
		up.Config.Protocols.SetUnencryptedHTTP2(true)
		up.Config.ConnState = w.hook
		up.Start()
		t.Cleanup(up.Close)
		return up.Listener.Addr().String()
	}
	get := func(t *testing.T, f *fixture) {
		t.Helper()
		resp, body := do(t, mustReq("GET", "http://"+f.addr+"/", nil))
		if resp.StatusCode != 200 || body != "HTTP/2.0" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	}
	t.Run("max_requests_per_connection", func(t *testing.T) {
		w := newConnWatcher()
		cl := staticCluster("h2", newUpstream(t, w))
		cl.HTTP2 = true
		cl.UpstreamHTTP = &config.UpstreamHTTP{MaxRequestsPerConnection: 2}
		f := start(t, []*config.Route{prefixRoute("/", "h2")}, nil, loader{}, cl)
		for i := 0; i < 5; i++ {
			get(t, f)
		}
		if n := w.count(); n != 3 {
			t.Errorf("upstream saw %d connections for 5 requests, want 3", n)
		}
		w.waitClosed(t, 2) // the two drained ones, closed once done
		f.waitCounter(t, "cluster.h2.upstream_cx_max_requests", 2)
	})
	t.Run("max_connection_duration", func(t *testing.T) {
		w := newConnWatcher()
		cl := staticCluster("h2", newUpstream(t, w))
		cl.HTTP2 = true
		cl.UpstreamHTTP = &config.UpstreamHTTP{MaxConnectionDuration: config.Duration(100 * time.Millisecond)}
		f := start(t, []*config.Route{prefixRoute("/", "h2")}, nil, loader{}, cl)
		get(t, f)
		w.waitClosed(t, 1)
		f.waitCounter(t, "cluster.h2.upstream_cx_max_duration_reached", 1)
		get(t, f) // a new connection
		if n := w.count(); n != 2 {
			t.Errorf("%d connections, want 2", n)
		}
	})
}

// TestClusterHTTP2ConcurrentFirstRequests: requests arriving together at
// an HTTP/2 cluster whose connections the cluster keeps (here for
// max_requests_per_connection) share the connection being made rather
// than each making one: the upstream holds every request until all have
// arrived, and sees them on one connection.
func TestClusterHTTP2ConcurrentFirstRequests(t *testing.T) {
	const n = 10
	w := newConnWatcher()
	var arrived sync.WaitGroup
	arrived.Add(n)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		arrived.Done()
		select {
		case <-all:
		case <-time.After(30 * time.Second):
		}
		fmt.Fprint(rw, r.Proto)
	}))
	up.Config.Protocols = new(http.Protocols)
	up.Config.Protocols.SetUnencryptedHTTP2(true)
	up.Config.ConnState = w.hook
	up.Start()
	t.Cleanup(up.Close)
	cl := staticCluster("h2", up.Listener.Addr().String())
	cl.HTTP2 = true
	cl.UpstreamHTTP = &config.UpstreamHTTP{MaxRequestsPerConnection: 1000}
	f := start(t, []*config.Route{prefixRoute("/", "h2")}, nil, loader{}, cl)
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get("http://" + f.addr + "/")
			if err != nil {
				errs <- err.Error()
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- resp.Status
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if c := w.count(); c != 1 {
		t.Errorf("upstream saw %d connections for %d concurrent requests, want 1", c, n)
	}
}
