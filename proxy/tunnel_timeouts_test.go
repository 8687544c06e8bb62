package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"golang.org/x/net/http2"
	"golang.org/x/net/websocket"
)

// tunnelClient opens a tunnel through the proxy at addr and returns its
// two ends (what the client writes, what it reads); the tunnel's far end
// echoes.
type tunnelClient func(t *testing.T, addr, echo string) (io.Writer, io.Reader)

// rawConnectTunnel is an HTTP/1.1 CONNECT written by hand.
func rawConnectTunnel(t *testing.T, addr, _ string) (io.Writer, io.Reader) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(c, "CONNECT echo.example:7 HTTP/1.1\r\nHost: echo.example:7\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	return c, br
}

// h2ConnectTunnel is an HTTP/2 CONNECT stream (x/net/http2's client).
func h2ConnectTunnel(t *testing.T, addr, echo string) (io.Writer, io.Reader) {
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	pr, pw := io.Pipe()
	t.Cleanup(func() { _ = pw.Close() })
	req := (&http.Request{Method: http.MethodConnect, URL: &url.URL{Scheme: "http", Host: addr}, Host: echo, Header: http.Header{}, Body: pr}).WithContext(ctx)
	resp, err := tr.RoundTrip(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTP/2 CONNECT: %v %v", resp, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return pw, resp.Body
}

// webSocketTunnel is a real WebSocket client (x/net/websocket): what it
// writes and reads are its frames' payloads.
func webSocketTunnel(t *testing.T, addr, _ string) (io.Writer, io.Reader) {
	cfg, err := websocket.NewConfig("ws://"+addr+"/ws", "http://"+addr+"/")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("WebSocket handshake: %v", err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	_ = ws.SetDeadline(time.Now().Add(60 * time.Second))
	return ws, ws
}

// webSocketEcho is a real WebSocket server (x/net/websocket) that
// echoes each frame's payload.
func webSocketEcho(t *testing.T) string {
	return upstream(t, websocket.Handler(func(ws *websocket.Conn) { _, _ = io.Copy(ws, ws) }).ServeHTTP)
}

// TestTunnelIdleTimeout: a tunnel lives on the stream that opened it,
// so the stream's idle timeout bounds it, as on Envoy: the route's
// idle_timeout here (over the connection manager's stream_idle_timeout).
// Bytes either way keep it open past the timeout; once they stop, the
// proxy ends it (the client's connection closes, or its HTTP/2 stream
// is reset), counted in downstream_rq_idle_timeout. For a WebSocket,
// a terminated CONNECT over HTTP/1.1 and over HTTP/2.
func TestTunnelIdleTimeout(t *testing.T) {
	echo := echoServer(t)
	wsUp := webSocketEcho(t)
	const idle = 600 * time.Millisecond
	for _, tc := range []struct {
		name string
		dial tunnelClient
	}{
		{"websocket", webSocketTunnel},
		{"CONNECT", rawConnectTunnel},
		{"HTTP/2 CONNECT", h2ConnectTunnel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cr := connectRoute("echo", &config.ConnectConfig{})
			ws := prefixRoute("/ws", "ws")
			for _, r := range []*config.Route{cr, ws} {
				d := config.Duration(idle)
				r.IdleTimeout = &d
			}
			f := startWith(t, []*config.Route{cr, ws}, nil, loader{}, func(l *config.Listener) {
				l.FilterChains[0].HTTP.UpgradeTypes = []string{"websocket", config.UpgradeConnect}
				l.FilterChains[0].HTTP.StreamIdleTimeout = config.Duration(time.Hour)
			}, staticCluster("echo", echo), staticCluster("ws", wsUp))
			w, r := tc.dial(t, f.addr, echo)
			// Activity both ways for well over the timeout: the tunnel
			// stays.
			buf := make([]byte, 64)
			for start := time.Now(); time.Since(start) < 3*idle; {
				msg := []byte("ping")
				if _, err := w.Write(msg); err != nil {
					t.Fatalf("write while active: %v", err)
				}
				n, err := r.Read(buf)
				if err != nil || n == 0 {
					t.Fatalf("read while active: %d %v", n, err)
				}
				time.Sleep(idle / 10) // pacing, well inside the timeout
			}
			// Then silence: the proxy ends the tunnel.
			for {
				_, err := r.Read(buf)
				if err == nil {
					continue // what was still in flight
				}
				if errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("tunnel not ended by the idle timeout: %v", err)
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("tunnel not ended by the idle timeout: %v", err)
				}
				break
			}
			if n := f.st.Counter("http.ingress_http.downstream_rq_idle_timeout").Value(); n != 1 {
				t.Fatalf("downstream_rq_idle_timeout %d, want 1", n)
			}
		})
	}
}

