package filterchain

import "sync"

// queue holds the actions posted for the owner's goroutine: a filter's
// continue, local reply, reset or close, and the owner's own (timeouts,
// route cache). Filters post from inside their callbacks or from other
// goroutines (an HTTP call's reply); the owner runs the actions between
// filter calls, so no filter is ever called back while it runs.
type queue struct {
	mu  sync.Mutex
	fns []func()
	// notify is made, under mu, by the first Post or Notify: a stream
	// that never waits (a request and response handled without
	// blocking in a select, the common HTTP/1 case) makes none, one
	// allocation fewer per request.
	notify chan struct{}
}

// init readies q for a new owner. Under mu: a timer of the owner's may
// already Post (a stream's idle timeout firing while the stream is
// being built).
func (q *queue) init() {
	q.mu.Lock()
	q.notify = nil
	q.mu.Unlock()
}

// notifyLocked returns the notify channel, made if need be; q.mu held.
func (q *queue) notifyLocked() chan struct{} {
	if q.notify == nil {
		q.notify = make(chan struct{}, 1)
	}
	return q.notify
}

// Post queues fn for the owner's goroutine and wakes it (Notify). Safe
// from any goroutine, including from inside a filter call.
func (q *queue) Post(fn func()) {
	q.mu.Lock()
	q.fns = append(q.fns, fn)
	ch := q.notifyLocked()
	q.mu.Unlock()
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Pending reports queued actions.
func (q *queue) Pending() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.fns) > 0
}

// Notify receives a value after Post; the owner selects on it while it
// waits for I/O.
func (q *queue) Notify() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.notifyLocked()
}

// take removes and returns the queued actions.
func (q *queue) take() []func() {
	q.mu.Lock()
	fns := q.fns
	q.fns = nil
	q.mu.Unlock()
	return fns
}
