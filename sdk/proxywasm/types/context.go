package types

// A plugin is a tree of contexts:
//
//	VMContext (one per Wasm VM; sees vm_config.configuration)
//	  └─ PluginContext (one per plugin configuration, i.e. per filter in
//	     the proxy config; the "root context" of the ABI)
//	       ├─ HttpContext (one per HTTP stream)
//	       └─ TcpContext  (one per TCP connection)
//
// Embed the Default... types to implement only the methods you need.

// VMContext is the top of a plugin: exactly one exists per Wasm VM. Register
// it with proxywasm.SetVMContext.
type VMContext interface {
	// OnVMStart runs once per plugin root context after the VM has been
	// created (Envoy calls it from each root context). GetVMConfiguration is
	// available here. Return OnVMStartStatusFailed to fail the start.
	OnVMStart(vmConfigurationSize int) OnVMStartStatus

	// NewPluginContext creates the PluginContext for a new root context
	// with the given id.
	NewPluginContext(contextID uint32) PluginContext
}

// PluginContext corresponds to one plugin configuration (one filter in the
// proxy's configuration). It creates the per-stream contexts.
type PluginContext interface {
	// OnPluginStart runs when the host configures the plugin, after
	// OnVMStart. GetPluginConfiguration is available only during this call.
	// Return OnPluginStartStatusFailed to reject the configuration.
	OnPluginStart(pluginConfigurationSize int) OnPluginStartStatus

	// OnPluginDone runs before the host deletes the plugin context. Return
	// false to ask the host to wait; then call proxywasm.PluginDone when
	// the pending work is finished.
	OnPluginDone() bool

	// OnQueueReady runs when an item was enqueued on a shared queue this
	// plugin context registered with proxywasm.RegisterSharedQueue. Another
	// VM may have dequeued it already, so the queue may be empty.
	OnQueueReady(queueID uint32)

	// OnTick runs every period set with
	// proxywasm.SetTickPeriodMilliSeconds.
	OnTick()

	// NewTcpContext creates the context of a new TCP connection, when the
	// plugin runs as a network filter; it is called at the connection's
	// first callback. Return nil if this plugin does not handle TCP (the
	// connection's callbacks then fail).
	NewTcpContext(contextID uint32) TcpContext

	// NewHttpContext creates the context of a new HTTP stream, when the
	// plugin runs as an HTTP filter; it is called at the stream's first
	// callback. Return nil if this plugin does not handle HTTP. A plugin
	// may implement both and be configured as either kind of filter.
	NewHttpContext(contextID uint32) HttpContext
}

// TcpContext handles the events of one TCP connection. It is created by
// PluginContext.NewTcpContext.
type TcpContext interface {
	// OnNewConnection runs when the downstream connection is accepted.
	OnNewConnection() Action

	// OnDownstreamData runs when data arrives from the downstream peer.
	// dataSize is the number of buffered bytes (GetDownstreamData).
	OnDownstreamData(dataSize int, endOfStream bool) Action

	// OnDownstreamClose runs when the downstream connection closes.
	OnDownstreamClose(peerType PeerType)

	// OnUpstreamData runs when data arrives from the upstream peer.
	// dataSize is the number of buffered bytes (GetUpstreamData).
	OnUpstreamData(dataSize int, endOfStream bool) Action

	// OnUpstreamClose runs when the upstream connection closes.
	OnUpstreamClose(peerType PeerType)

	// OnStreamDone runs before the host deletes the context; connection
	// properties are still readable, which suits access logging.
	OnStreamDone()
}

// HttpContext handles the events of one HTTP stream (a request and its
// response). It is created by PluginContext.NewHttpContext.
type HttpContext interface {
	// OnHttpRequestHeaders runs when the request headers arrive. Return
	// ActionPause to hold the request.
	OnHttpRequestHeaders(numHeaders int, endOfStream bool) Action

	// OnHttpRequestBody runs for each piece of request body. bodySize is the
	// size of the body the host holds at this point; returning ActionPause
	// makes the host buffer the body, so the next call sees the pieces so
	// far plus the new one.
	OnHttpRequestBody(bodySize int, endOfStream bool) Action

	// OnHttpRequestTrailers runs when the request trailers arrive.
	OnHttpRequestTrailers(numTrailers int) Action

	// OnHttpResponseHeaders runs when the response headers arrive.
	OnHttpResponseHeaders(numHeaders int, endOfStream bool) Action

	// OnHttpResponseBody runs for each piece of response body, like
	// OnHttpRequestBody.
	OnHttpResponseBody(bodySize int, endOfStream bool) Action

	// OnHttpResponseTrailers runs when the response trailers arrive.
	OnHttpResponseTrailers(numTrailers int) Action

	// OnHttpStreamDone runs before the host deletes the context; request and
	// response headers are still readable, which suits access logging.
	OnHttpStreamDone()
}

