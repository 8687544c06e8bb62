// Command logs is the Go SDK conformance plugin for logging and the
// context life cycle: it logs at info level when the VM starts, when the
// plugin is configured, on each request's headers and from on_log with
// the response code (conformance/README.md, area "logs").
package main

import (
	"encoding/binary"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {
	proxywasm.SetVMContext(&vm{})
}

type vm struct{ types.DefaultVMContext }

func (*vm) OnVMStart(int) types.OnVMStartStatus {
	cfg, _ := proxywasm.GetVMConfiguration()
	proxywasm.LogInfof("vm_start vm_config=%s", cfg)
	return true
}

func (*vm) NewPluginContext(uint32) types.PluginContext { return &plugin{} }

type plugin struct{ types.DefaultPluginContext }

func (*plugin) OnPluginStart(int) types.OnPluginStartStatus {
	cfg, _ := proxywasm.GetPluginConfiguration()
	proxywasm.LogInfof("configure config=%s", cfg)
	return true
}

func (*plugin) NewHttpContext(uint32) types.HttpContext { return &stream{} }

type stream struct {
	types.DefaultHttpContext
	path string
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	s.path, _ = proxywasm.GetHttpRequestHeader(":path")
	proxywasm.LogInfof("request_headers %s", s.path)
	proxywasm.LogDebugf("debug line for %s", s.path) // hidden at info level
	return types.ActionContinue
}

func (s *stream) OnHttpStreamDone() {
	var code uint64
	if v, err := proxywasm.GetProperty([]string{"response", "code"}); err == nil && len(v) == 8 {
		code = binary.LittleEndian.Uint64(v)
	}
	proxywasm.LogInfof("log %s %d", s.path, code)
}
