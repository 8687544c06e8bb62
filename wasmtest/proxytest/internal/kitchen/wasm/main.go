// Command wasm is package kitchen as a compiled plugin:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o kitchen.wasm .
package main

import (
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/wasmtest/proxytest/internal/kitchen"
)

func init() { proxywasm.SetVMContext(kitchen.New()) }

func main() {}
