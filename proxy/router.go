package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/http1"
	"github.com/wasmproxy/wasmproxy/tracing"
)

// routerSink is the end of the request direction: Envoy's router filter.
// It takes the route matched before the filters (or again after a filter
// cleared the route cache: callout.go's ClearRouteCache), answers
// direct responses, and otherwise forwards to the cluster.
type routerSink struct{ s *stream }

func (rs routerSink) headers(h *filter.HeaderMap, end bool) {
	s := rs.s
	if reason := invalidRequestHeaders(h); reason != "" {
		// A filter removed or corrupted what the request needs; Envoy
		// answers 503 with these details instead of forwarding garbage.
		s.cm.log.Warn("request headers invalid after filters", "reason", reason)
		s.sendLocalReply(http.StatusServiceUnavailable, nil, nil, "filter_removed_required_request_headers{"+reason+"}")
		return
	}
	// The route matched when the stream began stands unless a filter
	// cleared the route cache since (ClearRouteCache, which matched it
	// again): a native filter's edit of the headers does not, as in
	// Envoy, so a request is not routed past the route a filter before
	// it (RBAC, ext_authz) decided on.
	if cleared := s.routeCleared.Swap(false); !s.routeMatched || h != s.fc.ReqHeaders || cleared {
		s.matchRouteInfo()
	}
	route := s.route
	if route == nil {
		s.cm.stats.noRoute.Inc()
		s.sendLocalReply(http.StatusNotFound, nil, nil, "route_not_found")
		return
	}
	if dr := route.DirectResponse; dr != nil {
		s.routeReply(dr.Status, dr.Body, nil, "direct_response")
		return
	}
	if rd := route.Redirect; rd != nil {
		s.routeReply(rd.Status, nil, []filter.Pair{{Key: "location", Value: redirectLocation(rd, route, h)}}, "direct_response")
		return
	}
	cl := s.routeGen.clusters.m[s.routeClusterName()]
	if cl == nil {
		s.sendLocalReply(http.StatusServiceUnavailable, nil, nil, "cluster_not_found")
		return
	}
	cl.stats.rqTotal.Inc()
	var hash uint64
	var hasHash bool
	var setCookie string
	if len(route.HashPolicy) > 0 {
		hash, hasHash, setCookie = requestHash(route.HashPolicy, h, &s.info)
	}
	ep := cl.pickHash(hash, hasHash)
	if ep == nil {
		cl.stats.noHealthy.Inc()
		s.routeReply(http.StatusServiceUnavailable, []byte("no healthy upstream"), nil, "no_healthy_upstream")
		return
	}
	up := &s.upStore
	if s.upUsed {
		up = new(upstreamRequest) // never reuse one an exchange may still hold
		// The first may still be held by its exchange, and this one
		// points at the stream (recycle.go).
		s.escaped = "second upstream request"
	}
	s.upUsed = true
	up.s, up.cluster, up.endpoint, up.route = s, cl, ep, route
	up.vh, up.wc = s.routeVH, s.routeWC
	up.hash, up.hasHash, up.setCookie = hash, hasHash, setCookie
	up.retry, up.attempt = route.RetryPolicy, 1
	if up.retry == nil && up.vh != nil {
		up.retry = up.vh.RetryPolicy
	}
	up.bufLimit = s.retryShadowLimit(route, up.vh) // retry.go
	s.info.UpstreamAddr = ep.address
	// Envoy's router edits the request headers last, after every filter,
	// just before they go upstream (finalizeRequestHeaders).
	s.applyRequestHeaders(h, up.vh, route, up.wc)
	rewriteRequest(h, route, ep)
	s.routeVersion = h.Version()
	// The shadows copy the request as it goes upstream (proxy/mirror.go).
	up.mirror = s.startMirrors(route, h)
	// The upstream request dies with the downstream one: a client that
	// resets its stream must not leave an exchange running upstream. An
	// exchange on its own goroutine (send) gets a cancellable layer of
	// its own when it starts; one the stream goroutine drives itself
	// (sendSync: the request is complete at its headers, or its whole
	// body came at once) runs on the stream's context, and its
	// deadline is the pool connection's or a context layer
	// (beginAttempt).
	up.ctx = s.ctx
	if cl.tls != nil {
		// The transport does not report the TLS state of a connection it
		// did not wrap itself; the trace hands us the pooled connection
		// so upstream.* TLS properties can be answered.
		local := cl.tls.local
		up.ctx = httptrace.WithClientTrace(up.ctx, &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			conn := info.Conn
			if cc, ok := conn.(*countedConn); ok {
				conn = cc.Conn
			}
			if tc, ok := conn.(*tls.Conn); ok {
				up.tlsInfo = tlsInfo(tc.ConnectionState(), local)
			}
		}})
	}
	if up.vh != nil && up.vh.IncludeRequestAttemptCount {
		h.SetLower("x-envoy-attempt-count", "1")
	}
	u := upgradeOf(s.ctx)
	if u == nil && route.ConnectConfig != nil && route.ConnectConfig.AllowPost {
		u = postTunnel(h) // connect.go
	}
	if u != nil {
		up.upgrade = true // an upgrade or a tunnel is never retried
		// Only the routed request carries the upgrade to the pool, not
		// a callout made with the stream's context.
		up.ctx = context.WithValue(up.ctx, upstreamUpgradeKey{}, u)
		u.terminate = u.connect && route.ConnectConfig != nil // connect.go
		u.proxyHeader = connectProxyHeader(u, route, &s.info) // connect.go
	}
	up.startSpan(h)
	up.req = buildUpstreamRequest(up.ctx, h, ep.address, &up.line)
	if u != nil && u.connect {
		connectTarget(up.req) // connect.go
	}
	s.up = up
	// The fields go upstream as they are now. A request whose body is
	// still to come is sent later, so it keeps a copy of the pairs (the
	// strings are shared): a filter that edits the header map from here
	// on does not change what goes upstream, as before.
	up.head = upstreamHead{pairs: h.Pairs(), timeout: route.Timeout.D(), cancel: s.requestCancel(), exch: &up.exch}
	up.head.scheme, _ = h.GetLower(":scheme")
	if len(cl.upstreamFilters) > 0 {
		s.startUpstreamFiltered(up, h, end) // upstream_filters.go
		return
	}
	if !end {
		up.head.pairs = append(up.headPairs[:0:len(up.headPairs)], up.head.pairs...)
	}
	if end {
		s.stopRequestTimer()
		up.mirror.send(s, nil)
		up.req.Body = http.NoBody
		up.req.ContentLength = 0
		up.sendSync(route.Timeout.D())
		return
	}
	if s.r.Trailer != nil || s.r.ContentLength < 0 {
		// Trailers may follow a body of unknown length (chunked or
		// HTTP/2), announced or not; an empty map tells the transport to
		// send whatever it holds once the body ends.
		up.req.Trailer = http.Header{}
	}
	if u != nil && u.post {
		// A terminated POST's connection opens at its headers, as
		// Envoy's TCP pool connects then: a tunnelling client waits for
		// the 200 before it sends (connect.go).
		up.body = newChunkReader()
		up.body.drainOnClose = true
		up.req.Body, up.req.ContentLength = up.body, -1
		up.send()
	}
}

