package config

import "slices"

// CloneLists returns a copy of b whose lists are its own: its
// Listeners, WasmServices and ExtensionConfigs, each listener with its
// FilterChains, each chain with its NetworkFilters and its HTTP
// connection manager with its HTTP filter list. The filters, plugins,
// routes and clusters themselves are shared. So the copy's lists can be
// edited — Istio plugins inserted, a filter replaced by a copy with its
// code resolved — while b stays as it was: a model given to the library
// is loaded again on every reload, unchanged.
func (b *Bootstrap) CloneLists() *Bootstrap {
	c := *b
	c.ExtensionConfigs = slices.Clone(b.ExtensionConfigs)
	c.WasmServices = slices.Clone(b.WasmServices)
	c.Listeners = make([]*Listener, len(b.Listeners))
	for i, l := range b.Listeners {
		nl := *l
		nl.FilterChains = make([]*FilterChain, len(l.FilterChains))
		for j, fc := range l.FilterChains {
			nc := *fc
			nc.NetworkFilters = slices.Clone(fc.NetworkFilters)
			if fc.HTTP != nil {
				h := *fc.HTTP
				h.Filters = slices.Clone(fc.HTTP.Filters)
				nc.HTTP = &h
			}
			nl.FilterChains[j] = &nc
		}
		c.Listeners[i] = &nl
	}
	return &c
}
