package wasm

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestStreamTable: the table answers as the map it replaced, for streams
// added in id order and removed in any order, for ids added out of
// order (after the uint32 ids wrap around) and twice, and for removing
// what is not there.
func TestStreamTable(t *testing.T) {
	type op struct {
		add bool
		id  uint32
	}
	adds := func(ids ...uint32) []op {
		var out []op
		for _, id := range ids {
			out = append(out, op{true, id})
		}
		return out
	}
	removes := func(ids ...uint32) []op {
		var out []op
		for _, id := range ids {
			out = append(out, op{false, id})
		}
		return out
	}
	cat := func(parts ...[]op) []op { return slices.Concat(parts...) }
	random := func(seed uint64) []op {
		r := rand.New(rand.NewPCG(seed, 1))
		var ops []op
		var live []uint32
		next := uint32(2)
		for range 2000 {
			if len(live) == 0 || r.IntN(3) != 0 {
				ops = append(ops, op{true, next})
				live = append(live, next)
				next += uint32(1 + r.IntN(3)) // root and TCP contexts take ids too
			} else {
				i := r.IntN(len(live))
				ops = append(ops, op{false, live[i]})
				live = slices.Delete(live, i, i+1)
			}
			if r.IntN(50) == 0 {
				ops = append(ops, op{false, next + 7}) // never added
			}
		}
		return ops
	}
	for _, tc := range []struct {
		name string
		ops  []op
	}{
		{"empty", nil},
		{"in order, removed first to last", cat(adds(2, 3, 4, 5), removes(2, 3, 4, 5))},
		{"in order, removed last to first", cat(adds(2, 3, 4, 5), removes(5, 4, 3, 2))},
		{"interleaved", cat(adds(2, 3), removes(2), adds(4, 5, 6), removes(5), adds(9), removes(3, 9))},
		{"removed twice and never added", cat(adds(2, 3, 4), removes(3, 3, 7, 1), adds(8), removes(2, 8))},
		{"wrapped ids", cat(adds(4294967290, 4294967295), adds(1, 3), removes(4294967290), adds(2), removes(1))},
		{"added twice", cat(adds(2, 3, 4), adds(3), removes(3), adds(3), removes(2, 4), adds(2))},
		{"random", random(1)},
		{"random, another seed", random(2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tab streamTable
			want := map[uint32]*httpFilter{}
			check := func(step int) {
				t.Helper()
				if tab.len() != len(want) {
					t.Fatalf("step %d: len = %d, want %d", step, tab.len(), len(want))
				}
				for id, f := range want {
					if got := tab.get(id); got != f {
						t.Fatalf("step %d: get(%d) = %p, want %p", step, id, got, f)
					}
				}
				var seen []uint32
				tab.each(func(f *httpFilter) {
					if want[f.id] != f {
						t.Fatalf("step %d: each visits stream %d, not live", step, f.id)
					}
					seen = append(seen, f.id)
				})
				if len(seen) != len(want) || !slices.IsSorted(seen) {
					t.Fatalf("step %d: each visits %v, want the %d live ids in order", step, seen, len(want))
				}
			}
			for i, o := range tc.ops {
				if o.add {
					f := &httpFilter{id: o.id}
					tab.add(f)
					want[o.id] = f
				} else {
					tab.remove(o.id)
					delete(want, o.id)
					if tab.get(o.id) != nil {
						t.Fatalf("step %d: %d still found after removal", i, o.id)
					}
				}
				check(i)
			}
			if len(tab.fs) > 2*tab.len()+1 {
				t.Errorf("%d slots kept for %d live streams", len(tab.fs), tab.len())
			}
		})
	}
}

// TestStreamTableSteadyStateAllocatesNothing: streams that come and go at
// a steady concurrency reuse the table's arrays.
func TestStreamTableSteadyStateAllocatesNothing(t *testing.T) {
	var tab streamTable
	fs := make([]httpFilter, 32)
	next := uint32(2)
	for i := range 32 {
		fs[i].id = next
		next++
		tab.add(&fs[i])
	}
	oldest := 0
	n := testing.AllocsPerRun(1000, func() {
		f := &fs[oldest%len(fs)]
		tab.remove(f.id)
		f.id = next
		next++
		tab.add(f)
		oldest++
	})
	if n != 0 {
		t.Errorf("a stream's add and remove allocate %v objects, want 0", n)
	}
	if tab.len() != 32 {
		t.Errorf("len = %d, want 32", tab.len())
	}
}
