// Command add-header is a Proxy-Wasm HTTP filter: it adds the response
// header "resp-header-demo: added by our filter" to every response, and its
// plugin (root) context logs "ready to process streams" at debug level when
// it starts. It is the HTTP part of the C++ example filter in the
// project's seed documents, written with the wasmproxy Go SDK.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o add-header.wasm .
package main

import (
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

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

// pluginContext is the root context; it creates one headerContext per HTTP
// stream.
type pluginContext struct {
	types.DefaultPluginContext
}

// OnPluginStart implements types.PluginContext: the plugin is initialised
// and ready to process streams.
func (*pluginContext) OnPluginStart(pluginConfigurationSize int) types.OnPluginStartStatus {
	proxywasm.LogDebug("ready to process streams")
	return types.OnPluginStartStatusOK
}

// NewHttpContext implements types.PluginContext.
func (*pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &headerContext{}
}

// headerContext handles one HTTP stream.
type headerContext struct {
	types.DefaultHttpContext
}

// OnHttpResponseHeaders implements types.HttpContext: it adds the demo
// header to the response.
func (*headerContext) OnHttpResponseHeaders(numHeaders int, endOfStream bool) types.Action {
	if err := proxywasm.AddHttpResponseHeader("resp-header-demo", "added by our filter"); err != nil {
		proxywasm.LogErrorf("failed to add the response header: %v", err)
	}
	return types.ActionContinue
}
