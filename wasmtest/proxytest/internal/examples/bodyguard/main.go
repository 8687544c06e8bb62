// Command bodyguard is an example-style plugin, written as
// proxy-wasm-go-sdk's examples are, whose main_test.go runs the same
// cases on its Go code and, compiled, on wasmproxy's host: it adds a
// request header, counts requests, buffers the request body across chunks
// and refuses one that contains "forbidden", and stamps the response.
package main

import (
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&vmContext{}) }

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext {
	return &pluginContext{requests: proxywasm.DefineCounterMetric("bodyguard_requests")}
}

type pluginContext struct {
	types.DefaultPluginContext
	requests proxywasm.MetricCounter
	suffix   string
}

func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	cfg, err := proxywasm.GetPluginConfiguration()
	if err != nil && err != types.ErrorStatusNotFound {
		proxywasm.LogCriticalf("reading the configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.suffix = string(cfg)
	proxywasm.LogInfof("bodyguard started: %q", p.suffix)
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{plugin: p}
}

type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
}

func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	h.plugin.requests.Increment(1)
	if err := proxywasm.AddHttpRequestHeader("x-bodyguard", "on"+h.plugin.suffix); err != nil {
		proxywasm.LogErrorf("adding a header: %v", err)
	}
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	proxywasm.LogInfof("request %s", path)
	return types.ActionContinue
}

func (h *httpContext) OnHttpRequestBody(size int, end bool) types.Action {
	if !end {
		return types.ActionPause // buffer until the whole body is here
	}
	body, err := proxywasm.GetHttpRequestBody(0, size)
	if err != nil {
		proxywasm.LogErrorf("reading the body: %v", err)
		return types.ActionContinue
	}
	proxywasm.LogInfof("body of %d bytes", len(body))
	if strings.Contains(string(body), "forbidden") {
		if err := proxywasm.SendHttpResponse(403, [][2]string{{"x-why", "forbidden word"}}, []byte("no"), -1); err != nil {
			proxywasm.LogErrorf("refusing: %v", err)
		}
		return types.ActionPause
	}
	return types.ActionContinue
}

func (h *httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	if err := proxywasm.ReplaceHttpResponseHeader("server", "bodyguard"); err != nil {
		proxywasm.LogErrorf("replacing a header: %v", err)
	}
	return types.ActionContinue
}
