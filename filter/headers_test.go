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

// TestLowerKeyMethods: GetLower, AddLower and SetLower, given lower-case
// keys, leave a map as Get, Add and Set do (pairs, order, duplicates
// removed by Set, a change of Version), and what they store is found by
// Get in any case.
func TestLowerKeyMethods(t *testing.T) {
	a, b := NewHeaderMap(), NewHeaderMap()
	steps := []struct {
		op, key, value string
	}{
		{"add", ":status", "200"}, {"add", "set-cookie", "a=1"}, {"add", "set-cookie", "b=2"},
		{"add", "x-up", "1"}, {"set", "set-cookie", "c=3"}, {"set", "x-new", "n"}, {"set", "x-up", "2"},
	}
	for _, s := range steps {
		va, vb := a.Version(), b.Version()
		switch s.op {
		case "add":
			a.Add(s.key, s.value)
			b.AddLower(s.key, s.value)
		case "set":
			a.Set(s.key, s.value)
			b.SetLower(s.key, s.value)
		}
		if a.Version() == va || b.Version() == vb {
			t.Fatalf("%s %q: the version did not change", s.op, s.key)
		}
	}
	want := []Pair{{":status", "200"}, {"set-cookie", "c=3"}, {"x-up", "2"}, {"x-new", "n"}}
	for _, h := range []*HeaderMap{a, b} {
		got := h.Pairs()
		if len(got) != len(want) {
			t.Fatalf("pairs %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("pairs %v, want %v", got, want)
			}
		}
	}
	for _, k := range []string{"set-cookie", "x-new", "missing"} {
		v1, ok1 := b.Get(strings.ToUpper(k))
		v2, ok2 := b.GetLower(k)
		if v1 != v2 || ok1 != ok2 {
			t.Errorf("%q: Get of its upper case %q %v, GetLower %q %v", k, v1, ok1, v2, ok2)
		}
	}
	if v, ok := b.GetLower("x-new"); !ok || v != "n" {
		t.Errorf("GetLower(x-new) = %q %v, want n true", v, ok)
	}
}
