package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/filterchain"
	"github.com/wasmproxy/wasmproxy/internal/http1"
	"github.com/wasmproxy/wasmproxy/tracing"
)

// stream is one HTTP request/response exchange. Its goroutine (the
// net/http handler goroutine) owns every field not marked otherwise and
// is the only one that calls filters, through the filter-chain engine fc;
// other goroutines (upstream I/O, plugins' asynchronous callbacks) talk
// to it through fc.Post and the channels.
type stream struct {
	cm *connManager
	// filterGen holds the filter factories this stream started with;
	// chain is the one of its chains the stream runs (http_filters, or
	// its upgrade's own: upgrade_configs[].filters).
	filterGen *filterGeneration
	chain     *filterList
	w         http.ResponseWriter
	r         downstreamRequest
	ctx       context.Context
	info      filter.StreamInfo

	// fc runs the HTTP filters and holds the header maps and the queue
	// of actions (filter callbacks, timeouts) applied between filter
	// calls; the stream is its host (chainHost).
	fc filterchain.HTTP

	// Downstream request body.
	body       chan bodyChunk
	bodyPaused bool
	bodyDone   bool

	// reqCtx is an HTTP/1 request's context (reqctx.go), made in its
	// stream so that it costs no allocation of its own.
	reqCtx requestContext
	// h2Cancel is an HTTP/2 stream's requestCancel (serveH2Stream): the
	// stream's context is reqCtx under x/net/http2's, and its timers,
	// its end and x/net/http2's cancellation all cancel through it.
	h2Cancel requestCancel
	// respValStore backs the values of an HTTP/2 response's header
	// (setNetHTTPResponseFields) when they fit.
	respValStore [8]string
	respValUsed  bool
	// reqHeaderStore and reqPairStore are the storage of an HTTP/1
	// request's header map and its first pairs (h1RequestHeaders): the
	// map is built in the stream's own allocation and lives and dies
	// with it; a request with more fields grows the map into an array
	// of its own.
	reqHeaderStore filter.HeaderMap
	reqPairStore   [inlineRequestPairs]filter.Pair
	// reqBodyStore holds a small request body read on the stream's
	// goroutine (syncBody) without an allocation of its own
	// (bodyread.go).
	reqBodyStore inlineBody

	up *upstreamRequest
	// upStore holds the stream's first upstream request (upUsed: taken),
	// so that it costs no allocation of its own.
	upStore upstreamRequest
	upUsed  bool

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
	// routeCleared: a filter cleared the route cache (ClearRouteCache,
	// possibly from a Wasm tick's goroutine) and the route was not
	// matched again yet.
	routeCleared atomic.Bool
	// routeWC is the weighted cluster picked for the route, nil when it
	// has none; random is the stream's random value that picked it.
	routeWC   *config.WeightedCluster
	random    uint64
	randomSet bool
	// retryTimer is the back-off before the next attempt (retry.go).
	retryTimer *time.Timer
	// retryHeld is the cluster whose retry circuit breaker holds this
	// stream's scheduled retry until its outcome is decided (retry.go).
	retryHeld *cluster
	// span is the request's server span; nil when not traced
	// (proxy/tracing.go).
	span *tracing.Span

	// origin is where the request came from (forwarding.go).
	origin requestOrigin
	// pathAction is what path normalization decided (pathnorm.go).
	pathAction pathAction
	// escaped, when not "", says how the stream may outlive its request
	// in a way its fields at the end no longer show: it is then never
	// recycled (recycle.go).
	escaped string
}

// downstreamRequest is what the stream needs of the client's request
// beyond its header map: the codec's framing and body. HTTP/1 fills it
// straight from internal/http1's parsed head; HTTP/2 from net/http's
// *http.Request (x/net/http2).
type downstreamRequest struct {
	// Body is the request body; nil or http.NoBody when there is none.
	Body io.ReadCloser
	// ContentLength is the body's length, -1 when unknown (chunked).
	ContentLength int64
	// Trailer, when not nil, gets the body's trailer fields once it
	// ended (the map, never the field, changes then).
	Trailer http.Header
	// Method is the request's method.
	Method string
	// Proto is "HTTP/1.0", "HTTP/1.1" or "HTTP/2"; ProtoMajor its major
	// version.
	Proto      string
	ProtoMajor int
}

