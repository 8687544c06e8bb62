package proxywasm

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// ABI enumerations used by the calls below (proxy_map_type_t,
// proxy_buffer_type_t, proxy_stream_type_t, proxy_metric_type_t).
const (
	mapHttpRequestHeaders       = 0
	mapHttpRequestTrailers      = 1
	mapHttpResponseHeaders      = 2
	mapHttpResponseTrailers     = 3
	mapHttpCallResponseHeaders  = 6
	mapHttpCallResponseTrailers = 7

	bufHttpRequestBody      = 0
	bufHttpResponseBody     = 1
	bufDownstreamData       = 2
	bufUpstreamData         = 3
	bufHttpCallResponseBody = 4
	bufVMConfiguration      = 6
	bufPluginConfiguration  = 7

	streamHttpRequest  = 0
	streamHttpResponse = 1
	streamDownstream   = 2
	streamUpstream     = 3

	metricCounter   = 0
	metricGauge     = 1
	metricHistogram = 2
)

func statusToError(status uint32) error { return types.StatusToError(status) }

// ---------------------------------------------------------------------------
// Configuration, timers, context control

// GetVMConfiguration returns the VM configuration (vm_config.configuration
// in Envoy). Intended for VMContext.OnVMStart. An empty configuration is
// reported as types.ErrorStatusNotFound.
func GetVMConfiguration() ([]byte, error) {
	return getBuffer(bufVMConfiguration, 0, math.MaxInt32)
}

// GetPluginConfiguration returns the plugin configuration (the filter's
// config.configuration in Envoy). Available only during
// PluginContext.OnPluginStart. An empty configuration is reported as
// types.ErrorStatusNotFound.
func GetPluginConfiguration() ([]byte, error) {
	return getBuffer(bufPluginConfiguration, 0, math.MaxInt32)
}

// SetTickPeriodMilliSeconds makes the host call PluginContext.OnTick every
// millSec milliseconds on the current plugin context; 0 stops the ticks.
func SetTickPeriodMilliSeconds(millSec uint32) error {
	return statusToError(proxySetTickPeriodMilliseconds(millSec))
}

// SetEffectiveContext makes contextID the context that the following host
// calls act on, until the current callback returns. Use it in OnTick or
// OnQueueReady to act on a stream the plugin context keeps track of.
func SetEffectiveContext(contextID uint32) error {
	return statusToError(proxySetEffectiveContext(contextID))
}

// PluginDone tells the host that a plugin context whose OnPluginDone returned
// false has finished its pending work and may be deleted.
func PluginDone() {
	proxyDone()
}

// ---------------------------------------------------------------------------
// Shared data and shared queues

// GetSharedData returns the value stored under key in the host's shared
// data (shared by every VM with the same vm_id) and its CAS value, to pass
// to SetSharedData for a conditional update.
func GetSharedData(key string) (value []byte, cas uint32, err error) {
	resetResult()
	retU32 = 0
	st := proxyGetSharedData(stringPtr(key), uint32(len(key)),
		unsafe.Pointer(&retData), unsafe.Pointer(&retLen), unsafe.Pointer(&retU32))
	runtime.KeepAlive(key)
	value = takeResult()
	if err := statusToError(st); err != nil {
		return nil, 0, err
	}
	return value, retU32, nil
}

// SetSharedData stores data under key. With cas 0 the write is
// unconditional; otherwise it fails with types.ErrorStatusCasMismatch if the
// value changed since GetSharedData returned cas.
func SetSharedData(key string, data []byte, cas uint32) error {
	st := proxySetSharedData(stringPtr(key), uint32(len(key)), bytesPtr(data), uint32(len(data)), cas)
	runtime.KeepAlive(key)
	runtime.KeepAlive(data)
	return statusToError(st)
}

// RegisterSharedQueue creates (or finds) the shared queue called name in
// this VM's vm_id and makes the current plugin context the one notified
// through OnQueueReady when items are enqueued.
func RegisterSharedQueue(name string) (queueID uint32, err error) {
	retU32 = 0
	st := proxyRegisterSharedQueue(stringPtr(name), uint32(len(name)), unsafe.Pointer(&retU32))
	runtime.KeepAlive(name)
	return retU32, statusToError(st)
}

