// Package main is a plugin whose VM refuses to start, to test that the
// proxy refuses to run with it.
package main

import (
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&vm{}) }

type vm struct{ types.DefaultVMContext }

func (*vm) OnVMStart(int) types.OnVMStartStatus {
	proxywasm.LogCritical("refusing to start")
	return types.OnVMStartStatusFailed
}
