package wasm

import (
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmproxy/wasmproxy/filter"
)

// Buffer types of TCP data (proxy_buffer_type_t).
const (
	bufferDownstreamData = 2
	bufferUpstreamData   = 3
)

// connPhase is the network callback in progress: it decides which data
// buffer the guest may read and edit.
type connPhase uint8

const (
	connPhaseNone connPhase = iota
	connPhaseNewConnection
	connPhaseDownstreamData
	connPhaseUpstreamData
	connPhaseClose // connection close callbacks
	connPhaseEnd   // on_done, on_log, on_delete
)

// networkFilter is one TCP connection's Proxy-Wasm context
// (envoy.filters.network.wasm): filter.NetworkFilter on the plugin's
// instances. Like an HTTP stream it is bound to one instance from
// context creation to proxy_on_delete; its fields are written on the
// connection's goroutine, and those host functions read only with the
// instance lock held.
//
// It follows Envoy's Wasm network filter: the context is created at the
// new connection (callbacks on a connection the filter never saw are
// skipped); proxy_on_upstream_connection_close (peer 0, unknown) fires
// when upstream data with end of stream passes the filter; the
// downstream close fires proxy_on_downstream_connection_close and then
// proxy_on_done, proxy_on_log, proxy_on_delete, in that order.
type networkFilter struct {
	plugin *Plugin
	cb     filter.NetworkCallbacks
	inst   *instance
	root   *rootContext
	id     uint32

	created        bool
	deleted        bool
	failed         bool // the failure policy has been applied
	upstreamClosed bool // proxy_on_upstream_connection_close delivered
	// held: the guest paused reading (on_new_connection or
	// on_downstream_data returned StopIteration) and has not resumed it.
	// Written and read with the instance lock held.
	held bool

	// Set only while one of this connection's own callbacks runs, so a
	// guest that switches to it from another goroutine (a tick, through
	// proxy_set_effective_context) cannot reach the connection's data.
	inCallback bool
	phase      connPhase
	data       *filter.Buffer
}

// NewNetworkFilter implements filter.NetworkFactory. The connection is
// bound to an instance when its context is created, at OnNewConnection.
func (p *Plugin) NewNetworkFilter(cb filter.NetworkCallbacks) filter.NetworkFilter {
	return &networkFilter{plugin: p, cb: cb}
}

// enter locks the connection's instance; with create, it first binds the
// connection to an instance and creates its context.
func (f *networkFilter) enter(create bool) (*instance, enterState) {
	if f.failed {
		return nil, failing
	}
	if f.inst == nil {
		if !create {
			return nil, passThrough
		}
		if f.plugin.closed.Load() {
			return nil, passThrough
		}
		inst, root := f.plugin.pick()
		if inst == nil {
			return nil, failing
		}
		f.inst, f.root = inst, root
	}
	inst := f.inst
	inst.mu.Lock()
	if inst.broken.Load() {
		inst.mu.Unlock()
		return nil, failing
	}
	if inst.closed.Load() || f.root.deleted || f.deleted {
		inst.mu.Unlock()
		return nil, passThrough
	}
	if !f.created {
		if !create {
			inst.mu.Unlock()
			return nil, passThrough
		}
		f.created = true
		f.id = inst.nextContextID
		inst.nextContextID++
		inst.conns[f.id] = f
		if inst.fnContextCreate != nil {
			if _, ok := f.call(inst, connPhaseNone, "proxy_on_context_create", inst.fnContextCreate, uint64(f.id), uint64(f.root.id), 0); !ok {
				inst.mu.Unlock()
				return nil, failing
			}
		}
	}
	return inst, entered
}

// call runs one guest callback on behalf of this connection, exposing
// its data buffer to host functions for the duration of the call only.
// The caller holds the instance lock.
func (f *networkFilter) call(inst *instance, ph connPhase, name string, fn api.Function, a, b, c uint64) (uint64, bool) {
	f.phase, f.inCallback = ph, ph != connPhaseNone
	inst.root, inst.plugin = f.root, f.plugin
	inst.effectiveConn = f
	r, err := inst.invoke(nil, f.id, fn, a, b, c)
	inst.effectiveConn = nil
	f.phase, f.inCallback, f.data = connPhaseNone, false, nil
	if err != nil {
		inst.fail(name, err)
		return 0, false
	}
	return r, true
}

