package wasmtest

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/filterchain"
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

// WithRoute puts the stream on the route named name: the plugin sees it
// as xds.route_name, and a RouteConfig for that route serves the stream.
func WithRoute(name string) StreamOption {
	return func(i *filter.StreamInfo) { i.RouteName = name }
}

// HTTPStream is one HTTP request/response through the plugin. The test
// drives it with the Send methods in protocol order and completes it with
// Complete (or Reset). Methods are for the test goroutine.
type HTTPStream struct {
	p  *Plugin
	t  TB
	id int
	// fc runs the plugin as the proxy runs a chain of filters (the same
	// engine, with a chain of one); the stream is its host and observer
	// (streamHost), and the plugin's filter is called through pluginFilter.
	fc   filterchain.HTTP
	info filter.StreamInfo

	upstream, client Message

	local           *LocalResponse
	localReplied    bool
	responseStarted bool
	complete        bool // response finished or stream reset
	resetDetails    string
	ended           bool // on_log / on_delete delivered

	// pausedBy names the callback that paused each direction, for
	// messages; last is what the plugin's last call (or the hold before
	// it) did, for the Send method's Result.
	pausedBy [2]string
	last     Result
	draining bool

	trace         []string
	propertyReads []string
	logStart      int

	// seen is each direction as the plugin's last callback left it.
	seen [2]seenState
	// skip makes the next headers of a direction pass the plugin by
	// (SkipRequestHeaders, SkipResponseHeaders).
	skip [2]bool
}

type seenState struct {
	headers, trailers *filter.HeaderMap
	body              []byte
}

// Current returns the request (or response) as the plugin's last callback
// in that direction left it: the header map it edited, the body the last
// body callback saw (what it buffered included) after its edits, and the
// trailers. Parts no callback saw yet are nil.
func (s *HTTPStream) Current(request bool) (headers *filter.HeaderMap, body []byte, trailers *filter.HeaderMap) {
	s.drain()
	d := &s.seen[filter.Response]
	if request {
		d = &s.seen[filter.Request]
	}
	return d.headers, d.body, d.trailers
}

// NewHTTPStream starts a stream on the plugin. Its stream context is
// created (proxy_on_context_create) when the request headers arrive, as
// in Envoy.
func (p *Plugin) NewHTTPStream(opts ...StreamOption) *HTTPStream {
	s := &HTTPStream{p: p, t: p.t}
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
	p.mu.Lock()
	p.streams = append(p.streams, s)
	s.id = len(p.streams)
	p.mu.Unlock()
	h := (*streamHost)(s)
	s.fc.Init(h, h, &s.info, []filter.Factory{pluginFactory{s}}, p.set.bufferLimit, p.set.bufferLimit)
	return s
}

// SendRequestHeaders delivers the request headers (proxy_on_request_headers).
// endStream true means the request has no body.
func (s *HTTPStream) SendRequestHeaders(h Headers, endStream bool) Result {
	s.t.Helper()
	s.begin("SendRequestHeaders")
	if s.fc.ReqHeaders != nil {
		s.t.Fatalf("wasmtest: stream %d: SendRequestHeaders called twice", s.id)
	}
	m := filter.NewHeaderMap(h...)
	s.info.RequestHeaderBytes = uint64(m.ByteSize())
	s.last = Result{}
	s.fc.FeedHeaders(filter.Request, m, endStream)
	r := s.result()
	s.drain()
	return r
}

// SkipRequestHeaders delivers request headers that pass the plugin by:
// the engine and the upstream get them, but the plugin's
// proxy_on_request_headers is not called, so its first callback on the
// stream may be a body (or, when endStream is true, the response). The
// proxy never does this for a body — in Envoy every filter sees a
// direction's headers before its body — but a filter placed after one
// that answers the request itself (a cache hit, a local reply) does see
// the response without the request. It is for harnesses that, like
// proxy-wasm-go-sdk's emulator, let a test call any callback first
// (package wasmtest/proxytest).
func (s *HTTPStream) SkipRequestHeaders(h Headers, endStream bool) {
	s.t.Helper()
	s.begin("SkipRequestHeaders")
	if s.fc.ReqHeaders != nil {
		s.t.Fatalf("wasmtest: stream %d: SkipRequestHeaders after the request headers", s.id)
	}
	s.skip[filter.Request] = true
	s.SendRequestHeaders(h, endStream)
}

