// Package proxytest is proxy-wasm-go-sdk's proxytest for wasmproxy: the
// host emulator of github.com/wasmproxy/wasmproxy/sdk/proxywasm/proxytest
// (the same API: this package re-exports it) plus NewWasmVMContext, which
// runs the compiled plugin against that emulator. A plugin's existing
// tests, written for proxy-wasm-go-sdk, check both the Go source and the
// compiled main.wasm once their imports are changed:
//
//	github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm           → github.com/wasmproxy/wasmproxy/sdk/proxywasm
//	github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types     → github.com/wasmproxy/wasmproxy/sdk/proxywasm/types
//	github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest → github.com/wasmproxy/wasmproxy/wasmtest/proxytest
//
// (tetratelabs/proxy-wasm-go-sdk paths likewise). The SDK's own proxytest
// package is enough for tests that only run the Go source, and keeps a
// plugin's test dependencies to the SDK.
//
// # Compiled plugins
//
// NewWasmVMContext first checks the module the way wasmproxy checks a
// plugin before loading it (ABI version, imports, exports: the check of
// `wasmproxy plugin inspect`), so a module wasmproxy would refuse fails
// here with the same reason. Given to WithVMContext (or its factories,
// vm.NewPluginContext and a plugin context's NewHttpContext and
// NewTcpContext, to the other With...Context options), the module runs
// on wasmproxy's real host through package wasmtest, and the emulator's
// methods drive and read that host. What upstream's tests supply that a
// host has no entry for — properties (WithProperty, SetProperty),
// foreign functions (RegisterForeignFunction), callbacks in any order,
// several requests on one context — goes through test-only hooks that
// wasmtest sets; see docs/guide.md ("Coming from proxy-wasm-go-sdk") for
// what each becomes and for what stays emulator-only (gRPC callout
// events, GetHistogramMetric, FinishVM), which panics naming
// OnEmulator.
//
// With OnEmulator, the module instead runs on wazero, the runtime
// wasmproxy uses, with WASI, and its Proxy-Wasm imports wired to the
// live emulator. A trap in the module (a panic, a failed memory access)
// then panics the test with the callback that trapped and the module's
// stack; the Go runtime in the module prints its panic message to stderr
// first. On the real host a trap fails the stream as the proxy does.
//
// The emulator is not wasmproxy's host: the Envoy rules it does not apply
// are listed in the SDK package's documentation.
package proxytest