// ResolveSharedQueue returns the id of the queue queueName registered by a
// VM with the given vmID ("" for this VM's own vm_id).
func ResolveSharedQueue(vmID, queueName string) (queueID uint32, err error) {
	retU32 = 0
	st := proxyResolveSharedQueue(stringPtr(vmID), uint32(len(vmID)),
		stringPtr(queueName), uint32(len(queueName)), unsafe.Pointer(&retU32))
	runtime.KeepAlive(vmID)
	runtime.KeepAlive(queueName)
	return retU32, statusToError(st)
}

// EnqueueSharedQueue appends data to the queue.
func EnqueueSharedQueue(queueID uint32, data []byte) error {
	st := proxyEnqueueSharedQueue(queueID, bytesPtr(data), uint32(len(data)))
	runtime.KeepAlive(data)
	return statusToError(st)
}

// DequeueSharedQueue removes and returns the oldest item of the queue;
// types.ErrorStatusEmpty if there is none.
func DequeueSharedQueue(queueID uint32) ([]byte, error) {
	resetResult()
	st := proxyDequeueSharedQueue(queueID, unsafe.Pointer(&retData), unsafe.Pointer(&retLen))
	data := takeResult()
	if err := statusToError(st); err != nil {
		return nil, err
	}
	if data == nil {
		data = []byte{}
	}
	return data, nil
}

// ---------------------------------------------------------------------------
// HTTP callouts

// DispatchHttpCall sends an HTTP request to the upstream cluster and returns
// at once. headers must contain :method, :path and :authority. When the
// response arrives (or the call fails, with numHeaders 0), callBack runs with
// the dispatching context effective; inside it, GetHttpCallResponseHeaders,
// GetHttpCallResponseBody and GetHttpCallResponseTrailers read the response.
// The callback does not run if the dispatching context was deleted first.
// timeoutMillisecond 0 means no timeout.
func DispatchHttpCall(
	cluster string,
	headers [][2]string,
	body []byte,
	trailers [][2]string,
	timeoutMillisecond uint32,
	callBack func(numHeaders, bodySize, numTrailers int),
) (calloutID uint32, err error) {
	if _, ok := state.rootOf(state.active); !ok {
		return 0, errors.New("proxywasm: DispatchHttpCall called outside a plugin, HTTP or TCP context")
	}
	hs := serializeMap(headers)
	ts := serializeMap(trailers)
	retU32 = 0
	st := proxyHttpCall(stringPtr(cluster), uint32(len(cluster)),
		bytesPtr(hs), uint32(len(hs)), bytesPtr(body), uint32(len(body)),
		bytesPtr(ts), uint32(len(ts)), timeoutMillisecond, unsafe.Pointer(&retU32))
	runtime.KeepAlive(cluster)
	runtime.KeepAlive(hs)
	runtime.KeepAlive(body)
	runtime.KeepAlive(ts)
	if err := statusToError(st); err != nil {
		return 0, err
	}
	calloutID = retU32
	state.registerHttpCallout(calloutID, callBack)
	return calloutID, nil
}

// GetHttpCallResponseHeaders returns the headers of the response to a
// DispatchHttpCall; only inside its callback.
func GetHttpCallResponseHeaders() ([][2]string, error) {
	return getMap(mapHttpCallResponseHeaders)
}

// GetHttpCallResponseBody returns up to maxSize bytes of the response body
// of a DispatchHttpCall, from offset start; only inside its callback.
func GetHttpCallResponseBody(start, maxSize int) ([]byte, error) {
	return getBuffer(bufHttpCallResponseBody, start, maxSize)
}

// GetHttpCallResponseTrailers returns the trailers of the response to a
// DispatchHttpCall; only inside its callback.
func GetHttpCallResponseTrailers() ([][2]string, error) {
	return getMap(mapHttpCallResponseTrailers)
}

// ---------------------------------------------------------------------------
// TCP

// GetDownstreamData returns up to maxSize bytes, from offset start, of the
// data received from downstream. Only during TcpContext.OnDownstreamData.
func GetDownstreamData(start, maxSize int) ([]byte, error) {
	return getBuffer(bufDownstreamData, start, maxSize)
}

// AppendDownstreamData appends data to the buffered downstream data. Only
// during TcpContext.OnDownstreamData.
func AppendDownstreamData(data []byte) error { return appendToBuffer(bufDownstreamData, data) }

