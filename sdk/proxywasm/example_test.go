package proxywasm_test

// These examples compile in every build but are not run: they need a
// Proxy-Wasm host. Build a plugin with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .

import (
	"encoding/binary"
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// A complete plugin: a VM context, a plugin context that reads its
// configuration, and an HTTP context per request.
type exampleVM struct{ types.DefaultVMContext }

func (*exampleVM) NewPluginContext(uint32) types.PluginContext { return &examplePlugin{} }

type examplePlugin struct {
	types.DefaultPluginContext
	greeting string
}

func (p *examplePlugin) OnPluginStart(int) types.OnPluginStartStatus {
	cfg, err := proxywasm.GetPluginConfiguration()
	if err != nil && err != types.ErrorStatusNotFound {
		proxywasm.LogCriticalf("reading configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.greeting = strings.TrimSpace(string(cfg))
	return types.OnPluginStartStatusOK
}

func (p *examplePlugin) NewHttpContext(uint32) types.HttpContext {
	return &exampleHTTP{greeting: p.greeting}
}

type exampleHTTP struct {
	types.DefaultHttpContext
	greeting string
}

func (h *exampleHTTP) OnHttpResponseHeaders(int, bool) types.Action {
	if err := proxywasm.AddHttpResponseHeader("x-greeting", h.greeting); err != nil {
		proxywasm.LogErrorf("adding header: %v", err)
	}
	return types.ActionContinue
}

// Register the VM context from main (or from init).
func ExampleSetVMContext() {
	proxywasm.SetVMContext(&exampleVM{})
}

// A stateless HTTP plugin needs no VM or plugin context.
func ExampleSetHttpContext() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &exampleHTTP{greeting: "hi"} })
}

// Read the plugin configuration in OnPluginStart; an absent configuration is
// ErrorStatusNotFound.
func ExampleGetPluginConfiguration() {
	cfg, err := proxywasm.GetPluginConfiguration()
	switch {
	case err == types.ErrorStatusNotFound:
		proxywasm.LogInfo("no configuration")
	case err != nil:
		proxywasm.LogErrorf("configuration: %v", err)
	default:
		proxywasm.LogInfof("configuration: %s", cfg)
	}
}

// Answer a request locally from OnHttpRequestHeaders, then return
// types.ActionPause.
func ExampleSendHttpResponse() {
	if v, err := proxywasm.GetHttpRequestHeader("authorization"); err != nil || v == "" {
		_ = proxywasm.SendHttpResponse(401,
			[][2]string{{"www-authenticate", `Bearer realm="example"`}},
			[]byte("unauthorized"), -1)
	}
}

// Inspect and rewrite request headers in OnHttpRequestHeaders.
func ExampleGetHttpRequestHeaders() {
	headers, err := proxywasm.GetHttpRequestHeaders()
	if err != nil {
		return
	}
	for _, h := range headers {
		proxywasm.LogDebugf("%s: %s", h[0], h[1])
	}
	_ = proxywasm.ReplaceHttpRequestHeader("x-plugin", "seen")
	_ = proxywasm.RemoveHttpRequestHeader("x-internal")
}

// Buffer the whole request body (return ActionPause until endOfStream) and
// then read it in OnHttpRequestBody.
func ExampleGetHttpRequestBody() {
	bodySize, endOfStream := 42, true // OnHttpRequestBody's arguments
	if !endOfStream {
		return // return types.ActionPause from the callback
	}
	body, err := proxywasm.GetHttpRequestBody(0, bodySize)
	if err == nil {
		_ = proxywasm.ReplaceHttpRequestBody([]byte(strings.ToUpper(string(body))))
	}
}

// Call another cluster and resume the paused request when the answer
// arrives.
func ExampleDispatchHttpCall() {
	_, err := proxywasm.DispatchHttpCall("auth_cluster",
		[][2]string{{":method", "GET"}, {":path", "/check"}, {":authority", "auth"}},
		nil, nil, 5000,
		func(numHeaders, bodySize, numTrailers int) {
			status, _ := proxywasm.GetHttpCallResponseHeaders()
			proxywasm.LogInfof("auth answered %v", status)
			_ = proxywasm.ResumeHttpRequest()
		})
	if err != nil {
		proxywasm.LogErrorf("dispatch: %v", err)
	}
}

// Read host properties; Envoy encodes integers as 8-byte little-endian.
func ExampleGetProperty() {
	path, err := proxywasm.GetProperty([]string{"request", "path"})
	if err == nil {
		proxywasm.LogInfof("path %s", path)
	}
	if b, err := proxywasm.GetProperty([]string{"response", "code"}); err == nil && len(b) == 8 {
		proxywasm.LogInfof("status %d", binary.LittleEndian.Uint64(b))
	}
	headers, _ := proxywasm.GetPropertyMap([]string{"request", "headers"})
	proxywasm.LogInfof("%d request headers", len(headers))
	_ = proxywasm.SetProperty([]string{"example_marker"}, []byte("1"))
}

// Update shared data with compare-and-swap, retrying on a conflict.
func ExampleSetSharedData() {
	for {
		value, cas, err := proxywasm.GetSharedData("hits")
		var n uint64
		if err == nil && len(value) == 8 {
			n = binary.LittleEndian.Uint64(value)
		}
		err = proxywasm.SetSharedData("hits", binary.LittleEndian.AppendUint64(nil, n+1), cas)
		if err != types.ErrorStatusCasMismatch {
			return
		}
	}
}

// Pass work between VMs through a shared queue; OnQueueReady fires on the
// registering plugin context.
func ExampleRegisterSharedQueue() {
	id, err := proxywasm.RegisterSharedQueue("events")
	if err != nil {
		return
	}
	_ = proxywasm.EnqueueSharedQueue(id, []byte("hello"))
	if item, err := proxywasm.DequeueSharedQueue(id); err == nil {
		proxywasm.LogInfof("dequeued %s", item)
	}
}

// Define metrics once, update them per request.
func ExampleDefineCounterMetric() {
	requests := proxywasm.DefineCounterMetric("example_requests_total")
	inflight := proxywasm.DefineGaugeMetric("example_inflight")
	sizes := proxywasm.DefineHistogramMetric("example_body_bytes")

	requests.Increment(1)
	inflight.Add(1)
	sizes.Record(512)
	inflight.Add(-1)
	proxywasm.LogDebugf("requests so far: %d", requests.Value())
}

// Run periodic work in PluginContext.OnTick.
func ExampleSetTickPeriodMilliSeconds() {
	if err := proxywasm.SetTickPeriodMilliSeconds(5000); err != nil {
		proxywasm.LogErrorf("tick: %v", err)
	}
}

// Rewrite TCP data in TcpContext.OnDownstreamData.
func ExamplePrependDownstreamData() {
	data, err := proxywasm.GetDownstreamData(0, 1024)
	if err == nil && strings.HasPrefix(string(data), "PING") {
		_ = proxywasm.PrependDownstreamData([]byte("prepend payload to downstream data"))
	}
}

// Call a host-specific function (Envoy: "clear_route_cache", "compress"...).
func ExampleCallForeignFunction() {
	if _, err := proxywasm.CallForeignFunction("clear_route_cache", nil); err != nil {
		proxywasm.LogWarnf("clear_route_cache: %v", err)
	}
}