type (
	// DefaultVMContext is a VMContext whose OnVMStart succeeds and whose
	// NewPluginContext returns a DefaultPluginContext.
	DefaultVMContext struct{}

	// DefaultPluginContext is a PluginContext that does nothing and creates
	// no stream contexts.
	DefaultPluginContext struct{}

	// DefaultTcpContext is a TcpContext that lets every connection through.
	DefaultTcpContext struct{}

	// DefaultHttpContext is an HttpContext that lets every stream through.
	DefaultHttpContext struct{}
)

// OnVMStart returns OnVMStartStatusOK.
func (*DefaultVMContext) OnVMStart(int) OnVMStartStatus { return OnVMStartStatusOK }

// NewPluginContext returns a DefaultPluginContext.
func (*DefaultVMContext) NewPluginContext(uint32) PluginContext { return &DefaultPluginContext{} }

// OnPluginStart returns OnPluginStartStatusOK.
func (*DefaultPluginContext) OnPluginStart(int) OnPluginStartStatus { return OnPluginStartStatusOK }

// OnPluginDone returns true.
func (*DefaultPluginContext) OnPluginDone() bool { return true }

// OnQueueReady does nothing.
func (*DefaultPluginContext) OnQueueReady(uint32) {}

// OnTick does nothing.
func (*DefaultPluginContext) OnTick() {}

// NewTcpContext returns nil.
func (*DefaultPluginContext) NewTcpContext(uint32) TcpContext { return nil }

// NewHttpContext returns nil.
func (*DefaultPluginContext) NewHttpContext(uint32) HttpContext { return nil }

// OnNewConnection returns ActionContinue.
func (*DefaultTcpContext) OnNewConnection() Action { return ActionContinue }

// OnDownstreamData returns ActionContinue.
func (*DefaultTcpContext) OnDownstreamData(int, bool) Action { return ActionContinue }

// OnDownstreamClose does nothing.
func (*DefaultTcpContext) OnDownstreamClose(PeerType) {}

// OnUpstreamData returns ActionContinue.
func (*DefaultTcpContext) OnUpstreamData(int, bool) Action { return ActionContinue }

// OnUpstreamClose does nothing.
func (*DefaultTcpContext) OnUpstreamClose(PeerType) {}

// OnStreamDone does nothing.
func (*DefaultTcpContext) OnStreamDone() {}

// OnHttpRequestHeaders returns ActionContinue.
func (*DefaultHttpContext) OnHttpRequestHeaders(int, bool) Action { return ActionContinue }

// OnHttpRequestBody returns ActionContinue.
func (*DefaultHttpContext) OnHttpRequestBody(int, bool) Action { return ActionContinue }

// OnHttpRequestTrailers returns ActionContinue.
func (*DefaultHttpContext) OnHttpRequestTrailers(int) Action { return ActionContinue }

// OnHttpResponseHeaders returns ActionContinue.
func (*DefaultHttpContext) OnHttpResponseHeaders(int, bool) Action { return ActionContinue }

// OnHttpResponseBody returns ActionContinue.
func (*DefaultHttpContext) OnHttpResponseBody(int, bool) Action { return ActionContinue }

// OnHttpResponseTrailers returns ActionContinue.
func (*DefaultHttpContext) OnHttpResponseTrailers(int) Action { return ActionContinue }

// OnHttpStreamDone does nothing.
func (*DefaultHttpContext) OnHttpStreamDone() {}

var (
	_ VMContext     = (*DefaultVMContext)(nil)
	_ PluginContext = (*DefaultPluginContext)(nil)
	_ TcpContext    = (*DefaultTcpContext)(nil)
	_ HttpContext   = (*DefaultHttpContext)(nil)
)

// PluginContextFactory creates a PluginContext for a root context id; see
// proxywasm.SetPluginContext.
type PluginContextFactory func(contextID uint32) PluginContext

// HttpContextFactory creates an HttpContext for a stream context id; see
// proxywasm.SetHttpContext.
type HttpContextFactory func(contextID uint32) HttpContext

// TcpContextFactory creates a TcpContext for a stream context id; see
// proxywasm.SetTcpContext.
type TcpContextFactory func(contextID uint32) TcpContext
