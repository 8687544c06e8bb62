package wasm

import (
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/wasmproxy/wasmproxy/filter"
)

// phase is the stream callback in progress, which decides what the guest
// may read or write (Envoy's availability rules, reference §1.4).
type phase uint8

const (
	phaseNone phase = iota
	phaseRequestHeaders
	phaseRequestBody
	phaseRequestTrailers
	phaseResponseHeaders
	phaseResponseBody
	phaseResponseTrailers
	phaseLog
	phaseEnd // on_done / on_delete
)

// localReply is a proxy_send_local_response waiting for the guest call to
// return.
type localReply struct {
	status  int
	body    []byte
	headers []filter.Pair
	details string
}

// httpFilter is one HTTP stream's Proxy-Wasm context. It is bound to one
// instance from context creation to proxy_on_delete. Fields are written by
// the stream goroutine; those a host function touches are only touched
// with the instance lock held.
type httpFilter struct {
	plugin *Plugin
	cb     filter.Callbacks
	inst   *instance
	root   *rootContext // the plugin's root context in inst
	id     uint32

	created bool // proxy_on_context_create delivered
	rebound bool // moved once off an instance poisoned before it started
	deleted bool
	// recorded: the stream is in the plugin's traffic meter.
	recorded bool
	failed   bool // the failure policy has been applied to this stream
	// failAnswered is set by whoever first answers the stream for a
	// trap: the stream goroutine (failStream) or the instance, for a
	// stream it held when a trap elsewhere poisoned it (failHeld).
	failAnswered atomic.Bool

	// Set only while one of this stream's own callbacks runs: a guest that
	// switches to this stream from another goroutine (a tick, through
	// proxy_set_effective_context) must not reach data owned by the stream
	// goroutine, so maps and bodies are unavailable to it.
	inCallback  bool
	phase       phase
	headers     *filter.HeaderMap // map passed to the headers/trailers callback
	body        *filter.Buffer    // buffer passed to the body callback
	endOfStream bool

	// Headers this filter paused (a stop status) and has not continued:
	// still writable from the body and trailers callbacks of that side.
	requestHeld, responseHeld bool

	// Deferred actions, applied after the guest call returns.
	queued         bool
	stopNext       bool // a local reply was requested in this callback
	localReplySent bool
	reply          *localReply
	continueReq    bool
	continueResp   bool
	// reset, when set, is the details of a reset to apply:
	// "wasm_close_stream" (the guest's proxy_close_stream) or
	// "wasm_fail_stream" (the failure policy).
	reset string

	// spent is the time the request and response callbacks took so far
	// (instance lock included), lastEnd the Unix second the last one
	// returned in (the meter's slot; a second, not a time.Time, keeps
	// the stream 16 bytes bigger only); OnDestroy records them once in
	// the plugin's traffic meter.
	spent   time.Duration
	lastEnd time.Duration // monoNow when the last one returned; 0 = none ran
	// began is the monoNow reading that starts the request or response
	// callback in progress, until its first guest call uses it to start
	// its deadline (instance.invoke); 0 = none to reuse.
	began time.Duration
}

// begin starts a request or response callback: one monotonic clock read,
// which times the callback and starts the deadline of its first guest
// call.
func (f *httpFilter) begin() time.Duration {
	f.began = monoNow()
	return f.began
}

// took adds the callback that began at began (monoNow) to the stream's
// added latency: one more monotonic clock read.
func (f *httpFilter) took(began time.Duration) {
	f.began = 0
	f.lastEnd = monoNow()
	f.spent += f.lastEnd - began
}

// enterState says whether a callback may call the guest.
type enterState uint8

const (
	entered     enterState = iota // instance locked, context created
	passThrough                   // plugin closed: behave as if absent
	failing                       // instance poisoned: apply the failure policy
)

