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
// here with the same reason. It then instantiates it on wazero, the
// runtime wasmproxy uses, with WASI, and wires its Proxy-Wasm imports to
// the live emulator: the compiled plugin and the Go source meet the same
// emulated host, and a test's assertions hold for both. The returned
// VMContext stands for the module's plugin: the emulator calls it, and it
// calls the module's proxy_on_... exports.
//
// A trap in the module (a panic, a failed memory access) panics the test
// with the callback that trapped and the module's stack; the Go runtime
// in the module prints its panic message to stderr first.
//
// The emulator is not wasmproxy's host: the Envoy rules it does not apply
// are listed in the SDK package's documentation. Package wasmtest runs
// the compiled plugin on the real host, through a proxy's filter chain.
package proxytest
