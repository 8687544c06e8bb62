package filter

import "testing"

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