// netHTTPRequest is the stream's view of a net/http request (HTTP/2).
func netHTTPRequest(r *http.Request) downstreamRequest {
	proto := r.Proto
	if r.ProtoMajor == 2 {
		proto = "HTTP/2"
	}
	return downstreamRequest{Body: r.Body, ContentLength: r.ContentLength, Trailer: r.Trailer,
		Method: r.Method, Proto: proto, ProtoMajor: r.ProtoMajor}
}

type bodyChunk struct {
	data []byte
	end  bool
	err  error
}

// syncBodyLimit is the largest request body read on the stream
// goroutine itself.
const syncBodyLimit = 64 << 10

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
	if !s.replyPathAction() { // pathnorm.go
		s.fc.FeedHeaders(filter.Request, s.fc.ReqHeaders, !hasBody)
	}
	s.fc.Drain()
	for !s.complete {
		if syncBody && !s.bodyDone && !s.bodyPaused && !s.fc.Stopped(filter.Request) && !s.fc.Pending() {
			if s.postTunnel() { // connect.go
				// The rest is a tunnel's: read on a goroutine, so that
				// the 200 goes out while the client holds it back.
				syncBody = false
				s.body = make(chan bodyChunk, 1)
				go readBody(s.ctx, s.r.Body, s.r.ContentLength-bodyRead, s.body)
				continue
			}
			data, err := readChunk(s.r.Body, s.r.ContentLength-bodyRead, &s.reqBodyStore)
			bodyRead += int64(len(data))
			c := bodyChunk{data: data, end: err == io.EOF || bodyRead >= s.r.ContentLength}
			if err != nil && err != io.EOF {
				c = bodyChunk{data: data, err: err}
			}
			s.onRequestBody(c)
			s.fc.Drain()
			continue
		}
		if up := s.up; up != nil && up.sync && !up.finished && !up.paused && !s.fc.Pending() {
			s.onUpstream(up.step())
			s.fc.Drain()
			continue
		}
		var bodyCh chan bodyChunk
		if s.body != nil && !s.bodyDone && !s.bodyPaused && !s.fc.Stopped(filter.Request) {
			bodyCh = s.body
		}
		var upCh chan upstreamEvent
		if s.up != nil {
			upCh = s.up.events
		}
		var timeoutCh, retryCh <-chan time.Time
		if s.timeout != nil {
			timeoutCh = s.timeout.C
		}
		if s.retryTimer != nil {
			retryCh = s.retryTimer.C
		}
		select {
		case <-s.fc.Notify():
		case c := <-bodyCh:
			s.onRequestBody(c)
		case ev := <-upCh:
			s.onUpstream(ev)
		case <-timeoutCh:
			s.onTimeout()
		case <-retryCh:
			s.retryNow()
		case <-s.ctx.Done():
			if !s.expiredTimeout() { // else its answer is queued
				s.reset("downstream_remote_disconnect")
			}
		}
		s.fc.Drain()
	}
}

func readBody(ctx context.Context, body io.Reader, contentLength int64, out chan<- bodyChunk) {
	var total int64
	for {
		remaining := int64(-1)
		if contentLength > 0 {
			remaining = contentLength - total
		}
		data, err := readChunk(body, remaining, nil)
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
			s.fc.FeedData(filter.Request, c.data, false)
			if !s.fc.Halted(filter.Request) {
				t := filter.NewHeaderMap()
				for k, vs := range s.r.Trailer {
					for _, v := range vs {
						t.Add(lowerKey(k), v)
					}
				}
				s.fc.FeedTrailers(filter.Request, t)
			}
			return
		}
	}
	s.fc.FeedData(filter.Request, c.data, c.end)
}

