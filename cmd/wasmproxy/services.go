package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/config/redact"
	"github.com/wasmproxy/wasmproxy/stats"
	"github.com/wasmproxy/wasmproxy/wasm"
)

// wasmServices are the running bootstrap_extensions (envoy.bootstrap.wasm):
// plugins with no traffic of their own, started once with the proxy.
// A reload leaves them running, as Envoy's bootstrap is not reloaded.
type wasmServices struct {
	plugins []*wasm.Plugin
}

// startServices loads every Wasm service of the config, after the
// clusters are reachable (so on_configure and ticks can make callouts)
// and before the listeners serve. A service that fails to load stops
// the start-up with one line naming it; remote code that cannot be
// fetched is skipped with an error log when the service's failure policy
// is FAIL_OPEN, as a filter would be.
func startServices(ctx context.Context, host *wasm.Host, loader *wasmLoader, cfg *config.Bootstrap, log *slog.Logger) (*wasmServices, error) {
	s := &wasmServices{}
	for i, svc := range cfg.WasmServices {
		where := fmt.Sprintf("bootstrap_extensions[%d]: %s", i, svc)
		pc := *svc.Wasm
		if pc.CodeFile != "" {
			pc.CodeFile = resolveCodeFile(pc.CodeFile, loader.configDir)
		}
		if pc.Remote != nil {
			url := redact.Text(pc.Remote.URL) // for messages
			fallback, err := loader.resolveRemote(ctx, where, &pc)
			if err != nil {
				s.close()
				return nil, err
			}
			if fallback != nil {
				if pc.FailurePolicy == config.FailOpen {
					log.Error("Wasm service not started: its code is unavailable", "service", svc.Name, "url", url)
					continue
				}
				s.close()
				return nil, fmt.Errorf("%s: code %s is unavailable (failure_policy %s)", where, url, pc.FailurePolicy)
			}
		}
		p, err := host.LoadService(ctx, &pc, svc.Singleton)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		s.plugins = append(s.plugins, p)
		log.Info("Wasm service started", "service", svc.Name, "plugin", pc.Name, "singleton", svc.Singleton, "instances", p.Instances())
	}
	return s, nil
}

// close stops every service (proxy_on_done, proxy_on_delete).
func (s *wasmServices) close() {
	for _, p := range s.plugins {
		_ = p.Close(context.Background())
	}
	s.plugins = nil
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
