// Command kitchensink is wasmtest's own test plugin: what it does to a
// request depends on its "x-test" header, so one module exercises every
// part of the harness.
package main

import (
	"bytes"
	"strconv"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {
	proxywasm.SetVMContext(&vmContext{})
}

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext { return &pluginContext{} }

type pluginContext struct {
	types.DefaultPluginContext
	requests proxywasm.MetricCounter
	ticks    proxywasm.MetricCounter
	inFlight proxywasm.MetricGauge
	sizes    proxywasm.MetricHistogram
	queue    uint32
	tcp      bool // configuration "tcp": a network filter (no HTTP contexts)
}

func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	conf, _ := proxywasm.GetPluginConfiguration()
	if string(conf) == "reject" {
		proxywasm.LogCritical("configuration rejected on purpose")
		return types.OnPluginStartStatusFailed
	}
	p.tcp = string(conf) == "tcp"
	p.requests = proxywasm.DefineCounterMetric("kitchensink_requests_total")
	p.ticks = proxywasm.DefineCounterMetric("kitchensink_ticks_total")
	p.inFlight = proxywasm.DefineGaugeMetric("kitchensink_in_flight")
	p.sizes = proxywasm.DefineHistogramMetric("kitchensink_body_bytes")
	if err := proxywasm.SetTickPeriodMilliSeconds(1000); err != nil {
		proxywasm.LogErrorf("tick period: %v", err)
	}
	q, err := proxywasm.RegisterSharedQueue("jobs")
	if err != nil {
		proxywasm.LogErrorf("register queue: %v", err)
	}
	p.queue = q
	proxywasm.LogInfo("kitchensink started")
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) OnTick() {
	p.ticks.Increment(1)
	proxywasm.LogDebugf("tick %d", p.ticks.Value())
}

func (p *pluginContext) OnQueueReady(id uint32) {
	for {
		data, err := proxywasm.DequeueSharedQueue(id)
		if err != nil {
			return
		}
		proxywasm.LogInfof("job: %s", data)
		if err := proxywasm.SetSharedData("last_job", data, 0); err != nil {
			proxywasm.LogErrorf("set shared data: %v", err)
		}
	}
}

// NewHttpContext returns nil for a network filter: the SDK then asks for a
// TCP context.
func (p *pluginContext) NewHttpContext(id uint32) types.HttpContext {
	if p.tcp {
		return nil
	}
	return &httpContext{plugin: p, id: id}
}

type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
	id     uint32
	mode   string
}

func (h *httpContext) OnHttpRequestHeaders(numHeaders int, endOfStream bool) types.Action {
	h.plugin.requests.Increment(1)
	h.plugin.inFlight.Add(1)
	h.mode, _ = proxywasm.GetHttpRequestHeader("x-test")
	switch h.mode {
	case "edit-headers":
		proxywasm.AddHttpRequestHeader("x-added", "yes")
		proxywasm.RemoveHttpRequestHeader("x-remove")
		proxywasm.ReplaceHttpRequestHeader(":path", "/rewritten")
	case "pause-forever":
		proxywasm.LogInfo("pausing and never resuming")
		return types.ActionPause
	case "trap":
		var m map[string]int
		m["boom"] = 1 // nil map write: a Go panic, which traps the module
	case "loop":
		for n := 0; ; n++ {
			if n < 0 {
				break
			}
		}
	case "properties":
		src, _ := proxywasm.GetProperty([]string{"source", "address"})
		path, _ := proxywasm.GetProperty([]string{"request", "path"})
		name, _ := proxywasm.GetProperty([]string{"plugin_name"})
		_, err := proxywasm.GetProperty([]string{"xds", "route_name"})
		proxywasm.AddHttpRequestHeader("x-source", string(src))
		proxywasm.AddHttpRequestHeader("x-path", string(path))
		proxywasm.AddHttpRequestHeader("x-plugin-name", string(name))
		proxywasm.AddHttpRequestHeader("x-route-found", strconv.FormatBool(err == nil))
	case "shared":
		v, _, err := proxywasm.GetSharedData("greeting")
		if err != nil {
			v = []byte("none")
		}
		proxywasm.AddHttpRequestHeader("x-greeting", string(v))
		path, _ := proxywasm.GetHttpRequestHeader(":path")
		proxywasm.SetSharedData("seen", []byte(path), 0)
	case "enqueue":
		proxywasm.EnqueueSharedQueue(h.plugin.queue, []byte("from-stream"))
	case "callout":
		_, err := proxywasm.DispatchHttpCall("auth",
			[][2]string{{":method", "GET"}, {":path", "/check"}, {":authority", "auth"}, {"x-user", "alice"}},
			nil, nil, 5000, h.onAuth)
		if err != nil {
			proxywasm.LogErrorf("dispatch: %v", err)
			proxywasm.SendHttpResponse(500, nil, []byte("dispatch failed: "+err.Error()), -1)
		}
		return types.ActionPause
	case "local":
		proxywasm.SendHttpResponse(418, [][2]string{{"x-reason", "teapot"}}, []byte("short and stout"), -1)
		return types.ActionPause
	}
	return types.ActionContinue
}

