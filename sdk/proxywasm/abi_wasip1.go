//go:build wasip1

package proxywasm

import "unsafe"

// Host functions (module "env"). Pointers and sizes are i32, metric values
// i64; every function returns a proxy_status_t.

//go:wasmimport env proxy_log
func proxyLog(level uint32, msg unsafe.Pointer, msgLen uint32) uint32

//go:wasmimport env proxy_set_tick_period_milliseconds
func proxySetTickPeriodMilliseconds(periodMs uint32) uint32

//go:wasmimport env proxy_set_effective_context
func proxySetEffectiveContext(contextID uint32) uint32

//go:wasmimport env proxy_done
func proxyDone() uint32

//go:wasmimport env proxy_call_foreign_function
func proxyCallForeignFunction(name unsafe.Pointer, nameLen uint32, args unsafe.Pointer, argsLen uint32, retData unsafe.Pointer, retLen unsafe.Pointer) uint32

//go:wasmimport env proxy_get_property
func proxyGetProperty(path unsafe.Pointer, pathLen uint32, retData unsafe.Pointer, retLen unsafe.Pointer) uint32

//go:wasmimport env proxy_set_property
func proxySetProperty(path unsafe.Pointer, pathLen uint32, value unsafe.Pointer, valueLen uint32) uint32

//go:wasmimport env proxy_get_header_map_pairs
func proxyGetHeaderMapPairs(mapType uint32, retData unsafe.Pointer, retLen unsafe.Pointer) uint32

//go:wasmimport env proxy_set_header_map_pairs
func proxySetHeaderMapPairs(mapType uint32, data unsafe.Pointer, dataLen uint32) uint32

//go:wasmimport env proxy_get_header_map_value
func proxyGetHeaderMapValue(mapType uint32, key unsafe.Pointer, keyLen uint32, retData unsafe.Pointer, retLen unsafe.Pointer) uint32

//go:wasmimport env proxy_add_header_map_value
func proxyAddHeaderMapValue(mapType uint32, key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32) uint32

//go:wasmimport env proxy_replace_header_map_value
func proxyReplaceHeaderMapValue(mapType uint32, key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32) uint32

//go:wasmimport env proxy_remove_header_map_value
func proxyRemoveHeaderMapValue(mapType uint32, key unsafe.Pointer, keyLen uint32) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(bufferType uint32, start uint32, maxSize uint32, retData unsafe.Pointer, retLen unsafe.Pointer) uint32

//go:wasmimport env proxy_set_buffer_bytes
func proxySetBufferBytes(bufferType uint32, start uint32, size uint32, data unsafe.Pointer, dataLen uint32) uint32

//go:wasmimport env proxy_continue_stream
func proxyContinueStream(streamType uint32) uint32

//go:wasmimport env proxy_close_stream
func proxyCloseStream(streamType uint32) uint32

//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(statusCode uint32, details unsafe.Pointer, detailsLen uint32, body unsafe.Pointer, bodyLen uint32, headers unsafe.Pointer, headersLen uint32, grpcStatus int32) uint32

//go:wasmimport env proxy_http_call
func proxyHttpCall(upstream unsafe.Pointer, upstreamLen uint32, headers unsafe.Pointer, headersLen uint32, body unsafe.Pointer, bodyLen uint32, trailers unsafe.Pointer, trailersLen uint32, timeoutMs uint32, retToken unsafe.Pointer) uint32

//go:wasmimport env proxy_get_shared_data
func proxyGetSharedData(key unsafe.Pointer, keyLen uint32, retData unsafe.Pointer, retLen unsafe.Pointer, retCas unsafe.Pointer) uint32

//go:wasmimport env proxy_set_shared_data
func proxySetSharedData(key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32, cas uint32) uint32

//go:wasmimport env proxy_register_shared_queue
func proxyRegisterSharedQueue(name unsafe.Pointer, nameLen uint32, retID unsafe.Pointer) uint32

//go:wasmimport env proxy_resolve_shared_queue
func proxyResolveSharedQueue(vmID unsafe.Pointer, vmIDLen uint32, name unsafe.Pointer, nameLen uint32, retID unsafe.Pointer) uint32

