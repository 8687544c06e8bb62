// Command noop is the floor of bench/jsoncmp's Wasm row: a Go plugin on
// the same SDK as examples/json-validation whose HTTP context does
// nothing but read the request's content-type and body, as the seed does,
// and keep them, so filter_test.go can tell the SDK's and the crossing's
// cost from the JSON validation's.
package main

import (
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() { proxywasm.SetVMContext(&vmContext{}) }

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext { return &pluginContext{} }

type pluginContext struct{ types.DefaultPluginContext }

func (*pluginContext) NewHttpContext(uint32) types.HttpContext { return &httpContext{} }

type httpContext struct {
	types.DefaultHttpContext
	size int
}

func (c *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	if _, err := proxywasm.GetHttpRequestHeader("content-type"); err != nil {
		return types.ActionPause
	}
	return types.ActionContinue
}

func (c *httpContext) OnHttpRequestBody(size int, end bool) types.Action {
	c.size += size
	if !end {
		return types.ActionPause
	}
	if _, err := proxywasm.GetHttpRequestBody(0, c.size); err != nil {
		return types.ActionPause
	}
	return types.ActionContinue
}