func (rs routerSink) data(b []byte, end bool) {
	s := rs.s
	up := s.up
	if up == nil {
		return
	}
	if !s.retryBuffer(up, len(b)) {
		return // overflowed while no attempt is in flight: answered 507
	}
	if up.filtered != nil {
		s.upstreamFilteredData(up, b, end)
		return
	}
	up.mirror.add(b)
	if end {
		up.mirror.send(s, nil)
	}
	if !up.started {
		if end && up.req.Trailer == nil {
			// The whole body is here: send it with a content-length, no
			// streaming machinery.
			s.stopRequestTimer()
			up.reqEnded = true
			up.wholeBody = sliceReader{b: b}
			up.req.Body = &up.wholeBody
			up.bodyBytes = b
			up.req.ContentLength = int64(len(b))
			up.req.GetBody = nil
			up.sendSync(up.route.Timeout.D())
			return
		}
		up.body = newChunkReader()
		up.req.Body = up.body
		if cl, ok := s.fc.ReqHeaders.GetLower("content-length"); ok {
			if n, err := strconv.ParseInt(cl, 10, 64); err == nil {
				up.req.ContentLength = n
			}
		} else {
			up.req.ContentLength = -1
		}
		up.streamed = !up.upgrade
		up.send()
	}
	up.keepForRetry(b)
	if end {
		up.reqEnded = true
	}
	if s.retryTimer == nil { // else no attempt is in flight (back-off)
		up.body.push(b, end)
	}
	if end {
		s.requestComplete()
	}
}