//go:wasmimport env proxy_enqueue_shared_queue
func proxyEnqueueSharedQueue(queueID uint32, data unsafe.Pointer, dataLen uint32) uint32

//go:wasmimport env proxy_dequeue_shared_queue
func proxyDequeueSharedQueue(queueID uint32, retData unsafe.Pointer, retLen unsafe.Pointer) uint32

//go:wasmimport env proxy_define_metric
func proxyDefineMetric(metricType uint32, name unsafe.Pointer, nameLen uint32, retID unsafe.Pointer) uint32

//go:wasmimport env proxy_increment_metric
func proxyIncrementMetric(metricID uint32, offset int64) uint32

//go:wasmimport env proxy_record_metric
func proxyRecordMetric(metricID uint32, value uint64) uint32

//go:wasmimport env proxy_get_metric
func proxyGetMetric(metricID uint32, retValue unsafe.Pointer) uint32

//go:wasmimport env proxy_grpc_call
func proxyGrpcCall(upstream unsafe.Pointer, upstreamLen uint32, service unsafe.Pointer, serviceLen uint32, method unsafe.Pointer, methodLen uint32, metadata unsafe.Pointer, metadataLen uint32, message unsafe.Pointer, messageLen uint32, timeoutMs uint32, retToken unsafe.Pointer) uint32

//go:wasmimport env proxy_grpc_stream
func proxyGrpcStream(upstream unsafe.Pointer, upstreamLen uint32, service unsafe.Pointer, serviceLen uint32, method unsafe.Pointer, methodLen uint32, metadata unsafe.Pointer, metadataLen uint32, retToken unsafe.Pointer) uint32

//go:wasmimport env proxy_grpc_send
func proxyGrpcSend(token uint32, message unsafe.Pointer, messageLen uint32, endOfStream uint32) uint32

//go:wasmimport env proxy_grpc_cancel
func proxyGrpcCancel(token uint32) uint32

//go:wasmimport env proxy_grpc_close
func proxyGrpcClose(token uint32) uint32

//go:wasmimport env proxy_get_status
func proxyGetStatus(retCode unsafe.Pointer, retData unsafe.Pointer, retLen unsafe.Pointer) uint32

// proxy_get_log_level exists from ABI 0.2.1 on, hence the marker below.
//
//go:wasmimport env proxy_get_log_level
func proxyGetLogLevel(retLevel unsafe.Pointer) uint32

// Guest callbacks.

// The SDK declares ABI 0.2.1: 0.2.0 plus proxy_get_log_level, which Envoy
// links only for modules that declare 0.2.1 (see the package
// documentation).
//
//go:wasmexport proxy_abi_version_0_2_1
func proxyABIVersion021() {}

//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) unsafe.Pointer {
	return unsafe.Pointer(allocateForHost(size))
}

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(contextID, parentContextID uint32) {
	onContextCreate(contextID, parentContextID)
}

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(rootContextID, vmConfigurationSize uint32) uint32 {
	return boolToU32(onVMStart(rootContextID, vmConfigurationSize))
}

//go:wasmexport proxy_on_configure
func proxyOnConfigure(rootContextID, pluginConfigurationSize uint32) uint32 {
	return boolToU32(onConfigure(rootContextID, pluginConfigurationSize))
}

//go:wasmexport proxy_on_tick
func proxyOnTick(rootContextID uint32) { onTick(rootContextID) }

//go:wasmexport proxy_on_queue_ready
func proxyOnQueueReady(rootContextID, queueID uint32) { onQueueReady(rootContextID, queueID) }

//go:wasmexport proxy_on_done
func proxyOnDone(contextID uint32) uint32 { return boolToU32(onDone(contextID)) }

//go:wasmexport proxy_on_log
func proxyOnLog(contextID uint32) { onLog(contextID) }

//go:wasmexport proxy_on_delete
func proxyOnDelete(contextID uint32) { onDelete(contextID) }

//go:wasmexport proxy_on_new_connection
func proxyOnNewConnection(contextID uint32) uint32 { return onNewConnection(contextID) }

