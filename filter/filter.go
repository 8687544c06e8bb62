package filter

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// HeadersStatus is a filter's answer to a headers callback. The values
// are Envoy's FilterHeadersStatus.
type HeadersStatus int

const (
	// HeadersContinue passes the headers to the next filter.
	HeadersContinue HeadersStatus = 0
	// HeadersStopIteration holds the headers but lets body data reach
	// this filter's data callbacks (buffered until the filter continues).
	HeadersStopIteration HeadersStatus = 1
	// HeadersContinueAndEndStream is treated as HeadersContinue, as Envoy
	// does for Wasm filters.
	HeadersContinueAndEndStream HeadersStatus = 2
	// HeadersStopAllIterationAndBuffer holds headers and buffers all body
	// data without calling the data callbacks, failing the stream (413)
	// when the buffer limit is reached.
	HeadersStopAllIterationAndBuffer HeadersStatus = 3
	// HeadersStopAllIterationAndWatermark is like ...AndBuffer but stops
	// reading from the peer at the buffer limit instead of failing.
	HeadersStopAllIterationAndWatermark HeadersStatus = 4
)

// DataStatus is a filter's answer to a body callback (Envoy's
// FilterDataStatus).
type DataStatus int

const (
	// DataContinue passes the data held at this filter onwards.
	DataContinue DataStatus = 0
	// DataStopIterationAndBuffer keeps the data at this filter; the next
	// data callback sees everything buffered so far. Over the buffer limit
	// the stream fails with 413 (request) or 500 (response).
	DataStopIterationAndBuffer DataStatus = 1
	// DataStopIterationAndWatermark buffers like ...AndBuffer but applies
	// back-pressure at the limit instead of failing.
	DataStopIterationAndWatermark DataStatus = 2
	// DataStopIterationNoBuffer drops the data from the chain: the filter
	// took what it wanted.
	DataStopIterationNoBuffer DataStatus = 3
)

// TrailersStatus is a filter's answer to a trailers callback.
type TrailersStatus int

const (
	TrailersContinue      TrailersStatus = 0
	TrailersStopIteration TrailersStatus = 1
)

// Buffer is the body data held at one filter. Filters may read and
// replace its bytes during a data callback.
type Buffer struct {
	Bytes []byte
}

// Len reports the number of bytes held.
func (b *Buffer) Len() int { return len(b.Bytes) }

// StreamFilter sees one HTTP stream. Every method is called from the
// stream's goroutine, one at a time, in Envoy's order: DecodeHeaders,
// DecodeData*, DecodeTrailers?, then EncodeHeaders, EncodeData*,
// EncodeTrailers?, then OnLog and OnDestroy exactly once each.
//
// Decode/encode of a phase is only called if the previous phase reached
// this filter. A filter that was never reached still gets OnLog and
// OnDestroy.
type StreamFilter interface {
	DecodeHeaders(headers *HeaderMap, endStream bool) HeadersStatus
	// DecodeData gets everything held at this filter: after a stop
	// status the proxy keeps the data and calls again with more.
	DecodeData(data *Buffer, endStream bool) DataStatus
	DecodeTrailers(trailers *HeaderMap) TrailersStatus
	EncodeHeaders(headers *HeaderMap, endStream bool) HeadersStatus
	EncodeData(data *Buffer, endStream bool) DataStatus
	// EncodeTrailers (and DecodeTrailers) may add body data ahead of the
	// trailers by appending to the Buffer the filter was last given in
	// that direction's data callback: when trailers continue, data held
	// at the filter goes on first (Envoy's addEncodedData from trailers).
	EncodeTrailers(trailers *HeaderMap) TrailersStatus
	// OnLog runs once the stream is complete (Envoy's access-log hook),
	// before OnDestroy.
	OnLog()
	// OnDestroy releases the filter. No call follows it.
	OnDestroy()
}

// Direction names the half of a stream an action applies to.
type Direction int

const (
	Request  Direction = 0
	Response Direction = 1
)

