package wasmproxy

import (
	"fmt"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/istio"
	"github.com/wasmproxy/wasmproxy/stats"
)

// load reads the model a load or reload starts from: the bootstrap
// (Options.ConfigPath, read again each time, or a copy of
// Options.Bootstrap) with the Istio WasmPlugins of Options.WasmPlugins
// inserted into its listeners.
func (p *Proxy) load() (*config.Bootstrap, error) {
	var cfg *config.Bootstrap
	if p.opts.Bootstrap != nil {
		cfg = p.opts.Bootstrap.CloneLists() // Istio's plugins go into the copy
	} else {
		var err error
		if cfg, err = config.LoadWith(p.opts.ConfigPath, p.opts.Overrides); err != nil {
			return nil, err
		}
	}
	if p.opts.WasmPlugins == "" {
		return cfg, nil
	}
	plugins, err := istio.Load(p.opts.WasmPlugins)
	if err != nil {
		return nil, fmt.Errorf("--wasm-plugins: %w", err)
	}
	applied, err := istio.Apply(cfg, plugins)
	if err != nil {
		return nil, fmt.Errorf("--wasm-plugins: %w", err)
	}
	for _, pl := range plugins {
		if ec, err := pl.ExtensionConfig(); err == nil {
			cfg.ExtensionConfigs = append(cfg.ExtensionConfigs, ec)
		}
		if len(applied[pl.FullName()]) == 0 {
			p.log.Warn("WasmPlugin goes into no listener: its ports match none, or (an HTTP plugin) only listeners that proxy TCP",
				"plugin", pl.FullName(), "type", pl.Spec.GetType().String(), "file", pl.File)
		} else {
			p.log.Info("WasmPlugin inserted", "plugin", pl.FullName(), "listeners", applied[pl.FullName()], "phase", pl.Spec.GetPhase().String())
		}
	}
	return cfg, nil
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
