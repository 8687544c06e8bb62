package meter

import (
	"bytes"
	"slices"
)

// MaxCoalesceGap is the largest run of zero bytes CoalesceData writes
// between two data segments to make them one. The Go linker starts a new
// segment at every run of eight or more zero bytes, so a Go-built plugin
// has tens of thousands of segments separated by 9–64 zero bytes; a
// larger gap is left as a gap.
const MaxCoalesceGap = 64

// CoalesceData rewrites a module's data section so that active segments
// lying next to each other in linear memory, at most MaxCoalesceGap bytes
// apart, become one segment whose gaps are zero bytes. The memory an
// instance starts with is byte for byte the same: a module's own memory
// is all zeros before its segments are written, the segments may not
// overlap (so their order does not matter) and no other segment lies in
// a gap. What changes is the count: wazero v1.12 keeps a 24-byte entry
// per segment in every instance and copies each one apart at
// instantiation, which for a Go-built module's ~40,000 segments is about
// 1 MiB of every instance and a loop of 40,000 copies (docs/perf.md,
// "Issue 16: instances sharing their initial pages").
//
// It returns wasm itself, unchanged, unless every condition that makes
// the rewrite invisible holds: the module has a data section and no data
// count section (without one, no instruction can name a segment, so
// renumbering them is safe); every segment is active in memory 0 with a
// constant i32 offset; no two segments overlap; the memory is the
// module's own (an imported memory's gaps may hold another module's
// bytes); and the name section, if any, names no data segment. Anything
// it cannot read leaves the module as it was, for Instrument and wazero
// to report.
func CoalesceData(wasm []byte) []byte {
	if len(wasm) < len(wasmMagic) || !bytes.Equal(wasm[:len(wasmMagic)], wasmMagic) {
		return wasm
	}
	var data section
	dataHeader := 0 // where the data section's id byte is
	r := &reader{b: wasm, pos: len(wasmMagic)}
	for !r.done() {
		header := r.pos
		id, _ := r.byte("section id")
		size, err := r.u32("section size")
		if err != nil {
			return wasm
		}
		off := r.offset()
		content, err := r.bytes(uint64(size), "section content")
		if err != nil {
			return wasm
		}
		s := section{id: id, data: content, off: off}
		switch id {
		case secDataCount:
			return wasm
		case secImport:
			if importsMemory(s) {
				return wasm
			}
		case secCustom:
			if namesDataSegments(s) {
				return wasm
			}
		case secData:
			data, dataHeader = s, header
		}
	}
	if data.data == nil {
		return wasm
	}
	segs, ok := activeSegments(data)
	if !ok || len(segs) < 2 {
		return wasm
	}
	merged := coalesce(segs)
	if len(merged) == len(segs) {
		return wasm
	}
	content := appendU32(nil, uint32(len(merged)))
	for _, m := range merged {
		content = append(content, 0, 0x41) // active in memory 0, i32.const
		content = appendS32(content, int32(m.offset))
		content = append(content, 0x0b) // end
		content = appendU32(content, uint32(m.size))
		for _, part := range m.parts {
			content = append(content, make([]byte, part.gap)...)
			content = append(content, part.bytes...)
		}
	}
	// Everything before the data section is copied, then the new
	// section, then whatever custom sections followed it.
	out := make([]byte, 0, len(wasm)+len(content)-len(data.data))
	out = append(out, wasm[:dataHeader]...)
	out = appendSection(out, secData, content)
	return append(out, wasm[data.off+len(data.data):]...)
}

// dataSegment is an active segment: where it goes and its bytes.
type dataSegment struct {
	offset uint64
	bytes  []byte
}

