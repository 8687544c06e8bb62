// Package hostabi is the seam between package proxywasm built natively
// (any GOOS but wasip1) and a host emulated in Go (package proxytest).
//
// In a Wasm build, proxywasm imports the Proxy-Wasm host functions from
// the "env" module and exports the guest callbacks. Natively there is no
// Wasm host: proxywasm's stand-ins for the imports call the Host
// registered here (and fail with UNIMPLEMENTED when none is), and
// proxywasm fills Native with its callbacks so that the emulator can call
// the plugin as a host would. Only non-wasip1 files of proxywasm import
// this package, so a plugin built for wasip1 never links it.
//
// Host speaks the ABI in Go values instead of guest memory: byte slices
// for (pointer, length) arguments, results returned instead of written
// through out-pointers, and the proxy_status_t as a uint32. Slices passed
// to a Host are only valid during the call. Runners of compiled modules
// (github.com/wasmproxy/wasmproxy/wasmtest/proxytest) wire a module's
// imports to the same Host, so native and compiled plugins meet one
// emulated host.
package hostabi

import "sync"

// Host implements the Proxy-Wasm host functions (ABI 0.2.1), one method
// per function, named after it.
type Host interface {
	ProxyLog(level uint32, message []byte) uint32
	ProxyGetLogLevel() (level, status uint32)
	ProxySetTickPeriodMilliseconds(period uint32) uint32
	ProxySetEffectiveContext(contextID uint32) uint32
	ProxyDone() uint32
	ProxyCallForeignFunction(name, args []byte) ([]byte, uint32)

	ProxyGetProperty(path []byte) ([]byte, uint32)
	ProxySetProperty(path, value []byte) uint32

	// Maps travel in the header-pair encoding of the spec.
	ProxyGetHeaderMapPairs(mapType uint32) ([]byte, uint32)
	ProxySetHeaderMapPairs(mapType uint32, pairs []byte) uint32
	ProxyGetHeaderMapValue(mapType uint32, key []byte) ([]byte, uint32)
	ProxyAddHeaderMapValue(mapType uint32, key, value []byte) uint32
	ProxyReplaceHeaderMapValue(mapType uint32, key, value []byte) uint32
	ProxyRemoveHeaderMapValue(mapType uint32, key []byte) uint32

	ProxyGetBufferBytes(bufferType, start, maxSize uint32) ([]byte, uint32)
	ProxySetBufferBytes(bufferType, start, size uint32, data []byte) uint32

	ProxyContinueStream(streamType uint32) uint32
	ProxyCloseStream(streamType uint32) uint32
	ProxySendLocalResponse(statusCode uint32, details, body, headers []byte, grpcStatus int32) uint32

	// The callouts take the Events that receive their replies; nil
	// means the plugin running natively (Native).
	ProxyHttpCall(upstream, headers, body, trailers []byte, timeoutMilliseconds uint32, events Events) (token, status uint32)
	ProxyGrpcCall(upstream, service, method, metadata, message []byte, timeoutMilliseconds uint32, events Events) (token, status uint32)
	ProxyGrpcStream(upstream, service, method, metadata []byte, events Events) (token, status uint32)
	ProxyGrpcSend(token uint32, message []byte, endOfStream bool) uint32
	ProxyGrpcCancel(token uint32) uint32
	ProxyGrpcClose(token uint32) uint32
	ProxyGetStatus() (code uint32, message []byte, status uint32)

	ProxyGetSharedData(key []byte) (value []byte, cas, status uint32)
	ProxySetSharedData(key, value []byte, cas uint32) uint32
	ProxyRegisterSharedQueue(name []byte) (queueID, status uint32)
	ProxyResolveSharedQueue(vmID, name []byte) (queueID, status uint32)
	ProxyEnqueueSharedQueue(queueID uint32, data []byte) uint32
	ProxyDequeueSharedQueue(queueID uint32) ([]byte, uint32)

	ProxyDefineMetric(metricType uint32, name []byte) (metricID, status uint32)
	ProxyIncrementMetric(metricID uint32, offset int64) uint32
	ProxyRecordMetric(metricID uint32, value uint64) uint32
	ProxyGetMetric(metricID uint32) (value uint64, status uint32)
}

// Events receive the replies to the callouts of a plugin that does not
// run natively: the callbacks a compiled module exports for them.
type Events interface {
	ProxyOnHttpCallResponse(rootContextID, token, numHeaders, bodySize, numTrailers uint32)
	ProxyOnGrpcReceiveInitialMetadata(rootContextID, token, numElements uint32)
	ProxyOnGrpcReceive(rootContextID, token, messageSize uint32)
	ProxyOnGrpcReceiveTrailingMetadata(rootContextID, token, numElements uint32)
	ProxyOnGrpcClose(rootContextID, token, grpcStatus uint32)
}

// Guest is the plugin side as a host sees it: the guest callbacks of the
// ABI. Reset forgets every context and the registered VMContext, as a
// fresh VM would.
type Guest struct {
	OnContextCreate               func(contextID, parentContextID uint32)
	OnVMStart                     func(rootContextID, vmConfigurationSize uint32) bool
	OnConfigure                   func(rootContextID, pluginConfigurationSize uint32) bool
	OnTick                        func(rootContextID uint32)
	OnQueueReady                  func(rootContextID, queueID uint32)
	OnDone                        func(contextID uint32) bool
	OnLog                         func(contextID uint32)
	OnDelete                      func(contextID uint32)
	OnNewConnection               func(contextID uint32) uint32
	OnDownstreamData              func(contextID, dataSize uint32, endOfStream bool) uint32
	OnDownstreamConnectionClose   func(contextID, peerType uint32)
	OnUpstreamData                func(contextID, dataSize uint32, endOfStream bool) uint32
	OnUpstreamConnectionClose     func(contextID, peerType uint32)
	OnRequestHeaders              func(contextID, numHeaders uint32, endOfStream bool) uint32
	OnRequestBody                 func(contextID, bodySize uint32, endOfStream bool) uint32
	OnRequestTrailers             func(contextID, numTrailers uint32) uint32
	OnResponseHeaders             func(contextID, numHeaders uint32, endOfStream bool) uint32
	OnResponseBody                func(contextID, bodySize uint32, endOfStream bool) uint32
	OnResponseTrailers            func(contextID, numTrailers uint32) uint32
	OnHttpCallResponse            func(rootContextID, token, numHeaders, bodySize, numTrailers uint32)
	OnGrpcReceiveInitialMetadata  func(rootContextID, token, numElements uint32)
	OnGrpcReceive                 func(rootContextID, token, messageSize uint32)
	OnGrpcReceiveTrailingMetadata func(rootContextID, token, numElements uint32)
	OnGrpcClose                   func(rootContextID, token, grpcStatus uint32)
	Reset                         func()
}

// Native is package proxywasm's own Guest, set by its native build.
var Native Guest

var (
	mu   sync.Mutex
	host Host
)

// Register makes h the host that native host calls reach; nil
// unregisters it.
func Register(h Host) {
	mu.Lock()
	host = h
	mu.Unlock()
}

// Current returns the registered host, or nil.
func Current() Host {
	mu.Lock()
	defer mu.Unlock()
	return host
}
