//go:build linux && wasmproxy_nocowmem

package wasm

// Built with the tag wasmproxy_nocowmem, instances keep their memory
// pages private, as before page sharing (cowmem_linux.go): the
// baseline of bench/jsoncmp's BenchmarkInstanceRSS.
func init() { pageSharing = false }
