package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
)

// TestListenerReusePort: a listener binds with SO_REUSEPORT by default
// (Envoy's enable_reuse_port default on Linux), so a second proxy binds
// the same address while the first still holds it, and serves it once
// the first is gone — the hand-over Envoy's hot restart relies on. With
// enable_reuse_port false the second bind fails with EADDRINUSE, naming
// the listener.
func TestListenerReusePort(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "up") })
	routes := []*config.Route{prefixRoute("/", "up")}
	first := start(t, routes, nil, nil, staticCluster("up", up))

	second := func(disable bool) (*Server, error) {
		cfg := &config.Bootstrap{
			Listeners: []*config.Listener{{
				Name: "again", Address: first.addr, PerConnectionBufferLimitBytes: 1 << 20, DisableReusePort: disable,
				FilterChains: []*config.FilterChain{{HTTP: &config.HTTPConnectionManager{
					StatPrefix: "again", Codec: config.CodecAuto, MaxRequestHeadersKB: 60,
					Routes: &config.RouteConfig{Name: "local", VirtualHosts: []*config.VirtualHost{
						{Name: "vh", Domains: []string{"*"}, Routes: routes},
					}},
					Filters: []*config.HTTPFilter{{Name: "envoy.filters.http.router", Router: true}},
				}}},
			}},
			Clusters: []*config.Cluster{staticCluster("up", up)},
		}
		srv, err := New(context.Background(), cfg, Options{Logs: logging.NewRegistry(io.Discard, logging.LevelInfo), Stats: stats.New()})
		if err != nil {
			t.Fatal(err)
		}
		return srv, srv.Start()
	}

	_, err := second(true)
	var be *BindError
	if !errors.As(err, &be) || be.Listener != "again" || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("enable_reuse_port false on a taken address: err %v, want a BindError for \"again\" with EADDRINUSE", err)
	}

	srv, err := second(false)
	if err != nil {
		t.Fatalf("second proxy on %s with SO_REUSEPORT: %v", first.addr, err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	if got := srv.Addr("again"); got != first.addr {
		t.Fatalf("second proxy bound %s, want %s", got, first.addr)
	}

	// The first proxy goes; the port keeps answering, from the second.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := first.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + first.addr + "/")
	if err != nil {
		t.Fatalf("after the first proxy stopped: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "up" {
		t.Fatalf("after the first proxy stopped: %d %q, want 200 \"up\"", resp.StatusCode, body)
	}
}