// TestTunnelMaxStreamDuration: the connection manager's
// max_stream_duration bounds a tunnel's whole life, activity or not,
// counted in downstream_rq_max_duration_reached.
func TestTunnelMaxStreamDuration(t *testing.T) {
	echo := echoServer(t)
	f := startWith(t, []*config.Route{connectRoute("echo", &config.ConnectConfig{})}, nil, loader{}, func(l *config.Listener) {
		l.FilterChains[0].HTTP.UpgradeTypes = []string{config.UpgradeConnect}
		l.FilterChains[0].HTTP.MaxStreamDuration = config.Duration(time.Second)
	}, staticCluster("echo", echo))
	w, r := rawConnectTunnel(t, f.addr, echo)
	buf := make([]byte, 64)
	for {
		if _, err := w.Write([]byte("ping")); err != nil {
			break // the proxy closed the connection
		}
		if _, err := r.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("tunnel not ended by max_stream_duration: %v", err)
			}
			break
		}
		time.Sleep(50 * time.Millisecond) // pacing
	}
	if n := f.st.Counter("http.ingress_http.downstream_rq_max_duration_reached").Value(); n != 1 {
		t.Fatalf("downstream_rq_max_duration_reached %d, want 1", n)
	}
}

// TestConnectAllowPostClientGone: a client that goes away in the middle
// of an allow_post POST's body takes the upstream connection with it,
// as Envoy resets its TCP upstream: the endpoint, which stays silent,
// sees its connection closed rather than held open forever.
func TestConnectAllowPostClientGone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		b, err := io.ReadAll(c) // silent: it only reads, until the connection ends
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			got <- "still open after 60s, having read " + string(b)
			return
		}
		got <- string(b)
	}()
	route := prefixRoute("/post", "up")
	route.ConnectConfig = &config.ConnectConfig{AllowPost: true}
	route.Upgrades = []config.RouteUpgrade{{Type: config.UpgradeConnect, Enabled: true}}
	f := startWith(t, []*config.Route{route}, nil, loader{}, nil, staticCluster("up", ln.Addr().String()))
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(c, "POST /post HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\npart\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodPost})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST: %v %v", resp, err)
	}
	_ = c.Close()
	if s := <-got; s != "part" {
		t.Fatalf("the endpoint: %q, want the body's start and then the connection's end", s)
	}
}

// TestConnectAllowPostContentLength: an allow_post POST with a small
// body of known length gets its 200 and the endpoint's bytes while the
// client still holds most of the body back (a tunnelling client may wait
// for the 200): the body is read as it comes, and the rest follows.
func TestConnectAllowPostContentLength(t *testing.T) {
	route := prefixRoute("/post", "echo")
	route.ConnectConfig = &config.ConnectConfig{AllowPost: true}
	route.Upgrades = []config.RouteUpgrade{{Type: config.UpgradeConnect, Enabled: true}}
	f := startWith(t, []*config.Route{route}, nil, loader{}, nil, staticCluster("echo", echoServer(t)))
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(c, "POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nfirst"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodPost})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST with its body held back: %v %v", resp, err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != "first" {
		t.Fatalf("echo of the body's start: %q %v", got, err)
	}
	if _, err := io.WriteString(c, "rest"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "rest" {
		t.Fatalf("echo of the rest, then the end: %q %v", rest, err)
	}
}
