package wasm

import (
	"context"
	"strconv"
	"strings"

	"github.com/tetratelabs/wazero/api"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/logging"
)

// errnoNotcapable is WASI's ENOTCAPABLE, what Envoy's capability stubs
// answer for a WASI function the plugin may not call.
const errnoNotcapable = 76

// wrapHostFunc adds what every host function does before its own work:
// the capability_restriction_config check and, when the "wasm" logger is
// at trace, Envoy's "[vm->host] env.proxy_x(args)" / "[vm<-host]
// env.proxy_x return: n" lines. Otherwise the cost is one context lookup
// and two loads.
func wrapHostFunc(module string, f *hostFunc) api.GoModuleFunc {
	fn := f.fn
	name := f.name
	full := module + "." + name
	nparams, hasResult := len(f.params), len(f.results) == 1
	isWASI := module != "env"
	return func(ctx context.Context, m api.Module, stack []uint64) {
		inst := instanceOf(ctx)
		if inst == nil {
			fn(ctx, m, stack)
			return
		}
		v := inst.vm
		if v.capabilities != nil && !v.capabilities[name] {
			restricted(inst, full, isWASI, hasResult, stack)
			return
		}
		if !v.host.traceOn() {
			fn(ctx, m, stack)
			return
		}
		var b strings.Builder
		b.WriteString("[vm->host] ")
		b.WriteString(full)
		b.WriteByte('(')
		for i := 0; i < nparams; i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			if f.params[i] == i64 {
				b.WriteString(strconv.FormatInt(int64(stack[i]), 10))
			} else {
				b.WriteString(strconv.FormatUint(uint64(uint32(stack[i])), 10))
			}
		}
		b.WriteByte(')')
		v.host.log.Log(context.Background(), logging.LevelTrace, b.String())
		fn(ctx, m, stack)
		if hasResult {
			v.host.log.Log(context.Background(), logging.LevelTrace,
				"[vm<-host] "+full+" return: "+strconv.FormatUint(uint64(uint32(stack[0])), 10))
		} else {
			v.host.log.Log(context.Background(), logging.LevelTrace, "[vm<-host] "+full+" return: void")
		}
	}
}

// restricted is Envoy's stub for a capability the plugin's
// capability_restriction_config does not allow: it logs and answers
// INTERNAL_FAILURE (proxy_*) or ENOTCAPABLE (WASI).
func restricted(inst *instance, full string, isWASI, hasResult bool, stack []uint64) {
	inst.vm.host.log.Warn("Attempted call to restricted proxy-wasm capability: " + full)
	if !hasResult {
		return
	}
	if isWASI {
		stack[0] = errnoNotcapable
		return
	}
	stack[0] = uint64(statusInternalFailure)
}

// traceOn reports whether the "wasm" logger is at trace (its level may
// change at any time: the handler reads it each time).
func (h *Host) traceOn() bool {
	return h.logHandler.Enabled(context.Background(), logging.LevelTrace)
}

// capabilitySet is the allow-list of capability_restriction_config; nil
// (no restriction) when the config lists nothing, as in Envoy.
func capabilitySet(cfg *config.WasmPlugin) map[string]bool {
	if len(cfg.AllowedCapabilities) == 0 {
		return nil
	}
	set := make(map[string]bool, len(cfg.AllowedCapabilities))
	for _, c := range cfg.AllowedCapabilities {
		set[c] = true
	}
	return set
}

// callbackAllowed reports whether the host may call a guest callback:
// under a capability restriction, only listed callbacks are invoked.
func (v *vm) callbackAllowed(name string) bool {
	return v.capabilities == nil || v.capabilities[name]
}
