package proxy

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/filterchain"
)

// Upstream HTTP filters: a cluster's HttpProtocolOptions.http_filters
// (config.Cluster.UpstreamHTTPFilters) run once per upstream attempt,
// after the router picked the cluster and the endpoint, on the same
// filter-chain engine as the connection manager's filters: the request
// passes them in order before it is written to the endpoint, the
// response in reverse order before the downstream filters see it. A
// retry runs a fresh chain on the request as the router had it, as
// Envoy's UpstreamRequest makes a filter manager per attempt.
//
// The first attempt's chain starts at the request headers and the body
// follows it as it arrives; a retry's chain replays the request from the
// router's retry buffer (retry.go), then takes the rest.

// loadUpstreamFilters makes the cluster's upstream filter factories;
// close releases them with the cluster.
func (c *cluster) loadUpstreamFilters(ctx context.Context, loader FilterLoader) error {
	for i, f := range c.cfg.UpstreamHTTPFilters {
		if loader == nil {
			return fmt.Errorf("cluster %q: upstream http_filters[%d] %q: no filter loader configured", c.cfg.Name, i, f.Name)
		}
		fac, err := loader.LoadHTTPFilter(ctx, "cluster "+c.cfg.Name, f)
		if err != nil {
			closeFactories(c.upstreamFilters)
			c.upstreamFilters = nil
			return fmt.Errorf("cluster %q: upstream http filter %q: %w", c.cfg.Name, f.Name, err)
		}
		c.upstreamFilters = append(c.upstreamFilters, fac)
	}
	return nil
}

// upstreamFiltered is the router's side of a request to a cluster with
// upstream filters: the request headers as the router finished them,
// the retry buffer (the body chunks and trailers that came so far, kept
// while a retry is possible: retry.go), and the current attempt's chain.
type upstreamFiltered struct {
	headers    *filter.HeaderMap
	headersEnd bool
	body       [][]byte
	trailers   *filter.HeaderMap
	chain      *upstreamChain
}

// startUpstreamFiltered takes over from the router once the request
// headers are final (routerSink.headers): the first attempt's chain
// starts on them at once, and the rest of the request follows it as it
// arrives, as Envoy's router streams it.
func (s *stream) startUpstreamFiltered(up *upstreamRequest, h *filter.HeaderMap, end bool) {
	up.filtered = &upstreamFiltered{headers: h.Clone(), headersEnd: end}
	if end {
		up.reqEnded = true
		s.stopRequestTimer()
		up.mirror.send(s, nil)
	}
	s.runUpstreamAttempt(up, up.filtered.headers.Clone())
}

// upstreamFilteredData and upstreamFilteredTrailers take the rest of the
// request (routerSink.data, routerSink.trailers): into the retry buffer
// while a retry is possible, and on to the current attempt's chain
// unless a retry's back-off is running.
func (s *stream) upstreamFilteredData(up *upstreamRequest, b []byte, end bool) {
	uf := up.filtered
	up.mirror.add(b)
	keep := up.retry != nil && !up.abandoned
	if keep && len(b) > 0 {
		uf.body = append(uf.body, b)
	}
	if end {
		up.reqEnded = true
		up.mirror.send(s, nil)
		s.upstreamRequestEnded(up)
	}
	if uc := up.upstreamChain(); uc != nil && s.retryTimer == nil && !uc.fc.Halted(filter.Request) {
		if keep {
			b = append([]byte(nil), b...) // the chain's filters own what they get
		}
		uc.fc.FeedData(filter.Request, b, end)
		uc.fc.Drain()
	}
}

func (s *stream) upstreamFilteredTrailers(up *upstreamRequest, t *filter.HeaderMap) {
	uf := up.filtered
	up.mirror.send(s, t.Clone())
	if up.retry != nil && !up.abandoned {
		uf.trailers = t.Clone()
	}
	up.reqEnded = true
	s.upstreamRequestEnded(up)
	if uc := up.upstreamChain(); uc != nil && s.retryTimer == nil && !uc.fc.Halted(filter.Request) {
		uc.fc.FeedTrailers(filter.Request, t)
		uc.fc.Drain()
	}
}

// upstreamRequestEnded: the router has the whole request. A streamed
// attempt's route timeout starts (requestComplete); a synchronous one's
// is its deadline.
func (s *stream) upstreamRequestEnded(up *upstreamRequest) {
	if up.streamed {
		s.requestComplete()
		return
	}
	s.stopRequestTimer()
}

