package config

import "testing"

// TestCheck: the cross-reference rules hold for a model built in Go,
// with the words and paths Parse uses (the golden files show Parse's).
func TestCheck(t *testing.T) {
	model := func() *Bootstrap {
		return &Bootstrap{
			Source: "built.go",
			Listeners: []*Listener{
				{Name: "http", FilterChains: []*FilterChain{{
					NetworkFilters: []*NetworkFilter{{Name: "f"}},
					HTTP: &HTTPConnectionManager{Routes: &RouteConfig{VirtualHosts: []*VirtualHost{
						{Routes: []*Route{{DirectResponse: &DirectResponse{Status: 200}}, {Cluster: "web"}}},
					}}},
				}}},
				{Name: "tcp", FilterChains: []*FilterChain{{TCPProxy: &TCPProxy{Cluster: "db"}}}},
				{}, {}, // unnamed listeners may be several, as in Envoy
			},
			Clusters: []*Cluster{{Name: "web"}, {Name: "db"}},
		}
	}
	if err := model().Check(); err != nil {
		t.Fatalf("a consistent model: %v", err)
	}
	tests := []struct {
		name   string
		change func(b *Bootstrap)
		want   string
	}{
		{"route to an unknown cluster", func(b *Bootstrap) { b.Clusters = b.Clusters[1:] },
			`built.go: static_resources.listeners[0].filter_chains[0].filters[1].typed_config.route_config.virtual_hosts[0].routes[1].route.cluster: unknown cluster "web" (not in static_resources.clusters)`},
		{"tcp_proxy to an unknown cluster", func(b *Bootstrap) { b.Clusters = b.Clusters[:1] },
			`built.go: static_resources.listeners[1].filter_chains[0].filters[0].typed_config.cluster: unknown cluster "db" (not in static_resources.clusters)`},
		{"duplicate cluster", func(b *Bootstrap) { b.Clusters = append(b.Clusters, &Cluster{Name: "web"}) },
			`built.go: static_resources.clusters[2].name: duplicate cluster name "web" (also static_resources.clusters[0])`},
		{"duplicate listener", func(b *Bootstrap) { b.Listeners[3].Name = "tcp" },
			`built.go: static_resources.listeners[3].name: duplicate listener name "tcp" (also static_resources.listeners[1])`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := model()
			tc.change(b)
			err := b.Check()
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Check() = %v\nwant %s", err, tc.want)
			}
		})
	}
}
