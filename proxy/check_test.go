package proxy

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
)

// TestNewChecksModel: a model built in Go gets the config package's
// checks, in its words: no second wording in the proxy.
func TestNewChecksModel(t *testing.T) {
	model := func() *config.Bootstrap {
		return &config.Bootstrap{
			Listeners: []*config.Listener{
				{Name: "http", Address: "127.0.0.1:0", FilterChains: []*config.FilterChain{{HTTP: &config.HTTPConnectionManager{
					Routes:  &config.RouteConfig{VirtualHosts: []*config.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []*config.Route{prefixRoute("/", "web")}}}},
					Filters: []*config.HTTPFilter{{Name: "envoy.filters.http.router", Router: true}},
				}}}},
				{Name: "tcp", Address: "127.0.0.1:0", FilterChains: []*config.FilterChain{tcpChain("db")}},
			},
			Clusters: []*config.Cluster{staticCluster("web", "127.0.0.1:1"), staticCluster("db", "127.0.0.1:1")},
		}
	}
	tests := []struct {
		name   string
		change func(*config.Bootstrap)
		want   string
	}{
		{"route to an unknown cluster", func(b *config.Bootstrap) { b.Clusters = b.Clusters[1:] },
			`static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.cluster: unknown cluster "web" (not in static_resources.clusters)`},
		{"tcp_proxy to an unknown cluster", func(b *config.Bootstrap) { b.Clusters = b.Clusters[:1] },
			`static_resources.listeners[1].filter_chains[0].filters[0].typed_config.cluster: unknown cluster "db" (not in static_resources.clusters)`},
		{"cluster defined twice", func(b *config.Bootstrap) { b.Clusters = append(b.Clusters, staticCluster("web")) },
			`static_resources.clusters[2].name: duplicate cluster name "web" (also static_resources.clusters[0])`},
	}
	opts := func() Options {
		return Options{Logs: logging.NewRegistry(io.Discard, logging.LevelInfo), Stats: stats.New()}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := model()
			tc.change(b)
			srv, err := New(context.Background(), b, opts())
			if err == nil {
				_ = srv.Shutdown(context.Background())
				t.Fatal("New accepted the model")
			}
			if err.Error() != tc.want {
				t.Fatalf("New: %v\nwant %s", err, tc.want)
			}
		})
	}

	// A reload checks the same way, before building anything.
	srv, err := New(context.Background(), model(), opts())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	for _, tc := range tests {
		b := model()
		tc.change(b)
		if _, err := srv.Reload(context.Background(), b); err == nil || err.Error() != tc.want {
			t.Errorf("%s: Reload: %v\nwant %s", tc.name, err, tc.want)
		}
	}
	two := model()
	two.Listeners = append(two.Listeners, &config.Listener{Address: "127.0.0.1:0", FilterChains: []*config.FilterChain{tcpChain("db")}}, &config.Listener{Address: "127.0.0.1:0", FilterChains: []*config.FilterChain{tcpChain("db")}})
	if _, err := srv.Reload(context.Background(), two); err == nil || !strings.Contains(err.Error(), "without a name") {
		t.Errorf("a reload with two unnamed listeners: %v", err)
	}
}
