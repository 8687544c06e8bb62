package wasmtest

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmproxy/wasmproxy/filter"
)

// Headers is a list of header (or trailer) pairs in order, for input:
// wasmtest.Headers{{":method", "GET"}, {":path", "/"}}.
type Headers = []filter.Pair

// Request returns request headers for method and path with :authority
// "example.com" and :scheme "http", followed by extra key, value pairs.
// The proxy adds x-request-id and x-forwarded-proto before any filter
// runs; Request does not, so add them when the plugin reads them.
func Request(method, path string, extra ...string) Headers {
	h := Headers{{Key: ":authority", Value: "example.com"}, {Key: ":path", Value: path}, {Key: ":method", Value: method}, {Key: ":scheme", Value: "http"}}
	return appendPairs(h, extra)
}

// Response returns response headers with :status code followed by extra
// key, value pairs.
func Response(code int, extra ...string) Headers {
	return appendPairs(Headers{{Key: ":status", Value: strconv.Itoa(code)}}, extra)
}

func appendPairs(h Headers, kv []string) Headers {
	if len(kv)%2 != 0 {
		panic("wasmtest: header pairs: odd number of key, value strings")
	}
	for i := 0; i < len(kv); i += 2 {
		h = append(h, filter.Pair{Key: strings.ToLower(kv[i]), Value: kv[i+1]})
	}
	return h
}

// Action is what a callback's answer did to the stream.
type Action int

const (
	// Continue: the data went on (to the upstream for the request, to the
	// client for the response).
	Continue Action = iota
	// Pause: the data stopped at the plugin (held, buffered or dropped).
	Pause
)

func (a Action) String() string {
	if a == Continue {
		return "Continue"
	}
	return "Pause"
}

// Result is the outcome of one Send call.
type Result struct {
	s reporter
	// Callback is the plugin callback that ran ("proxy_on_request_body"),
	// or the one that would have run when Called is false.
	Callback string
	// Called is false when the plugin was not called: the data was held
	// before it (its headers callback paused), or dropped (a local
	// response or a reset already ended that direction).
	Called bool
	// Action is Continue when the data went on, Pause otherwise.
	Action Action
	// Status is the host's answer in Envoy's words
	// ("StopAllIterationAndWatermark"), or why the plugin was not called.
	Status string
}

// ExpectContinue fails the test unless the data went on.
func (r Result) ExpectContinue() Result {
	r.s.tb().Helper()
	if r.Action != Continue {
		r.s.failf("%s: expected Continue, got %s", r.Callback, r.describe())
	}
	return r
}

// ExpectPause fails the test unless the data stopped at the plugin.
func (r Result) ExpectPause() Result {
	r.s.tb().Helper()
	if r.Action != Pause {
		r.s.failf("%s: expected Pause, got %s", r.Callback, r.describe())
	}
	return r
}

func (r Result) describe() string {
	if !r.Called {
		return "no call: " + r.Status
	}
	return r.Action.String() + " (" + r.Status + ")"
}

// Message is what passed one side of the plugin: the request as the
// upstream received it, or the response as the client received it. The
// header maps are the ones the plugin edited.
type Message struct {
	Headers  *filter.HeaderMap // nil until headers passed
	Body     []byte
	Trailers *filter.HeaderMap // nil when none passed
	// Complete is true once the end of stream passed.
	Complete bool
}

// LocalResponse is a reply the plugin sent (proxywasm.SendHttpResponse),
// as it sent it; the client may see it changed by the plugin's own
// response callbacks (see HTTPStream.Client).
type LocalResponse struct {
	Status  int
	Body    []byte
	Headers []filter.Pair
	// Details ends up in the response code details (spaces become '_').
	Details string
}

// StreamOption configures a stream or connection.
type StreamOption func(*filter.StreamInfo)

// WithInfo edits what the proxy knows about the stream before the first
// callback: addresses, protocol, route and cluster names, metadata. It is
// the source of the plugin's properties (source.address, xds.route_name,
// ...).
func WithInfo(edit func(*filter.StreamInfo)) StreamOption {
	return StreamOption(edit)
}

// HTTPStream is one HTTP request/response through the plugin. The test
// drives it with the Send methods in protocol order and completes it with
// Complete (or Reset). Methods are for the test goroutine.
type HTTPStream struct {
	p    *Plugin
	t    TB
	id   int
	f    filter.StreamFilter
	cb   *streamCallbacks
	info filter.StreamInfo

	dec, enc dirState
	// Maps the stream holds, as the proxy's stream does.
	reqHeaders, reqTrailers   *filter.HeaderMap
	respHeaders, respTrailers *filter.HeaderMap
	// Trailers the plugin created from its last body callback; they
	// follow the body, as in the proxy.
	addedReqTrailers, addedRespTrailers bool

	upstream, client Message

	local           *LocalResponse
	localReplied    bool
	responseStarted bool
	complete        bool // response finished or stream reset
	resetDetails    string
	ended           bool // on_log / on_delete delivered

	haltRequested atomic.Bool
	decodeHalted  bool
	encodeHalted  bool

	// Actions filters posted (from any goroutine), applied by drain on the
	// test goroutine.
	mu       sync.Mutex
	pending  []func()
	notify   chan struct{}
	draining bool

	trace         []string
	propertyReads []string
	logStart      int
}

