package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/http1"
)

// stream is one HTTP request/response exchange. Its goroutine (the
// net/http handler goroutine) owns every field not marked otherwise and
// is the only one that calls filters; other goroutines (upstream I/O,
// plugins' asynchronous callbacks) talk to it through post and the
// channels.
type stream struct {
	cm *connManager
	// filterGen holds the filter factories this stream started with.
	filterGen *filterGeneration
	w         http.ResponseWriter
	r         *http.Request
	ctx       context.Context
	info      filter.StreamInfo

	filters   []filter.StreamFilter
	callbacks []*filterCallbacks
	dec, enc  chain

	reqHeaders, reqTrailers   *filter.HeaderMap
	respHeaders, respTrailers *filter.HeaderMap
	// Trailers a filter created from its last body callback; they follow
	// the body to the next hop.
	addedReqTrailers, addedRespTrailers bool

	// Actions posted by filters, applied between filter calls.
	mu      sync.Mutex
	pending []func()
	notify  chan struct{}

	// haltRequested is set the moment a filter asks for a local reply or
	// reset, so iteration stops before the action is applied.
	haltRequested atomic.Bool
	decodeHalted  bool
	encodeHalted  bool

	// Downstream request body.
	body       chan bodyChunk
	bodyPaused bool
	bodyDone   bool

	up *upstreamRequest

	localReplied    bool
	responseStarted bool
	complete        bool
	resetDetails    string
	// timeout is the route timeout, armed once the request is complete
	// (as Envoy's router does).
	timeout *time.Timer
	// timers are the connection manager's stream timeouts
	// (stream_timeouts.go).
	timers streamTimers

	// routeGen holds the routes and clusters this stream started with.
	routeGen *routeGeneration
	// The route last matched, and the request headers' version then.
	routeVH      *config.VirtualHost
	route        *config.Route
	routeVersion uint64
	routeMatched bool
}

type bodyChunk struct {
	data []byte
	end  bool
	err  error
}

// filterCallbacks is the filter.Callbacks of one filter on one stream.
type filterCallbacks struct {
	s     *stream
	index int
}

func (cb *filterCallbacks) Continue(dir filter.Direction) {
	s := cb.s
	s.post(func() {
		if dir == filter.Request {
			s.dec.resume(s.dec.position(cb.index))
		} else {
			s.enc.resume(s.enc.position(cb.index))
		}
	})
}

func (cb *filterCallbacks) SendLocalReply(status int, body []byte, headers []filter.Pair, details string) {
	s := cb.s
	s.haltRequested.Store(true)
	s.post(func() { s.sendLocalReply(status, body, headers, details) })
}

func (cb *filterCallbacks) Reset(details string) {
	s := cb.s
	s.haltRequested.Store(true)
	s.post(func() { s.reset(details) })
}

func (cb *filterCallbacks) RequestHeaders() *filter.HeaderMap   { return cb.s.reqHeaders }
func (cb *filterCallbacks) ResponseHeaders() *filter.HeaderMap  { return cb.s.respHeaders }
func (cb *filterCallbacks) RequestTrailers() *filter.HeaderMap  { return cb.s.reqTrailers }
func (cb *filterCallbacks) ResponseTrailers() *filter.HeaderMap { return cb.s.respTrailers }
func (cb *filterCallbacks) Info() *filter.StreamInfo            { return &cb.s.info }

func (cb *filterCallbacks) AddRequestTrailers() *filter.HeaderMap {
	s := cb.s
	if s.reqTrailers == nil {
		s.reqTrailers = filter.NewHeaderMap()
		s.addedReqTrailers = true
	}
	return s.reqTrailers
}

func (cb *filterCallbacks) AddResponseTrailers() *filter.HeaderMap {
	s := cb.s
	if s.respTrailers == nil {
		s.respTrailers = filter.NewHeaderMap()
		s.addedRespTrailers = true
	}
	return s.respTrailers
}

