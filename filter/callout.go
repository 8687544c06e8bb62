package filter

import "context"

// CalloutResponse is the whole answer to a callout (a plugin's
// proxy_http_call): headers with ":status" first, body, trailers.
type CalloutResponse struct {
	Headers  []Pair
	Body     []byte
	Trailers []Pair
}

// UpstreamStream is a streaming request to a cluster (the transport of a
// plugin's gRPC calls and streams). Write and CloseWrite may block on the
// network and are called from one goroutine; Response, Read and Trailers
// from another.
type UpstreamStream interface {
	// Write sends request body bytes.
	Write(p []byte) error
	// CloseWrite ends the request body (half-close).
	CloseWrite() error
	// Response waits for the response headers, ":status" first.
	Response() ([]Pair, error)
	// Read reads the response body; io.EOF at its end.
	Read(p []byte) (int, error)
	// Trailers are the response trailers, valid once Read returned io.EOF.
	Trailers() []Pair
	// Close cancels the stream (a reset when still open).
	Close()
}

// Upstreams reaches the proxy's clusters on behalf of plugins. The
// proxy implements it; the Wasm host calls it from its own goroutines,
// never with a plugin instance locked.
type Upstreams interface {
	// HasCluster reports whether a cluster of that name exists.
	HasCluster(name string) bool
	// HTTPCall sends one request (headers with ":method", ":path",
	// ":authority") to cluster and reads the whole response; ctx bounds
	// it. Like Envoy's async client, a timeout or a failed connection
	// comes back as a local 504 or 503 response; an error means the
	// stream was reset after the response began.
	HTTPCall(ctx context.Context, cluster string, headers []Pair, body []byte, trailers []Pair) (*CalloutResponse, error)
	// OpenStream starts a streaming request to cluster (over HTTP/2 when
	// the cluster is configured for it); ctx cancels it.
	OpenStream(ctx context.Context, cluster string, headers []Pair) (UpstreamStream, error)
}

// Poster is implemented by Callbacks that can run a function on the
// stream's goroutine: fn runs between filter calls, like the actions
// Continue and SendLocalReply ask for, and not at all once the stream
// has ended. A native filter whose callout answers on another goroutine
// posts its work on the stream (header changes) this way.
type Poster interface {
	Post(fn func())
}

// DataAdder is implemented by Callbacks that let a filter add body data
// from its trailers callback, as Envoy's addEncodedData /
// addDecodedData: b is appended to the data held at the calling filter
// in direction dir and, when the trailers continue, goes on ahead of
// them. It works whether or not the filter saw body data before (a
// response of headers then trailers). Call it only from the filter's
// trailers callback, on the stream's goroutine.
type DataAdder interface {
	AddData(dir Direction, b []byte)
}

// RouteCacheClearer is implemented by Callbacks whose stream can match
// its route again, as Envoy's clearRouteCache: the route is matched anew
// with the request headers as they are then, before the next filter (or
// the router) uses it. A filter's edit of the request headers does not
// change the route by itself; a filter that should reroute (Wasm and
// Lua on every request header edit, as in Envoy) calls this. Safe from
// any goroutine.
type RouteCacheClearer interface {
	ClearRouteCache()
}

// BufferLimiter is implemented by Callbacks that let a filter set the
// stream's buffer limit in one direction, as Envoy's
// setDecoderBufferLimit / setEncoderBufferLimit: data held at a filter
// beyond limit bytes fails the stream (413 for the request, 500 for the
// response) or, in watermark mode, pauses the source. Call it from a
// filter callback (the stream's goroutine), before data is held.
type BufferLimiter interface {
	SetBufferLimit(dir Direction, limit int)
}
