package meter

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// HostModule and CheckFunction name the import Instrument adds: a function
// of type () -> i32 that the guest calls when its fuel runs out and whose
// result is the guest's new fuel. Meter provides it.
const (
	HostModule    = "wasmproxy_meter"
	CheckFunction = "check"
)

// ErrAlreadyInstrumented is returned by Instrument for a module that
// already imports HostModule: metering it twice would charge twice, and
// its fuel global cannot be told apart from the module's own globals.
var ErrAlreadyInstrumented = errors.New("module already imports " + HostModule)

// ErrLimit is wrapped by Instrument's error for a module past the
// implementation limits every web engine applies (the JavaScript API's
// "Limits" section) that wazero does not: a function with 16M locals is a
// 20-byte module that wazero takes 16 s and 7.7 GB of allocation to
// compile. Refusing it here keeps one bad plugin from stalling the proxy.
var ErrLimit = errors.New("module exceeds an implementation limit")

// maxLocals is the JavaScript API's limit of locals per function,
// parameters included.
const maxLocals = 50_000

// Options tune Instrument. The zero value is what the proxy uses.
type Options struct {
	// DropDebugInfo drops DWARF (".debug_*" custom sections) instead of
	// translating its line tables to the instrumented code (debugline.go).
	DropDebugInfo bool
}

// maxRegionCost caps the fuel one region charges. Together with the
// interval cap in Config it keeps fuel-cost inside int32 (no wrap-around to
// a large positive value that would skip a check). A region this large
// means a single function body of 16M instructions; capping it only
// shortens the accounting of such a monster, never skips the check.
const maxRegionCost = 1 << 24

// Section ids (core spec §5.5.2).
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

// sectionRank is the order non-custom sections must appear in; note that
// data count (12) comes before code (10). Tags (exception handling) are
// listed only to give a precise "unsupported" error.
var sectionRank = map[byte]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5, secTag: 6,
	secGlobal: 7, secExport: 8, secStart: 9, secElement: 10, secDataCount: 11,
	secCode: 12, secData: 13,
}

// Value types (§5.3.1–5.3.4) this package accepts: numbers, v128,
// funcref and externref. Typed function references and GC types are not
// enabled in wazero's default features and are rejected.
func isValType(b byte) bool {
	switch b {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
		return true
	}
	return false
}

const (
	valI32   = 0x7f
	typeFunc = 0x60
)

var wasmMagic = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

type section struct {
	id   byte
	data []byte // content, without id and size
	off  int    // absolute offset of data[0]
}

func (s section) reader() *reader { return &reader{b: s.data, base: s.off} }

// module is what Instrument learns about its input before rewriting it.
type module struct {
	sections []section

	typeParams    []uint32 // parameter count per type index
	checkType     uint32   // type index of () -> i32
	newCheckType  bool     // checkType must be appended to the type section
	importedFuncs uint32
	importGlobals uint32
	definedGlobal uint32 // globals in the global section
	funcTypes     []uint32
	// funcCount is the size of the function index space before the
	// check import is added.
	funcCount uint32

	// code maps the rewritten code section back to the original; the
	// sizes are the code section's before and after.
	code                   CodeMap
	origCodeSize, codeSize uint32
	// debug holds the module's DWARF sections by name, kept out of the
	// output and translated at its end.
	debug map[string][]byte
}

// Instrument rewrites a WebAssembly module so that it can be stopped and
// can yield: it adds the import HostModule.CheckFunction (() -> i32), a
// mutable i32 "fuel" global starting at 0, and at each function entry and
// each loop header code that subtracts the cost of the region that starts
// there and, when fuel drops below zero, calls the check function and stores
// its result as the new fuel.
//
// The cost of a region is the number of instructions in it, where a
// function's region is its body outside any loop and a loop's region is its
// body outside nested loops. Every instruction executed belongs to exactly
// one region and runs at most once per entry or iteration of it, so the
// fuel charged is an upper bound on the instructions executed: between two
// checks a guest runs at most the check's refill of instructions, plus
// whatever time imported (host) functions and bulk-memory instructions
// take.
//
// The function index space shifts by one from the first defined function
// (the new import comes after the module's own function imports); every
// call, return_call, ref.func, element segment, export, start function and
// name-section entry is renumbered accordingly. DWARF sections are
// replaced by a line table translated to the new code offsets (so stack
// traces name the right file:line; debugline.go), or dropped if opts says
// so. Other custom sections are kept byte for byte, except a name section
// that does not parse, which is dropped.
//
// Instrument reads every section, checks each count and length against
// the bytes actually present (wazero v1.12 allocates what a module claims
// before reading it, so a few hostile bytes can exhaust the process; what
// Instrument accepts cannot do that), and returns an error naming the
// offset of anything it cannot decode, ErrAlreadyInstrumented, or ErrLimit
// for a function with more than 50,000 locals. It never panics. It does not
// type-check: a module wazero accepts is accepted after instrumentation and
// one it rejects is still rejected (except for a name section wazero
// tolerates and Instrument drops). Supported: the WebAssembly 2.0
// instruction set (MVP, sign extension, non-trapping float-to-int,
// multi-value, bulk memory, reference types, SIMD) plus threads (atomics)
// and tail calls; exception handling, typed function references, GC,
// memory64 and multi-memory are rejected.
func Instrument(wasm []byte, opts Options) ([]byte, error) {
	out, _, err := InstrumentMapped(wasm, opts)
	return out, err
}

