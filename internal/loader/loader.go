// Package loader builds the proxy's filters and services from resolved
// Wasm plugin configs (internal/resolve): it is the proxy's FilterLoader
// and NetworkFilterLoader over a wasm.Host, serves a plugin whose
// remote code could not be fetched at start-up by its failure policy
// (fallback.go), and starts the Wasm services. Each plugin it loads is
// closed once: by the proxy, through io.Closer, when a reload has
// replaced it and its last stream or connection has ended, or by Close.
//
// A plugin whose configuration a reload leaves as it was is not loaded
// again: the filter the reload builds shares the running plugin (its
// root contexts and their state) with the filter it replaces, and only a
// configuration that is new gets a root context of its own (shared.go).
package loader

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/config/redact"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
	"github.com/wasmproxy/wasmproxy/internal/resolve"
	"github.com/wasmproxy/wasmproxy/stats"
	"github.com/wasmproxy/wasmproxy/wasm"
)

// Loader loads plugins into one host. It is safe for concurrent use.
type Loader struct {
	host   *wasm.Host
	native map[string]filter.Factory
	stats  *stats.Store
	log    *slog.Logger

	mu       sync.Mutex
	open     map[string]*sharedPlugin // filter plugins not yet closed, by sharedKey
	services []*wasm.Plugin
}

// New returns a loader over host. native are Go filters by name: an
// HTTP filter without a plugin (and not the router) is looked up there;
// they are shared by every filter set that names them, and never closed.
// Filters of the native registry (package filters, config.NativeFilter)
// are made by their registered New, with their stats in st.
func New(host *wasm.Host, native map[string]filter.Factory, st *stats.Store, log *slog.Logger) *Loader {
	return &Loader{host: host, native: native, stats: st, log: log, open: map[string]*sharedPlugin{}}
}

// LoadHTTPFilter implements proxy.FilterLoader.
func (l *Loader) LoadHTTPFilter(ctx context.Context, listener string, f *config.HTTPFilter) (filter.Factory, error) {
	if n := f.Native; n != nil {
		reg := filters.Lookup(protoreflect.FullName(n.Type))
		if reg == nil {
			return nil, fmt.Errorf("listener %q: http filter %q: %s is not linked into this binary", listener, f.Name, n.Type)
		}
		fac, err := reg.New(n.Config, filters.Env{FilterName: f.Name, StatPrefix: n.StatPrefix, Stats: l.stats, Upstreams: hostUpstreams{l.host}, Server: hostServer{l.host}, Log: l.log})
		if err != nil {
			return nil, fmt.Errorf("listener %q: http filter %q: %w", listener, f.Name, err)
		}
		return fac, nil
	}
	if f.Wasm == nil {
		if fac := l.native[f.Name]; fac != nil {
			return fac, nil
		}
		return nil, fmt.Errorf("listener %q: http filter %q is not supported", listener, f.Name)
	}
	if resolve.Unavailable(f.Wasm) {
		if f.Wasm.FailurePolicy == config.FailOpen {
			return passThrough{}, nil
		}
		return failClosed{}, nil
	}
	base, err := l.load(ctx, listener, f.Wasm)
	if err != nil || len(f.Wasm.RouteConfigurations) == 0 {
		return base, err
	}
	return l.loadRouted(ctx, listener, f, base)
}

// LoadNetworkFilter implements proxy.NetworkFilterLoader: a native
// network filter of the registry (envoy.filters.network.rbac), or a Wasm
// plugin in a filter chain (envoy.filters.network.wasm). Remote code that
// could not be fetched at start-up leaves the chain without the plugin
// (FAIL_OPEN) or closes every connection (otherwise), as Istio's agent
// does with its allow/deny fallback.
func (l *Loader) LoadNetworkFilter(ctx context.Context, listener string, f *config.NetworkFilter) (filter.NetworkFactory, error) {
	if n := f.Native; n != nil {
		reg := filters.LookupNetwork(protoreflect.FullName(n.Type))
		if reg == nil {
			return nil, fmt.Errorf("listener %q: network filter %q: %s is not linked into this binary", listener, f.Name, n.Type)
		}
		fac, err := reg.New(n.Config, filters.Env{FilterName: f.Name, Stats: l.stats, Upstreams: hostUpstreams{l.host}, Server: hostServer{l.host}, Log: l.log})
		if err != nil {
			return nil, fmt.Errorf("listener %q: network filter %q: %w", listener, f.Name, err)
		}
		return fac, nil
	}
	if f.Wasm == nil {
		return nil, fmt.Errorf("listener %q: network filter %q is not supported", listener, f.Name)
	}
	if resolve.Unavailable(f.Wasm) {
		return networkFallback{deny: f.Wasm.FailurePolicy != config.FailOpen}, nil
	}
	return l.load(ctx, listener, f.Wasm)
}

// StartServices loads every Wasm service of a resolved config
// (bootstrap_extensions of type envoy.bootstrap.wasm: plugins with no
// traffic of their own), after the clusters are reachable (so
// on_configure and ticks can make callouts) and before the listeners
// serve. A service that fails to load stops the start-up with one line
// naming it; a service whose remote code could not be fetched is skipped
// with an error log when its failure policy is FAIL_OPEN, as a filter
// would be. A reload leaves the services running, as Envoy's bootstrap
// is not reloaded; Close stops them.
func (l *Loader) StartServices(ctx context.Context, cfg *config.Bootstrap) error {
	for i, svc := range cfg.WasmServices {
		where := fmt.Sprintf("bootstrap_extensions[%d]: %s", i, svc)
		pc := *svc.Wasm
		if pc.Remote != nil {
			url := redact.Text(pc.Remote.URL) // for messages
			if resolve.Unavailable(&pc) {
				if pc.FailurePolicy == config.FailOpen {
					l.log.Error("Wasm service not started: its code is unavailable", "service", svc.Name, "url", url)
					continue
				}
				return fmt.Errorf("%s: code %s is unavailable (failure_policy %s)", where, url, pc.FailurePolicy)
			}
			pc.Remote = nil
		}
		p, err := l.host.LoadService(ctx, &pc, svc.Singleton)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		l.mu.Lock()
		l.services = append(l.services, p)
		l.mu.Unlock()
		l.log.Info("Wasm service started", "service", svc.Name, "plugin", pc.Name, "singleton", svc.Singleton, "instances", p.Instances())
	}
	return nil
}

// Close stops the services (proxy_on_done, proxy_on_delete), then closes
// every plugin the proxy has not released.
func (l *Loader) Close() {
	l.mu.Lock()
	services, open := l.services, l.open
	l.services, l.open = nil, map[string]*sharedPlugin{}
	l.mu.Unlock()
	for _, p := range services {
		_ = p.Close(context.Background())
	}
	for _, sp := range open {
		_ = sp.p.Close(context.Background())
	}
}
