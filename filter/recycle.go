package filter

// Releaser is implemented by a StreamFilter that can tell, once its
// OnDestroy has returned, that nothing it started still holds its
// stream: no goroutine, timer, callout, foreign function or guest
// context keeps the filter, its Callbacks, the header maps, buffers or
// StreamInfo it was given. Released is asked on the stream's goroutine
// after OnDestroy; true lets the proxy reuse the stream (its Callbacks,
// maps and info) for the connection's next request, so a wrong true
// would show one request's data to the next: answer false whenever
// unsure. A filter that does not implement Releaser keeps its stream
// from being reused.
type Releaser interface {
	Released() bool
}

// Renewer is implemented by a Factory whose filters can serve another
// stream. RenewStreamFilter returns the filter for the stream of cb, as
// NewStreamFilter does, and may reuse prev for it: a filter this or
// another factory made for an earlier stream of the same connection,
// which reported Released. A factory that cannot reuse prev makes a new
// filter.
type Renewer interface {
	RenewStreamFilter(prev StreamFilter, cb Callbacks) StreamFilter
}