// runUpstreamAttempt runs a fresh upstream chain for the current
// attempt; h is its headers (a copy of its own). The chain gets what the
// router has of the request so far (all of it for a retry of a request
// that ended); what passes the last filter is sent (upstreamChain).
func (s *stream) runUpstreamAttempt(up *upstreamRequest, h *filter.HeaderMap) {
	uf := up.filtered
	uc := &upstreamChain{s: s, up: up, done: make(chan struct{})}
	uf.chain = uc
	uc.fc.ReqHeaders = h
	uc.fc.Init((*upstreamChainHost)(uc), nil, &s.info, up.cluster.upstreamFilters,
		int(s.cm.listener.PerConnectionBufferLimitBytes), int(up.cluster.cfg.PerConnectionBufferLimitBytes))
	go uc.forward(s)
	if uf.headersEnd {
		uc.fc.FeedHeaders(filter.Request, h, true)
		uc.fc.Drain()
		return
	}
	hasTrailers := up.reqEnded && uf.trailers != nil
	uc.fc.FeedHeaders(filter.Request, h, false)
	for i, b := range uf.body {
		if uc.fc.Halted(filter.Request) {
			break
		}
		last := i == len(uf.body)-1 && up.reqEnded && !hasTrailers
		uc.fc.FeedData(filter.Request, append([]byte(nil), b...), last)
	}
	if up.reqEnded && !uc.fc.Halted(filter.Request) {
		switch {
		case hasTrailers:
			uc.fc.FeedTrailers(filter.Request, uf.trailers.Clone())
		case len(uf.body) == 0:
			uc.fc.FeedData(filter.Request, nil, true)
		}
	}
	uc.fc.Drain()
}

// retryUpstreamFiltered is retryNow's for a request with upstream
// filters: the failed attempt's chain ends and the next attempt runs a
// new one, replaying the request from the retry buffer.
func (s *stream) retryUpstreamFiltered(up *upstreamRequest) {
	up.filtered.chain.finish()
	h := up.filtered.headers.Clone()
	if up.vh != nil && up.vh.IncludeRequestAttemptCount {
		h.Set("x-envoy-attempt-count", strconv.Itoa(up.attempt))
	}
	up.startSpan(h)
	s.runUpstreamAttempt(up, h)
}

// finishUpstreamFilters ends the current attempt's chain, if any.
func (up *upstreamRequest) finishUpstreamFilters() {
	if up.filtered != nil && up.filtered.chain != nil {
		up.filtered.chain.finish()
	}
}

// upstreamChain is one attempt's upstream filters. It lives on the
// stream's goroutine; forward wakes that goroutine for actions its
// filters post from elsewhere (a Wasm plugin's HTTP call reply).
type upstreamChain struct {
	s  *stream
	up *upstreamRequest
	fc filterchain.HTTP
	// What passed the request filters: sent once the request ends, or
	// streamed (streaming) when it passes them before the router has
	// the whole request.
	headers   *filter.HeaderMap
	body      []byte
	trailers  *filter.HeaderMap
	sent      bool // the request went to the endpoint (or a reply replaced it)
	streaming bool // the attempt's exchange started before its body ended
	replied   bool // a filter answered locally
	finished  bool
	done      chan struct{}
}

// forward hands the chain's queued actions to the stream's queue, which
// the stream goroutine drains, until the chain ends.
func (uc *upstreamChain) forward(s *stream) {
	for {
		select {
		case <-uc.fc.Notify():
			s.fc.Post(uc.drain)
		case <-uc.done:
			return
		}
	}
}

func (uc *upstreamChain) drain() {
	if !uc.finished {
		uc.fc.Drain()
	}
}

// finish ends the chain's filters (OnLog, OnDestroy) once.
func (uc *upstreamChain) finish() {
	if uc.finished {
		return
	}
	uc.finished = true
	close(uc.done)
	uc.fc.Finish()
}

// buildRequest makes the attempt's request from what passed the request
// filters; false when a filter left headers that cannot go upstream
// (the stream was answered).
func (uc *upstreamChain) buildRequest() bool {
	s, up, h := uc.s, uc.up, uc.headers
	if reason := invalidRequestHeaders(h); reason != "" {
		s.cm.log.Warn("request headers invalid after upstream filters", "reason", reason)
		s.sendLocalReply(http.StatusServiceUnavailable, nil, nil, "filter_removed_required_request_headers{"+reason+"}")
		return false
	}
	ctx := up.ctx
	if up.baseCtx != nil {
		ctx = up.baseCtx
	}
	up.req = buildUpstreamRequest(ctx, h, up.endpoint.address, nil) // an attempt of its own: never the stream's first request's storage
	up.head = upstreamHead{pairs: h.Pairs(), timeout: up.route.Timeout.D()}
	up.head.scheme, _ = h.Get(":scheme")
	return true
}

