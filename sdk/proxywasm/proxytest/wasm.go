package proxytest

import (
	"errors"
	"io"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/internal/hostabi"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// WasmVMContext is a VMContext whose plugin is a compiled module: pass it
// to EmulatorOption.WithVMContext (or pass its NewPluginContext, or its
// plugin contexts' NewHttpContext, to the other With... options). Close
// releases the module.
type WasmVMContext interface {
	types.VMContext
	io.Closer
}

// ErrNoWasmRuntime is what this package's NewWasmVMContext returns.
var ErrNoWasmRuntime = errors.New("proxytest: this module has no Wasm runtime (the SDK has no dependencies): " +
	"import github.com/wasmproxy/wasmproxy/wasmtest/proxytest instead of " +
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/proxytest to run a compiled plugin; it has the same API")

// NewWasmVMContext would run the compiled plugin wasm against the
// emulator; in this package it only returns ErrNoWasmRuntime. The package
// github.com/wasmproxy/wasmproxy/wasmtest/proxytest, which has this
// package's whole API, implements it.
func NewWasmVMContext(wasm []byte) (WasmVMContext, error) {
	return nil, ErrNoWasmRuntime
}

// The runner API: what a package that runs compiled modules against the
// emulator (wasmtest/proxytest) needs. Tests do not use it.

// ABI is the emulator's implementation of the Proxy-Wasm host functions
// in Go values, one method per function. A runner calls the live
// emulator's ABI from a module's "env" imports, reading arguments from
// and writing results to the module's memory. Slices it passes are only
// read during the call; slices it gets back are only valid until the next
// call.
type ABI = hostabi.Host

// ABIEvents receive the replies to the HTTP and gRPC callouts a compiled
// module starts: pass them to ABI.ProxyHttpCall and friends, and the
// emulator calls them (with the plugin context's id) instead of the
// native plugin's callbacks.
type ABIEvents = hostabi.Events

// CurrentABI returns the live emulator's host functions, or nil when no
// emulator is live.
func CurrentABI() ABI { return hostabi.Current() }

// OptionParts returns what opt configures: the plugin (a types.VMContext
// or one of the ...ContextFactory types), the plugin and VM
// configurations, and the properties set with WithProperty (keyed by
// their path segments joined with NUL). A runner that hosts the plugin
// itself (wasmtest/proxytest on wasmproxy's host) reads it.
func OptionParts(opt *EmulatorOption) (plugin any, pluginConfiguration, vmConfiguration []byte, properties map[string][]byte) {
	return opt.context, opt.pluginConfiguration, opt.vmConfiguration, opt.properties
}
