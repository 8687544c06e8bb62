package wasm

import (
	"context"

	"github.com/tetratelabs/wazero/api"
)

// unimplemented provides an ABI function with its exact signature, so
// modules built by real SDKs link, that returns UNIMPLEMENTED (12) and
// warns once per plugin, as Envoy does for calls it cannot serve. Failing
// loudly beats a silent no-op (reference §6.14).
func unimplemented(name string, params []api.ValueType) hostFunc {
	stubNames.Store(name, true) // for Inspect (inspect.go)
	return hostFunc{name, params, oneI32, func(ctx context.Context, _ api.Module, stack []uint64) {
		inst := enter(ctx, name)
		if _, warned := inst.plugin.warned.LoadOrStore(name, true); !warned {
			inst.plugin.host.log.Warn("wasm: plugin " + inst.plugin.name + ": " + name + " is not implemented yet")
		}
		setStatus(stack, statusUnimplemented)
	}}
}

// unimplementedFunctions are the ABI calls this host does not serve:
// none today. The helper stays for Envoy-specific imports added later.
func unimplementedFunctions() []hostFunc {
	return nil
}

// envFunctions is the whole "env" module: every Proxy-Wasm host function
// of ABI 0.1.0, 0.2.0 and 0.2.1 (version-specific ones included for all
// versions, which is more lenient than Envoy), plus the Emscripten and
// pthread helpers cpp-host provides.
func envFunctions() []hostFunc {
	var fs []hostFunc
	fs = append(fs, logFunctions()...)
	fs = append(fs, headerFunctions()...)
	fs = append(fs, bufferFunctions()...)
	fs = append(fs, streamFunctions()...)
	fs = append(fs, propertyFunctions()...)
	fs = append(fs, sharedDataFunctions()...)
	fs = append(fs, metricFunctions()...)
	fs = append(fs, sharedQueueFunctions()...)
	fs = append(fs, calloutFunctions()...)
	fs = append(fs, foreignFunctions()...)
	fs = append(fs, unimplementedFunctions()...)
	fs = append(fs,
		hostFunc{"emscripten_notify_memory_growth", oneI32, nil, func(context.Context, api.Module, []uint64) {}},
		hostFunc{"pthread_equal", ints(2), oneI32, func(_ context.Context, _ api.Module, stack []uint64) {
			if uint32(stack[0]) == uint32(stack[1]) {
				stack[0] = 1
			} else {
				stack[0] = 0
			}
		}},
	)
	return fs
}
