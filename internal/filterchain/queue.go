package filterchain

import "sync"

// queue holds the actions posted for the owner's goroutine: a filter's
// continue, local reply, reset or close, and the owner's own (timeouts,
// route cache). Filters post from inside their callbacks or from other
// goroutines (an HTTP call's reply); the owner runs the actions between
// filter calls, so no filter is ever called back while it runs.
type queue struct {
	mu     sync.Mutex
	fns    []func()
	notify chan struct{}
}

func (q *queue) init() { q.notify = make(chan struct{}, 1) }

// Post queues fn for the owner's goroutine and wakes it (Notify). Safe
// from any goroutine, including from inside a filter call.
func (q *queue) Post(fn func()) {
	q.mu.Lock()
	q.fns = append(q.fns, fn)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
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
func (q *queue) Notify() <-chan struct{} { return q.notify }

// take removes and returns the queued actions.
func (q *queue) take() []func() {
	q.mu.Lock()
	fns := q.fns
	q.fns = nil
	q.mu.Unlock()
	return fns
}
