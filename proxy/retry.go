package proxy

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
)

// Retries, as Envoy's router and RetryStateImpl: a request whose
// attempt failed in a way the route's retry_policy names is sent again,
// to a freshly picked endpoint, after a jittered exponential back-off,
// at most num_retries times. A synchronous exchange (the request body
// complete when it is sent) sends its body again. A streamed one (the
// body still coming when the first attempt starts) keeps what the
// router forwarded so far in a retry buffer bounded by Envoy's
// retry_shadow_buffer_limit (retryShadowLimit); a retry replays it, then
// goes on with the rest of the request as it arrives. A body that
// outgrows the buffer abandons retries and shadows (Envoy's
// retry_or_shadow_abandoned): the request goes on streaming on the
// current attempt, or, when none is in flight (a back-off), gets 507.

// retryShadowLimit is Envoy's retry_shadow_buffer_limit_: the
// listener's per_connection_buffer_limit_bytes (the stream's decoder
// buffer limit; 0 means none), capped by the route's
// per_request_buffer_limit_bytes, else its virtual host's.
func (s *stream) retryShadowLimit(route *config.Route, vh *config.VirtualHost) int64 {
	limit := int64(math.MaxUint32)
	if l := s.cm.listener.PerConnectionBufferLimitBytes; l != 0 {
		limit = int64(l)
	}
	rl := route.PerRequestBufferLimitBytes
	if rl == nil && vh != nil {
		rl = vh.PerRequestBufferLimitBytes
	}
	if rl != nil && int64(*rl) < limit {
		limit = int64(*rl)
	}
	return limit
}

// retryBuffer counts a request body chunk of n bytes the router takes
// against the retry/shadow buffer, as Envoy's router's decodeData: past
// the limit, retries and shadows are abandoned (and counted in
// retry_or_shadow_abandoned). It returns false when that happened while
// no attempt is in flight (a retry's back-off): the stream was answered
// 507 and the chunk goes nowhere.
func (s *stream) retryBuffer(up *upstreamRequest, n int) bool {
	if up.abandoned || ((up.retry == nil || up.upgrade) && (up.mirror == nil || up.mirror.abandoned || up.mirror.sent)) {
		return true // nothing is buffered
	}
	if up.bufLen+int64(n) <= up.bufLimit {
		up.bufLen += int64(n)
		return true
	}
	up.abandoned = true
	up.replay, up.replayTrailers = nil, nil
	if up.filtered != nil {
		up.filtered.body, up.filtered.trailers = nil, nil
	}
	up.mirror.abandon()
	up.cluster.stats.retryOrShadowAbandoned.Inc()
	if s.retryTimer == nil {
		return true
	}
	s.retryTimer.Stop()
	s.retryTimer = nil
	s.releaseRetry()
	s.routeReply(http.StatusInsufficientStorage, []byte("exceeded request buffer limit while retrying upstream"),
		nil, "request_payload_exceeded_retry_buffer_limit")
	return false
}

// keepForRetry adds a streamed body chunk to the retry buffer.
func (up *upstreamRequest) keepForRetry(b []byte) {
	if up.retry != nil && !up.abandoned && !up.upgrade && len(b) > 0 {
		up.replay = append(up.replay, b)
	}
}

// endStreamedAttempt ends a streamed attempt the router gave up on: its
// goroutine is cancelled, its body reader closed, and its events are
// not read any more.
func (up *upstreamRequest) endStreamedAttempt() {
	if up.perTryTimer != nil {
		up.perTryTimer.Stop()
		up.perTryTimer = nil
	}
	up.stopMaxDuration()
	if up.cancelFn != nil {
		up.cancelFn()
	}
	if up.body != nil {
		up.body.close()
	}
	up.events = nil
}

