// Package proxywasm is a Proxy-Wasm SDK for plugins built with the standard Go
// toolchain (Go 1.24 or later, no TinyGo):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .
//
// Its API follows github.com/proxy-wasm/proxy-wasm-go-sdk (and the older
// github.com/tetratelabs/proxy-wasm-go-sdk): a plugin written for either
// builds here once its import paths are changed to
// github.com/wasmproxy/wasmproxy/sdk/proxywasm and .../proxywasm/types.
//
// # Entry point
//
// A plugin registers its contexts with SetVMContext (or with one of the
// shortcuts SetPluginContext, SetHttpContext, SetTcpContext), either from
// an init function or from main:
//
//	func main() { proxywasm.SetVMContext(&vmContext{}) }
//
// A -buildmode=c-shared module is a WASI reactor: the host calls its
// _initialize export, which runs the package init functions but never
// main.main. So that plugins written for TinyGo-era SDKs, which register from
// main, work unchanged, the SDK links to the program's main.main and calls it
// once itself, at the first callback that needs the VM context (the
// proxy_on_context_create of the first root context), if no entry point was
// registered by then. main must therefore return promptly and must not
// block; registering from init avoids the extra call entirely.
//
// # ABI
//
// The module exports proxy_abi_version_0_2_1 (Proxy-Wasm ABI 0.2.1),
// proxy_on_memory_allocate (the allocator the host uses to hand data to the
// plugin) and every 0.2.x guest callback; callbacks the SDK has no API for
// (HTTP/2 metadata, foreign-function calls from the host) are exported as
// no-ops. Host functions are imported from the "env" module only where the
// plugin uses them; the Go linker drops unused imports.
//
// ABI 0.2.1 is 0.2.0 plus proxy_get_log_level (GetLogLevel). The SDK
// declares it, as proxy-wasm-rust-sdk does, because Envoy links
// proxy_get_log_level only into modules that declare 0.2.1: a 0.2.0 module
// calling it would fail to load there. Every host that runs Go-built
// modules (Envoy 1.33 and later, for their WASI imports) knows 0.2.1, and
// nothing else differs from 0.2.0. (proxy-wasm-go-sdk declares 0.2.0 and
// has no GetLogLevel.)
//
// # Areas
//
// Entry points: SetVMContext, SetPluginContext, SetHttpContext,
// SetTcpContext. Configuration: GetVMConfiguration, GetPluginConfiguration.
// HTTP: the Get/Replace/Add/Remove...HttpRequest/Response...
// Header/Body/Trailer functions, ResumeHttpRequest, ResumeHttpResponse,
// SendHttpResponse. TCP: Get/Append/Prepend/Replace...DownstreamData and
// ...UpstreamData, ContinueTcpStream, CloseDownstream, CloseUpstream.
// Callouts: DispatchHttpCall; gRPC with DispatchGrpcCall and
// OpenGrpcStream (grpc.go). Timers and contexts: SetTickPeriodMilliSeconds,
// SetEffectiveContext, PluginDone. Shared data and queues: GetSharedData,
// SetSharedData, RegisterSharedQueue, ResolveSharedQueue,
// EnqueueSharedQueue, DequeueSharedQueue. Metrics: DefineCounterMetric,
// DefineGaugeMetric, DefineHistogramMetric. Properties: GetProperty,
// GetPropertyMap, SetProperty. Foreign functions: CallForeignFunction.
// Logging: Log..., Log...f, GetLogLevel.
//
// # Memory
//
// Data coming from the host (headers, bodies, properties...) lands in Go byte
// slices allocated by proxy_on_memory_allocate. The SDK keeps each such
// buffer referenced until the host call that requested it has returned and
// the result has been wrapped in an ordinary Go slice or string, so the
// garbage collector cannot reclaim it in between. Returned slices and
// strings belong to the caller.
//
// # Outside Wasm
//
// On other platforms (GOOS other than wasip1) the package still compiles, so
// that plugin code can be vetted and unit-tested natively. Host calls then
// go to the host emulator of package proxytest when a test has started one
// (proxytest.NewHostEmulator, the API of proxy-wasm-go-sdk's proxytest);
// otherwise every host call fails with types.ErrorUnimplemented
// (Define...Metric and the metric methods panic, as they do on any host
// error). Package github.com/wasmproxy/wasmproxy/wasmtest tests the compiled
// plugin on wasmproxy's real host.
//
// # Contexts and threads
//
// A Wasm VM is single-threaded: callbacks never run concurrently, and the
// SDK's bookkeeping uses no locks. HTTP and TCP contexts are created by
// the PluginContext whose root context id the host passes as parent in
// proxy_on_context_create; for a stream, NewHttpContext is tried first and
// NewTcpContext only if it returns nil.
package proxywasm
