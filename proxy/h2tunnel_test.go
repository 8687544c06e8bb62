package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// h2ConnectUpstream is a real HTTP/2 (h2c) server that accepts a CONNECT
// stream, answers 200 and echoes the stream's DATA back, flushing each
// read. targets receives each CONNECT's authority.
func h2ConnectUpstream(t *testing.T, targets chan<- string) string {
	t.Helper()
	return upstream(t, h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.ProtoMajor != 2 {
			http.Error(w, "HTTP/2 CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		targets <- r.Host
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		if rc.Flush() != nil {
			return
		}
		buf := make([]byte, 16<<10)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				if _, err := w.Write(buf[:n]); err != nil || rc.Flush() != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}), &http2.Server{}).ServeHTTP)
}

// h2cTransport is an HTTP/2 client with prior knowledge over plain TCP.
func h2cTransport() *http2.Transport {
	return &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

// TestConnectToHTTP2Cluster: a proxied CONNECT to an HTTP/2 cluster goes
// upstream as an HTTP/2 CONNECT stream (as Envoy's codec sends it), the
// tunnel riding that stream's DATA frames: from an HTTP/1.1 CONNECT and
// from an HTTP/2 one, bytes echo both ways, a large write included, and
// the client's end ends the tunnel and the upgrade gauge.
func TestConnectToHTTP2Cluster(t *testing.T) {
	targets := make(chan string, 4)
	up := h2ConnectUpstream(t, targets)
	const target = "tunnel.example:443"
	for _, downstream := range []string{"HTTP/1.1", "HTTP/2"} {
		t.Run(downstream, func(t *testing.T) {
			cl := staticCluster("h2", up)
			cl.HTTP2 = true
			f := startWith(t, []*config.Route{connectRoute("h2", nil)}, nil, loader{}, upgradeTypes(config.UpgradeConnect), cl)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var tunnel io.ReadWriter
			var end func()
			switch downstream {
			case "HTTP/1.1":
				c, err := net.Dial("tcp", f.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(60 * time.Second))
				if _, err := io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n"); err != nil {
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
				tunnel = struct {
					io.Reader
					io.Writer
				}{br, c}
				end = func() { _ = c.(*net.TCPConn).CloseWrite() }
			case "HTTP/2":
				tr := h2cTransport()
				defer tr.CloseIdleConnections()
				pr, pw := io.Pipe()
				defer pw.Close()
				req := (&http.Request{Method: http.MethodConnect, URL: &url.URL{Scheme: "http", Host: f.addr}, Host: target, Header: http.Header{}, Body: pr}).WithContext(ctx)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d, want 200", resp.StatusCode)
				}
				tunnel = struct {
					io.Reader
					io.Writer
				}{resp.Body, pw}
				end = func() { _ = pw.Close() }
			}
			if got := <-targets; got != target {
				t.Fatalf("upstream got CONNECT %q, want %q", got, target)
			}
			for _, msg := range []string{"hello", strings.Repeat("abcdefgh", 40000)} {
				go func() { _, _ = io.WriteString(tunnel, msg) }()
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(tunnel, got); err != nil || string(got) != msg {
					t.Fatalf("echo of %.20q: %.20q, %v", msg, got, err)
				}
			}
			if g := f.st.Gauge("http.ingress_http.downstream_cx_upgrades_active").Value(); g != 1 {
				t.Fatalf("downstream_cx_upgrades_active %d during the tunnel, want 1", g)
			}
			end()
			if b, err := io.ReadAll(tunnel); len(b) != 0 {
				t.Fatalf("after the client's end: %q, %v", b, err)
			}
			for deadline := time.Now().Add(30 * time.Second); f.st.Gauge("http.ingress_http.downstream_cx_upgrades_active").Value() != 0; {
				if time.Now().After(deadline) {
					t.Fatal("downstream_cx_upgrades_active did not drop to 0 after the tunnel ended")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestConnectAllowPost: on a route whose CONNECT upgrade config has
// connect_config.allow_post, a POST is terminated as a CONNECT would
// be (Envoy's TCP pool): the proxy answers 200, the request body
// streams to a raw TCP echo endpoint and its bytes stream back as the
// response body, over HTTP/1.1 (chunked both ways) and HTTP/2; the
// request body's end half-closes the connection, so the echo server's
// close ends the response.
func TestConnectAllowPost(t *testing.T) {
	eachAllowPostTunnel(t, echoServer(t), "/tunnel", func(t *testing.T, resp *http.Response, body *io.PipeWriter) {
		if resp.StatusCode != 200 {
			t.Fatalf("status %d, want 200", resp.StatusCode)
		}
		for _, msg := range []string{"hello", strings.Repeat("abcdefgh", 40000)} {
			go func() { _, _ = io.WriteString(body, msg) }()
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != msg {
				t.Fatalf("echo of %.20q: %.20q, %v", msg, got, err)
			}
		}
		// The request's end reaches the echo server as a half-close;
		// its close ends the response.
		_ = body.Close()
		if b, err := io.ReadAll(resp.Body); len(b) != 0 || err != nil {
			t.Fatalf("after the request's end: %q, %v; want a clean end", b, err)
		}
	})
}

// eachAllowPostTunnel starts a proxy whose only route ends POSTs in a
// TCP tunnel to addr (connect_config.allow_post) and sends one streamed
// POST to path over HTTP/1.1 and one over HTTP/2, handing check the
// response and the request body's writer.
func eachAllowPostTunnel(t *testing.T, addr, path string, check func(t *testing.T, resp *http.Response, body *io.PipeWriter)) {
	t.Helper()
	route := &config.Route{Match: config.RouteMatch{Prefix: "/", CaseSensitive: true}, Cluster: "tunnel", Timeout: config.Duration(15 * time.Second),
		ConnectConfig: &config.ConnectConfig{AllowPost: true}, Upgrades: []config.RouteUpgrade{{Type: config.UpgradeConnect, Enabled: true}}}
	f := startWith(t, []*config.Route{route}, nil, loader{}, nil, staticCluster("tunnel", addr))
	h2 := h2cTransport()
	defer h2.CloseIdleConnections()
	h1 := &http.Transport{}
	defer h1.CloseIdleConnections()
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
	}{{"HTTP/1.1", h1}, {"HTTP/2", h2}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			pr, pw := io.Pipe()
			defer pw.Close()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+f.addr+path, pr)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := tc.rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			check(t, resp, pw)
		})
	}
}

// TestConnectAllowPostEndpointCloses: an endpoint that answers and
// closes while the client's POST body is still open ends the response
// (the client reads the bytes, then the end), over both protocols.
func TestConnectAllowPostEndpointCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "bye")
			_ = c.Close()
		}
	}()
	eachAllowPostTunnel(t, ln.Addr().String(), "/", func(t *testing.T, resp *http.Response, _ *io.PipeWriter) {
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "bye" || err != nil {
			t.Fatalf("%d %q %v, want 200 \"bye\" and a clean end", resp.StatusCode, b, err)
		}
	})
}