// PrependDownstreamData inserts data before the buffered downstream data.
// Only during TcpContext.OnDownstreamData.
func PrependDownstreamData(data []byte) error { return prependToBuffer(bufDownstreamData, data) }

// ReplaceDownstreamData replaces the buffered downstream data with data.
// Only during TcpContext.OnDownstreamData.
func ReplaceDownstreamData(data []byte) error { return replaceBuffer(bufDownstreamData, data) }

// GetUpstreamData returns up to maxSize bytes, from offset start, of the
// data received from upstream. Only during TcpContext.OnUpstreamData.
func GetUpstreamData(start, maxSize int) ([]byte, error) {
	return getBuffer(bufUpstreamData, start, maxSize)
}

// AppendUpstreamData appends data to the buffered upstream data. Only during
// TcpContext.OnUpstreamData.
func AppendUpstreamData(data []byte) error { return appendToBuffer(bufUpstreamData, data) }

// PrependUpstreamData inserts data before the buffered upstream data. Only
// during TcpContext.OnUpstreamData.
func PrependUpstreamData(data []byte) error { return prependToBuffer(bufUpstreamData, data) }

// ReplaceUpstreamData replaces the buffered upstream data with data. Only
// during TcpContext.OnUpstreamData.
func ReplaceUpstreamData(data []byte) error { return replaceBuffer(bufUpstreamData, data) }

// ContinueTcpStream resumes a TCP connection held by ActionPause. (It sends
// proxy_continue_stream with the downstream stream type, as Envoy
// implements no other.)
func ContinueTcpStream() error {
	return statusToError(proxyContinueStream(streamDownstream))
}

// CloseDownstream closes the downstream connection of the current TCP
// context.
func CloseDownstream() error { return statusToError(proxyCloseStream(streamDownstream)) }

// CloseUpstream closes the upstream connection of the current TCP context.
func CloseUpstream() error { return statusToError(proxyCloseStream(streamUpstream)) }

// ---------------------------------------------------------------------------
// HTTP request

// GetHttpRequestHeaders returns all request headers, pseudo-headers
// (:method, :path, :authority, :scheme) included. During
// OnHttpRequestHeaders and OnHttpStreamDone.
func GetHttpRequestHeaders() ([][2]string, error) { return getMap(mapHttpRequestHeaders) }

// ReplaceHttpRequestHeaders replaces all request headers. During
// OnHttpRequestHeaders.
func ReplaceHttpRequestHeaders(headers [][2]string) error {
	return setMap(mapHttpRequestHeaders, headers)
}

// GetHttpRequestHeader returns the first value of the request header key;
// types.ErrorStatusNotFound if absent.
func GetHttpRequestHeader(key string) (string, error) {
	return getMapValue(mapHttpRequestHeaders, key)
}

// ReadHttpRequestHeader appends the first value of the request header
// key to dst and returns the extended slice, like GetHttpRequestHeader
// but without allocating when dst has the capacity: the host copies the
// value straight into dst's spare capacity. Reuse one buffer across
// callbacks (buf = buf[:0]) to read headers with no allocation. On an
// error (types.ErrorStatusNotFound if absent) dst is returned unchanged.
// Not in proxy-wasm-go-sdk; GetHttpRequestHeader is.
func ReadHttpRequestHeader(dst []byte, key string) ([]byte, error) {
	return appendMapValue(dst, mapHttpRequestHeaders, key)
}

// RemoveHttpRequestHeader removes every value of the request header key.
func RemoveHttpRequestHeader(key string) error { return removeMapValue(mapHttpRequestHeaders, key) }

// ReplaceHttpRequestHeader sets the request header key to value, replacing
// its existing values or adding it.
func ReplaceHttpRequestHeader(key, value string) error {
	return replaceMapValue(mapHttpRequestHeaders, key, value)
}

// AddHttpRequestHeader adds a value to the request header key, keeping
// existing values.
func AddHttpRequestHeader(key, value string) error {
	return addMapValue(mapHttpRequestHeaders, key, value)
}

// GetHttpRequestBody returns up to maxSize bytes, from offset start, of the
// request body the host holds. During OnHttpRequestBody.
func GetHttpRequestBody(start, maxSize int) ([]byte, error) {
	return getBuffer(bufHttpRequestBody, start, maxSize)
}

