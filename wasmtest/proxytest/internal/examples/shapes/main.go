// Command shapes is an example-style plugin whose main_test.go drives it
// the ways proxy-wasm-go-sdk's example tests drive theirs and wasmproxy's
// host did not follow before: a body callback with no headers before it,
// a response with no request, several requests on one context,
// properties and foreign functions the test supplies, a callout on every
// tick answered as "the first call", callout replies with trailers, and
// the factory shapes (WithPluginContext(vm.NewPluginContext), ...).
// Each case runs on the Go code and, compiled, on wasmproxy's host.
package main

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&vmContext{}) }

const (
	counterKey    = "shapes.requests"
	tickPeriod    = 1000
	fanOutCluster = "fanout"
)

// tenantPath is where the route's metadata puts the tenant.
var tenantPath = []string{"route_metadata", "filter_metadata", "envoy.filters.http.wasm", "tenant"}

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext { return newPluginContext() }

// newPluginContext defines the plugin's metric and queue when the
// context is made, so that streams count even in tests that never call
// StartPlugin.
func newPluginContext() *pluginContext {
	p := &pluginContext{requests: proxywasm.DefineCounterMetric("shapes_requests")}
	q, err := proxywasm.RegisterSharedQueue("shapes")
	if err != nil {
		proxywasm.LogCriticalf("registering the queue: %v", err)
	}
	p.queue = q
	return p
}

type pluginContext struct {
	types.DefaultPluginContext
	ticks    int
	requests proxywasm.MetricCounter
	queue    uint32
}

func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	if err := proxywasm.SetTickPeriodMilliSeconds(tickPeriod); err != nil {
		proxywasm.LogCriticalf("setting the tick period: %v", err)
		return types.OnPluginStartStatusFailed
	}
	proxywasm.LogInfo("shapes started")
	return types.OnPluginStartStatusOK
}

// OnTick asks the status cluster once per tick and the clock foreign
// function for the time.
func (p *pluginContext) OnTick() {
	p.ticks++
	n := p.ticks
	hs := [][2]string{{":method", "GET"}, {":path", "/status?tick=" + strconv.Itoa(n)}, {":authority", "status.local"}}
	if _, err := proxywasm.DispatchHttpCall("status", hs, nil, nil, 5000, func(int, int, int) {
		proxywasm.LogInfof("tick %d answered", n)
	}); err != nil {
		proxywasm.LogCriticalf("tick %d: dispatch: %v", n, err)
	}
	now, err := proxywasm.CallForeignFunction("clock", []byte("utc"))
	if err != nil {
		proxywasm.LogWarnf("tick %d: no clock: %v", n, err)
		return
	}
	proxywasm.LogInfof("tick %d at %s", n, now)
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{plugin: p}
}

func (p *pluginContext) NewTcpContext(uint32) types.TcpContext { return &tcpContext{} }

type httpContext struct {
	types.DefaultHttpContext
	plugin  *pluginContext
	pending int
}

// OnHttpRequestHeaders counts the request (a metric and a shared-data
// counter), then checks the tenant the route names: a request to a
// tenant's route must say who it is, or asks the auth cluster.
func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	if h.plugin != nil {
		h.plugin.requests.Increment(1)
		if err := proxywasm.EnqueueSharedQueue(h.plugin.queue, []byte("request")); err != nil {
			proxywasm.LogErrorf("enqueue: %v", err)
		}
	}
	n := increment()
	proxywasm.LogInfof("request %d", n)

	tenant, err := proxywasm.GetProperty(tenantPath)
	if err != nil {
		proxywasm.LogInfo("no tenant for this route")
		return types.ActionContinue
	}
	if token, err := proxywasm.GetHttpRequestHeader("authorization"); err == nil {
		hs := [][2]string{{":method", "GET"}, {":path", "/check"}, {":authority", "auth.local"}, {"x-token", token}, {"x-tenant", string(tenant)}}
		if _, err := proxywasm.DispatchHttpCall("auth", hs, nil, nil, 5000, h.authorized); err != nil {
			proxywasm.LogCriticalf("auth dispatch: %v", err)
			return types.ActionContinue
		}
		return types.ActionPause
	}
	user, err := proxywasm.GetHttpRequestHeader("x-user")
	if err != nil {
		if err := proxywasm.SendHttpResponse(401, [][2]string{{"x-tenant", string(tenant)}}, nil, -1); err != nil {
			proxywasm.LogErrorf("local response: %v", err)
		}
		return types.ActionPause
	}
	proxywasm.LogInfof("tenant %s, user %s", tenant, user)
	return types.ActionContinue
}

