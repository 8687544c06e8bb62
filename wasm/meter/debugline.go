package meter

import (
	"debug/dwarf"
	"encoding/binary"
	"sort"
)

// DWARF addresses instructions by their offset in the code section, and
// every fuel check Instrument inserts moves the code after it, so the
// module's own DWARF would name the wrong source line. What stack traces
// need from it is the line table: wazero finds the compilation unit whose
// address range holds a frame's offset and reads that unit's line
// program. translateDebugLines reads every unit's line program (any DWARF
// version Go's debug/dwarf reads, 2 to 5), moves each row to its
// instruction's new offset, and writes one DWARF 4 unit covering the whole
// code section with one line program holding all of it: the three
// sections wazero v1.12 reads. Lost in translation: inlined-call frames
// (.debug_info's inlined subroutines) and everything else DWARF says about
// types and variables, which traces do not use.

// debugSection is a custom section to append to the instrumented module.
type debugSection struct {
	name string
	data []byte
}

// lineRow is one row of a line table.
type lineRow struct {
	addr         uint32
	file         uint32 // index into the file table, from 1
	line, column uint32
}

// lineSequence is a run of rows ending at end (DW_LNE_end_sequence).
type lineSequence struct {
	rows []lineRow
	end  uint32
}

// translateDebugLines returns the DWARF sections that locate the
// instrumented code, or nil when sections has no line table or one that
// does not parse (a trace then shows function names only). code maps
// original offsets to new ones; origSize and newSize are the code
// section's sizes before and after. It never panics, whatever the input.
func translateDebugLines(sections map[string][]byte, code *CodeMap, origSize, newSize uint32) (out []debugSection) {
	if sections[".debug_info"] == nil || sections[".debug_line"] == nil || origSize == 0 {
		return nil
	}
	defer func() {
		// debug/dwarf is not hardened against hostile input; a plugin's
		// debug info is not worth a crash.
		if recover() != nil {
			out = nil
		}
	}()
	d, err := dwarf.New(sections[".debug_abbrev"], sections[".debug_aranges"], sections[".debug_frame"],
		sections[".debug_info"], sections[".debug_line"], sections[".debug_pubnames"],
		sections[".debug_ranges"], sections[".debug_str"])
	if err != nil {
		return nil
	}
	for _, name := range []string{".debug_addr", ".debug_line_str", ".debug_str_offsets", ".debug_rnglists"} {
		if b := sections[name]; b != nil {
			if d.AddSection(name, b) != nil {
				return nil
			}
		}
	}

	files := map[string]uint32{}
	var names []string
	var seqs []lineSequence
	// A sane table spends at least a byte per row; units sharing or
	// overlapping one line program could otherwise make the work
	// quadratic in the section's size.
	budget := len(sections[".debug_line"])
	programs := map[int64]bool{}
	r := d.Reader()
	// Hostile DWARF can send the reader back to an earlier entry (a
	// sibling attribute pointing into another unit), looping forever;
	// entries of a sane section come at increasing offsets.
	last := dwarf.Offset(0)
	for n := 0; ; n++ {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if n > 0 && e.Offset <= last {
			return nil
		}
		last = e.Offset
		if e.Tag != dwarf.TagCompileUnit {
			r.SkipChildren()
			continue
		}
		r.SkipChildren()
		if off, ok := e.Val(dwarf.AttrStmtList).(int64); !ok || programs[off] {
			continue
		} else {
			programs[off] = true
		}
		lr, err := d.LineReader(e)
		if err != nil || lr == nil {
			continue
		}
		var seq lineSequence
		var le dwarf.LineEntry
		dead := false // the sequence being read describes removed code
		for lr.Next(&le) == nil {
			if budget--; budget < 0 {
				return nil
			}
			if le.EndSequence {
				if len(seq.rows) > 0 && !dead {
					seq.end = code.Instrumented(uint32(min(le.Address, uint64(origSize))))
					seqs = append(seqs, seq)
				}
				seq, dead = lineSequence{}, false
				continue
			}
			// Linkers mark the rows of functions they removed with
			// tombstone addresses (0, or -1 and -2 as 32-bit values),
			// and a hostile table may point anywhere.
			if len(seq.rows) == 0 && (le.Address == 0 || le.Address >= uint64(origSize)) {
				dead = true
			}
			if dead || le.Address >= uint64(origSize) {
				continue
			}
			name := "??"
			if le.File != nil {
				name = le.File.Name
			}
			idx, ok := files[name]
			if !ok {
				names = append(names, name)
				idx = uint32(len(names))
				files[name] = idx
			}
			seq.rows = append(seq.rows, lineRow{
				addr: code.Instrumented(uint32(le.Address)),
				file: idx, line: uint32(le.Line), column: uint32(le.Column),
			})
		}
	}
	if len(seqs) == 0 {
		return nil
	}
	sort.SliceStable(seqs, func(i, j int) bool { return seqs[i].rows[0].addr < seqs[j].rows[0].addr })
	return []debugSection{
		{".debug_abbrev", lineUnitAbbrev},
		{".debug_info", lineUnitInfo(newSize)},
		{".debug_line", lineProgram(names, seqs)},
	}
}