// failure applies the failure policy for a connection whose instance is
// poisoned: FAIL_OPEN lets data through; otherwise the connection is
// closed, as Envoy's FAIL_CLOSED does for network filters.
func (f *networkFilter) failure(st enterState) filter.NetworkStatus {
	if st != failing || f.plugin.failOpen {
		return filter.NetworkContinue
	}
	if !f.failed {
		f.failed = true
		f.cb.Close("wasm_fail_stream")
	}
	return filter.NetworkStopIteration
}

// networkStatus maps a TCP callback's result: 0 Continue, anything else
// StopIteration (Envoy's rule).
func networkStatus(r uint64) filter.NetworkStatus {
	if uint32(r) == 0 {
		return filter.NetworkContinue
	}
	return filter.NetworkStopIteration
}

// OnNewConnection creates the context and calls proxy_on_new_connection.
func (f *networkFilter) OnNewConnection() filter.NetworkStatus {
	inst, st := f.enter(true)
	if st != entered {
		return f.failure(st)
	}
	defer inst.mu.Unlock()
	if inst.fnNewConnection == nil {
		return filter.NetworkContinue
	}
	r, ok := f.call(inst, connPhaseNewConnection, "proxy_on_new_connection", inst.fnNewConnection, uint64(f.id), 0, 0)
	if !ok {
		return f.failure(failing)
	}
	return f.readStatus(r)
}

// readStatus maps the result of a read-path callback and remembers
// whether the guest now holds the connection's data. The caller holds
// the instance lock.
func (f *networkFilter) readStatus(r uint64) filter.NetworkStatus {
	st := networkStatus(r)
	f.held = st == filter.NetworkStopIteration
	return st
}

// failHeld applies the failure policy to a connection whose data the
// guest held when its instance failed (on another connection, a tick, a
// callout's response): no resume can come from that instance any more,
// and no read callback will come to find out. FAIL_OPEN lets the data
// through; otherwise the connection is closed. The connection's own
// later callbacks find the instance broken (enter). Called by fail with
// the instance lock held; the callbacks only post to the connection.
func (f *networkFilter) failHeld() {
	if !f.held || f.deleted {
		return
	}
	f.held = false
	if f.plugin.failOpen {
		f.cb.ContinueReading()
		return
	}
	f.cb.Close("wasm_fail_stream")
}

// OnDownstreamData calls proxy_on_downstream_data with everything held
// in the read buffer (buffer type 2).
func (f *networkFilter) OnDownstreamData(data *filter.Buffer, endStream bool) filter.NetworkStatus {
	inst, st := f.enter(false)
	if st != entered {
		return f.failure(st)
	}
	defer inst.mu.Unlock()
	if inst.fnDownstreamData == nil {
		return filter.NetworkContinue
	}
	f.data = data
	r, ok := f.call(inst, connPhaseDownstreamData, "proxy_on_downstream_data", inst.fnDownstreamData, uint64(f.id), uint64(data.Len()), boolArg(endStream))
	if !ok {
		return f.failure(failing)
	}
	return f.readStatus(r)
}

