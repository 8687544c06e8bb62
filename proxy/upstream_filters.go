package proxy

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

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
// The router holds the whole request (body and trailers) before the
// first attempt: every attempt needs it again, and the synchronous
// exchange it then takes is the one retries work on (retry.go).

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
// upstream filters: the request as the router finished it, held for
// every attempt, and the current attempt's chain.
type upstreamFiltered struct {
	headers    *filter.HeaderMap
	headersEnd bool
	body       []byte
	trailers   *filter.HeaderMap
	chain      *upstreamChain
}

// startUpstreamFiltered takes over from the router once the request
// headers are final (routerSink.headers): the request is held until it
// is complete, then the first attempt runs its chain.
func (s *stream) startUpstreamFiltered(up *upstreamRequest, h *filter.HeaderMap, end bool) {
	up.filtered = &upstreamFiltered{headers: h.Clone(), headersEnd: end}
	if end {
		s.upstreamRequestComplete(up)
	}
}

// upstreamFilteredData and upstreamFilteredTrailers hold the rest of the
// request (routerSink.data, routerSink.trailers).
func (s *stream) upstreamFilteredData(up *upstreamRequest, b []byte, end bool) {
	up.mirror.add(b)
	up.filtered.body = append(up.filtered.body, b...)
	if end {
		up.mirror.send(s, nil)
		s.upstreamRequestComplete(up)
	}
}

func (s *stream) upstreamFilteredTrailers(up *upstreamRequest, t *filter.HeaderMap) {
	up.mirror.send(s, t.Clone())
	up.filtered.trailers = t.Clone()
	s.upstreamRequestComplete(up)
}

func (s *stream) upstreamRequestComplete(up *upstreamRequest) {
	s.stopRequestTimer()
	if up.filtered.headersEnd {
		up.mirror.send(s, nil)
	}
	s.runUpstreamAttempt(up, up.filtered.headers.Clone())
}

// runUpstreamAttempt runs a fresh upstream chain for the current
// attempt on the held request; h is its headers (a copy of its own).
// What passes the last filter is sent (upstreamChain.send).
func (s *stream) runUpstreamAttempt(up *upstreamRequest, h *filter.HeaderMap) {
	uf := up.filtered
	uc := &upstreamChain{s: s, up: up, done: make(chan struct{})}
	uf.chain = uc
	uc.fc.ReqHeaders = h
	uc.fc.Init((*upstreamChainHost)(uc), nil, &s.info, up.cluster.upstreamFilters,
		int(s.cm.listener.PerConnectionBufferLimitBytes), int(up.cluster.cfg.PerConnectionBufferLimitBytes))
	go uc.forward(s)
	hasBody := !uf.headersEnd && len(uf.body) > 0
	hasTrailers := !uf.headersEnd && uf.trailers != nil
	uc.fc.FeedHeaders(filter.Request, h, !hasBody && !hasTrailers)
	if hasBody && !uc.fc.Halted(filter.Request) {
		uc.fc.FeedData(filter.Request, append([]byte(nil), uf.body...), !hasTrailers)
	}
	if hasTrailers && !uc.fc.Halted(filter.Request) {
		uc.fc.FeedTrailers(filter.Request, uf.trailers.Clone())
	}
	uc.fc.Drain()
}

// retryUpstreamFiltered is retryNow's for a request with upstream
// filters: the failed attempt's chain ends and the next attempt runs a
// new one from the request as the router had it.
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
	// What passed the request filters: sent once the request ends.
	headers  *filter.HeaderMap
	body     []byte
	trailers *filter.HeaderMap
	sent     bool // the request went to the endpoint (or a reply replaced it)
	replied  bool // a filter answered locally
	finished bool
	done     chan struct{}
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

// send writes what passed the request filters to the endpoint, as
// routerSink.headers would have: a synchronous exchange for the first
// attempt, a new attempt of it for a retry.
func (uc *upstreamChain) send() {
	if uc.sent {
		return
	}
	uc.sent = true
	s, up, h := uc.s, uc.up, uc.headers
	if reason := invalidRequestHeaders(h); reason != "" {
		s.cm.log.Warn("request headers invalid after upstream filters", "reason", reason)
		s.sendLocalReply(http.StatusServiceUnavailable, nil, nil, "filter_removed_required_request_headers{"+reason+"}")
		return
	}
	ctx := up.ctx
	if up.baseCtx != nil {
		ctx = up.baseCtx
	}
	up.req = buildUpstreamRequest(ctx, h, up.endpoint.address, nil) // an attempt of its own: never the stream's first request's storage
	up.head = upstreamHead{pairs: h.Pairs(), timeout: up.route.Timeout.D()}
	up.head.scheme, _ = h.Get(":scheme")
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
	if !up.started {
		up.sendSync(up.route.Timeout.D())
		return
	}
	// A retry (retryNow): the exchange is synchronous already.
	if up.cluster.pool == nil || up.cluster.transport != http.RoundTripper(up.cluster.pool) {
		up.materializeHeader()
	}
	up.start = time.Now()
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
	if !up.sync || up.retry == nil || up.resp == nil || uc.replied {
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

func (h *upstreamChainHost) DeliverData(dir filter.Direction, b []byte, end bool) {
	uc := (*upstreamChain)(h)
	if dir == filter.Response {
		uc.s.fc.FeedData(filter.Response, b, end)
		return
	}
	uc.body = append(uc.body, b...)
	if end {
		uc.send()
	}
}

func (h *upstreamChainHost) DeliverTrailers(dir filter.Direction, t *filter.HeaderMap) {
	uc := (*upstreamChain)(h)
	if dir == filter.Response {
		uc.s.fc.FeedTrailers(filter.Response, t)
		return
	}
	uc.trailers = t
	uc.send()
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
	}
	s.stopTimeout()
	s.info.ResponseCode = status
	s.info.ResponseCodeDetails = details
	uc.fc.LocalReply(status, body, headers)
}

func (h *upstreamChainHost) Reset(details string) { h.s.reset(details) }

// PauseSource: the request is held whole already; the response's source
// is the endpoint.
func (h *upstreamChainHost) PauseSource(dir filter.Direction) {
	if dir == filter.Response {
		h.up.paused = true
	}
}

func (h *upstreamChainHost) ResumeSource(dir filter.Direction) {
	if dir == filter.Response {
		h.up.paused = false
	}
}

func (h *upstreamChainHost) BufferOverflow(dir filter.Direction) {
	(*chainHost)(h.s).BufferOverflow(dir)
}

func (h *upstreamChainHost) Done() bool { return h.finished || h.s.complete }
