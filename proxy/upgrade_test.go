package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"golang.org/x/net/websocket"
)

// enableWebSocket is the listener adjustment of upgrade_configs with
// upgrade_type: websocket.
func enableWebSocket(l *config.Listener) {
	l.FilterChains[0].HTTP.UpgradeTypes = []string{"websocket"}
}

// TestWebSocketUpgrade: with upgrade_configs enabling websocket, a real
// WebSocket client and server talk through the proxy: the handshake
// runs through the filter chain and router, the 101 reaches the client,
// and messages then flow both ways (the server speaks first, then
// echoes) until the client closes, which the server sees.
func TestWebSocketUpgrade(t *testing.T) {
	serverDone := make(chan error, 1)
	up := upstream(t, websocket.Handler(func(ws *websocket.Conn) {
		serverDone <- func() error {
			if err := websocket.Message.Send(ws, "hello from upstream"); err != nil {
				return err
			}
			for {
				var msg string
				if err := websocket.Message.Receive(ws, &msg); err != nil {
					return err // io.EOF when the client closed
				}
				if err := websocket.Message.Send(ws, "echo: "+msg); err != nil {
					return err
				}
			}
		}()
	}).ServeHTTP)
	h := &hooks{}
	f := startWith(t, []*config.Route{prefixRoute("/", "web")}, []string{"f"}, loader{"f": h}, enableWebSocket, staticCluster("web", up))

	cfg, err := websocket.NewConfig("ws://"+f.addr+"/chat", "http://"+f.addr+"/")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("handshake through the proxy: %v", err)
	}
	_ = ws.SetDeadline(time.Now().Add(30 * time.Second))
	var msg string
	if err := websocket.Message.Receive(ws, &msg); err != nil || msg != "hello from upstream" {
		t.Fatalf("first message: %q, %v", msg, err)
	}
	for i := range 5 {
		want := fmt.Sprintf("message %d %s", i, strings.Repeat("x", i*5000))
		if err := websocket.Message.Send(ws, want); err != nil {
			t.Fatal(err)
		}
		if err := websocket.Message.Receive(ws, &msg); err != nil || msg != "echo: "+want {
			t.Fatalf("reply %d: %.40q, %v", i, msg, err)
		}
	}
	if err := ws.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-serverDone:
		if err != io.EOF {
			t.Fatalf("upstream handler ended with %v, want io.EOF (the client's close)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the client's close did not reach the upstream")
	}
	// The handshake ran through the HTTP filter chain.
	if ev := strings.Join(h.events(), ","); !strings.Contains(ev, "decodeHeaders") {
		t.Fatalf("filter events %q: the upgrade request did not run through the filters", ev)
	}
}

// TestUpgradeNotSwitched: an enabled upgrade the upstream does not
// accept gets its answer as a normal response, and the connection goes
// on serving requests.
func TestUpgradeNotSwitched(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "plain %s %s", r.Header.Get("Upgrade"), r.Header.Get("Connection"))
	})
	f := startWith(t, []*config.Route{prefixRoute("/", "web")}, nil, loader{}, enableWebSocket, staticCluster("web", up))
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	for i := range 2 {
		if _, err := io.WriteString(c, "GET /a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		// The upstream saw the upgrade's hop-by-hop fields.
		if resp.StatusCode != 200 || string(b) != "plain websocket Upgrade" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
}

// TestUpgradeUnconfiguredType: an upgrade type upgrade_configs does not
// enable still gets 403, with websocket enabled.
func TestUpgradeUnconfiguredType(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	f := startWith(t, []*config.Route{prefixRoute("/", "web")}, nil, loader{}, enableWebSocket, staticCluster("web", up))
	for _, req := range []string{
		"GET /a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n",
		"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
	} {
		if got := rawExchange(t, f.addr, req); got != "HTTP/1.1 403 Forbidden" {
			t.Fatalf("%q: status line %q, want 403", req, got)
		}
	}
}
