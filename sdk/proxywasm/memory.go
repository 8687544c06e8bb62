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

	// into is the spare capacity of the caller's buffer while a Read*
	// call (ReadHttpRequestHeader, ...) is in progress: the host's one
	// allocation for the result is served from it when it fits, so the
	// bytes land where the caller wants them and nothing is allocated.
	// intoUsed says it was.
	into     []byte
	intoUsed bool
)

// allocateForHost implements proxy_on_memory_allocate: a fresh Go buffer,
// referenced from hostBufs until takeResult or releaseHostBufs.
func allocateForHost(size uint32) *byte {
	if into != nil && size > 0 && int(size) <= cap(into) {
		b := into[:size:size]
		into, intoUsed = nil, true // one result per call
		hostBufs = append(hostBufs, b)
		return &b[0]
	}
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

// appendResult finishes a Read* call: data is what takeResult returned
// for the call that began with beginAppend(dst). When the host's
// allocation was served from dst's spare capacity, data already sits
// right after dst's contents and is only re-sliced; otherwise (it did not
// fit, or the host allocated more than once) it is copied after them.
func appendResult(dst, data []byte) []byte {
	used := intoUsed
	into, intoUsed = nil, false
	if used && len(data) > 0 && unsafe.SliceData(data) == unsafe.SliceData(dst[len(dst):cap(dst)]) {
		return dst[:len(dst)+len(data)]
	}
	return append(dst, data...)
}

// beginAppend makes the host's next allocation come from dst's spare
// capacity (see into).
func beginAppend(dst []byte) {
	into, intoUsed = dst[len(dst):cap(dst)], false
	if cap(into) == 0 {
		into = nil
	}
}

// resetResult clears the out-parameters before a host call. Only the low
// 32 bits of retData are written by the host, so it must start as nil.
func resetResult() {
	retData = nil
	retLen = 0
	// A Read* call that never finished (a panic) must not leave its
	// buffer to the next call.
	into, intoUsed = nil, false
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
