// Package conformance runs Proxy-Wasm plugins written in four languages
// through the real wasmproxy binary, with real HTTP clients and a real
// upstream, and checks what a user of Envoy would observe: headers and
// bodies changed, local replies, logs in Envoy's format, properties in
// Envoy's encodings, metrics on the admin API, shared data across
// instances, ticks, queues, HTTP callouts and foreign functions.
//
// The plugins are compiled from source during the test run:
//
//   - c/: C against the raw ABI 0.2.1 (Debian clang, lld, wasi-libc,
//     libclang-rt-14-dev-wasm32), a WASI reactor;
//   - rust/: Rust against the raw ABI 0.2.1 with Debian rustc and
//     libstd-rust-dev-wasm32, no crates;
//   - assemblyscript/: AssemblyScript with the third-party
//     @solo-io/proxy-runtime SDK (ABI 0.2.0), versions pinned in its
//     package-lock.json;
//   - go/: one plugin per ABI area with wasmproxy's Go SDK.
//
// Every language's plugin implements the behaviour in README.md; the tests
// are in this package's _test files. docs/compatibility.md maps each host
// function and callback to the plugins and tests that cover it.
package conformance
