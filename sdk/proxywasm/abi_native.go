//go:build !wasip1

package proxywasm

import (
	"unsafe"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/internal/hostabi"
)

// Outside GOOS=wasip1 there is no Proxy-Wasm host: these stand-ins for the
// "env" imports of abi_wasip1.go let the package compile, vet and
// unit-test natively. Each calls the host registered in package hostabi
// (the emulator of package proxytest) and fails with status 12
// (UNIMPLEMENTED) when there is none. They exist only in non-wasip1
// builds, so a host function missing from abi_wasip1.go is still a compile
// error in a Wasm build, and a Wasm build never links hostabi.
//
// Results come back the way a Wasm host hands them over: copied into a
// buffer from allocateForHost (proxy_on_memory_allocate) whose address
// and length are written to the out-parameters, so takeResult and the
// rest of the SDK run the same code natively as in Wasm.

const statusUnimplemented = 12

func init() {
	hostabi.Native = hostabi.Guest{
		OnContextCreate:               onContextCreate,
		OnVMStart:                     onVMStart,
		OnConfigure:                   onConfigure,
		OnTick:                        onTick,
		OnQueueReady:                  onQueueReady,
		OnDone:                        onDone,
		OnLog:                         onLog,
		OnDelete:                      onDelete,
		OnNewConnection:               onNewConnection,
		OnDownstreamData:              onDownstreamData,
		OnDownstreamConnectionClose:   onDownstreamConnectionClose,
		OnUpstreamData:                onUpstreamData,
		OnUpstreamConnectionClose:     onUpstreamConnectionClose,
		OnRequestHeaders:              onRequestHeaders,
		OnRequestBody:                 onRequestBody,
		OnRequestTrailers:             onRequestTrailers,
		OnResponseHeaders:             onResponseHeaders,
		OnResponseBody:                onResponseBody,
		OnResponseTrailers:            onResponseTrailers,
		OnHttpCallResponse:            onHttpCallResponse,
		OnGrpcReceiveInitialMetadata:  onGrpcReceiveInitialMetadata,
		OnGrpcReceive:                 onGrpcReceive,
		OnGrpcReceiveTrailingMetadata: onGrpcReceiveTrailingMetadata,
		OnGrpcClose:                   onGrpcClose,
		Reset: func() {
			state = newVMState()
			releaseHostBufs()
		},
	}
}

// in views an input argument; nil for an empty one.
func in(p unsafe.Pointer, n uint32) []byte {
	if p == nil || n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(p), n)
}

// out hands data to the SDK as a host does: an empty result writes no
// pointer (0/0), anything else is copied into host-allocated memory.
func out(data []byte, retData, retLen unsafe.Pointer) {
	if len(data) == 0 {
		*(**byte)(retData) = nil
		*(*uint32)(retLen) = 0
		return
	}
	p := allocateForHost(uint32(len(data)))
	copy(unsafe.Slice(p, len(data)), data)
	*(**byte)(retData) = p
	*(*uint32)(retLen) = uint32(len(data))
}

func putU32(p unsafe.Pointer, v uint32) { *(*uint32)(p) = v }

func proxyLog(level uint32, msg unsafe.Pointer, msgLen uint32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxyLog(level, in(msg, msgLen))
}

func proxySetTickPeriodMilliseconds(period uint32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxySetTickPeriodMilliseconds(period)
}

func proxySetEffectiveContext(contextID uint32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxySetEffectiveContext(contextID)
}

func proxyDone() uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxyDone()
}

func proxyContinueStream(streamType uint32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxyContinueStream(streamType)
}

func proxyCloseStream(streamType uint32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxyCloseStream(streamType)
}

func proxyIncrementMetric(metricID uint32, offset int64) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxyIncrementMetric(metricID, offset)
}

func proxyRecordMetric(metricID uint32, value uint64) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxyRecordMetric(metricID, value)
}