// startStreaming starts the attempt's exchange before its body passed
// the filters (the router does not have the whole request yet): the
// body and trailers follow through a chunk reader, as routerSink.data
// streams them.
func (uc *upstreamChain) startStreaming() bool {
	uc.sent = true
	s, up := uc.s, uc.up
	if !uc.buildRequest() {
		return false
	}
	uc.streaming = true
	up.body = newChunkReader()
	up.req.Body, up.req.ContentLength = up.body, -1
	if v, ok := uc.headers.Get("content-length"); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			up.req.ContentLength = n
		}
	}
	if s.r.Trailer != nil || s.r.ContentLength < 0 {
		up.req.Trailer = http.Header{}
	}
	up.sync, up.streamed = false, true
	if up.baseCtx != nil {
		up.ctx = up.baseCtx
	}
	up.send()
	if up.reqEnded {
		s.requestComplete()
	}
	return true
}

// send writes what passed the request filters to the endpoint, as
// routerSink.headers would have, once the attempt's request ended in
// the chain: a synchronous exchange for the first attempt, a new
// attempt of it for a retry.
func (uc *upstreamChain) send() {
	if uc.sent {
		return
	}
	uc.sent = true
	up := uc.up
	if !uc.buildRequest() {
		return
	}
	up.bodyBytes = uc.body
	if len(uc.body) > 0 {
		up.req.Body = &sliceReader{b: uc.body}
		up.req.ContentLength = int64(len(uc.body))
	} else {
		up.req.Body = http.NoBody
	}
	if uc.trailers != nil && uc.trailers.Len() > 0 {
		// Trailers need a chunked body: the transport's path, with an
		// http.Header.
		up.materializeHeader()
		up.req.ContentLength = -1
		up.req.Trailer = make(http.Header, uc.trailers.Len())
		for _, p := range uc.trailers.Pairs() {
			k := canonicalKey(p.Key)
			up.req.Trailer[k] = append(up.req.Trailer[k], p.Value)
		}
	}
	if !up.sync {
		// The first attempt, or a retry after a streamed one.
		if up.baseCtx != nil {
			up.ctx = up.baseCtx
		}
		up.sendSync(up.route.Timeout.D())
		return
	}
	// A retry (retryNow) after a synchronous attempt.
	if up.cluster.pool == nil || up.cluster.transport != http.RoundTripper(up.cluster.pool) {
		up.materializeHeader()
	}
	up.start = monoNow() // measured from, never formatted (clock.go)
	up.beginAttempt()
}

// Response side: onUpstream feeds the response to the attempt's chain
// when there is one, else straight to the downstream filters.

func (s *stream) feedResponseHeaders(h *filter.HeaderMap, end bool) {
	if uc := s.up.upstreamChain(); uc != nil {
		uc.fc.FeedHeaders(filter.Response, h, end)
		uc.fc.Drain()
		return
	}
	s.fc.FeedHeaders(filter.Response, h, end)
}

func (s *stream) feedResponseData(b []byte, end bool) {
	if uc := s.up.upstreamChain(); uc != nil {
		uc.fc.FeedData(filter.Response, b, end)
		uc.fc.Drain()
		return
	}
	s.fc.FeedData(filter.Response, b, end)
}

func (s *stream) feedResponseTrailers(t *filter.HeaderMap) {
	if uc := s.up.upstreamChain(); uc != nil {
		uc.fc.FeedTrailers(filter.Response, t)
		uc.fc.Drain()
		return
	}
	s.fc.FeedTrailers(filter.Response, t)
}

// responseHalted is s.fc.Halted(filter.Response) for the filters the
// response meets first.
func (s *stream) responseHalted() bool {
	if uc := s.up.upstreamChain(); uc != nil {
		return uc.fc.Halted(filter.Response) || s.fc.Halted(filter.Response)
	}
	return s.fc.Halted(filter.Response)
}

func (up *upstreamRequest) upstreamChain() *upstreamChain {
	if up == nil || up.filtered == nil || up.filtered.chain == nil || up.filtered.chain.finished {
		return nil
	}
	return up.filtered.chain
}

