package proxy

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Stream timeouts, as Envoy's connection manager has them:
// stream_idle_timeout (no activity either way), request_timeout (the
// whole request not received, and no response begun) and
// max_stream_duration (the stream's whole life). Each runs on a timer
// goroutine; when one expires it records which, queues the stream's
// answer, and unblocks whatever the stream goroutine may be blocked on
// (a request body read, an upstream exchange in the synchronous mode)
// by cancelling the stream's context and interrupting the body.

// Which stream timeout expired (streamTimers.expired).
const (
	expiredNone int32 = iota
	expiredIdle
	expiredRequest
	expiredMaxDuration
)

type streamTimers struct {
	// cancel cancels the stream's context (stream.ctx).
	cancel context.CancelFunc
	// idle is the stream_idle_timeout; lastActivity the time of the
	// last activity, as monotonic nanoseconds since monoEpoch (one
	// clock read where time.Now takes two: wall and monotonic).
	idle         time.Duration
	lastActivity atomic.Int64
	idleTimer    *time.Timer
	// slot holds idleTimer when it is a pooled one (HTTP/2 streams).
	slot        *idleSlot
	request     *time.Timer
	maxDuration *time.Timer
	// maxAt is when maxDuration fires (zero while it is not armed):
	// a tunnel the stream opens inherits it (tunnelLimits).
	maxAt   time.Time
	expired atomic.Int32
	// mu orders an expiry against stop: once stop returned, no timer
	// touches the stream (or its connection) again.
	mu      sync.Mutex
	stopped bool
}

// bodyInterrupter is a request body whose blocked Read can be ended
// from another goroutine.
type bodyInterrupter interface{ interrupt() }

// startTimers arms the stream's timeouts from the connection manager's
// config and derives the stream's context, unless cancel (not nil)
// already cancels it (HTTP/1: the request's own, made for the stream).
func (s *stream) startTimers(cancel context.CancelFunc) {
	cfg := s.cm.cfg
	if cancel != nil {
		s.timers.cancel = cancel
	} else {
		s.ctx, s.timers.cancel = context.WithCancel(s.ctx)
	}
	if d := cfg.StreamIdleTimeout.D(); d > 0 {
		s.timers.idle = d
		// The stream's start is its first activity: no clock read.
		s.timers.lastActivity.Store(int64(s.info.StartTime.Sub(monoEpoch)))
		// Under mu, which checkIdle reads idleTimer under: the
		// connection's timer may fire for s (a firing armed for the
		// connection's previous stream that runs late finds s) as soon
		// as newIdleTimer hands it s, before the assignment.
		s.timers.mu.Lock()
		s.timers.idleTimer = s.newIdleTimer(d)
		s.timers.mu.Unlock()
	}
	if d := cfg.RequestTimeout.D(); d > 0 {
		s.timers.request = time.AfterFunc(d, func() { s.expire(expiredRequest) })
	}
	if d := cfg.MaxStreamDuration.D(); d > 0 {
		s.timers.maxDuration = time.AfterFunc(d, func() { s.expire(expiredMaxDuration) })
		s.timers.maxAt = s.info.StartTime.Add(d)
	}
}

// newIdleTimer makes the stream's stream_idle_timeout timer, armed for
// d. An HTTP/1 stream borrows its connection's, which serves one stream
// at a time: reset for each stream rather than made, it costs no timer
// and no closure allocation per request.
func (s *stream) newIdleTimer(d time.Duration) *time.Timer {
	if w, ok := s.w.(*h1Response); ok {
		return w.sc.streamIdleTimer(s, d)
	}
	sl := idleSlots.Get().(*idleSlot)
	sl.mu.Lock()
	sl.s = s
	sl.mu.Unlock()
	s.timers.slot = sl
	sl.t.Reset(d)
	return sl.t
}

// idleSlot is a stream_idle_timeout timer that streams without a
// connection timer to borrow (HTTP/2: x/net/http2 runs a connection's
// streams concurrently) take from idleSlots for their life and give
// back at their end (stopTimers): a stream costs no timer and no
// closure allocation for it. As with the HTTP/1 connection's timer, a
// firing meant for the slot's previous stream that runs late finds no
// stream, or the new one with its activity just recorded, which it
// re-arms for the rest of its timeout.
type idleSlot struct {
	t  *time.Timer
	mu sync.Mutex
	s  *stream // the stream the timer is armed for; nil while pooled
}

var idleSlots = sync.Pool{New: func() any {
	sl := &idleSlot{}
	sl.t = time.AfterFunc(time.Hour, sl.fired)
	sl.t.Stop()
	return sl
}}

func (sl *idleSlot) fired() {
	sl.mu.Lock()
	s := sl.s
	sl.mu.Unlock()
	if s != nil {
		s.checkIdle()
	}
}

