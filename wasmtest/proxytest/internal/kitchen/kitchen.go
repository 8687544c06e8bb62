// Package kitchen is the plugin the tests of package proxytest run in
// both modes: its Go code natively, and built for wasip1 (package
// kitchen/wasm) as a compiled module. It exercises every host function
// the emulator serves, one kind of plugin per request path, as the
// examples of proxy-wasm-go-sdk do one per plugin:
//
//	/headers   edits request and response headers and trailers
//	/body      buffers the request body to its end and rewrites it
//	/auth      asks the "auth" cluster (DispatchHttpCall): 200 lets the
//	           request through, anything else is answered 403
//	/grpc      asks the "authz" cluster over gRPC, likewise
//	/count     counts requests in shared data and in a counter
//	/queue     puts the path on the "events" shared queue, which the
//	           plugin context drains (OnQueueReady)
//	/tenant    answers 404 unless the route metadata names a tenant
//	/postpone  holds the request until the next tick
//	/panic     panics (a trap in the compiled module)
//
// Ticks also refresh a gauge from a foreign function and push a message
// on a gRPC stream opened at start. TCP connections get each complete
// line of client data prefixed with the configured prefix.
package kitchen

import (
	"errors"
	"strconv"
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// New returns the plugin.
func New() types.VMContext { return &vm{} }

type vm struct{ types.DefaultVMContext }

func (*vm) OnVMStart(size int) types.OnVMStartStatus {
	cfg, err := proxywasm.GetVMConfiguration()
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		proxywasm.LogErrorf("vm configuration: %v", err)
		return types.OnVMStartStatusFailed
	}
	proxywasm.LogInfof("vm configuration (%d bytes): %s", size, cfg)
	return types.OnVMStartStatusOK
}

func (*vm) NewPluginContext(id uint32) types.PluginContext {
	return &plugin{id: id, prefix: "> "}
}

type plugin struct {
	types.DefaultPluginContext
	id        uint32
	prefix    string
	queue     uint32
	stream    uint32
	ticks     int
	postponed []uint32
	defined   bool
	requests  proxywasm.MetricCounter
	pending   proxywasm.MetricGauge
	sizes     proxywasm.MetricHistogram
}

// metrics defines the metrics on first use: not in NewPluginContext,
// which tests may call before any host exists.
func (p *plugin) metrics() *plugin {
	if !p.defined {
		p.requests = proxywasm.DefineCounterMetric("kitchen_requests_total")
		p.pending = proxywasm.DefineGaugeMetric("kitchen_postponed")
		p.sizes = proxywasm.DefineHistogramMetric("kitchen_body_bytes")
		p.defined = true
	}
	return p
}

// OnPluginStart reads "key=value" lines: tick=<ms> sets the tick period,
// prefix=<text> the TCP prefix; reject=yes refuses the configuration.
func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	cfg, _ := proxywasm.GetPluginConfiguration()
	for _, line := range strings.Split(string(cfg), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "tick":
			ms, _ := strconv.Atoi(v)
			if err := proxywasm.SetTickPeriodMilliSeconds(uint32(ms)); err != nil {
				proxywasm.LogErrorf("tick period: %v", err)
			}
		case "prefix":
			p.prefix = v
		case "reject":
			proxywasm.LogWarn("configuration rejected")
			return types.OnPluginStartStatusFailed
		}
	}
	var err error
	if p.queue, err = proxywasm.RegisterSharedQueue("events"); err != nil {
		proxywasm.LogErrorf("queue: %v", err)
	}
	p.stream, err = proxywasm.OpenGrpcStream("telemetry", "kitchen.Telemetry", "Report", [][2]string{{"x-plugin", "kitchen"}},
		proxywasm.GrpcStreamCallbacks{
			OnMessage: func(size int) {
				b, _ := proxywasm.GetGrpcStreamMessage(0, size)
				proxywasm.LogInfof("telemetry says %s", b)
			},
			OnClose: func(status types.GrpcStatus) {
				_, msg, _ := proxywasm.GetGrpcStatus()
				proxywasm.LogInfof("telemetry closed: %v %s", status, msg)
			},
		})
	if err != nil {
		proxywasm.LogErrorf("telemetry: %v", err)
	}
	proxywasm.LogInfof("plugin %d started with %d bytes of configuration", p.id, size)
	return types.OnPluginStartStatusOK
}

