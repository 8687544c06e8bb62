package wasmproxy

import (
	"fmt"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/istio"
	"github.com/wasmproxy/wasmproxy/stats"
)

// load reads the model a load or reload starts from: the bootstrap
// (Options.ConfigPath, read again each time, or a copy of
// Options.Bootstrap) with the EnvoyFilter patches of
// Options.IstioResources applied to it before it is built, and the
// WasmPlugins inserted into its listeners.
func (p *Proxy) load() (*config.Bootstrap, error) {
	var res *istio.Resources
	if path := p.opts.IstioResources; path != "" {
		var err error
		if res, err = istio.LoadResources(path); err != nil {
			return nil, fmt.Errorf("--istio-resources: %w", err)
		}
	}
	var cfg *config.Bootstrap
	var patches []*istio.Patch
	switch {
	case p.opts.Bootstrap != nil:
		if res != nil && len(res.EnvoyFilters) > 0 {
			f := res.EnvoyFilters[0]
			return nil, fmt.Errorf("--istio-resources: %s: EnvoyFilter %s: EnvoyFilters patch an Envoy config file (Options.ConfigPath), not a built model (Options.Bootstrap)", f.File, f.FullName())
		}
		cfg = p.opts.Bootstrap.CloneLists() // Istio's plugins go into the copy
	default:
		var patch config.Patch
		if res != nil && len(res.EnvoyFilters) > 0 {
			version := p.opts.IstioVersion
			if version == "" {
				version = istio.DefaultIstioVersion
			}
			patch = func(pb *bootstrapv3.Bootstrap) error {
				var err error
				patches, err = istio.ApplyEnvoyFilters(pb, res.EnvoyFilters, version)
				if err != nil {
					return fmt.Errorf("--istio-resources: %w", err)
				}
				return nil
			}
		}
		var err error
		if cfg, err = config.LoadPatched(p.opts.ConfigPath, p.opts.Overrides.Then(config.Chain(p.xds.patch, patch))); err != nil {
			if len(patches) > 0 {
				// The patched config does not build: say which patches
				// made it, since the error's path is in the patched config.
				return nil, fmt.Errorf("%w (after EnvoyFilter patches: %s)", err, appliedSummary(patches))
			}
			return nil, err
		}
	}
	for _, pt := range patches {
		if len(pt.Applied) == 0 {
			p.log.Warn("EnvoyFilter patch matched nothing", "envoyfilter", pt.Filter.FullName(), "patch", pt.Index,
				"applyTo", pt.ApplyTo.String(), "operation", pt.Op.String(), "why", strings.Join(pt.Misses, "; "), "file", pt.Filter.File)
		} else {
			p.log.Info("EnvoyFilter patch applied", "envoyfilter", pt.Filter.FullName(), "patch", pt.Index,
				"applyTo", pt.ApplyTo.String(), "operation", pt.Op.String(), "where", strings.Join(pt.Applied, "; "))
		}
	}
	if res == nil || len(res.Plugins) == 0 {
		p.warnUnattachedRouteConfigs(cfg)
		return cfg, nil
	}
	plugins := res.Plugins
	applied, err := istio.Apply(cfg, plugins)
	if err != nil {
		return nil, fmt.Errorf("--istio-resources: %w", err)
	}
	for _, pl := range plugins {
		if ec, err := pl.ExtensionConfig(); err == nil {
			cfg.ExtensionConfigs = append(cfg.ExtensionConfigs, ec)
		}
		if len(applied[pl.FullName()]) == 0 {
			p.log.Warn("WasmPlugin goes into no listener: its ports or mode match none, or (an HTTP plugin) only listeners that proxy TCP",
				"plugin", pl.FullName(), "type", pl.Spec.GetType().String(), "file", pl.File)
		} else {
			p.log.Info("WasmPlugin inserted", "plugin", pl.FullName(), "listeners", applied[pl.FullName()], "phase", pl.Spec.GetPhase().String())
		}
	}
	p.warnUnattachedRouteConfigs(cfg)
	return cfg, nil
}

// warnUnattachedRouteConfigs warns about per-route Wasm configurations
// that name no HTTP filter of their connection manager once every filter
// is in (Envoy ignores them silently; they are most likely a typo, or an
// Istio WasmPlugin that matched no listener).
func (p *Proxy) warnUnattachedRouteConfigs(cfg *config.Bootstrap) {
	for _, l := range cfg.Listeners {
		for _, c := range l.FilterChains {
			if c.HTTP == nil {
				continue
			}
			for _, where := range config.UnattachedWasmRouteConfigs(c.HTTP) {
				p.log.Warn("per-route Wasm configuration names no HTTP filter of its connection manager; it is ignored", "listener", l.Name, "entry", where)
			}
		}
	}
}

// appliedSummary names the patches that changed the config.
func appliedSummary(patches []*istio.Patch) string {
	var out []string
	for _, pt := range patches {
		if len(pt.Applied) > 0 {
			out = append(out, pt.Key())
		}
	}
	if len(out) == 0 {
		return "none applied"
	}
	return strings.Join(out, ", ")
}

// statsTagConfig turns stats_config into the tag extraction of
// /stats/prometheus.
func statsTagConfig(sc *config.StatsConfig) stats.TagConfig {
	if sc == nil {
		return stats.TagConfig{}
	}
	tc := stats.TagConfig{NoDefaultTags: !sc.UseAllDefaultTags}
	for _, t := range sc.Tags {
		spec := stats.TagSpecifier{Name: t.Name}
		if t.Regex != nil {
			spec.Regex = t.Regex.Regexp
		}
		if t.FixedValue != nil {
			spec.FixedValue = *t.FixedValue
		}
		tc.Specifiers = append(tc.Specifiers, spec)
	}
	return tc
}