// ReadHttpRequestBody appends up to maxSize bytes, from offset start, of
// the request body the host holds to dst, like GetHttpRequestBody but
// copied by the host straight into dst's spare capacity when it fits, so
// a plugin that keeps one buffer (buf = buf[:0] per body) reads bodies
// with no allocation. On an error dst is returned unchanged. Not in
// proxy-wasm-go-sdk; GetHttpRequestBody is.
func ReadHttpRequestBody(dst []byte, start, maxSize int) ([]byte, error) {
	return appendBuffer(dst, bufHttpRequestBody, start, maxSize)
}

// AppendHttpRequestBody appends data to the held request body. Remove the
// content-length header in OnHttpRequestHeaders when changing the body size.
func AppendHttpRequestBody(data []byte) error { return appendToBuffer(bufHttpRequestBody, data) }

// PrependHttpRequestBody inserts data before the held request body. Remove
// the content-length header in OnHttpRequestHeaders when changing the body
// size.
func PrependHttpRequestBody(data []byte) error { return prependToBuffer(bufHttpRequestBody, data) }

// ReplaceHttpRequestBody replaces the held request body with data. Remove the
// content-length header in OnHttpRequestHeaders when changing the body size.
func ReplaceHttpRequestBody(data []byte) error { return replaceBuffer(bufHttpRequestBody, data) }

// GetHttpRequestTrailers returns all request trailers. During
// OnHttpRequestTrailers and OnHttpStreamDone.
func GetHttpRequestTrailers() ([][2]string, error) { return getMap(mapHttpRequestTrailers) }

// ReplaceHttpRequestTrailers replaces all request trailers. During
// OnHttpRequestTrailers.
func ReplaceHttpRequestTrailers(trailers [][2]string) error {
	return setMap(mapHttpRequestTrailers, trailers)
}

// GetHttpRequestTrailer returns the first value of the request trailer key;
// types.ErrorStatusNotFound if absent.
func GetHttpRequestTrailer(key string) (string, error) {
	return getMapValue(mapHttpRequestTrailers, key)
}

// RemoveHttpRequestTrailer removes every value of the request trailer key.
func RemoveHttpRequestTrailer(key string) error {
	return removeMapValue(mapHttpRequestTrailers, key)
}

// ReplaceHttpRequestTrailer sets the request trailer key to value.
func ReplaceHttpRequestTrailer(key, value string) error {
	return replaceMapValue(mapHttpRequestTrailers, key, value)
}

// AddHttpRequestTrailer adds a value to the request trailer key.
func AddHttpRequestTrailer(key, value string) error {
	return addMapValue(mapHttpRequestTrailers, key, value)
}

// ResumeHttpRequest resumes a request held by ActionPause. The host resumes
// it after the current callback returns.
func ResumeHttpRequest() error { return statusToError(proxyContinueStream(streamHttpRequest)) }

// ---------------------------------------------------------------------------
// HTTP response

// GetHttpResponseHeaders returns all response headers, :status included.
// During OnHttpResponseHeaders and OnHttpStreamDone.
func GetHttpResponseHeaders() ([][2]string, error) { return getMap(mapHttpResponseHeaders) }

// ReplaceHttpResponseHeaders replaces all response headers. During
// OnHttpResponseHeaders.
func ReplaceHttpResponseHeaders(headers [][2]string) error {
	return setMap(mapHttpResponseHeaders, headers)
}

// GetHttpResponseHeader returns the first value of the response header key;
// types.ErrorStatusNotFound if absent.
func GetHttpResponseHeader(key string) (string, error) {
	return getMapValue(mapHttpResponseHeaders, key)
}

// ReadHttpResponseHeader is ReadHttpRequestHeader for the response
// headers.
func ReadHttpResponseHeader(dst []byte, key string) ([]byte, error) {
	return appendMapValue(dst, mapHttpResponseHeaders, key)
}

// RemoveHttpResponseHeader removes every value of the response header key.
func RemoveHttpResponseHeader(key string) error {
	return removeMapValue(mapHttpResponseHeaders, key)
}

// ReplaceHttpResponseHeader sets the response header key to value, replacing
// its existing values or adding it.
func ReplaceHttpResponseHeader(key, value string) error {
	return replaceMapValue(mapHttpResponseHeaders, key, value)
}

// AddHttpResponseHeader adds a value to the response header key, keeping
// existing values.
func AddHttpResponseHeader(key, value string) error {
	return addMapValue(mapHttpResponseHeaders, key, value)
}

