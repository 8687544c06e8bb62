package proxy

import (
	"context"
	"net/http"
	"time"
)

// A cluster's common_http_protocol_options.max_stream_duration, as
// Envoy's router enforces it: every upstream attempt's stream is bounded
// by it from the attempt's start, its response body included. When it
// is reached the attempt is reset (counted in the cluster's
// upstream_rq_max_duration_reached) and handled as a reset: retried when
// the route's retry policy retries resets (5xx, gateway-error, reset)
// and the response has not started; else answered 408 (the downstream
// request was not complete yet) or 504 "upstream max stream duration
// reached" with details upstream_max_stream_duration_reached (response
// flag UMSDR) before the response started, and a downstream reset after.
//
// A synchronous attempt (router.go's sendSync) gets it as part of its
// deadline (beginAttempt: msdAt when it is the earliest); a streamed
// one a timer armed as it is sent (startMaxDuration). Upgrades and
// CONNECT tunnels are not bounded by it (decisions.md §71).

// maxStreamDuration is the cluster's max_stream_duration (0: none).
func (up *upstreamRequest) maxStreamDuration() time.Duration {
	if up.upgrade {
		return 0
	}
	if u := up.cluster.cfg.UpstreamHTTP; u != nil {
		return u.MaxStreamDuration.D()
	}
	return 0
}

// startMaxDuration arms a streamed attempt's max_stream_duration timer.
func (s *stream) startMaxDuration(up *upstreamRequest) {
	m := up.maxStreamDuration()
	if m <= 0 {
		return
	}
	attempt := up.attempt
	up.msdTimer = time.AfterFunc(m, func() {
		s.fc.Post(func() { s.streamedMaxDuration(up, attempt) })
	})
}

// stopMaxDuration disarms a streamed attempt's timer.
func (up *upstreamRequest) stopMaxDuration() {
	if up.msdTimer != nil {
		up.msdTimer.Stop()
		up.msdTimer = nil
	}
}

// streamedMaxDuration ends a streamed attempt at its max_stream_duration
// (on the stream goroutine) unless the attempt is over already.
func (s *stream) streamedMaxDuration(up *upstreamRequest, attempt int) {
	if s.up != up || up.attempt != attempt || up.msdTimer == nil || up.events == nil || s.complete || s.localReplied {
		return
	}
	up.msdTimer = nil
	up.endStreamedAttempt()
	s.upstreamMaxDurationReached(up)
}

// maxDurationExpired reports that a synchronous attempt ended at its
// max_stream_duration rather than at the route's or per-try deadline.
func (up *upstreamRequest) maxDurationExpired() bool {
	return up.sync && !up.msdAt.IsZero() && !time.Now().Before(up.msdAt) && up.expired()
}

// upstreamMaxDurationReached handles an attempt its max_stream_duration
// reset, as Envoy's router's onStreamMaxDurationReached.
func (s *stream) upstreamMaxDurationReached(up *upstreamRequest) {
	up.cluster.stats.rqMaxDurationReached.Inc()
	up.msdFired = true
	if up.sync {
		up.finish()
	}
	if (up.sync || up.streamed) && up.retry != nil && s.maybeRetry(upstreamEvent{err: context.DeadlineExceeded}) {
		return
	}
	const details = "upstream_max_stream_duration_reached"
	if !up.gotHeaders && !s.responseStarted {
		s.stopTimeout()
		status := http.StatusGatewayTimeout
		if !up.sync && !up.reqEnded {
			status = http.StatusRequestTimeout // the request was still coming
		}
		s.routeReply(status, []byte("upstream max stream duration reached"), nil, details)
		return
	}
	// The response started: the stream is reset, its details (and so
	// its UMSDR flag) the max duration's, as Envoy records them.
	s.info.ResponseCodeDetails = details
	s.reset(details)
}
