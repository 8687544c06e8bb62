package wasmproxy

import (
	"errors"
	"maps"
	"sync"

	"github.com/wasmproxy/wasmproxy/admin"
)

// runtimeAdmin is the runtime's admin layer: the values POST
// /runtime_modify set. It lives as long as the process, as Envoy's does,
// so a reload keeps them (while the config still has an admin layer).
type runtimeAdmin struct {
	mu     sync.Mutex
	values map[string]string
}

var _ admin.RuntimeProvider = (*adminProvider)(nil)

// Runtime implements admin.RuntimeProvider: the running config's
// layers, the admin layer with its current values.
func (a *adminProvider) Runtime() []admin.RuntimeLayer {
	rt := a.p.applied.Load().Runtime
	if rt == nil {
		return nil
	}
	a.p.runtimeAdmin.mu.Lock()
	defer a.p.runtimeAdmin.mu.Unlock()
	out := make([]admin.RuntimeLayer, 0, len(rt.Layers))
	for _, l := range rt.Layers {
		values := l.Values
		if l.Kind == "admin" {
			values = maps.Clone(a.p.runtimeAdmin.values)
		}
		out = append(out, admin.RuntimeLayer{Name: l.Name, Values: values})
	}
	return out
}

// ModifyRuntime implements admin.RuntimeProvider.
func (a *adminProvider) ModifyRuntime(values map[string]string) error {
	if !a.p.applied.Load().Runtime.HasAdminLayer() {
		return errors.New("No admin layer specified") // Envoy's words
	}
	ra := &a.p.runtimeAdmin
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if ra.values == nil {
		ra.values = map[string]string{}
	}
	for k, v := range values {
		if v == "" {
			delete(ra.values, k)
		} else {
			ra.values[k] = v
		}
	}
	return nil
}