// requestComplete: the whole request went to the upstream (streaming
// mode). request_timeout stops and the route timeout starts, as in
// Envoy, so that a slow upload is not cut by the route timeout.
func (s *stream) requestComplete() {
	s.stopRequestTimer()
	if t := s.up.route.Timeout.D(); t > 0 && s.timeout == nil {
		s.timeout = time.NewTimer(t)
	}
	s.startStreamedPerTry(s.up) // retry.go
}

func (rs routerSink) trailers(t *filter.HeaderMap) {
	s := rs.s
	up := s.up
	if up == nil {
		return
	}
	if up.filtered != nil {
		s.upstreamFilteredTrailers(up, t)
		return
	}
	if !up.started {
		up.body = newChunkReader()
		up.req.Body = up.body
		up.req.ContentLength = -1
		if up.req.Trailer == nil {
			up.req.Trailer = http.Header{}
		}
		up.streamed = !up.upgrade
		up.send()
	}
	up.reqEnded = true
	// A request already on its way with a content-length has no place
	// for trailers (HTTP/1.1 carries them only after a chunked body).
	if up.req.Trailer != nil {
		trailers := make(http.Header, t.Len())
		for _, p := range t.Pairs() {
			k := canonicalKey(p.Key)
			trailers[k] = append(trailers[k], p.Value)
		}
		if up.retry != nil && !up.abandoned {
			up.replayTrailers = trailers
		}
		if s.retryTimer == nil {
			up.body.setTrailers(up.req.Trailer, trailers)
		}
	}
	up.mirror.send(s, t.Clone())
	if s.retryTimer == nil {
		up.body.push(nil, true)
	}
	s.requestComplete()
}

// upstreamRequest is the router's request to one endpoint. Its I/O runs
// on its own goroutine, which reports to the stream through events.
type upstreamRequest struct {
	// tlsInfo describes the upstream connection's TLS session; written by
	// the transport's GotConn trace before the response is reported.
	tlsInfo *filter.TLSInfo

	s        *stream
	cluster  *cluster
	endpoint *endpoint
	route    *config.Route
	vh       *config.VirtualHost
	wc       *config.WeightedCluster // nil unless weighted_clusters
	// mirror is the request's shadows (nil: none).
	mirror *mirror
	// filtered is set when the cluster has upstream HTTP filters
	// (upstream_filters.go).
	filtered *upstreamFiltered
	// span is the current attempt's client span (nil unless
	// spawn_upstream_span or start_child_span); spanStatus its response
	// code (proxy/tracing.go).
	span       *tracing.Span
	spanStatus int

	// hash is the route's hash_policy result for hash-based load
	// balancers (hasHash: one was produced); setCookie a Set-Cookie the
	// cookie policy generated, added to the upstream's response.
	hash      uint64
	hasHash   bool
	setCookie string
	// Retries (retry.go) of a synchronous exchange: the policy (nil:
	// none), the request body to send again, the attempt number (1 for
	// the first), the route deadline across attempts, and the context
	// every attempt derives from.
	retry     *config.RetryPolicy
	bodyBytes []byte
	attempt   int
	deadline  time.Time
	baseCtx   context.Context
	// A streamed request (streamed: its body was not complete when the
	// first attempt started) is retried from the retry buffer
	// (retry.go): the body chunks the router forwarded so far (replay,
	// bufLen bytes counted against bufLimit, Envoy's
	// retry_shadow_buffer_limit) and its trailers; abandoned once the
	// buffer overflowed; reqEnded once the router has the whole request.
	// upgrade: an upgrade or a tunnel, never retried.
	streamed       bool
	reqEnded       bool
	abandoned      bool
	upgrade        bool
	replay         [][]byte
	replayTrailers http.Header
	bufLen         int64
	bufLimit       int64
	// perTryTimer is a streamed attempt's per_try_timeout (retry.go);
	// perTryFired: it ended the attempt.
	perTryTimer *time.Timer
	perTryFired bool
	// The cluster's max_stream_duration (maxduration.go): msdTimer ends
	// a streamed attempt, msdAt a synchronous one (its deadline; zero:
	// none); msdFired: it ended the attempt.
	msdTimer *time.Timer
	msdAt    time.Time
	msdFired bool
	// attemptCancel ends the current attempt's deadline context.
	attemptCancel context.CancelFunc
	req           *http.Request
	line          upstreamRequestLine // the first attempt's req and URL
	wholeBody     sliceReader         // the first attempt's body known in full
	head          upstreamHead
	resp          *http.Response
	body          *chunkReader
	ctx           context.Context
	cancelFn      context.CancelFunc
	events        chan upstreamEvent // nil until send: a synchronous exchange has none
	start         time.Time

	started           bool
	sync              bool // the stream goroutine drives the exchange
	finished          bool // sync: the exchange is over
	syncResp          *http.Response
	read              int64 // sync: response body bytes read
	gotHeaders        bool
	paused            bool
	trailersAnnounced bool
	cancelOnce        sync.Once
	// exch holds the response of the pool's first exchange for this
	// request (upstreamHead.exch).
	exch h1Exchange
	// headPairs is the storage of head.pairs' copy for a request whose
	// body is still to come at its headers (up to inlineRequestPairs;
	// more go into an array of their own): written once, when the
	// request's headers go upstream, and read by its exchanges.
	headPairs [inlineRequestPairs]filter.Pair
	// respBodyStore holds a small response body read by step (the
	// synchronous exchange, on the stream's goroutine) without an
	// allocation of its own (bodyread.go).
	respBodyStore inlineBody
}