// post queues an action for the stream goroutine. Safe from any
// goroutine, including from inside a filter call.
func (s *stream) post(fn func()) {
	s.mu.Lock()
	s.pending = append(s.pending, fn)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// hasPending reports queued actions.
func (s *stream) hasPending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) > 0
}

// syncBodyLimit is the largest request body read on the stream
// goroutine itself.
const syncBodyLimit = 64 << 10

// drain runs queued actions until none is left.
func (s *stream) drain() {
	for {
		s.mu.Lock()
		fns := s.pending
		s.pending = nil
		s.mu.Unlock()
		if len(fns) == 0 {
			return
		}
		for _, fn := range fns {
			if s.complete {
				continue
			}
			fn()
		}
	}
}

// run drives the stream to its end: request headers in, then react to
// body chunks, upstream events and filter actions until the response is
// complete or the stream is reset.
func (s *stream) run() {
	defer s.finish()
	hasBody := s.r.Body != nil && s.r.Body != http.NoBody && s.r.ContentLength != 0
	// A small body of known length is nearly always already buffered by
	// the codec: reading it on this goroutine saves a goroutine and two
	// hand-offs per request. Larger or chunked bodies get a reader
	// goroutine so that the stream keeps reacting while the client sends.
	syncBody := hasBody && s.r.ContentLength > 0 && s.r.ContentLength <= syncBodyLimit
	if hasBody && !syncBody {
		s.body = make(chan bodyChunk, 1)
		go readBody(s.ctx, s.r.Body, s.r.ContentLength, s.body)
	}
	var bodyRead int64
	s.dec.start(s.reqHeaders, !hasBody)
	s.drain()
	for !s.complete {
		if syncBody && !s.bodyDone && !s.bodyPaused && !s.decodeHalted && !s.hasPending() {
			data, err := readChunk(s.r.Body, s.r.ContentLength-bodyRead)
			bodyRead += int64(len(data))
			c := bodyChunk{data: data, end: err == io.EOF || bodyRead >= s.r.ContentLength}
			if err != nil && err != io.EOF {
				c = bodyChunk{data: data, err: err}
			}
			s.onRequestBody(c)
			s.drain()
			continue
		}
		if up := s.up; up != nil && up.sync && !up.finished && !up.paused && !s.hasPending() {
			s.onUpstream(up.step())
			s.drain()
			continue
		}
		var bodyCh chan bodyChunk
		if s.body != nil && !s.bodyDone && !s.bodyPaused && !s.decodeHalted {
			bodyCh = s.body
		}
		var upCh chan upstreamEvent
		if s.up != nil {
			upCh = s.up.events
		}
		var timeoutCh <-chan time.Time
		if s.timeout != nil {
			timeoutCh = s.timeout.C
		}
		select {
		case <-s.notify:
		case c := <-bodyCh:
			s.onRequestBody(c)
		case ev := <-upCh:
			s.onUpstream(ev)
		case <-timeoutCh:
			s.onTimeout()
		case <-s.ctx.Done():
			if !s.expiredTimeout() { // else its answer is queued
				s.reset("downstream_remote_disconnect")
			}
		}
		s.drain()
	}
}

func readBody(ctx context.Context, body io.Reader, contentLength int64, out chan<- bodyChunk) {
	var total int64
	for {
		remaining := int64(-1)
		if contentLength > 0 {
			remaining = contentLength - total
		}
		data, err := readChunk(body, remaining)
		total += int64(len(data))
		end := err == io.EOF || (contentLength > 0 && total >= contentLength)
		var c bodyChunk
		switch {
		case err != nil && err != io.EOF:
			c = bodyChunk{data: data, err: err}
		case len(data) == 0 && !end:
			continue
		default:
			c = bodyChunk{data: data, end: end}
		}
		select {
		case out <- c:
		case <-ctx.Done():
			return
		}
		if c.end || c.err != nil {
			return
		}
	}
}

