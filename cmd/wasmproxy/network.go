package main

import (
	"context"
	"fmt"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/config/redact"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/wasm"
)

// LoadNetworkFilter implements proxy.NetworkFilterLoader: a Wasm plugin
// in a TCP filter chain (envoy.filters.network.wasm). Code is found as
// for HTTP filters; remote code that cannot be fetched at start-up leaves
// the chain without the plugin (FAIL_OPEN) or closes every connection
// (otherwise), as Istio's agent does with its allow/deny fallback.
func (l *wasmLoader) LoadNetworkFilter(ctx context.Context, listener string, f *config.NetworkFilter) (filter.NetworkFactory, error) {
	if f.Wasm == nil {
		return nil, fmt.Errorf("listener %q: network filter %q is not supported", listener, f.Name)
	}
	pc := *f.Wasm
	if pc.CodeFile != "" {
		pc.CodeFile = resolveCodeFile(pc.CodeFile, l.configDir)
	}
	if pc.Remote != nil {
		url := pc.Remote.URL
		fallback, err := l.resolveRemote(ctx, listener, &pc)
		if err != nil {
			return nil, err
		}
		if fallback != nil {
			if pc.FailurePolicy == config.FailOpen {
				return networkFallback{}, nil
			}
			return networkFallback{deny: true}, nil
		}
		p, err := l.host.LoadPlugin(ctx, &pc)
		if err != nil {
			return nil, fmt.Errorf("listener %q: %s: %w", listener, redact.Text(url), err)
		}
		l.keep(p)
		return p, nil
	}
	p, err := l.host.LoadPlugin(ctx, &pc)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", listener, err)
	}
	l.keep(p)
	return p, nil
}

// ReleaseNetworkFilter implements proxy.NetworkFilterReleaser: a reload
// retired the listener running f and its last connection has ended.
func (l *wasmLoader) ReleaseNetworkFilter(ctx context.Context, f filter.NetworkFactory) {
	p, ok := f.(*wasm.Plugin)
	if !ok {
		return
	}
	l.mu.Lock()
	for i, q := range l.plugins {
		if q == p {
			l.plugins = append(l.plugins[:i], l.plugins[i+1:]...)
			break
		}
	}
	l.mu.Unlock()
	_ = p.Close(ctx)
	l.log.Info("retired network plugin closed", "plugin", p.Name())
}

// keep records a plugin so closeAll closes it.
func (l *wasmLoader) keep(p *wasm.Plugin) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.plugins = append(l.plugins, p)
}

// networkFallback stands in for a network plugin whose code is
// unavailable: it lets connections through, or (deny) closes them.
type networkFallback struct{ deny bool }

func (n networkFallback) NewNetworkFilter(cb filter.NetworkCallbacks) filter.NetworkFilter {
	return &fallbackConn{cb: cb, deny: n.deny}
}

type fallbackConn struct {
	cb   filter.NetworkCallbacks
	deny bool
}

func (c *fallbackConn) OnNewConnection() filter.NetworkStatus {
	if c.deny {
		c.cb.Close("wasm_plugin_unavailable")
		return filter.NetworkStopIteration
	}
	return filter.NetworkContinue
}

func (c *fallbackConn) OnDownstreamData(*filter.Buffer, bool) filter.NetworkStatus {
	if c.deny {
		return filter.NetworkStopIteration
	}
	return filter.NetworkContinue
}

func (c *fallbackConn) OnUpstreamData(*filter.Buffer, bool) filter.NetworkStatus {
	return filter.NetworkContinue
}

func (c *fallbackConn) OnUpstreamClose(filter.PeerType)   {}
func (c *fallbackConn) OnDownstreamClose(filter.PeerType) {}
func (c *fallbackConn) OnDestroy()                        {}