// upstreamEvent is one thing that happened upstream: the response
// headers (resp), a body chunk, the end with trailers, or an error.
type upstreamEvent struct {
	resp *http.Response
	data []byte
	end  bool
	err  error
}

func (up *upstreamRequest) send() {
	// The exchange runs on its own goroutine while the stream goes on:
	// it gets an http.Header of its own.
	up.materializeHeader()
	if up.baseCtx == nil {
		up.baseCtx = up.ctx // what a retry's attempt derives from
	}
	up.ctx, up.cancelFn = context.WithCancel(up.baseCtx)
	up.req = up.req.WithContext(up.ctx)
	up.events = make(chan upstreamEvent, 1)
	up.started = true
	up.start = monoNow() // measured from, never formatted (clock.go)
	up.endpoint.active.Add(1)
	up.endpoint.rqTotal.Add(1)
	up.s.startMaxDuration(up) // maxduration.go
	// The attempt's goroutine gets what it works on as arguments: a
	// retry replaces the upstreamRequest's fields while an abandoned
	// attempt may still be winding down.
	go roundTrip(up.cluster.transport, up.endpoint, up.req, up.ctx, up.events)
}

// sendSync starts a request whose body is complete in the synchronous
// mode: the stream goroutine itself performs the exchange one step at a
// time (see step), which spares the goroutine and channel hand-offs of
// the general path. The route timeout is then a deadline (beginAttempt).
func (up *upstreamRequest) sendSync(timeout time.Duration) {
	up.started = true
	up.sync = true
	// Measured from (route deadline, service time), never formatted:
	// the monotonic clock alone (clock.go).
	up.start = monoNow()
	if timeout > 0 {
		up.deadline = up.start.Add(timeout)
	}
	up.baseCtx = up.ctx
	if up.cluster.pool == nil || up.cluster.transport != http.RoundTripper(up.cluster.pool) {
		up.materializeHeader() // another transport reads req.Header
	}
	up.beginAttempt()
}

// beginAttempt starts one synchronous attempt: it ends at the route
// deadline or the retry policy's per_try_timeout, the earlier; the
// pool's connection deadline (upstreamHead.deadline) when the pool
// writes the head's pairs, else the attempt's context.
func (up *upstreamRequest) beginAttempt() {
	up.endpoint.active.Add(1)
	up.endpoint.rqTotal.Add(1)
	d := up.deadline
	if up.retry != nil && up.retry.PerTryTimeout > 0 {
		if t := time.Now().Add(up.retry.PerTryTimeout.D()); d.IsZero() || t.Before(d) {
			d = t
		}
	}
	up.msdAt = time.Time{}
	if m := up.maxStreamDuration(); m > 0 { // maxduration.go
		if t := up.start.Add(m); d.IsZero() || !d.Before(t) {
			d, up.msdAt = t, t
		}
	}
	if d.IsZero() {
		return
	}
	if up.req.Header == nil {
		// The pool's exchange from the head's pairs: the deadline goes
		// on its connection (SetDeadline), no context layer per attempt.
		up.head.deadline = d
		return
	}
	if up.attemptCancel != nil {
		up.attemptCancel() // the previous attempt's deadline
	}
	up.head.deadline = time.Time{}
	ctx, cancel := context.WithDeadline(up.baseCtx, d)
	up.attemptCancel = cancel
	up.ctx = ctx
	up.req = up.req.WithContext(ctx)
}

