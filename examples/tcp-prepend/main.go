// Command tcp-prepend is a Proxy-Wasm network (TCP) filter: it puts the
// payload "prepend payload to downstream data" in front of every chunk
// of data the client sends, on its way to the upstream. It is the TCP
// part (onDownstreamData) of the C++ example filter in the project's
// second seed document, written with the wasmproxy Go SDK; add-header is
// the HTTP part.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o main.wasm .
package main

import (
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// payload is what the seed's filter prepends.
const payload = "prepend payload to downstream data"

func main() {
	proxywasm.SetVMContext(&vmContext{})
}

// vmContext creates one pluginContext per plugin configuration.
type vmContext struct {
	types.DefaultVMContext
}

// NewPluginContext implements types.VMContext.
func (*vmContext) NewPluginContext(contextID uint32) types.PluginContext {
	return &pluginContext{}
}

// pluginContext is the root context; it creates one prependContext per
// TCP connection.
type pluginContext struct {
	types.DefaultPluginContext
}

// OnPluginStart implements types.PluginContext, as the seed's onStart.
func (*pluginContext) OnPluginStart(pluginConfigurationSize int) types.OnPluginStartStatus {
	proxywasm.LogDebug("ready to process streams")
	return types.OnPluginStartStatusOK
}

// NewTcpContext implements types.PluginContext.
func (*pluginContext) NewTcpContext(contextID uint32) types.TcpContext {
	return &prependContext{}
}

// prependContext handles one TCP connection.
type prependContext struct {
	types.DefaultTcpContext
}

// OnDownstreamData implements types.TcpContext: the seed's
// onDownstreamData. The one difference: the last call of a connection,
// which only reports the client's end of stream and carries no data,
// gets no payload either.
func (*prependContext) OnDownstreamData(dataSize int, endOfStream bool) types.Action {
	if dataSize == 0 {
		return types.ActionContinue
	}
	if err := proxywasm.PrependDownstreamData([]byte(payload)); err != nil {
		proxywasm.LogErrorf("Modifying downstream data failed: %v", err)
		return types.ActionPause
	}
	return types.ActionContinue
}
