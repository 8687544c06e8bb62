// Package proxytest emulates a Proxy-Wasm host (Envoy) in Go, so that a
// plugin's code runs natively under go test, without Wasm: the test
// creates HTTP streams and TCP connections, calls the plugin's callbacks
// as the proxy would, and then reads what the plugin did — headers and
// bodies after its edits, local responses, the action it returned, the
// HTTP and gRPC calls it dispatched (which the test answers), its logs by
// level, metrics, tick period, shared queues, properties.
//
// Its API is the one of the proxytest package of
// github.com/proxy-wasm/proxy-wasm-go-sdk (and of the older
// github.com/tetratelabs/proxy-wasm-go-sdk), so a plugin's existing tests
// run once their import paths are changed, plus additions marked as such
// (gRPC callouts, trailers, TCP data the plugin forwarded, queues and
// shared data from the test's side):
//
//	opt := proxytest.NewEmulatorOption().WithVMContext(&vmContext{})
//	host, reset := proxytest.NewHostEmulator(opt)
//	defer reset()
//	id := host.InitializeHttpContext()
//	action := host.CallOnRequestHeaders(id, [][2]string{{"x-user", "alice"}}, false)
//
// # One emulator at a time
//
// A plugin's SDK state is global, as it is in a Wasm VM, so only one
// emulator exists at a time in a process: NewHostEmulator waits until the
// previous one is released by its reset function. Always call reset
// (defer it). Context ids are never reused within a process.
//
// # Behaviour
//
// The emulator follows Envoy where a plugin can tell the difference,
// except where tests written for proxy-wasm-go-sdk's emulator depend on
// its looser rules:
//
//   - Header maps hold lower-case keys. Add appends a value, Replace sets
//     the first value and drops the others (adding the key if missing),
//     Remove drops every value; reading a missing key is NOT_FOUND. An
//     empty map reads as an empty list (Envoy gives no data, which the
//     SDK reports as NOT_FOUND; proxy-wasm-go-sdk's emulator gives the
//     list, and tests rely on it).
//   - Bodies: each CallOnRequestBody / CallOnResponseBody shows the plugin
//     the chunk appended to what it buffered by returning ActionPause
//     before; ActionContinue passes it on. Set-buffer calls follow Envoy
//     (offset 0 drains then prepends; at or past the end appends).
//   - TCP data is buffered the same way per direction; what the plugin
//     lets through is kept (GetForwardedDownstreamData and
//     GetForwardedUpstreamData).
//   - A local response is recorded, first one wins; it is not played
//     through the plugin's response callbacks.
//   - Callout replies go to the plugin only while the context that
//     dispatched them is alive. HTTP callout ids count from 0 and the ids
//     of answered calls are reused, lowest first, as in proxy-wasm-go-sdk's
//     emulator.
//   - Shared data: CAS 0 writes unconditionally, any other must match.
//     Shared queues notify the context that registered them after the
//     current callback returns. Metrics: counters take positive
//     increments only, histograms cannot be read by the plugin.
//   - OnQueueReady and every other host-to-plugin call run on the
//     goroutine of the test; nothing happens in the background.
//
// What the emulator does not do, and package wasmtest (the compiled plugin
// on wasmproxy's real host) does: check that clusters exist and that
// callouts carry :method, :path and :authority, resolve Envoy's standard
// properties (request.*, source.*, ...; set them with WithProperty),
// enforce buffer limits, run local responses back through the plugin, and
// run the plugin as Wasm.
//
// # Compiled plugins
//
// NewWasmVMContext runs a compiled plugin (main.wasm) against the same
// emulator, so one test checks the Go source and the compiled module.
// That needs a Wasm runtime, which this dependency-free module does not
// link: import github.com/wasmproxy/wasmproxy/wasmtest/proxytest instead,
// which has this package's whole API plus a working NewWasmVMContext.
package proxytest
