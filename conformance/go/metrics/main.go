// Command metrics is the Go SDK conformance plugin for metrics: a counter
// of requests (read back into a request header), and a histogram of
// request body sizes (conformance/README.md, area "metrics").
package main

import (
	"strconv"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type plugin struct {
	types.DefaultPluginContext
	requests  proxywasm.MetricCounter
	bodyBytes proxywasm.MetricHistogram
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	p.requests = proxywasm.DefineCounterMetric("conformance_go_requests")
	p.bodyBytes = proxywasm.DefineHistogramMetric("conformance_go_body_bytes")
	return true
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{plugin: p} }

type stream struct {
	types.DefaultHttpContext
	plugin *plugin
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	s.plugin.requests.Increment(1)
	if err := proxywasm.AddHttpRequestHeader("x-conf-requests", strconv.FormatUint(s.plugin.requests.Value(), 10)); err != nil {
		panic(err)
	}
	return types.ActionContinue
}

func (s *stream) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	if !endOfStream {
		return types.ActionPause
	}
	s.plugin.bodyBytes.Record(uint64(bodySize))
	return types.ActionContinue
}
