// Package main claims ABI 0.2.1 but imports a host function no
// Proxy-Wasm host provides: loading must fail naming the import.
package main

func main() {}

//go:wasmimport env proxy_does_not_exist
func proxyDoesNotExist(x int32) int32

//go:wasmexport proxy_abi_version_0_2_1
func abiMarker() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size int32) int32 { return 0 }

//go:wasmexport proxy_on_vm_start
func onVMStart(root, size int32) int32 { return proxyDoesNotExist(root) }