//go:wasmexport proxy_on_downstream_data
func proxyOnDownstreamData(contextID, dataSize, endOfStream uint32) uint32 {
	return onDownstreamData(contextID, dataSize, endOfStream != 0)
}

//go:wasmexport proxy_on_downstream_connection_close
func proxyOnDownstreamConnectionClose(contextID, peerType uint32) {
	onDownstreamConnectionClose(contextID, peerType)
}

//go:wasmexport proxy_on_upstream_data
func proxyOnUpstreamData(contextID, dataSize, endOfStream uint32) uint32 {
	return onUpstreamData(contextID, dataSize, endOfStream != 0)
}

//go:wasmexport proxy_on_upstream_connection_close
func proxyOnUpstreamConnectionClose(contextID, peerType uint32) {
	onUpstreamConnectionClose(contextID, peerType)
}

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(contextID, numHeaders, endOfStream uint32) uint32 {
	return onRequestHeaders(contextID, numHeaders, endOfStream != 0)
}

//go:wasmexport proxy_on_request_body
func proxyOnRequestBody(contextID, bodySize, endOfStream uint32) uint32 {
	return onRequestBody(contextID, bodySize, endOfStream != 0)
}

//go:wasmexport proxy_on_request_trailers
func proxyOnRequestTrailers(contextID, numTrailers uint32) uint32 {
	return onRequestTrailers(contextID, numTrailers)
}

//go:wasmexport proxy_on_request_metadata
func proxyOnRequestMetadata(contextID, numElements uint32) uint32 {
	return uint32(0) // Continue: no SDK API for HTTP/2 metadata.
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(contextID, numHeaders, endOfStream uint32) uint32 {
	return onResponseHeaders(contextID, numHeaders, endOfStream != 0)
}

//go:wasmexport proxy_on_response_body
func proxyOnResponseBody(contextID, bodySize, endOfStream uint32) uint32 {
	return onResponseBody(contextID, bodySize, endOfStream != 0)
}

//go:wasmexport proxy_on_response_trailers
func proxyOnResponseTrailers(contextID, numTrailers uint32) uint32 {
	return onResponseTrailers(contextID, numTrailers)
}

//go:wasmexport proxy_on_response_metadata
func proxyOnResponseMetadata(contextID, numElements uint32) uint32 {
	return uint32(0) // Continue: no SDK API for HTTP/2 metadata.
}

//go:wasmexport proxy_on_http_call_response
func proxyOnHttpCallResponse(rootContextID, token, numHeaders, bodySize, numTrailers uint32) {
	onHttpCallResponse(rootContextID, token, numHeaders, bodySize, numTrailers)
}

//go:wasmexport proxy_on_grpc_receive_initial_metadata
func proxyOnGrpcReceiveInitialMetadata(rootContextID, token, numElements uint32) {
	onGrpcReceiveInitialMetadata(rootContextID, token, numElements)
}

//go:wasmexport proxy_on_grpc_receive
func proxyOnGrpcReceive(rootContextID, token, messageSize uint32) {
	onGrpcReceive(rootContextID, token, messageSize)
}

//go:wasmexport proxy_on_grpc_receive_trailing_metadata
func proxyOnGrpcReceiveTrailingMetadata(rootContextID, token, numElements uint32) {
	onGrpcReceiveTrailingMetadata(rootContextID, token, numElements)
}

//go:wasmexport proxy_on_grpc_close
func proxyOnGrpcClose(rootContextID, token, grpcStatus uint32) {
	onGrpcClose(rootContextID, token, grpcStatus)
}

// The SDK has no API for foreign functions the host calls in the guest;
// this export only makes the module's callback set complete.

//go:wasmexport proxy_on_foreign_function
func proxyOnForeignFunction(rootContextID, functionID, argsSize uint32) {}

// mainMain is the program's main function. A c-shared (reactor) module
// never runs it on its own; see the package documentation.
//
//go:linkname mainMain main.main
func mainMain()

func init() { runMain = mainMain }

func boolToU32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
