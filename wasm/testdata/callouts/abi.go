package main

// The raw Proxy-Wasm ABI surface this test plugin uses. Pointers are passed
// as uint32 so the hostile mode can pass any value.

import (
	"encoding/binary"
	"runtime"
	"unsafe"
)

//go:wasmimport env proxy_log
func proxyLog(level, ptr, size uint32) uint32

//go:wasmimport env proxy_get_log_level
func proxyGetLogLevel(out uint32) uint32

//go:wasmimport env proxy_get_header_map_value
func proxyGetHeaderMapValue(mapType, keyPtr, keyLen, outPtr, outLen uint32) uint32

//go:wasmimport env proxy_add_header_map_value
func proxyAddHeaderMapValue(mapType, keyPtr, keyLen, valPtr, valLen uint32) uint32

//go:wasmimport env proxy_replace_header_map_value
func proxyReplaceHeaderMapValue(mapType, keyPtr, keyLen, valPtr, valLen uint32) uint32

//go:wasmimport env proxy_remove_header_map_value
func proxyRemoveHeaderMapValue(mapType, keyPtr, keyLen uint32) uint32

//go:wasmimport env proxy_get_header_map_pairs
func proxyGetHeaderMapPairs(mapType, outPtr, outLen uint32) uint32

//go:wasmimport env proxy_set_header_map_pairs
func proxySetHeaderMapPairs(mapType, ptr, size uint32) uint32

//go:wasmimport env proxy_get_header_map_size
func proxyGetHeaderMapSize(mapType, out uint32) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(bufType, start, maxSize, outPtr, outLen uint32) uint32

//go:wasmimport env proxy_get_buffer_status
func proxyGetBufferStatus(bufType, outLen, outFlags uint32) uint32

//go:wasmimport env proxy_set_buffer_bytes
func proxySetBufferBytes(bufType, start, size, ptr, length uint32) uint32

//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(status, detailsPtr, detailsLen, bodyPtr, bodyLen, headersPtr, headersLen uint32, grpcStatus int32) uint32

//go:wasmimport env proxy_continue_stream
func proxyContinueStream(streamType uint32) uint32

//go:wasmimport env proxy_close_stream
func proxyCloseStream(streamType uint32) uint32

//go:wasmimport env proxy_get_property
func proxyGetProperty(pathPtr, pathLen, outPtr, outLen uint32) uint32

//go:wasmimport env proxy_set_tick_period_milliseconds
func proxySetTickPeriod(ms uint32) uint32

//go:wasmimport env proxy_get_current_time_nanoseconds
func proxyGetCurrentTime(out uint32) uint32

//go:wasmimport env proxy_set_effective_context
func proxySetEffectiveContext(id uint32) uint32

//go:wasmimport env proxy_get_shared_data
func proxyGetSharedData(keyPtr, keyLen, outPtr, outLen, casPtr uint32) uint32

//go:wasmimport env proxy_set_shared_data
func proxySetSharedData(keyPtr, keyLen, valPtr, valLen, cas uint32) uint32

//go:wasmimport env proxy_define_metric
func proxyDefineMetric(metricType, namePtr, nameLen, out uint32) uint32

//go:wasmimport env proxy_increment_metric
func proxyIncrementMetric(id uint32, delta int64) uint32

//go:wasmimport env proxy_record_metric
func proxyRecordMetric(id uint32, value uint64) uint32

//go:wasmimport env proxy_get_metric
func proxyGetMetric(id, out uint32) uint32

//go:wasmimport env proxy_http_call
func proxyHTTPCall(a, b, c, d, e, f, g, h, timeout, token uint32) uint32

//go:wasmimport env proxy_done
func proxyDone() uint32

// allocations keeps what the host asked us to allocate alive until the
// callback that asked is over (the GC must not free it under the host).
var allocations [][]byte

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 {
	b := make([]byte, size)
	allocations = append(allocations, b)
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

func ptr(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

func sptr(s string) uint32 {
	if len(s) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.StringData(s))))
}

// out holds the two out-parameters of a host call that returns data.
var out [2]uint32

func outPtrs() (uint32, uint32) {
	return uint32(uintptr(unsafe.Pointer(&out[0]))), uint32(uintptr(unsafe.Pointer(&out[1])))
}

// result copies what the host allocated for the last call.
func result() []byte {
	if out[1] == 0 {
		return nil
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(uintptr(out[0]))), out[1])
	return append([]byte(nil), b...)
}

