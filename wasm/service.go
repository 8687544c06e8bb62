package wasm

import (
	"context"
	"crypto/sha256"

	"github.com/wasmproxy/wasmproxy/config"
)

// LoadService loads a plugin that has no traffic of its own: Envoy's
// bootstrap_extensions WasmService (envoy.bootstrap.wasm). Only its root
// contexts run: on_vm_start and on_configure at load, then ticks, queue
// notifications and callout replies. Shared data and queues are keyed by
// vm_id as for any plugin, so filters with the same vm_id see what the
// service writes.
//
// With singleton, the service runs in a VM of one instance of its own,
// never shared with filters (Envoy runs it on the main thread's VM).
// Otherwise it is loaded like a filter plugin: one root context in each
// instance of the pool (Envoy: one per worker), sharing the VM with
// filters whose VM key matches. Close the returned Plugin to stop it.
func (h *Host) LoadService(ctx context.Context, cfg *config.WasmPlugin, singleton bool) (*Plugin, error) {
	return h.loadPlugin(ctx, cfg, singleton)
}

// singletonVMKey derives the key of a singleton service's VM from the
// plugin's VM key, so that singletons with the same key share one VM of
// one instance and never the pool that filters use.
func singletonVMKey(k vmKey) vmKey {
	h := sha256.New()
	h.Write([]byte("singleton\x00"))
	h.Write(k[:])
	var out vmKey
	copy(out[:], h.Sum(nil))
	return out
}

// Instances reports how many instances the plugin's VM runs.
func (p *Plugin) Instances() int { return len(p.slots) }
