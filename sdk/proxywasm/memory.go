package proxywasm

import "unsafe"

// Host → guest data transfer. For a host call with a result (a header
// value, a body, a property...), the host calls proxy_on_memory_allocate,
// copies the bytes into the returned memory and writes (pointer, length) to
// the out-parameters the guest passed. Between the allocation and the moment
// the SDK wraps the result, nothing in Go references the buffer, so it is
// kept in hostBufs until then; the out-parameters are package variables so
// that no call allocates them on the heap. A Wasm VM runs one callback at a
// time, so sharing them is safe.

var (
	hostBufs [][]byte // buffers handed to the host during the current host call

	retData  *byte  // out: pointer written by the host (a 32-bit address)
	retLen   uint32 // out: length written by the host
	retU32   uint32 // out: ids, tokens, CAS values
	retValue uint64 // out: metric values
)

// allocateForHost implements proxy_on_memory_allocate: a fresh Go buffer,
// referenced from hostBufs until takeResult or releaseHostBufs.
func allocateForHost(size uint32) *byte {
	n := int(size)
	if n == 0 {
		n = 1 // never hand out a zero-sized object's shared address
	}
	b := make([]byte, n)
	hostBufs = append(hostBufs, b[:size])
	return &b[0]
}

// releaseHostBufs drops the references held for the host.
func releaseHostBufs() {
	clear(hostBufs)
	hostBufs = hostBufs[:0]
}

// resetResult clears the out-parameters before a host call. Only the low
// 32 bits of retData are written by the host, so it must start as nil.
func resetResult() {
	retData = nil
	retLen = 0
}

// takeResult returns the bytes the host wrote at (retData, retLen), as a
// slice of the buffer it allocated through proxy_on_memory_allocate, and
// releases the SDK's own references. It returns nil when the host wrote no
// pointer. It panics if the host wrote a pointer that is not inside a buffer
// it allocated during this call: that is a host bug, and reading it would
// read arbitrary memory.
func takeResult() []byte {
	p, n := retData, int(retLen)
	resetResult()
	defer releaseHostBufs()
	if p == nil {
		return nil
	}
	addr := uintptr(unsafe.Pointer(p))
	for _, b := range hostBufs {
		if cap(b) == 0 {
			continue
		}
		start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		if addr < start || addr-start > uintptr(cap(b)) {
			continue
		}
		off := int(addr - start)
		if off+n > cap(b) {
			break
		}
		return b[off : off+n : off+n]
	}
	panic("proxywasm: the host returned memory that it did not allocate with proxy_on_memory_allocate")
}

// bytesPtr returns the address of b's first byte, or nil for an empty slice.
func bytesPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(b))
}

// stringPtr returns the address of s's first byte, or nil for "".
func stringPtr(s string) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.StringData(s))
}

// bytesToString views b as a string without copying; b must not change
// afterwards (buffers from takeResult never do).
func bytesToString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}
