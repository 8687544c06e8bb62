package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"golang.org/x/net/websocket"
)

// markChain is a test filter's hooks that add "x-chain: <name>" to the
// request, so the upstream tells which chain ran.
func markChain(name string) *hooks {
	return &hooks{decodeHeaders: func(_ filter.Callbacks, h *filter.HeaderMap, _ bool) filter.HeadersStatus {
		h.Add("x-chain", name)
		return filter.HeadersContinue
	}}
}

// TestUpgradeFilterChain: an upgrade_configs entry with filters has its
// own chain, which a request upgraded under that type runs instead of
// http_filters, as Envoy's createUpgradeFilterChain: also when the
// entry itself is disabled and the route enables the type. A plain
// request, and an upgrade whose entry has no filters (CONNECT here),
// run http_filters; a refused upgrade runs neither.
func TestUpgradeFilterChain(t *testing.T) {
	seen := make(chan string, 8)
	ws := websocket.Handler(func(ws *websocket.Conn) {
		for {
			var msg string
			if websocket.Message.Receive(ws, &msg) != nil {
				return
			}
			if websocket.Message.Send(ws, "echo: "+msg) != nil {
				return
			}
		}
	})
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.URL.Path + " " + strings.Join(r.Header.Values("X-Chain"), ",")
		if r.Header.Get("Upgrade") != "" {
			ws.ServeHTTP(w, r)
			return
		}
		_, _ = io.WriteString(w, "plain")
	})
	echo := echoServer(t)
	main, up1 := markChain("main"), markChain("upgrade")
	routes := []*config.Route{
		connectRoute("echo", &config.ConnectConfig{}),
		prefixRoute("/ws", "web"),
		prefixRoute("/", "web"),
	}
	routes[1].Upgrades = []config.RouteUpgrade{{Type: "websocket", Enabled: true}}
	f := startWith(t, routes, []string{"main"}, loader{"main": main, "up": up1}, func(l *config.Listener) {
		h := l.FilterChains[0].HTTP
		// websocket: {enabled: false, filters: [up, router]}; CONNECT: {}.
		h.UpgradeTypes = []string{config.UpgradeConnect}
		h.UpgradeFilters = map[string][]*config.HTTPFilter{"websocket": {
			{Name: "up"},
			{Name: "envoy.filters.http.router", Router: true},
		}}
	}, staticCluster("web", up), staticCluster("echo", echo))

	// The route enables websocket: the upgrade's chain runs.
	cfg, err := websocket.NewConfig("ws://"+f.addr+"/ws/chat", "http://"+f.addr+"/")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("handshake through the proxy: %v", err)
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if got := <-seen; got != "/ws/chat upgrade" {
		t.Fatalf("upstream saw %q, want the upgrade's chain only (%q)", got, "/ws/chat upgrade")
	}
	if err := websocket.Message.Send(conn, "hi"); err != nil {
		t.Fatal(err)
	}
	var msg string
	if err := websocket.Message.Receive(conn, &msg); err != nil || msg != "echo: hi" {
		t.Fatalf("reply %q, %v", msg, err)
	}
	_ = conn.Close()
	if ev := main.events(); len(ev) != 0 {
		t.Fatalf("http_filters ran for the upgrade: %q", ev)
	}

	// A plain request: http_filters.
	resp, body := do(t, mustRequest(t, "GET", "http://"+f.addr+"/ws/plain"))
	if resp.StatusCode != 200 || body != "plain" {
		t.Fatalf("plain request: %d %q", resp.StatusCode, body)
	}
	if got := <-seen; got != "/ws/plain main" {
		t.Fatalf("upstream saw %q, want http_filters' mark", got)
	}

	// websocket is off on "/": 403, and no chain runs.
	before := len(up1.events()) + len(main.events())
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET /other HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	r403, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || r403.StatusCode != http.StatusForbidden {
		t.Fatalf("websocket on a route that does not enable it: %v %v, want 403", r403, err)
	}
	if after := len(up1.events()) + len(main.events()); after != before {
		t.Fatalf("a filter ran for a refused upgrade (%d events, were %d)", after, before)
	}

	// CONNECT's entry has no filters: http_filters run for it.
	mainBefore := len(main.events())
	tc, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(tc, "CONNECT echo.example:7 HTTP/1.1\r\nHost: echo.example:7\r\n\r\nping"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(tc)
	rc, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || rc.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", rc, err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
		t.Fatalf("tunnel echo %q, %v", got, err)
	}
	if len(main.events()) == mainBefore {
		t.Fatal("http_filters did not run for a CONNECT whose upgrade_configs entry has no filters")
	}
}
