package proxywasm

import (
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// The SDK's bookkeeping: which Go object handles which context id. The
// functions here are what the exported callbacks in abi_wasip1.go call;
// they hold no Wasm-specific code so that they can be tested natively.

type httpCallout struct {
	callback func(numHeaders, bodySize, numTrailers int)
	caller   uint32 // context that dispatched the call
}

type rootState struct {
	ctx      types.PluginContext
	callouts map[uint32]httpCallout // by token
	grpc     map[uint32]grpcCallout // gRPC calls and streams by token (grpc.go)
}

// streamState is one stream context: its root, and the Go context made
// for it on its first callback (http or tcp; neither before that).
type streamState struct {
	root uint32
	rs   *rootState // roots[root], so a stream's first callback needs no map lookup
	http types.HttpContext
	tcp  types.TcpContext
}

type vmState struct {
	vm    types.VMContext
	roots map[uint32]*rootState
	// streams holds every live stream context by id: create inserts,
	// each callback looks up, delete deletes.
	streams  streamTable
	active   uint32 // context of the callback being run
	mainDone bool   // main.main was called (or must not be)
	// lastRoot caches roots[lastRootID], the parent of the last stream
	// created: a plugin has one root context per filter configuration,
	// so most stream creations find their parent here and not in the
	// map (a Go map lookup costs 0.1-0.3 µs in Wasm).
	lastRootID uint32
	lastRoot   *rootState
}

var state = newVMState()

func newVMState() *vmState {
	return &vmState{
		roots: map[uint32]*rootState{},
	}
}

// streamSlots is the size of streamTable's direct-mapped part: more
// streams than this live at once in one instance, with ids this far
// apart, spill into its map.
const streamSlots = 256

// streamTable maps a live stream's context id to its state. Hosts
// number contexts in sequence, so the live ones mostly fall into
// distinct slots of an array indexed by the id's low bits; an id whose
// slot is taken goes to a map. A Go map operation costs 0.1-0.3 µs in
// Wasm, a slot a few ns, and a stream's life is about eight of them.
type streamTable struct {
	slots    [streamSlots]streamEntry
	overflow map[uint32]*streamState
	n        int // live entries, slots and overflow
}

type streamEntry struct {
	id uint32 // 0: empty (the host never gives a stream context id 0)
	st streamState
}

func (t *streamTable) get(id uint32) (streamState, bool) {
	if st := t.ref(id); st != nil {
		return *st, true
	}
	return streamState{}, false
}

// ref returns id's state where it is stored, for reading and updating in
// place, or nil.
func (t *streamTable) ref(id uint32) *streamState {
	if e := &t.slots[id%streamSlots]; e.id == id && id != 0 {
		return &e.st
	}
	if t.overflow == nil {
		return nil
	}
	return t.overflow[id]
}

// put adds id or replaces its state.
func (t *streamTable) put(id uint32, st streamState) {
	e := &t.slots[id%streamSlots]
	if e.id == id && id != 0 {
		e.st = st
		return
	}
	if p, ok := t.overflow[id]; ok {
		*p = st
		return
	}
	t.n++
	if e.id == 0 && id != 0 {
		*e = streamEntry{id: id, st: st}
		return
	}
	if t.overflow == nil {
		t.overflow = map[uint32]*streamState{}
	}
	p := new(streamState) // not &st: that would move every put's st to the heap
	*p = st
	t.overflow[id] = p
}

// del removes id and reports whether it was there.
func (t *streamTable) del(id uint32) bool {
	if e := &t.slots[id%streamSlots]; e.id == id && id != 0 {
		*e = streamEntry{}
		t.n--
		return true
	}
	if _, ok := t.overflow[id]; ok {
		delete(t.overflow, id)
		t.n--
		return true
	}
	return false
}

func (t *streamTable) len() int { return t.n }

// rootOf returns the root context of a live context (a root is its own).
func (s *vmState) rootOf(contextID uint32) (uint32, bool) {
	if _, ok := s.roots[contextID]; ok {
		return contextID, true
	}
	st, ok := s.streams.get(contextID)
	return st.root, ok
}

// runMain is main.main in a Wasm build (set by abi_wasip1.go), nil natively.
var runMain func()

// vmContext returns the registered VMContext, running main.main once first
// if nothing has been registered (see the package documentation).
func (s *vmState) vmContext() types.VMContext {
	if s.vm == nil && !s.mainDone {
		s.mainDone = true
		if runMain != nil {
			runMain()
		}
	}
	if s.vm == nil {
		panic("proxywasm: no VM context: call proxywasm.SetVMContext (or SetPluginContext, SetHttpContext, SetTcpContext) from main or init")
	}
	return s.vm
}

func onContextCreate(contextID, parentID uint32) {
	s := state
	if parentID == 0 {
		pc := s.vmContext().NewPluginContext(contextID)
		if pc == nil {
			panic("proxywasm: NewPluginContext returned nil")
		}
		s.roots[contextID] = &rootState{ctx: pc, callouts: map[uint32]httpCallout{}}
		if s.lastRootID == contextID {
			s.lastRootID, s.lastRoot = 0, nil
		}
		return
	}
	// The host does not say whether the context is an HTTP stream or a
	// TCP connection; its first callback does. So the plugin's
	// NewHttpContext or NewTcpContext runs then (http, tcp), and a plugin
	// that implements both serves as an HTTP filter and as a network
	// filter alike (choosing at creation, as other SDKs do, breaks one).
	r := s.lastRoot
	if parentID != s.lastRootID || r == nil {
		r = s.roots[parentID]
		if r == nil {
			panic("proxywasm: proxy_on_context_create: unknown root context")
		}
		s.lastRootID, s.lastRoot = parentID, r
	}
	s.streams.put(contextID, streamState{root: parentID, rs: r})
}

func (s *vmState) root(contextID uint32, callback string) *rootState {
	r, ok := s.roots[contextID]
	if !ok {
		panic("proxywasm: " + callback + ": unknown root context")
	}
	s.active = contextID
	return r
}

// http returns the HTTP context of a stream callback, creating it with
// the plugin's NewHttpContext on the stream's first callback.
func (s *vmState) http(contextID uint32, callback string) types.HttpContext {
	st := s.streams.ref(contextID)
	if st != nil && st.http != nil { // every callback but the first
		s.active = contextID
		return st.http
	}
	if st == nil || st.tcp != nil {
		panic("proxywasm: " + callback + ": unknown HTTP context")
	}
	s.active = contextID // the constructor's host calls are the stream's
	h := st.rs.ctx.NewHttpContext(contextID)
	if h == nil {
		panic("proxywasm: " + callback + ": NewHttpContext returned nil: the plugin runs as an HTTP filter but makes no HTTP contexts")
	}
	// NewHttpContext may have created or deleted streams (through the
	// host), so look the stream up again rather than keep st.
	if st = s.streams.ref(contextID); st == nil {
		panic("proxywasm: " + callback + ": the HTTP context was deleted during NewHttpContext")
	}
	st.http = h
	return h
}

// tcp returns the TCP context of a connection callback, creating it with
// the plugin's NewTcpContext on the connection's first callback.
func (s *vmState) tcp(contextID uint32, callback string) types.TcpContext {
	st := s.streams.ref(contextID)
	if st != nil && st.tcp != nil { // every callback but the first
		s.active = contextID
		return st.tcp
	}
	if st == nil || st.http != nil {
		panic("proxywasm: " + callback + ": unknown TCP context")
	}
	s.active = contextID // the constructor's host calls are the stream's
	c := st.rs.ctx.NewTcpContext(contextID)
	if c == nil {
		panic("proxywasm: " + callback + ": NewTcpContext returned nil: the plugin runs as a network filter but makes no TCP contexts")
	}
	if st = s.streams.ref(contextID); st == nil {
		panic("proxywasm: " + callback + ": the TCP context was deleted during NewTcpContext")
	}
	st.tcp = c
	return c
}

func onVMStart(rootContextID, vmConfigurationSize uint32) bool {
	state.active = rootContextID
	return bool(state.vmContext().OnVMStart(int(vmConfigurationSize)))
}

func onConfigure(rootContextID, pluginConfigurationSize uint32) bool {
	r := state.root(rootContextID, "proxy_on_configure")
	return bool(r.ctx.OnPluginStart(int(pluginConfigurationSize)))
}

func onTick(rootContextID uint32) {
	state.root(rootContextID, "proxy_on_tick").ctx.OnTick()
}

func onQueueReady(rootContextID, queueID uint32) {
	state.root(rootContextID, "proxy_on_queue_ready").ctx.OnQueueReady(queueID)
}

// onDone: only root contexts can ask the host to wait.
func onDone(contextID uint32) bool {
	if state.streams.ref(contextID) != nil {
		return true // a stream: no map lookup
	}
	if r, ok := state.roots[contextID]; ok {
		state.active = contextID
		return r.ctx.OnPluginDone()
	}
	return true
}

func onLog(contextID uint32) {
	s := state
	st := s.streams.ref(contextID)
	if st == nil {
		return
	}
	if st.http != nil {
		s.active = contextID
		st.http.OnHttpStreamDone()
	} else if st.tcp != nil {
		s.active = contextID
		st.tcp.OnStreamDone()
	}
}

// onDelete forgets a context. An unknown id is ignored: the host may delete
// a context whose creation failed.
func onDelete(contextID uint32) {
	s := state
	if !s.streams.del(contextID) {
		delete(s.roots, contextID)
		if s.lastRootID == contextID {
			s.lastRootID, s.lastRoot = 0, nil
		}
	}
	if s.active == contextID {
		s.active = 0
	}
}

func onNewConnection(contextID uint32) uint32 {
	return uint32(state.tcp(contextID, "proxy_on_new_connection").OnNewConnection())
}

func onDownstreamData(contextID, dataSize uint32, endOfStream bool) uint32 {
	return uint32(state.tcp(contextID, "proxy_on_downstream_data").OnDownstreamData(int(dataSize), endOfStream))
}

func onDownstreamConnectionClose(contextID, peerType uint32) {
	state.tcp(contextID, "proxy_on_downstream_connection_close").OnDownstreamClose(types.PeerType(peerType))
}

func onUpstreamData(contextID, dataSize uint32, endOfStream bool) uint32 {
	return uint32(state.tcp(contextID, "proxy_on_upstream_data").OnUpstreamData(int(dataSize), endOfStream))
}

func onUpstreamConnectionClose(contextID, peerType uint32) {
	state.tcp(contextID, "proxy_on_upstream_connection_close").OnUpstreamClose(types.PeerType(peerType))
}

func onRequestHeaders(contextID, numHeaders uint32, endOfStream bool) uint32 {
	return uint32(state.http(contextID, "proxy_on_request_headers").OnHttpRequestHeaders(int(numHeaders), endOfStream))
}

func onRequestBody(contextID, bodySize uint32, endOfStream bool) uint32 {
	return uint32(state.http(contextID, "proxy_on_request_body").OnHttpRequestBody(int(bodySize), endOfStream))
}

func onRequestTrailers(contextID, numTrailers uint32) uint32 {
	return uint32(state.http(contextID, "proxy_on_request_trailers").OnHttpRequestTrailers(int(numTrailers)))
}

func onResponseHeaders(contextID, numHeaders uint32, endOfStream bool) uint32 {
	return uint32(state.http(contextID, "proxy_on_response_headers").OnHttpResponseHeaders(int(numHeaders), endOfStream))
}

func onResponseBody(contextID, bodySize uint32, endOfStream bool) uint32 {
	return uint32(state.http(contextID, "proxy_on_response_body").OnHttpResponseBody(int(bodySize), endOfStream))
}

func onResponseTrailers(contextID, numTrailers uint32) uint32 {
	return uint32(state.http(contextID, "proxy_on_response_trailers").OnHttpResponseTrailers(int(numTrailers)))
}

// onHttpCallResponse runs the callback given to DispatchHttpCall. The host
// delivers the reply to the root context; the callback runs with the
// dispatching context made effective again (proxy_set_effective_context),
// and not at all if that context has been deleted meanwhile.
func onHttpCallResponse(rootContextID, token, numHeaders, bodySize, numTrailers uint32) {
	s := state
	r := s.root(rootContextID, "proxy_on_http_call_response")
	c, ok := r.callouts[token]
	if !ok {
		return // not dispatched through DispatchHttpCall, or already answered
	}
	delete(r.callouts, token)
	if _, live := s.rootOf(c.caller); !live {
		return
	}
	if c.caller != rootContextID {
		proxySetEffectiveContext(c.caller)
	}
	s.active = c.caller
	if c.callback != nil {
		c.callback(int(numHeaders), int(bodySize), int(numTrailers))
	}
}

// registerHttpCallout remembers the callback for token on the root of the
// current context. It reports false outside any known context.
func (s *vmState) registerHttpCallout(token uint32, callback func(numHeaders, bodySize, numTrailers int)) bool {
	rootID, ok := s.rootOf(s.active)
	if !ok {
		return false
	}
	r, ok := s.roots[rootID]
	if !ok {
		return false
	}
	r.callouts[token] = httpCallout{callback: callback, caller: s.active}
	return true
}