// step performs the next blocking action of a synchronous exchange: the
// round trip, then one body read per call.
func (up *upstreamRequest) step() upstreamEvent {
	if up.resp == nil {
		resp, err := up.transportRoundTrip()
		if err != nil {
			up.finish()
			up.endpoint.rqError.Add(1)
			return upstreamEvent{err: err}
		}
		up.syncResp = resp
		return upstreamEvent{resp: resp}
	}
	resp := up.resp
	remaining := int64(-1)
	if resp.ContentLength >= 0 {
		remaining = resp.ContentLength - up.read
	}
	data, err := readChunk(resp.Body, remaining, &up.respBodyStore)
	up.read += int64(len(data))
	end := err == io.EOF || (resp.ContentLength >= 0 && up.read >= resp.ContentLength && len(resp.Trailer) == 0)
	if err != nil && err != io.EOF {
		up.finish()
		return upstreamEvent{data: data, err: err}
	}
	if end {
		if len(resp.Trailer) > 0 && err != io.EOF {
			// Trailers are only known after EOF.
			_, _ = io.Copy(io.Discard, resp.Body)
		}
		up.finish()
	}
	return upstreamEvent{data: data, end: end}
}

// finish releases a synchronous exchange's resources once.
func (up *upstreamRequest) finish() {
	if up.finished {
		return
	}
	up.finished = true
	up.endpoint.active.Add(-1)
	if up.syncResp != nil {
		up.syncResp.Body.Close()
	}
}

func (up *upstreamRequest) cancel() {
	up.cancelOnce.Do(func() {
		if up.perTryTimer != nil {
			up.perTryTimer.Stop()
		}
		up.stopMaxDuration()
		up.finishUpstreamFilters()
		if up.attemptCancel != nil {
			up.attemptCancel()
		}
		if up.cancelFn != nil { // nil: the stream's context, no layer of its own
			up.cancelFn()
		}
		if up.sync {
			up.finish()
		}
		if up.body != nil {
			up.body.close()
		}
	})
}

