package filterchain

import "github.com/wasmproxy/wasmproxy/filter"

// Released reports whether the stream's filters let go of it: Finish
// ran (every OnDestroy returned), no action is queued, and every filter
// the stream made reports filter.Releaser's Released (a filter left out
// of the chain was never made). A filter that is not a Releaser keeps
// the stream, as does any doubt: the owner may then reuse the stream,
// its callbacks, maps and info, for another request (proxy/recycle.go).
func (e *HTTP) Released() bool {
	if !e.finished || e.Pending() {
		return false
	}
	for _, f := range e.filters {
		switch f := f.(type) {
		case skipped:
		case filter.Releaser:
			if !f.Released() {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// Spare is the storage a released stream's engine leaves for the next
// Init of the same owner: the per-filter state, callbacks and filter
// slices, and the filters themselves, which a filter.Renewer factory
// may reuse. It holds no request data (Keep clears it).
type Spare struct {
	st      []filterState
	filters []filter.StreamFilter
	cbs     []callbacks
}

// Keep returns e's storage for Reuse, cleared of the request's data; e
// must be Released. Filters that are not filter.Releasers (left-out
// ones) are dropped; the others stay for a filter.Renewer to reuse.
func (e *HTTP) Keep() Spare {
	clear(e.st[:cap(e.st)])
	clear(e.cbs[:cap(e.cbs)])
	fs := e.filters[:cap(e.filters)]
	for i, f := range fs {
		if _, ok := f.(filter.Releaser); !ok || i >= len(e.filters) {
			fs[i] = nil
		}
	}
	return Spare{st: e.st[:0], filters: e.filters, cbs: e.cbs[:0]}
}

// Reuse gives e, zero, the storage an earlier stream left (Keep), for
// its Init.
func (e *HTTP) Reuse(sp Spare) { e.spare = sp }
