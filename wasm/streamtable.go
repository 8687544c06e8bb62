package wasm

import "slices"

// streamTable is an instance's live HTTP stream contexts by context id
// (proxy_set_effective_context finds a stream there; a trap answers the
// streams the instance holds). Ids are handed out in increasing order
// (instance.nextContextID) and a stream is added as it gets its id, so
// appending keeps ids sorted: add is an append, get a binary search, and
// remove clears the slot, compacting once half the slots are empty
// (amortized constant; a steady load reuses the same backing arrays). It
// replaces a map whose assign and delete (hashing, and the table's
// bookkeeping once more than eight streams were live) were among the
// costliest host-side steps of a stream.
type streamTable struct {
	ids  []uint32      // sorted; ids[i] is fs[i]'s id, kept after removal
	fs   []*httpFilter // nil where removed
	dead int           // nil entries in fs
}

// add records f under f.id, replacing a stream with that id, as a map
// would. An id greater than every one before (always, until the uint32
// ids wrap around) is an append.
func (t *streamTable) add(f *httpFilter) {
	if n := len(t.ids); n == 0 || t.ids[n-1] < f.id {
		t.ids = append(t.ids, f.id)
		t.fs = append(t.fs, f)
		return
	}
	i, found := slices.BinarySearch(t.ids, f.id)
	if found {
		if t.fs[i] == nil {
			t.dead--
		}
		t.fs[i] = f
		return
	}
	t.ids = slices.Insert(t.ids, i, f.id)
	t.fs = slices.Insert(t.fs, i, f)
}

// get returns the live stream with context id id, or nil.
func (t *streamTable) get(id uint32) *httpFilter {
	if i, ok := slices.BinarySearch(t.ids, id); ok {
		return t.fs[i]
	}
	return nil
}

// remove forgets the stream with context id id, if it is live.
func (t *streamTable) remove(id uint32) {
	i, ok := slices.BinarySearch(t.ids, id)
	if !ok || t.fs[i] == nil {
		return
	}
	t.fs[i] = nil
	t.dead++
	if 2*t.dead >= len(t.fs) {
		n := 0
		for j, f := range t.fs {
			if f != nil {
				t.ids[n], t.fs[n] = t.ids[j], f
				n++
			}
		}
		clear(t.fs[n:]) // no pointers to ended streams kept alive
		t.ids, t.fs, t.dead = t.ids[:n], t.fs[:n], 0
	}
}

// len is the number of live streams.
func (t *streamTable) len() int { return len(t.fs) - t.dead }

// each calls fn for every live stream, in id order; fn must not add or
// remove streams.
func (t *streamTable) each(fn func(*httpFilter)) {
	for _, f := range t.fs {
		if f != nil {
			fn(f)
		}
	}
}
