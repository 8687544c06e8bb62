// Command fuzzhost is the Proxy-Wasm plugin of FuzzHostFunctions (package
// wasm), written against the raw ABI (no SDK) so that any pointer and
// length reaches the host unchanged.
//
// Protocol: each request carries the header
//
//	x-fuzz: <fn> <a0> ... <a7> <hex data>
//
// (decimal uint32s). on_request_headers copies the data into a scratch
// buffer, maps each argument (a value whose top nibble is 0xA means
// "scratch + low 16 bits", so the fuzzer reaches valid memory too; any
// other value is passed as is), calls host function fn%len(calls) with
// them, logs "fuzz <fn> <status>" and returns Continue. Everything else is the host's business: whatever the
// arguments, the host must answer with a status, never panic or trap.
package main

import (
	"encoding/hex"
	"strconv"
	"strings"
	"unsafe"
)

func main() {}

//go:wasmimport env proxy_log
func proxyLog(level, ptr, size uint32) uint32

//go:wasmimport env proxy_get_log_level
func proxyGetLogLevel(out uint32) uint32

//go:wasmimport env proxy_get_header_map_value
func proxyGetHeaderMapValue(a, b, c, d, e uint32) uint32

//go:wasmimport env proxy_add_header_map_value
func proxyAddHeaderMapValue(a, b, c, d, e uint32) uint32

//go:wasmimport env proxy_replace_header_map_value
func proxyReplaceHeaderMapValue(a, b, c, d, e uint32) uint32

//go:wasmimport env proxy_remove_header_map_value
func proxyRemoveHeaderMapValue(a, b, c uint32) uint32

//go:wasmimport env proxy_get_header_map_pairs
func proxyGetHeaderMapPairs(a, b, c uint32) uint32

//go:wasmimport env proxy_set_header_map_pairs
func proxySetHeaderMapPairs(a, b, c uint32) uint32

//go:wasmimport env proxy_get_header_map_size
func proxyGetHeaderMapSize(a, b uint32) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(a, b, c, d, e uint32) uint32

//go:wasmimport env proxy_get_buffer_status
func proxyGetBufferStatus(a, b, c uint32) uint32

//go:wasmimport env proxy_set_buffer_bytes
func proxySetBufferBytes(a, b, c, d, e uint32) uint32

//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(a, b, c, d, e, f, g uint32, h int32) uint32

//go:wasmimport env proxy_get_property
func proxyGetProperty(a, b, c, d uint32) uint32

//go:wasmimport env proxy_set_property
func proxySetProperty(a, b, c, d uint32) uint32

//go:wasmimport env proxy_get_current_time_nanoseconds
func proxyGetCurrentTime(a uint32) uint32

//go:wasmimport env proxy_get_shared_data
func proxyGetSharedData(a, b, c, d, e uint32) uint32

//go:wasmimport env proxy_set_shared_data
func proxySetSharedData(a, b, c, d, e uint32) uint32

//go:wasmimport env proxy_define_metric
func proxyDefineMetric(a, b, c, d uint32) uint32

//go:wasmimport env proxy_increment_metric
func proxyIncrementMetric(a uint32, b int64) uint32

//go:wasmimport env proxy_record_metric
func proxyRecordMetric(a uint32, b uint64) uint32

//go:wasmimport env proxy_get_metric
func proxyGetMetric(a, b uint32) uint32

//go:wasmimport env proxy_register_shared_queue
func proxyRegisterSharedQueue(a, b, c uint32) uint32

//go:wasmimport env proxy_resolve_shared_queue
func proxyResolveSharedQueue(a, b, c, d, e uint32) uint32

//go:wasmimport env proxy_enqueue_shared_queue
func proxyEnqueueSharedQueue(a, b, c uint32) uint32

//go:wasmimport env proxy_dequeue_shared_queue
func proxyDequeueSharedQueue(a, b, c uint32) uint32

//go:wasmimport env proxy_get_status
func proxyGetStatus(a, b, c uint32) uint32

//go:wasmimport env proxy_call_foreign_function
func proxyCallForeignFunction(a, b, c, d, e, f uint32) uint32

//go:wasmimport env proxy_set_effective_context
func proxySetEffectiveContext(a uint32) uint32

