package proxytest

import (
	"bytes"
	"errors"
	"slices"
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/internal/hostabi"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/internal/serde"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// The host functions, as the plugin calls them (through package
// hostabi): the emulator's ABI side. Statuses are proxy_status_t values.

const (
	statusOK                  = 0
	statusNotFound            = 1
	statusBadArgument         = 2
	statusSerializationFailed = 3
	statusEmpty               = 7
	statusCasMismatch         = 8
	statusUnimplemented       = 12
)

// Map, buffer and stream types (proxy_map_type_t, proxy_buffer_type_t,
// proxy_stream_type_t).
const (
	mapHttpRequestHeaders          = 0
	mapHttpRequestTrailers         = 1
	mapHttpResponseHeaders         = 2
	mapHttpResponseTrailers        = 3
	mapGrpcReceiveInitialMetadata  = 4
	mapGrpcReceiveTrailingMetadata = 5
	mapHttpCallResponseHeaders     = 6
	mapHttpCallResponseTrailers    = 7

	bufferHttpRequestBody      = 0
	bufferHttpResponseBody     = 1
	bufferDownstreamData       = 2
	bufferUpstreamData         = 3
	bufferHttpCallResponseBody = 4
	bufferGrpcReceiveBuffer    = 5
	bufferVMConfiguration      = 6
	bufferPluginConfiguration  = 7
	bufferCallData             = 8

	streamHttpRequest  = 0
	streamHttpResponse = 1
	streamDownstream   = 2
	streamUpstream     = 3
)

// abiHost is the emulator as a hostabi.Host. It is a type of its own so
// that the host functions' names do not clash with HostEmulator's.
type abiHost struct{ e *hostEmulator }

var _ hostabi.Host = (*abiHost)(nil)

func errStatus(err error) uint32 {
	switch {
	case err == nil:
		return statusOK
	case errors.Is(err, types.ErrorStatusNotFound):
		return statusNotFound
	case errors.Is(err, types.ErrorStatusEmpty):
		return statusEmpty
	case errors.Is(err, types.ErrorStatusCasMismatch):
		return statusCasMismatch
	}
	return statusBadArgument
}

func (h *abiHost) ProxyLog(level uint32, message []byte) uint32 {
	if level > uint32(types.LogLevelCritical) {
		return statusBadArgument
	}
	h.e.log(types.LogLevel(level), string(message))
	return statusOK
}

// ProxyGetLogLevel reports trace: the emulator keeps every message.
func (h *abiHost) ProxyGetLogLevel() (uint32, uint32) {
	return uint32(types.LogLevelTrace), statusOK
}

// ProxySetTickPeriodMilliseconds sets the plugin context's period, from
// whichever context it is called (as in Envoy).
func (h *abiHost) ProxySetTickPeriodMilliseconds(period uint32) uint32 {
	h.e.tickPeriod = period
	return statusOK
}

func (h *abiHost) ProxySetEffectiveContext(contextID uint32) uint32 {
	if !h.e.alive(contextID) {
		return statusBadArgument
	}
	h.e.effective = contextID
	return statusOK
}

// ProxyDone: only a plugin context may say it is done (NOT_FOUND from a
// stream, as in Envoy). The emulator never deletes its plugin context, so
// there is nothing more to do.
func (h *abiHost) ProxyDone() uint32 {
	if h.e.effective != PluginContextID {
		return statusNotFound
	}
	return statusOK
}

func (h *abiHost) ProxyCallForeignFunction(name, args []byte) ([]byte, uint32) {
	f, ok := h.e.foreign[string(name)]
	if !ok {
		return nil, statusNotFound
	}
	return f(slices.Clone(args)), statusOK
}

// --- properties -------------------------------------------------------------

func (h *abiHost) ProxyGetProperty(path []byte) ([]byte, uint32) {
	path = bytes.TrimSuffix(path, []byte{0})
	v, ok := h.e.properties[string(path)]
	if !ok {
		return nil, statusNotFound
	}
	return v, statusOK
}

func (h *abiHost) ProxySetProperty(path, value []byte) uint32 {
	path = bytes.TrimSuffix(path, []byte{0})
	if len(path) == 0 {
		return statusBadArgument
	}
	h.e.properties[string(path)] = slices.Clone(value)
	return statusOK
}

// --- header maps ------------------------------------------------------------

// headerMap returns map t of the current call: a stream map of the
// effective HTTP stream, or a callout map inside its callback; nil when
// unavailable. writable is false for callout maps.
func (h *abiHost) headerMap(t uint32) (m *[][2]string, writable bool) {
	if t >= mapGrpcReceiveInitialMetadata {
		if c := h.e.callouts.current; c != nil {
			if pairs, ok := c.maps[t]; ok {
				return &pairs, false
			}
		}
		return nil, false
	}
	s, ok := h.e.http[h.e.effective]
	if !ok {
		return nil, false
	}
	switch t {
	case mapHttpRequestHeaders:
		return &s.requestHeaders, true
	case mapHttpRequestTrailers:
		return &s.requestTrailers, true
	case mapHttpResponseHeaders:
		return &s.responseHeaders, true
	default:
		return &s.responseTrailers, true
	}
}

// ProxyGetHeaderMapPairs: an unavailable map reads as no data, as in
// Envoy (the SDK reports it as NOT_FOUND). An empty map that exists reads
// as the encoding of no pairs, so the SDK returns an empty list: Envoy
// answers with no data there too, but proxy-wasm-go-sdk's emulator gives
// the empty list and tests rely on it (a plugin reading the headers of a
// request sent without any).
func (h *abiHost) ProxyGetHeaderMapPairs(mapType uint32) ([]byte, uint32) {
	if mapType > mapHttpCallResponseTrailers {
		return nil, statusBadArgument
	}
	m, _ := h.headerMap(mapType)
	if m == nil {
		return nil, statusOK
	}
	return serde.SerializeMap(*m), statusOK
}

// ProxySetHeaderMapPairs replaces the map; a malformed encoding clears
// it, as in Envoy.
func (h *abiHost) ProxySetHeaderMapPairs(mapType uint32, pairs []byte) uint32 {
	m, writable := h.writableMap(mapType)
	if !writable {
		return statusBadArgument
	}
	*m = lowerKeys(serde.DeserializeMap(pairs))
	if *m == nil {
		*m = [][2]string{}
	}
	return statusOK
}

func (h *abiHost) writableMap(mapType uint32) (*[][2]string, bool) {
	if mapType > mapHttpCallResponseTrailers {
		return nil, false
	}
	m, writable := h.headerMap(mapType)
	return m, m != nil && writable
}

func (h *abiHost) ProxyGetHeaderMapValue(mapType uint32, key []byte) ([]byte, uint32) {
	if mapType > mapHttpCallResponseTrailers {
		return nil, statusBadArgument
	}
	m, _ := h.headerMap(mapType)
	if m == nil {
		return nil, statusBadArgument
	}
	k := strings.ToLower(string(key))
	for _, p := range *m {
		if p[0] == k {
			return []byte(p[1]), statusOK
		}
	}
	return nil, statusNotFound
}

func (h *abiHost) ProxyAddHeaderMapValue(mapType uint32, key, value []byte) uint32 {
	m, ok := h.writableMap(mapType)
	if !ok {
		return statusBadArgument
	}
	*m = append(*m, [2]string{strings.ToLower(string(key)), string(value)})
	return statusOK
}

// ProxyReplaceHeaderMapValue sets the first value of key and removes the
// others, or adds the key.
func (h *abiHost) ProxyReplaceHeaderMapValue(mapType uint32, key, value []byte) uint32 {
	m, ok := h.writableMap(mapType)
	if !ok {
		return statusBadArgument
	}
	k := strings.ToLower(string(key))
	out := (*m)[:0:0]
	set := false
	for _, p := range *m {
		if p[0] != k {
			out = append(out, p)
		} else if !set {
			out = append(out, [2]string{k, string(value)})
			set = true
		}
	}
	if !set {
		out = append(out, [2]string{k, string(value)})
	}
	*m = out
	return statusOK
}

func (h *abiHost) ProxyRemoveHeaderMapValue(mapType uint32, key []byte) uint32 {
	m, ok := h.writableMap(mapType)
	if !ok {
		return statusBadArgument
	}
	k := strings.ToLower(string(key))
	*m = slices.DeleteFunc(slices.Clone(*m), func(p [2]string) bool { return p[0] == k })
	return statusOK
}

// --- buffers ----------------------------------------------------------------

// buffer returns buffer t of the current call; writable for bodies and
// connection data. ok is false when it is not available.
func (h *abiHost) buffer(t uint32) (b *[]byte, writable, ok bool) {
	e := h.e
	switch t {
	case bufferHttpRequestBody, bufferHttpResponseBody:
		s, found := e.http[e.effective]
		if !found {
			return nil, false, false
		}
		if t == bufferHttpRequestBody {
			return &s.requestBody, true, true
		}
		return &s.responseBody, true, true
	case bufferDownstreamData, bufferUpstreamData:
		c, found := e.tcp[e.effective]
		if !found {
			return nil, false, false
		}
		if t == bufferDownstreamData {
			return &c.downstream, true, true
		}
		return &c.upstream, true, true
	case bufferHttpCallResponseBody, bufferGrpcReceiveBuffer:
		if c := e.callouts.current; c != nil && c.bufType == t && c.buf != nil {
			return &c.buf, false, true
		}
	case bufferVMConfiguration:
		return &e.vmConfiguration, false, true
	case bufferPluginConfiguration:
		return &e.pluginConfiguration, false, true
	}
	return nil, false, false
}

// ProxyGetBufferBytes clamps the range to the buffer; a start past the end
// reads nothing.
func (h *abiHost) ProxyGetBufferBytes(bufferType, start, maxSize uint32) ([]byte, uint32) {
	if bufferType > bufferCallData {
		return nil, statusBadArgument
	}
	b, _, ok := h.buffer(bufferType)
	if !ok {
		return nil, statusNotFound
	}
	size := uint64(len(*b))
	from, n := min(uint64(start), size), uint64(maxSize)
	if from+n > size {
		n = size - from
	}
	return (*b)[from : from+n], statusOK
}

// ProxySetBufferBytes follows Envoy: start 0 drains size bytes and
// prepends data (so 0, len replaces everything); start at or past the end
// appends; anything else is BAD_ARGUMENT.
func (h *abiHost) ProxySetBufferBytes(bufferType, start, size uint32, data []byte) uint32 {
	if bufferType > bufferCallData {
		return statusBadArgument
	}
	b, writable, ok := h.buffer(bufferType)
	if !ok {
		return statusNotFound
	}
	if !writable {
		return statusBadArgument
	}
	cur := uint64(len(*b))
	switch {
	case start == 0:
		rest := (*b)[min(uint64(size), cur):]
		*b = append(slices.Clone(data), rest...)
	case uint64(start) >= cur:
		*b = append(slices.Clip(*b), data...)
	default:
		return statusBadArgument
	}
	return statusOK
}

// --- stream actions -----------------------------------------------------------

func (h *abiHost) ProxyContinueStream(streamType uint32) uint32 {
	e := h.e
	if streamType > streamUpstream {
		return statusBadArgument
	}
	if s, ok := e.http[e.effective]; ok {
		if streamType <= streamHttpResponse {
			s.action = types.ActionContinue
		}
		return statusOK
	}
	if c, ok := e.tcp[e.effective]; ok {
		switch streamType {
		case streamDownstream:
			c.resumeDownstream()
		case streamUpstream:
			return statusUnimplemented // as in Envoy
		}
		return statusOK
	}
	return statusOK // from the plugin context: nothing to resume
}

func (h *abiHost) ProxyCloseStream(streamType uint32) uint32 {
	e := h.e
	if streamType > streamUpstream {
		return statusBadArgument
	}
	if s, ok := e.http[e.effective]; ok {
		if streamType <= streamHttpResponse {
			s.reset = true
		}
		return statusOK
	}
	if c, ok := e.tcp[e.effective]; ok {
		switch streamType {
		case streamDownstream:
			c.closeDownstream = true
		case streamUpstream:
			c.closeUpstream = true
		}
	}
	return statusOK
}

// ProxySendLocalResponse records the stream's local response; the first
// one wins and later ones are still OK, as in wasmproxy and Envoy.
func (h *abiHost) ProxySendLocalResponse(statusCode uint32, details, body, headers []byte, grpcStatus int32) uint32 {
	s, ok := h.e.http[h.e.effective]
	if !ok {
		return statusBadArgument
	}
	if s.localResponse != nil {
		return statusOK
	}
	r := &LocalHttpResponse{StatusCode: statusCode, StatusCodeDetail: string(details), GRPCStatus: grpcStatus}
	if len(body) > 0 {
		r.Data = slices.Clone(body)
	}
	if m := serde.DeserializeMap(headers); len(m) > 0 {
		r.Headers = lowerKeys(m)
	}
	s.localResponse = r
	return statusOK
}

// --- callouts ---------------------------------------------------------------

// ProxyHttpCall accepts any call, as proxy-wasm-go-sdk's emulator does
// (tests dispatch calls without :method or to clusters they never
// declare); wasmtest checks them as Envoy does.
func (h *abiHost) ProxyHttpCall(upstream, headers, body, trailers []byte, _ uint32, events hostabi.Events) (uint32, uint32) {
	return h.e.startHttpCall(upstream, headers, body, trailers, events), statusOK
}

func (h *abiHost) ProxyGrpcCall(upstream, service, method, metadata, message []byte, timeout uint32, events hostabi.Events) (uint32, uint32) {
	return h.e.startGrpc(tokenGrpcCall, upstream, service, method, metadata, message, timeout, events), statusOK
}

func (h *abiHost) ProxyGrpcStream(upstream, service, method, metadata []byte, events hostabi.Events) (uint32, uint32) {
	return h.e.startGrpc(tokenGrpcStream, upstream, service, method, metadata, nil, 0, events), statusOK
}

// ProxyGrpcSend: BAD_ARGUMENT for a call's token or after end of stream,
// NOT_FOUND for no open stream (wasmproxy's and Envoy's answers).
func (h *abiHost) ProxyGrpcSend(token uint32, message []byte, endOfStream bool) uint32 {
	if token&3 != tokenGrpcStream {
		return statusBadArgument
	}
	c, ok := h.e.callouts.pendingGrpc[token]
	if !ok {
		return statusNotFound
	}
	if c.grpc.HalfClosed {
		return statusBadArgument
	}
	c.grpc.Messages = append(c.grpc.Messages, slices.Clone(message))
	if endOfStream {
		c.grpc.HalfClosed = true
	}
	return statusOK
}

// ProxyGrpcCancel ends a call or stream without further callbacks.
func (h *abiHost) ProxyGrpcCancel(token uint32) uint32 {
	return h.grpcEnd(token, true)
}

// ProxyGrpcClose cancels a call and half-closes a stream.
func (h *abiHost) ProxyGrpcClose(token uint32) uint32 {
	return h.grpcEnd(token, false)
}

func (h *abiHost) grpcEnd(token uint32, cancel bool) uint32 {
	kind := token & 3
	if kind != tokenGrpcCall && kind != tokenGrpcStream {
		return statusBadArgument
	}
	c, ok := h.e.callouts.pendingGrpc[token]
	if !ok {
		return statusNotFound
	}
	if cancel || kind == tokenGrpcCall {
		delete(h.e.callouts.pendingGrpc, token)
		c.grpc.Cancelled, c.grpc.Done = true, true
		return statusOK
	}
	c.grpc.HalfClosed = true
	return statusOK
}

func (h *abiHost) ProxyGetStatus() (uint32, []byte, uint32) {
	return h.e.callouts.statusCode, []byte(h.e.callouts.statusMsg), statusOK
}

// --- shared data and queues ---------------------------------------------------

func (h *abiHost) ProxyGetSharedData(key []byte) ([]byte, uint32, uint32) {
	v, ok := h.e.shared[string(key)]
	if !ok {
		return nil, 0, statusNotFound
	}
	return v.data, v.cas, statusOK
}

func (h *abiHost) ProxySetSharedData(key, value []byte, cas uint32) uint32 {
	return errStatus(h.e.setShared(string(key), value, cas))
}

// ProxyRegisterSharedQueue creates the queue or finds it; the plugin
// context becomes the one notified of new items, even when a stream
// registers it.
func (h *abiHost) ProxyRegisterSharedQueue(name []byte) (uint32, uint32) {
	q := &h.e.queues
	if id, ok := q.byName[string(name)]; ok {
		q.byID[id].registrar = PluginContextID
		return id, statusOK
	}
	id := q.next
	q.next++
	q.byID[id] = &queue{name: string(name), registrar: PluginContextID}
	q.byName[string(name)] = id
	return id, statusOK
}

// ProxyResolveSharedQueue finds a queue by name. The emulator runs one
// VM: every vm_id names it.
func (h *abiHost) ProxyResolveSharedQueue(vmID, name []byte) (uint32, uint32) {
	id, ok := h.e.queues.byName[string(name)]
	if !ok {
		return 0, statusNotFound
	}
	return id, statusOK
}

func (h *abiHost) ProxyEnqueueSharedQueue(queueID uint32, data []byte) uint32 {
	return errStatus(h.e.enqueue(queueID, data))
}

func (h *abiHost) ProxyDequeueSharedQueue(queueID uint32) ([]byte, uint32) {
	v, err := h.e.dequeue(queueID)
	return v, errStatus(err)
}

// --- metrics ----------------------------------------------------------------

func (h *abiHost) ProxyDefineMetric(metricType uint32, name []byte) (uint32, uint32) {
	if metricType > metricHistogram {
		return 0, statusBadArgument
	}
	id, ok := h.e.metrics.define(metricType, string(name))
	if !ok {
		return 0, statusBadArgument
	}
	return id, statusOK
}

// ProxyIncrementMetric: counters take only positive offsets, gauges
// either sign, histograms none (Envoy's rules).
func (h *abiHost) ProxyIncrementMetric(metricID uint32, offset int64) uint32 {
	m, ok := h.e.metrics.byID[metricID]
	if !ok {
		return statusNotFound
	}
	switch m.kind {
	case metricCounter:
		if offset <= 0 {
			return statusBadArgument
		}
	case metricHistogram:
		return statusBadArgument
	}
	m.value += offset
	return statusOK
}

// ProxyRecordMetric: a counter adds, a gauge is set, a histogram records
// a sample (the emulator keeps the last).
func (h *abiHost) ProxyRecordMetric(metricID uint32, value uint64) uint32 {
	m, ok := h.e.metrics.byID[metricID]
	if !ok {
		return statusNotFound
	}
	if m.kind == metricCounter {
		m.value += int64(value)
	} else {
		m.value = int64(value)
	}
	return statusOK
}

// ProxyGetMetric: histograms cannot be read, as in Envoy.
func (h *abiHost) ProxyGetMetric(metricID uint32) (uint64, uint32) {
	m, ok := h.e.metrics.byID[metricID]
	if !ok {
		return 0, statusNotFound
	}
	if m.kind == metricHistogram {
		return 0, statusBadArgument
	}
	return uint64(m.value), statusOK
}
