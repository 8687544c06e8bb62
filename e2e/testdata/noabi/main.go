// Package main is a valid WASI reactor that exports no Proxy-Wasm ABI
// version marker: the host must refuse it by name.
package main

func main() {}

//go:wasmexport answer
func answer() int32 { return 42 }