// Callbacks are the proxy's side of a filter. Methods are safe to call
// from any goroutine; actions take effect on the stream goroutine after
// the filter call in progress returns.
type Callbacks interface {
	// Continue resumes iteration paused by this filter in one direction.
	Continue(dir Direction)
	// SendLocalReply answers the client instead of the upstream. The
	// reply runs through the encode path of the filters already reached.
	// A second local reply on the same stream is ignored. details lands
	// in response code details.
	SendLocalReply(status int, body []byte, headers []Pair, details string)
	// Reset ends the stream abruptly (HTTP/1: close; HTTP/2: RST_STREAM).
	Reset(details string)
	// RequestHeaders returns the request headers, or nil before they exist.
	// Only safe on the stream goroutine.
	RequestHeaders() *HeaderMap
	// ResponseHeaders returns the response headers, or nil.
	ResponseHeaders() *HeaderMap
	// RequestTrailers and ResponseTrailers return the trailers, or nil.
	// AddRequestTrailers creates request trailers when the stream has none;
	// allowed only from the last DecodeData (endStream true). Likewise for
	// AddResponseTrailers.
	RequestTrailers() *HeaderMap
	ResponseTrailers() *HeaderMap
	AddRequestTrailers() *HeaderMap
	AddResponseTrailers() *HeaderMap
	// Info describes the stream for properties and logs.
	Info() *StreamInfo
}

// Factory makes the filter instance for each new stream. It is built
// once per configured filter and shared by every stream.
type Factory interface {
	NewStreamFilter(cb Callbacks) StreamFilter
}

// StreamInfo is what the proxy knows about a stream, for properties
// (request.*, source.*, destination.*, response.*, xds.*) and access
// logs. Fields are set by the proxy on the stream goroutine; counters
// are atomic because they are read from property lookups.
type StreamInfo struct {
	StartTime      time.Time
	Protocol       string // "HTTP/1.0", "HTTP/1.1", "HTTP/2"
	ConnectionID   uint64
	DownstreamAddr netip.AddrPort // client
	LocalAddr      netip.AddrPort // the listener side of the connection
	ListenerName   string
	RouteName      string
	VirtualHost    string
	ClusterName    string
	UpstreamAddr   string
	// UpstreamLocalAddr is the proxy's side of the upstream connection
	// (TCP proxy only).
	UpstreamLocalAddr netip.AddrPort
	// DownstreamTLS and UpstreamTLS describe the TLS sessions; nil when
	// that side is plaintext (connection.* and upstream.* properties).
	DownstreamTLS *TLSInfo
	UpstreamTLS   *TLSInfo

	ResponseCode        int
	ResponseCodeDetails string
	RequestBodyBytes    atomic.Uint64
	ResponseBodyBytes   atomic.Uint64
	RequestHeaderBytes  uint64
	ResponseHeaderBytes uint64
	EndTime             time.Time

	// FilterState holds values filters share on this stream.
	FilterState FilterState
	// DynamicMetadata is what filters record about the stream for those
	// after them, plugins (the `metadata` property) and access logs.
	DynamicMetadata DynamicMetadata
	// Metadata of the matched route, its virtual host and cluster, and the
	// listener: metadata.filter_metadata as namespace → fields (JSON
	// values: string, float64, bool, nil, []any, map[string]any), for the
	// xds.*_metadata properties. Nil when there is none.
	RouteMetadata       map[string]map[string]any
	VirtualHostMetadata map[string]map[string]any
	ClusterMetadata     map[string]map[string]any
	ListenerMetadata    map[string]map[string]any
	// FilterChainName is the listener filter chain's name.
	FilterChainName string
	// PerFilterConfig finds the per-route configs of a filter on the
	// stream's current route and virtual host (typed_per_filter_config);
	// nil before a route is matched.
	PerFilterConfig PerFilterConfigs
}

// PerFilterConfigs looks up typed_per_filter_config entries by the HTTP
// filter's name (http_filters[].name): what the filter's per-route
// parser made of the route's entry and of its virtual host's (nil where
// there is none). Lookups allocate nothing.
type PerFilterConfigs interface {
	PerFilterConfig(filterName string) (route, vhost any)
}