// SkipResponseHeaders is SkipRequestHeaders for the response: the
// response headers reach the client without proxy_on_response_headers,
// so the plugin's next response callback is a body or trailers.
func (s *HTTPStream) SkipResponseHeaders(h Headers, endStream bool) {
	s.t.Helper()
	s.begin("SkipResponseHeaders")
	if s.fc.RespHeaders != nil {
		s.t.Fatalf("wasmtest: stream %d: SkipResponseHeaders after the response headers", s.id)
	}
	s.skip[filter.Response] = true
	s.SendResponseHeaders(h, endStream)
}

// SendRequestBody delivers a chunk of the request body
// (proxy_on_request_body); endStream true marks the last chunk.
func (s *HTTPStream) SendRequestBody(chunk []byte, endStream bool) Result {
	s.t.Helper()
	s.begin("SendRequestBody")
	if s.fc.ReqHeaders == nil {
		s.t.Fatalf("wasmtest: stream %d: SendRequestBody before SendRequestHeaders", s.id)
	}
	s.info.RequestBodyBytes.Add(uint64(len(chunk)))
	r := s.feedData(filter.Request, chunk, endStream)
	s.drain()
	return r
}

// SendRequestTrailers delivers the request trailers
// (proxy_on_request_trailers); they end the request.
func (s *HTTPStream) SendRequestTrailers(t Headers) Result {
	s.t.Helper()
	s.begin("SendRequestTrailers")
	if s.fc.ReqHeaders == nil {
		s.t.Fatalf("wasmtest: stream %d: SendRequestTrailers before SendRequestHeaders", s.id)
	}
	s.fc.ReqTrailers = filter.NewHeaderMap(t...)
	r := s.feedTrailers(filter.Request, s.fc.ReqTrailers)
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
		s.failf("SendResponseHeaders: the upstream never received the request headers: %s", s.pausedWhy(filter.Request))
	case s.fc.RespHeaders != nil:
		s.t.Fatalf("wasmtest: stream %d: SendResponseHeaders called twice", s.id)
	}
	m := filter.NewHeaderMap(h...)
	s.info.ResponseHeaderBytes = uint64(m.ByteSize())
	s.last = Result{}
	s.fc.FeedHeaders(filter.Response, m, endStream)
	r := s.result()
	s.drain()
	return r
}

// SendResponseBody delivers a chunk of the upstream's response body
// (proxy_on_response_body).
func (s *HTTPStream) SendResponseBody(chunk []byte, endStream bool) Result {
	s.t.Helper()
	s.begin("SendResponseBody")
	if s.fc.RespHeaders == nil || s.localReplied {
		s.failf("SendResponseBody before SendResponseHeaders")
	}
	r := s.feedData(filter.Response, chunk, endStream)
	s.drain()
	return r
}

// SendResponseTrailers delivers the upstream's response trailers
// (proxy_on_response_trailers).
func (s *HTTPStream) SendResponseTrailers(t Headers) Result {
	s.t.Helper()
	s.begin("SendResponseTrailers")
	if s.fc.RespHeaders == nil || s.localReplied {
		s.failf("SendResponseTrailers before SendResponseHeaders")
	}
	s.fc.RespTrailers = filter.NewHeaderMap(t...)
	r := s.feedTrailers(filter.Response, s.fc.RespTrailers)
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
		s.fc.Stop(filter.Request)
		s.fc.Stop(filter.Response)
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
		for _, dir := range []filter.Direction{filter.Request, filter.Response} {
			if s.fc.Paused(dir) {
				when := "when it completed"
				if atCleanup {
					when = "when the test ended"
				}
				s.errorf("the %s was still paused %s: %s; in the proxy it would wait until the route timeout (504)",
					dirName(dir), when, s.pausedWhy(dir))
			}
		}
	}
	s.info.EndTime = time.Now()
	if s.p.stuck.Load() != nil {
		return
	}
	s.fc.Finish()
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
func (s *HTTPStream) RequestPaused() bool  { s.drain(); return s.fc.Paused(filter.Request) }
func (s *HTTPStream) ResponsePaused() bool { s.drain(); return s.fc.Paused(filter.Response) }

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
	dir := filter.Response
	if request {
		dir = filter.Request
	}
	deadline := time.Now().Add(s.p.set.timeout)
	for {
		s.drain()
		if !s.fc.Paused(dir) || s.localReplied || s.resetDetails != "" {
			return
		}
		wait := time.Until(deadline)
		if s.p.set.timeout > 0 && wait <= 0 {
			s.failf("the %s is still paused after %v: %s", dirName(dir), s.p.set.timeout, s.pausedWhy(dir))
			return
		}
		if s.p.set.timeout <= 0 {
			wait = time.Hour
		}
		select {
		case <-s.fc.Notify():
		case <-time.After(wait):
		}
	}
}