// dirState is where the plugin stands in one direction: the proxy's
// per-filter chain state (proxy/chain.go) for a chain of one filter.
type dirState struct {
	request      bool
	headers      *filter.HeaderMap
	headersEnd   bool
	headersDone  bool
	headersStop  filter.HeadersStatus
	pausedBy     string // callback that paused the direction, for messages
	dataStopped  bool
	dataMode     filter.DataStatus
	buf          []byte
	sawData      bool
	end          bool
	trailers     *filter.HeaderMap
	trailersStop bool
}

// NewHTTPStream starts a stream on the plugin. Its stream context is
// created (proxy_on_context_create) when the request headers arrive, as
// in Envoy.
func (p *Plugin) NewHTTPStream(opts ...StreamOption) *HTTPStream {
	s := &HTTPStream{p: p, t: p.t, notify: make(chan struct{}, 1)}
	s.dec.request = true
	s.logStart = p.logs.len()
	s.info = filter.StreamInfo{
		StartTime:      time.Now(),
		Protocol:       "HTTP/1.1",
		ConnectionID:   p.nextConnectionID(),
		DownstreamAddr: netip.MustParseAddrPort("127.0.0.1:50000"),
		LocalAddr:      netip.MustParseAddrPort("127.0.0.1:10000"),
		ListenerName:   "wasmtest",
	}
	for _, o := range opts {
		o(&s.info)
	}
	s.cb = &streamCallbacks{s: s}
	p.mu.Lock()
	p.streams = append(p.streams, s)
	s.id = len(p.streams)
	p.mu.Unlock()
	s.f = p.plugin.NewStreamFilter(s.cb)
	return s
}

// SendRequestHeaders delivers the request headers (proxy_on_request_headers).
// endStream true means the request has no body.
func (s *HTTPStream) SendRequestHeaders(h Headers, endStream bool) Result {
	s.t.Helper()
	s.begin("SendRequestHeaders")
	if s.reqHeaders != nil {
		s.t.Fatalf("wasmtest: stream %d: SendRequestHeaders called twice", s.id)
	}
	s.reqHeaders = filter.NewHeaderMap(h...)
	s.info.RequestHeaderBytes = uint64(s.reqHeaders.ByteSize())
	s.dec.headers, s.dec.headersEnd = s.reqHeaders, endStream
	r := s.runHeaders(&s.dec, endStream)
	s.drain()
	return r
}

// SendRequestBody delivers a chunk of the request body
// (proxy_on_request_body); endStream true marks the last chunk.
func (s *HTTPStream) SendRequestBody(chunk []byte, endStream bool) Result {
	s.t.Helper()
	s.begin("SendRequestBody")
	if s.reqHeaders == nil {
		s.t.Fatalf("wasmtest: stream %d: SendRequestBody before SendRequestHeaders", s.id)
	}
	s.info.RequestBodyBytes.Add(uint64(len(chunk)))
	var r Result
	if s.decodeHalted || s.complete || s.haltRequested.Load() {
		r = s.notCalled("proxy_on_request_body", "dropped: "+s.endedWhy())
	} else {
		r = s.runData(&s.dec, chunk, endStream)
	}
	s.drain()
	return r
}

// SendRequestTrailers delivers the request trailers
// (proxy_on_request_trailers); they end the request.
func (s *HTTPStream) SendRequestTrailers(t Headers) Result {
	s.t.Helper()
	s.begin("SendRequestTrailers")
	if s.reqHeaders == nil {
		s.t.Fatalf("wasmtest: stream %d: SendRequestTrailers before SendRequestHeaders", s.id)
	}
	s.reqTrailers = filter.NewHeaderMap(t...)
	var r Result
	if s.decodeHalted || s.complete || s.haltRequested.Load() {
		r = s.notCalled("proxy_on_request_trailers", "dropped: "+s.endedWhy())
	} else {
		r = s.runTrailers(&s.dec, s.reqTrailers)
	}
	s.drain()
	return r
}