func (p *plugin) OnTick() {
	p.ticks++
	proxywasm.LogDebugf("tick %d", p.ticks)
	for _, id := range p.postponed {
		if err := proxywasm.SetEffectiveContext(id); err != nil {
			proxywasm.LogWarnf("postponed %d: %v", id, err)
			continue
		}
		proxywasm.AddHttpRequestHeader("x-postponed-ticks", strconv.Itoa(p.ticks))
		proxywasm.ResumeHttpRequest()
		p.metrics().pending.Add(-1)
	}
	p.postponed = nil
	if now, err := proxywasm.CallForeignFunction("now", nil); err == nil {
		proxywasm.LogInfof("foreign now: %s", now)
	}
	if p.stream != 0 {
		if err := proxywasm.SendGrpcStreamMessage(p.stream, []byte("tick "+strconv.Itoa(p.ticks)), false); err != nil {
			proxywasm.LogWarnf("telemetry send: %v", err)
		}
	}
}

func (p *plugin) OnQueueReady(id uint32) {
	for {
		item, err := proxywasm.DequeueSharedQueue(id)
		if err != nil {
			return
		}
		proxywasm.LogInfof("event: %s", item)
	}
}

func (p *plugin) OnPluginDone() bool {
	proxywasm.LogInfo("plugin done")
	return true
}

func (p *plugin) NewHttpContext(id uint32) types.HttpContext { return &stream{p: p, id: id} }

func (p *plugin) NewTcpContext(id uint32) types.TcpContext { return &conn{p: p} }

type stream struct {
	types.DefaultHttpContext
	p    *plugin
	id   uint32
	path string
}

func (s *stream) OnHttpRequestHeaders(n int, eos bool) types.Action {
	s.p.metrics().requests.Increment(1)
	s.path, _ = proxywasm.GetHttpRequestHeader(":path")
	proxywasm.LogInfof("request %s with %d headers", s.path, n)
	switch s.path {
	case "/headers":
		proxywasm.AddHttpRequestHeader("x-kitchen", "on")
		proxywasm.ReplaceHttpRequestHeader("x-replace", "replaced")
		proxywasm.RemoveHttpRequestHeader("x-drop")
	case "/body":
		proxywasm.RemoveHttpRequestHeader("content-length")
	case "/auth":
		return s.dispatchAuth()
	case "/grpc":
		return s.dispatchGrpc()
	case "/count":
		s.count()
	case "/queue":
		if err := proxywasm.EnqueueSharedQueue(s.p.queue, []byte(s.path)); err != nil {
			proxywasm.LogErrorf("enqueue: %v", err)
		}
	case "/tenant":
		tenant, err := proxywasm.GetProperty([]string{"route_metadata", "filter_metadata", "envoy.filters.http.wasm", "tenant"})
		if err != nil {
			proxywasm.SendHttpResponse(404, [][2]string{{"x-reason", "no tenant"}}, []byte("unknown tenant"), -1)
			return types.ActionPause
		}
		proxywasm.ReplaceHttpRequestHeader("x-tenant", string(tenant))
		proxywasm.SetProperty([]string{"kitchen", "tenant"}, tenant)
	case "/postpone":
		s.p.postponed = append(s.p.postponed, s.id)
		s.p.metrics().pending.Add(1)
		return types.ActionPause
	case "/panic":
		panic("kitchen: asked to panic")
	}
	return types.ActionContinue
}

func (s *stream) dispatchAuth() types.Action {
	user, _ := proxywasm.GetHttpRequestHeader("x-user")
	_, err := proxywasm.DispatchHttpCall("auth",
		[][2]string{{":method", "GET"}, {":path", "/check?user=" + user}, {":authority", "auth.local"}},
		nil, nil, 2000, func(numHeaders, bodySize, numTrailers int) {
			hs, _ := proxywasm.GetHttpCallResponseHeaders()
			status := ""
			for _, h := range hs {
				if h[0] == ":status" {
					status = h[1]
				}
			}
			body, _ := proxywasm.GetHttpCallResponseBody(0, bodySize)
			proxywasm.LogInfof("auth answered %s (%d headers, %d bytes, %d trailers)", status, numHeaders, bodySize, numTrailers)
			if status != "200" {
				proxywasm.SendHttpResponse(403, [][2]string{{"x-denied-by", "kitchen"}}, []byte("forbidden: "+string(body)), -1)
				return
			}
			proxywasm.AddHttpRequestHeader("x-auth-user", string(body))
			proxywasm.ResumeHttpRequest()
		})
	if err != nil {
		proxywasm.LogErrorf("auth: %v", err)
		return types.ActionContinue
	}
	return types.ActionPause
}