// InstrumentMapped is Instrument that also returns where each instruction
// of the original code section went, to translate offsets in stack traces
// back to the module as built.
func InstrumentMapped(wasm []byte, opts Options) ([]byte, *CodeMap, error) {
	m, out, err := instrument(wasm, opts)
	if err != nil {
		if errors.Is(err, ErrAlreadyInstrumented) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("meter: instrumenting module: %w", err)
	}
	return out, &m.code, nil
}

func instrument(wasm []byte, opts Options) (*module, []byte, error) {
	m, err := parseModule(wasm)
	if err != nil {
		return nil, nil, err
	}
	fuelGlobal := m.importGlobals + m.definedGlobal
	checkFunc := m.importedFuncs

	out := make([]byte, 0, len(wasm)+len(wasm)/8+64)
	out = append(out, wasmMagic...)

	// New sections the module lacks are emitted just before the first
	// section that must follow them, so the section order stays valid.
	pending := map[byte]bool{secImport: true, secGlobal: true, secType: true}
	for _, s := range m.sections {
		if s.id != secCustom {
			pending[s.id] = false
		}
	}
	emitPending := func(beforeRank int) error {
		for _, id := range []byte{secType, secImport, secGlobal} {
			if pending[id] && sectionRank[id] < beforeRank {
				pending[id] = false
				var content []byte
				var err error
				switch id {
				case secType:
					content, err = m.rewriteTypes(section{id: secType})
				case secImport:
					content, err = m.rewriteImports(section{id: secImport})
				case secGlobal:
					content, err = m.rewriteGlobals(section{id: secGlobal})
				}
				if err != nil {
					return err
				}
				out = appendSection(out, id, content)
			}
		}
		return nil
	}

	for _, s := range m.sections {
		if s.id != secCustom {
			if err := emitPending(sectionRank[s.id]); err != nil {
				return nil, nil, err
			}
		}
		var content []byte
		var err error
		switch s.id {
		case secCustom:
			content, err = m.rewriteCustom(s, opts)
			if content == nil && err == nil {
				continue // dropped
			}
		case secType:
			content, err = m.rewriteTypes(s)
		case secImport:
			content, err = m.rewriteImports(s)
		case secGlobal:
			content, err = m.rewriteGlobals(s)
		case secExport:
			content, err = m.rewriteExports(s)
		case secStart:
			content, err = m.rewriteStart(s)
		case secElement:
			content, err = m.rewriteElements(s)
		case secCode:
			content, err = m.rewriteCode(s, fuelGlobal, checkFunc)
			m.origCodeSize, m.codeSize = uint32(len(s.data)), uint32(len(content))
		default: // function, table, memory, data count, data: no function indices
			content = s.data
		}
		if err != nil {
			return nil, nil, err
		}
		out = appendSection(out, s.id, content)
	}
	if err := emitPending(1 << 30); err != nil {
		return nil, nil, err
	}
	// Custom sections may come anywhere; the translated DWARF goes last.
	for _, sec := range translateDebugLines(m.debug, &m.code, m.origCodeSize, m.codeSize) {
		out = appendSection(out, secCustom, append(appendName(nil, []byte(sec.name)), sec.data...))
	}
	return m, out, nil
}