func (s *stream) onRequestBody(c bodyChunk) {
	s.touch()
	if c.err != nil {
		s.bodyDone = true
		if s.expiredTimeout() {
			return // the read was interrupted; the timeout's answer is queued
		}
		// A broken request body (bad chunked encoding, client gone) ends
		// the stream; before any response that is a 400.
		status, details := http.StatusBadRequest, "downstream_request_body_error"
		var ce *http1.Error
		if errors.As(c.err, &ce) {
			// Malformed chunked framing: the codec's status and details.
			status, details = ce.Status, ce.Details
			s.cm.stats.cxProtocolError.Inc()
		}
		if !s.responseStarted && !s.localReplied {
			s.sendLocalReply(status, []byte(http.StatusText(status)), nil, details)
		} else {
			s.reset(details)
		}
		return
	}
	s.info.RequestBodyBytes.Add(uint64(len(c.data)))
	if c.end {
		s.bodyDone = true
		if s.r.Trailer != nil && len(s.r.Trailer) > 0 {
			// Trailers are known only after the body's EOF.
			s.dec.feedData(c.data, false)
			if !s.decodeHalted && !s.haltRequested.Load() {
				t := filter.NewHeaderMap()
				for k, vs := range s.r.Trailer {
					for _, v := range vs {
						t.Add(lowerKey(k), v)
					}
				}
				s.reqTrailers = t
				s.dec.feedTrailers(t)
			}
			return
		}
	}
	s.dec.feedData(c.data, c.end)
}

// pauseSource stops reading from a direction's source (watermark).
func (s *stream) pauseSource(dir filter.Direction) {
	if dir == filter.Request {
		s.bodyPaused = true
	} else if s.up != nil {
		s.up.paused = true
	}
}

func (s *stream) unpauseSource(dir filter.Direction) {
	if dir == filter.Request {
		s.bodyPaused = false
	} else if s.up != nil {
		s.up.paused = false
	}
}

// bufferOverflow: a filter buffered more than the limit.
func (s *stream) bufferOverflow(dir filter.Direction) {
	s.haltRequested.Store(true)
	if dir == filter.Request {
		s.cm.stats.rqTooLarge.Inc()
		s.post(func() {
			s.sendLocalReply(http.StatusRequestEntityTooLarge, []byte("Payload Too Large"), nil, "request_payload_too_large")
		})
		return
	}
	s.cm.stats.rsTooLarge.Inc()
	s.post(func() {
		s.sendLocalReply(http.StatusInternalServerError, []byte("Internal Server Error"), nil, "response_payload_too_large")
	})
}

// sendLocalReply answers the client from the proxy: the reply passes
// through the response filters (fresh encode state), as in Envoy.
func (s *stream) sendLocalReply(status int, body []byte, headers []filter.Pair, details string) {
	if s.complete || s.localReplied {
		return
	}
	if s.responseStarted {
		s.reset(details)
		return
	}
	s.localReplied = true
	s.stopRequestTimer()
	s.haltRequested.Store(false)
	s.decodeHalted = true
	if s.up != nil {
		s.up.cancel()
		s.up = nil
	}
	s.stopTimeout()
	s.info.ResponseCodeDetails = details
	s.info.ResponseCode = status
	h := filter.NewHeaderMap(filter.Pair{Key: ":status", Value: itoa(status)})
	for _, p := range headers {
		h.Add(p.Key, p.Value)
	}
	if len(body) > 0 {
		if _, ok := h.Get("content-type"); !ok {
			h.Set("content-type", "text/plain")
		}
	}
	h.Set("content-length", strconv.Itoa(len(body)))
	s.respHeaders = h
	s.respTrailers = nil
	s.enc = s.newChain(filter.Response, s.enc.limit, downstreamSink{s})
	s.enc.start(h, len(body) == 0)
	if len(body) > 0 && !s.complete && !s.encodeHalted && !s.haltRequested.Load() {
		s.enc.feedData(body, true)
	}
}