func (h *httpContext) onAuth(numHeaders, bodySize, numTrailers int) {
	if numHeaders == 0 {
		proxywasm.LogError("auth call failed")
		proxywasm.SendHttpResponse(503, nil, []byte("auth unavailable"), -1)
		return
	}
	status := ""
	headers, _ := proxywasm.GetHttpCallResponseHeaders()
	for _, h := range headers {
		if h[0] == ":status" {
			status = h[1]
		}
	}
	body, _ := proxywasm.GetHttpCallResponseBody(0, bodySize)
	if status != "200" {
		proxywasm.SendHttpResponse(401, nil, []byte("denied: "+string(body)), -1)
		return
	}
	proxywasm.AddHttpRequestHeader("x-auth", string(body))
	proxywasm.ResumeHttpRequest()
}

func (h *httpContext) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	if h.mode == "add-trailer" && endOfStream {
		if err := proxywasm.AddHttpRequestTrailer("x-checksum", strconv.Itoa(bodySize)); err != nil {
			proxywasm.LogErrorf("add trailer: %v", err)
		}
	}
	if h.mode != "body-upper" {
		return types.ActionContinue
	}
	if !endOfStream {
		return types.ActionPause
	}
	body, err := proxywasm.GetHttpRequestBody(0, bodySize)
	if err != nil {
		proxywasm.LogErrorf("body: %v", err)
		return types.ActionContinue
	}
	h.plugin.sizes.Record(uint64(len(body)))
	proxywasm.ReplaceHttpRequestBody(bytes.ToUpper(body))
	return types.ActionContinue
}

func (h *httpContext) OnHttpRequestTrailers(numTrailers int) types.Action {
	v, _ := proxywasm.GetHttpRequestTrailer("grpc-status")
	proxywasm.LogInfof("request trailers: %d, grpc-status=%s", numTrailers, v)
	return types.ActionContinue
}

func (h *httpContext) OnHttpResponseHeaders(numHeaders int, endOfStream bool) types.Action {
	proxywasm.AddHttpResponseHeader("x-plugin", "kitchensink")
	if h.mode == "response-body" {
		proxywasm.RemoveHttpResponseHeader("content-length")
	}
	return types.ActionContinue
}

func (h *httpContext) OnHttpResponseBody(bodySize int, endOfStream bool) types.Action {
	if h.mode != "response-body" {
		return types.ActionContinue
	}
	if !endOfStream {
		return types.ActionPause
	}
	proxywasm.PrependHttpResponseBody([]byte("<<"))
	proxywasm.AppendHttpResponseBody([]byte(">>"))
	return types.ActionContinue
}

func (h *httpContext) OnHttpStreamDone() {
	h.plugin.inFlight.Add(-1)
	proxywasm.LogDebugf("stream %d done", h.id)
}

// TCP: lines from the client are held until complete, then prefixed with
// "> "; "quit" closes the connection; upstream data is upper-cased.
func (p *pluginContext) NewTcpContext(id uint32) types.TcpContext {
	return &tcpContext{id: id}
}

type tcpContext struct {
	types.DefaultTcpContext
	id uint32
}

func (c *tcpContext) OnNewConnection() types.Action {
	proxywasm.LogInfof("connection %d opened", c.id)
	return types.ActionContinue
}

func (c *tcpContext) OnDownstreamData(dataSize int, endOfStream bool) types.Action {
	data, err := proxywasm.GetDownstreamData(0, dataSize)
	if err != nil {
		proxywasm.LogErrorf("downstream data: %v", err)
		return types.ActionContinue
	}
	if bytes.Contains(data, []byte("quit")) {
		proxywasm.CloseDownstream()
		return types.ActionPause
	}
	if !bytes.HasSuffix(data, []byte("\n")) && !endOfStream {
		return types.ActionPause
	}
	proxywasm.PrependDownstreamData([]byte("> "))
	return types.ActionContinue
}

func (c *tcpContext) OnUpstreamData(dataSize int, endOfStream bool) types.Action {
	data, err := proxywasm.GetUpstreamData(0, dataSize)
	if err != nil {
		proxywasm.LogErrorf("upstream data: %v", err)
		return types.ActionContinue
	}
	proxywasm.ReplaceUpstreamData(bytes.ToUpper(data))
	return types.ActionContinue
}

func (c *tcpContext) OnStreamDone() {
	proxywasm.LogInfof("connection %d done", c.id)
}