// chainHost is the stream as the filter-chain engine's host: the same
// object under another method set, so that the engine's names do not mix
// with the stream's own.
type chainHost stream

// DeliverHeaders, DeliverData and DeliverTrailers: what passed the
// filters goes to the router (request) or the client (response).
func (h *chainHost) DeliverHeaders(dir filter.Direction, m *filter.HeaderMap, end bool) {
	if dir == filter.Request {
		routerSink{(*stream)(h)}.headers(m, end)
	} else {
		downstreamSink{(*stream)(h)}.headers(m, end)
	}
}

func (h *chainHost) DeliverData(dir filter.Direction, b []byte, end bool) {
	if dir == filter.Request {
		routerSink{(*stream)(h)}.data(b, end)
	} else {
		downstreamSink{(*stream)(h)}.data(b, end)
	}
}

func (h *chainHost) DeliverTrailers(dir filter.Direction, t *filter.HeaderMap) {
	if dir == filter.Request {
		routerSink{(*stream)(h)}.trailers(t)
	} else {
		downstreamSink{(*stream)(h)}.trailers(t)
	}
}

func (h *chainHost) SendLocalReply(status int, body []byte, headers []filter.Pair, details string) {
	(*stream)(h).sendLocalReply(status, body, headers, details)
}

func (h *chainHost) Reset(details string) { (*stream)(h).reset(details) }

// PauseSource stops reading from a direction's source (watermark);
// ResumeSource reads again.
func (h *chainHost) PauseSource(dir filter.Direction) {
	if dir == filter.Request {
		h.bodyPaused = true
	} else if h.up != nil {
		h.up.paused = true
	}
}

func (h *chainHost) ResumeSource(dir filter.Direction) {
	if dir == filter.Request {
		h.bodyPaused = false
	} else if h.up != nil {
		h.up.paused = false
	}
}

// BufferOverflow: a filter buffered more than the limit; the engine
// answers 413 or 500.
func (h *chainHost) BufferOverflow(dir filter.Direction) {
	if dir == filter.Request {
		h.cm.stats.rqTooLarge.Inc()
	} else {
		h.cm.stats.rsTooLarge.Inc()
	}
}

func (h *chainHost) Done() bool { return h.complete }

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
	s.closeOnBadRequest(status) // h1close.go
	s.stopRequestTimer()
	if s.up != nil {
		s.up.cancel()
		s.up = nil
	}
	s.stopTimeout()
	s.info.ResponseCodeDetails = details
	status, body, headers = s.cm.localReplies.rewrite(&s.info, s.fc.ReqHeaders, status, body, headers) // localreply.go
	s.info.ResponseCode = status
	s.fc.LocalReply(status, body, headers)
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
	s.fc.Stop(filter.Request)
	s.fc.Stop(filter.Response)
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
		s.routeReply(http.StatusGatewayTimeout, []byte("upstream request timeout"), nil, "upstream_response_timeout")
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

// finish runs the end-of-stream hooks: access-log (OnLog) then
// OnDestroy on every filter, the connection manager's access logs,
// stats, and the abort of a reset stream.
func (s *stream) finish() {
	if r := recover(); r != nil {
		// A panic inside a filter or the proxy must not take the process
		// down; the stream is reset and the event logged.
		s.cm.log.Error("stream panicked", "panic", r)
		s.complete = true
		s.resetDetails = "internal_error"
	}
	if u := upgradeOf(s.ctx); u != nil {
		u.limits = s.tunnelLimits() // upgrade.go
	}
	s.stopTimers()
	s.stopTimeout()
	s.releaseRetry()
	// The end as StartTime plus the monotonic time since (one clock
	// read, not time.Now's two): %DURATION%, the spans' and the Wasm
	// duration are EndTime's Sub of StartTime (clock.go).
	if s.info.StartTime.IsZero() {
		s.info.EndTime = time.Now()
	} else {
		s.info.EndTime = s.info.StartTime.Add(time.Since(s.info.StartTime))
	}
	if s.up != nil {
		s.up.finishSpan(s.info.EndTime)
		s.up.cancel()
		s.up = nil
	}
	if s.info.ResponseCode == 0 && s.resetDetails != "" {
		s.info.ResponseCode = 0
	}
	s.finishSpan()
	s.fc.Finish()
	logAccess(s.cm.accessLogs, &s.info, s.fc.ReqHeaders, s.fc.RespHeaders, s.fc.RespTrailers)
	s.cm.countResponse(s.info.ResponseCode)
	if s.resetDetails != "" && s.resetDetails != "downstream_remote_disconnect" {
		// Aborting the handler closes an HTTP/1 connection or resets the
		// HTTP/2 stream: the client sees the reset.
		panic(http.ErrAbortHandler)
	}
}

