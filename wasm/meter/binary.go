package meter

// A minimal reader and writer for the WebAssembly binary format: only the
// primitives Instrument needs (bytes, LEB128 integers, names). The
// encodings are the ones in the core specification, §5.1 and §5.2:
//
//   - uN is unsigned LEB128 using at most ceil(N/7) bytes; in the last byte
//     the bits above N must be zero.
//   - sN is signed (two's complement) LEB128 using at most ceil(N/7) bytes;
//     in the last byte the bits above N must all equal the sign bit.
//   - a name is a u32 byte length followed by that many bytes.
//
// The reader is strict on purpose: accepting an over-long or overflowing
// integer that wazero would reject could make Instrument re-encode it
// canonically and turn an invalid module into a valid one.

import (
	"errors"
	"fmt"
)

// errTruncated is wrapped by every error caused by input that ends early.
var errTruncated = errors.New("unexpected end of module")

// reader walks a byte slice that is part of a module. base is the
// absolute offset of b[0] in the module, so errors name the byte a
// reader of wasm-objdump output would look for.
type reader struct {
	b    []byte
	pos  int
	base int
}

func (r *reader) offset() int { return r.base + r.pos }

func (r *reader) done() bool { return r.pos >= len(r.b) }

func (r *reader) errorf(format string, args ...any) error {
	return fmt.Errorf("at offset %#x: %s", r.offset(), fmt.Sprintf(format, args...))
}

func (r *reader) truncated(what string) error {
	return fmt.Errorf("at offset %#x: reading %s: %w", r.offset(), what, errTruncated)
}

func (r *reader) byte(what string) (byte, error) {
	if r.pos >= len(r.b) {
		return 0, r.truncated(what)
	}
	c := r.b[r.pos]
	r.pos++
	return c, nil
}

// bytes returns the next n bytes without copying.
func (r *reader) bytes(n uint64, what string) ([]byte, error) {
	if n > uint64(len(r.b)-r.pos) {
		return nil, r.truncated(what)
	}
	s := r.b[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return s, nil
}

// uleb reads an unsigned LEB128 integer of at most bits bits.
func (r *reader) uleb(bits uint, what string) (uint64, error) {
	maxBytes := int((bits + 6) / 7)
	var v uint64
	for i := 0; ; i++ {
		c, err := r.byte(what)
		if err != nil {
			return 0, err
		}
		if i == maxBytes-1 {
			// The last allowed byte: no continuation, and no bits beyond
			// the integer's width.
			unused := uint(7*(i+1)) - bits
			if c&0x80 != 0 || (unused > 0 && c>>(7-unused) != 0) {
				return 0, r.errorf("%s: integer too large or too long for u%d", what, bits)
			}
		}
		v |= uint64(c&0x7f) << (7 * uint(i))
		if c&0x80 == 0 {
			return v, nil
		}
	}
}

func (r *reader) u32(what string) (uint32, error) {
	v, err := r.uleb(32, what)
	return uint32(v), err
}

// sleb reads a signed LEB128 integer of at most bits bits.
func (r *reader) sleb(bits uint, what string) (int64, error) {
	maxBytes := int((bits + 6) / 7)
	var v int64
	for i := 0; ; i++ {
		c, err := r.byte(what)
		if err != nil {
			return 0, err
		}
		shift := 7 * uint(i)
		if i == maxBytes-1 {
			if c&0x80 != 0 {
				return 0, r.errorf("%s: integer too long for s%d", what, bits)
			}
			// Bits from the sign bit (bit bits-1) up to bit 5 of this
			// byte must all be equal. The spec wants bit 6 to match too;
			// wazero does not check it, and a module wazero runs must
			// stay accepted (TestCorruptedModules found one).
			signPos := bits - 1 - shift // position of the sign bit in c
			upper := (c & 0x3f) >> signPos
			if upper != 0 && upper != 0x3f>>signPos {
				return 0, r.errorf("%s: integer too large for s%d", what, bits)
			}
		}
		v |= int64(c&0x7f) << shift
		if c&0x80 == 0 {
			if shift+7 < 64 && c&0x40 != 0 {
				v |= -1 << (shift + 7)
			}
			return v, nil
		}
	}
}

// name reads a length-prefixed byte string (module, field and export
// names). The bytes are not checked for UTF-8: Instrument copies names and
// wazero validates them.
func (r *reader) name(what string) ([]byte, error) {
	n, err := r.u32(what + " length")
	if err != nil {
		return nil, err
	}
	return r.bytes(uint64(n), what)
}

// count reads a vector length and rejects lengths that cannot fit in what
// is left, each element taking at least minSize bytes, so a garbage count
// never sizes an allocation.
func (r *reader) count(minSize int, what string) (uint32, error) {
	n, err := r.u32(what)
	if err != nil {
		return 0, err
	}
	if uint64(n)*uint64(minSize) > uint64(len(r.b)-r.pos) {
		return 0, fmt.Errorf("at offset %#x: %s %d does not fit in the %d bytes left: %w", r.offset(), what, n, len(r.b)-r.pos, errTruncated)
	}
	return n, nil
}

func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s []byte) []byte {
	return append(appendU32(b, uint32(len(s))), s...)
}

// appendSection appends a section with its id and content length.
func appendSection(b []byte, id byte, content []byte) []byte {
	b = append(b, id)
	b = appendU32(b, uint32(len(content)))
	return append(b, content...)
}