// GetHttpResponseBody returns up to maxSize bytes, from offset start, of the
// response body the host holds. During OnHttpResponseBody.
func GetHttpResponseBody(start, maxSize int) ([]byte, error) {
	return getBuffer(bufHttpResponseBody, start, maxSize)
}

// ReadHttpResponseBody is ReadHttpRequestBody for the response body.
func ReadHttpResponseBody(dst []byte, start, maxSize int) ([]byte, error) {
	return appendBuffer(dst, bufHttpResponseBody, start, maxSize)
}

// AppendHttpResponseBody appends data to the held response body. Remove the
// content-length header in OnHttpResponseHeaders when changing the body
// size.
func AppendHttpResponseBody(data []byte) error { return appendToBuffer(bufHttpResponseBody, data) }

// PrependHttpResponseBody inserts data before the held response body.
func PrependHttpResponseBody(data []byte) error {
	return prependToBuffer(bufHttpResponseBody, data)
}

// ReplaceHttpResponseBody replaces the held response body with data.
func ReplaceHttpResponseBody(data []byte) error { return replaceBuffer(bufHttpResponseBody, data) }

// GetHttpResponseTrailers returns all response trailers. During
// OnHttpResponseTrailers and OnHttpStreamDone.
func GetHttpResponseTrailers() ([][2]string, error) { return getMap(mapHttpResponseTrailers) }

// ReplaceHttpResponseTrailers replaces all response trailers. During
// OnHttpResponseTrailers.
func ReplaceHttpResponseTrailers(trailers [][2]string) error {
	return setMap(mapHttpResponseTrailers, trailers)
}

// GetHttpResponseTrailer returns the first value of the response trailer
// key; types.ErrorStatusNotFound if absent.
func GetHttpResponseTrailer(key string) (string, error) {
	return getMapValue(mapHttpResponseTrailers, key)
}

// RemoveHttpResponseTrailer removes every value of the response trailer key.
func RemoveHttpResponseTrailer(key string) error {
	return removeMapValue(mapHttpResponseTrailers, key)
}

// ReplaceHttpResponseTrailer sets the response trailer key to value.
func ReplaceHttpResponseTrailer(key, value string) error {
	return replaceMapValue(mapHttpResponseTrailers, key, value)
}

// AddHttpResponseTrailer adds a value to the response trailer key.
func AddHttpResponseTrailer(key, value string) error {
	return addMapValue(mapHttpResponseTrailers, key, value)
}

// ResumeHttpResponse resumes a response held by ActionPause. The host
// resumes it after the current callback returns.
func ResumeHttpResponse() error { return statusToError(proxyContinueStream(streamHttpResponse)) }

// SendHttpResponse answers the current HTTP stream locally with statusCode,
// headers and body, instead of (or in place of) the upstream's response.
// Return types.ActionPause from the current callback afterwards. gRPCStatus
// adds a grpc-status; pass -1 for none. It cannot be used once response
// headers have been sent downstream.
func SendHttpResponse(statusCode uint32, headers [][2]string, body []byte, gRPCStatus int32) error {
	hs := serializeMap(headers)
	st := proxySendLocalResponse(statusCode, nil, 0, bytesPtr(body), uint32(len(body)),
		bytesPtr(hs), uint32(len(hs)), gRPCStatus)
	runtime.KeepAlive(hs)
	runtime.KeepAlive(body)
	return statusToError(st)
}

// ---------------------------------------------------------------------------
// Properties

// GetProperty returns the raw value of the host property at path, e.g.
// []string{"request", "path"} or []string{"plugin_name"}. The encoding
// depends on the property and the host (Envoy: strings as bytes, integers
// as 8-byte little-endian, maps pair-encoded: use GetPropertyMap for those).
func GetProperty(path []string) ([]byte, error) {
	if len(path) == 0 {
		return nil, errors.New("proxywasm: property path must not be empty")
	}
	p := serializePropertyPath(path)
	resetResult()
	st := proxyGetProperty(bytesPtr(p), uint32(len(p)), unsafe.Pointer(&retData), unsafe.Pointer(&retLen))
	runtime.KeepAlive(p)
	data := takeResult()
	if err := statusToError(st); err != nil {
		return nil, err
	}
	if data == nil {
		data = []byte{}
	}
	return data, nil
}

