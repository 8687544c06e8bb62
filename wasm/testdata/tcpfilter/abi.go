package main

// The raw Proxy-Wasm ABI surface this TCP test plugin uses.

import (
	"runtime"
	"unsafe"
)

//go:wasmimport env proxy_log
func proxyLog(level, ptr, size uint32) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(bufType, start, maxSize, outPtr, outLen uint32) uint32

//go:wasmimport env proxy_get_buffer_status
func proxyGetBufferStatus(bufType, outLen, outFlags uint32) uint32

//go:wasmimport env proxy_set_buffer_bytes
func proxySetBufferBytes(bufType, start, size, ptr, length uint32) uint32

//go:wasmimport env proxy_continue_stream
func proxyContinueStream(streamType uint32) uint32

//go:wasmimport env proxy_close_stream
func proxyCloseStream(streamType uint32) uint32

//go:wasmimport env proxy_get_property
func proxyGetProperty(pathPtr, pathLen, outPtr, outLen uint32) uint32

//go:wasmimport env proxy_set_tick_period_milliseconds
func proxySetTickPeriod(ms uint32) uint32

//go:wasmimport env proxy_set_effective_context
func proxySetEffectiveContext(id uint32) uint32

// allocations keeps what the host asked us to allocate alive until the
// callback that asked is over (the GC must not free it under the host).
var allocations [][]byte

func resetAllocations() { allocations = allocations[:0] }

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 {
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

// out holds the two out-parameters of a host call that returns data.
var out [2]uint32

func outPtrs() (uint32, uint32) {
	return uint32(uintptr(unsafe.Pointer(&out[0]))), uint32(uintptr(unsafe.Pointer(&out[1])))
}

// result is a view of what the host allocated for the last call, valid
// until the callback returns.
func result() []byte {
	if out[1] == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(out[0]))), out[1])
}

func info(msg string) {
	proxyLog(2, sptr(msg), uint32(len(msg)))
	runtime.KeepAlive(msg)
}

func getBuffer(bufType, start, size uint32) ([]byte, uint32) {
	p, l := outPtrs()
	st := proxyGetBufferBytes(bufType, start, size, p, l)
	if st != 0 {
		return nil, st
	}
	return result(), st
}

func setBuffer(bufType, start, size uint32, data string) uint32 {
	st := proxySetBufferBytes(bufType, start, size, sptr(data), uint32(len(data)))
	runtime.KeepAlive(data)
	return st
}

func bufferStatus(bufType uint32) (uint32, uint32) {
	var size, flags uint32
	st := proxyGetBufferStatus(bufType, uint32(uintptr(unsafe.Pointer(&size))), uint32(uintptr(unsafe.Pointer(&flags))))
	if st != 0 {
		return 0, st
	}
	return size, st
}

// getProperty reads a property; path segments are separated by '.'.
func getProperty(path string) ([]byte, uint32) {
	b := []byte(path)
	for i := range b {
		if b[i] == '.' {
			b[i] = 0
		}
	}
	p, l := outPtrs()
	st := proxyGetProperty(uint32(uintptr(unsafe.Pointer(&b[0]))), uint32(len(b)), p, l)
	runtime.KeepAlive(b)
	if st != 0 {
		return nil, st
	}
	return result(), st
}
