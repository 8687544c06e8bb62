package proxywasm_test

// More compile-only examples, one per SDK area not shown in
// example_test.go: TCP, the plugin context shortcut, VM configuration,
// response and trailer access, resuming, effective contexts, deferred
// plugin shutdown, queue lookup, logging, and gRPC calls and streams.

import (
	"encoding/binary"
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

type exampleTCP struct{ types.DefaultTcpContext }

func (*exampleTCP) OnDownstreamData(dataSize int, endOfStream bool) types.Action {
	data, err := proxywasm.GetDownstreamData(0, dataSize)
	if err == nil && strings.HasPrefix(string(data), "QUIT") {
		_ = proxywasm.CloseDownstream()
	}
	return types.ActionContinue
}

// A TCP plugin needs only a TcpContext factory.
func ExampleSetTcpContext() {
	proxywasm.SetTcpContext(func(uint32) types.TcpContext { return &exampleTCP{} })
}

// A plugin without VM-wide state registers its PluginContext factory.
func ExampleSetPluginContext() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &examplePlugin{} })
}

// Read the VM configuration in VMContext.OnVMStart.
func ExampleGetVMConfiguration() {
	cfg, err := proxywasm.GetVMConfiguration()
	if err != nil && err != types.ErrorStatusNotFound {
		proxywasm.LogErrorf("vm configuration: %v", err)
		return
	}
	proxywasm.LogInfof("vm configuration %q", cfg)
}

// Edit response headers in OnHttpResponseHeaders.
func ExampleAddHttpResponseHeader() {
	if status, err := proxywasm.GetHttpResponseHeader(":status"); err == nil && status == "200" {
		_ = proxywasm.AddHttpResponseHeader("cache-control", "max-age=60")
	}
	_ = proxywasm.RemoveHttpResponseHeader("server")
}

// Rewrite a buffered response body in OnHttpResponseBody (return
// types.ActionPause until endOfStream; drop content-length in
// OnHttpResponseHeaders).
func ExampleGetHttpResponseBody() {
	bodySize := 64 // OnHttpResponseBody's argument
	body, err := proxywasm.GetHttpResponseBody(0, bodySize)
	if err == nil {
		_ = proxywasm.ReplaceHttpResponseBody([]byte(strings.ReplaceAll(string(body), "secret", "******")))
	}
}

// Read and add request trailers in OnHttpRequestTrailers.
func ExampleGetHttpRequestTrailers() {
	trailers, err := proxywasm.GetHttpRequestTrailers()
	if err == nil {
		proxywasm.LogDebugf("%d trailers", len(trailers))
	}
	_ = proxywasm.AddHttpRequestTrailer("x-checked", "1")
}

// Resume a request held with types.ActionPause, from any later callback
// (here after a decision taken on the body).
func ExampleResumeHttpRequest() {
	_ = proxywasm.ReplaceHttpRequestHeader("x-decision", "allow")
	if err := proxywasm.ResumeHttpRequest(); err != nil {
		proxywasm.LogErrorf("resume: %v", err)
	}
}

// From OnTick (on the plugin context), act on a stream the plugin
// context keeps track of.
func ExampleSetEffectiveContext() {
	var pausedStream uint32 = 7 // remembered in OnHttpRequestHeaders
	if err := proxywasm.SetEffectiveContext(pausedStream); err == nil {
		_ = proxywasm.SendHttpResponse(503, nil, []byte("timed out waiting"), -1)
	}
}

type drainingPlugin struct {
	types.DefaultPluginContext
	pending int
}

// OnPluginDone returns false while work is pending; PluginDone ends the
// plugin context later.
func (p *drainingPlugin) OnPluginDone() bool { return p.pending == 0 }

// Finish a plugin context whose OnPluginDone returned false.
func ExamplePluginDone() {
	p := &drainingPlugin{pending: 1}
	p.pending-- // the last pending callout answered
	if p.pending == 0 {
		proxywasm.PluginDone()
	}
}

