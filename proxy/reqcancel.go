package proxy

import (
	"context"
	"sync"
)

// requestCancel cancels an HTTP/1 connection's current request: its
// context, then the upstream exchange the stream goroutine is blocked
// in, if any. It is the connection's (serverConn.reqCancel), reset for
// each request (an HTTP/2 stream has one of its own, stream.h2Cancel), and cancel is handed out as the request's cancel func
// (a method value made once per connection), so a request costs no
// allocation for it: the pool's synchronous exchange registers its
// connection's close here (watch) where it would otherwise register a
// context.AfterFunc on the request's context (4 allocations, and the
// context's Done channel).
//
// Every canceller of the request's context goes through cancel (the
// connection's close watch, the body reader, the stream's timers, the
// end of the request), so what the AfterFunc saw, the watch sees.
type requestCancel struct {
	mu sync.Mutex
	// ctx is the current request's context (in its stream, reqctx.go).
	ctx *requestContext
	// interrupt ends the exchange being watched (nil: none).
	interrupt func()
	// done: the request was cancelled; a later watch fails.
	done bool
	// fn is cancel as a func value, made once.
	fn context.CancelFunc
}

// reset starts the watch of a new request whose context is ctx, and
// returns the request's cancel func.
func (r *requestCancel) reset(ctx *requestContext) context.CancelFunc {
	r.mu.Lock()
	r.ctx, r.interrupt, r.done = ctx, nil, false
	if r.fn == nil {
		r.fn = r.cancel
	}
	r.mu.Unlock()
	return r.fn
}

// cancel cancels the request's context first (an exchange that fails
// for the interruption then finds its context's error), then interrupts
// the watched exchange.
func (r *requestCancel) cancel() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done = true
	if r.ctx != nil {
		r.ctx.cancel()
	}
	if r.interrupt != nil {
		r.interrupt()
		r.interrupt = nil
	}
}

// release lets go of ctx, the request's context, once its request
// ended and its stream is recycled: a later cancel (the close watch, the
// body reader, the end of serveRequest) no longer reaches it. false:
// ctx is not the current request's (nothing is released).
func (r *requestCancel) release(ctx *requestContext) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx != ctx {
		return false
	}
	r.ctx = nil
	return true
}

// watch registers interrupt for the exchange that starts; false: the
// request is already cancelled (interrupt is not kept).
func (r *requestCancel) watch(interrupt func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return false
	}
	r.interrupt = interrupt
	return true
}

// unwatch ends the watch of the exchange: once it returns, interrupt
// is not called.
func (r *requestCancel) unwatch() {
	r.mu.Lock()
	r.interrupt = nil
	r.mu.Unlock()
}

// requestCancel returns the request's cancel, through which the pool
// interrupts the stream's upstream exchange: the HTTP/1 connection's,
// an HTTP/2 stream's own (stream.h2Cancel, serveH2Stream); nil for a
// stream of another kind.
func (s *stream) requestCancel() *requestCancel {
	if w, ok := s.w.(*h1Response); ok {
		return &w.sc.reqCancel
	}
	if s.h2Cancel.fn != nil {
		return &s.h2Cancel
	}
	return nil
}
