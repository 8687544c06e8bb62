package wasmproxy

import (
	"hash/fnv"
	"time"

	"github.com/wasmproxy/wasmproxy/xds"
)

// xdsScope is the stat prefix of one xDS subscription as Envoy names it
// (ending in "."), and for RDS and ECDS the resource it counts.
type xdsScope struct{ prefix, name string }

// statScopes are the subscriptions an update of typeURL delivering
// names counts under, as in Envoy: cluster_manager.cds.,
// listener_manager.lds., http.<stat_prefix>.rds.<route_config_name>.
// for each connection manager naming the route configuration,
// cluster.<name>. for each cluster of an EDS service, and
// extension_config_discovery.http_filter.<name>. for an HTTP filter's
// ECDS config, sds.<name>. for a secret. r.mu is held.
func (r *xdsResources) statScopes(typeURL string, names []string) []xdsScope {
	switch typeURL {
	case xds.ClusterType:
		return []xdsScope{{prefix: "cluster_manager.cds."}}
	case xds.ListenerType:
		return []xdsScope{{prefix: "listener_manager.lds."}}
	}
	var out []xdsScope
	for _, name := range names {
		switch typeURL {
		case xds.RouteType:
			for _, sp := range r.rdsPrefixes[name] {
				out = append(out, xdsScope{"http." + sp + ".rds." + name + ".", name})
			}
		case xds.EndpointType:
			for _, c := range r.edsClusters[name] {
				out = append(out, xdsScope{"cluster." + c + ".", name})
			}
		case xds.ExtensionConfigType:
			out = append(out, xdsScope{"extension_config_discovery.http_filter." + name + ".", name})
		case xds.SecretType:
			out = append(out, xdsScope{"sds." + name + ".", name})
		}
	}
	return out
}

func (p *Proxy) xdsAttempt(scopes []xdsScope) {
	for _, s := range scopes {
		p.stats.Counter(s.prefix + "update_attempt").Inc()
	}
}

// xdsRejected counts a NACKed update; an ECDS config that fails is
// also Envoy's config_fail.
func (p *Proxy) xdsRejected(typeURL string, scopes []xdsScope) {
	for _, s := range scopes {
		p.stats.Counter(s.prefix + "update_rejected").Inc()
		if typeURL == xds.ExtensionConfigType {
			p.stats.Counter(s.prefix + "config_fail").Inc()
		}
	}
}

// xdsSuccess counts an accepted update: update_success, the version
// gauge (a hash of version_info), update_time (ms since the epoch) and,
// for a route configuration or ECDS config that changed, config_reload.
func (p *Proxy) xdsSuccess(typeURL, version string, scopes []xdsScope, changed map[string]bool, now time.Time) {
	for _, s := range scopes {
		p.stats.Counter(s.prefix + "update_success").Inc()
		p.stats.Gauge(s.prefix + "version").Set(versionHash(version))
		p.stats.Gauge(s.prefix + "update_time").Set(now.UnixMilli())
		if (typeURL == xds.RouteType || typeURL == xds.ExtensionConfigType) && changed[s.name] {
			p.stats.Counter(s.prefix + "config_reload").Inc()
		}
	}
}

// versionHash is the version gauge's value. Envoy's is xxHash64 of
// version_info as an unsigned gauge; ours is FNV-1a with the top bit
// cleared (our gauges are signed): the numbers differ from Envoy's,
// but, as there, equal versions give equal values and a change shows.
func versionHash(version string) int64 {
	h := fnv.New64a()
	h.Write([]byte(version))
	return int64(h.Sum64() &^ (1 << 63))
}

// xdsStreamClosed counts a broken or failed ADS stream against the CDS
// and LDS subscriptions it carried (Envoy's update_failure: a
// connection failure of the gRPC mux).
func (p *Proxy) xdsStreamClosed(cds, lds bool) {
	if cds {
		p.stats.Counter("cluster_manager.cds.update_failure").Inc()
	}
	if lds {
		p.stats.Counter("listener_manager.lds.update_failure").Inc()
	}
}

// xdsInitFetchTimeout counts initial_fetch_timeout firing before CDS or
// LDS had a response (Envoy's init_fetch_timeout).
func (p *Proxy) xdsInitFetchTimeout(cds, lds bool) {
	r := &p.xds
	r.mu.Lock()
	_, cdsSeen := r.versions[xds.ClusterType]
	_, ldsSeen := r.versions[xds.ListenerType]
	r.mu.Unlock()
	if cds && !cdsSeen {
		p.stats.Counter("cluster_manager.cds.init_fetch_timeout").Inc()
	}
	if lds && !ldsSeen {
		p.stats.Counter("listener_manager.lds.init_fetch_timeout").Inc()
	}
}

// xdsGauges sets Envoy's listener and cluster manager gauges from the
// last patch: listener_manager.total_listeners_active and
// total_listeners_warming, cluster_manager.active_clusters and
// warming_clusters (static ones counted as active, as in Envoy).
func (p *Proxy) xdsGauges() {
	r := &p.xds
	r.mu.Lock()
	c := r.counts
	r.settle()
	r.mu.Unlock()
	p.stats.Gauge("listener_manager.total_listeners_active").Set(int64(c.activeListeners))
	p.stats.Gauge("listener_manager.total_listeners_warming").Set(int64(c.warmingListeners))
	p.stats.Gauge("cluster_manager.active_clusters").Set(int64(c.activeClusters))
	p.stats.Gauge("cluster_manager.warming_clusters").Set(int64(c.warmingClusters))
	if c.warmingListeners == 0 && c.warmingClusters == 0 {
		p.xdsWarmingInit.Store(false) // initialization has ended
	}
}