// retryable says whether ev — an error before the response, or the
// response headers — is one the policy retries. Overflow (a circuit
// breaker) never is, nor the route timeout.
func (up *upstreamRequest) retryable(ev upstreamEvent) bool {
	p := up.retry
	if ev.resp != nil {
		// As Envoy's wouldRetryFromHeaders: a grpc-status in the headers
		// (a trailers-only answer) under a gRPC condition, whatever the
		// HTTP status.
		if p.HasGRPC() {
			if gs, err := strconv.Atoi(upstreamResponseHeader(ev.resp, "grpc-status")); err == nil {
				if c := config.RetryGRPCStatus(gs); c != "" && p.Has(c) {
					return true
				}
			}
		}
		code := ev.resp.StatusCode
		switch {
		case p.Has("5xx") && code >= 500:
			return true
		case p.Has("gateway-error") && (code == 502 || code == 503 || code == 504):
			return true
		case p.Has("retriable-4xx") && code == http.StatusConflict:
			return true
		case p.Has("retriable-status-codes"):
			for _, c := range p.RetriableStatusCodes {
				if int(c) == code {
					return true
				}
			}
		}
		return false
	}
	if ev.err == nil || errors.Is(ev.err, errOverflow) {
		return false
	}
	if up.msdFired {
		// Envoy's MaxDurationTimeout reset reason: a reset to the
		// reset conditions, not a connect failure.
		return p.Has("5xx") || p.Has("gateway-error") || p.Has("reset")
	}
	if up.expired() && !up.perTryExpired() {
		return false // the route timeout: no time is left to retry in
	}
	if p.Has("5xx") || p.Has("gateway-error") || p.Has("reset") {
		return true
	}
	_, detail := upstreamResetReason(ev.err)
	return p.Has("connect-failure") && detail == "connection_failure"
}

// perTryExpired reports that the attempt's context ended at the
// per_try_timeout, not at the route deadline.
func (up *upstreamRequest) perTryExpired() bool {
	return up.retry != nil && up.retry.PerTryTimeout > 0 && (up.deadline.IsZero() || time.Now().Before(up.deadline))
}

// maybeRetry decides on an attempt's failure or response headers: true
// when a retry is scheduled (the attempt is released and ev dropped).
func (s *stream) maybeRetry(ev upstreamEvent) bool {
	up := s.up
	if ev.err == nil && ev.resp == nil {
		return false // body data: the response is on its way already
	}
	if up.gotHeaders || up.abandoned {
		return false
	}
	// The retried attempt has an outcome: its hold on the retry circuit
	// breaker ends, as Envoy's resetRetry.
	s.releaseRetry()
	if !up.retryable(ev) {
		if up.attempt > 1 {
			up.cluster.stats.rqRetrySuccess.Inc()
		}
		return false
	}
	if uint32(up.attempt) > up.retry.NumRetries {
		up.cluster.stats.rqRetryLimitExceeded.Inc()
		return false
	}
	if !up.cluster.holdRetry() {
		up.cluster.stats.rqRetryOverflow.Inc()
		return false
	}
	s.retryHeld = up.cluster
	if up.expired() && !up.msdFired {
		up.cluster.stats.rqPerTryTimeout.Inc()
	}
	if up.sync {
		if ev.resp != nil {
			up.syncResp = ev.resp // finish closes its body
		}
		up.finish()
	} else {
		up.endStreamedAttempt()
	}
	up.cluster.stats.rqRetry.Inc()
	up.cluster.stats.rqRetryBackoffExp.Inc()
	s.retryTimer = time.NewTimer(up.backoff())
	return true
}

// backoff is Envoy's JitteredExponentialBackOffStrategy: a random time
// below base × 2^(retries so far), capped at the maximum.
func (up *upstreamRequest) backoff() time.Duration {
	base, maxD := up.retry.BackoffBase.D(), up.retry.BackoffMax.D()
	if base <= 0 {
		return 0
	}
	shift := up.attempt - 1
	if shift > 30 {
		shift = 30
	}
	ceiling := base << shift
	if ceiling > maxD || ceiling <= 0 {
		ceiling = maxD
	}
	return time.Duration(rand.Int64N(int64(ceiling)))
}

// retryNow sends the next attempt once the back-off has passed.
func (s *stream) retryNow() {
	s.retryTimer = nil
	up := s.up
	if up == nil || s.complete || s.localReplied {
		return
	}
	ep := up.cluster.pickHash(up.hash, up.hasHash)
	if ep == nil {
		up.cluster.stats.noHealthy.Inc()
		s.routeReply(http.StatusServiceUnavailable, []byte("no healthy upstream"), nil, "no_healthy_upstream")
		return
	}
	up.finishSpan(time.Now()) // the failed attempt's
	up.attempt++
	up.endpoint = ep
	up.resp, up.syncResp, up.read, up.finished, up.gotHeaders = nil, nil, 0, false, false
	up.perTryFired, up.msdFired = false, false
	s.info.UpstreamAddr = ep.address
	if up.filtered != nil {
		s.retryUpstreamFiltered(up) // upstream_filters.go
		return
	}
	if up.streamed {
		s.retryStreamed(up)
		return
	}
	up.materializeHeader() // the attempts differ in their fields
	req := up.req.Clone(up.baseCtx)
	u := *req.URL
	u.Host = ep.address
	req.URL = &u
	if up.bodyBytes != nil {
		req.Body = &sliceReader{b: up.bodyBytes}
	} else {
		req.Body = http.NoBody
	}
	if up.vh != nil && up.vh.IncludeRequestAttemptCount {
		req.Header["X-Envoy-Attempt-Count"] = []string{strconv.Itoa(up.attempt)}
		if h := s.fc.ReqHeaders; h != nil {
			h.Set("x-envoy-attempt-count", strconv.Itoa(up.attempt))
		}
	}
	up.startSpan(httpHeaders(req.Header))
	up.req = req
	up.start = monoNow() // measured from, never formatted (clock.go)
	up.beginAttempt()
}

