// Command cowmem is a Proxy-Wasm test plugin for the tests of page
// sharing between instances (wasm/cowmem_linux_test.go), written against
// the raw ABI. At start-up it fills a 4 MiB table with a pattern, the
// same in every instance; each request's x-op header says what to do,
// and the answer is a local reply whose body the test reads:
//
//	set:<v>   writes v at the table's middle; replies "ok"
//	get:<n>   replies n bytes from the table's middle
//	check     replies "pattern" when the whole table still holds the
//	          pattern except the middle, "broken at <i>" otherwise
//	grow:<m>  allocates m MiB more (memory.grow), writes every page of
//	          it and replies the sum of what it reads back
//	trap      panics (the instance is poisoned)
package main

import (
	"runtime"
	"strconv"
	"strings"
	"unsafe"
)

func main() {}

const tableSize = 4 << 20

// middle is where set writes; the test reads it back with get.
const middle = tableSize / 2

var table []byte

// kept holds what grow allocated, so it stays live.
var kept [][]byte

func pattern(i int) byte { return byte(i*7 + i>>12 + 1) }

func init() {
	table = make([]byte, tableSize)
	for i := range table {
		table[i] = pattern(i)
	}
}

//go:wasmimport env proxy_get_header_map_value
func proxyGetHeaderMapValue(mapType, keyPtr, keyLen, outPtr, outLen uint32) uint32

//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(status, detailsPtr, detailsLen, bodyPtr, bodyLen, headersPtr, headersLen uint32, grpcStatus int32) uint32

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

var allocations [][]byte

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 {
	b := make([]byte, size)
	allocations = append(allocations, b)
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

//go:wasmexport proxy_on_context_create
func onContextCreate(ctx, parent uint32) {}

//go:wasmexport proxy_on_vm_start
func onVMStart(root, size uint32) uint32 { return 1 }

//go:wasmexport proxy_on_configure
func onConfigure(root, size uint32) uint32 { return 1 }

var out [2]uint32

func header(key string) string {
	st := proxyGetHeaderMapValue(0, uint32(uintptr(unsafe.Pointer(unsafe.StringData(key)))), uint32(len(key)),
		uint32(uintptr(unsafe.Pointer(&out[0]))), uint32(uintptr(unsafe.Pointer(&out[1]))))
	runtime.KeepAlive(key)
	if st != 0 || out[1] == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(uintptr(out[0]))), out[1]))
}

func reply(body string) uint32 {
	b := []byte(body)
	var bp uint32
	if len(b) > 0 {
		bp = uint32(uintptr(unsafe.Pointer(&b[0])))
	}
	proxySendLocalResponse(200, 0, 0, bp, uint32(len(b)), 0, 0, -1)
	runtime.KeepAlive(b)
	return 1
}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(ctx, n, eos uint32) uint32 {
	allocations = allocations[:0]
	op, arg, _ := strings.Cut(header("x-op"), ":")
	switch op {
	case "set":
		copy(table[middle:], arg)
		return reply("ok")
	case "get":
		k, _ := strconv.Atoi(arg)
		return reply(string(table[middle : middle+k]))
	case "check":
		for i, b := range table {
			if b != pattern(i) && (i < middle || i >= middle+64) {
				return reply("broken at " + strconv.Itoa(i))
			}
		}
		return reply("pattern")
	case "grow":
		mib, _ := strconv.Atoi(arg)
		b := make([]byte, mib<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = byte(i >> 12)
		}
		sum := 0
		for i := 0; i < len(b); i += 4096 {
			sum += int(b[i])
		}
		kept = append(kept, b)
		return reply(strconv.Itoa(sum))
	case "trap":
		panic("trap requested")
	}
	return 0
}