// activeSegments reads a data section whose segments are all active in
// memory 0 at constant offsets and pairwise disjoint, sorted by offset;
// ok is false for any other section.
func activeSegments(s section) (segs []dataSegment, ok bool) {
	r := s.reader()
	n, err := r.count(2, "data segment count")
	if err != nil {
		return nil, false
	}
	segs = make([]dataSegment, 0, n)
	for i := uint32(0); i < n; i++ {
		flags, err := r.u32("data segment flags")
		if err != nil || flags != 0 {
			return nil, false
		}
		if op, err := r.byte("offset opcode"); err != nil || op != 0x41 {
			return nil, false
		}
		v, err := r.sleb(32, "offset")
		if err != nil {
			return nil, false
		}
		if end, err := r.byte("offset end"); err != nil || end != 0x0b {
			return nil, false
		}
		size, err := r.u32("data segment size")
		if err != nil {
			return nil, false
		}
		b, err := r.bytes(uint64(size), "data segment bytes")
		if err != nil {
			return nil, false
		}
		// The offset is an i32 that memory.init reads as unsigned.
		segs = append(segs, dataSegment{offset: uint64(uint32(int32(v))), bytes: b})
	}
	if !r.done() {
		return nil, false
	}
	slices.SortStableFunc(segs, func(a, b dataSegment) int {
		switch {
		case a.offset < b.offset:
			return -1
		case a.offset > b.offset:
			return 1
		}
		return 0
	})
	for i := 1; i < len(segs); i++ {
		if segs[i-1].offset+uint64(len(segs[i-1].bytes)) > segs[i].offset {
			return nil, false // overlapping: their order matters
		}
	}
	return segs, true
}

// mergedSegment is one output segment: its offset, total size and the
// input segments it is made of, each after its run of zero bytes.
type mergedSegment struct {
	offset uint64
	size   uint64
	parts  []mergedPart
}

type mergedPart struct {
	gap   int
	bytes []byte
}

// coalesce joins sorted, disjoint segments at most MaxCoalesceGap apart.
// An output segment stays within the i32 offset range: it never ends
// past the last byte an input segment wrote.
func coalesce(segs []dataSegment) []mergedSegment {
	var out []mergedSegment
	for _, s := range segs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			end := last.offset + last.size
			if gap := s.offset - end; gap <= MaxCoalesceGap {
				last.parts = append(last.parts, mergedPart{gap: int(gap), bytes: s.bytes})
				last.size += gap + uint64(len(s.bytes))
				continue
			}
		}
		out = append(out, mergedSegment{offset: s.offset, size: uint64(len(s.bytes)), parts: []mergedPart{{bytes: s.bytes}}})
	}
	return out
}

// importsMemory reports whether an import section imports a memory, or
// cannot be read (then the module is left alone). It reads the entries
// with parseImports' readers.
func importsMemory(s section) bool {
	r := s.reader()
	n, err := r.count(4, "import count")
	if err != nil {
		return true
	}
	for i := uint32(0); i < n; i++ {
		if _, err := r.name("import module name"); err != nil {
			return true
		}
		if _, err := r.name("import field name"); err != nil {
			return true
		}
		kind, err := r.byte("import kind")
		if err != nil {
			return true
		}
		switch kind {
		case 0x00:
			_, err = r.u32("import type index")
		case 0x01:
			err = readTableType(r)
		case 0x03:
			err = readGlobalType(r)
		default: // 0x02, a memory; anything else is not ours to rewrite
			return true
		}
		if err != nil {
			return true
		}
	}
	return false
}

// namesDataSegments reports whether a custom section is a name section
// with a data segment names subsection (id 9 in the extended name
// section), whose indices a merge would invalidate. A name section that
// does not read counts as naming them.
func namesDataSegments(s section) bool {
	r := s.reader()
	name, err := r.name("custom section name")
	if err != nil || string(name) != "name" {
		return false
	}
	for !r.done() {
		id, err := r.byte("name subsection id")
		if err != nil {
			return true
		}
		size, err := r.u32("name subsection size")
		if err != nil {
			return true
		}
		if id == 9 {
			return true
		}
		if _, err := r.bytes(uint64(size), "name subsection"); err != nil {
			return true
		}
	}
	return false
}
