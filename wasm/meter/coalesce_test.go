package meter

import (
	"bytes"
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
)

// initialMemory instantiates wasm without running its start functions
// and returns its exported memory as instantiation left it: the bytes
// its data segments wrote.
func initialMemory(t *testing.T, wasm []byte) []byte {
	t.Helper()
	// The test host provides the imports of the Go guest (WASI, env).
	h := newHost(t, wazero.NewRuntimeConfigInterpreter(), nil)
	mod, err := h.rt.InstantiateWithConfig(context.Background(), wasm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		t.Fatalf("instantiating: %v", err)
	}
	mem := mod.ExportedMemory("memory")
	if mem == nil {
		t.Fatal("no exported memory")
	}
	b, _ := mem.Read(0, mem.Size())
	return bytes.Clone(b)
}

// dataSegmentCount reads the count of a module's data section.
func dataSegmentCount(t *testing.T, wasm []byte) uint32 {
	t.Helper()
	m, err := parseModule(wasm)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range m.sections {
		if s.id == secData {
			n, err := s.reader().u32("count")
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	return 0
}

// TestCoalesceGoGuest: a Go-built module's tens of thousands of data
// segments become a handful, and the memory an instance starts with is
// the same byte for byte; the result still instruments and runs.
func TestCoalesceGoGuest(t *testing.T) {
	orig := goGuest(t)
	out := CoalesceData(orig)
	before, after := dataSegmentCount(t, orig), dataSegmentCount(t, out)
	t.Logf("data segments %d -> %d, module %d -> %d bytes", before, after, len(orig), len(out))
	if before < 1000 {
		t.Fatalf("the Go guest has %d data segments; expected the Go linker's thousands", before)
	}
	if after > before/100 {
		t.Errorf("coalesced to %d segments of %d", after, before)
	}
	if !bytes.Equal(initialMemory(t, orig), initialMemory(t, out)) {
		t.Fatal("the coalesced module starts with different memory")
	}
	if bytes.Equal(CoalesceData(out), out) == false {
		t.Error("coalescing twice changed the module again")
	}
	// The Go runtime's _initialize reads its data (type information,
	// tables) and runs on the rewritten, metered module.
	h := newHost(t, wazero.NewRuntimeConfigInterpreter(), New(Config{}))
	h.instantiate(t, mustInstrument(t, out))
}

// dataModule is a module with one page of its own memory, exported, and
// the given data section content; extra sections go before it.
func dataModule(extra []byte, data []byte) []byte {
	out := append([]byte{}, wasmMagic...)
	out = append(out, extra...)
	out = appendSection(out, secMemory, vecOf([]byte{0x00, 0x01}))
	out = appendSection(out, secExport, vecOf(cat(str("memory"), []byte{0x02, 0x00})))
	return appendSection(out, secData, data)
}

// active is an active data segment in memory 0 at off.
func active(off int32, b string) []byte {
	return cat([]byte{0x00}, i32Const(off), []byte{opEnd}, u32(uint32(len(b))), []byte(b))
}

// TestCoalesceData: what is merged and what is left alone, each case
// checked on the memory an instance starts with.
func TestCoalesceData(t *testing.T) {
	passive := cat([]byte{0x01}, u32(2), []byte("zz"))
	globalOffset := cat([]byte{0x00, 0x23, 0x00, opEnd}, u32(1), []byte("g"))
	memImport := appendSection(nil, secImport, vecOf(cat(str("env"), str("memory"), []byte{0x02, 0x00, 0x01})))
	dataNames := appendSection(nil, secCustom, cat(str("name"), []byte{9}, u32(1), []byte{0}))
	funcNames := appendSection(nil, secCustom, cat(str("name"), []byte{1}, u32(1), []byte{0}))
	cases := []struct {
		name     string
		module   []byte
		segments uint32 // after; 0: the module must come back unchanged
	}{
		{"adjacent and gapped segments merge", dataModule(nil, vecOf(active(8, "ab"), active(10, "cd"), active(40, "ef"))), 1},
		{"a gap over the maximum stays", dataModule(nil, vecOf(active(8, "ab"), active(10+MaxCoalesceGap+1, "cd"))), 0},
		{"the maximum gap merges", dataModule(nil, vecOf(active(8, "ab"), active(10+MaxCoalesceGap, "cd"))), 1},
		{"out of order segments merge in memory order", dataModule(nil, vecOf(active(40, "ef"), active(8, "ab"), active(20, "cd"))), 1},
		{"two far groups give two segments", dataModule(nil, vecOf(active(8, "ab"), active(12, "cd"), active(1000, "ef"), active(1010, "gh"))), 2},
		{"a function name section is fine", cat(dataModule(nil, vecOf(active(8, "ab"), active(10, "cd"))), funcNames), 1},
		{"overlapping segments are left alone", dataModule(nil, vecOf(active(8, "abcd"), active(10, "XY"))), 0},
		{"a passive segment leaves the module alone", dataModule(nil, vecOf(active(8, "ab"), passive, active(12, "cd"))), 0},
		{"a global offset leaves the module alone", dataModule(nil, vecOf(active(8, "ab"), globalOffset)), 0},
		{"a single segment is left alone", dataModule(nil, vecOf(active(8, "ab"))), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := CoalesceData(tc.module)
			if tc.segments == 0 {
				if !bytes.Equal(out, tc.module) {
					t.Fatal("the module was rewritten")
				}
				return
			}
			if got := dataSegmentCount(t, out); got != tc.segments {
				t.Errorf("%d segments after, want %d", got, tc.segments)
			}
			if !bytes.Equal(initialMemory(t, tc.module), initialMemory(t, out)) {
				t.Fatal("the coalesced module starts with different memory")
			}
		})
	}

	// Modules where renumbering or zero-filling could be seen are not
	// touched; they need not instantiate here, only come back as given.
	untouched := map[string][]byte{
		"data count section": func() []byte {
			m := dataModule(nil, vecOf(active(8, "ab"), active(10, "cd")))
			// The data count section goes before the data section (there
			// is no code section here).
			i := bytes.LastIndex(m, appendSection(nil, secData, vecOf(active(8, "ab"), active(10, "cd"))))
			return cat(m[:i], appendSection(nil, secDataCount, u32(2)), m[i:])
		}(),
		"imported memory":          cat(wasmMagic, memImport, appendSection(nil, secData, vecOf(active(8, "ab"), active(10, "cd")))),
		"data segment names":       cat(dataModule(nil, vecOf(active(8, "ab"), active(10, "cd"))), dataNames),
		"truncated section":        dataModule(nil, []byte{2, 0, 0x41}),
		"not a module":             []byte("hello"),
		"no data section":          cat(wasmMagic, appendSection(nil, secMemory, vecOf([]byte{0x00, 0x01}))),
		"trailing section garbage": cat(dataModule(nil, vecOf(active(8, "ab"), active(10, "cd"))), []byte{0x0b, 0xff}),
	}
	for name, m := range untouched {
		t.Run(name, func(t *testing.T) {
			if out := CoalesceData(m); !bytes.Equal(out, m) {
				t.Fatal("the module was rewritten")
			}
		})
	}
}

// FuzzCoalesceData: whatever bytes come in, CoalesceData does not panic,
// and a module it rewrote starts with the same memory as the original
// whenever the original instantiates.
func FuzzCoalesceData(f *testing.F) {
	f.Add(dataModule(nil, vecOf(active(8, "ab"), active(10, "cd"), active(40, "ef"))))
	f.Add(dataModule(nil, vecOf(active(40, "ef"), active(8, "ab"))))
	f.Add(dataModule(nil, vecOf(active(8, "abcd"), active(10, "XY"))))
	f.Fuzz(func(t *testing.T, m []byte) {
		out := CoalesceData(m)
		if bytes.Equal(out, m) {
			return
		}
		ctx := context.Background()
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
		defer rt.Close(ctx)
		orig, err := rt.InstantiateWithConfig(ctx, m, wazero.NewModuleConfig().WithName("a").WithStartFunctions())
		if err != nil {
			return
		}
		rewritten, err := rt.InstantiateWithConfig(ctx, out, wazero.NewModuleConfig().WithName("b").WithStartFunctions())
		if err != nil {
			t.Fatalf("the original instantiates, the rewrite does not: %v", err)
		}
		a, b := orig.ExportedMemory("memory"), rewritten.ExportedMemory("memory")
		if a == nil || b == nil {
			return
		}
		ab, _ := a.Read(0, a.Size())
		bb, _ := b.Read(0, b.Size())
		if !bytes.Equal(ab, bb) {
			t.Fatal("different initial memory")
		}
	})
}
