// Command metrics is a Proxy-Wasm HTTP filter that measures the traffic
// through it with the three kinds of Proxy-Wasm metric:
//
//	httpmetrics.requests.<METHOD>.total  counter, requests by method
//	httpmetrics.requests_in_flight       gauge, requests started, not ended
//	httpmetrics.response_body_bytes      histogram, response body size
//	httpmetrics.request_duration_ms      histogram, request headers to end
//
// <METHOD> is one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE,
// PATCH, or OTHER for anything else, so clients cannot create metrics at
// will. The proxy keeps one stat per name however many instances define
// it, so with --concurrency N every instance adds to the same numbers.
// They appear on the admin's /stats under these names and on
// /stats/prometheus as httpmetrics_requests_total{method="GET"} (with the
// stats_tags rule of envoy.yaml), httpmetrics_requests_in_flight, and so
// on.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o main.wasm .
package main

import (
	"time"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// knownMethods get their own counter; other methods count as OTHER.
var knownMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true,
	"CONNECT": true, "OPTIONS": true, "TRACE": true, "PATCH": true,
}

func main() {
	proxywasm.SetVMContext(&vmContext{})
}

type vmContext struct {
	types.DefaultVMContext
}

// NewPluginContext implements types.VMContext.
func (*vmContext) NewPluginContext(contextID uint32) types.PluginContext {
	return &pluginContext{}
}

// pluginContext defines the metrics once per instance.
type pluginContext struct {
	types.DefaultPluginContext
	requests  map[string]proxywasm.MetricCounter
	inFlight  proxywasm.MetricGauge
	bodyBytes proxywasm.MetricHistogram
	duration  proxywasm.MetricHistogram
}

// OnPluginStart implements types.PluginContext.
func (p *pluginContext) OnPluginStart(pluginConfigurationSize int) types.OnPluginStartStatus {
	p.requests = map[string]proxywasm.MetricCounter{}
	for m := range knownMethods {
		p.requests[m] = proxywasm.DefineCounterMetric("httpmetrics.requests." + m + ".total")
	}
	p.requests["OTHER"] = proxywasm.DefineCounterMetric("httpmetrics.requests.OTHER.total")
	p.inFlight = proxywasm.DefineGaugeMetric("httpmetrics.requests_in_flight")
	p.bodyBytes = proxywasm.DefineHistogramMetric("httpmetrics.response_body_bytes")
	p.duration = proxywasm.DefineHistogramMetric("httpmetrics.request_duration_ms")
	return types.OnPluginStartStatusOK
}

// NewHttpContext implements types.PluginContext.
func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &metricsContext{p: p}
}

// metricsContext measures one stream.
type metricsContext struct {
	types.DefaultHttpContext
	p         *pluginContext
	started   bool
	start     time.Time
	bodyBytes int
}

// OnHttpRequestHeaders implements types.HttpContext: it counts the
// request by method and as in flight.
func (c *metricsContext) OnHttpRequestHeaders(numHeaders int, endOfStream bool) types.Action {
	method, err := proxywasm.GetHttpRequestHeader(":method")
	if err != nil || !knownMethods[method] {
		method = "OTHER"
	}
	c.p.requests[method].Increment(1)
	c.p.inFlight.Add(1)
	c.started, c.start = true, time.Now()
	return types.ActionContinue
}

// OnHttpResponseBody implements types.HttpContext. Each call sees the
// chunk that arrived (the plugin never buffers), so the sizes add up to
// the body's.
func (c *metricsContext) OnHttpResponseBody(bodySize int, endOfStream bool) types.Action {
	c.bodyBytes += bodySize
	return types.ActionContinue
}

// OnHttpStreamDone implements types.HttpContext: the stream is over,
// whether it completed or was reset.
func (c *metricsContext) OnHttpStreamDone() {
	if !c.started {
		return
	}
	c.p.inFlight.Add(-1)
	c.p.bodyBytes.Record(uint64(c.bodyBytes))
	c.p.duration.Record(uint64(time.Since(c.start).Milliseconds()))
}
