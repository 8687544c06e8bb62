package proxywasm

import "unsafe"

// Host → guest data transfer. For a host call with a result (a header
// value, a body, a property...), the host calls proxy_on_memory_allocate,
// copies the bytes into the returned memory and writes (pointer, length) to
// the out-parameters the guest passed. Between the allocation and the moment
// the SDK wraps the result, nothing in Go may lose the buffer, so it is
// kept in hostBuf (and moreBufs, for a call that allocates more than once)
// until then; the out-parameters are package variables so that no call
// allocates them on the heap. A Wasm VM runs one callback at a time, so
// sharing them is safe.
//
// Small results are carved out of a shared chunk (resultChunk) instead
// of a Go allocation each: in Wasm, every Go allocation is a trip
// through the runtime's allocator and zeroing, and one more step towards
// a garbage collection that stops the callback it lands in. A result
// still owns its bytes alone (its capacity ends where it ends, so an
// append copies), and a chunk lives as long as any result carved from it
// (docs/decisions.md, 80).

// resultChunkSize is the size of the chunks small results are carved
// from, and resultChunkMax the largest result carved; a larger one gets
// an allocation of its own. A result kept by the plugin keeps its chunk
// alive: at most resultChunkSize bytes per kept result, usually far less
// as the results of neighbouring calls share it.
const (
	resultChunkSize = 2048
	resultChunkMax  = 256
)

var (
	hostBuf  []byte   // the first buffer handed to the host during the current host call
	moreBufs [][]byte // any further ones (a host that allocates more than once)

	// resultChunk is the unused rest of the current chunk.
	resultChunk []byte

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

// allocateForHost implements proxy_on_memory_allocate: the caller's
// spare capacity during a Read* call, a piece of the current chunk for a
// small result, a fresh Go buffer for a large one; referenced from
// hostBuf or moreBufs until takeResult or releaseHostBufs.
func allocateForHost(size uint32) *byte {
	var b []byte
	switch {
	case into != nil && size > 0 && int(size) <= cap(into):
		b = into[:size:size]
		into, intoUsed = nil, true // one result per call
	case size <= resultChunkMax:
		n := int(size)
		if n == 0 {
			n = 1 // never hand out an address shared with the next result
		}
		if len(resultChunk) < n {
			resultChunk = make([]byte, resultChunkSize)
		}
		b = resultChunk[:size:n]
		resultChunk = resultChunk[n:]
	default:
		b = make([]byte, size)
	}
	if hostBuf == nil {
		hostBuf = b
	} else {
		moreBufs = append(moreBufs, b)
	}
	return unsafe.SliceData(b[:cap(b)])
}

// releaseHostBufs drops the references held for the host.
func releaseHostBufs() {
	hostBuf = nil
	if len(moreBufs) > 0 {
		clear(moreBufs)
		moreBufs = moreBufs[:0]
	}
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
	if p == nil {
		releaseHostBufs()
		return nil
	}
	addr := uintptr(unsafe.Pointer(p))
	if r, ok := within(hostBuf, addr, n); ok {
		releaseHostBufs()
		return r
	}
	for _, b := range moreBufs {
		if r, ok := within(b, addr, n); ok {
			releaseHostBufs()
			return r
		}
	}
	releaseHostBufs()
	panic("proxywasm: the host returned memory that it did not allocate with proxy_on_memory_allocate")
}

// within returns the n bytes at addr as a slice of b, if they lie inside
// b's capacity; the result's capacity is its length.
func within(b []byte, addr uintptr, n int) ([]byte, bool) {
	if cap(b) == 0 {
		return nil, false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if addr < start || addr-start > uintptr(cap(b)) {
		return nil, false
	}
	off := int(addr - start)
	if n < 0 || off+n > cap(b) {
		return nil, false
	}
	return b[off : off+n : off+n], true
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