// SendResponseHeaders delivers the upstream's response headers
// (proxy_on_response_headers). It fails the test when no upstream could
// be answering: the request headers have not reached it, or the plugin
// already answered locally.
func (s *HTTPStream) SendResponseHeaders(h Headers, endStream bool) Result {
	s.t.Helper()
	s.begin("SendResponseHeaders")
	switch {
	case s.localReplied:
		s.failf("SendResponseHeaders: the plugin already sent a local response (%d), so no upstream response can follow", s.local.Status)
	case s.resetDetails != "":
		s.failf("SendResponseHeaders: the stream was reset (%s)", s.resetDetails)
	case s.upstream.Headers == nil:
		s.failf("SendResponseHeaders: the upstream never received the request headers: %s", s.pausedWhy(&s.dec))
	case s.respHeaders != nil:
		s.t.Fatalf("wasmtest: stream %d: SendResponseHeaders called twice", s.id)
	}
	s.respHeaders = filter.NewHeaderMap(h...)
	s.info.ResponseHeaderBytes = uint64(s.respHeaders.ByteSize())
	s.enc.headers, s.enc.headersEnd = s.respHeaders, endStream
	r := s.runHeaders(&s.enc, endStream)
	s.drain()
	return r
}

// SendResponseBody delivers a chunk of the upstream's response body
// (proxy_on_response_body).
func (s *HTTPStream) SendResponseBody(chunk []byte, endStream bool) Result {
	s.t.Helper()
	s.begin("SendResponseBody")
	if s.respHeaders == nil || s.localReplied {
		s.failf("SendResponseBody before SendResponseHeaders")
	}
	var r Result
	if s.encodeHalted || s.complete || s.haltRequested.Load() {
		r = s.notCalled("proxy_on_response_body", "dropped: "+s.endedWhy())
	} else {
		r = s.runData(&s.enc, chunk, endStream)
	}
	s.drain()
	return r
}

// SendResponseTrailers delivers the upstream's response trailers
// (proxy_on_response_trailers).
func (s *HTTPStream) SendResponseTrailers(t Headers) Result {
	s.t.Helper()
	s.begin("SendResponseTrailers")
	if s.respHeaders == nil || s.localReplied {
		s.failf("SendResponseTrailers before SendResponseHeaders")
	}
	s.respTrailers = filter.NewHeaderMap(t...)
	var r Result
	if s.encodeHalted || s.complete || s.haltRequested.Load() {
		r = s.notCalled("proxy_on_response_trailers", "dropped: "+s.endedWhy())
	} else {
		r = s.runTrailers(&s.enc, s.respTrailers)
	}
	s.drain()
	return r
}

// Complete ends the stream the way the proxy does once the exchange is
// over: proxy_on_log, proxy_on_done, proxy_on_delete. It fails the test
// when the plugin left a direction paused that nothing will resume — in
// the proxy that request would hang until its route timeout — naming the
// callback that paused it. Use Reset for a stream the client abandons.
func (s *HTTPStream) Complete() {
	s.t.Helper()
	s.begin("Complete")
	s.finish(false)
}

// Reset ends the stream as a client disconnecting would: no pause check,
// then proxy_on_log, proxy_on_done, proxy_on_delete.
func (s *HTTPStream) Reset() {
	s.t.Helper()
	s.begin("Reset")
	if !s.complete {
		s.resetDetails = "downstream_remote_disconnect"
		s.complete = true
		s.decodeHalted, s.encodeHalted = true, true
		s.note("client reset the stream")
	}
	s.finish(false)
}

// finish runs the end-of-stream callbacks once. atCleanup: the test ended
// without completing the stream.
func (s *HTTPStream) finish(atCleanup bool) {
	s.t.Helper()
	if s.ended {
		return
	}
	s.ended = true
	s.drainAll()
	if s.p.stuck.Load() != nil {
		// Already reported; the stream is wherever the stuck call left it.
		return
	}
	if s.resetDetails == "" && !s.localReplied {
		for _, d := range []*dirState{&s.dec, &s.enc} {
			if s.paused(d) {
				when := "when it completed"
				if atCleanup {
					when = "when the test ended"
				}
				s.errorf("the %s was still paused %s: %s; in the proxy it would wait until the route timeout (504)",
					d.name(), when, s.pausedWhy(d))
			}
		}
	}
	s.info.EndTime = time.Now()
	if s.p.stuck.Load() != nil {
		return
	}
	s.call("proxy_on_log", func() { s.f.OnLog() })
	s.call("proxy_on_done / proxy_on_delete", func() { s.f.OnDestroy() })
}

// Upstream is the request as the upstream received it so far.
func (s *HTTPStream) Upstream() Message { s.drain(); return s.upstream }

// Client is the response as the client received it so far: the
// upstream's response, or the plugin's local response, after the
// plugin's response callbacks.
func (s *HTTPStream) Client() Message { s.drain(); return s.client }

// LocalResponse is the local response the plugin sent, or nil.
func (s *HTTPStream) LocalResponse() *LocalResponse { s.drain(); return s.local }

// ResetDetails says why the stream was reset ("wasm_close_stream",
// "wasm_fail_stream", ...), or "" when it was not.
func (s *HTTPStream) ResetDetails() string { s.drain(); return s.resetDetails }

// Info is the stream's info as the plugin sees it in properties.
func (s *HTTPStream) Info() *filter.StreamInfo { return &s.info }

