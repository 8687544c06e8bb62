package proxy

import (
	"context"
	"sync"
	"time"
)

// requestContext is an HTTP/1 request's context: the connection's
// context (parent: its values, its deadline; for an HTTP/2 stream,
// x/net/http2's context of the stream) with the request's own
// cancellation and the request's values (preserve_case's header keys,
// an upgrade), as context.WithCancel and context.WithValue made it. It
// lives in the request's stream (stream.reqCtx; a stream is reused for
// the connection's next request only when nothing else may hold its
// context, recycle.go), so a request's context costs no allocation of
// its own where context.WithCancel costs two.
//
// Only the request's requestCancel cancels it (cancel), which every
// canceller goes through (reqcancel.go). Its Done channel is made by the
// first Done, so a request nobody waits on makes none. It implements
// the AfterFunc method the context package uses to cancel a child
// context (WithCancel, WithDeadline, context.AfterFunc) without a
// goroutine of its own. A parent that can be cancelled (the
// connection's cannot, today) cancels it through context.AfterFunc.
type requestContext struct {
	parent context.Context
	// headerKeys and upgrade answer Value for headerKeysKey and
	// upgradeKey when set (nil: the parent answers).
	headerKeys *headerKeys
	upgrade    *upgrade
	// connInfo is the parent's connInfoKey value, looked up once at init:
	// the stream asks for it several times per request, and each ask
	// walked the connection context's chain of values.
	connInfo *connInfo

	mu sync.Mutex
	// done is made by the first Done, closed by cancel.
	done chan struct{}
	err  error
	// afters are the functions AfterFunc registered, run by cancel.
	afters []*requestAfter
	// stopParent ends the parent's AfterFunc (nil: none).
	stopParent func() bool
	// shared: the context was handed to a waiter (its Done channel was
	// made), a function was registered (AfterFunc: a child context, a
	// watch) or the parent watches it; whoever did may still hold it,
	// so its stream is not recycled (recycle.go).
	shared bool
}

// requestAfter is one AfterFunc registration; it is run or stopped once.
type requestAfter struct{ f func() }

// init makes c a new request's context under parent. c is a new
// requestContext.
func (c *requestContext) init(parent context.Context) {
	c.initCancel(parent, nil)
}

// initCancel is init with parentDone (nil: c's own cancel) as what the
// parent's cancellation runs: an HTTP/2 stream's requestCancel.cancel,
// so that x/net/http2 cancelling the stream (a reset, the connection's
// end) also interrupts the exchange the stream is blocked in, as every
// other canceller of the request does (reqcancel.go).
func (c *requestContext) initCancel(parent context.Context, parentDone func()) {
	c.parent = parent
	c.connInfo, _ = parent.Value(connInfoKey{}).(*connInfo)
	if parent.Done() != nil {
		if parentDone == nil {
			parentDone = c.cancel
		}
		stop := context.AfterFunc(parent, parentDone)
		// Under mu: a parent cancelled already runs parentDone at once,
		// on a goroutine of its own, which reads stopParent (cancel);
		// then there is nothing left to stop.
		c.mu.Lock()
		if c.err == nil {
			c.stopParent = stop
		}
		c.shared = true
		c.mu.Unlock()
	}
}

func (c *requestContext) Deadline() (time.Time, bool) { return c.parent.Deadline() }

func (c *requestContext) Value(key any) any {
	switch key.(type) {
	case headerKeysKey:
		if c.headerKeys != nil {
			return c.headerKeys
		}
	case upgradeKey:
		if c.upgrade != nil {
			return c.upgrade
		}
	case connInfoKey:
		if c.connInfo != nil {
			return c.connInfo
		}
	}
	return c.parent.Value(key)
}

func (c *requestContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.shared = true
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		}
	}
	return c.done
}

func (c *requestContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// cancel cancels the request's context (once): Done closes, Err is
// context.Canceled, and the functions registered with AfterFunc run.
func (c *requestContext) cancel() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = context.Canceled
	if c.done != nil {
		close(c.done)
	}
	afters, stop := c.afters, c.stopParent
	c.afters, c.stopParent = nil, nil
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
	for _, a := range afters {
		a.f()
	}
}

// AfterFunc arranges for f to run once c is cancelled (at once, on its
// own goroutine, when it already is: the context package calls this
// holding a lock f takes); stop unregisters it and reports whether it
// had not run yet. This is the context package's afterFuncer: f cancels
// a child context.
func (c *requestContext) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shared = true
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	a := &requestAfter{f: f}
	c.afters = append(c.afters, a)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, x := range c.afters {
			if x == a {
				c.afters = append(c.afters[:i], c.afters[i+1:]...)
				return true
			}
		}
		return false
	}
}

// isShared reports whether anything but the stream may hold c (shared).
func (c *requestContext) isShared() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shared
}

// String names the context as the context package names its own.
func (c *requestContext) String() string { return "proxy.requestContext" }