// lineUnitAbbrev declares the one DIE of lineUnitInfo: a compile unit
// with DW_AT_stmt_list (sec_offset), DW_AT_low_pc (addr) and
// DW_AT_high_pc (data4, a length).
var lineUnitAbbrev = []byte{
	1, 0x11, 0, // code 1: DW_TAG_compile_unit, no children
	0x10, 0x17, // DW_AT_stmt_list, DW_FORM_sec_offset
	0x11, 0x01, // DW_AT_low_pc, DW_FORM_addr
	0x12, 0x06, // DW_AT_high_pc, DW_FORM_data4
	0, 0,
	0, // end of abbreviations
}

// lineUnitInfo is a DWARF 4 .debug_info with one compile unit spanning
// the code section. Its range starts at 1, not 0, which wazero takes for
// a tombstone; offset 0 is the function count, never an instruction.
func lineUnitInfo(codeSize uint32) []byte {
	b := make([]byte, 0, 24)
	b = binary.LittleEndian.AppendUint32(b, 0) // unit_length, set below
	b = binary.LittleEndian.AppendUint16(b, 4) // version
	b = binary.LittleEndian.AppendUint32(b, 0) // debug_abbrev_offset
	b = append(b, 4, 1)                        // address_size; abbrev code 1
	b = binary.LittleEndian.AppendUint32(b, 0) // stmt_list
	b = binary.LittleEndian.AppendUint32(b, 1) // low_pc
	b = binary.LittleEndian.AppendUint32(b, codeSize)
	binary.LittleEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// Line number program opcodes (DWARF 4 §6.2.5).
const (
	lnsCopy        = 0x01
	lnsAdvancePC   = 0x02
	lnsAdvanceLine = 0x03
	lnsSetFile     = 0x04
	lnsSetColumn   = 0x05
	lneEndSequence = 0x01
	lneSetAddress  = 0x02
)

// lineProgram writes a DWARF 4 line program with the given file table
// and sequences, using only standard and extended opcodes (no special
// opcodes: simpler, and size does not matter here).
func lineProgram(files []string, seqs []lineSequence) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0) // unit_length, set below
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint32(b, 0) // header_length, set below
	headerStart := len(b)
	b = append(b,
		1,                                  // minimum_instruction_length
		1,                                  // maximum_operations_per_instruction
		1,                                  // default_is_stmt
		0xfb,                               // line_base -5
		14,                                 // line_range
		13,                                 // opcode_base
		0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1, // standard_opcode_lengths
		0, // include_directories: none
	)
	for _, f := range files {
		b = append(b, f...)
		b = append(b, 0, 0, 0, 0) // NUL, directory 0, mtime 0, length 0
	}
	b = append(b, 0)
	binary.LittleEndian.PutUint32(b[headerStart-4:], uint32(len(b)-headerStart))

	setAddress := func(b []byte, addr uint32) []byte {
		b = append(b, 0, 5, lneSetAddress)
		return binary.LittleEndian.AppendUint32(b, addr)
	}
	advance := func(b []byte, from, to uint32) []byte {
		if to < from {
			return setAddress(b, to)
		}
		if to > from {
			b = appendU32(append(b, lnsAdvancePC), to-from)
		}
		return b
	}
	for _, seq := range seqs {
		// The state machine's registers at the start of each sequence.
		addr, file, line, column := seq.rows[0].addr, uint32(1), uint32(1), uint32(0)
		b = setAddress(b, addr)
		for _, row := range seq.rows {
			b = advance(b, addr, row.addr)
			addr = row.addr
			if row.file != file {
				b = appendU32(append(b, lnsSetFile), row.file)
				file = row.file
			}
			if row.line != line {
				b = appendS32(append(b, lnsAdvanceLine), int32(row.line-line))
				line = row.line
			}
			if row.column != column {
				b = appendU32(append(b, lnsSetColumn), row.column)
				column = row.column
			}
			b = append(b, lnsCopy)
		}
		b = advance(b, addr, max(seq.end, addr))
		b = append(b, 0, 1, lneEndSequence)
	}
	binary.LittleEndian.PutUint32(b, uint32(len(b)-4))
	return b
}
