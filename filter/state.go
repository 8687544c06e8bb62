package filter

import "sync"

// FilterState is a stream's named values shared by its filters (Envoy's
// filter state): what plugins store with proxy_set_property (under
// "wasm.<name>") and the set_envoy_filter_state foreign function. Safe
// for concurrent use; the zero value is empty and usable.
type FilterState struct {
	mu       sync.Mutex
	values   map[string][]byte
	readonly map[string]bool
}

// Get returns a copy-free view of the value under key.
func (s *FilterState) Get(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[key]
	return v, ok
}

// Set stores a copy of value under key. It fails (false) when the key
// was stored read-only before.
func (s *FilterState) Set(key string, value []byte, readonly bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readonly[key] {
		return false
	}
	if s.values == nil {
		s.values = map[string][]byte{}
	}
	s.values[key] = append([]byte(nil), value...)
	if readonly {
		if s.readonly == nil {
			s.readonly = map[string]bool{}
		}
		s.readonly[key] = true
	}
	return true
}

// Keys lists the stored keys (unsorted).
func (s *FilterState) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.values))
	for k := range s.values {
		out = append(out, k)
	}
	return out
}
