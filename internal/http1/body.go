package http1

import (
	"bufio"
	"io"
)

// BodyReader reads a request body framed as the head said: a known
// length or chunked (RFC 9112 §7.1), strictly: a chunk size is hex
// digits only, every chunk ends in CRLF, extensions hold only token,
// quoted-string and "=" characters, and trailer fields obey the rules
// of header fields. It returns io.EOF at the end of the body, an *Error
// for malformed chunked framing, and io.ErrUnexpectedEOF when the
// connection ends early.
type BodyReader struct {
	br  *bufio.Reader
	lim Limits
	// remaining is what is left of the body (length-framed) or of the
	// current chunk (chunked).
	remaining int64
	chunked   bool
	// chunkEnd: the current chunk's data is read, its CRLF is not.
	chunkEnd bool
	done     bool
	err      error
	trailers []Field
}

// NewBodyReader reads the body of req from br, the reader its head came
// from. lim bounds chunked trailers as it bounds headers.
func NewBodyReader(br *bufio.Reader, req *Request, lim Limits) *BodyReader {
	b := &BodyReader{br: br, lim: lim.withDefaults(), chunked: req.Chunked}
	switch {
	case req.Chunked:
	case req.ContentLength > 0:
		b.remaining = req.ContentLength
	default:
		b.done = true
	}
	return b
}

// ResetForRequest is NewBodyReader for a reader reused across the
// requests of a connection (no allocation): b reads req's body from br.
func (b *BodyReader) ResetForRequest(br *bufio.Reader, req *Request, lim Limits) {
	*b = BodyReader{br: br, lim: lim.withDefaults(), chunked: req.Chunked, trailers: b.trailers[:0]}
	switch {
	case req.Chunked:
	case req.ContentLength > 0:
		b.remaining = req.ContentLength
	default:
		b.done = true
	}
}

// Trailers are the chunked body's trailer fields, once Read returned
// io.EOF.
func (b *BodyReader) Trailers() []Field { return b.trailers }

// Done reports whether the whole body has been read.
func (b *BodyReader) Done() bool { return b.done }

// Read implements io.Reader.
func (b *BodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := b.read(p)
	if err != nil {
		b.err = err
		b.done = err == io.EOF
	}
	return n, err
}

func (b *BodyReader) read(p []byte) (int, error) {
	if !b.chunked {
		if int64(len(p)) > b.remaining {
			p = p[:b.remaining]
		}
		n, err := b.br.Read(p)
		b.remaining -= int64(n)
		if b.remaining == 0 {
			return n, io.EOF
		}
		if err == io.EOF {
			return n, io.ErrUnexpectedEOF
		}
		return n, err
	}
	for b.remaining == 0 {
		if b.chunkEnd {
			if err := b.readChunkEnd(); err != nil {
				return 0, err
			}
		}
		size, err := b.readChunkSize()
		if err != nil {
			return 0, err
		}
		if size == 0 {
			return 0, b.readTrailers()
		}
		b.remaining = size
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.br.Read(p)
	b.remaining -= int64(n)
	if b.remaining == 0 {
		b.chunkEnd = true
	}
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// readChunkEnd consumes the CRLF after a chunk's data.
func (b *BodyReader) readChunkEnd() error {
	b.chunkEnd = false
	for _, want := range []byte("\r\n") {
		c, err := b.br.ReadByte()
		if err != nil {
			return unexpected(err)
		}
		if c != want {
			return errBadRequest(DetailsCodecError, "chunk data not followed by CRLF")
		}
	}
	return nil
}

// maxChunkLine bounds a chunk-size line with its extensions.
const maxChunkLine = 4096

// readChunkSize reads "chunk-size [ chunk-ext ] CRLF".
func (b *BodyReader) readChunkSize() (int64, error) {
	budget := maxChunkLine
	line, err := readLine(b.br, &budget, false)
	if err != nil {
		if e, ok := err.(*Error); ok && e.Status == 431 {
			return 0, errBadRequest(DetailsCodecError, "chunk size line too long")
		}
		return 0, unexpected(err)
	}
	var size int64
	i := 0
	for ; i < len(line) && isHex(line[i]); i++ {
		if i == 15 {
			// 16 hex digits would overflow an int64 size.
			return 0, errBadRequest(DetailsCodecError, "chunk size too large")
		}
		size = size<<4 | int64(unhex(line[i]))
	}
	if i == 0 {
		return 0, errBadRequest(DetailsCodecError, "invalid chunk size")
	}
	if err := checkChunkExtensions(line[i:]); err != nil {
		return 0, err
	}
	return size, nil
}

// checkChunkExtensions accepts *( BWS ";" BWS ext-name [ BWS "=" BWS
// ext-value ] ) (RFC 9112 §7.1.1), which the proxy ignores.
func checkChunkExtensions(ext []byte) error {
	bad := errBadRequest(DetailsCodecError, "invalid chunk extension")
	i := 0
	skipBWS := func() {
		for i < len(ext) && (ext[i] == ' ' || ext[i] == '\t') {
			i++
		}
	}
	token := func() bool {
		start := i
		for i < len(ext) && tokenChar[ext[i]] {
			i++
		}
		return i > start
	}
	for {
		start := i
		skipBWS()
		if i == len(ext) {
			if i > start {
				return bad // whitespace leads only to a ";"
			}
			return nil
		}
		if ext[i] != ';' {
			return bad
		}
		i++
		skipBWS()
		if !token() {
			return bad
		}
		skipBWS()
		if i == len(ext) || ext[i] != '=' {
			continue
		}
		i++
		skipBWS()
		if i < len(ext) && ext[i] == '"' {
			i++
			for ; i < len(ext) && ext[i] != '"'; i++ {
				if ext[i] == '\\' {
					i++
				}
				if i >= len(ext) || !valueChar[ext[i]] {
					return bad
				}
			}
			if i >= len(ext) {
				return bad
			}
			i++
		} else if !token() {
			return bad
		}
	}
}

// readTrailers reads the trailer section after the last chunk.
func (b *BodyReader) readTrailers() error {
	budget := b.lim.MaxHeaderBytes
	fields, err := readFields(b.br, &budget, b.lim.MaxHeaders, nil, DetailsTooManyHeaders, nil)
	if err != nil {
		return unexpected(err)
	}
	b.trailers = fields
	return io.EOF
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