// RequestPaused and ResponsePaused report whether the plugin holds that
// direction (headers, body or trailers) without having resumed it.
func (s *HTTPStream) RequestPaused() bool  { s.drain(); return s.paused(&s.dec) }
func (s *HTTPStream) ResponsePaused() bool { s.drain(); return s.paused(&s.enc) }

// PropertiesRead lists the properties the plugin read from this stream's
// callbacks, as dotted paths; absent ones end in " (not found)".
func (s *HTTPStream) PropertiesRead() []string {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return append([]string(nil), s.propertyReads...)
}

// Trace is what happened on the stream so far, one line per event: each
// callback with its answer, each action of the plugin, what reached the
// upstream and the client. Failure messages include it.
func (s *HTTPStream) Trace() []string { s.drain(); return append([]string(nil), s.trace...) }

// ExpectLocalResponse fails the test unless the plugin sent a local
// response with status and body (body "" matches any).
func (s *HTTPStream) ExpectLocalResponse(status int, body string) {
	s.t.Helper()
	s.drain()
	if s.local == nil {
		s.errorf("expected a local response %d, but the plugin sent none", status)
		return
	}
	if s.local.Status != status || (body != "" && string(s.local.Body) != body) {
		s.errorf("expected local response %d %q, got %d %q", status, body, s.local.Status, s.local.Body)
	}
}

// ExpectClientStatus fails the test unless the client received a
// response with status code (from the upstream, the plugin or the proxy).
func (s *HTTPStream) ExpectClientStatus(code int) {
	s.t.Helper()
	h := s.Client().Headers
	if h == nil {
		s.errorf("expected the client to receive status %d, but no response reached it", code)
		return
	}
	if got, _ := h.Get(":status"); got != strconv.Itoa(code) {
		s.errorf("expected the client to receive status %d, got %s", code, got)
	}
}

// ExpectNoLocalResponse fails the test if the plugin sent a local response.
func (s *HTTPStream) ExpectNoLocalResponse() {
	s.t.Helper()
	s.drain()
	if s.local != nil {
		s.errorf("expected no local response, got %d %q", s.local.Status, s.local.Body)
	}
}

// ExpectUpstreamHeader fails the test unless the upstream received
// request header key with value (the first value, when repeated).
func (s *HTTPStream) ExpectUpstreamHeader(key, value string) {
	s.t.Helper()
	s.expectHeader("upstream request", s.Upstream().Headers, key, value)
}

// ExpectClientHeader fails the test unless the client received response
// header key with value.
func (s *HTTPStream) ExpectClientHeader(key, value string) {
	s.t.Helper()
	s.expectHeader("client response", s.Client().Headers, key, value)
}

func (s *HTTPStream) expectHeader(where string, h *filter.HeaderMap, key, value string) {
	s.t.Helper()
	if h == nil {
		s.errorf("expected %s header %s: %q, but no headers reached it", where, key, value)
		return
	}
	got, ok := h.Get(key)
	if !ok {
		s.errorf("expected %s header %s: %q, but it is absent; headers: %s", where, key, value, formatPairs(h.Pairs()))
		return
	}
	if got != value {
		s.errorf("expected %s header %s: %q, got %q", where, key, value, got)
	}
}

// AwaitResumed waits until the plugin resumes the paused direction
// (request when request is true, else response), answers locally or
// resets the stream, bounded by the plugin's timeout. Use it when the
// resume comes from elsewhere than the test goroutine.
func (s *HTTPStream) AwaitResumed(request bool) {
	s.t.Helper()
	d := &s.enc
	if request {
		d = &s.dec
	}
	deadline := time.Now().Add(s.p.set.timeout)
	for {
		s.drain()
		if !s.paused(d) || s.localReplied || s.resetDetails != "" {
			return
		}
		wait := time.Until(deadline)
		if s.p.set.timeout > 0 && wait <= 0 {
			s.failf("the %s is still paused after %v: %s", d.name(), s.p.set.timeout, s.pausedWhy(d))
			return
		}
		if s.p.set.timeout <= 0 {
			wait = time.Hour
		}
		select {
		case <-s.notify:
		case <-time.After(wait):
		}
	}
}

// --- driving the filter (proxy/chain.go for a chain of one) ---------------

func (d *dirState) name() string {
	if d.request {
		return "request"
	}
	return "response"
}

// paused: the plugin holds something of this direction.
func (s *HTTPStream) paused(d *dirState) bool {
	return (d.headers != nil && !d.headersDone) || d.dataStopped || d.trailersStop
}

func (s *HTTPStream) pausedWhy(d *dirState) string {
	switch {
	case d.headers == nil:
		return "its headers were never sent"
	case s.localReplied:
		return fmt.Sprintf("the plugin answered with a local response %d", s.local.Status)
	case d.pausedBy != "":
		return d.pausedBy + " returned Pause and the plugin never resumed it (no proxywasm.Resume" + map[bool]string{true: "HttpRequest", false: "HttpResponse"}[d.request] + ", no local response)"
	}
	return "it is held at the plugin"
}