func proxyGetMetric(metricID uint32, retValue unsafe.Pointer) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	v, st := h.ProxyGetMetric(metricID)
	if st == 0 {
		*(*uint64)(retValue) = v
	}
	return st
}

func proxyEnqueueSharedQueue(queueID uint32, data unsafe.Pointer, dataLen uint32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxyEnqueueSharedQueue(queueID, in(data, dataLen))
}

func proxyCallForeignFunction(name unsafe.Pointer, nameLen uint32, args unsafe.Pointer, argsLen uint32, retData unsafe.Pointer, retLen unsafe.Pointer) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	res, st := h.ProxyCallForeignFunction(in(name, nameLen), in(args, argsLen))
	if st == 0 {
		out(res, retData, retLen)
	}
	return st
}

func proxyGetProperty(path unsafe.Pointer, pathLen uint32, retData unsafe.Pointer, retLen unsafe.Pointer) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	v, st := h.ProxyGetProperty(in(path, pathLen))
	if st == 0 {
		out(v, retData, retLen)
	}
	return st
}

func proxySetProperty(path unsafe.Pointer, pathLen uint32, value unsafe.Pointer, valueLen uint32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxySetProperty(in(path, pathLen), in(value, valueLen))
}

func proxyGetHeaderMapPairs(mapType uint32, retData unsafe.Pointer, retLen unsafe.Pointer) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	v, st := h.ProxyGetHeaderMapPairs(mapType)
	if st == 0 {
		out(v, retData, retLen)
	}
	return st
}

func proxySetHeaderMapPairs(mapType uint32, data unsafe.Pointer, dataLen uint32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxySetHeaderMapPairs(mapType, in(data, dataLen))
}

func proxyGetHeaderMapValue(mapType uint32, key unsafe.Pointer, keyLen uint32, retData unsafe.Pointer, retLen unsafe.Pointer) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	v, st := h.ProxyGetHeaderMapValue(mapType, in(key, keyLen))
	if st == 0 {
		out(v, retData, retLen)
	}
	return st
}

func proxyAddHeaderMapValue(mapType uint32, key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxyAddHeaderMapValue(mapType, in(key, keyLen), in(value, valueLen))
}

func proxyReplaceHeaderMapValue(mapType uint32, key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxyReplaceHeaderMapValue(mapType, in(key, keyLen), in(value, valueLen))
}

func proxyRemoveHeaderMapValue(mapType uint32, key unsafe.Pointer, keyLen uint32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxyRemoveHeaderMapValue(mapType, in(key, keyLen))
}

func proxyGetBufferBytes(bufferType uint32, start uint32, maxSize uint32, retData unsafe.Pointer, retLen unsafe.Pointer) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	v, st := h.ProxyGetBufferBytes(bufferType, start, maxSize)
	if st == 0 {
		out(v, retData, retLen)
	}
	return st
}

func proxySetBufferBytes(bufferType uint32, start uint32, size uint32, data unsafe.Pointer, dataLen uint32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxySetBufferBytes(bufferType, start, size, in(data, dataLen))
}

func proxySendLocalResponse(statusCode uint32, details unsafe.Pointer, detailsLen uint32, body unsafe.Pointer, bodyLen uint32, headers unsafe.Pointer, headersLen uint32, grpcStatus int32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxySendLocalResponse(statusCode, in(details, detailsLen), in(body, bodyLen), in(headers, headersLen), grpcStatus)
}

func proxyHttpCall(upstream unsafe.Pointer, upstreamLen uint32, headers unsafe.Pointer, headersLen uint32, body unsafe.Pointer, bodyLen uint32, trailers unsafe.Pointer, trailersLen uint32, timeoutMs uint32, retToken unsafe.Pointer) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	token, st := h.ProxyHttpCall(in(upstream, upstreamLen), in(headers, headersLen), in(body, bodyLen), in(trailers, trailersLen), timeoutMs, nil)
	if st == 0 {
		putU32(retToken, token)
	}
	return st
}