func logf(level uint32, msg string) {
	proxyLog(level, sptr(msg), uint32(len(msg)))
	runtime.KeepAlive(msg)
}

func info(msg string) { logf(2, msg) }

func getHeader(mapType uint32, key string) (string, uint32) {
	p, l := outPtrs()
	st := proxyGetHeaderMapValue(mapType, sptr(key), uint32(len(key)), p, l)
	runtime.KeepAlive(key)
	if st != 0 {
		return "", st
	}
	return string(result()), st
}

func addHeader(mapType uint32, key, value string) uint32 {
	st := proxyAddHeaderMapValue(mapType, sptr(key), uint32(len(key)), sptr(value), uint32(len(value)))
	runtime.KeepAlive(key)
	runtime.KeepAlive(value)
	return st
}

func replaceHeader(mapType uint32, key, value string) uint32 {
	st := proxyReplaceHeaderMapValue(mapType, sptr(key), uint32(len(key)), sptr(value), uint32(len(value)))
	runtime.KeepAlive(key)
	runtime.KeepAlive(value)
	return st
}

func getBuffer(bufType, start, size uint32) ([]byte, uint32) {
	p, l := outPtrs()
	st := proxyGetBufferBytes(bufType, start, size, p, l)
	if st != 0 {
		return nil, st
	}
	return result(), st
}

func getProperty(path string) ([]byte, uint32) {
	p, l := outPtrs()
	st := proxyGetProperty(sptr(path), uint32(len(path)), p, l)
	runtime.KeepAlive(path)
	if st != 0 {
		return nil, st
	}
	return result(), st
}

type pair struct{ key, value string }

func encodePairs(pairs []pair) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(pairs)))
	for _, p := range pairs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p.key)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p.value)))
	}
	for _, p := range pairs {
		b = append(b, p.key...)
		b = append(b, 0)
		b = append(b, p.value...)
		b = append(b, 0)
	}
	return b
}

func decodePairs(b []byte) []pair {
	if len(b) < 4 {
		return nil
	}
	n := int(binary.LittleEndian.Uint32(b))
	pos := 4 + 8*n
	var out []pair
	for i := 0; i < n; i++ {
		kl := int(binary.LittleEndian.Uint32(b[4+8*i:]))
		vl := int(binary.LittleEndian.Uint32(b[8+8*i:]))
		k := string(b[pos : pos+kl])
		pos += kl + 1
		v := string(b[pos : pos+vl])
		pos += vl + 1
		out = append(out, pair{k, v})
	}
	return out
}

//go:wasmimport env proxy_get_status
func proxyGetStatus(codePtr, msgPtr, msgLen uint32) uint32

//go:wasmimport env proxy_grpc_call
func proxyGrpcCall(upPtr, upLen, svcPtr, svcLen, methPtr, methLen, mdPtr, mdLen, msgPtr, msgLen, timeout, token uint32) uint32

//go:wasmimport env proxy_grpc_stream
func proxyGrpcStream(upPtr, upLen, svcPtr, svcLen, methPtr, methLen, mdPtr, mdLen, token uint32) uint32

//go:wasmimport env proxy_grpc_send
func proxyGrpcSend(token, ptr, size, end uint32) uint32

//go:wasmimport env proxy_grpc_cancel
func proxyGrpcCancel(token uint32) uint32

//go:wasmimport env proxy_grpc_close
func proxyGrpcClose(token uint32) uint32

//go:wasmimport env proxy_register_shared_queue
func proxyRegisterSharedQueue(namePtr, nameLen, out uint32) uint32

//go:wasmimport env proxy_resolve_shared_queue
func proxyResolveSharedQueue(vmPtr, vmLen, namePtr, nameLen, out uint32) uint32

//go:wasmimport env proxy_enqueue_shared_queue
func proxyEnqueueSharedQueue(id, ptr, size uint32) uint32

//go:wasmimport env proxy_dequeue_shared_queue
func proxyDequeueSharedQueue(id, outPtr, outLen uint32) uint32

//go:wasmimport env proxy_call_foreign_function
func proxyCallForeignFunction(namePtr, nameLen, argsPtr, argsLen, outPtr, outLen uint32) uint32

//go:wasmimport env proxy_set_property
func proxySetProperty(pathPtr, pathLen, valPtr, valLen uint32) uint32

//go:wasmimport env envoy_resolve_dns
func envoyResolveDNS(ptr, size, token uint32) uint32