// parseModule splits the module into sections, reads the type, import,
// function and global sections, which the rewrite of the others needs, and
// checks the table, memory and data sections it will copy unchanged.
func parseModule(wasm []byte) (*module, error) {
	if len(wasm) < len(wasmMagic) {
		return nil, fmt.Errorf("module is %d bytes, shorter than the 8-byte header: %w", len(wasm), errTruncated)
	}
	if !bytes.Equal(wasm[:4], wasmMagic[:4]) {
		return nil, errors.New("not a WebAssembly module: wrong magic number")
	}
	if !bytes.Equal(wasm[4:8], wasmMagic[4:]) {
		return nil, fmt.Errorf("unsupported binary format version %x", wasm[4:8])
	}
	m := &module{newCheckType: true}
	r := &reader{b: wasm, pos: 8}
	lastRank := 0
	for !r.done() {
		start := r.offset()
		id, _ := r.byte("section id")
		size, err := r.u32("section size")
		if err != nil {
			return nil, err
		}
		off := r.offset()
		data, err := r.bytes(uint64(size), "section content")
		if err != nil {
			return nil, fmt.Errorf("at offset %#x: section %d of %d bytes runs past the end of the module (%d bytes left): %w",
				start, id, size, len(r.b)-off+r.base, errTruncated)
		}
		if id != secCustom {
			rank, ok := sectionRank[id]
			if !ok {
				return nil, fmt.Errorf("at offset %#x: unknown section id %d", start, id)
			}
			if id == secTag {
				return nil, fmt.Errorf("at offset %#x: tag section: exception handling is not supported", start)
			}
			if rank <= lastRank {
				return nil, fmt.Errorf("at offset %#x: section %d is out of order or repeated", start, id)
			}
			lastRank = rank
		}
		m.sections = append(m.sections, section{id: id, data: data, off: off})
	}

	// Sections Instrument copies unchanged are still read through: wazero
	// v1.12 sizes allocations by the counts and lengths they declare before
	// reading them, so a 42-byte module claiming a billion globals is a
	// fatal out-of-memory error for the whole process. Everything this
	// parser accepts has counts backed by actual bytes.
	var haveFuncSection, haveCodeSection bool
	var dataCount *uint32
	var dataSegments uint32
	for _, s := range m.sections {
		var err error
		switch s.id {
		case secType:
			err = m.parseTypes(s)
		case secImport:
			err = m.parseImports(s)
		case secFunction:
			haveFuncSection = true
			err = m.parseFunctions(s)
		case secGlobal:
			var n uint32
			n, err = s.reader().count(3, "global count")
			m.definedGlobal = n
		case secCode:
			haveCodeSection = true
		case secTable:
			err = checkTables(s)
		case secMemory:
			err = checkMemories(s)
		case secDataCount:
			r := s.reader()
			var n uint32
			if n, err = r.u32("data count"); err == nil {
				dataCount = &n
			}
		case secData:
			dataSegments, err = m.checkData(s)
		}
		if err != nil {
			return nil, err
		}
	}
	if dataCount != nil && *dataCount != dataSegments {
		return nil, fmt.Errorf("data count section says %d segments, data section has %d", *dataCount, dataSegments)
	}
	if haveFuncSection != haveCodeSection && len(m.funcTypes) > 0 {
		return nil, errors.New("function and code sections do not match: one is missing")
	}
	m.funcCount = m.importedFuncs + uint32(len(m.funcTypes))
	if m.funcCount < m.importedFuncs || m.funcCount == ^uint32(0) {
		return nil, errors.New("too many functions")
	}
	if m.importGlobals+m.definedGlobal < m.importGlobals || m.importGlobals+m.definedGlobal == ^uint32(0) {
		return nil, errors.New("too many globals")
	}

	if m.newCheckType {
		m.checkType = uint32(len(m.typeParams))
	}
	return m, nil
}

// readFuncType reads a function type: 0x60, vec(valtype) params,
// vec(valtype) results.
func readFuncType(r *reader) (params, results []byte, err error) {
	form, err := r.byte("type form")
	if err != nil {
		return nil, nil, err
	}
	if form != typeFunc {
		return nil, nil, r.errorf("type form %#x is not a function type (GC types are not supported)", form)
	}
	for i := 0; i < 2; i++ {
		n, err := r.count(1, "value type count")
		if err != nil {
			return nil, nil, err
		}
		types, _ := r.bytes(uint64(n), "value types")
		for _, t := range types {
			if !isValType(t) {
				return nil, nil, r.errorf("unsupported value type %#x", t)
			}
		}
		if i == 0 {
			params = types
		} else {
			results = types
		}
	}
	return params, results, nil
}

