package meter

import (
	"bytes"
	"context"
	"debug/dwarf"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// sourceLine is one row of a line table, as a trace would print it.
type sourceLine struct {
	file         string
	line, column int
}

// lineTable reads the DWARF of a module into rows by code offset
// (excluding rows of removed functions and end-of-sequence rows).
func lineTable(t *testing.T, wasm []byte) map[uint32][]sourceLine {
	t.Helper()
	sections := map[string][]byte{}
	r := &reader{b: wasm, pos: 8}
	for !r.done() {
		id, _ := r.byte("section id")
		size, err := r.u32("section size")
		if err != nil {
			t.Fatal(err)
		}
		data, err := r.bytes(uint64(size), "section")
		if err != nil {
			t.Fatal(err)
		}
		if id != secCustom {
			continue
		}
		cr := &reader{b: data}
		name, err := cr.name("custom section name")
		if err != nil {
			t.Fatal(err)
		}
		sections[string(name)] = cr.b[cr.pos:]
	}
	d, err := dwarf.New(sections[".debug_abbrev"], nil, nil, sections[".debug_info"], sections[".debug_line"], nil, sections[".debug_ranges"], sections[".debug_str"])
	if err != nil {
		t.Fatalf("reading DWARF: %v", err)
	}
	for _, name := range []string{".debug_addr", ".debug_line_str", ".debug_str_offsets", ".debug_rnglists"} {
		if b := sections[name]; b != nil {
			if err := d.AddSection(name, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	rows := map[uint32][]sourceLine{}
	dr := d.Reader()
	for {
		e, err := dr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			break
		}
		dr.SkipChildren()
		if e.Tag != dwarf.TagCompileUnit {
			continue
		}
		lr, err := d.LineReader(e)
		if err != nil || lr == nil {
			t.Fatalf("line table of unit at %#x: %v", e.Offset, err)
		}
		var le dwarf.LineEntry
		for lr.Next(&le) == nil {
			if !le.EndSequence && le.Address != 0 && le.Address < 1<<31 {
				rows[uint32(le.Address)] = append(rows[uint32(le.Address)], sourceLine{le.File.Name, le.Line, le.Column})
			}
		}
	}
	return rows
}

// trapLine is the line of testdata/lines.c marked "// TRAP".
func trapLine(t *testing.T) int {
	for i, l := range strings.Split(string(readTestdata(t, "lines.c")), "\n") {
		if strings.HasSuffix(l, "// TRAP") {
			return i + 1
		}
	}
	t.Fatal("no // TRAP line in testdata/lines.c")
	return 0
}

// TestDebugLinesTranslated: every row of the C plugin's line table (DWARF
// 4 and 5) is found at its instruction's new offset after instrumenting,
// with the same file, line and column; the code map takes each offset
// back; and a trap in the instrumented module names the source line of
// the division and of its caller, as the original does.
func TestDebugLinesTranslated(t *testing.T) {
	for _, version := range []int{4, 5} {
		t.Run(fmt.Sprintf("DWARF %d", version), func(t *testing.T) {
			orig := readTestdata(t, fmt.Sprintf("lines-dwarf%d.wasm", version))
			out, code, err := InstrumentMapped(orig, Options{})
			if err != nil {
				t.Fatal(err)
			}
			before, after := lineTable(t, orig), lineTable(t, out)
			if len(before) < 10 {
				t.Fatalf("only %d rows in the original line table", len(before))
			}
			for addr, want := range before {
				moved := code.Instrumented(addr)
				got := after[moved]
				for _, w := range want {
					if !containsLine(got, w) {
						t.Errorf("row %s at %#x: at its new offset %#x the table has %v", w, addr, moved, got)
					}
				}
				if back := code.Original(moved); back != addr {
					t.Errorf("Original(Instrumented(%#x)) = %#x", addr, back)
				}
			}

			h := newHost(t, compilerConfig(), New(Config{}))
			mod := h.instantiate(t, out)
			_, err = mod.ExportedFunction("proxy_on_request_headers").Call(context.Background(), 1, 3, 0)
			if err == nil {
				t.Fatal("proxy_on_request_headers did not trap")
			}
			trace := err.Error()
			for _, want := range []string{
				"integer divide by zero",
				fmt.Sprintf("lines.c:%d:", trapLine(t)),
				"proxy_on_request_headers(i32,i32,i32) i32\n\t\t0x",
			} {
				if !strings.Contains(trace, want) {
					t.Errorf("trace lacks %q:\n%s", want, trace)
				}
			}
			// Each offset in the trace, taken back, is a row of the
			// original table with the file:line printed next to it.
			for _, m := range regexp.MustCompile(`0x([0-9a-f]+): (\S+):(\d+):(\d+)`).FindAllStringSubmatch(trace, -1) {
				off, _ := strconv.ParseUint(m[1], 16, 32)
				line, _ := strconv.Atoi(m[3])
				at := code.Original(uint32(off))
				if !lineAtOrBefore(before, at, line) {
					t.Errorf("trace offset %s (original %#x) printed with line %d; the original table has %v there", m[1], at, line, before[at])
				}
			}
		})
	}
}

func containsLine(rows []sourceLine, want sourceLine) bool {
	for _, r := range rows {
		if r == want {
			return true
		}
	}
	return false
}

// lineAtOrBefore reports whether the row covering original offset at
// (the last row at or before it) has the given line.
func lineAtOrBefore(rows map[uint32][]sourceLine, at uint32, line int) bool {
	best, found := uint32(0), false
	for addr := range rows {
		if addr <= at && (!found || addr > best) {
			best, found = addr, true
		}
	}
	if !found {
		return false
	}
	for _, r := range rows[best] {
		if r.line == line {
			return true
		}
	}
	return false
}

// TestDebugLinesDropped: Options.DropDebugInfo leaves every .debug_
// section out.
func TestDebugLinesDropped(t *testing.T) {
	out, err := Instrument(readTestdata(t, "lines-dwarf4.wasm"), Options{DropDebugInfo: true})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte(".debug_")) {
		t.Error("DropDebugInfo: the output still has a .debug_ section")
	}
}

func (l sourceLine) String() string { return fmt.Sprintf("%s:%d:%d", l.file, l.line, l.column) }
