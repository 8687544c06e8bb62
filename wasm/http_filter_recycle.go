package wasm

import "github.com/wasmproxy/wasmproxy/filter"

// Released implements filter.Releaser: after OnDestroy, the stream's
// context is out of its instance (proxy_on_delete ran, or the guest
// never saw the stream), so nothing in the host reaches this filter any
// more: callout and gRPC responses, ticks, queues and foreign functions
// reach a stream only through inst.streams by context id
// (proxy_set_effective_context), ids are never reused within an
// instance, and the instance's current and pending streams are cleared
// when each guest call returns. What the guest keeps of the context in
// its own memory is the guest's, and names an id no later stream gets.
// Whatever OnDestroy left undone (it was not called, an action is
// still queued, a reply not applied) keeps the stream.
func (f *httpFilter) Released() bool {
	return f.recorded && (!f.created || f.deleted) && !f.queued && f.reply == nil && f.reset == "" &&
		!f.continueReq && !f.continueResp && !f.inCallback
}

// RenewStreamFilter implements filter.Renewer: a released httpFilter of
// an earlier stream on the same connection serves the new stream,
// cleared whole, instead of a new one.
func (p *Plugin) RenewStreamFilter(prev filter.StreamFilter, cb filter.Callbacks) filter.StreamFilter {
	f, ok := prev.(*httpFilter)
	if !ok || !f.Released() {
		return p.NewStreamFilter(cb)
	}
	*f = httpFilter{plugin: p, cb: cb}
	return f
}