func (s *HTTPStream) endedWhy() string {
	switch {
	case s.localReplied:
		return fmt.Sprintf("the plugin already sent a local response %d", s.local.Status)
	case s.resetDetails != "":
		return "the stream was reset (" + s.resetDetails + ")"
	}
	return "the stream is ending"
}

func (s *HTTPStream) halted(d *dirState) bool {
	if s.haltRequested.Load() {
		return true
	}
	if d.request {
		return s.decodeHalted
	}
	return s.encodeHalted
}

func (s *HTTPStream) runHeaders(d *dirState, end bool) Result {
	name := "proxy_on_request_headers"
	if !d.request {
		name = "proxy_on_response_headers"
	}
	var st filter.HeadersStatus
	desc := name
	if s.tracing() {
		desc = fmt.Sprintf("%s(%d headers, end_of_stream=%v)", name, d.headers.Len(), end)
	}
	s.call(desc, func() {
		if d.request {
			st = s.f.DecodeHeaders(d.headers, end)
		} else {
			st = s.f.EncodeHeaders(d.headers, end)
		}
	})
	r := Result{s: s, Callback: name, Called: true, Status: headersStatusName(st)}
	s.note("%s → %s", desc, r.Status)
	if s.halted(d) {
		d.headersStop = filter.HeadersStopAllIterationAndBuffer
		r.Action = Pause
		return r
	}
	switch st {
	case filter.HeadersContinue, filter.HeadersContinueAndEndStream:
		d.headersDone = true
		s.passHeaders(d, end)
	default:
		d.headersStop = st
		d.pausedBy = name
		r.Action = Pause
	}
	return r
}

func (s *HTTPStream) runData(d *dirState, b []byte, end bool) Result {
	name := "proxy_on_request_body"
	if !d.request {
		name = "proxy_on_response_body"
	}
	d.sawData = true
	d.buf = append(d.buf, b...)
	d.end = d.end || end
	if !d.headersDone && d.headersStop != filter.HeadersStopIteration {
		// StopAllIteration: the data waits before the plugin, which sees
		// it once it resumes.
		s.note("%d body bytes held before the plugin (%s paused with %s)", len(b), d.pausedBy, headersStatusName(d.headersStop))
		s.checkLimit(d, d.headersStop == filter.HeadersStopAllIterationAndWatermark)
		return Result{s: s, Callback: name, Action: Pause,
			Status: "held: " + d.pausedBy + " paused the stream, so the body waits until the plugin resumes it"}
	}
	buf := filter.Buffer{Bytes: d.buf}
	var st filter.DataStatus
	desc := name
	if s.tracing() {
		desc = fmt.Sprintf("%s(%d bytes, end_of_stream=%v)", name, len(d.buf), d.end)
	}
	s.call(desc, func() {
		if d.request {
			st = s.f.DecodeData(&buf, d.end)
		} else {
			st = s.f.EncodeData(&buf, d.end)
		}
	})
	d.buf = buf.Bytes
	r := Result{s: s, Callback: name, Called: true, Status: dataStatusName(st)}
	s.note("%s → %s", desc, r.Status)
	if s.halted(d) {
		r.Action = Pause
		return r
	}
	switch st {
	case filter.DataContinue:
		out, outEnd := d.buf, d.end
		d.buf, d.dataStopped = nil, false
		if !d.headersDone {
			// Continuing the body after headers StopIteration releases the
			// headers first, as Envoy does.
			d.headersDone = true
			s.passHeaders(d, false)
			if s.halted(d) {
				return r
			}
		}
		if len(out) > 0 || outEnd {
			s.passData(d, out, outEnd)
		}
	case filter.DataStopIterationNoBuffer:
		d.buf, d.dataStopped, d.dataMode, d.pausedBy = nil, true, st, name
		r.Action = Pause
	default:
		d.dataStopped, d.dataMode, d.pausedBy = true, st, name
		r.Action = Pause
		s.checkLimit(d, st == filter.DataStopIterationAndWatermark)
	}
	return r
}

