package proxy

import (
	"context"
	"sync/atomic"
)

// Stream recycling (decisions §79). An HTTP/1 connection serves one
// request at a time, so the stream of a request that ended can serve the
// connection's next request instead of a new one: a proxied keep-alive
// request then allocates nothing, and the Go GC, paced by the bytes
// allocated, runs less often. A stream is recycled only when nothing
// but its connection can still reach it or a pointer into it (its
// request context, header pairs, body store, upstream request): a
// recycled stream something still held would show one request's
// headers, body or context to another. recyclable is the one place that
// decides, and it admits only the plain path: no filters but ones that
// report they let go of the stream (filter.Releaser), no tracing,
// no upgrade, no stream timer but the connection's stream_idle_timeout,
// one synchronous upstream exchange on the pool (or none), and a request
// context nobody waited on or derived a cancellable child from. Every
// other stream is left to the GC, as before.
//
// A connection keeps at most one stream (serverConn.spare): what a
// stream's mistaken reuse could show is the same connection's previous
// request, never another connection's.

// recyclable reports whether s, whose request ended (run returned, the
// handler not aborted), may serve the connection's next request, and
// why not. The reasons are the ways a stream outlives its request:
func (s *stream) recyclable() (ok bool, why string) {
	up := &s.upStore
	switch {
	case s.escaped != "":
		return false, s.escaped
	case !s.complete || s.resetDetails != "":
		return false, "not complete" // reset, panicked or abandoned
	case len(s.chain.factories) > 0 && !s.fc.Released():
		// A filter (a Wasm plugin's context, its callouts, a native
		// filter's goroutine or timer) may still hold the stream's
		// callbacks, header maps, info or context: only filters that
		// report, after their OnDestroy, that they let go of it
		// (filter.Releaser) admit the stream (decisions §81).
		return false, "filters"
	case s.cm.tracer != nil:
		return false, "tracing" // a span holds the request headers
	case s.reqCtx.upgrade != nil:
		return false, "upgrade" // the tunnel's goroutines
	case s.reqCtx.isShared():
		// Something waited on the context (its Done channel: a select,
		// a dial, a pool wait), registered a function or derived a
		// cancellable child (AfterFunc): it may hold it still.
		return false, "context shared"
	case s.body != nil:
		return false, "body goroutine" // readBody holds s.ctx and the body channel
	case s.timers.request != nil || s.timers.maxDuration != nil || s.timers.slot != nil:
		// Their AfterFunc closures hold s; one may be running.
		return false, "stream timers"
	case s.timers.expired.Load() != expiredNone:
		return false, "stream timer expired"
	case s.timeout != nil || s.retryTimer != nil || s.retryHeld != nil:
		return false, "route timers"
	case s.fc.Pending():
		return false, "queued actions"
	case s.upUsed && !up.plain(s):
		return false, "upstream"
	}
	return true, ""
}

// plain reports whether the stream's first upstream request ran the
// plain path: one synchronous attempt on the stream's goroutine through
// the pool's head exchange, on the stream's own context, with nothing
// (mirror, span, upstream filters, retry buffer, context layer, timer,
// body goroutine) that another goroutine or a later request may hold.
func (up *upstreamRequest) plain(s *stream) bool {
	return up.sync && up.finished && up.events == nil && up.attempt == 1 &&
		up.mirror == nil && up.filtered == nil && up.span == nil && up.body == nil &&
		!up.upgrade && !up.streamed && up.replay == nil && up.replayTrailers == nil &&
		up.attemptCancel == nil && up.cancelFn == nil && up.perTryTimer == nil && up.msdTimer == nil &&
		up.ctx == context.Context(&s.reqCtx) && up.baseCtx == context.Context(&s.reqCtx) &&
		up.req == &up.line.req && up.req.Header == nil && up.req.Context() == context.Context(&s.reqCtx)
}

// recycle keeps s, whose request ended, for the connection's next
// request when recyclable allows, cleared of everything the request
// left in it; otherwise s is left to the GC. rc is the connection's
// request cancel, which still points at s's context: it lets go of it
// first, so that no late cancel (the close watch, the body reader, the
// deferred end of the request) reaches the next request's context.
func (sc *serverConn) recycle(s *stream) {
	ok, why := s.recyclable()
	if ok && !sc.reqCancel.release(&s.reqCtx) {
		ok, why = false, "request cancel"
	}
	if f := recycleObserver.Load(); f != nil {
		(*f)(s, ok, why)
	}
	if !ok {
		return
	}
	// The filter chain's slices and its released filters, cleared of
	// the request, serve the next request's chain (filterchain.Keep).
	sp := s.fc.Keep()
	*s = stream{}
	s.fc.Reuse(sp)
	sc.spare = s
}

// takeStream returns the connection's spare stream (cleared by
// recycle), or a new one.
func (sc *serverConn) takeStream() *stream {
	if s := sc.spare; s != nil {
		sc.spare = nil
		return s
	}
	return new(stream)
}

// recycleObserver, when set (tests), is told at the end of each HTTP/1
// request that reaches recycle whether its stream is recycled, and why
// not; s is not cleared yet.
var recycleObserver atomic.Pointer[func(s *stream, recycled bool, why string)]
