package proxy

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
)

// Retries, as Envoy's router and RetryStateImpl: a synchronous exchange
// (the request body complete when it is sent, so it can be sent again)
// whose attempt failed in a way the route's retry_policy names is sent
// again, to a freshly picked endpoint, after a jittered exponential
// back-off, at most num_retries times. A request whose body is streamed
// to the upstream is not retried.

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
	if up.gotHeaders {
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
	if up.expired() {
		up.cluster.stats.rqPerTryTimeout.Inc()
	}
	if ev.resp != nil {
		up.syncResp = ev.resp // finish closes its body
	}
	up.finish()
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
	s.info.UpstreamAddr = ep.address
	if up.filtered != nil {
		s.retryUpstreamFiltered(up) // upstream_filters.go
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
	up.start = time.Now()
	up.beginAttempt()
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
