package loader

import "github.com/wasmproxy/wasmproxy/filter"

// The fallbacks stand in for a plugin whose remote code could not be
// fetched at start-up, by its failure policy, as Envoy does for a VM
// that could not be loaded and Istio's agent for a module it could not
// pull.

// passThrough is an HTTP plugin under FAIL_OPEN: the filter is skipped.
type passThrough struct{}

func (passThrough) NewStreamFilter(filter.Callbacks) filter.StreamFilter { return filter.PassThrough{} }

// failClosed is an HTTP plugin under any other policy: every request
// gets Envoy's FAIL_CLOSED reply, 503 with details wasm_fail_stream.
type failClosed struct{}

func (failClosed) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &failClosedFilter{cb: cb}
}

type failClosedFilter struct {
	filter.PassThrough
	cb filter.Callbacks
}

func (f *failClosedFilter) DecodeHeaders(*filter.HeaderMap, bool) filter.HeadersStatus {
	f.cb.SendLocalReply(503, nil, nil, "wasm_fail_stream")
	return filter.HeadersStopIteration
}

// networkFallback is a network plugin: connections go through
// (FAIL_OPEN) or, with deny, are closed.
type networkFallback struct{ deny bool }

func (n networkFallback) NewNetworkFilter(cb filter.NetworkCallbacks) filter.NetworkFilter {
	return &fallbackConn{cb: cb, deny: n.deny}
}

type fallbackConn struct {
	cb   filter.NetworkCallbacks
	deny bool
}

func (c *fallbackConn) OnNewConnection() filter.NetworkStatus {
	if c.deny {
		c.cb.Close("wasm_plugin_unavailable")
		return filter.NetworkStopIteration
	}
	return filter.NetworkContinue
}

func (c *fallbackConn) OnDownstreamData(*filter.Buffer, bool) filter.NetworkStatus {
	if c.deny {
		return filter.NetworkStopIteration
	}
	return filter.NetworkContinue
}

func (c *fallbackConn) OnUpstreamData(*filter.Buffer, bool) filter.NetworkStatus {
	return filter.NetworkContinue
}

func (c *fallbackConn) OnUpstreamClose(filter.PeerType)   {}
func (c *fallbackConn) OnDownstreamClose(filter.PeerType) {}
func (c *fallbackConn) OnDestroy()                        {}