// streamIdleTimer arms the connection's stream_idle_timeout timer for s
// (newIdleTimer). A firing meant for the previous stream that runs late
// finds that stream stopped, or s with its activity just recorded: it
// acts on neither.
func (sc *serverConn) streamIdleTimer(s *stream, d time.Duration) *time.Timer {
	sc.idleMu.Lock()
	sc.idleStream = s
	sc.idleMu.Unlock()
	if sc.idleTimer == nil {
		sc.idleTimer = time.AfterFunc(d, sc.streamIdleFired)
	} else {
		sc.idleTimer.Reset(d)
	}
	return sc.idleTimer
}

// streamIdleFired checks the stream the connection's timer is armed
// for. The check runs under idleMu: once stopTimers has taken idleMu to let
// go of its stream, no firing is still at work on that stream, which
// may then be recycled for the next request (recycle.go).
func (sc *serverConn) streamIdleFired() {
	sc.idleMu.Lock()
	defer sc.idleMu.Unlock()
	if s := sc.idleStream; s != nil {
		s.checkIdle()
	}
}

// monoEpoch is the origin of the streams' activity times: durations
// since it are read from the monotonic clock alone (time.Since), and
// a time.Now reading (a stream's start) converts to one without reading
// the clock again (Sub of two monotonic readings).
var monoEpoch = time.Now()

// touch records activity on the stream (stream_idle_timeout).
func (s *stream) touch() {
	if s.timers.idle > 0 {
		s.timers.lastActivity.Store(int64(sinceEpoch())) // clock.go
	}
}

// checkIdle runs when the idle timer fires: the stream expires if it saw
// no activity for the whole timeout, else the timer waits for the rest.
func (s *stream) checkIdle() {
	s.timers.mu.Lock()
	idle := s.timers.idle // a route may change it (route_timeouts.go)
	s.timers.mu.Unlock()
	if idle <= 0 {
		return
	}
	since := time.Since(monoEpoch) - time.Duration(s.timers.lastActivity.Load())
	if rest := idle - since; rest > 0 {
		s.timers.mu.Lock()
		if !s.timers.stopped {
			s.timers.idleTimer.Reset(rest)
		}
		s.timers.mu.Unlock()
		return
	}
	s.expire(expiredIdle)
}

// stopRequestTimer disarms request_timeout: the request is complete or
// the response began.
func (s *stream) stopRequestTimer() {
	if s.timers.request != nil {
		s.timers.request.Stop()
	}
}

// expire ends the stream for timeout kind (on a timer goroutine).
func (s *stream) expire(kind int32) {
	t := &s.timers
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped || !t.expired.CompareAndSwap(expiredNone, kind) {
		return
	}
	s.fc.Post(s.onExpired) // queued first: whatever wakes up finds it
	t.cancel()
	if b, ok := s.r.Body.(bodyInterrupter); ok {
		b.interrupt()
	} else if s.r.Body != nil && s.r.Body != http.NoBody && s.r.ProtoMajor == 2 {
		// x/net/http2's request body: closing it ends a blocked Read.
		_ = s.r.Body.Close()
	}
}

// stopTimers disarms every stream timer; after it returns none acts.
func (s *stream) stopTimers() {
	t := &s.timers
	t.mu.Lock()
	t.stopped = true
	t.mu.Unlock()
	for _, tm := range []*time.Timer{t.idleTimer, t.request, t.maxDuration} {
		if tm != nil {
			tm.Stop()
		}
	}
	if w, ok := s.w.(*h1Response); ok {
		// The connection's timer no longer holds on to this stream.
		w.sc.idleMu.Lock()
		if w.sc.idleStream == s {
			w.sc.idleStream = nil
		}
		w.sc.idleMu.Unlock()
	}
	if sl := t.slot; sl != nil {
		// Stopped above; no longer holding on to this stream, the slot
		// serves a next one.
		sl.mu.Lock()
		sl.s = nil
		sl.mu.Unlock()
		t.slot, t.idleTimer = nil, nil
		idleSlots.Put(sl)
	}
	if t.cancel != nil {
		t.cancel()
	}
}

// onExpired answers the stream whose timeout expired: 408 before the
// response began (Envoy's bodies and details), a reset after.
func (s *stream) onExpired() {
	if s.complete {
		return
	}
	var body, details string
	switch s.timers.expired.Load() {
	case expiredIdle:
		s.cm.stats.rqIdleTimeout.Inc()
		body, details = "stream timeout", "stream_idle_timeout"
	case expiredRequest:
		s.cm.stats.rqTimeout.Inc()
		body, details = "request timeout", "request_overall_timeout"
	case expiredMaxDuration:
		s.cm.stats.rqMaxDuration.Inc()
		body, details = "downstream duration timeout", "max_duration_timeout"
	default:
		return
	}
	if s.responseStarted {
		s.reset(details)
		return
	}
	s.sendLocalReply(http.StatusRequestTimeout, []byte(body), nil, details)
}

// expiredTimeout reports whether a stream timeout expired (so that the
// errors its interruption caused are not taken for client or upstream
// failures).
func (s *stream) expiredTimeout() bool { return s.timers.expired.Load() != expiredNone }