// emit reports ev to the stream unless the attempt's ctx ended.
func emit(ctx context.Context, events chan<- upstreamEvent, ev upstreamEvent) bool {
	select {
	case events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// roundTrip performs one streamed attempt on its own goroutine.
func roundTrip(transport http.RoundTripper, ep *endpoint, req *http.Request, ctx context.Context, events chan<- upstreamEvent) {
	defer ep.active.Add(-1)
	resp, err := transport.RoundTrip(req)
	if err != nil {
		ep.rqError.Add(1)
		emit(ctx, events, upstreamEvent{err: err})
		return
	}
	defer resp.Body.Close()
	if !emit(ctx, events, upstreamEvent{resp: resp}) {
		return
	}
	var total int64
	for {
		remaining := int64(-1)
		if resp.ContentLength >= 0 {
			remaining = resp.ContentLength - total
		}
		data, err := readChunk(resp.Body, remaining, nil)
		total += int64(len(data))
		end := err == io.EOF || (resp.ContentLength >= 0 && total >= resp.ContentLength && len(resp.Trailer) == 0)
		if err != nil && err != io.EOF {
			emit(ctx, events, upstreamEvent{data: data, err: err})
			return
		}
		if len(data) == 0 && !end {
			continue
		}
		if !emit(ctx, events, upstreamEvent{data: data, end: end}) || end {
			return
		}
	}
}

// onUpstream handles an upstream event on the stream goroutine.
func (s *stream) onUpstream(ev upstreamEvent) {
	up := s.up
	s.touch()
	if ev.err != nil && s.expiredTimeout() {
		return // cancelled by a stream timeout, whose answer is queued
	}
	if ev.resp != nil {
		up.cluster.countResponse(ev.resp.StatusCode)
		up.spanStatus = ev.resp.StatusCode

		up.cluster.reportResponse(up.endpoint, ev.resp.StatusCode)
	} else if ev.err != nil && !up.gotHeaders {
		up.cluster.reportError(up.endpoint, ev.err, up.expired())
	}
	// A response passes the upstream filters before the router decides
	// on a retry (upstream_filters.go).
	if ev.err != nil && up.maxDurationExpired() {
		s.upstreamMaxDurationReached(up) // maxduration.go
		return
	}
	if (up.sync || up.streamed) && up.retry != nil && (ev.resp == nil || up.upstreamChain() == nil) && s.maybeRetry(ev) {
		return
	}
	switch {
	case ev.err != nil && up.expired() && up.perTryExpired():
		up.cluster.stats.rqPerTryTimeout.Inc()
		s.routeReply(http.StatusGatewayTimeout, []byte("upstream request timeout"), nil, "upstream_per_try_timeout")
	case ev.err != nil && up.expired():
		// The synchronous path enforces the route timeout by deadline.
		s.stopTimeout()
		s.onTimeout()
	case ev.err != nil && !up.gotHeaders:
		s.stopTimeout()
		if up.ctx.Err() != nil {
			return
		}
		reason, detail := upstreamResetReason(ev.err)
		s.routeReply(http.StatusServiceUnavailable,
			[]byte("upstream connect error or disconnect/reset before headers. reset reason: "+reason),
			nil, "upstream_reset_before_response_started{"+detail+"}")
	case ev.err != nil:
		s.reset("upstream_reset_after_response_started")
	case ev.resp != nil:
		up.gotHeaders = true
		up.resp = ev.resp
		// Envoy knows the response code from the upstream's :status, so
		// response.code is readable in on_response_headers.
		s.info.ResponseCode = ev.resp.StatusCode
		s.info.ResponseCodeDetails = "via_upstream" // as Envoy's router: %RESPONSE_CODE_DETAILS%, response.code_details
		if up.tlsInfo != nil {
			s.info.UpstreamTLS = up.tlsInfo
		}
		h := responseHeaderMap(ev.resp)
		h.SetLower("x-envoy-upstream-service-time", strconv.FormatInt(time.Since(up.start).Milliseconds(), 10))
		if up.setCookie != "" {
			h.AddLower("set-cookie", up.setCookie)
		}
		if up.upstreamChain() == nil { // else once the upstream filters ran (upstream_filters.go)
			s.applyResponseHeaders(h, up.vh, up.route, up.wc)
		}
		end := ev.resp.ContentLength == 0 && len(ev.resp.Trailer) == 0
		if end {
			s.stopTimeout()
		}
		s.feedResponseHeaders(h, end)
	default:
		if ev.end {
			s.stopTimeout()
			up.stopMaxDuration()
		}
		if ev.end && len(up.resp.Trailer) > 0 {
			s.feedResponseData(ev.data, false)
			if s.complete || s.responseHalted() {
				return
			}
			t := filter.NewHeaderMap()
			for k, vs := range up.resp.Trailer {
				for _, v := range vs {
					t.Add(lowerKey(k), v)
				}
			}
			s.feedResponseTrailers(t)
			return
		}
		s.feedResponseData(ev.data, ev.end)
	}
}

// upstreamResetReason names why an exchange failed before the response
// began, as Envoy's reset reasons: a circuit breaker's overflow, a
// malformed response (protocol error), or else a connection failure.
func upstreamResetReason(err error) (reason, detail string) {
	var pe *http1.Error
	switch {
	case errors.Is(err, errOverflow):
		return "overflow", "overflow"
	case errors.As(err, &pe):
		return "protocol error", "protocol_error"
	}
	return "connection failure", "connection_failure"
}

// upstreamHead is the request head the router hands its transport: the
// filtered request's header pairs, its :scheme (x-forwarded-proto when
// the pairs have none) and the route timeout announced in
// x-envoy-expected-rq-timeout-ms (0: none). The HTTP/1.1 pool writes it
// straight into the request head (appendUpstreamFields) when the
// request has no http.Header; other transports get one built from it
// (materializeHeader).
type upstreamHead struct {
	pairs   []filter.Pair
	scheme  string
	timeout time.Duration
	// deadline ends the attempt (zero: none): the pool sets it on the
	// connection for the exchange and answers an I/O that hits it with
	// context.DeadlineExceeded, as a context deadline would end it.
	deadline time.Time
	// cancel is the HTTP/1 downstream request's (nil: another
	// protocol): the pool's exchange is interrupted through it rather
	// than a context.AfterFunc on the request's context.
	cancel *requestCancel
	// exch, when not nil, is storage for the first response the pool
	// reads for this head (taken then: a later attempt's response gets
	// its own), so that it costs no allocation of its own.
	exch *h1Exchange
}

// expired reports that the attempt ended at its deadline: its
// context's, or the pool connection's (head.deadline).
func (up *upstreamRequest) expired() bool {
	if up.perTryFired {
		return true
	}
	if d := up.head.deadline; !d.IsZero() && !time.Now().Before(d) {
		return true
	}
	return errors.Is(up.ctx.Err(), context.DeadlineExceeded)
}

// transportRoundTrip performs the exchange: through the pool with the
// head's pairs when the request has no http.Header (synchronous
// exchanges on a pool cluster), else through the cluster's transport.
func (up *upstreamRequest) transportRoundTrip() (*http.Response, error) {
	if up.req.Header == nil {
		return up.cluster.pool.roundTripHead(up.req, &up.head)
	}
	return up.cluster.transport.RoundTrip(up.req)
}

// materializeHeader gives the upstream request the http.Header other
// transports, the streamed exchange and retries need.
func (up *upstreamRequest) materializeHeader() {
	if up.req.Header == nil {
		up.req.Header = up.head.httpHeader()
	}
}

// httpHeader is the head's fields as an http.Header, grouped by
// canonical name: the fields appendUpstreamFields writes.
func (hd *upstreamHead) httpHeader() http.Header {
	hdr := make(http.Header, len(hd.pairs)+2)
	for _, p := range hd.pairs {
		if p.Key == "" || p.Key[0] == ':' || isHopByHop(p.Key) && (p.Key != "te" || p.Value != "trailers") || p.Key == "content-length" || p.Key == "host" {
			continue
		}
		k := canonicalKey(p.Key)
		hdr[k] = append(hdr[k], p.Value)
	}
	if _, ok := hdr["User-Agent"]; !ok {
		// An empty value stops net/http from adding its own user-agent.
		hdr["User-Agent"] = []string{""}
	}
	if _, ok := hdr["X-Forwarded-Proto"]; !ok {
		hdr["X-Forwarded-Proto"] = []string{hd.scheme}
	}
	if t := hd.timeout; t > 0 {
		hdr["X-Envoy-Expected-Rq-Timeout-Ms"] = []string{strconv.FormatInt(t.Milliseconds(), 10)}
	}
	return hdr
}

// buildUpstreamRequest turns the (filtered) request headers into the
// request sent to the endpoint: pseudo-headers become the request line.
// Its header fields are the upstreamRequest's head (hop-by-hop fields
// dropped, Envoy's x-forwarded-proto set): req.Header stays nil until a
// transport other than the pool's synchronous exchange needs one
// (materializeHeader). The route's rewrites are already in h
// (rewriteRequest).
// The request and its URL are x's (nil: allocated together).
func buildUpstreamRequest(ctx context.Context, h *filter.HeaderMap, addr string, x *upstreamRequestLine) *http.Request {
	method, _ := h.GetLower(":method")
	path, _ := h.GetLower(":path")
	authority, _ := h.GetLower(":authority")
	if x == nil {
		x = new(upstreamRequestLine)
	}
	setOriginFormURL(&x.url, addr, path)
	x.req = http.Request{
		Method:     method,
		URL:        &x.url,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Host:       authority,
	}
	x.req = *x.req.WithContext(ctx) // its copy does not escape: no allocation
	return &x.req
}

// upstreamRequestLine holds an upstream request and its URL in one
// place (the upstreamRequest's, or one allocation).
type upstreamRequestLine struct {
	req http.Request
	url url.URL
}

// originFormURL is the URL of a request to addr whose request line
// (HTTP/1.1) or :path (HTTP/2) is path, in origin form, as the client
// sent it. net/http writes url.URL.Opaque verbatim except when it starts
// with "//", which it turns into an absolute-form "http://…" request
// line (and HTTP/2 into another :path): the client would pick the host
// the upstream serves. Such a path goes through Path and RawPath
// instead, which net/http writes verbatim when RawPath is a valid
// encoding of Path; a "//" path with bytes that are not (a stray '%',
// quotes, non-ASCII) has those bytes percent-encoded, still in origin
// form.
func originFormURL(addr, path string) *url.URL {
	u := new(url.URL)
	setOriginFormURL(u, addr, path)
	return u
}

// setOriginFormURL sets *u to originFormURL's URL.
func setOriginFormURL(u *url.URL, addr, path string) {
	if !strings.HasPrefix(path, "//") {
		*u = url.URL{Scheme: "http", Host: addr, Opaque: path}
		return
	}
	p, query, hasQuery := strings.Cut(path, "?")
	*u = url.URL{Scheme: "http", Host: addr, Path: p, RawQuery: query, ForceQuery: hasQuery && query == ""}
	if unescaped, err := url.PathUnescape(p); err == nil {
		u.Path, u.RawPath = unescaped, p
	}
}

func responseHeaderMap(resp *http.Response) *filter.HeaderMap {
	if h := pooledResponseHeaders(resp); h != nil {
		return h // HTTP/1.1 from our pool: built by its codec (pool.go)
	}
	h := filter.NewHeaderMap(filter.Pair{Key: ":status", Value: itoa(resp.StatusCode)})
	for k, vs := range resp.Header {
		lk := lowerKey(k)
		if isHopByHop(lk) {
			continue
		}
		for _, v := range vs {
			h.Add(lk, v)
		}
	}
	if resp.ContentLength >= 0 {
		if _, ok := h.GetLower("content-length"); !ok {
			h.SetLower("content-length", strconv.FormatInt(resp.ContentLength, 10))
		}
	}
	return h
}

// sliceReader reads a byte slice once: a request body known in full,
// which the HTTP/1.1 pool writes with the head in one write (and can
// send again on a new connection).
type sliceReader struct{ b []byte }

// Close implements io.Closer.
func (r *sliceReader) Close() error { return nil }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// chunkReader is a request body fed by the stream goroutine without
// blocking it: chunks queue up and the transport's writer drains them.
type chunkReader struct {
	mu     sync.Mutex
	cond   *sync.Cond
	chunks [][]byte
	eof    bool
	closed bool
	// drainOnClose keeps the chunks queued before close readable: a
	// terminated POST's body (allow_post) is a byte stream to its
	// endpoint, and what the client sent before it went away is sent
	// before the connection goes with it, as Envoy's TCP upstream had
	// written it as it came. Elsewhere a close drops them (a retry's or
	// a cancelled attempt's body is never finished).
	drainOnClose bool
	// trailers go into dst when the body ends, on the transport's
	// goroutine: the transport reads the request's trailer map when it
	// starts (validation) and after the body, so the stream goroutine
	// must not write it while the request is in flight.
	trailers, dst http.Header
}

// setTrailers has the trailers copied into dst (the request's Trailer
// map) as the body's end is read.
func (r *chunkReader) setTrailers(dst, trailers http.Header) {
	r.mu.Lock()
	r.dst, r.trailers = dst, trailers
	r.mu.Unlock()
}

func newChunkReader() *chunkReader {
	r := &chunkReader{}
	r.cond = sync.NewCond(&r.mu)
	return r
}

func (r *chunkReader) push(b []byte, end bool) {
	r.mu.Lock()
	if len(b) > 0 {
		r.chunks = append(r.chunks, b)
	}
	if end {
		r.eof = true
	}
	r.mu.Unlock()
	r.cond.Broadcast()
}

func (r *chunkReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.chunks) == 0 && !r.eof && !r.closed {
		r.cond.Wait()
	}
	if r.closed && (!r.drainOnClose || len(r.chunks) == 0) {
		return 0, io.ErrClosedPipe
	}
	if len(r.chunks) == 0 {
		for k, vs := range r.trailers {
			r.dst[k] = vs
		}
		r.trailers = nil
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	if n == len(r.chunks[0]) {
		r.chunks[0] = nil
		r.chunks = r.chunks[1:]
	} else {
		r.chunks[0] = r.chunks[0][n:]
	}
	return n, nil
}

func (r *chunkReader) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cond.Broadcast()
}

func (r *chunkReader) Close() error {
	r.close()
	return nil
}

// invalidRequestHeaders checks what the upstream request line and
// header block need after filters had their way: a method token, a path
// in origin form (or "*" for OPTIONS), an authority, and header names and
// values that cannot split or smuggle a header. It returns "" when valid.
func invalidRequestHeaders(h *filter.HeaderMap) string {
	method, ok := h.GetLower(":method")
	if !ok || method == "" || !isToken(method) {
		return "missing_or_invalid_:method"
	}
	path, ok := h.GetLower(":path")
	if method == http.MethodConnect && path == "" {
		// A CONNECT has no path (authority form); the HTTP/1 codec
		// gives it an empty one.
	} else if !ok || path == "" || (path[0] != '/' && !(path == "*" && method == http.MethodOptions)) || strings.ContainsAny(path, " \r\n\x00") {
		return "missing_or_invalid_:path"
	}
	if a, ok := h.GetLower(":authority"); !ok || a == "" || strings.ContainsAny(a, " \r\n\x00/") {
		return "missing_or_invalid_:authority"
	}
	for _, p := range h.Pairs() {
		if !httpguts.ValidHeaderFieldName(strings.TrimPrefix(p.Key, ":")) || !httpguts.ValidHeaderFieldValue(p.Value) {
			return "invalid_header_" + sanitizeDetail(p.Key)
		}
	}
	return ""
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !httpguts.IsTokenRune(rune(s[i])) {
			return false
		}
	}
	return true
}

// sanitizeDetail keeps response code details free of spaces and control
// bytes, as Envoy's are.
func sanitizeDetail(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c <= ' ' || c >= 0x7f {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}