// calls are the host functions the fuzzer drives, by number. Calls that
// need an upstream (proxy_http_call, gRPC) are left out: the test host
// has none.
var calls = []func(a [8]uint32) uint32{
	func(a [8]uint32) uint32 { return proxyLog(a[0], a[1], a[2]) },
	func(a [8]uint32) uint32 { return proxyGetLogLevel(a[0]) },
	func(a [8]uint32) uint32 { return proxyGetHeaderMapValue(a[0], a[1], a[2], a[3], a[4]) },
	func(a [8]uint32) uint32 { return proxyAddHeaderMapValue(a[0], a[1], a[2], a[3], a[4]) },
	func(a [8]uint32) uint32 { return proxyReplaceHeaderMapValue(a[0], a[1], a[2], a[3], a[4]) },
	func(a [8]uint32) uint32 { return proxyRemoveHeaderMapValue(a[0], a[1], a[2]) },
	func(a [8]uint32) uint32 { return proxyGetHeaderMapPairs(a[0], a[1], a[2]) },
	func(a [8]uint32) uint32 { return proxySetHeaderMapPairs(a[0], a[1], a[2]) },
	func(a [8]uint32) uint32 { return proxyGetHeaderMapSize(a[0], a[1]) },
	func(a [8]uint32) uint32 { return proxyGetBufferBytes(a[0], a[1], a[2], a[3], a[4]) },
	func(a [8]uint32) uint32 { return proxyGetBufferStatus(a[0], a[1], a[2]) },
	func(a [8]uint32) uint32 { return proxySetBufferBytes(a[0], a[1], a[2], a[3], a[4]) },
	func(a [8]uint32) uint32 {
		return proxySendLocalResponse(a[0], a[1], a[2], a[3], a[4], a[5], a[6], int32(a[7]))
	},
	func(a [8]uint32) uint32 { return proxyGetProperty(a[0], a[1], a[2], a[3]) },
	func(a [8]uint32) uint32 { return proxySetProperty(a[0], a[1], a[2], a[3]) },
	func(a [8]uint32) uint32 { return proxyGetCurrentTime(a[0]) },
	func(a [8]uint32) uint32 { return proxyGetSharedData(a[0], a[1], a[2], a[3], a[4]) },
	func(a [8]uint32) uint32 { return proxySetSharedData(a[0], a[1], a[2], a[3], a[4]) },
	func(a [8]uint32) uint32 { return proxyDefineMetric(a[0], a[1], a[2], a[3]) },
	func(a [8]uint32) uint32 { return proxyIncrementMetric(a[0], int64(int32(a[1]))) },
	func(a [8]uint32) uint32 { return proxyRecordMetric(a[0], uint64(a[1])) },
	func(a [8]uint32) uint32 { return proxyGetMetric(a[0], a[1]) },
	func(a [8]uint32) uint32 { return proxyRegisterSharedQueue(a[0], a[1], a[2]) },
	func(a [8]uint32) uint32 { return proxyResolveSharedQueue(a[0], a[1], a[2], a[3], a[4]) },
	func(a [8]uint32) uint32 { return proxyEnqueueSharedQueue(a[0], a[1], a[2]) },
	func(a [8]uint32) uint32 { return proxyDequeueSharedQueue(a[0], a[1], a[2]) },
	func(a [8]uint32) uint32 { return proxyGetStatus(a[0], a[1], a[2]) },
	func(a [8]uint32) uint32 { return proxyCallForeignFunction(a[0], a[1], a[2], a[3], a[4], a[5]) },
	func(a [8]uint32) uint32 { return proxySetEffectiveContext(a[0]) },
}

// scratch is where the fuzzer's data goes; tagged arguments point into it.
var scratch [1 << 16]byte

// allocations keeps what the host allocated alive until the next callback.
var allocations [][]byte

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 {
	if size == 0 || size > 1<<24 {
		return 0 // the host must cope with a failed allocation
	}
	b := make([]byte, size)
	allocations = append(allocations, b)
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

func sptr(s string) uint32 {
	if len(s) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.StringData(s))))
}

func logInfo(msg string) { proxyLog(2, sptr(msg), uint32(len(msg))) }

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_context_create
func onContextCreate(ctx, parent uint32) { allocations = allocations[:0] }

//go:wasmexport proxy_on_vm_start
func onVMStart(root, size uint32) uint32 { return 1 }

//go:wasmexport proxy_on_configure
func onConfigure(root, size uint32) uint32 { return 1 }

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(ctx, headers, end uint32) uint32 {
	allocations = allocations[:0]
	var out [2]uint32
	key := "x-fuzz"
	st := proxyGetHeaderMapValue(0, sptr(key), uint32(len(key)),
		uint32(uintptr(unsafe.Pointer(&out[0]))), uint32(uintptr(unsafe.Pointer(&out[1]))))
	if st != 0 || out[1] == 0 {
		logInfo("fuzz none")
		return 0
	}
	line := string(unsafe.Slice((*byte)(unsafe.Pointer(uintptr(out[0]))), out[1]))
	f := strings.Fields(line)
	if len(f) < 9 {
		logInfo("fuzz malformed")
		return 0
	}
	var n [9]uint32
	for i := range n {
		v, _ := strconv.ParseUint(f[i], 10, 32)
		n[i] = uint32(v)
	}
	if len(f) > 9 {
		data, _ := hex.DecodeString(f[9])
		copy(scratch[:], data)
	}
	base := uint32(uintptr(unsafe.Pointer(&scratch[0])))
	var a [8]uint32
	for i := range a {
		v := n[i+1]
		if v>>28 == 0xA {
			v = base + v&0xFFFF
		}
		a[i] = v
	}
	fn := n[0] % uint32(len(calls))
	st = calls[fn](a)
	// Back to the stream's own context (proxy_set_effective_context
	// may have switched it) for the report.
	proxySetEffectiveContext(ctx)
	logInfo("fuzz " + strconv.Itoa(int(fn)) + " " + strconv.Itoa(int(st)))
	return 0
}

//go:wasmexport proxy_on_done
func onDone(ctx uint32) uint32 { return 1 }

//go:wasmexport proxy_on_delete
func onDelete(ctx uint32) {}
