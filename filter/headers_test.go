package filter

import (
	"strings"
	"testing"
)

// TestHeaderMapSetStorage: a map given storage fills it in place, keeps
// its pairs in order when it outgrows it (into an array of its own), and
// starts empty.
func TestHeaderMapSetStorage(t *testing.T) {
	var store [2]Pair
	h := NewHeaderMap(Pair{"stale", "x"})
	h.SetStorage(store[:])
	if h.Len() != 0 {
		t.Fatalf("%d pairs after SetStorage, want none", h.Len())
	}
	h.Add("A", "1")
	h.Add("b", "2")
	if store[0] != (Pair{"a", "1"}) || store[1] != (Pair{"b", "2"}) {
		t.Errorf("storage holds %v, want the two pairs added", store)
	}
	h.Add("c", "3")
	h.Set("a", "4")
	want := []Pair{{"a", "4"}, {"b", "2"}, {"c", "3"}}
	if got := h.Pairs(); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("pairs %v, want %v", got, want)
	}
	if store[0] != (Pair{"a", "1"}) {
		t.Errorf("the outgrown storage changed: %v", store)
	}
}

// TestLowerEveryByte: lower, which scans eight bytes at a time, finds an
// upper-case ASCII letter of any value at any position of keys of 1 to
// 17 bytes (and only those), as a byte-by-byte scan does.
func TestLowerEveryByte(t *testing.T) {
	for n := 1; n <= 17; n++ {
		for pos := 0; pos < n; pos++ {
			for c := 0; c < 256; c++ {
				b := []byte(strings.Repeat("a-b", 6)[:n])
				b[pos] = byte(c)
				k := string(b)
				want := k
				if 'A' <= c && c <= 'Z' {
					want = strings.ToLower(k)
				}
				if got := lower(k); got != want {
					t.Fatalf("lower(%q) = %q, want %q", k, got, want)
				}
			}
		}
	}
}

func BenchmarkLower(b *testing.B) {
	keys := []string{":authority", "x-forwarded-proto", "content-type", "x-request-id", "te"}
	for i := 0; i < b.N; i++ {
		for _, k := range keys {
			_ = lower(k)
		}
	}
}
