package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/wasmproxy/wasmproxy/config"
)

// ReloadPlan is what a reload changes.
type ReloadPlan struct {
	// FilterSwaps are HTTP filter changes on listeners that are kept.
	FilterSwaps []HTTPFilterSwap
	// RoutesChanged names ("listener/chain") the kept connection managers
	// whose route_config changed.
	RoutesChanged []string

	ClustersAdded, ClustersChanged, ClustersRemoved    []string
	ListenersAdded, ListenersChanged, ListenersRemoved []string
}

// HTTPFilterSwap is new HTTP filters for one kept connection manager.
type HTTPFilterSwap struct {
	Listener string
	Chain    int
	// Filters are the new HTTP filters, router excluded.
	Filters []*config.HTTPFilter
}

// Empty reports whether the new config changes nothing.
func (p *ReloadPlan) Empty() bool {
	return len(p.FilterSwaps)+len(p.RoutesChanged)+len(p.ClustersAdded)+len(p.ClustersChanged)+
		len(p.ClustersRemoved)+len(p.ListenersAdded)+len(p.ListenersChanged)+len(p.ListenersRemoved) == 0
}

// Summary lists the changes for logs and /reload_status: "main/0" for a
// filter swap, "routes main/0", "cluster+ x", "cluster~ x", "cluster- x",
// "listener+ x", "listener~ x", "listener- x".
func (p *ReloadPlan) Summary() []string {
	var out []string
	for _, sw := range p.FilterSwaps {
		out = append(out, fmt.Sprintf("%s/%d", sw.Listener, sw.Chain))
	}
	add := func(prefix string, names []string) {
		for _, n := range names {
			out = append(out, prefix+n)
		}
	}
	add("routes ", p.RoutesChanged)
	add("cluster+ ", p.ClustersAdded)
	add("cluster~ ", p.ClustersChanged)
	add("cluster- ", p.ClustersRemoved)
	add("listener+ ", p.ListenersAdded)
	add("listener~ ", p.ListenersChanged)
	add("listener- ", p.ListenersRemoved)
	return out
}

// Diff plans turning the running model old into next. It is a pure
// function of the two models: no callback, no I/O. A listener is kept
// (same socket, same connections) when nothing but its HTTP filters and
// route configs differ; otherwise it is changed and will be replaced. A
// cluster whose config differs is changed. Kept listeners whose HTTP
// filters all compare equal are left alone, so their plugins keep their
// state. The plan is by filter chain; which plugins of a rebuilt chain
// keep their root contexts is the loader's business (internal/loader
// hands a plugin whose config did not change out again).
//
// A plugin's code is compared by its CodeDigest where it has one (the
// models of a reload are resolved first, which stamps every plugin with
// the digest of its code), so a rebuilt module is a change and its bytes
// are never compared; a plugin without a digest is compared by its
// config as written.
func Diff(old, next *config.Bootstrap) (*ReloadPlan, error) {
	if err := next.Check(); err != nil { // names unique, clusters known
		return nil, err
	}
	p := &ReloadPlan{}
	oldClusters := map[string]*config.Cluster{}
	for _, c := range old.Clusters {
		oldClusters[c.Name] = c
	}
	seen := map[string]bool{}
	for _, c := range next.Clusters {
		seen[c.Name] = true
		switch o := oldClusters[c.Name]; {
		case o == nil:
			p.ClustersAdded = append(p.ClustersAdded, c.Name)
		case !jsonEqual(o, c):
			p.ClustersChanged = append(p.ClustersChanged, c.Name)
		}
	}
	for _, c := range old.Clusters {
		if !seen[c.Name] {
			p.ClustersRemoved = append(p.ClustersRemoved, c.Name)
		}
	}

	running := map[string]*config.Listener{}
	for _, l := range old.Listeners {
		running[l.Name] = l
	}
	seen = map[string]bool{}
	for _, l := range next.Listeners {
		if seen[l.Name] { // unnamed: Check allows several, as Envoy does
			return nil, fmt.Errorf("static_resources.listeners: more than one listener without a name; a reload tells listeners apart by name")
		}
		seen[l.Name] = true
		o := running[l.Name]
		if o == nil {
			p.ListenersAdded = append(p.ListenersAdded, l.Name)
			continue
		}
		if !jsonEqual(listenerShape(o), listenerShape(l)) {
			p.ListenersChanged = append(p.ListenersChanged, l.Name)
			continue
		}
		for ci, c := range l.FilterChains {
			if c.HTTP == nil {
				continue
			}
			oh := o.FilterChains[ci].HTTP // same shape: an HTTP chain too
			current, filters := withoutRouter(oh.Filters), withoutRouter(c.HTTP.Filters)
			changed := len(current) != len(filters)
			for i := 0; !changed && i < len(filters); i++ {
				changed = !jsonEqual(filterWithoutCode(current[i]), filterWithoutCode(filters[i]))
			}
			if changed {
				p.FilterSwaps = append(p.FilterSwaps, HTTPFilterSwap{Listener: l.Name, Chain: ci, Filters: filters})
			}
			if !jsonEqual(oh.Routes, c.HTTP.Routes) {
				p.RoutesChanged = append(p.RoutesChanged, fmt.Sprintf("%s/%d", l.Name, ci))
			}
		}
	}
	for _, l := range old.Listeners {
		if !seen[l.Name] {
			p.ListenersRemoved = append(p.ListenersRemoved, l.Name)
		}
	}
	return p, nil
}

// pluginWithoutCode is p without the bytes its CodeDigest stands for.
func pluginWithoutCode(p *config.WasmPlugin) *config.WasmPlugin {
	if p == nil || p.CodeDigest == "" || p.Code == nil {
		return p
	}
	c := *p
	c.Code = nil
	return &c
}

// filterWithoutCode is f for comparing: its plugin without code bytes.
func filterWithoutCode(f *config.HTTPFilter) *config.HTTPFilter {
	if w := pluginWithoutCode(f.Wasm); w != f.Wasm {
		c := *f
		c.Wasm = w
		return &c
	}
	return f
}

// listenerShape is l for comparing whether it can be kept: without its
// HTTP filters and route configs (which a kept listener swaps) and
// without its network plugins' code bytes.
func listenerShape(l *config.Listener) *config.Listener {
	c := *l
	c.FilterChains = make([]*config.FilterChain, len(l.FilterChains))
	for i, fc := range l.FilterChains {
		nc := *fc
		nc.NetworkFilters = make([]*config.NetworkFilter, len(fc.NetworkFilters))
		for j, nf := range fc.NetworkFilters {
			nn := *nf
			nn.Wasm = pluginWithoutCode(nf.Wasm)
			nc.NetworkFilters[j] = &nn
		}
		if fc.HTTP != nil {
			h := *fc.HTTP
			h.Filters, h.Routes = nil, nil
			nc.HTTP = &h
		}
		c.FilterChains[i] = &nc
	}
	return &c
}

func jsonEqual(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

func withoutRouter(fs []*config.HTTPFilter) []*config.HTTPFilter {
	out := make([]*config.HTTPFilter, 0, len(fs))
	for _, f := range fs {
		if !f.Router {
			out = append(out, f)
		}
	}
	return out
}
