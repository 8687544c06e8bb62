package wasm

import (
	"testing"

	"github.com/wasmproxy/wasmproxy/filter"
)

// TestHTTPFilterReleasedAfterDelete: a stream's Wasm filter reports it
// let go of the stream (filter.Releaser) only once OnDestroy deleted its
// context in the instance, not while the stream runs; a released filter
// renewed for the next stream starts cleared, bound to the new
// callbacks, under a context id of its own; a filter that is not
// released is never renewed.
func TestHTTPFilterReleasedAfterDelete(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, goPlugin(t, "headers"))
	s := newStream(p)
	if s.StreamFilter.(filter.Releaser).Released() {
		t.Fatal("a new filter reports released before its stream ended")
	}
	s.decodeHeaders(true, ":path", "/a", "x-in", "first")
	f := s.StreamFilter.(*httpFilter)
	firstID := f.id
	if f.Released() {
		t.Fatal("a running stream's filter reports released")
	}
	inst := f.inst
	if got := p.RenewStreamFilter(f, &fakeCallbacks{}); got == filter.StreamFilter(f) {
		t.Fatal("a filter not released was renewed")
	}
	s.finish()
	if !f.Released() {
		t.Fatal("the filter does not report released after proxy_on_delete")
	}
	inst.mu.Lock()
	still := inst.streams.get(firstID) != nil
	inst.mu.Unlock()
	if still {
		t.Fatal("the released filter's context is still in its instance")
	}

	cb := &fakeCallbacks{}
	got := p.RenewStreamFilter(f, cb)
	if got != filter.StreamFilter(f) {
		t.Fatal("a released filter was not renewed")
	}
	if f.cb != filter.Callbacks(cb) || f.created || f.deleted || f.recorded || f.inst != nil || f.headers != nil || f.spent != 0 {
		t.Fatalf("the renewed filter keeps its earlier stream's state: %+v", f)
	}
	s2 := &stream{StreamFilter: got, cb: cb}
	s2.decodeHeaders(true, ":path", "/b", "x-in", "second")
	if f.id == firstID {
		t.Fatalf("the renewed filter's stream reuses context id %d", firstID)
	}
	if v, _ := cb.reqHeaders.Get("x-seen"); v != "second" {
		t.Fatalf("the renewed stream's x-seen %q, want its own x-in", v)
	}
	s2.finish()
	if !f.Released() {
		t.Fatal("the renewed filter is not released after its second stream")
	}
	if got := p.RenewStreamFilter(filter.PassThrough{}, &fakeCallbacks{}); got == nil {
		t.Fatal("no filter for a stream whose previous filter was another kind")
	} else if _, ok := got.(*httpFilter); !ok {
		t.Fatalf("a %T for a Wasm stream", got)
	}
}