// retryAfterFilters decides on a retry on the endpoint's response as
// the upstream filters hand it on (their :status), as Envoy's router
// does when the upstream filter chain gives it the headers; true when
// a retry is scheduled, and the response goes no further. A filter's
// local reply is never retried.
func (uc *upstreamChain) retryAfterFilters(m *filter.HeaderMap) bool {
	s, up := uc.s, uc.up
	if !(up.sync || up.streamed) || up.retry == nil || up.resp == nil || uc.replied {
		return false
	}
	v, _ := m.Get(":status")
	status, err := strconv.Atoi(v)
	if err != nil {
		return false
	}
	resp := *up.resp
	resp.StatusCode = status
	up.gotHeaders = false // maybeRetry decides before the response started
	if s.maybeRetry(upstreamEvent{resp: &resp}) {
		uc.fc.Stop(filter.Response)
		return true
	}
	up.gotHeaders = true
	return false
}

// upstreamChainHost is an upstream chain as the engine's host.
type upstreamChainHost upstreamChain

func (h *upstreamChainHost) DeliverHeaders(dir filter.Direction, m *filter.HeaderMap, end bool) {
	uc := (*upstreamChain)(h)
	if dir == filter.Response {
		if uc.retryAfterFilters(m) {
			return
		}
		// The router's response header mutations come after the
		// upstream filters, as Envoy's router applies them to what the
		// upstream filter chain hands it.
		uc.s.applyResponseHeaders(m, uc.up.vh, uc.up.route, uc.up.wc)
		uc.s.fc.FeedHeaders(filter.Response, m, end)
		return
	}
	uc.headers = m
	if end {
		uc.send()
	}
}

// The request body passes the chain: when the router has the whole
// request, the chain's body is gathered and sent at once (send); else
// the exchange starts streaming with the first chunk.

func (h *upstreamChainHost) DeliverData(dir filter.Direction, b []byte, end bool) {
	uc := (*upstreamChain)(h)
	if dir == filter.Response {
		uc.s.fc.FeedData(filter.Response, b, end)
		return
	}
	switch {
	case uc.streaming:
		if uc.up.body != nil && !uc.replied {
			uc.up.body.push(b, end)
		}
	case uc.sent:
	case end || uc.up.reqEnded:
		uc.body = append(uc.body, b...)
		if end {
			uc.send()
		}
	default:
		if uc.startStreaming() {
			uc.up.body.push(b, false)
		}
	}
}

func (h *upstreamChainHost) DeliverTrailers(dir filter.Direction, t *filter.HeaderMap) {
	uc := (*upstreamChain)(h)
	if dir == filter.Response {
		uc.s.fc.FeedTrailers(filter.Response, t)
		return
	}
	uc.trailers = t
	if !uc.streaming {
		uc.send()
		return
	}
	up := uc.up
	if up.body == nil || uc.replied {
		return
	}
	if up.req.Trailer != nil {
		trailers := make(http.Header, t.Len())
		for _, p := range t.Pairs() {
			k := canonicalKey(p.Key)
			trailers[k] = append(trailers[k], p.Value)
		}
		up.body.setTrailers(up.req.Trailer, trailers)
	}
	up.body.push(nil, true)
}

// SendLocalReply: an upstream filter answered instead of the endpoint.
// As in Envoy, the reply is the attempt's response: it passes the
// upstream response filters, then the downstream ones. Once the
// downstream filters saw a response, the stream is reset instead.
func (h *upstreamChainHost) SendLocalReply(status int, body []byte, headers []filter.Pair, details string) {
	uc := (*upstreamChain)(h)
	s, up := uc.s, uc.up
	if s.complete || s.localReplied {
		return
	}
	if s.responseStarted || s.fc.RespHeaders != nil {
		s.reset(details)
		return
	}
	uc.sent = true // the request is not sent (any more)
	uc.replied = true
	if up.started && up.sync && !up.finished {
		if up.attemptCancel != nil {
			up.attemptCancel()
		}
		up.finish()
	} else if uc.streaming {
		up.endStreamedAttempt()
	}
	s.stopTimeout()
	s.info.ResponseCode = status
	s.info.ResponseCodeDetails = details
	uc.fc.LocalReply(status, body, headers)
}

func (h *upstreamChainHost) Reset(details string) { h.s.reset(details) }

// PauseSource: the request's source is the client's body (the stream
// stops reading it), the response's the endpoint.
func (h *upstreamChainHost) PauseSource(dir filter.Direction) {
	if dir == filter.Response {
		h.up.paused = true
	} else {
		h.s.bodyPaused = true
	}
}

func (h *upstreamChainHost) ResumeSource(dir filter.Direction) {
	if dir == filter.Response {
		h.up.paused = false
	} else {
		h.s.bodyPaused = false
	}
}

func (h *upstreamChainHost) BufferOverflow(dir filter.Direction) {
	(*chainHost)(h.s).BufferOverflow(dir)
}

func (h *upstreamChainHost) Done() bool { return h.finished || h.s.complete }
