// Package async owns a native filter's background work for one stream
// (an ext_authz check, a rate-limit call, a Lua httpCall): it runs off
// the stream's goroutine with a context the stream's end cancels, and
// its result is applied on the stream's goroutine unless the stream is
// gone by then.
package async

import (
	"context"
	"sync"

	"github.com/wasmproxy/wasmproxy/filter"
)

// Call is one stream's background work; the zero value is ready. A
// stream runs one Call at a time (Go again after the last one posted).
type Call struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	gone   bool
}

// Go runs work on its own goroutine with a context that End cancels;
// the func work returns is then run on the stream's goroutine (Post).
func (c *Call) Go(cb filter.Callbacks, work func(ctx context.Context) (apply func())) {
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	c.cancel = cancel
	c.mu.Unlock()
	go func() {
		defer cancel()
		if apply := work(ctx); apply != nil {
			c.Post(cb, apply)
		}
	}()
}

// Post runs fn on the stream's goroutine when the callbacks can (the
// filter chain engine's queue, filter.Poster); otherwise here, before
// the Continue or local reply that fn asks for is applied, as a Wasm
// callout reply is. Once End was called, fn never runs.
func (c *Call) Post(cb filter.Callbacks, fn func()) {
	c.mu.Lock()
	gone := c.gone
	c.mu.Unlock()
	if gone {
		return
	}
	if p, ok := cb.(filter.Poster); ok {
		p.Post(fn)
		return
	}
	fn()
}

// End marks the stream gone (its OnDestroy) and cancels work in flight.
func (c *Call) End() {
	c.mu.Lock()
	c.gone = true
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}
