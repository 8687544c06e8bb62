package proxytest

import (
	"flag"
	"fmt"
	"log"
	"sync"
	"testing"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/internal/hostabi"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// HostEmulator is the emulated host around one plugin. Its Call... and
// Initialize... methods call the plugin as the proxy would; the Get...
// methods report the host's state, including what the plugin changed.
// A context id that does not name a context of the right kind is a
// mistake in the test: the methods panic, naming it.
//
// Methods are for the test's goroutine; the plugin runs on it.
type HostEmulator interface {
	// StartVM calls the plugin's VMContext.OnVMStart with the VM
	// configuration's size.
	StartVM() types.OnVMStartStatus
	// StartPlugin calls PluginContext.OnPluginStart with the plugin
	// configuration's size.
	StartPlugin() types.OnPluginStartStatus
	// FinishVM calls PluginContext.OnPluginDone and returns its answer.
	FinishVM() bool

	// GetCalloutAttributesFromContext lists the HTTP calls the context
	// dispatched (proxywasm.DispatchHttpCall), answered or not, in order.
	GetCalloutAttributesFromContext(contextID uint32) []HttpCalloutAttribute
	// CallOnHttpCallResponse answers the pending HTTP call calloutID: the
	// plugin's callback runs (unless the dispatching context is gone)
	// and can read headers, body and trailers. Keys are lower-cased.
	CallOnHttpCallResponse(calloutID uint32, headers [][2]string, trailers [][2]string, body []byte)

	// GetCounterMetric, GetGaugeMetric and GetHistogramMetric read a
	// metric the plugin defined, by name; for a histogram, the last value
	// recorded. An unknown name, or one of another type, is an error.
	GetCounterMetric(name string) (uint64, error)
	GetGaugeMetric(name string) (uint64, error)
	GetHistogramMetric(name string) (uint64, error)

	// Get...Logs return the messages the plugin logged at that level, in
	// order.
	GetTraceLogs() []string
	GetDebugLogs() []string
	GetInfoLogs() []string
	GetWarnLogs() []string
	GetErrorLogs() []string
	GetCriticalLogs() []string

	// GetTickPeriod is the period the plugin set with
	// proxywasm.SetTickPeriodMilliSeconds; 0 if none.
	GetTickPeriod() uint32
	// Tick calls PluginContext.OnTick once. Ticks never come on their
	// own: the test decides when time passes.
	Tick()
	// GetQueueSize is the number of items in the shared queue queueID.
	GetQueueSize(queueID uint32) int
	// RegisterForeignFunction makes f answer the plugin's
	// proxywasm.CallForeignFunction(name, ...).
	RegisterForeignFunction(name string, f func([]byte) []byte)

	// InitializeConnection creates a TCP context and calls
	// TcpContext.OnNewConnection.
	InitializeConnection() (contextID uint32, action types.Action)
	// CallOnUpstreamData delivers data from the upstream: the plugin sees
	// it after what it held by returning ActionPause before.
	CallOnUpstreamData(contextID uint32, data []byte) types.Action
	// CallOnDownstreamData delivers data from the client, likewise.
	CallOnDownstreamData(contextID uint32, data []byte) types.Action
	// CloseUpstreamConnection calls TcpContext.OnUpstreamClose.
	CloseUpstreamConnection(contextID uint32)
	// CloseDownstreamConnection calls TcpContext.OnDownstreamClose.
	CloseDownstreamConnection(contextID uint32)
	// CompleteConnection ends the connection: TcpContext.OnStreamDone,
	// then the context is deleted.
	CompleteConnection(contextID uint32)

	// InitializeHttpContext creates an HTTP stream context; the plugin's
	// NewHttpContext runs at its first callback.
	InitializeHttpContext() (contextID uint32)
	// CallOnRequestHeaders sets the request headers (keys lower-cased)
	// and calls HttpContext.OnHttpRequestHeaders.
	CallOnRequestHeaders(contextID uint32, headers [][2]string, endOfStream bool) types.Action
	// CallOnRequestBody delivers a chunk of the request body: the plugin
	// sees it appended to what it buffered by returning ActionPause from
	// the previous body call.
	CallOnRequestBody(contextID uint32, body []byte, endOfStream bool) types.Action
	// CallOnRequestTrailers sets the request trailers and calls
	// HttpContext.OnHttpRequestTrailers.
	CallOnRequestTrailers(contextID uint32, trailers [][2]string) types.Action
	// CallOnResponseHeaders, CallOnResponseBody and
	// CallOnResponseTrailers do the same for the response.
	CallOnResponseHeaders(contextID uint32, headers [][2]string, endOfStream bool) types.Action
	CallOnResponseBody(contextID uint32, body []byte, endOfStream bool) types.Action
	CallOnResponseTrailers(contextID uint32, trailers [][2]string) types.Action
	// CompleteHttpContext ends the stream: HttpContext.OnHttpStreamDone,
	// then the context is deleted. Its state stays readable.
	CompleteHttpContext(contextID uint32)
	// GetCurrentHttpStreamAction is the action the last callback of the
	// stream returned, or ActionContinue once the plugin resumed it.
	GetCurrentHttpStreamAction(contextID uint32) types.Action
	// GetCurrentRequestHeaders, GetCurrentResponseHeaders,
	// GetCurrentRequestBody and GetCurrentResponseBody are the stream's
	// headers and bodies as the plugin left them.
	GetCurrentRequestHeaders(contextID uint32) [][2]string
	GetCurrentResponseHeaders(contextID uint32) [][2]string
	GetCurrentRequestBody(contextID uint32) []byte
	GetCurrentResponseBody(contextID uint32) []byte
	// GetSentLocalResponse is the local response the plugin sent on the
	// stream (proxywasm.SendHttpResponse), or nil.
	GetSentLocalResponse(contextID uint32) *LocalHttpResponse

	// GetProperty reads a property as the plugin would.
	GetProperty(path []string) ([]byte, error)
	// SetProperty sets a property (see EmulatorOption.WithProperty).
	// Empty paths and values are errors.
	SetProperty(path []string, data []byte) error

	// Additions to proxy-wasm-go-sdk's emulator.

	// GetPropertyMap reads a map-valued property (header-pair encoded).
	GetPropertyMap(path []string) ([][2]string, error)
	// GetCurrentRequestTrailers and GetCurrentResponseTrailers are the
	// stream's trailers as the plugin left them.
	GetCurrentRequestTrailers(contextID uint32) [][2]string
	GetCurrentResponseTrailers(contextID uint32) [][2]string

	// GetGrpcCalloutAttributesFromContext lists the gRPC calls and
	// streams the context started, in order.
	GetGrpcCalloutAttributesFromContext(contextID uint32) []GrpcCalloutAttribute
	// CallOnGrpcReceiveInitialMetadata, CallOnGrpcReceive,
	// CallOnGrpcReceiveTrailingMetadata and CallOnGrpcClose deliver the
	// events of the gRPC call or stream calloutID. A unary call ends with
	// CallOnGrpcReceive (its response, status OK) or CallOnGrpcClose (a
	// failure), as in Envoy.
	CallOnGrpcReceiveInitialMetadata(calloutID uint32, metadata [][2]string)
	CallOnGrpcReceive(calloutID uint32, message []byte)
	CallOnGrpcReceiveTrailingMetadata(calloutID uint32, metadata [][2]string)
	CallOnGrpcClose(calloutID uint32, status types.GrpcStatus, message string)

	// GetForwardedDownstreamData and GetForwardedUpstreamData are the
	// bytes of the connection the plugin let through so far in each
	// direction, after its edits.
	GetForwardedDownstreamData(contextID uint32) []byte
	GetForwardedUpstreamData(contextID uint32) []byte
	// GetConnectionCloseRequests reports whether the plugin asked to close
	// the connection's downstream (proxywasm.CloseDownstream) and upstream
	// (proxywasm.CloseUpstream).
	GetConnectionCloseRequests(contextID uint32) (downstream, upstream bool)

	// ResolveSharedQueue finds the queue the plugin registered under
	// name. EnqueueSharedQueue adds an item as another plugin would,
	// calling OnQueueReady of the registering plugin context before it
	// returns; DequeueSharedQueue takes the oldest item.
	ResolveSharedQueue(name string) (queueID uint32, err error)
	EnqueueSharedQueue(queueID uint32, data []byte) error
	DequeueSharedQueue(queueID uint32) ([]byte, error)
	// GetSharedData and SetSharedData read and write the shared data as
	// another plugin would, with the same CAS rules.
	GetSharedData(key string) (value []byte, cas uint32, err error)
	SetSharedData(key string, value []byte, cas uint32) error
}

// PluginContextID is the id of the emulator's plugin (root) context.
const PluginContextID uint32 = 1

var (
	// emulatorMu is held by the live emulator, from NewHostEmulator to
	// its reset: the SDK's state is global.
	emulatorMu sync.Mutex

	idMu   sync.Mutex
	nextID = PluginContextID + 1
)

// newContextID hands out stream context ids, unique in the process so
// that a compiled module reused by several emulators never sees an id
// twice.
func newContextID() uint32 {
	idMu.Lock()
	defer idMu.Unlock()
	id := nextID
	nextID++
	return id
}

// NewHostEmulator registers the plugin opt names with the SDK, creates its
// plugin context (PluginContextID) and returns the emulator. It waits
// while another emulator is live. reset unregisters everything; call it
// when the test is done with the emulator.
func NewHostEmulator(opt *EmulatorOption) (host HostEmulator, reset func()) {
	if opt == nil {
		opt = NewEmulatorOption()
	}
	emulatorMu.Lock()
	e := newEmulator(opt)
	var once sync.Once
	release := func() {
		once.Do(func() {
			hostabi.Register(nil)
			hostabi.Native.Reset()
			emulatorMu.Unlock()
		})
	}
	ok := false
	defer func() {
		if !ok { // the plugin panicked: do not leave the next test waiting
			release()
		}
	}()
	hostabi.Native.Reset()
	hostabi.Register(e.abi)
	switch c := opt.context.(type) {
	case types.VMContext:
		proxywasm.SetVMContext(c)
	case types.PluginContextFactory:
		proxywasm.SetPluginContext(c)
	case types.HttpContextFactory:
		proxywasm.SetHttpContext(c)
	case types.TcpContextFactory:
		proxywasm.SetTcpContext(c)
	default:
		panic(fmt.Sprintf("proxytest: NewHostEmulator: the option holds %T, want a types.VMContext or a Plugin/Http/TcpContextFactory", opt.context))
	}
	e.call(PluginContextID, func() { hostabi.Native.OnContextCreate(PluginContextID, 0) })
	ok = true
	return e, release
}

// hostEmulator implements HostEmulator; abi.go implements the host
// functions on it, root.go, http.go, network.go and callout.go the test's
// side.
type hostEmulator struct {
	abi *abiHost

	pluginConfiguration, vmConfiguration []byte
	properties                           map[string][]byte

	logs       [types.LogLevelCritical + 1][]string
	tickPeriod uint32

	// effective is the context host calls act on: the one whose
	// callback runs, or the one it chose with SetEffectiveContext.
	effective uint32
	// depth counts nested calls into the plugin; deferred holds what
	// runs once the outermost returns (on_queue_ready).
	depth    int
	deferred []func()

	foreign map[string]func([]byte) []byte
	shared  map[string]*sharedValue
	cas     uint32
	queues  queues
	metrics metrics

	http map[uint32]*httpStream
	tcp  map[uint32]*tcpStream

	callouts callouts
}

func newEmulator(opt *EmulatorOption) *hostEmulator {
	e := &hostEmulator{
		pluginConfiguration: append([]byte(nil), opt.pluginConfiguration...),
		vmConfiguration:     append([]byte(nil), opt.vmConfiguration...),
		properties:          map[string][]byte{},
		foreign:             map[string]func([]byte) []byte{},
		shared:              map[string]*sharedValue{},
		http:                map[uint32]*httpStream{},
		tcp:                 map[uint32]*tcpStream{},
	}
	for k, v := range opt.properties {
		e.properties[k] = v
	}
	e.queues.init()
	e.metrics.init()
	e.callouts.init()
	e.abi = &abiHost{e: e}
	return e
}

// call runs fn, a call into the plugin, with contextID as the effective
// context, and once the outermost such call has returned, what the
// plugin's host calls deferred (a host never re-enters a plugin from
// inside one of its own calls).
func (e *hostEmulator) call(contextID uint32, fn func()) {
	saved := e.effective
	e.effective = contextID
	e.depth++
	func() {
		defer func() {
			e.depth--
			e.effective = saved
		}()
		fn()
	}()
	if e.depth > 0 {
		return
	}
	for len(e.deferred) > 0 {
		next := e.deferred[0]
		e.deferred = e.deferred[1:]
		next()
	}
}

// later runs fn after the current call into the plugin, or now when the
// test itself asked.
func (e *hostEmulator) later(fn func()) {
	if e.depth == 0 {
		fn()
		return
	}
	e.deferred = append(e.deferred, fn)
}

// alive reports whether contextID is the plugin context or a stream that
// has not been completed.
func (e *hostEmulator) alive(contextID uint32) bool {
	if contextID == PluginContextID {
		return true
	}
	if s, ok := e.http[contextID]; ok {
		return !s.done
	}
	if c, ok := e.tcp[contextID]; ok {
		return !c.done
	}
	return false
}

// verbose reports whether go test runs with -v, when the emulator also
// prints the plugin's logs.
func verbose() bool {
	return flag.Lookup("test.v") != nil && flag.Parsed() && testing.Verbose()
}

func (e *hostEmulator) log(level types.LogLevel, msg string) {
	e.logs[level] = append(e.logs[level], msg)
	if verbose() {
		log.Printf("proxy_%s_log: %s", level, msg)
	}
}