// responseFieldsWriter is a response writer that takes the response's
// fields as header-map pairs rather than through Header() (the HTTP/1
// writer): pseudo-headers and hop-by-hop fields are its to skip, and
// server replaces any Server field ("" keeps the pairs').
type responseFieldsWriter interface {
	setResponseFields(pairs []filter.Pair, server string)
}

// downstreamSink writes the response to the client.
type downstreamSink struct{ s *stream }

func (d downstreamSink) headers(h *filter.HeaderMap, end bool) {
	s := d.s
	status := 0
	if v, ok := h.GetLower(":status"); ok {
		if n, err := strconv.Atoi(v); err == nil && (n >= 200 || n == http.StatusSwitchingProtocols && upgradeOf(s.ctx) != nil) && n <= 999 && len(v) == 3 {
			status = n
		}
	}
	if status == 0 {
		// A filter removed or corrupted :status (or asked for an
		// informational one as final): Envoy answers 502 rather than
		// crash or send garbage.
		s.cm.log.Warn("response :status invalid after filters")
		s.localReplied = false
		s.fc.Stop(filter.Response)
		s.fc.RespHeaders = nil
		s.writeFallbackReply(http.StatusBadGateway, "filter_removed_required_response_headers")
		return
	}
	if via := s.cm.cfg.Via; via != "" {
		appendVia(h, via)
	}
	server := s.cm.responseServer(h) // server_header_transformation
	s.passResponseKeys()             // headerkey.go
	if fw, ok := s.w.(responseFieldsWriter); ok {
		// HTTP/1: the pairs go to the wire as they are.
		fw.setResponseFields(h.Pairs(), server)
	} else {
		store := s.respValStore[:0]
		if s.respValUsed {
			store = nil
		}
		s.respValUsed = true
		setNetHTTPResponseFields(s.w.Header(), h.Pairs(), server, store)
	}
	if s.r.Method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified {
		end = true
	}
	s.info.ResponseCode = status
	s.responseStarted = true
	s.stopRequestTimer()
	s.touch()
	if s.fc.RespTrailers != nil || (s.up != nil && s.up.trailersAnnounced) {
		hdr := s.w.Header()
		for k := range s.upTrailerKeys() {
			hdr.Add("Trailer", k)
		}
	}
	s.w.WriteHeader(status)
	if end {
		s.complete = true
		return
	}
	if up := s.up; up != nil && up.route != nil && up.route.ConnectConfig != nil {
		if u := upstreamUpgradeOf(up.ctx); u != nil && u.post {
			// A terminated POST's 200 goes out before any byte of the
			// tunnel: its client waits for it (connect.go).
			if f, ok := s.w.(http.Flusher); ok {
				f.Flush()
			}
		}
	}
}