// reset ends the stream abruptly.
func (s *stream) reset(details string) {
	if s.complete {
		return
	}
	if s.info.ResponseCodeDetails == "" {
		s.info.ResponseCodeDetails = details
	}
	s.resetDetails = details
	s.complete = true
	s.decodeHalted, s.encodeHalted = true, true
	if s.up != nil {
		s.up.cancel()
		s.up = nil
	}
	s.cm.stats.rqReset.Inc()
}

func (s *stream) stopTimeout() {
	if s.timeout != nil {
		s.timeout.Stop()
		s.timeout = nil
	}
}

func (s *stream) onTimeout() {
	s.timeout = nil
	if s.complete {
		return
	}
	if cl := s.upCluster(); cl != nil {
		cl.stats.rqTimeout.Inc()
	}
	if !s.responseStarted && (s.up == nil || !s.up.gotHeaders) {
		s.sendLocalReply(http.StatusGatewayTimeout, []byte("upstream request timeout"), nil, "upstream_response_timeout")
		return
	}
	s.reset("upstream_response_timeout")
}

func (s *stream) upCluster() *cluster {
	if s.up != nil {
		return s.up.cluster
	}
	return nil
}

func (s *stream) newChain(dir filter.Direction, limit int, out sink) chain {
	return chain{s: s, dir: dir, st: make([]filterState, len(s.filters)), out: out, limit: limit}
}

// finish runs the end-of-stream hooks: access-log (OnLog) then
// OnDestroy on every filter, stats, and the abort of a reset stream.
func (s *stream) finish() {
	if r := recover(); r != nil {
		// A panic inside a filter or the proxy must not take the process
		// down; the stream is reset and the event logged.
		s.cm.log.Error("stream panicked", "panic", r)
		s.complete = true
		s.resetDetails = "internal_error"
	}
	s.stopTimers()
	s.stopTimeout()
	if s.up != nil {
		s.up.cancel()
		s.up = nil
	}
	s.info.EndTime = time.Now()
	if s.info.ResponseCode == 0 && s.resetDetails != "" {
		s.info.ResponseCode = 0
	}
	for _, f := range s.filters {
		f.OnLog()
	}
	for _, f := range s.filters {
		f.OnDestroy()
	}
	s.cm.countResponse(s.info.ResponseCode)
	if s.resetDetails != "" && s.resetDetails != "downstream_remote_disconnect" {
		// Aborting the handler closes an HTTP/1 connection or resets the
		// HTTP/2 stream: the client sees the reset.
		panic(http.ErrAbortHandler)
	}
}

// downstreamSink writes the response to the client.
type downstreamSink struct{ s *stream }

func (d downstreamSink) headers(h *filter.HeaderMap, end bool) {
	s := d.s
	status := 0
	if v, ok := h.Get(":status"); ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 200 && n <= 999 && len(v) == 3 {
			status = n
		}
	}
	if status == 0 {
		// A filter removed or corrupted :status (or asked for an
		// informational one as final): Envoy answers 502 rather than
		// crash or send garbage.
		s.cm.log.Warn("response :status invalid after filters")
		s.localReplied = false
		s.encodeHalted = true
		s.respHeaders = nil
		s.writeFallbackReply(http.StatusBadGateway, "filter_removed_required_response_headers")
		return
	}
	hdr := s.w.Header()
	for _, p := range h.Pairs() {
		if len(p.Key) > 0 && p.Key[0] == ':' {
			continue
		}
		if isHopByHop(p.Key) {
			continue
		}
		k := canonicalKey(p.Key)
		hdr[k] = append(hdr[k], p.Value)
	}
	// Envoy overwrites the server header with its own name by default.
	hdr["Server"] = []string{s.cm.serverName}
	if s.r.Method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified {
		end = true
	}
	s.info.ResponseCode = status
	s.responseStarted = true
	s.stopRequestTimer()
	s.touch()
	if s.respTrailers != nil || (s.up != nil && s.up.trailersAnnounced) {
		for k := range s.upTrailerKeys() {
			hdr.Add("Trailer", k)
		}
	}
	s.w.WriteHeader(status)
	if end {
		s.complete = true
	}
}