func (m *module) parseTypes(s section) error {
	r := s.reader()
	n, err := r.count(3, "type count")
	if err != nil {
		return err
	}
	m.typeParams = make([]uint32, 0, n)
	for i := uint32(0); i < n; i++ {
		params, results, err := readFuncType(r)
		if err != nil {
			return err
		}
		// Reuse the first () -> i32 type for the check import.
		if m.newCheckType && len(params) == 0 && bytes.Equal(results, []byte{valI32}) {
			m.checkType, m.newCheckType = i, false
		}
		m.typeParams = append(m.typeParams, uint32(len(params)))
	}
	if !r.done() {
		return r.errorf("%d bytes left over at the end of the type section", len(r.b)-r.pos)
	}
	return nil
}

// readLimits reads table or memory limits: a flags byte (bit 0: has
// maximum, bit 1: shared, bit 2: 64-bit), then min and optional max.
func readLimits(r *reader) error {
	flags, err := r.byte("limits flags")
	if err != nil {
		return err
	}
	if flags > 3 {
		return r.errorf("limits flags %#x: memory64 and other extensions are not supported", flags)
	}
	if _, err := r.u32("limits minimum"); err != nil {
		return err
	}
	if flags&1 != 0 {
		if _, err := r.u32("limits maximum"); err != nil {
			return err
		}
	}
	return nil
}

func readTableType(r *reader) error {
	t, err := r.byte("table element type")
	if err != nil {
		return err
	}
	if t != 0x70 && t != 0x6f {
		return r.errorf("unsupported table element type %#x", t)
	}
	return readLimits(r)
}

func readGlobalType(r *reader) error {
	t, err := r.byte("global type")
	if err != nil {
		return err
	}
	if !isValType(t) {
		return r.errorf("unsupported global type %#x", t)
	}
	mut, err := r.byte("global mutability")
	if err != nil {
		return err
	}
	if mut > 1 {
		return r.errorf("global mutability %#x is neither 0 nor 1", mut)
	}
	return nil
}

func (m *module) parseImports(s section) error {
	r := s.reader()
	n, err := r.count(4, "import count")
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		mod, err := r.name("import module name")
		if err != nil {
			return err
		}
		if _, err := r.name("import field name"); err != nil {
			return err
		}
		if string(mod) == HostModule {
			return ErrAlreadyInstrumented
		}
		kind, err := r.byte("import kind")
		if err != nil {
			return err
		}
		switch kind {
		case 0x00:
			t, err := r.u32("import type index")
			if err != nil {
				return err
			}
			if int(t) >= len(m.typeParams) {
				return r.errorf("import type index %d out of range", t)
			}
			m.importedFuncs++
		case 0x01:
			err = readTableType(r)
		case 0x02:
			err = readLimits(r)
		case 0x03:
			err = readGlobalType(r)
			m.importGlobals++
		case 0x04:
			return r.errorf("tag import: exception handling is not supported")
		default:
			return r.errorf("unknown import kind %#x", kind)
		}
		if err != nil {
			return err
		}
	}
	if !r.done() {
		return r.errorf("%d bytes left over at the end of the import section", len(r.b)-r.pos)
	}
	return nil
}

func (m *module) parseFunctions(s section) error {
	r := s.reader()
	n, err := r.count(1, "function count")
	if err != nil {
		return err
	}
	m.funcTypes = make([]uint32, 0, n)
	for i := uint32(0); i < n; i++ {
		t, err := r.u32("function type index")
		if err != nil {
			return err
		}
		if int(t) >= len(m.typeParams) {
			return r.errorf("function %d: type index %d out of range", i, t)
		}
		m.funcTypes = append(m.funcTypes, t)
	}
	if !r.done() {
		return r.errorf("%d bytes left over at the end of the function section", len(r.b)-r.pos)
	}
	return nil
}

func checkTables(s section) error {
	r := s.reader()
	n, err := r.count(3, "table count")
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := readTableType(r); err != nil {
			return err
		}
	}
	if !r.done() {
		return r.errorf("%d bytes left over at the end of the table section", len(r.b)-r.pos)
	}
	return nil
}

func checkMemories(s section) error {
	r := s.reader()
	n, err := r.count(2, "memory count")
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := readLimits(r); err != nil {
			return err
		}
	}
	if !r.done() {
		return r.errorf("%d bytes left over at the end of the memory section", len(r.b)-r.pos)
	}
	return nil
}