func (s *HTTPStream) runTrailers(d *dirState, t *filter.HeaderMap) Result {
	name := "proxy_on_request_trailers"
	if !d.request {
		name = "proxy_on_response_trailers"
	}
	if !d.headersDone {
		d.trailers = t
		s.note("trailers held before the plugin (%s paused)", d.pausedBy)
		return Result{s: s, Callback: name, Action: Pause, Status: "held: " + d.pausedBy + " paused the stream"}
	}
	var st filter.TrailersStatus
	desc := name
	if s.tracing() {
		desc = fmt.Sprintf("%s(%d trailers)", name, t.Len())
	}
	s.call(desc, func() {
		if d.request {
			st = s.f.DecodeTrailers(t)
		} else {
			st = s.f.EncodeTrailers(t)
		}
	})
	r := Result{s: s, Callback: name, Called: true, Status: "Continue"}
	if st != filter.TrailersContinue {
		r.Status = "StopIteration"
	}
	s.note("%s → %s", desc, r.Status)
	if s.halted(d) {
		r.Action = Pause
		return r
	}
	if st != filter.TrailersContinue {
		d.trailers, d.trailersStop, d.pausedBy = t, true, name
		r.Action = Pause
		return r
	}
	if d.dataStopped || len(d.buf) > 0 {
		// Trailers continue: data held here goes first.
		b := d.buf
		d.buf, d.dataStopped = nil, false
		if len(b) > 0 {
			s.passData(d, b, false)
			if s.halted(d) {
				return r
			}
		}
	}
	s.passTrailers(d, t)
	return r
}

// resume continues what the plugin holds in d (it called Continue).
func (s *HTTPStream) resume(d *dirState) {
	if s.halted(d) {
		return
	}
	switch {
	case !d.headersDone:
		if d.headers == nil {
			return
		}
		d.headersDone = true
		stopAll := d.headersStop != filter.HeadersStopIteration
		held, end, sawData := d.buf, d.end, d.sawData
		d.buf = nil
		t := d.trailers
		d.trailers = nil
		s.passHeaders(d, d.headersEnd && !sawData && t == nil)
		if s.halted(d) {
			return
		}
		if stopAll {
			// The plugin that stopped all iteration sees the held data
			// itself first.
			d.sawData = false
			if sawData && (len(held) > 0 || end) {
				s.runData(d, held, end)
				if s.halted(d) {
					return
				}
			}
			if t != nil {
				s.runTrailers(d, t)
			}
			return
		}
		if sawData && (len(held) > 0 || end) {
			s.passData(d, held, end)
			if s.halted(d) {
				return
			}
		}
		if t != nil {
			s.passTrailers(d, t)
		}
	case d.dataStopped:
		d.dataStopped = false
		b, end := d.buf, d.end
		d.buf = nil
		t := d.trailers
		d.trailers = nil
		if len(b) > 0 || end {
			s.passData(d, b, end)
			if s.halted(d) {
				return
			}
		}
		if t != nil {
			d.trailersStop = false
			s.passTrailers(d, t)
		}
	case d.trailersStop:
		d.trailersStop = false
		t := d.trailers
		d.trailers = nil
		if t != nil {
			s.passTrailers(d, t)
		}
	}
}

func (s *HTTPStream) checkLimit(d *dirState, watermark bool) {
	limit := s.p.set.bufferLimit
	if limit <= 0 || len(d.buf) <= limit {
		return
	}
	if watermark {
		s.note("%d bytes held at the plugin, over the %d-byte limit: the proxy stops reading from the %s", len(d.buf), limit,
			map[bool]string{true: "client", false: "upstream"}[d.request])
		return
	}
	s.haltRequested.Store(true)
	if d.request {
		s.note("%d bytes buffered at the plugin, over the %d-byte limit: 413", len(d.buf), limit)
		s.post(func() {
			s.sendLocalReply(413, []byte("Payload Too Large"), nil, "request_payload_too_large")
		})
		return
	}
	s.note("%d response bytes buffered at the plugin, over the %d-byte limit: 500", len(d.buf), limit)
	s.post(func() {
		s.sendLocalReply(500, []byte("Internal Server Error"), nil, "response_payload_too_large")
	})
}

// passHeaders, passData, passTrailers: what leaves the plugin reaches the
// upstream (request) or the client (response).
func (s *HTTPStream) passHeaders(d *dirState, end bool) {
	m := s.sink(d)
	m.Headers = d.headers
	m.Complete = end
	if d.request {
		if s.tracing() {
			s.note("upstream ← request headers %s%s", formatPairs(d.headers.Pairs()), endMark(end))
		}
		return
	}
	s.responseStarted = true
	if v, ok := d.headers.Get(":status"); ok {
		s.info.ResponseCode, _ = strconv.Atoi(v)
	}
	if end {
		s.complete = true
	}
	if s.tracing() {
		s.note("client ← response headers %s%s", formatPairs(d.headers.Pairs()), endMark(end))
	}
}

func (s *HTTPStream) passData(d *dirState, b []byte, end bool) {
	m := s.sink(d)
	m.Body = append(m.Body, b...)
	m.Complete = m.Complete || end
	who := "upstream ← request"
	if !d.request {
		who = "client ← response"
		s.info.ResponseBodyBytes.Add(uint64(len(b)))
		if end {
			s.complete = true
		}
	}
	if s.tracing() {
		s.note("%s body %s%s", who, quoteBody(b), endMark(end))
	}
	if end && ((d.request && s.addedReqTrailers) || (!d.request && s.addedRespTrailers)) {
		t := s.reqTrailers
		if !d.request {
			t = s.respTrailers
		}
		s.passTrailers(d, t)
	}
}

