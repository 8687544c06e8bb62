package proxy

import (
	"bufio"
	"context"
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
// run http_filters; a refused upgrade runs neither. An HTTP/2 extended
// CONNECT is the upgrade it stands for, and runs the upgrade's chain.
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
		prefixRoute("/chat", "web"), // dialH2WebSocket's path
		prefixRoute("/", "web"),
	}
	routes[1].Upgrades = []config.RouteUpgrade{{Type: "websocket", Enabled: true}}
	routes[2].Upgrades = routes[1].Upgrades
	f := startWith(t, routes, []string{"main"}, loader{"main": main, "up": up1}, func(l *config.Listener) {
		h := l.FilterChains[0].HTTP
		// websocket: {enabled: false, filters: [up, router]}; CONNECT: {}.
		h.UpgradeTypes = []string{config.UpgradeConnect}
		h.HTTP2.AllowConnect = true
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

	// Over HTTP/2, an extended CONNECT (RFC 8441) is the same upgrade:
	// its chain runs too.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h2resp, _, done, err := dialH2WebSocket(ctx, f.addr, "dGhlIHNhbXBsZSBub25jZQ==")
	if err != nil {
		t.Fatalf("extended CONNECT: %v", err)
	}
	defer done()
	if h2resp.StatusCode != 200 {
		t.Fatalf("extended CONNECT: status %d", h2resp.StatusCode)
	}
	if got := <-seen; got != "/chat upgrade" {
		t.Fatalf("upstream saw %q over HTTP/2, want the upgrade's chain only", got)
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

// upgradeSwapConfig is swapConfig with websocket enabled and its own
// chain of the filters named in upgrade.
func upgradeSwapConfig(up string, main, upgrade string) *config.Bootstrap {
	cfg := swapConfig(up, "/", main)
	h := cfg.Listeners[0].FilterChains[0].HTTP
	h.UpgradeTypes = []string{"websocket"}
	h.UpgradeFilters = map[string][]*config.HTTPFilter{"websocket": append(filters(upgrade), &config.HTTPFilter{Name: "router", Router: true})}
	return cfg
}

// TestReloadUpgradeFilterChain: an upgrade's chain is part of its
// connection manager's filter generation. A reload that swaps
// http_filters rebuilds it with them (the old ones are released
// together, once unused), and upgrades then still run it; a change of
// the upgrade chain itself replaces the listener, and the next upgrade
// runs the new chain.
func TestReloadUpgradeFilterChain(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			_, _ = io.WriteString(w, "plain")
			return
		}
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	})
	l := &releasingLoader{}
	srv := reloadServer(t, upgradeSwapConfig(up, "v1", "vu1"), l)
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	// version is the x-version the chain that ran gave a plain request
	// and a websocket upgrade.
	version := func(upgrade bool) string {
		t.Helper()
		c, err := net.Dial("tcp", srv.Addr("main"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		head := "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
		if upgrade {
			head = "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
		}
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := http.StatusOK
		if upgrade {
			want = http.StatusSwitchingProtocols
		}
		if resp.StatusCode != want {
			t.Fatalf("status %d, want %d", resp.StatusCode, want)
		}
		return resp.Header.Get("X-Version")
	}
	if p, u := version(false), version(true); p != "v1" || u != "vu1" {
		t.Fatalf("before: plain %q, upgrade %q", p, u)
	}

	oldGen := srv.httpManagers[0].filters.Load()
	res, err := srv.Reload(context.Background(), upgradeSwapConfig(up, "v2", "vu1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.Plan.Summary(), ","); got != "main/0" {
		t.Fatalf("plan %q, want the filter swap", got)
	}
	if p, u := version(false), version(true); p != "v2" || u != "vu1" {
		t.Fatalf("after the http_filters swap: plain %q, upgrade %q", p, u)
	}
	waitReleased(t, oldGen.released, "the old filter generation")
	// The reload as a whole reports released too: its kept routes moved
	// to the new cluster set, so the old set is let go.
	waitReleased(t, res.Released, "the filter-only reload")
	if got := l.releases(); got != "v1,vu1" {
		t.Fatalf("released %q, want the old generation's v1 and vu1", got)
	}

	res, err = srv.Reload(context.Background(), upgradeSwapConfig(up, "v2", "vu2"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.Plan.Summary(), ","); got != "listener~ main" {
		t.Fatalf("plan %q, want the listener replaced", got)
	}
	if p, u := version(false), version(true); p != "v2" || u != "vu2" {
		t.Fatalf("after the upgrade chain's change: plain %q, upgrade %q", p, u)
	}
}
