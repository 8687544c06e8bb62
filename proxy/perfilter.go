package proxy

import (
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/filterchain"
)

var _ filterchain.FilterSelector = (*chainHost)(nil)

// FilterDisabled implements filterchain.FilterSelector: filter i of the
// stream's filter generation is left out when the stream's initial route
// or virtual host disables it (typed_per_filter_config), or when
// http_filters disables it by default and neither enables it. newStream
// matches the route before it builds the chain, so the decision is the
// initial route's, as in Envoy.
func (h *chainHost) FilterDisabled(i int) bool {
	s := (*stream)(h)
	return config.FilterDisabled(s.chain.configs[i], s.routeVH, s.route)
}

var _ filter.PerFilterConfigs = (*chainHost)(nil)

// PerFilterConfig implements filter.PerFilterConfigs over the stream's
// current route (it follows clear_route_cache, as Envoy's
// mostSpecificPerFilterConfig does).
func (h *chainHost) PerFilterConfig(name string) (route, vhost any) {
	s := (*stream)(h)
	if s.route != nil {
		route = s.route.FilterOverrides[name].Config
	}
	if s.routeVH != nil {
		vhost = s.routeVH.FilterOverrides[name].Config
	}
	return route, vhost
}

// Route returns the stream's current route and its virtual host (nil
// when none matched): for native filters that read route fields, as the
// global rate limit filter reads rate_limits.
func (h *chainHost) Route() (*config.Route, *config.VirtualHost) {
	s := (*stream)(h)
	return s.route, s.routeVH
}

// ServiceCluster is node.cluster (the rate limit source_cluster action).
func (h *chainHost) ServiceCluster() string {
	return (*stream)(h).cm.srv.serviceCluster
}