// OnUpstreamData calls proxy_on_upstream_data (buffer type 3); when the
// data carries the end of stream and the guest lets it through, Envoy
// reports the upstream connection closed (peer unknown).
func (f *networkFilter) OnUpstreamData(data *filter.Buffer, endStream bool) filter.NetworkStatus {
	inst, st := f.enter(false)
	if st != entered {
		return f.failure(st)
	}
	defer inst.mu.Unlock()
	result := filter.NetworkContinue
	if inst.fnUpstreamData != nil {
		f.data = data
		r, ok := f.call(inst, connPhaseUpstreamData, "proxy_on_upstream_data", inst.fnUpstreamData, uint64(f.id), uint64(data.Len()), boolArg(endStream))
		if !ok {
			return f.failure(failing)
		}
		result = networkStatus(r)
	}
	if result == filter.NetworkContinue && endStream && !f.upstreamClosed {
		f.upstreamClosed = true
		if inst.fnUpstreamClose != nil {
			if _, ok := f.call(inst, connPhaseClose, "proxy_on_upstream_connection_close", inst.fnUpstreamClose, uint64(f.id), uint64(filter.PeerUnknown), 0); !ok {
				return f.failure(failing)
			}
		}
	}
	return result
}

// OnUpstreamClose is not delivered to the guest: Envoy's network filter
// learns of the upstream's end only through end-of-stream data.
func (f *networkFilter) OnUpstreamClose(filter.PeerType) {}

// OnDownstreamClose calls proxy_on_downstream_connection_close, then ends
// the context: proxy_on_done, proxy_on_log, proxy_on_delete (the TCP
// order).
func (f *networkFilter) OnDownstreamClose(peer filter.PeerType) {
	inst, st := f.enter(false)
	if st != entered {
		return
	}
	defer inst.mu.Unlock()
	if inst.fnDownstreamClose != nil {
		if _, ok := f.call(inst, connPhaseClose, "proxy_on_downstream_connection_close", inst.fnDownstreamClose, uint64(f.id), uint64(peer), 0); !ok {
			return
		}
	}
	f.finish(inst)
}

// OnDestroy ends the context if the close did not, and unbinds the
// connection from its instance.
func (f *networkFilter) OnDestroy() {
	if !f.created || f.deleted {
		return
	}
	inst := f.inst
	inst.mu.Lock()
	defer inst.mu.Unlock()
	f.finish(inst)
}

// finish runs proxy_on_done, proxy_on_log and proxy_on_delete once and
// forgets the context. proxy_on_done's result is ignored for
// connections, as in Envoy. The caller holds the instance lock.
func (f *networkFilter) finish(inst *instance) {
	if f.deleted {
		return
	}
	f.deleted = true
	for _, c := range [...]struct {
		name string
		fn   api.Function
	}{{"proxy_on_done", inst.fnDone}, {"proxy_on_log", inst.fnLog}, {"proxy_on_delete", inst.fnDelete}} {
		if c.fn == nil || inst.broken.Load() || inst.closed.Load() {
			continue
		}
		if _, ok := f.call(inst, connPhaseEnd, c.name, c.fn, uint64(f.id), 0, 0); !ok {
			break
		}
	}
	delete(inst.conns, f.id)
}

// streamAction is proxy_continue_stream / proxy_close_stream on a TCP
// context, as Envoy answers them: continuing DOWNSTREAM resumes reading,
// continuing UPSTREAM is UNIMPLEMENTED; closing either closes the
// connection (flushing what was written); the HTTP stream types are
// accepted and do nothing. The proxy applies the action after the
// current callback returns.
func (f *networkFilter) streamAction(t uint32, closeStream bool) status {
	switch t {
	case streamDownstream, streamUpstream:
		if closeStream {
			f.cb.Close("wasm_close_stream")
			return statusOK
		}
		if t == streamUpstream {
			return statusUnimplemented
		}
		f.held = false
		f.cb.ContinueReading()
		return statusOK
	case streamRequest, streamResponse:
		return statusOK
	}
	return statusBadArgument
}

// connBuffer returns the TCP data buffer of type t when the effective
// context is a connection inside the matching data callback.
func (inst *instance) connBuffer(t uint32) (*filter.Buffer, []byte, bool) {
	c := inst.effectiveConn
	want := connPhaseDownstreamData
	if t == bufferUpstreamData {
		want = connPhaseUpstreamData
	}
	if c == nil || !c.inCallback || c.phase != want || c.data == nil {
		return nil, nil, false
	}
	return c.data, c.data.Bytes, true
}
