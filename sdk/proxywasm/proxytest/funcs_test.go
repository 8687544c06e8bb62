package proxytest_test

import "github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"

// Plugins for the tests, made of functions: each test gives the
// callbacks it needs; the others do what the SDK's defaults do.

type vmFuncs struct {
	start     func(size int) types.OnVMStartStatus
	newPlugin func(id uint32) types.PluginContext
}

func (v *vmFuncs) OnVMStart(size int) types.OnVMStartStatus {
	if v.start == nil {
		return types.OnVMStartStatusOK
	}
	return v.start(size)
}

func (v *vmFuncs) NewPluginContext(id uint32) types.PluginContext {
	if v.newPlugin == nil {
		return &pluginFuncs{}
	}
	return v.newPlugin(id)
}

type pluginFuncs struct {
	start   func(size int) types.OnPluginStartStatus
	done    func() bool
	queue   func(id uint32)
	tick    func()
	newHttp func(id uint32) types.HttpContext
	newTcp  func(id uint32) types.TcpContext
}

func (p *pluginFuncs) OnPluginStart(size int) types.OnPluginStartStatus {
	if p.start == nil {
		return types.OnPluginStartStatusOK
	}
	return p.start(size)
}

func (p *pluginFuncs) OnPluginDone() bool {
	if p.done == nil {
		return true
	}
	return p.done()
}

func (p *pluginFuncs) OnQueueReady(id uint32) {
	if p.queue != nil {
		p.queue(id)
	}
}

func (p *pluginFuncs) OnTick() {
	if p.tick != nil {
		p.tick()
	}
}

func (p *pluginFuncs) NewHttpContext(id uint32) types.HttpContext {
	if p.newHttp == nil {
		return nil
	}
	return p.newHttp(id)
}

func (p *pluginFuncs) NewTcpContext(id uint32) types.TcpContext {
	if p.newTcp == nil {
		return nil
	}
	return p.newTcp(id)
}

type action func(n int, eos bool) types.Action

func (f action) call(n int, eos bool) types.Action {
	if f == nil {
		return types.ActionContinue
	}
	return f(n, eos)
}

type httpFuncs struct {
	reqHeaders, reqBody, respHeaders, respBody action
	reqTrailers, respTrailers                  func(n int) types.Action
	done                                       func()
}

func (h *httpFuncs) OnHttpRequestHeaders(n int, eos bool) types.Action {
	return h.reqHeaders.call(n, eos)
}
func (h *httpFuncs) OnHttpRequestBody(n int, eos bool) types.Action { return h.reqBody.call(n, eos) }
func (h *httpFuncs) OnHttpRequestTrailers(n int) types.Action {
	if h.reqTrailers == nil {
		return types.ActionContinue
	}
	return h.reqTrailers(n)
}
func (h *httpFuncs) OnHttpResponseHeaders(n int, eos bool) types.Action {
	return h.respHeaders.call(n, eos)
}
func (h *httpFuncs) OnHttpResponseBody(n int, eos bool) types.Action {
	return h.respBody.call(n, eos)
}
func (h *httpFuncs) OnHttpResponseTrailers(n int) types.Action {
	if h.respTrailers == nil {
		return types.ActionContinue
	}
	return h.respTrailers(n)
}
func (h *httpFuncs) OnHttpStreamDone() {
	if h.done != nil {
		h.done()
	}
}

type tcpFuncs struct {
	newConn                        func() types.Action
	downstream, upstream           action
	downstreamClose, upstreamClose func(types.PeerType)
	done                           func()
}

func (c *tcpFuncs) OnNewConnection() types.Action {
	if c.newConn == nil {
		return types.ActionContinue
	}
	return c.newConn()
}
func (c *tcpFuncs) OnDownstreamData(n int, eos bool) types.Action { return c.downstream.call(n, eos) }
func (c *tcpFuncs) OnUpstreamData(n int, eos bool) types.Action   { return c.upstream.call(n, eos) }
func (c *tcpFuncs) OnDownstreamClose(p types.PeerType) {
	if c.downstreamClose != nil {
		c.downstreamClose(p)
	}
}
func (c *tcpFuncs) OnUpstreamClose(p types.PeerType) {
	if c.upstreamClose != nil {
		c.upstreamClose(p)
	}
}
func (c *tcpFuncs) OnStreamDone() {
	if c.done != nil {
		c.done()
	}
}

// httpPlugin is a plugin whose HTTP streams all behave as h.
func httpPlugin(h *httpFuncs) types.VMContext {
	return &vmFuncs{newPlugin: func(uint32) types.PluginContext {
		return &pluginFuncs{newHttp: func(uint32) types.HttpContext { return h }}
	}}
}