// checkData reads the data section (§5.5.14): per segment a flags value
// (0 active, 1 passive, 2 active with memory index), the offset expression
// of active segments, and the bytes.
func (m *module) checkData(s section) (uint32, error) {
	r := s.reader()
	n, err := r.count(2, "data segment count")
	if err != nil {
		return 0, err
	}
	for i := uint32(0); i < n; i++ {
		flags, err := r.u32("data segment flags")
		if err != nil {
			return 0, err
		}
		switch flags {
		case 0, 2:
			if flags == 2 {
				if _, err := r.u32("data memory index"); err != nil {
					return 0, err
				}
			}
			if _, err := m.rewriteConstExpr(r, nil); err != nil {
				return 0, err
			}
		case 1:
		default:
			return 0, r.errorf("data segment flags %d out of range", flags)
		}
		size, err := r.u32("data segment size")
		if err != nil {
			return 0, err
		}
		if _, err := r.bytes(uint64(size), "data segment bytes"); err != nil {
			return 0, err
		}
	}
	if !r.done() {
		return 0, r.errorf("%d bytes left over at the end of the data section", len(r.b)-r.pos)
	}
	return n, nil
}

// remapFunc maps a function index of the input to the output: the check
// import takes index importedFuncs, so defined functions move up by one.
func (m *module) remapFunc(r *reader, idx uint32) (uint32, error) {
	if idx >= m.funcCount {
		return 0, r.errorf("function index %d out of range (%d functions)", idx, m.funcCount)
	}
	if idx >= m.importedFuncs {
		return idx + 1, nil
	}
	return idx, nil
}

func (m *module) rewriteTypes(s section) ([]byte, error) {
	if !m.newCheckType {
		return s.data, nil
	}
	out := appendU32(nil, uint32(len(m.typeParams))+1)
	if s.data != nil {
		r := s.reader()
		_, _ = r.u32("type count")
		out = append(out, s.data[r.pos:]...)
	}
	return append(out, typeFunc, 0x00, 0x01, valI32), nil
}

func (m *module) rewriteImports(s section) ([]byte, error) {
	var n uint32
	var rest []byte
	if s.data != nil {
		r := s.reader()
		n, _ = r.u32("import count")
		rest = s.data[r.pos:]
	}
	if n == ^uint32(0) {
		return nil, errors.New("too many imports")
	}
	out := appendU32(nil, n+1)
	out = append(out, rest...)
	out = appendName(out, []byte(HostModule))
	out = appendName(out, []byte(CheckFunction))
	out = append(out, 0x00)
	return appendU32(out, m.checkType), nil
}

func (m *module) rewriteGlobals(s section) ([]byte, error) {
	out := appendU32(nil, m.definedGlobal+1)
	if s.data != nil {
		r := s.reader()
		_, _ = r.u32("global count")
		for i := uint32(0); i < m.definedGlobal; i++ {
			start := r.pos
			if err := readGlobalType(r); err != nil {
				return nil, err
			}
			out = append(out, s.data[start:r.pos]...)
			var err error
			if out, err = m.rewriteConstExpr(r, out); err != nil {
				return nil, err
			}
		}
		if !r.done() {
			return nil, r.errorf("%d bytes left over at the end of the global section", len(r.b)-r.pos)
		}
	}
	// The fuel global: mutable i32 starting at 0, so the first metered
	// region calls the check function, which sets the refill the host
	// chose; the module never needs to agree with the host on a number.
	return append(out, valI32, 0x01, opI32Const, 0x00, opEnd), nil
}

func (m *module) rewriteExports(s section) ([]byte, error) {
	r := s.reader()
	n, err := r.count(3, "export count")
	if err != nil {
		return nil, err
	}
	out := appendU32(make([]byte, 0, len(s.data)+8), n)
	for i := uint32(0); i < n; i++ {
		name, err := r.name("export name")
		if err != nil {
			return nil, err
		}
		kind, err := r.byte("export kind")
		if err != nil {
			return nil, err
		}
		idx, err := r.u32("export index")
		if err != nil {
			return nil, err
		}
		if kind == 0x00 {
			if idx, err = m.remapFunc(r, idx); err != nil {
				return nil, err
			}
		} else if kind > 0x03 {
			return nil, r.errorf("unsupported export kind %#x", kind)
		}
		out = appendName(out, name)
		out = append(out, kind)
		out = appendU32(out, idx)
	}
	if !r.done() {
		return nil, r.errorf("%d bytes left over at the end of the export section", len(r.b)-r.pos)
	}
	return out, nil
}