// GetPropertyMap returns a map-valued property (e.g. request.headers) as
// key/value pairs. A value that is not pair-encoded yields nil pairs.
func GetPropertyMap(path []string) ([][2]string, error) {
	b, err := GetProperty(path)
	if err != nil {
		return nil, err
	}
	return deserializeMap(b), nil
}

// SetProperty sets the host property at path to data (in Envoy, a
// filter-state value readable by later filters and by GetProperty).
func SetProperty(path []string, data []byte) error {
	if len(path) == 0 {
		return errors.New("proxywasm: property path must not be empty")
	}
	p := serializePropertyPath(path)
	st := proxySetProperty(bytesPtr(p), uint32(len(p)), bytesPtr(data), uint32(len(data)))
	runtime.KeepAlive(p)
	runtime.KeepAlive(data)
	return statusToError(st)
}

// ---------------------------------------------------------------------------
// Foreign functions

// CallForeignFunction calls the host-specific function funcName with param
// and returns its result. Which functions exist, and their argument
// encodings, depend on the host.
func CallForeignFunction(funcName string, param []byte) (ret []byte, err error) {
	resetResult()
	st := proxyCallForeignFunction(stringPtr(funcName), uint32(len(funcName)),
		bytesPtr(param), uint32(len(param)), unsafe.Pointer(&retData), unsafe.Pointer(&retLen))
	runtime.KeepAlive(funcName)
	runtime.KeepAlive(param)
	data := takeResult()
	if err := statusToError(st); err != nil {
		return nil, err
	}
	return data, nil
}

// ---------------------------------------------------------------------------
// Logging

func logMessage(level types.LogLevel, msg string) {
	proxyLog(uint32(level), stringPtr(msg), uint32(len(msg)))
	runtime.KeepAlive(msg)
}

// LogTrace logs msg at trace level.
func LogTrace(msg string) { logMessage(types.LogLevelTrace, msg) }

// LogTracef logs a fmt.Sprintf-formatted message at trace level.
func LogTracef(format string, args ...any) {
	logMessage(types.LogLevelTrace, fmt.Sprintf(format, args...))
}

// LogDebug logs msg at debug level.
func LogDebug(msg string) { logMessage(types.LogLevelDebug, msg) }

// LogDebugf logs a fmt.Sprintf-formatted message at debug level.
func LogDebugf(format string, args ...any) {
	logMessage(types.LogLevelDebug, fmt.Sprintf(format, args...))
}

// LogInfo logs msg at info level.
func LogInfo(msg string) { logMessage(types.LogLevelInfo, msg) }

// LogInfof logs a fmt.Sprintf-formatted message at info level.
func LogInfof(format string, args ...any) {
	logMessage(types.LogLevelInfo, fmt.Sprintf(format, args...))
}

// LogWarn logs msg at warn level.
func LogWarn(msg string) { logMessage(types.LogLevelWarn, msg) }

// LogWarnf logs a fmt.Sprintf-formatted message at warn level.
func LogWarnf(format string, args ...any) {
	logMessage(types.LogLevelWarn, fmt.Sprintf(format, args...))
}

// LogError logs msg at error level.
func LogError(msg string) { logMessage(types.LogLevelError, msg) }

// LogErrorf logs a fmt.Sprintf-formatted message at error level.
func LogErrorf(format string, args ...any) {
	logMessage(types.LogLevelError, fmt.Sprintf(format, args...))
}

// LogCritical logs msg at critical level.
func LogCritical(msg string) { logMessage(types.LogLevelCritical, msg) }

// LogCriticalf logs a fmt.Sprintf-formatted message at critical level.
func LogCriticalf(format string, args ...any) {
	logMessage(types.LogLevelCritical, fmt.Sprintf(format, args...))
}

// ---------------------------------------------------------------------------
// Helpers

func getMap(mapType uint32) ([][2]string, error) {
	resetResult()
	st := proxyGetHeaderMapPairs(mapType, unsafe.Pointer(&retData), unsafe.Pointer(&retLen))
	data := takeResult()
	if err := statusToError(st); err != nil {
		return nil, err
	}
	if data == nil {
		return nil, types.ErrorStatusNotFound
	}
	return deserializeMap(data), nil
}

func setMap(mapType uint32, pairs [][2]string) error {
	b := serializeMap(pairs)
	st := proxySetHeaderMapPairs(mapType, bytesPtr(b), uint32(len(b)))
	runtime.KeepAlive(b)
	return statusToError(st)
}