// Send to a queue another VM registered, by its vm_id.
func ExampleResolveSharedQueue() {
	id, err := proxywasm.ResolveSharedQueue("collector_vm", "events")
	if err != nil {
		proxywasm.LogWarnf("no queue: %v", err)
		return
	}
	_ = proxywasm.EnqueueSharedQueue(id, []byte("request seen"))
}

// Read shared data without updating it.
func ExampleGetSharedData() {
	value, _, err := proxywasm.GetSharedData("config_version")
	if err == types.ErrorStatusNotFound {
		return
	}
	proxywasm.LogInfof("config version %s", value)
}

// Skip building expensive log messages the host would drop.
func ExampleGetLogLevel() {
	level, err := proxywasm.GetLogLevel()
	if err == nil && level <= types.LogLevelDebug {
		headers, _ := proxywasm.GetHttpRequestHeaders()
		proxywasm.LogDebugf("request headers: %v", headers)
	}
}

// Log at each level; the f variants format like fmt.Sprintf.
func ExampleLogInfof() {
	proxywasm.LogTrace("entering")
	proxywasm.LogInfof("%d items", 3)
	proxywasm.LogWarn("slow upstream")
	proxywasm.LogCriticalf("cannot continue: %v", types.ErrorStatusBadArgument)
}

// Gauges go up and down; histograms record samples.
func ExampleDefineGaugeMetric() {
	queueDepth := proxywasm.DefineGaugeMetric("example_queue_depth")
	queueDepth.Add(3)
	queueDepth.Add(-1)
	latency := proxywasm.DefineHistogramMetric("example_latency_ms")
	latency.Record(12)
}

// Call a unary gRPC method (grpc.health.v1.Health/Check) on cluster
// "grpc_backend" and resume the paused request with the answer. The
// request message is serialized protobuf: field 1 (service) = "api".
func ExampleDispatchGrpcCall() {
	request := append([]byte{0x0a, 3}, "api"...)
	_, err := proxywasm.DispatchGrpcCall("grpc_backend", "grpc.health.v1.Health", "Check",
		[][2]string{{"x-request-source", "wasm"}}, request, 1000,
		func(status types.GrpcStatus, responseSize int) {
			if status != types.GrpcStatusOK {
				_, msg, _ := proxywasm.GetGrpcStatus()
				_ = proxywasm.SendHttpResponse(503, nil, []byte("health check failed: "+msg), -1)
				return
			}
			resp, _ := proxywasm.GetGrpcCallResponseBody(0, responseSize)
			_ = proxywasm.ReplaceHttpRequestHeader("x-health", string(resp))
			_ = proxywasm.ResumeHttpRequest()
		})
	if err != nil {
		proxywasm.LogErrorf("grpc call: %v", err)
	}
}

// Open a streaming gRPC call, send two messages and half-close; the
// callbacks see the server's metadata, messages and status.
func ExampleOpenGrpcStream() {
	id, err := proxywasm.OpenGrpcStream("grpc_backend", "example.Events", "Publish", nil, proxywasm.GrpcStreamCallbacks{
		OnInitialMetadata: func(int) {
			md, _ := proxywasm.GetGrpcStreamInitialMetadata()
			proxywasm.LogDebugf("metadata %v", md)
		},
		OnMessage: func(size int) {
			msg, _ := proxywasm.GetGrpcStreamMessage(0, size)
			proxywasm.LogInfof("ack of %d bytes", len(msg))
		},
		OnClose: func(status types.GrpcStatus) {
			_, msg, _ := proxywasm.GetGrpcStatus()
			proxywasm.LogInfof("stream ended: %s %s", status, msg)
		},
	})
	if err != nil {
		proxywasm.LogErrorf("open stream: %v", err)
		return
	}
	for i := uint64(1); i <= 2; i++ {
		msg := binary.AppendUvarint([]byte{0x08}, i) // field 1 (varint) = i
		_ = proxywasm.SendGrpcStreamMessage(id, msg, false)
	}
	_ = proxywasm.CloseGrpcStream(id)
}
