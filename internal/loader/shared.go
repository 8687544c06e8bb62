package loader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/config/redact"
	"github.com/wasmproxy/wasmproxy/wasm"
)

// A reload rebuilds the filters of a connection manager whose filters
// changed, all of them (proxy.Diff plans by filter chain). Loading a
// plugin again would give every filter of that chain — and every
// per-route configuration of a routed filter — a new root context:
// proxy_on_context_create and on_configure again, and the state the old
// root context kept lost. So the loader hands out a running plugin again
// when the same listener asks for the same configuration: each load
// holds a reference, and the plugin is closed (proxy_on_done and
// proxy_on_delete in every instance) when the last filter holding it has
// been released, that is after the last stream of the last generation
// that used it. An unchanged configuration keeps its root contexts and
// their state across any number of reloads; an added one is loaded (one
// more root context in the existing instances, as the host's VM key puts
// it in the same VM); a removed one is closed once its streams have
// ended. This is Envoy's behaviour too: its worker-local plugin handles
// are cached by the plugin's key (root_id, configuration and a hash of
// the plugin's config), so a listener update that keeps a plugin's config
// finds the running root context instead of configuring a new one.

// sharedPlugin is a loaded plugin and how many loads hold it.
type sharedPlugin struct {
	p    *wasm.Plugin
	key  string
	refs int
}

// sharedKey names what makes two loads the same plugin: the listener (or
// "cluster NAME" for upstream filters) and the whole resolved config, the
// code by its digest, without the per-route configurations (the loader
// loads each as a plugin of its own; the filter's own root context does
// not depend on them). A config without a digest whose code is only a
// file name (not resolved) is never shared: the file may have changed.
func sharedKey(listener string, w *config.WasmPlugin) string {
	c := *w
	c.RouteConfigurations = nil
	switch {
	case c.CodeDigest != "":
		c.Code = nil
	case len(c.Code) == 0:
		return ""
	}
	b, err := json.Marshal(&c)
	if err != nil {
		return ""
	}
	h := sha256.New()
	h.Write([]byte(listener))
	h.Write([]byte{0})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// load loads a resolved plugin config, or takes one more reference on
// the running plugin of the same key; errors name the listener and, for
// remote code, the URL (credentials redacted).
func (l *Loader) load(ctx context.Context, listener string, w *config.WasmPlugin) (*plugin, error) {
	key := sharedKey(listener, w)
	if sp := l.acquire(key); sp != nil {
		l.log.Debug("plugin kept: its configuration is unchanged", "plugin", sp.p.Name(), "listener", listener)
		return &plugin{Plugin: sp.p, l: l, shared: sp}, nil
	}
	pc := *w
	url := ""
	if pc.Remote != nil {
		url, pc.Remote = pc.Remote.URL, nil // the code is in pc.Code
	}
	p, err := l.host.LoadPlugin(ctx, &pc)
	switch {
	case err != nil && url != "":
		return nil, fmt.Errorf("listener %q: %s: %w", listener, redact.Text(url), err)
	case err != nil:
		return nil, fmt.Errorf("listener %q: %w", listener, err)
	}
	sp := &sharedPlugin{p: p, key: key, refs: 1}
	l.mu.Lock()
	if key == "" || l.open[key] != nil {
		// Not shareable, or loaded meanwhile by a concurrent load: this
		// one stays separate, under a key of its own.
		sp.key = fmt.Sprintf("%p", p)
	}
	l.open[sp.key] = sp
	l.mu.Unlock()
	return &plugin{Plugin: p, l: l, shared: sp}, nil
}

// acquire takes a reference on the open plugin of key, if any.
func (l *Loader) acquire(key string) *sharedPlugin {
	if key == "" {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	sp := l.open[key]
	if sp != nil {
		sp.refs++
	}
	return sp
}

// plugin is one load of a plugin as the proxy holds it: an HTTP and
// network filter factory that the proxy closes when it releases it.
type plugin struct {
	*wasm.Plugin
	l      *Loader
	shared *sharedPlugin
	once   sync.Once
}

// Close implements io.Closer: the proxy has released this load; the
// plugin closes with its last load.
func (p *plugin) Close() error {
	var last bool
	p.once.Do(func() {
		l, sp := p.l, p.shared
		l.mu.Lock()
		if l.open[sp.key] == sp { // else Loader.Close has taken it
			sp.refs--
			if last = sp.refs == 0; last {
				delete(l.open, sp.key)
			}
		}
		l.mu.Unlock()
	})
	if !last {
		return nil
	}
	p.l.log.Info("retired plugin closed", "plugin", p.Name())
	return p.Plugin.Close(context.Background())
}
