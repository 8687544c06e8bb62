package proxy

import (
	"io"
	"sync"
)

// readBufferSize bounds one body chunk read from a peer.
const readBufferSize = 16 << 10

var readBuffers = sync.Pool{New: func() any { b := make([]byte, readBufferSize); return &b }}

// readChunk reads the next piece of a body. remaining is the number of
// bytes still expected (-1 when unknown). The returned slice is newly
// allocated at its exact size, because filters may hold on to it; a
// known small remainder is read straight into its own slice, and
// otherwise a pooled buffer takes the read and only the bytes read are
// copied out. A fixed 16 KiB allocation per read was most of the
// proxy's garbage.
func readChunk(r io.Reader, remaining int64) ([]byte, error) {
	if remaining > 0 && remaining <= readBufferSize {
		buf := make([]byte, remaining)
		n, err := io.ReadAtLeast(r, buf, 1)
		return buf[:n], err
	}
	bp := readBuffers.Get().(*[]byte)
	n, err := r.Read(*bp)
	var out []byte
	if n > 0 {
		out = make([]byte, n)
		copy(out, (*bp)[:n])
	}
	readBuffers.Put(bp)
	return out, err
}
