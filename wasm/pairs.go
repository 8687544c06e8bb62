package wasm

import (
	"encoding/binary"

	"github.com/wasmproxy/wasmproxy/filter"
)

// Limits on a serialized pair list, as cpp-host enforces them: anything
// larger parses as an empty list.
const (
	maxPairs     = 1024
	maxPairBytes = 1 << 20
)

// appendPairs serializes pairs in the ABI encoding (§1.6):
// [N] N×[klen][vlen] then N×(key 0 value 0), all integers u32 LE.
// It appends to dst so callers can reuse a scratch buffer.
func appendPairs(dst []byte, pairs []filter.Pair) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(pairs)))
	for _, p := range pairs {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p.Key)))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p.Value)))
	}
	for _, p := range pairs {
		dst = append(dst, p.Key...)
		dst = append(dst, 0)
		dst = append(dst, p.Value...)
		dst = append(dst, 0)
	}
	return dst
}

// parsePairs decodes the ABI pair encoding strictly: a short buffer,
// trailing bytes, a missing NUL, more than 1024 pairs or more than 1 MiB
// give nil, which callers treat as an empty list (Envoy's behaviour, so
// proxy_set_header_map_pairs with garbage clears the map).
func parsePairs(b []byte) []filter.Pair {
	if len(b) < 4 || len(b) > maxPairBytes {
		return nil
	}
	n := binary.LittleEndian.Uint32(b)
	if n == 0 || n > maxPairs {
		return nil
	}
	sizes := 4 + int(n)*8
	if len(b) < sizes {
		return nil
	}
	out := make([]filter.Pair, 0, n)
	pos := sizes
	for i := 0; i < int(n); i++ {
		klen := int(binary.LittleEndian.Uint32(b[4+i*8:]))
		vlen := int(binary.LittleEndian.Uint32(b[8+i*8:]))
		if klen < 0 || vlen < 0 || pos+klen+1+vlen+1 > len(b) {
			return nil
		}
		key := b[pos : pos+klen]
		if b[pos+klen] != 0 {
			return nil
		}
		pos += klen + 1
		value := b[pos : pos+vlen]
		if b[pos+vlen] != 0 {
			return nil
		}
		pos += vlen + 1
		out = append(out, filter.Pair{Key: string(key), Value: string(value)})
	}
	if pos != len(b) {
		return nil
	}
	return out
}