func getMapValue(mapType uint32, key string) (string, error) {
	resetResult()
	st := proxyGetHeaderMapValue(mapType, stringPtr(key), uint32(len(key)),
		unsafe.Pointer(&retData), unsafe.Pointer(&retLen))
	runtime.KeepAlive(key)
	data := takeResult()
	if err := statusToError(st); err != nil {
		return "", err
	}
	return bytesToString(data), nil
}

func addMapValue(mapType uint32, key, value string) error {
	st := proxyAddHeaderMapValue(mapType, stringPtr(key), uint32(len(key)), stringPtr(value), uint32(len(value)))
	runtime.KeepAlive(key)
	runtime.KeepAlive(value)
	return statusToError(st)
}

func replaceMapValue(mapType uint32, key, value string) error {
	st := proxyReplaceHeaderMapValue(mapType, stringPtr(key), uint32(len(key)), stringPtr(value), uint32(len(value)))
	runtime.KeepAlive(key)
	runtime.KeepAlive(value)
	return statusToError(st)
}

func removeMapValue(mapType uint32, key string) error {
	st := proxyRemoveHeaderMapValue(mapType, stringPtr(key), uint32(len(key)))
	runtime.KeepAlive(key)
	return statusToError(st)
}

// getBuffer reads part of a host buffer. Like proxy-wasm-go-sdk it reports a
// buffer for which the host returns no data as types.ErrorStatusNotFound.
// appendMapValue is getMapValue into dst's spare capacity (see into).
func appendMapValue(dst []byte, mapType uint32, key string) ([]byte, error) {
	resetResult()
	beginAppend(dst)
	st := proxyGetHeaderMapValue(mapType, stringPtr(key), uint32(len(key)),
		unsafe.Pointer(&retData), unsafe.Pointer(&retLen))
	runtime.KeepAlive(key)
	dst = appendResult(dst, takeResult())
	return dst, statusToError(st)
}

// appendBuffer is getBuffer into dst's spare capacity (see into).
func appendBuffer(dst []byte, bufferType uint32, start, maxSize int) ([]byte, error) {
	if start < 0 || maxSize < 0 {
		return dst, types.ErrorStatusBadArgument
	}
	resetResult()
	beginAppend(dst)
	st := proxyGetBufferBytes(bufferType, clampU32(start), clampU32(maxSize),
		unsafe.Pointer(&retData), unsafe.Pointer(&retLen))
	data := takeResult()
	if err := statusToError(st); err != nil {
		appendResult(dst, nil)
		return dst, err
	}
	if data == nil {
		appendResult(dst, nil)
		return dst, types.ErrorStatusNotFound
	}
	return appendResult(dst, data), nil
}

func getBuffer(bufferType uint32, start, maxSize int) ([]byte, error) {
	if start < 0 || maxSize < 0 {
		return nil, types.ErrorStatusBadArgument
	}
	resetResult()
	st := proxyGetBufferBytes(bufferType, clampU32(start), clampU32(maxSize),
		unsafe.Pointer(&retData), unsafe.Pointer(&retLen))
	data := takeResult()
	if err := statusToError(st); err != nil {
		return nil, err
	}
	if data == nil {
		return nil, types.ErrorStatusNotFound
	}
	return data, nil
}

// appendToBuffer writes past the end of the buffer (start = MaxInt32, size
// 0), which hosts treat as an append.
func appendToBuffer(bufferType uint32, data []byte) error {
	return setBuffer(bufferType, math.MaxInt32, 0, data)
}

// prependToBuffer inserts at offset 0 without removing anything.
func prependToBuffer(bufferType uint32, data []byte) error {
	return setBuffer(bufferType, 0, 0, data)
}

// replaceBuffer removes everything from offset 0 and inserts data.
func replaceBuffer(bufferType uint32, data []byte) error {
	return setBuffer(bufferType, 0, math.MaxInt32, data)
}

func setBuffer(bufferType, start, size uint32, data []byte) error {
	st := proxySetBufferBytes(bufferType, start, size, bytesPtr(data), uint32(len(data)))
	runtime.KeepAlive(data)
	return statusToError(st)
}

func clampU32(n int) uint32 {
	if uint64(n) > math.MaxInt32 {
		return math.MaxInt32
	}
	return uint32(n)
}