// increment adds one to the shared counter, retrying on a CAS mismatch.
func increment() int {
	for {
		v, cas, err := proxywasm.GetSharedData(counterKey)
		if err != nil && err != types.ErrorStatusNotFound {
			proxywasm.LogErrorf("reading the counter: %v", err)
			return 0
		}
		n, _ := strconv.Atoi(string(v))
		n++
		err = proxywasm.SetSharedData(counterKey, []byte(strconv.Itoa(n)), cas)
		if err == nil {
			return n
		}
		if err != types.ErrorStatusCasMismatch {
			proxywasm.LogErrorf("writing the counter: %v", err)
			return 0
		}
	}
}

func (h *httpContext) authorized(numHeaders, bodySize, numTrailers int) {
	hs, _ := proxywasm.GetHttpCallResponseHeaders()
	status := ""
	for _, kv := range hs {
		if kv[0] == ":status" {
			status = kv[1]
		}
	}
	trailers, _ := proxywasm.GetHttpCallResponseTrailers()
	proxywasm.LogInfof("auth answered %s with %d trailers", status, len(trailers))
	if status == "200" {
		proxywasm.ResumeHttpRequest()
		return
	}
	why := "denied"
	for _, kv := range trailers {
		if kv[0] == "x-why" {
			why = kv[1]
		}
	}
	if err := proxywasm.SendHttpResponse(403, nil, []byte(why), -1); err != nil {
		proxywasm.LogErrorf("local response: %v", err)
	}
}

// OnHttpRequestBody holds the body until its end, then refuses one that
// contains "forbidden" and upper-cases any other.
func (h *httpContext) OnHttpRequestBody(size int, end bool) types.Action {
	if !end {
		return types.ActionPause
	}
	body, err := proxywasm.GetHttpRequestBody(0, size)
	if err != nil {
		proxywasm.LogErrorf("reading the body: %v", err)
		return types.ActionContinue
	}
	proxywasm.LogInfof("request body of %d bytes", len(body))
	if bytes.Contains(body, []byte("forbidden")) {
		if err := proxywasm.SendHttpResponse(403, [][2]string{{"x-why", "forbidden word"}}, []byte("no"), -1); err != nil {
			proxywasm.LogErrorf("local response: %v", err)
		}
		return types.ActionPause
	}
	if err := proxywasm.ReplaceHttpRequestBody(bytes.ToUpper(body)); err != nil {
		proxywasm.LogErrorf("replacing the body: %v", err)
	}
	return types.ActionContinue
}

// OnHttpResponseHeaders marks the response, and when it asks for a fan
// out (x-fanout: n) holds it until n calls to the fanout cluster answer.
func (h *httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	if err := proxywasm.AddHttpResponseHeader("x-shapes", "on"); err != nil {
		proxywasm.LogErrorf("adding a header: %v", err)
	}
	v, err := proxywasm.GetHttpResponseHeader("x-fanout")
	if err != nil {
		return types.ActionContinue
	}
	n, _ := strconv.Atoi(v)
	for i := range n {
		hs := [][2]string{{":method", "GET"}, {":path", "/part/" + strconv.Itoa(i)}, {":authority", "fanout.local"}}
		if _, err := proxywasm.DispatchHttpCall(fanOutCluster, hs, nil, nil, 5000, h.partDone); err != nil {
			proxywasm.LogCriticalf("fan out: %v", err)
			return types.ActionContinue
		}
		h.pending++
	}
	return types.ActionPause
}

func (h *httpContext) partDone(int, int, int) {
	h.pending--
	if h.pending > 0 {
		proxywasm.LogInfof("%d parts pending", h.pending)
		return
	}
	proxywasm.AddHttpResponseHeader("x-parts", "done")
	proxywasm.ResumeHttpResponse()
	proxywasm.LogInfo("response resumed after the fan out")
}

// OnHttpResponseBody holds the body until its end and signs it.
func (h *httpContext) OnHttpResponseBody(size int, end bool) types.Action {
	if !end {
		return types.ActionPause
	}
	if err := proxywasm.AppendHttpResponseBody([]byte(" [shapes]")); err != nil {
		proxywasm.LogErrorf("appending: %v", err)
	}
	return types.ActionContinue
}

func (h *httpContext) OnHttpStreamDone() { proxywasm.LogInfo("stream done") }

// tcpContext upper-cases what the client sends.
type tcpContext struct{ types.DefaultTcpContext }

func (*tcpContext) OnDownstreamData(size int, end bool) types.Action {
	data, err := proxywasm.GetDownstreamData(0, size)
	if err != nil {
		proxywasm.LogErrorf("reading: %v", err)
		return types.ActionContinue
	}
	if err := proxywasm.ReplaceDownstreamData([]byte(strings.ToUpper(string(data)))); err != nil {
		proxywasm.LogErrorf("replacing: %v", err)
	}
	return types.ActionContinue
}