func (s *HTTPStream) passTrailers(d *dirState, t *filter.HeaderMap) {
	m := s.sink(d)
	m.Trailers = t
	m.Complete = true
	who := "upstream ← request"
	if !d.request {
		who = "client ← response"
		s.complete = true
	}
	if s.tracing() {
		s.note("%s trailers %s", who, formatPairs(t.Pairs()))
	}
}

func (s *HTTPStream) sink(d *dirState) *Message {
	if d.request {
		return &s.upstream
	}
	return &s.client
}

// sendLocalReply answers the client from the proxy: the reply passes
// through the plugin's response callbacks (fresh response state), as in
// Envoy and proxy.stream.sendLocalReply.
func (s *HTTPStream) sendLocalReply(status int, body []byte, headers []filter.Pair, details string) {
	if s.complete || s.localReplied {
		return
	}
	if s.responseStarted {
		s.reset(details)
		return
	}
	s.localReplied = true
	s.haltRequested.Store(false)
	s.decodeHalted = true
	s.info.ResponseCodeDetails = details
	h := filter.NewHeaderMap(filter.Pair{Key: ":status", Value: strconv.Itoa(status)})
	for _, p := range headers {
		h.Add(p.Key, p.Value)
	}
	if len(body) > 0 {
		if _, ok := h.Get("content-type"); !ok {
			h.Set("content-type", "text/plain")
		}
	}
	h.Set("content-length", strconv.Itoa(len(body)))
	s.respHeaders, s.respTrailers = h, nil
	s.enc = dirState{headers: h, headersEnd: len(body) == 0}
	s.client = Message{}
	s.runHeaders(&s.enc, len(body) == 0)
	if len(body) > 0 && !s.complete && !s.encodeHalted && !s.haltRequested.Load() {
		s.runData(&s.enc, body, true)
	}
}

func (s *HTTPStream) reset(details string) {
	if s.complete {
		return
	}
	if s.info.ResponseCodeDetails == "" {
		s.info.ResponseCodeDetails = details
	}
	s.resetDetails = details
	s.complete = true
	s.decodeHalted, s.encodeHalted = true, true
	s.note("stream reset (%s)", details)
}

// call runs one call into the plugin under the timeout, attributing the
// properties it reads to this stream.
func (s *HTTPStream) call(desc string, fn func()) {
	s.t.Helper()
	p := s.p
	p.mu.Lock()
	p.current = s
	p.mu.Unlock()
	ok := p.guard(desc, fn)
	p.mu.Lock()
	p.current = nil
	p.mu.Unlock()
	if !ok {
		p.failStuck(s.t, fmt.Sprintf("stream %d", s.id))
	}
	p.settle(s.t, fmt.Sprintf("stream %d", s.id))
}

// begin applies what the plugin asked for from other goroutines before
// the test acts.
func (s *HTTPStream) begin(string) {
	s.t.Helper()
	if s.ended {
		s.t.Fatalf("wasmtest: stream %d: used after Complete or Reset", s.id)
	}
	s.drain()
}

// post queues an action for the test goroutine. Safe from any goroutine.
func (s *HTTPStream) post(fn func()) {
	s.mu.Lock()
	s.pending = append(s.pending, fn)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// drain applies queued actions until none is left. Only the test
// goroutine drains; actions queued while draining run in the same loop.
func (s *HTTPStream) drain() {
	if s.draining {
		return
	}
	s.draining = true
	defer func() { s.draining = false }()
	for {
		s.mu.Lock()
		fns := s.pending
		s.pending = nil
		s.mu.Unlock()
		if len(fns) == 0 {
			return
		}
		for _, fn := range fns {
			fn()
		}
	}
}

// drainAll is drain for the end of the stream.
func (s *HTTPStream) drainAll() { s.drain() }

func (s *HTTPStream) notCalled(callback, why string) Result {
	s.note("%s not called: %s", callback, why)
	return Result{s: s, Callback: callback, Action: Pause, Status: why}
}

func (s *HTTPStream) note(format string, args ...any) {
	if s.p.set.noTrace {
		return
	}
	s.trace = append(s.trace, fmt.Sprintf(format, args...))
}

func (s *HTTPStream) tracing() bool { return !s.p.set.noTrace }

// failf fails the test with msg, the stream's trace and recent logs.
func (s *HTTPStream) failf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("%s", s.report(fmt.Sprintf(format, args...)))
}

func (s *HTTPStream) errorf(format string, args ...any) {
	s.t.Helper()
	s.t.Errorf("%s", s.report(fmt.Sprintf(format, args...)))
}

func (s *HTTPStream) report(msg string) string {
	return s.p.report(fmt.Sprintf("stream %d", s.id), "stream", msg, s.trace, s.logStart)
}

