// Command authcounter is an example-style plugin, written as
// proxy-wasm-go-sdk's examples are, whose main_test.go runs the same
// cases on its Go code and, compiled, on wasmproxy's host: it asks an
// auth cluster about every request, counts requests in shared data,
// reports the count on ticks, logs what arrives on a shared queue and
// upper-cases the client's bytes on TCP connections.
package main

import (
	"bytes"
	"strconv"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&vmContext{}) }

const countKey = "authcounter.requests"

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext { return &pluginContext{} }

type pluginContext struct {
	types.DefaultPluginContext
	queue uint32
}

func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	id, err := proxywasm.RegisterSharedQueue("events")
	if err != nil {
		proxywasm.LogCriticalf("registering the queue: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.queue = id
	if err := proxywasm.SetTickPeriodMilliSeconds(5000); err != nil {
		proxywasm.LogCriticalf("setting the tick period: %v", err)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func count() int {
	v, _, err := proxywasm.GetSharedData(countKey)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(string(v))
	return n
}

func (p *pluginContext) OnTick() { proxywasm.LogInfof("tick: %d requests", count()) }

func (p *pluginContext) OnQueueReady(id uint32) {
	data, err := proxywasm.DequeueSharedQueue(id)
	if err != nil {
		proxywasm.LogErrorf("dequeueing: %v", err)
		return
	}
	proxywasm.LogInfof("event %s", data)
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext { return &httpContext{} }

func (p *pluginContext) NewTcpContext(uint32) types.TcpContext { return &tcpContext{} }

type httpContext struct{ types.DefaultHttpContext }

func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	// Count with compare-and-swap: other instances count too.
	for {
		v, cas, err := proxywasm.GetSharedData(countKey)
		n := 0
		if err == nil {
			n, _ = strconv.Atoi(string(v))
		}
		err = proxywasm.SetSharedData(countKey, []byte(strconv.Itoa(n+1)), cas)
		if err != types.ErrorStatusCasMismatch {
			break
		}
	}
	token, err := proxywasm.GetHttpRequestHeader("authorization")
	if err != nil {
		token = "none"
	}
	headers := [][2]string{{":method", "GET"}, {":path", "/check"}, {":authority", "auth"}, {"x-token", token}}
	if _, err := proxywasm.DispatchHttpCall("auth", headers, nil, nil, 1000, h.onAuth); err != nil {
		proxywasm.LogErrorf("calling auth: %v", err)
		return types.ActionContinue
	}
	return types.ActionPause
}

func (h *httpContext) onAuth(numHeaders, bodySize, numTrailers int) {
	headers, err := proxywasm.GetHttpCallResponseHeaders()
	if err != nil {
		proxywasm.LogErrorf("reading the auth reply: %v", err)
	}
	for _, kv := range headers {
		if kv[0] == ":status" && kv[1] == "200" {
			proxywasm.LogInfof("allowed")
			if err := proxywasm.ResumeHttpRequest(); err != nil {
				proxywasm.LogErrorf("resuming: %v", err)
			}
			return
		}
	}
	proxywasm.LogInfof("denied")
	if err := proxywasm.SendHttpResponse(401, nil, []byte("denied"), -1); err != nil {
		proxywasm.LogErrorf("denying: %v", err)
	}
}

type tcpContext struct{ types.DefaultTcpContext }

func (t *tcpContext) OnDownstreamData(size int, end bool) types.Action {
	data, err := proxywasm.GetDownstreamData(0, size)
	if err != nil {
		proxywasm.LogErrorf("reading: %v", err)
		return types.ActionContinue
	}
	if err := proxywasm.ReplaceDownstreamData(bytes.ToUpper(data)); err != nil {
		proxywasm.LogErrorf("replacing: %v", err)
	}
	return types.ActionContinue
}
