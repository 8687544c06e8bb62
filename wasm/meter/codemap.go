package meter

import "sort"

// CodeMap relates code offsets of an instrumented module to those of the
// module it was made from. Offsets count from the first byte of the code
// section's content (after its id and size), which is how DWARF for
// WebAssembly and wazero's stack traces address instructions.
//
// Instrumenting only inserts metering code and re-encodes call indices,
// so the map is piecewise linear: a run of bytes copied unchanged keeps a
// constant distance between its old and new offsets. The zero CodeMap is
// the identity.
type CodeMap struct {
	// orig and inst are the starts of the runs, strictly increasing; the
	// run at orig[i] begins at inst[i] in the instrumented module.
	orig, inst []uint32
}

// add starts a run at original offset o, instrumented offset n, unless
// the previous run already maps o there. Runs must be added in order.
func (m *CodeMap) add(o, n uint32) {
	if k := len(m.orig); k > 0 {
		last := k - 1
		switch {
		case o < m.orig[last]:
			return
		case o == m.orig[last]:
			m.inst[last] = n
			return
		case n-m.inst[last] == o-m.orig[last]:
			return
		}
	} else if o == n {
		return
	}
	m.orig = append(m.orig, o)
	m.inst = append(m.inst, n)
}

// inserted records k bytes of metering code placed at instrumented
// offset n, ahead of the instruction at original offset o: o maps to the
// start of the inserted code, the rest of the instruction after it.
func (m *CodeMap) inserted(o, n, k uint32) {
	m.add(o, n)
	m.add(o+1, n+k+1)
}

// Instrumented returns where the instruction at original offset o is in
// the instrumented module. Metering code inserted ahead of an instruction
// (at a function's entry) maps to the start of that code, so a DWARF row
// for the first instruction also covers the check in front of it.
func (m *CodeMap) Instrumented(o uint32) uint32 {
	i := sort.Search(len(m.orig), func(i int) bool { return m.orig[i] > o }) - 1
	if i < 0 {
		return o
	}
	return m.inst[i] + (o - m.orig[i])
}

// Original returns the original offset of the instruction at offset n of
// the instrumented module. Inserted metering code maps to the original
// instruction it was inserted next to.
func (m *CodeMap) Original(n uint32) uint32 {
	i := sort.Search(len(m.inst), func(i int) bool { return m.inst[i] > n }) - 1
	if i < 0 {
		if len(m.orig) > 0 && n >= m.orig[0] {
			return m.orig[0] - 1 // inside code inserted before the first run
		}
		return n
	}
	o := m.orig[i] + (n - m.inst[i])
	if i+1 < len(m.orig) && o >= m.orig[i+1] {
		o = m.orig[i+1] - 1 // inside inserted code: the instruction before it
	}
	return o
}