// setNetHTTPResponseFields puts a response's pairs into the header of a
// net/http response writer (HTTP/2): pseudo-headers and hop-by-hop
// fields are left out, and server, when not "", replaces any Server
// field (Envoy overwrites it with its own name by default). The values
// share one backing array, each key's slice capped at its own value
// (a second value of a key appends into a new array): one allocation
// for the values of a response rather than one per field, none when
// they fit in store (the stream's, used once: what a header references
// is never written again).
func setNetHTTPResponseFields(hdr http.Header, pairs []filter.Pair, server string, store []string) {
	n := 0
	for _, p := range pairs {
		if len(p.Key) > 0 && p.Key[0] != ':' && !isHopByHop(p.Key) {
			n++
		}
	}
	if server != "" {
		n++
	}
	vals := store[:0]
	if cap(vals) < n {
		vals = make([]string, 0, n)
	}
	for _, p := range pairs {
		if len(p.Key) == 0 || p.Key[0] == ':' || isHopByHop(p.Key) {
			continue
		}
		k := canonicalKey(p.Key)
		if server != "" && k == "Server" {
			continue
		}
		if vs, ok := hdr[k]; ok {
			hdr[k] = append(vs, p.Value)
			continue
		}
		i := len(vals)
		vals = append(vals, p.Value)
		hdr[k] = vals[i : i+1 : i+1]
	}
	if server != "" {
		i := len(vals)
		vals = append(vals, server)
		hdr["Server"] = vals[i : i+1 : i+1]
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

// newStream builds the stream for a request and its filters. ctx is
// the request's context; cancel, when not nil, cancels it (the stream
// then uses it as its own rather than deriving another). s is the
// stream to build when its caller made it first to build the request's
// header map in it (h1RequestHeaders; a new stream, or its connection's
// previous one cleared whole by recycle), or nil for a new one.
func (cm *connManager) newStream(s *stream, w http.ResponseWriter, r downstreamRequest, ctx context.Context, cancel context.CancelFunc, reqHeaders *filter.HeaderMap) *stream {
	if s == nil {
		s = new(stream)
	}
	s.cm, s.w, s.r, s.ctx = cm, w, r, ctx
	s.info.StartTime = time.Now()
	s.startTimers(cancel)
	s.info.Protocol = r.Proto
	s.info.ListenerName = cm.listener.Name
	if ci, ok := ctx.Value(connInfoKey{}).(*connInfo); ok {
		s.info.ConnectionID = ci.id
		s.info.DownstreamAddr = ci.remote
		s.info.LocalAddr = ci.local
		s.info.DownstreamTLS = ci.tls
	}
	s.fc.ReqHeaders = reqHeaders
	underscores := cm.underscoreHeaders(reqHeaders, r.ProtoMajor)                                      // before anything reads the headers, as Envoy's codec
	s.origin = cm.mutateRequestHeaders(reqHeaders, s.info.DownstreamAddr.Addr(), s.info.DownstreamTLS) // forwarding.go
	// An edge request's x-request-id is replaced (unless
	// preserve_external_request_id), as Envoy's mutateRequestHeaders.
	tracing.SetRequestID(reqHeaders, cm.cfg, s.origin.Edge)
	if cm.cfg.StripAnyHostPort || cm.cfg.StripMatchingHostPort {
		stripHostPort(s.fc.ReqHeaders, cm.cfg.StripMatchingHostPort, s.info.LocalAddr.Port())
	}
	s.pathAction = normalizePath(cm.cfg, s.fc.ReqHeaders) // pathnorm.go
	if underscores {
		s.pathAction = pathUnderscore
	}
	// The overload manager's stop_accepting_requests (overload.go).
	if cm.srv.overload.rejectRequest(cm) {
		s.pathAction = pathOverloaded
	}
	s.routeGen = cm.acquireRoutes()
	s.matchRouteInfo()
	s.checkUpgrade() // upgrade.go
	s.startSpan()
	s.filterGen = cm.acquireFilters()
	s.chain = s.filterGen.chain(upgradeOf(ctx)) // generation.go
	factories := s.chain.factories
	if s.pathAction != pathContinue {
		factories = nil // Envoy answers before it makes the filter chain
	}
	s.fc.Init((*chainHost)(s), nil, &s.info, factories, int(cm.listener.PerConnectionBufferLimitBytes), 1<<20)
	return s
}

// requestHeaderMap converts a net/http request (HTTP/2) into Envoy's
// header map with pseudo-headers first.
func requestHeaderMap(r *http.Request) *filter.HeaderMap {
	h := filter.NewHeaderMap()
	fillNetHTTPRequestHeaders(h, r)
	return h
}

// h2RequestHeaders builds an HTTP/2 request's header map in the stream's
// own storage, as h1RequestHeaders does for HTTP/1 (requestHeaderMap
// without an allocation of its own) and returns it. s is a new stream,
// not yet built (newStream).
func (s *stream) h2RequestHeaders(r *http.Request) *filter.HeaderMap {
	h := &s.reqHeaderStore
	h.SetStorage(s.reqPairStore[:])
	fillNetHTTPRequestHeaders(h, r)
	return h
}

// fillNetHTTPRequestHeaders adds a net/http request's pseudo-headers and
// fields to h (requestHeaderMap), growing it once for all of them.
func fillNetHTTPRequestHeaders(h *filter.HeaderMap, r *http.Request) {
	n := 4
	for _, vs := range r.Header {
		n += len(vs)
	}
	h.Grow(n + 2) // room for x-request-id and x-forwarded-proto
	h.AddLower(":authority", r.Host)
	path := r.RequestURI
	if path == "" {
		path = r.URL.RequestURI()
	}
	h.AddLower(":path", path)
	h.AddLower(":method", r.Method)
	h.AddLower(":scheme", requestScheme(overTLS(r)))
	for k, vs := range r.Header {
		lk := lowerKey(k)
		for _, v := range vs {
			h.Add(lk, v)
		}
	}
}

// h1RequestHeaderMap builds an HTTP/1 request's header map straight from
// the codec's parsed head, fields in the order received: no http.Header
// in between. The fields the codec consumed (Host, which is :authority;
// Transfer-Encoding, which is framing; an Expect: 100-continue it
// answers) are not passed on, as net/http's server did not either.
func h1RequestHeaderMap(head *http1.Request, tls bool) *filter.HeaderMap {
	h := filter.NewHeaderMapCap(len(head.Fields) + 6) // pseudo-headers, x-request-id, x-forwarded-proto
	fillH1RequestHeaders(h, head, tls)
	return h
}

// inlineRequestPairs is how many request header pairs a stream holds in
// its own allocation (reqPairStore): a request's fields, its four
// pseudo-headers, x-request-id and x-forwarded-proto.
const inlineRequestPairs = 14

// h1RequestHeaders builds the request's header map in the stream's own
// storage (h1RequestHeaderMap without an allocation of its own) and
// returns it. s is a new stream, or a recycled one cleared whole
// (recycle.go), not yet built (newStream).
func (s *stream) h1RequestHeaders(head *http1.Request, tls bool) *filter.HeaderMap {
	h := &s.reqHeaderStore
	h.SetStorage(s.reqPairStore[:])
	h.Grow(len(head.Fields) + 6) // beyond the storage: an array of its own
	fillH1RequestHeaders(h, head, tls)
	return h
}

// fillH1RequestHeaders adds an HTTP/1 request head's pseudo-headers and
// fields to h (h1RequestHeaderMap).
func fillH1RequestHeaders(h *filter.HeaderMap, head *http1.Request, tls bool) {
	h.AddLower(":authority", head.Authority)
	h.AddLower(":path", head.Path)
	h.AddLower(":method", head.Method)
	h.AddLower(":scheme", requestScheme(tls))
	for _, f := range head.Fields {
		k := lowerKey(f.Name)
		switch k {
		case "host", "transfer-encoding":
			continue
		case "expect":
			if head.ExpectContinue {
				continue
			}
		}
		h.AddLower(k, f.Value) // lowerKey: lower case
	}
}

func requestScheme(tls bool) string {
	if tls {
		return "https"
	}
	return "http"
}

var _ = config.CodecAuto