// enter binds the stream to an instance on first use, locks it, and
// creates the stream context (lazily, as Envoy does at the first
// decodeHeaders or in the access-log phase).
func (f *httpFilter) enter() (*instance, enterState) {
	if f.failed {
		return nil, failing
	}
	inst := f.inst
	locked := false
	if inst == nil {
		if f.plugin.closed.Load() {
			return nil, passThrough
		}
		var root *rootContext
		if inst, root = f.plugin.pick(); inst == nil {
			return nil, failing
		}
		if locked = inst.mu.TryLock(); !locked {
			// Busy with another stream's callback: start on an idle
			// instance if there is one (pickFree locks it).
			if alt, altRoot := f.plugin.pickFree(inst); alt != nil {
				inst, root, locked = alt, altRoot, true
			}
		}
		f.inst, f.root = inst, root
	}
	if !locked && !inst.mu.TryLock() {
		// Another stream holds the instance: the wait counts in the
		// callback's time, not in its guest call's deadline, which must
		// start from a clock read taken after it.
		f.began = 0
		inst.mu.Lock()
	}
	if inst.broken.Load() {
		inst.mu.Unlock()
		if !f.created && !f.rebound {
			// Bound but not yet started when another stream poisoned
			// the instance: nothing of this stream lives there, so it
			// may start on a healthy (or reloaded) one instead.
			f.rebound, f.inst = true, nil
			return f.enter()
		}
		return nil, failing
	}
	if inst.closed.Load() || f.root.deleted {
		inst.mu.Unlock()
		return nil, passThrough
	}
	if !f.created {
		f.created = true
		f.id = inst.nextContextID
		inst.nextContextID++
		inst.streams.add(f)
		if inst.fnContextCreate != nil {
			if _, err := inst.invoke(f, f.id, inst.fnContextCreate, uint64(f.id), uint64(f.root.id), 0); err != nil {
				inst.fail("proxy_on_context_create", err)
				inst.mu.Unlock()
				return nil, failing
			}
		}
	}
	return inst, entered
}

// call runs one stream callback: it exposes the callback's map or buffer
// to host functions for the duration of the call only.
func (f *httpFilter) call(inst *instance, ph phase, name string, fn api.Function, a, b, c uint64) (uint64, bool) {
	f.phase, f.inCallback, f.stopNext = ph, true, false
	r, err := inst.invoke(f, f.id, fn, a, b, c)
	f.phase, f.inCallback, f.headers, f.body = phaseNone, false, nil, nil
	if err != nil {
		inst.fail(name, err)
		return 0, false
	}
	return r, true
}