func proxyGetSharedData(key unsafe.Pointer, keyLen uint32, retData unsafe.Pointer, retLen unsafe.Pointer, retCas unsafe.Pointer) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	v, cas, st := h.ProxyGetSharedData(in(key, keyLen))
	if st == 0 {
		out(v, retData, retLen)
		putU32(retCas, cas)
	}
	return st
}

func proxySetSharedData(key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32, cas uint32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxySetSharedData(in(key, keyLen), in(value, valueLen), cas)
}

func proxyRegisterSharedQueue(name unsafe.Pointer, nameLen uint32, retID unsafe.Pointer) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	id, st := h.ProxyRegisterSharedQueue(in(name, nameLen))
	if st == 0 {
		putU32(retID, id)
	}
	return st
}

func proxyResolveSharedQueue(vmID unsafe.Pointer, vmIDLen uint32, name unsafe.Pointer, nameLen uint32, retID unsafe.Pointer) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	id, st := h.ProxyResolveSharedQueue(in(vmID, vmIDLen), in(name, nameLen))
	if st == 0 {
		putU32(retID, id)
	}
	return st
}

func proxyDequeueSharedQueue(queueID uint32, retData unsafe.Pointer, retLen unsafe.Pointer) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	v, st := h.ProxyDequeueSharedQueue(queueID)
	if st == 0 {
		out(v, retData, retLen)
	}
	return st
}

func proxyDefineMetric(metricType uint32, name unsafe.Pointer, nameLen uint32, retID unsafe.Pointer) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	id, st := h.ProxyDefineMetric(metricType, in(name, nameLen))
	if st == 0 {
		putU32(retID, id)
	}
	return st
}

func proxyGrpcCall(upstream unsafe.Pointer, upstreamLen uint32, service unsafe.Pointer, serviceLen uint32, method unsafe.Pointer, methodLen uint32, metadata unsafe.Pointer, metadataLen uint32, message unsafe.Pointer, messageLen uint32, timeoutMs uint32, retToken unsafe.Pointer) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	token, st := h.ProxyGrpcCall(in(upstream, upstreamLen), in(service, serviceLen), in(method, methodLen),
		in(metadata, metadataLen), in(message, messageLen), timeoutMs, nil)
	if st == 0 {
		putU32(retToken, token)
	}
	return st
}

func proxyGrpcStream(upstream unsafe.Pointer, upstreamLen uint32, service unsafe.Pointer, serviceLen uint32, method unsafe.Pointer, methodLen uint32, metadata unsafe.Pointer, metadataLen uint32, retToken unsafe.Pointer) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	token, st := h.ProxyGrpcStream(in(upstream, upstreamLen), in(service, serviceLen), in(method, methodLen),
		in(metadata, metadataLen), nil)
	if st == 0 {
		putU32(retToken, token)
	}
	return st
}

func proxyGrpcSend(token uint32, message unsafe.Pointer, messageLen uint32, endOfStream uint32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxyGrpcSend(token, in(message, messageLen), endOfStream != 0)
}

func proxyGrpcCancel(token uint32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxyGrpcCancel(token)
}

func proxyGrpcClose(token uint32) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	return h.ProxyGrpcClose(token)
}

func proxyGetStatus(retCode unsafe.Pointer, retData unsafe.Pointer, retLen unsafe.Pointer) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	code, msg, st := h.ProxyGetStatus()
	if st == 0 {
		putU32(retCode, code)
		out(msg, retData, retLen)
	}
	return st
}

func proxyGetLogLevel(retLevel unsafe.Pointer) uint32 {
	h := hostabi.Current()
	if h == nil {
		return statusUnimplemented
	}
	level, st := h.ProxyGetLogLevel()
	if st == 0 {
		putU32(retLevel, level)
	}
	return st
}
