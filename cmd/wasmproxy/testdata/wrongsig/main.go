// Package main claims ABI 0.2.1 and imports env.proxy_log with one
// parameter instead of three: every host function exists, but the
// signature does not match, so the module cannot link.
package main

func main() {}

//go:wasmimport env proxy_log
func proxyLog(level int32) int32

//go:wasmexport proxy_abi_version_0_2_1
func abiMarker() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size int32) int32 { return 0 }

//go:wasmexport proxy_on_vm_start
func onVMStart(root, size int32) int32 { return proxyLog(root) }