// retryStreamed sends the next attempt of a streamed request: a copy of
// the first attempt's request to the new endpoint whose body replays the
// retry buffer, then takes the rest of the request as the router
// forwards it (routerSink.data, routerSink.trailers).
func (s *stream) retryStreamed(up *upstreamRequest) {
	prev := *up.req
	hadTrailer := prev.Trailer != nil
	// The previous attempt's transport may still be filling its
	// trailer map: the copy leaves it alone.
	prev.Trailer = nil
	req := prev.Clone(up.baseCtx)
	u := *req.URL
	u.Host = up.endpoint.address
	req.URL = &u
	body := newChunkReader()
	body.chunks = append(body.chunks, up.replay...)
	if hadTrailer {
		req.Trailer = http.Header{}
	}
	if up.reqEnded {
		if up.replayTrailers != nil && hadTrailer {
			body.setTrailers(req.Trailer, up.replayTrailers)
		}
		body.eof = true
	}
	req.Body = body
	if up.vh != nil && up.vh.IncludeRequestAttemptCount {
		req.Header["X-Envoy-Attempt-Count"] = []string{strconv.Itoa(up.attempt)}
		if h := s.fc.ReqHeaders; h != nil {
			h.Set("x-envoy-attempt-count", strconv.Itoa(up.attempt))
		}
	}
	up.startSpan(httpHeaders(req.Header))
	up.req, up.body = req, body
	up.send()
	if up.reqEnded {
		s.startStreamedPerTry(up)
	}
}

// startStreamedPerTry arms a streamed attempt's per_try_timeout, as
// Envoy's router does once the request is complete: at the request's
// end for an attempt that started before it, at its start for a retry
// made after it. An attempt whose response started is not cut by it.
func (s *stream) startStreamedPerTry(up *upstreamRequest) {
	if up == nil || !up.streamed || up.retry == nil || up.retry.PerTryTimeout <= 0 || up.perTryTimer != nil || up.events == nil {
		return
	}
	attempt := up.attempt
	up.perTryTimer = time.AfterFunc(up.retry.PerTryTimeout.D(), func() {
		s.fc.Post(func() { s.streamedPerTryTimeout(up, attempt) })
	})
}

// streamedPerTryTimeout ends a streamed attempt at its per_try_timeout
// (on the stream goroutine): the attempt fails as one cut by its
// deadline, which a retry policy retries, else it is answered 504.
func (s *stream) streamedPerTryTimeout(up *upstreamRequest, attempt int) {
	if s.up != up || up.attempt != attempt || up.perTryTimer == nil || up.events == nil || up.gotHeaders || s.complete || s.localReplied {
		return
	}
	up.perTryTimer = nil
	up.perTryFired = true
	up.endStreamedAttempt()
	s.onUpstream(upstreamEvent{err: context.DeadlineExceeded})
}

// upstreamResponseHeader is one field of an upstream response (key in
// lower case), wherever its codec put the fields: the HTTP/1.1 pool's
// header map, else resp.Header.
func upstreamResponseHeader(resp *http.Response, key string) string {
	if h := pooledResponseHeaders(resp); h != nil {
		v, _ := h.Get(key)
		return v
	}
	return resp.Header.Get(key)
}

// holdRetry takes one of the cluster's max_retries (circuit_breakers;
// Envoy's default 3) for a retry about to be scheduled; false when all
// are taken.
func (c *cluster) holdRetry() bool {
	for {
		n := c.retries.Load()
		if n >= c.maxRetries {
			return false
		}
		if c.retries.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// releaseRetry gives back the stream's hold on a retry, if it has one.
func (s *stream) releaseRetry() {
	if c := s.retryHeld; c != nil {
		s.retryHeld = nil
		c.retries.Add(-1)
	}
}
