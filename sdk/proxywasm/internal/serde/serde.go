// Package serde holds the Proxy-Wasm encodings the SDK and its emulator
// share: the header-pair encoding of maps and NUL-joined property paths.
package serde

import "encoding/binary"

// Header-pair encoding (Proxy-Wasm spec "Serialization"), all integers u32
// little-endian: the pair count N, then N (key length, value length) pairs,
// then each key and value followed by a NUL byte.

// SerializeMap encodes pairs. It always returns at least the 4-byte count,
// so the result's first byte has an address even for an empty map.
func SerializeMap(pairs [][2]string) []byte {
	size := 4
	for _, p := range pairs {
		size += 8 + len(p[0]) + 1 + len(p[1]) + 1
	}
	buf := make([]byte, size)
	binary.LittleEndian.PutUint32(buf, uint32(len(pairs)))
	off := 4
	for _, p := range pairs {
		binary.LittleEndian.PutUint32(buf[off:], uint32(len(p[0])))
		binary.LittleEndian.PutUint32(buf[off+4:], uint32(len(p[1])))
		off += 8
	}
	for _, p := range pairs {
		off += copy(buf[off:], p[0])
		off++ // NUL (buf is zeroed)
		off += copy(buf[off:], p[1])
		off++
	}
	return buf
}

// DeserializeMap decodes the header-pair encoding. Like the hosts' parsers
// it is strict: malformed input (short, lengths past the end, a missing NUL
// or trailing bytes) yields nil. Keys and values are copied into strings
// that share one allocation.
func DeserializeMap(b []byte) [][2]string {
	if len(b) < 4 {
		return nil
	}
	n := uint64(binary.LittleEndian.Uint32(b))
	if n == 0 {
		if len(b) != 4 {
			return nil
		}
		return [][2]string{}
	}
	if 4+8*n > uint64(len(b)) {
		return nil
	}
	data := uint64(4 + 8*n)
	total := data
	for i := uint64(0); i < n; i++ {
		k := uint64(binary.LittleEndian.Uint32(b[4+8*i:]))
		v := uint64(binary.LittleEndian.Uint32(b[4+8*i+4:]))
		total += k + 1 + v + 1
	}
	if total != uint64(len(b)) {
		return nil
	}
	all := string(b[data:]) // one copy for every key and value
	out := make([][2]string, n)
	pos := uint64(0)
	for i := uint64(0); i < n; i++ {
		k := uint64(binary.LittleEndian.Uint32(b[4+8*i:]))
		v := uint64(binary.LittleEndian.Uint32(b[4+8*i+4:]))
		if all[pos+k] != 0 || all[pos+k+1+v] != 0 {
			return nil
		}
		out[i][0] = all[pos : pos+k]
		pos += k + 1
		out[i][1] = all[pos : pos+v]
		pos += v + 1
	}
	return out
}

// SerializePropertyPath joins path segments with NUL bytes, the encoding of
// proxy_get_property / proxy_set_property paths.
func SerializePropertyPath(path []string) []byte {
	size := 0
	for _, p := range path {
		size += len(p) + 1
	}
	if size == 0 {
		return nil
	}
	buf := make([]byte, 0, size)
	for i, p := range path {
		if i > 0 {
			buf = append(buf, 0)
		}
		buf = append(buf, p...)
	}
	return buf
}
