package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/stats"
)

// proxyProtoEchoServer is a TCP server behind a PROXY protocol reader
// (the proxy_protocol listener filter's): each connection must start
// with a header, whose addresses go to seen as "src dst" (or the error),
// and then has its bytes echoed.
func proxyProtoEchoServer(t *testing.T, seen chan<- string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st := newProxyProtoStats(stats.New(), "", &config.ProxyProtocol{})
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
				pc, err := readProxyHeader(c, &config.ProxyProtocol{}, st)
				if err != nil {
					seen <- "error: " + err.Error()
					return
				}
				seen <- pc.RemoteAddr().String() + " " + pc.LocalAddr().String()
				_, _ = io.Copy(pc, pc)
			})
		}
	})
	return ln.Addr().String()
}

// TestConnectProxyProtocol: a terminated CONNECT whose route's
// connect_config has proxy_protocol_config writes a PROXY protocol
// header of the configured version first on its connection, with the
// downstream connection's addresses (the client's as source, the
// proxy's listener as destination), as Envoy's TCP upstream; the
// endpoint, reading it with our proxy_protocol reader, sees the client,
// and the tunnel's bytes follow the header. Behind the proxy_protocol
// listener filter, the addresses are those the client's own header
// carried. An allow_post POST on the route is terminated the same way,
// header included.
func TestConnectProxyProtocol(t *testing.T) {
	for _, tc := range []struct {
		name      string
		version   int
		listenerP bool // the listener reads a PROXY header from the client
	}{
		{"v1", 1, false},
		{"v2", 2, false},
		{"v2 behind the listener filter", 2, true},
		{"v1 behind the listener filter", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(chan string, 4)
			up := proxyProtoEchoServer(t, seen)
			route := connectRoute("pp", &config.ConnectConfig{ProxyProtocolVersion: tc.version, AllowPost: true})
			post := prefixRoute("/post", "pp")
			post.ConnectConfig = route.ConnectConfig
			post.Upgrades = []config.RouteUpgrade{{Type: config.UpgradeConnect, Enabled: true}}
			f := startWith(t, []*config.Route{route, post}, nil, loader{}, func(l *config.Listener) {
				upgradeTypes(config.UpgradeConnect)(l)
				if tc.listenerP {
					l.ProxyProtocol = &config.ProxyProtocol{}
				}
			}, staticCluster("pp", up))

			dial := func() (net.Conn, string) {
				c, err := net.Dial("tcp", f.addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = c.Close() })
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				want := c.LocalAddr().String() + " " + c.RemoteAddr().String()
				if tc.listenerP {
					src := netip.MustParseAddrPort("192.0.2.7:40001")
					dst := netip.MustParseAddrPort("198.51.100.9:443")
					if _, err := c.Write(proxyHeader(1, src, dst)); err != nil {
						t.Fatal(err)
					}
					want = src.String() + " " + dst.String()
				}
				return c, want
			}

			c, want := dial()
			if _, err := io.WriteString(c, "CONNECT pp.example:9 HTTP/1.1\r\nHost: pp.example:9\r\n\r\nhello"); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			if got := <-seen; got != want {
				t.Fatalf("the endpoint read addresses %q from the PROXY header, want %q", got, want)
			}
			got := make([]byte, 5)
			if _, err := io.ReadFull(br, got); err != nil || string(got) != "hello" {
				t.Fatalf("tunnel echo %q, %v (the header and the bytes after it)", got, err)
			}

			// allow_post: the POST's body goes to a connection that
			// starts with the header too.
			pc, want := dial()
			if _, err := io.WriteString(pc, "POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nping"); err != nil {
				t.Fatal(err)
			}
			pr := bufio.NewReader(pc)
			presp, err := http.ReadResponse(pr, &http.Request{Method: http.MethodPost})
			if err != nil || presp.StatusCode != 200 {
				t.Fatalf("POST: %v %v", presp, err)
			}
			if got := <-seen; got != want {
				t.Fatalf("POST: the endpoint read %q, want %q", got, want)
			}
			b := make([]byte, 4)
			if _, err := io.ReadFull(presp.Body, b); err != nil || string(b) != "ping" {
				t.Fatalf("POST echo %q, %v", b, err)
			}
		})
	}
}

// TestProxyHeaderWriter: every header the writer makes reads back with
// our reader as the addresses it was given: both versions, IPv4, IPv6,
// IPv4 in IPv6 form (written as IPv4), a mixed pair (written as IPv6),
// and no address at all (v1 UNKNOWN, v2 LOCAL: the reader keeps the
// socket's addresses).
func TestProxyHeaderWriter(t *testing.T) {
	st := newProxyProtoStats(stats.New(), "", &config.ProxyProtocol{})
	for _, tc := range []struct {
		src, dst string
		want     string // "" for the socket's own
		v1       string // the v1 line
	}{
		{"10.1.2.3:5678", "10.9.8.7:80", "10.1.2.3:5678 10.9.8.7:80", "PROXY TCP4 10.1.2.3 10.9.8.7 5678 80\r\n"},
		{"[2001:db8::1]:1000", "[2001:db8::2]:443", "[2001:db8::1]:1000 [2001:db8::2]:443", "PROXY TCP6 2001:db8::1 2001:db8::2 1000 443\r\n"},
		{"[::ffff:10.0.0.1]:1", "[::ffff:10.0.0.2]:2", "10.0.0.1:1 10.0.0.2:2", "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n"},
		{"10.0.0.1:1", "[2001:db8::2]:2", "10.0.0.1:1 [2001:db8::2]:2", "PROXY TCP6 ::ffff:10.0.0.1 2001:db8::2 1 2\r\n"},
		{"", "", "", "PROXY UNKNOWN\r\n"},
	} {
		var src, dst netip.AddrPort
		if tc.src != "" {
			src, dst = netip.MustParseAddrPort(tc.src), netip.MustParseAddrPort(tc.dst)
		}
		if got := string(proxyHeader(1, src, dst)); got != tc.v1 {
			t.Errorf("v1 header for %s %s: %q, want %q", tc.src, tc.dst, got, tc.v1)
		}
		for _, v := range []int{1, 2} {
			a, b := net.Pipe()
			go func() {
				_, _ = b.Write(append(proxyHeader(v, src, dst), "after"...))
				_ = b.Close()
			}()
			pc, err := readProxyHeader(a, &config.ProxyProtocol{}, st)
			if err != nil {
				t.Fatalf("v%d %s %s: %v", v, tc.src, tc.dst, err)
			}
			got := pc.RemoteAddr().String() + " " + pc.LocalAddr().String()
			want := tc.want
			if want == "" {
				want = a.RemoteAddr().String() + " " + a.LocalAddr().String()
			}
			if got != want {
				t.Errorf("v%d %s %s: read back %q, want %q", v, tc.src, tc.dst, got, want)
			}
			rest, _ := io.ReadAll(pc)
			if string(rest) != "after" {
				t.Errorf("v%d: bytes after the header %q, want %q", v, rest, "after")
			}
			_ = a.Close()
		}
	}
}