// --- driving the plugin through the engine ----------------------------------

func dirName(dir filter.Direction) string {
	if dir == filter.Request {
		return "request"
	}
	return "response"
}

// callbackName is the plugin callback for part ("headers", "body",
// "trailers") of dir.
func callbackName(dir filter.Direction, part string) string {
	return "proxy_on_" + dirName(dir) + "_" + part
}

func (s *HTTPStream) pausedWhy(dir filter.Direction) string {
	headers := s.fc.ReqHeaders
	if dir == filter.Response {
		headers = s.fc.RespHeaders
	}
	switch {
	case headers == nil:
		return "its headers were never sent"
	case s.localReplied:
		return fmt.Sprintf("the plugin answered with a local response %d", s.local.Status)
	case s.pausedBy[dir] != "":
		return s.pausedBy[dir] + " returned Pause and the plugin never resumed it (no proxywasm.Resume" + map[bool]string{true: "HttpRequest", false: "HttpResponse"}[dir == filter.Request] + ", no local response)"
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

// feedData and feedTrailers deliver what the test sends to the engine,
// unless the direction has ended (then the plugin is not called).
func (s *HTTPStream) feedData(dir filter.Direction, chunk []byte, end bool) Result {
	if s.complete || s.fc.Halted(dir) {
		return s.notCalled(callbackName(dir, "body"), "dropped: "+s.endedWhy())
	}
	s.last = Result{}
	// The engine owns what it is fed and the plugin may edit it in
	// place: the test's slice stays the test's.
	s.fc.FeedData(dir, bytes.Clone(chunk), end)
	return s.result()
}

func (s *HTTPStream) feedTrailers(dir filter.Direction, t *filter.HeaderMap) Result {
	if s.complete || s.fc.Halted(dir) {
		return s.notCalled(callbackName(dir, "trailers"), "dropped: "+s.endedWhy())
	}
	s.last = Result{}
	s.fc.FeedTrailers(dir, t)
	return s.result()
}

// result is the Result of the Send call that just fed the engine.
func (s *HTTPStream) result() Result {
	r := s.last
	r.s = s
	return r
}

// answered records a plugin callback's answer: Continue when the data
// went on (the answer continues and nothing halted the direction), else
// Pause, remembering which callback paused the direction.
func (s *HTTPStream) answered(dir filter.Direction, name, desc, status string, cont bool) {
	r := Result{Callback: name, Called: true, Status: status, Action: Pause}
	s.note("%s → %s", desc, status)
	if !s.fc.Halted(dir) {
		if cont {
			r.Action = Continue
		} else {
			s.pausedBy[dir] = name
		}
	}
	s.last = r
}

// pluginFactory makes the stream's pluginFilter.
type pluginFactory struct{ s *HTTPStream }

func (f pluginFactory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &pluginFilter{s: f.s, f: f.s.p.pluginFor(f.s.info.RouteName).NewStreamFilter(cb)}
}

// pluginFilter is the plugin's filter as the engine calls it: each call
// runs under the plugin's timeout (call), and its answer is traced and
// kept for the Send method's Result.
type pluginFilter struct {
	s *HTTPStream
	f filter.StreamFilter
}

func (pf *pluginFilter) DecodeHeaders(h *filter.HeaderMap, end bool) filter.HeadersStatus {
	return pf.headers(filter.Request, h, end)
}

func (pf *pluginFilter) EncodeHeaders(h *filter.HeaderMap, end bool) filter.HeadersStatus {
	return pf.headers(filter.Response, h, end)
}

func (pf *pluginFilter) DecodeData(b *filter.Buffer, end bool) filter.DataStatus {
	return pf.data(filter.Request, b, end)
}

func (pf *pluginFilter) EncodeData(b *filter.Buffer, end bool) filter.DataStatus {
	return pf.data(filter.Response, b, end)
}

func (pf *pluginFilter) DecodeTrailers(t *filter.HeaderMap) filter.TrailersStatus {
	return pf.trailers(filter.Request, t)
}

func (pf *pluginFilter) EncodeTrailers(t *filter.HeaderMap) filter.TrailersStatus {
	return pf.trailers(filter.Response, t)
}

func (pf *pluginFilter) OnLog() { pf.s.call("proxy_on_log", pf.f.OnLog) }

func (pf *pluginFilter) OnDestroy() { pf.s.call("proxy_on_done / proxy_on_delete", pf.f.OnDestroy) }

func (pf *pluginFilter) headers(dir filter.Direction, h *filter.HeaderMap, end bool) filter.HeadersStatus {
	s := pf.s
	name := callbackName(dir, "headers")
	desc := name
	if s.tracing() {
		desc = fmt.Sprintf("%s(%d headers, end_of_stream=%v)", name, h.Len(), end)
	}
	if s.skip[dir] {
		s.skip[dir] = false
		s.seen[dir].headers = h
		s.note("%s not called: the test skipped it", name)
		s.last = Result{s: s, Callback: name, Action: Continue, Status: "skipped"}
		return filter.HeadersContinue
	}
	var st filter.HeadersStatus
	s.call(desc, func() {
		if dir == filter.Request {
			st = pf.f.DecodeHeaders(h, end)
		} else {
			st = pf.f.EncodeHeaders(h, end)
		}
	})
	s.seen[dir].headers = h
	s.answered(dir, name, desc, headersStatusName(st), st == filter.HeadersContinue || st == filter.HeadersContinueAndEndStream)
	return st
}

func (pf *pluginFilter) data(dir filter.Direction, b *filter.Buffer, end bool) filter.DataStatus {
	s := pf.s
	name := callbackName(dir, "body")
	desc := name
	if s.tracing() {
		desc = fmt.Sprintf("%s(%d bytes, end_of_stream=%v)", name, b.Len(), end)
	}
	var st filter.DataStatus
	s.call(desc, func() {
		if dir == filter.Request {
			st = pf.f.DecodeData(b, end)
		} else {
			st = pf.f.EncodeData(b, end)
		}
	})
	s.seen[dir].body = append([]byte(nil), b.Bytes...)
	s.answered(dir, name, desc, dataStatusName(st), st == filter.DataContinue)
	return st
}

func (pf *pluginFilter) trailers(dir filter.Direction, t *filter.HeaderMap) filter.TrailersStatus {
	s := pf.s
	name := callbackName(dir, "trailers")
	desc := name
	if s.tracing() {
		desc = fmt.Sprintf("%s(%d trailers)", name, t.Len())
	}
	var st filter.TrailersStatus
	s.call(desc, func() {
		if dir == filter.Request {
			st = pf.f.DecodeTrailers(t)
		} else {
			st = pf.f.EncodeTrailers(t)
		}
	})
	s.seen[dir].trailers = t
	status := "Continue"
	if st != filter.TrailersContinue {
		status = "StopIteration"
	}
	s.answered(dir, name, desc, status, st == filter.TrailersContinue)
	return st
}

// streamHost is the stream as the engine's host and observer: what passes
// the plugin reaches the upstream (request) or the client (response), and
// what the engine decides lands in the trace.
type streamHost HTTPStream

func (h *streamHost) DeliverHeaders(dir filter.Direction, m *filter.HeaderMap, end bool) {
	s := (*HTTPStream)(h)
	msg := s.sink(dir)
	msg.Headers = m
	msg.Complete = end
	if dir == filter.Request {
		if s.tracing() {
			s.note("upstream ← request headers %s%s", formatPairs(m.Pairs()), endMark(end))
		}
		return
	}
	s.responseStarted = true
	if v, ok := m.Get(":status"); ok {
		s.info.ResponseCode, _ = strconv.Atoi(v)
	}
	if end {
		s.complete = true
	}
	if s.tracing() {
		s.note("client ← response headers %s%s", formatPairs(m.Pairs()), endMark(end))
	}
}

func (h *streamHost) DeliverData(dir filter.Direction, b []byte, end bool) {
	s := (*HTTPStream)(h)
	msg := s.sink(dir)
	msg.Body = append(msg.Body, b...)
	msg.Complete = msg.Complete || end
	who := "upstream ← request"
	if dir == filter.Response {
		who = "client ← response"
		s.info.ResponseBodyBytes.Add(uint64(len(b)))
		if end {
			s.complete = true
		}
	}
	if s.tracing() {
		s.note("%s body %s%s", who, quoteBody(b), endMark(end))
	}
}

func (h *streamHost) DeliverTrailers(dir filter.Direction, t *filter.HeaderMap) {
	s := (*HTTPStream)(h)
	msg := s.sink(dir)
	msg.Trailers = t
	msg.Complete = true
	who := "upstream ← request"
	if dir == filter.Response {
		who = "client ← response"
		s.complete = true
	}
	if s.tracing() {
		s.note("%s trailers %s", who, formatPairs(t.Pairs()))
	}
}

func (h *streamHost) SendLocalReply(status int, body []byte, headers []filter.Pair, details string) {
	(*HTTPStream)(h).sendLocalReply(status, body, headers, details)
}

func (h *streamHost) Reset(details string) { (*HTTPStream)(h).reset(details) }

// PauseSource: the trace says so at OverLimit. ResumeSource: the client
// (or upstream) would be read again.
func (h *streamHost) PauseSource(filter.Direction) {}

func (h *streamHost) ResumeSource(dir filter.Direction) {
	(*HTTPStream)(h).note("the plugin's buffer drained: the proxy reads from the %s again", sourceName(dir))
}

// BufferOverflow: the trace says so at OverLimit.
func (h *streamHost) BufferOverflow(filter.Direction) {}

func (h *streamHost) Done() bool { return h.complete }

func (h *streamHost) HeldData(dir filter.Direction, _, n int, stop filter.HeadersStatus) {
	s := (*HTTPStream)(h)
	s.note("%d body bytes held before the plugin (%s paused with %s)", n, s.pausedBy[dir], headersStatusName(stop))
	s.last = Result{Callback: callbackName(dir, "body"), Action: Pause,
		Status: "held: " + s.pausedBy[dir] + " paused the stream, so the body waits until the plugin resumes it"}
}

func (h *streamHost) HeldTrailers(dir filter.Direction, _ int) {
	s := (*HTTPStream)(h)
	s.note("trailers held before the plugin (%s paused)", s.pausedBy[dir])
	s.last = Result{Callback: callbackName(dir, "trailers"), Action: Pause, Status: "held: " + s.pausedBy[dir] + " paused the stream"}
}

func (h *streamHost) OverLimit(dir filter.Direction, _, held, limit int, watermark bool) {
	s := (*HTTPStream)(h)
	switch {
	case watermark:
		s.note("%d bytes held at the plugin, over the %d-byte limit: the proxy stops reading from the %s", held, limit, sourceName(dir))
	case dir == filter.Request:
		s.note("%d bytes buffered at the plugin, over the %d-byte limit: 413", held, limit)
	default:
		s.note("%d response bytes buffered at the plugin, over the %d-byte limit: 500", held, limit)
	}
}

func (h *streamHost) Continued(dir filter.Direction, _ int) {
	(*HTTPStream)(h).note("plugin resumed the %s", dirName(dir))
}

func (h *streamHost) LocalReplied(_, status int, body []byte, headers []filter.Pair, details string) {
	s := (*HTTPStream)(h)
	if s.local == nil {
		s.local = &LocalResponse{Status: status, Body: body, Headers: headers, Details: details}
		s.note("plugin sent local response %d %s (details %q)", status, quoteBody(body), details)
	}
}

// sourceName is where dir's data comes from.
func sourceName(dir filter.Direction) string {
	if dir == filter.Request {
		return "client"
	}
	return "upstream"
}

func (s *HTTPStream) sink(dir filter.Direction) *Message {
	if dir == filter.Request {
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
	s.info.ResponseCodeDetails = details
	s.client = Message{}
	s.fc.LocalReply(status, body, headers)
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
	s.fc.Stop(filter.Request)
	s.fc.Stop(filter.Response)
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

// drain applies queued actions until none is left. Only the test
// goroutine drains; actions queued while draining run in the same loop.
func (s *HTTPStream) drain() {
	if s.draining {
		return
	}
	s.draining = true
	defer func() { s.draining = false }()
	s.fc.Drain()
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