func (s *stream) dispatchGrpc() types.Action {
	_, err := proxywasm.DispatchGrpcCall("authz", "kitchen.Authz", "Check", [][2]string{{"x-path", s.path}}, []byte("check"), 1000,
		func(status types.GrpcStatus, size int) {
			if status != types.GrpcStatusOK {
				_, msg, _ := proxywasm.GetGrpcStatus()
				proxywasm.SendHttpResponse(503, nil, []byte(status.String()+": "+msg), int32(status))
				return
			}
			b, _ := proxywasm.GetGrpcCallResponseBody(0, size)
			proxywasm.ReplaceHttpRequestHeader("x-authz", string(b))
			proxywasm.ResumeHttpRequest()
		})
	if err != nil {
		proxywasm.LogErrorf("authz: %v", err)
		return types.ActionContinue
	}
	return types.ActionPause
}

// count increments the shared counter "count" with a CAS loop.
func (s *stream) count() {
	for {
		v, cas, err := proxywasm.GetSharedData("count")
		if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
			proxywasm.LogErrorf("count: %v", err)
			return
		}
		n, _ := strconv.Atoi(string(v))
		err = proxywasm.SetSharedData("count", []byte(strconv.Itoa(n+1)), cas)
		if errors.Is(err, types.ErrorStatusCasMismatch) {
			continue
		}
		proxywasm.LogInfof("count: %d", n+1)
		return
	}
}

func (s *stream) OnHttpRequestBody(size int, eos bool) types.Action {
	if !eos {
		return types.ActionPause // until the whole body is here
	}
	body, err := proxywasm.GetHttpRequestBody(0, size)
	if err != nil {
		proxywasm.LogErrorf("body: %v", err)
		return types.ActionContinue
	}
	s.p.metrics().sizes.Record(uint64(size))
	proxywasm.LogInfof("body: %s", body)
	proxywasm.ReplaceHttpRequestBody([]byte(strings.ToUpper(string(body))))
	proxywasm.PrependHttpRequestBody([]byte("<"))
	proxywasm.AppendHttpRequestBody([]byte(">"))
	return types.ActionContinue
}

func (s *stream) OnHttpRequestTrailers(n int) types.Action {
	proxywasm.AddHttpRequestTrailer("x-trailers-seen", strconv.Itoa(n))
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(n int, eos bool) types.Action {
	if s.path == "/headers" {
		hs, _ := proxywasm.GetHttpResponseHeaders()
		hs = append(hs, [2]string{"x-response-headers", strconv.Itoa(len(hs))})
		proxywasm.ReplaceHttpResponseHeaders(hs)
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseBody(size int, eos bool) types.Action {
	if s.path == "/headers" && eos {
		proxywasm.AppendHttpResponseBody([]byte(" [kitchen]"))
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseTrailers(n int) types.Action {
	proxywasm.RemoveHttpResponseTrailer("x-internal")
	return types.ActionContinue
}

func (s *stream) OnHttpStreamDone() {
	proxywasm.LogInfof("stream %d done: %s", s.id, s.path)
}

// conn prefixes each complete line the client sends, holding partial
// lines until they end.
type conn struct {
	types.DefaultTcpContext
	p *plugin
}

func (c *conn) OnNewConnection() types.Action {
	proxywasm.LogInfo("connection opened")
	return types.ActionContinue
}

func (c *conn) OnDownstreamData(size int, eos bool) types.Action {
	data, err := proxywasm.GetDownstreamData(0, size)
	if err != nil {
		return types.ActionContinue
	}
	if !strings.HasSuffix(string(data), "\n") {
		return types.ActionPause
	}
	lines := strings.SplitAfter(string(data), "\n")
	var out strings.Builder
	for _, l := range lines {
		if l != "" {
			out.WriteString(c.p.prefix + l)
		}
	}
	proxywasm.ReplaceDownstreamData([]byte(out.String()))
	if strings.Contains(string(data), "quit\n") {
		proxywasm.CloseDownstream()
	}
	return types.ActionContinue
}

func (c *conn) OnUpstreamData(size int, eos bool) types.Action {
	proxywasm.LogInfof("upstream sent %d bytes", size)
	return types.ActionContinue
}

func (c *conn) OnDownstreamClose(p types.PeerType) { proxywasm.LogInfof("client closed (%v)", p) }
func (c *conn) OnUpstreamClose(p types.PeerType)   { proxywasm.LogInfof("upstream closed (%v)", p) }
func (c *conn) OnStreamDone()                      { proxywasm.LogInfo("connection done") }
