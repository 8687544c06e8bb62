package config

// Check applies the rules that tie a model's parts together, as Envoy
// does when it loads static resources: cluster names are unique, listener
// names (where given) are unique, and every route and tcp_proxy names a
// cluster of the model. Parse checks them on every model it returns; a
// model built in Go (or, later, from xDS) has not been through Parse, so
// the proxy checks each model it is given. This is the one place these
// rules live. Errors are *Error values with Source b.Source and the field
// path the config has (or, for a model built in Go, would have).
func (b *Bootstrap) Check() error {
	return withSource(b.check(), b.Source)
}

func (b *Bootstrap) check() error {
	clusters := map[string]int{}
	for i, c := range b.Clusters {
		if first, dup := clusters[c.Name]; dup {
			return fieldError(joinPath(indexPath("static_resources.clusters", i), "name"), "duplicate cluster name %q (also static_resources.clusters[%d])", c.Name, first)
		}
		clusters[c.Name] = i
	}
	unknown := func(path, name string) error {
		return fieldError(path, "unknown cluster %q (not in static_resources.clusters)", name)
	}
	if err := b.Tracer.checkCluster("tracing.http.typed_config", clusters); err != nil {
		return err
	}
	listeners := map[string]int{}
	for i, l := range b.Listeners {
		path := indexPath("static_resources.listeners", i)
		if l.Name != "" {
			if first, dup := listeners[l.Name]; dup {
				return fieldError(joinPath(path, "name"), "duplicate listener name %q (also static_resources.listeners[%d])", l.Name, first)
			}
			listeners[l.Name] = i
		}
		for ci, c := range l.FilterChains {
			at := c.terminalPath(indexPath(joinPath(path, "filter_chains"), ci))
			if t := c.TCPProxy; t != nil {
				if _, ok := clusters[t.Cluster]; !ok {
					return unknown(joinPath(at, "cluster"), t.Cluster)
				}
			}
			if c.HTTP != nil {
				if err := c.HTTP.Tracing.checkClusters(at, clusters); err != nil {
					return err
				}
			}
			if c.HTTP == nil || c.HTTP.Routes == nil {
				continue
			}
			for vi, vh := range c.HTTP.Routes.VirtualHosts {
				vhPath := indexPath(joinPath(at, "route_config.virtual_hosts"), vi)
				for ri, r := range vh.Routes {
					rPath := indexPath(joinPath(vhPath, "routes"), ri)
					for wi, wc := range r.WeightedClusters {
						if _, ok := clusters[wc.Name]; !ok {
							return unknown(joinPath(indexPath(joinPath(rPath, "route.weighted_clusters.clusters"), wi), "name"), wc.Name)
						}
					}
					for mi, m := range r.MirrorPolicies {
						if m.Cluster == "" {
							continue // named by a request header
						}
						if _, ok := clusters[m.Cluster]; !ok {
							return fieldError(joinPath(indexPath(joinPath(rPath, "route.request_mirror_policies"), mi), "cluster"),
								"unknown shadow cluster %q (not in static_resources.clusters)", m.Cluster)
						}
					}
					if r.Cluster == "" {
						continue // weighted clusters, cluster_header, a direct response or a redirect
					}
					if _, ok := clusters[r.Cluster]; !ok {
						return unknown(joinPath(rPath, "route.cluster"), r.Cluster)
					}
				}
			}
		}
	}
	return nil
}

// terminalPath is the field path of the chain's terminal filter config
// (the HttpConnectionManager or TcpProxy): as Parse found it, or, for a
// chain built in Go, where the config would have it (after the network
// filters). chainPath is the chain's own path.
func (c *FilterChain) terminalPath(chainPath string) string {
	if c.terminalAt != "" {
		return c.terminalAt
	}
	return joinPath(indexPath(joinPath(chainPath, "filters"), len(c.NetworkFilters)), "typed_config")
}