func boolArg(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// failStream applies the failure policy (FAIL_CLOSED unless FAIL_OPEN)
// for a stream whose instance is poisoned, once; it reports whether the
// current callback must stop. Later callbacks let the 503 (or whatever
// the proxy does next) through.
func (f *httpFilter) failStream(ph phase) bool {
	if f.plugin.failOpen || f.failed {
		// Decode-path callbacks after a fail-closed reply keep the request
		// from reaching the upstream; encode-path ones let the reply out.
		return f.failed && !f.plugin.failOpen && ph <= phaseRequestTrailers
	}
	f.failed = true
	if f.failAnswered.Swap(true) {
		// failHeld already answered this stream after a trap elsewhere.
		return ph <= phaseRequestTrailers
	}
	switch ph {
	case phaseRequestHeaders, phaseRequestBody, phaseRequestTrailers, phaseResponseHeaders:
		f.cb.SendLocalReply(503, nil, nil, "wasm_fail_stream")
	case phaseResponseBody, phaseResponseTrailers:
		// The response is under way: a reply can no longer replace it.
		f.cb.Reset("wasm_fail_stream")
	default:
		return false
	}
	return true
}

func (f *httpFilter) headersFailure(st enterState, ph phase) filter.HeadersStatus {
	if st == failing && f.failStream(ph) {
		return filter.HeadersStopAllIterationAndWatermark
	}
	return filter.HeadersContinue
}

func (f *httpFilter) dataFailure(st enterState, ph phase) filter.DataStatus {
	if st == failing && f.failStream(ph) {
		return filter.DataStopIterationNoBuffer
	}
	return filter.DataContinue
}

func (f *httpFilter) trailersFailure(st enterState, ph phase) filter.TrailersStatus {
	if st == failing && f.failStream(ph) {
		return filter.TrailersStopIteration
	}
	return filter.TrailersContinue
}

// headersStatus maps a header callback's result as Envoy does: 1
// (StopIteration) becomes StopAllIterationAndWatermark unless the plugin
// allows header StopIteration; 2 is Continue; above 4 is 4. A local reply
// requested in the callback forces a stop.
func (f *httpFilter) headersStatus(r uint64) filter.HeadersStatus {
	if f.stopNext {
		return filter.HeadersStopAllIterationAndWatermark
	}
	switch r := uint32(r); {
	case r == 0 || r == 2:
		return filter.HeadersContinue
	case r == 1:
		if f.plugin.cfg.AllowOnHeadersStopIteration {
			return filter.HeadersStopIteration
		}
		return filter.HeadersStopAllIterationAndWatermark
	case r == 3:
		return filter.HeadersStopAllIterationAndBuffer
	default:
		return filter.HeadersStopAllIterationAndWatermark
	}
}

// dataStatus maps a body callback's result: 0 Continue, 1
// StopIterationAndBuffer (what an SDK's "Pause" means), 2 Watermark, 3
// and above NoBuffer.
func (f *httpFilter) dataStatus(r uint64) filter.DataStatus {
	if f.stopNext {
		return filter.DataStopIterationNoBuffer
	}
	switch r := uint32(r); {
	case r == 0:
		return filter.DataContinue
	case r == 1:
		return filter.DataStopIterationAndBuffer
	case r == 2:
		return filter.DataStopIterationAndWatermark
	default:
		return filter.DataStopIterationNoBuffer
	}
}

func (f *httpFilter) trailersStatus(r uint64) filter.TrailersStatus {
	if f.stopNext || uint32(r) != 0 {
		return filter.TrailersStopIteration
	}
	return filter.TrailersContinue
}

// headerCallback runs proxy_on_request_headers or proxy_on_response_headers
// (2 arguments for ABI 0.1.0, 3 with end_of_stream for 0.2.x).
func (f *httpFilter) headerCallback(ph phase, name string, fnOf func(*instance) api.Function, headers *filter.HeaderMap, end bool) filter.HeadersStatus {
	inst, st := f.enter()
	if st != entered {
		return f.headersFailure(st, ph)
	}
	defer inst.mu.Unlock()
	fn := fnOf(inst)
	if fn == nil {
		return filter.HeadersContinue
	}
	f.headers, f.endOfStream = headers, end
	r, ok := f.call(inst, ph, name, fn, uint64(f.id), uint64(headers.Len()), boolArg(end))
	if !ok {
		return f.headersFailure(failing, ph)
	}
	s := f.headersStatus(r)
	held := s != filter.HeadersContinue && !f.localReplySent
	if ph == phaseRequestHeaders {
		f.requestHeld = held
	} else {
		f.responseHeld = held
	}
	return s
}

// DecodeHeaders calls proxy_on_request_headers.
func (f *httpFilter) DecodeHeaders(headers *filter.HeaderMap, endStream bool) filter.HeadersStatus {
	began := f.begin()
	s := f.headerCallback(phaseRequestHeaders, "proxy_on_request_headers",
		func(i *instance) api.Function { return i.fnRequestHeaders }, headers, endStream)
	f.took(began)
	return s
}

// EncodeHeaders calls proxy_on_response_headers.
func (f *httpFilter) EncodeHeaders(headers *filter.HeaderMap, endStream bool) filter.HeadersStatus {
	began := f.begin()
	s := f.headerCallback(phaseResponseHeaders, "proxy_on_response_headers",
		func(i *instance) api.Function { return i.fnResponseHeaders }, headers, endStream)
	f.took(began)
	return s
}

// bodyCallback runs proxy_on_request_body or proxy_on_response_body with
// body_size = everything buffered at this filter (data.Len()).
func (f *httpFilter) bodyCallback(ph phase, name string, fnOf func(*instance) api.Function, data *filter.Buffer, end bool) filter.DataStatus {
	inst, st := f.enter()
	if st != entered {
		return f.dataFailure(st, ph)
	}
	defer inst.mu.Unlock()
	fn := fnOf(inst)
	if fn == nil {
		return filter.DataContinue
	}
	f.body, f.endOfStream = data, end
	r, ok := f.call(inst, ph, name, fn, uint64(f.id), uint64(data.Len()), boolArg(end))
	if !ok {
		return f.dataFailure(failing, ph)
	}
	s := f.dataStatus(r)
	if s == filter.DataContinue {
		// Continuing the body continues the paused headers with it.
		if ph == phaseRequestBody {
			f.requestHeld = false
		} else {
			f.responseHeld = false
		}
	}
	return s
}

// DecodeData calls proxy_on_request_body.
func (f *httpFilter) DecodeData(data *filter.Buffer, endStream bool) filter.DataStatus {
	began := f.begin()
	s := f.bodyCallback(phaseRequestBody, "proxy_on_request_body",
		func(i *instance) api.Function { return i.fnRequestBody }, data, endStream)
	f.took(began)
	return s
}

// EncodeData calls proxy_on_response_body.
func (f *httpFilter) EncodeData(data *filter.Buffer, endStream bool) filter.DataStatus {
	began := f.begin()
	s := f.bodyCallback(phaseResponseBody, "proxy_on_response_body",
		func(i *instance) api.Function { return i.fnResponseBody }, data, endStream)
	f.took(began)
	return s
}

func (f *httpFilter) trailersCallback(ph phase, name string, fnOf func(*instance) api.Function, trailers *filter.HeaderMap) filter.TrailersStatus {
	inst, st := f.enter()
	if st != entered {
		return f.trailersFailure(st, ph)
	}
	defer inst.mu.Unlock()
	fn := fnOf(inst)
	if fn == nil {
		return filter.TrailersContinue
	}
	f.headers, f.endOfStream = trailers, true
	r, ok := f.call(inst, ph, name, fn, uint64(f.id), uint64(trailers.Len()), 0)
	if !ok {
		return f.trailersFailure(failing, ph)
	}
	return f.trailersStatus(r)
}

// DecodeTrailers calls proxy_on_request_trailers.
func (f *httpFilter) DecodeTrailers(trailers *filter.HeaderMap) filter.TrailersStatus {
	began := f.begin()
	s := f.trailersCallback(phaseRequestTrailers, "proxy_on_request_trailers",
		func(i *instance) api.Function { return i.fnRequestTrailers }, trailers)
	f.took(began)
	return s
}

// EncodeTrailers calls proxy_on_response_trailers.
func (f *httpFilter) EncodeTrailers(trailers *filter.HeaderMap) filter.TrailersStatus {
	began := f.begin()
	s := f.trailersCallback(phaseResponseTrailers, "proxy_on_response_trailers",
		func(i *instance) api.Function { return i.fnResponseTrailers }, trailers)
	f.took(began)
	return s
}

// OnLog calls proxy_on_log, creating the stream context first when the
// stream never reached this filter (Envoy does so for the access-log
// phase). Maps are read-only here, through the stream's callbacks.
func (f *httpFilter) OnLog() {
	inst, st := f.enter()
	if st != entered {
		return
	}
	defer inst.mu.Unlock()
	if inst.fnLog != nil {
		f.call(inst, phaseLog, "proxy_on_log", inst.fnLog, uint64(f.id), 0, 0)
	}
}

// OnDestroy calls proxy_on_done then proxy_on_delete (Envoy's HTTP order,
// after on_log) and unbinds the stream. proxy_on_done's result is ignored
// for streams, as in Envoy.
func (f *httpFilter) OnDestroy() {
	if !f.recorded {
		f.recorded = true
		end := f.lastEnd
		if end == 0 {
			end = monoNow() // no callback ran: no clock read yet
		}
		if m := f.plugin.meter; m != nil {
			m.record(unixSecond(end), f.spent)
		}
	}
	if !f.created || f.deleted {
		return
	}
	f.deleted = true
	inst := f.inst
	inst.mu.Lock()
	defer inst.mu.Unlock()
	inst.streams.remove(f.id)
	for _, c := range [...]struct {
		name string
		fn   api.Function
	}{{"proxy_on_done", inst.fnDone}, {"proxy_on_delete", inst.fnDelete}} {
		if c.fn == nil || inst.broken.Load() || inst.closed.Load() {
			continue
		}
		if _, ok := f.call(inst, phaseEnd, c.name, c.fn, uint64(f.id), 0, 0); !ok {
			return
		}
	}
}

// applyActions hands the actions the guest queued on this stream to the
// proxy. A local reply or a reset supersedes continuing.
func (f *httpFilter) applyActions() {
	switch {
	case f.reply != nil:
		r := f.reply
		f.reply = nil
		f.localReplySent = true
		f.requestHeld, f.responseHeld = false, false
		f.cb.SendLocalReply(r.status, r.body, r.headers, r.details)
	case f.reset != "":
		f.requestHeld, f.responseHeld = false, false
		f.cb.Reset(f.reset)
	default:
		if f.continueReq {
			f.requestHeld = false
			f.cb.Continue(filter.Request)
		}
		if f.continueResp {
			f.responseHeld = false
			f.cb.Continue(filter.Response)
		}
	}
	f.reset, f.continueReq, f.continueResp = "", false, false
}

// headerMap returns the map of type t the current callback may use, or
// nil when it is not available: the map passed to a headers/trailers
// callback (read-write), paused headers from that side's later callbacks
// (read-write), trailers created from the last body callback (write), or
// any map the stream has (read-only).
func (f *httpFilter) headerMap(t uint32, write bool) *filter.HeaderMap {
	switch t {
	case mapRequestHeaders:
		if f.phase == phaseRequestHeaders {
			return f.headers
		}
		if write && !(f.requestHeld && (f.phase == phaseRequestBody || f.phase == phaseRequestTrailers)) {
			return nil
		}
		return f.cb.RequestHeaders()
	case mapRequestTrailers:
		if f.phase == phaseRequestTrailers {
			return f.headers
		}
		if write {
			if f.phase == phaseRequestBody && f.endOfStream {
				if t := f.cb.RequestTrailers(); t != nil {
					return t
				}
				return f.cb.AddRequestTrailers()
			}
			return nil
		}
		return f.cb.RequestTrailers()
	case mapResponseHeaders:
		if f.phase == phaseResponseHeaders {
			return f.headers
		}
		if write && !(f.responseHeld && (f.phase == phaseResponseBody || f.phase == phaseResponseTrailers)) {
			return nil
		}
		return f.cb.ResponseHeaders()
	case mapResponseTrailers:
		if f.phase == phaseResponseTrailers {
			return f.headers
		}
		if write {
			if f.phase == phaseResponseBody && f.endOfStream {
				if t := f.cb.ResponseTrailers(); t != nil {
					return t
				}
				return f.cb.AddResponseTrailers()
			}
			return nil
		}
		return f.cb.ResponseTrailers()
	}
	return nil
}

// requestHeaders is the request header map for properties.
func (f *httpFilter) requestHeaders() *filter.HeaderMap {
	if f.phase == phaseRequestHeaders {
		return f.headers
	}
	return f.cb.RequestHeaders()
}

// responseHeaders is the response header map for properties.
func (f *httpFilter) responseHeaders() *filter.HeaderMap {
	if f.phase == phaseResponseHeaders {
		return f.headers
	}
	return f.cb.ResponseHeaders()
}

// failHeld applies the failure policy to a stream the instance holds
// paused (waiting for an HTTP call, a tick, a queue) when a trap in
// another callback poisons the instance: nothing would ever resume it
// otherwise. It queues the answer like a guest action, so it reaches
// the stream through filter.Callbacks. The caller holds the instance
// lock.
func (f *httpFilter) failHeld(inst *instance) {
	if f.deleted || !(f.requestHeld || f.responseHeld) {
		return
	}
	if f.plugin.failOpen {
		f.continueReq, f.continueResp = f.requestHeld, f.responseHeld
	} else if f.failAnswered.Swap(true) {
		return
	} else if f.requestHeld {
		f.reply = &localReply{status: 503, details: "wasm_fail_stream"}
	} else {
		f.reset = "wasm_fail_stream"
	}
	inst.queue(f)
}
