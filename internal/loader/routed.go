package loader

import (
	"context"
	"errors"
	"fmt"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
)

// routedPlugin is a Wasm HTTP filter with per-route plugin configurations
// (config.WasmRouteConfig): the filter's own plugin and one more per
// distinct configuration, each loaded with the same code and VM config so
// that the host puts it in the same VM (one more root context per
// instance, no instance of its own). A stream gets the plugin of the most
// specific configuration its route or virtual host gives, else the
// filter's own.
type routedPlugin struct {
	name    string
	base    *plugin
	byRoute map[string]*plugin // by configuration bytes
}

// loadRouted loads f's per-route configurations beside base, the filter's
// own plugin; on failure nothing stays loaded.
func (l *Loader) loadRouted(ctx context.Context, listener string, f *config.HTTPFilter, base *plugin) (*routedPlugin, error) {
	r := &routedPlugin{name: f.Name, base: base, byRoute: make(map[string]*plugin, len(f.Wasm.RouteConfigurations))}
	for i, rc := range f.Wasm.RouteConfigurations {
		pc := *f.Wasm
		pc.PluginConfiguration, pc.RouteConfigurations = rc, nil
		p, err := l.load(ctx, listener, &pc)
		if err != nil {
			_ = r.Close()
			return nil, fmt.Errorf("http filter %q: per-route configuration %d of %d: %w", f.Name, i+1, len(f.Wasm.RouteConfigurations), err)
		}
		r.byRoute[string(rc)] = p
	}
	return r, nil
}

// NewStreamFilter implements filter.Factory: the stream's route decides
// which root context serves it. The choice is made once, when the chain
// is built for the stream's initial route, as Envoy decides which filters
// run.
func (r *routedPlugin) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return r.pick(cb).NewStreamFilter(cb)
}

func (r *routedPlugin) pick(cb filter.Callbacks) *plugin {
	route, vhost := filters.PerRoute(cb, r.name)
	for _, c := range []any{route, vhost} {
		if rc, ok := c.(*config.WasmRouteConfig); ok {
			if p := r.byRoute[string(rc.Configuration)]; p != nil {
				return p
			}
		}
	}
	return r.base
}

// Close implements io.Closer: every plugin of the filter is released.
func (r *routedPlugin) Close() error {
	errs := []error{r.base.Close()}
	for _, p := range r.byRoute {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}
