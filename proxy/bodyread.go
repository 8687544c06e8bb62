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
// known small remainder is read straight into its own slice (store's,
// when it has room and was not used yet), and otherwise a pooled buffer
// takes the read and only the bytes read are copied out. A fixed 16 KiB
// allocation per read was most of the proxy's garbage.
func readChunk(r io.Reader, remaining int64, store *inlineBody) ([]byte, error) {
	if remaining > 0 && remaining <= readBufferSize {
		buf := store.take(remaining)
		if buf == nil {
			buf = make([]byte, remaining)
		}
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

// inlineBodyBytes is the size of a body's first chunk kept in the
// allocation of the stream or upstream request it belongs to.
const inlineBodyBytes = 128

// inlineBody is storage for one body chunk inside the struct of the
// stream (the request body) or upstream request (the response body) it
// belongs to, so that a small body costs no allocation of its own. It
// is handed out once (take), to the first chunk that fits: a chunk is
// the filters' to keep for as long as they like, and the storage lives
// as long as its struct, so it is never reused for another chunk.
type inlineBody struct {
	buf  [inlineBodyBytes]byte
	used bool
}

// take returns the storage as an n-byte slice (capped at n, so an append
// to the chunk cannot reach past it), or nil when b is nil, was taken
// already or is too small.
func (b *inlineBody) take(n int64) []byte {
	if b == nil || b.used || n > inlineBodyBytes {
		return nil
	}
	b.used = true
	return b.buf[:n:n]
}