// report is a stream's or connection's failure message: what failed,
// the trap if the plugin trapped since logStart, the trace of what
// happened, and the plugin's recent logs.
func (p *Plugin) report(who, kind, msg string, trace []string, logStart int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "wasmtest: plugin %s, %s: %s", p.label, who, msg)
	if trap, ok := p.trapSince(logStart); ok {
		fmt.Fprintf(&b, "\nthe plugin trapped %s", trap)
	}
	fmt.Fprintf(&b, "\nwhat happened on the %s:", kind)
	if len(trace) == 0 {
		b.WriteString("\n  (nothing yet)")
	}
	for _, line := range trace {
		b.WriteString("\n  ")
		b.WriteString(line)
	}
	entries := p.logs.snapshot()
	if logStart <= len(entries) {
		entries = entries[logStart:]
	}
	b.WriteString("\nrecent plugin logs:\n")
	b.WriteString(recentLogs(entries, 20))
	return b.String()
}

// reporter is a stream that can fail its test with its own trace.
type reporter interface {
	tb() TB
	failf(format string, args ...any)
}

func (s *HTTPStream) tb() TB { return s.t }

// streamCallbacks is the proxy side the plugin's filter talks to.
type streamCallbacks struct{ s *HTTPStream }

func (cb *streamCallbacks) Continue(dir filter.Direction) {
	s := cb.s
	s.post(func() {
		d := &s.dec
		if dir == filter.Response {
			d = &s.enc
		}
		s.note("plugin resumed the %s", d.name())
		s.resume(d)
	})
}

func (cb *streamCallbacks) SendLocalReply(status int, body []byte, headers []filter.Pair, details string) {
	s := cb.s
	s.haltRequested.Store(true)
	s.post(func() {
		if s.local == nil {
			s.local = &LocalResponse{Status: status, Body: body, Headers: headers, Details: details}
			s.note("plugin sent local response %d %s (details %q)", status, quoteBody(body), details)
		}
		s.sendLocalReply(status, body, headers, details)
	})
}

func (cb *streamCallbacks) Reset(details string) {
	s := cb.s
	s.haltRequested.Store(true)
	s.post(func() {
		s.haltRequested.Store(false)
		s.reset(details)
	})
}

func (cb *streamCallbacks) RequestHeaders() *filter.HeaderMap   { return cb.s.reqHeaders }
func (cb *streamCallbacks) ResponseHeaders() *filter.HeaderMap  { return cb.s.respHeaders }
func (cb *streamCallbacks) RequestTrailers() *filter.HeaderMap  { return cb.s.reqTrailers }
func (cb *streamCallbacks) ResponseTrailers() *filter.HeaderMap { return cb.s.respTrailers }
func (cb *streamCallbacks) Info() *filter.StreamInfo            { return &cb.s.info }

func (cb *streamCallbacks) AddRequestTrailers() *filter.HeaderMap {
	s := cb.s
	if s.reqTrailers == nil {
		s.reqTrailers = filter.NewHeaderMap()
		s.addedReqTrailers = true
	}
	return s.reqTrailers
}

func (cb *streamCallbacks) AddResponseTrailers() *filter.HeaderMap {
	s := cb.s
	if s.respTrailers == nil {
		s.respTrailers = filter.NewHeaderMap()
		s.addedRespTrailers = true
	}
	return s.respTrailers
}

// --- formatting -------------------------------------------------------------

func headersStatusName(st filter.HeadersStatus) string {
	switch st {
	case filter.HeadersContinue:
		return "Continue"
	case filter.HeadersStopIteration:
		return "StopIteration"
	case filter.HeadersContinueAndEndStream:
		return "ContinueAndEndStream"
	case filter.HeadersStopAllIterationAndBuffer:
		return "StopAllIterationAndBuffer"
	case filter.HeadersStopAllIterationAndWatermark:
		return "StopAllIterationAndWatermark"
	}
	return fmt.Sprintf("HeadersStatus(%d)", int(st))
}

func dataStatusName(st filter.DataStatus) string {
	switch st {
	case filter.DataContinue:
		return "Continue"
	case filter.DataStopIterationAndBuffer:
		return "StopIterationAndBuffer"
	case filter.DataStopIterationAndWatermark:
		return "StopIterationAndWatermark"
	case filter.DataStopIterationNoBuffer:
		return "StopIterationNoBuffer"
	}
	return fmt.Sprintf("DataStatus(%d)", int(st))
}

func formatPairs(pairs []filter.Pair) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, p := range pairs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.Key)
		b.WriteString(": ")
		b.WriteString(strconv.Quote(p.Value))
	}
	b.WriteByte('}')
	return b.String()
}

// quoteBody shows a body in a message, shortened past 200 bytes.
func quoteBody(b []byte) string {
	const max = 200
	if len(b) > max {
		return fmt.Sprintf("%q… (%d bytes)", b[:max], len(b))
	}
	return strconv.Quote(string(b))
}

func endMark(end bool) string {
	if end {
		return " (end of stream)"
	}
	return ""
}
