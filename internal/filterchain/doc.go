// Package filterchain is the filter-chain engine: it runs one HTTP
// stream's filters (filter.StreamFilter) or one TCP connection's network
// filters (filter.NetworkFilter) with Envoy's iteration rules, and is the
// filter.Callbacks / filter.NetworkCallbacks the filters talk to. The
// proxy (proxy/stream.go, proxy/tcp_proxy.go) and the plugin test harness
// (wasmtest) both drive it, so a plugin behaves the same in both.
//
// The engine owns where each filter stands (headers, data and trailers
// held, stopped, buffered), the header maps the filters see, and the
// queue of actions filters ask for. What lies outside the chain is the
// owner's, asked through a small host interface (HTTPHost, NetworkHost):
// where data goes after the last filter, local replies and resets, closing,
// and pausing the source when a filter buffers past the limit. An
// observer (HTTPObserver, NetworkObserver) sees the decisions a host's own
// methods do not show, for a harness that explains a stream; the proxy
// passes none.
//
// Every method runs on the owner's goroutine (the stream's or the
// connection's), except the filters' Continue, SendLocalReply, Reset,
// ContinueReading and Close, and Post, which are safe from any goroutine
// and take effect when the owner drains the queue (Drain) between filter
// calls, as Envoy applies a Wasm filter's actions after the callback
// returns.
package filterchain
