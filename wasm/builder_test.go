package wasm

// A minimal WebAssembly binary writer for hand-made test modules (bad
// imports, ABI 0.1.0 arity, start-section traps): small enough to read,
// and no external tool (wat2wasm) needed.

import "encoding/binary"

type rawFunc struct {
	params, results []byte // value types: 0x7f i32, 0x7e i64
	body            []byte // instructions without the final end
	export          string
}

type rawImport struct {
	module, name    string
	params, results []byte
}

type rawModule struct {
	imports  []rawImport
	funcs    []rawFunc
	memory   bool   // one page, exported as "memory"
	pages    uint32 // initial pages when memory is set; 0 = 1
	maxPages uint32 // declared maximum when memory is set; 0 = none
	start    int    // function index (imports first) + 1; 0 = none
	data     []rawData
}

type rawData struct {
	offset uint32
	bytes  []byte
}

const (
	tI32 = 0x7f
	tI64 = 0x7e
)

func uleb(v uint32) []byte { return binary.AppendUvarint(nil, uint64(v)) }

func sleb(v int32) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && b&0x40 == 0) || (v == -1 && b&0x40 != 0) {
			return append(out, b)
		}
		out = append(out, b|0x80)
	}
}

func wstr(s string) []byte { return append(uleb(uint32(len(s))), s...) }

func vec(items [][]byte) []byte {
	out := uleb(uint32(len(items)))
	for _, it := range items {
		out = append(out, it...)
	}
	return out
}

func section(id byte, content []byte) []byte {
	return append(append([]byte{id}, uleb(uint32(len(content)))...), content...)
}

func funcType(params, results []byte) []byte {
	out := []byte{0x60}
	out = append(out, uleb(uint32(len(params)))...)
	out = append(out, params...)
	out = append(out, uleb(uint32(len(results)))...)
	return append(out, results...)
}

// Instruction helpers.
func i32Const(v int32) []byte { return append([]byte{0x41}, sleb(v)...) }
func call(idx uint32) []byte  { return append([]byte{0x10}, uleb(idx)...) }
func i32Store() []byte        { return []byte{0x36, 0x02, 0x00} }

var (
	opUnreachable = []byte{0x00}
	opDrop        = []byte{0x1a}
)

func code(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func (m rawModule) bytes() []byte {
	out := []byte("\x00asm\x01\x00\x00\x00")
	var types, imports, funcs, exports, bodies, datas [][]byte
	for _, im := range m.imports {
		types = append(types, funcType(im.params, im.results))
		imports = append(imports, code(wstr(im.module), wstr(im.name), []byte{0x00}, uleb(uint32(len(types)-1))))
	}
	for i, f := range m.funcs {
		types = append(types, funcType(f.params, f.results))
		funcs = append(funcs, uleb(uint32(len(types)-1)))
		if f.export != "" {
			exports = append(exports, code(wstr(f.export), []byte{0x00}, uleb(uint32(len(m.imports)+i))))
		}
		body := code([]byte{0x00}, f.body, []byte{0x0b}) // no locals
		bodies = append(bodies, append(uleb(uint32(len(body))), body...))
	}
	if m.memory {
		exports = append(exports, code(wstr("memory"), []byte{0x02, 0x00}))
	}
	for _, d := range m.data {
		datas = append(datas, code([]byte{0x00}, i32Const(int32(d.offset)), []byte{0x0b}, uleb(uint32(len(d.bytes))), d.bytes))
	}
	out = append(out, section(1, vec(types))...)
	if len(imports) > 0 {
		out = append(out, section(2, vec(imports))...)
	}
	out = append(out, section(3, vec(funcs))...)
	if m.memory {
		limits := append([]byte{0x00}, uleb(max(m.pages, 1))...)
		if m.maxPages > 0 {
			limits[0] = 0x01
			limits = append(limits, uleb(m.maxPages)...)
		}
		out = append(out, section(5, vec([][]byte{limits}))...)
	}
	out = append(out, section(7, vec(exports))...)
	if m.start > 0 {
		out = append(out, section(8, uleb(uint32(m.start-1)))...)
	}
	out = append(out, section(10, vec(bodies))...)
	if len(datas) > 0 {
		out = append(out, section(11, vec(datas))...)
	}
	return out
}

// Common pieces of raw Proxy-Wasm modules.
var (
	i32x1 = []byte{tI32}
	i32x2 = []byte{tI32, tI32}
)

func markerFunc(name string) rawFunc { return rawFunc{export: name} }

// bumpMalloc is an allocator that always answers 1024: enough for tests
// that copy out at most one small value.
func bumpMalloc() rawFunc {
	return rawFunc{params: i32x1, results: i32x1, body: i32Const(1024), export: "malloc"}
}