// writeFallbackReply answers without running filters again, for when
// the filters themselves broke the response.
func (s *stream) writeFallbackReply(status int, details string) {
	if s.up != nil {
		s.up.cancel()
	}
	s.info.ResponseCodeDetails = details
	s.info.ResponseCode = status
	hdr := s.w.Header()
	clear(hdr)
	hdr["Server"] = []string{s.cm.serverName}
	hdr["Content-Length"] = []string{"0"}
	s.responseStarted = true
	s.w.WriteHeader(status)
	s.complete = true
}

func (s *stream) upTrailerKeys() map[string]struct{} {
	keys := map[string]struct{}{}
	if s.up != nil && s.up.resp != nil {
		for k := range s.up.resp.Trailer {
			keys[k] = struct{}{}
		}
	}
	return keys
}

func (d downstreamSink) data(b []byte, end bool) {
	s := d.s
	if end && s.addedRespTrailers && s.respTrailers != nil {
		d.data(b, false)
		if !s.complete {
			d.trailers(s.respTrailers)
		}
		return
	}
	if len(b) > 0 {
		s.touch()
		s.info.ResponseBodyBytes.Add(uint64(len(b)))
		if _, err := s.w.Write(b); err != nil {
			s.reset("downstream_remote_disconnect")
			return
		}
	}
	if end {
		s.complete = true
		return
	}
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (d downstreamSink) trailers(t *filter.HeaderMap) {
	s := d.s
	hdr := s.w.Header()
	for _, p := range t.Pairs() {
		hdr[http.TrailerPrefix+canonicalKey(p.Key)] = append(hdr[http.TrailerPrefix+canonicalKey(p.Key)], p.Value)
	}
	s.complete = true
}

// newStream builds the stream for a request and its filters.
func (cm *connManager) newStream(w http.ResponseWriter, r *http.Request) *stream {
	s := &stream{
		cm:     cm,
		w:      w,
		r:      r,
		ctx:    r.Context(),
		notify: make(chan struct{}, 1),
	}
	s.info.StartTime = time.Now()
	s.startTimers()
	s.info.Protocol = r.Proto
	if r.ProtoMajor == 2 {
		s.info.Protocol = "HTTP/2"
	}
	s.info.ListenerName = cm.listener.Name
	if ci, ok := r.Context().Value(connInfoKey{}).(*connInfo); ok {
		s.info.ConnectionID = ci.id
		s.info.DownstreamAddr = ci.remote
		s.info.LocalAddr = ci.local
		s.info.DownstreamTLS = ci.tls
	}
	s.reqHeaders = requestHeaderMap(r)
	s.routeGen = cm.acquireRoutes()
	s.matchRouteInfo()
	s.filterGen = cm.acquireFilters()
	factories := s.filterGen.factories
	s.filters = make([]filter.StreamFilter, len(factories))
	s.callbacks = make([]*filterCallbacks, len(factories))
	for i, f := range factories {
		cb := &filterCallbacks{s: s, index: i}
		s.callbacks[i] = cb
		s.filters[i] = f.NewStreamFilter(cb)
	}
	limit := int(cm.listener.PerConnectionBufferLimitBytes)
	s.dec = s.newChain(filter.Request, limit, routerSink{s})
	s.enc = s.newChain(filter.Response, 1<<20, downstreamSink{s})
	return s
}

// requestHeaderMap converts a net/http request into Envoy's header map
// with pseudo-headers first.
func requestHeaderMap(r *http.Request) *filter.HeaderMap {
	h := filter.NewHeaderMap()
	h.Add(":authority", r.Host)
	path := r.RequestURI
	if path == "" {
		path = r.URL.RequestURI()
	}
	h.Add(":path", path)
	h.Add(":method", r.Method)
	scheme := "http"
	if overTLS(r) {
		scheme = "https"
	}
	h.Add(":scheme", scheme)
	for k, vs := range r.Header {
		lk := lowerKey(k)
		for _, v := range vs {
			h.Add(lk, v)
		}
	}
	return h
}

var _ = config.CodecAuto