func (m *module) rewriteStart(s section) ([]byte, error) {
	r := s.reader()
	idx, err := r.u32("start function index")
	if err != nil {
		return nil, err
	}
	if idx, err = m.remapFunc(r, idx); err != nil {
		return nil, err
	}
	if !r.done() {
		return nil, r.errorf("%d bytes left over at the end of the start section", len(r.b)-r.pos)
	}
	return appendU32(nil, idx), nil
}

// rewriteElements renumbers the function indices in element segments.
// The eight encodings (§5.5.12) are selected by a flags value: bit 0
// passive or declarative, bit 1 explicit table index (active) or
// declarative (passive), bit 2 elements are expressions rather than
// function indices.
func (m *module) rewriteElements(s section) ([]byte, error) {
	r := s.reader()
	n, err := r.count(2, "element segment count")
	if err != nil {
		return nil, err
	}
	out := appendU32(make([]byte, 0, len(s.data)+8), n)
	for i := uint32(0); i < n; i++ {
		flags, err := r.u32("element segment flags")
		if err != nil {
			return nil, err
		}
		if flags > 7 {
			return nil, r.errorf("element segment flags %d out of range", flags)
		}
		out = appendU32(out, flags)
		active := flags&1 == 0
		if flags&2 != 0 && active {
			t, err := r.u32("element table index")
			if err != nil {
				return nil, err
			}
			out = appendU32(out, t)
		}
		if active {
			if out, err = m.rewriteConstExpr(r, out); err != nil {
				return nil, err
			}
		}
		// Kind (0x00 = funcref) or reference type; absent for flags 0 and 4.
		if flags&3 != 0 {
			k, err := r.byte("element kind")
			if err != nil {
				return nil, err
			}
			out = append(out, k)
		}
		cnt, err := r.count(1, "element count")
		if err != nil {
			return nil, err
		}
		out = appendU32(out, cnt)
		for j := uint32(0); j < cnt; j++ {
			if flags&4 != 0 {
				if out, err = m.rewriteConstExpr(r, out); err != nil {
					return nil, err
				}
				continue
			}
			idx, err := r.u32("element function index")
			if err != nil {
				return nil, err
			}
			if idx, err = m.remapFunc(r, idx); err != nil {
				return nil, err
			}
			out = appendU32(out, idx)
		}
	}
	if !r.done() {
		return nil, r.errorf("%d bytes left over at the end of the element section", len(r.b)-r.pos)
	}
	return out, nil
}

// rewriteConstExpr copies a constant expression up to and including its
// end, renumbering ref.func. Constant expressions have no blocks, so the
// first end closes them.
func (m *module) rewriteConstExpr(r *reader, out []byte) ([]byte, error) {
	for {
		start := r.pos
		in, err := m.decode(r)
		if err != nil {
			return nil, err
		}
		switch in.kind {
		case kindEnd:
			return append(out, opEnd), nil
		case kindRefFunc:
			out = append(out, opRefFunc)
			out = appendU32(out, in.funcIdx)
		case kindPlain:
			out = append(out, r.b[start:r.pos]...)
		default:
			return nil, fmt.Errorf("at offset %#x: control or call instruction in a constant expression", r.base+start)
		}
	}
}

// rewriteCustom renumbers the name section, sets DWARF sections aside in
// m.debug (unless opts drops them) for translation once the code is
// rewritten, and keeps every other custom section as it is. A nil result
// with a nil error means "leave out here".
func (m *module) rewriteCustom(s section, opts Options) ([]byte, error) {
	r := s.reader()
	name, err := r.name("custom section name")
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(name) {
		// As wazero: dropping or translating it would turn an invalid
		// module into a valid one.
		return nil, r.errorf("custom section name %q is not valid UTF-8", name)
	}
	switch {
	case string(name) == "name":
		body, err := m.rewriteNames(&reader{b: r.b[r.pos:], base: r.offset()})
		if err != nil {
			// wazero reads name subsections leniently (it ignores their
			// sizes), so it loads modules whose name section this strict
			// reader rejects. Names only label stack traces: drop them
			// rather than refuse a module wazero would run.
			return nil, nil
		}
		return append(appendName(nil, name), body...), nil
	case strings.HasPrefix(string(name), ".debug_"):
		if !opts.DropDebugInfo {
			if m.debug == nil {
				m.debug = map[string][]byte{}
			}
			m.debug[string(name)] = r.b[r.pos:]
		}
		return nil, nil
	}
	return s.data, nil
}
