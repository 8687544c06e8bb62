// Command readjson is examples/json-validation with its two reads done by
// the SDK's Read* accessors into one buffer the plugin keeps, instead of
// GetHttpRequestHeader and GetHttpRequestBody: the host copies the
// content-type and the body straight into that buffer, so the guest
// allocates nothing per request for them. bench/jsoncmp's filter
// benchmark runs it beside the example to measure what that saves. The
// configuration is fixed (the keys bench/jsoncmp configures).
package main

import (
	"github.com/tidwall/gjson"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() { proxywasm.SetVMContext(&vmContext{}) }

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext { return &pluginContext{} }

type pluginContext struct {
	types.DefaultPluginContext
	// buf is reused by every stream: a VM runs one callback at a time, and
	// nothing keeps what was read past the callback that read it.
	buf []byte
}

var requiredKeys = []string{"id", "token"}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	if p.buf == nil {
		p.buf = make([]byte, 0, 4096)
	}
	return &httpContext{plugin: p}
}

type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
	size   int
}

func (c *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	ct, err := proxywasm.ReadHttpRequestHeader(c.plugin.buf[:0], "content-type")
	if err != nil || string(ct) != "application/json" {
		proxywasm.SendHttpResponse(403, nil, []byte("content-type must be provided"), -1)
		return types.ActionPause
	}
	return types.ActionContinue
}

func (c *httpContext) OnHttpRequestBody(size int, end bool) types.Action {
	c.size += size
	if !end {
		return types.ActionPause
	}
	body, err := proxywasm.ReadHttpRequestBody(c.plugin.buf[:0], 0, c.size)
	if err != nil {
		return types.ActionContinue
	}
	if cap(body) > cap(c.plugin.buf) {
		c.plugin.buf = body[:0] // keep the larger buffer for the next body
	}
	if !valid(body) {
		proxywasm.SendHttpResponse(403, nil, []byte("invalid payload"), -1)
		return types.ActionPause
	}
	return types.ActionContinue
}

func valid(body []byte) bool {
	if !gjson.ValidBytes(body) {
		return false
	}
	data := gjson.ParseBytes(body)
	for _, k := range requiredKeys {
		if !data.Get(k).Exists() {
			return false
		}
	}
	return true
}
