// Package filter defines the contract between the proxy's HTTP connection
// manager and the stream filters it runs (Wasm filters, native Go filters).
//
// The proxy owns the stream and calls a filter's Decode* methods for the
// request path and Encode* methods for the response path, always from the
// stream's own goroutine and never concurrently. A filter asks for actions
// (continue, local reply, reset) through its Callbacks; those may be called
// from any goroutine and take effect after the current filter call returns,
// the way Envoy defers actions requested inside a Wasm callback.
package filter

import "strings"

// Pair is one header (or trailer) entry. Keys are stored lower-case.
type Pair struct {
	Key   string
	Value string
}

// HeaderMap is an ordered multi-map of header pairs as Envoy keeps them:
// lower-case keys, duplicates allowed, pseudo-headers (":method", ":path",
// ":authority", ":scheme", ":status") first. It is not safe for concurrent
// use; the stream goroutine owns it.
type HeaderMap struct {
	pairs []Pair
	// version counts changes, so a consumer can tell whether the map
	// changed since it last looked (the router re-matches a route only
	// when a filter edited the request headers).
	version uint64
}

// NewHeaderMap returns a map holding pairs, with keys lower-cased.
func NewHeaderMap(pairs ...Pair) *HeaderMap {
	h := &HeaderMap{pairs: make([]Pair, 0, len(pairs))}
	for _, p := range pairs {
		h.Add(p.Key, p.Value)
	}
	return h
}

// NewHeaderMapCap returns an empty map with room for n pairs.
func NewHeaderMapCap(n int) *HeaderMap {
	return &HeaderMap{pairs: make([]Pair, 0, n)}
}

// SetStorage empties the map and makes buf's array its storage: pairs
// added go into that array until it is full, after which the map grows
// into an array of its own as always. The map owns the array from then
// on: the caller neither reads nor writes it except through the map.
// This is for a map whose storage lives in the struct that holds the
// map (a stream's request headers), so that both are one allocation and
// live and die together; it is not for reusing an array a previous map
// may still reference.
func (h *HeaderMap) SetStorage(buf []Pair) {
	h.version++
	h.pairs = buf[:0]
}

// Grow makes room for n more pairs without another allocation (for a
// codec that knows how many fields it is about to add).
func (h *HeaderMap) Grow(n int) {
	if n > cap(h.pairs)-len(h.pairs) {
		h.pairs = append(make([]Pair, 0, len(h.pairs)+n), h.pairs...)
	}
}

// Len reports the number of pairs.
func (h *HeaderMap) Len() int { return len(h.pairs) }

// Version changes whenever the map does.
func (h *HeaderMap) Version() uint64 { return h.version }

// Pairs returns the pairs in order. The slice is the map's own storage:
// callers must not keep it across a change of the map.
func (h *HeaderMap) Pairs() []Pair { return h.pairs }

// ByteSize is the sum of key and value lengths, which is what Envoy
// reports for proxy_get_header_map_size.
func (h *HeaderMap) ByteSize() int {
	n := 0
	for _, p := range h.pairs {
		n += len(p.Key) + len(p.Value)
	}
	return n
}

// Get returns the first value for key.
func (h *HeaderMap) Get(key string) (string, bool) { return h.GetLower(lower(key)) }

// Values returns every value for key, in order.
func (h *HeaderMap) Values(key string) []string {
	key = lower(key)
	var out []string
	for _, p := range h.pairs {
		if p.Key == key {
			out = append(out, p.Value)
		}
	}
	return out
}

// Add appends a pair; an existing key keeps its values.
func (h *HeaderMap) Add(key, value string) { h.AddLower(lower(key), value) }

// Set replaces every value of key with value (appending if absent).
func (h *HeaderMap) Set(key, value string) { h.SetLower(lower(key), value) }

// Del removes every value of key.
func (h *HeaderMap) Del(key string) { h.removeFrom(0, lower(key)) }

// GetLower, AddLower and SetLower are Get, Add and Set for a key its
// caller knows to be lower case already (a constant, a name a codec
// lowered): they do what Get, Add and Set do without scanning the key.
// A key with an upper-case ASCII letter is the caller's bug: it is
// stored, or looked for, as it is.
func (h *HeaderMap) GetLower(key string) (string, bool) {
	for _, p := range h.pairs {
		if p.Key == key {
			return p.Value, true
		}
	}
	return "", false
}

// AddLower is Add for a lower-case key (GetLower).
func (h *HeaderMap) AddLower(key, value string) {
	h.version++
	h.pairs = append(h.pairs, Pair{Key: key, Value: value})
}

// SetLower is Set for a lower-case key (GetLower).
func (h *HeaderMap) SetLower(key, value string) {
	h.version++
	for i := range h.pairs {
		if h.pairs[i].Key == key {
			h.pairs[i].Value = value
			h.removeFrom(i+1, key)
			return
		}
	}
	h.pairs = append(h.pairs, Pair{Key: key, Value: value})
}

// Replace swaps the whole content for pairs (keys lower-cased).
func (h *HeaderMap) Replace(pairs []Pair) {
	h.version++
	h.pairs = h.pairs[:0]
	for _, p := range pairs {
		h.Add(p.Key, p.Value)
	}
}

// Clone returns an independent copy.
func (h *HeaderMap) Clone() *HeaderMap {
	return &HeaderMap{pairs: append([]Pair(nil), h.pairs...)}
}

func (h *HeaderMap) removeFrom(start int, key string) {
	h.version++
	out := h.pairs[:start]
	for _, p := range h.pairs[start:] {
		if p.Key != key {
			out = append(out, p)
		}
	}
	clear(h.pairs[len(out):])
	h.pairs = out
}

// lower avoids an allocation for keys that are already lower-case, which
// is nearly all of them. Every Get, Set, Add and Del scans its key, so
// the scan looks at eight bytes at a time (hasUpper).
func lower(s string) string {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		b := s[i : i+8]
		w := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
		if hasUpper(w) {
			return strings.ToLower(s)
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// hasUpper reports whether one of the eight bytes of w is an ASCII
// upper-case letter. Each byte's low seven bits plus 0x3f carry into its
// top bit when they are at least 'A' (0x41), plus 0x25 when they are
// above 'Z' (0x5a); neither sum carries into the next byte. A byte whose
// own top bit is set (not ASCII) is left out.
func hasUpper(w uint64) bool {
	const low7, top = 0x7f7f7f7f7f7f7f7f, 0x8080808080808080
	h := w & low7
	atLeastA := h + 0x3f3f3f3f3f3f3f3f
	aboveZ := h + 0x2525252525252525
	return atLeastA&^aboveZ&^w&top != 0
}
