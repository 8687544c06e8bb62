package meter

import "fmt"

// Opcodes Instrument emits or treats specially (core spec §5.4).
const (
	opUnreachable  = 0x00
	opBlock        = 0x02
	opLoop         = 0x03
	opIf           = 0x04
	opElse         = 0x05
	opEnd          = 0x0b
	opReturn       = 0x0f
	opCall         = 0x10
	opReturnCall   = 0x12
	opGlobalGet    = 0x23
	opGlobalSet    = 0x24
	opI32Const     = 0x41
	opI32LtS       = 0x48
	opI32Sub       = 0x6b
	opRefFunc      = 0xd2
	blockTypeEmpty = 0x40
)

// instrKind is what the rewriter needs to know about an instruction.
type instrKind uint8

const (
	// kindPlain always falls through to the next instruction (barring a
	// trap) and calls nothing; it is copied byte for byte.
	kindPlain instrKind = iota
	kindBlock           // block: opens a frame in the current region
	kindIf              // if: opens a frame, may skip code
	kindLoop            // loop: opens a frame that is a new region
	kindElse
	kindEnd
	kindCall       // call funcidx: renumbered
	kindReturnCall // return_call funcidx: renumbered
	kindRefFunc    // ref.func funcidx: renumbered
	// kindJump transfers control elsewhere or calls an unknown function:
	// br, br_if, br_table, return, unreachable, call_indirect,
	// return_call_indirect. Copied byte for byte.
	kindJump
)

type instr struct {
	kind    instrKind
	funcIdx uint32 // for call, return_call and ref.func: already renumbered
}

// decode reads one instruction and its immediates (§5.4), renumbering
// function indices. The immediates of every instruction in the supported
// proposals are skipped exactly, since one byte too few or too many would
// turn the rest of the body into garbage.
func (m *module) decode(r *reader) (instr, error) {
	at := r.offset()
	op, err := r.byte("opcode")
	if err != nil {
		return instr{}, err
	}
	switch {
	case op == opUnreachable || op == opReturn:
		return instr{kind: kindJump}, nil
	case op == 0x01, op == 0x1a, op == 0x1b, op == 0xd1:
		// nop, drop, select, ref.is_null
		return instr{}, nil
	case op == opBlock || op == opLoop || op == opIf:
		if err := m.blockType(r); err != nil {
			return instr{}, err
		}
		switch op {
		case opBlock:
			return instr{kind: kindBlock}, nil
		case opLoop:
			return instr{kind: kindLoop}, nil
		}
		return instr{kind: kindIf}, nil
	case op == opElse:
		return instr{kind: kindElse}, nil
	case op == opEnd:
		return instr{kind: kindEnd}, nil
	case op == 0x0c || op == 0x0d: // br, br_if
		_, err := r.u32("branch label")
		return instr{kind: kindJump}, err
	case op == 0x0e: // br_table: vec(label) default
		n, err := r.count(1, "br_table length")
		if err != nil {
			return instr{}, err
		}
		for i := uint64(0); i <= uint64(n); i++ {
			if _, err := r.u32("br_table label"); err != nil {
				return instr{}, err
			}
		}
		return instr{kind: kindJump}, nil
	case op == opCall || op == opReturnCall || op == opRefFunc:
		idx, err := r.u32("function index")
		if err != nil {
			return instr{}, err
		}
		if idx, err = m.remapFunc(r, idx); err != nil {
			return instr{}, err
		}
		kind := kindRefFunc
		switch op {
		case opCall:
			kind = kindCall
		case opReturnCall:
			kind = kindReturnCall
		}
		return instr{kind: kind, funcIdx: idx}, nil
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect: type, table
		t, err := r.u32("type index")
		if err != nil {
			return instr{}, err
		}
		if int(t) >= len(m.typeParams) { // may be about to be the check's type
			return instr{}, r.errorf("type index %d out of range", t)
		}
		_, err = r.u32("table index")
		return instr{kind: kindJump}, err
	case op == 0x1c: // select t*
		n, err := r.count(1, "select type count")
		if err != nil {
			return instr{}, err
		}
		types, _ := r.bytes(uint64(n), "select types")
		for _, t := range types {
			if !isValType(t) {
				return instr{}, r.errorf("unsupported value type %#x in select", t)
			}
		}
		return instr{}, nil
	case op >= 0x20 && op <= 0x22: // local.get, local.set, local.tee
		_, err := r.u32("local index")
		return instr{}, err
	case op == opGlobalGet || op == opGlobalSet:
		// An index one past the module's globals must stay invalid, not
		// become the fuel global.
		idx, err := r.u32("global index")
		if err == nil && idx >= m.importGlobals+m.definedGlobal {
			err = r.errorf("global index %d out of range", idx)
		}
		return instr{}, err
	case op == 0x25 || op == 0x26: // table.get, table.set
		_, err := r.u32("table index")
		return instr{}, err
	case op >= 0x28 && op <= 0x3e: // loads and stores
		return instr{}, memArg(r)
	case op == 0x3f || op == 0x40: // memory.size, memory.grow
		return instr{}, zeroByte(r, "memory index")
	case op == opI32Const:
		_, err := r.sleb(32, "i32 constant")
		return instr{}, err
	case op == 0x42:
		_, err := r.sleb(64, "i64 constant")
		return instr{}, err
	case op == 0x43:
		_, err := r.bytes(4, "f32 constant")
		return instr{}, err
	case op == 0x44:
		_, err := r.bytes(8, "f64 constant")
		return instr{}, err
	case op >= 0x45 && op <= 0xc4: // numeric, including sign extension
		return instr{}, nil
	case op == 0xd0: // ref.null reftype
		t, err := r.byte("reference type")
		if err != nil {
			return instr{}, err
		}
		if t != 0x70 && t != 0x6f {
			return instr{}, r.errorf("unsupported reference type %#x in ref.null", t)
		}
		return instr{}, nil
	case op == 0xfc:
		return instr{}, miscImmediates(r)
	case op == 0xfd:
		return instr{}, simdImmediates(r)
	case op == 0xfe:
		return instr{}, atomicImmediates(r)
	case (op >= 0x06 && op <= 0x0a) || op == 0x18 || op == 0x19 || op == 0x1f:
		return instr{}, fmt.Errorf("at offset %#x: opcode %#x: exception handling is not supported", at, op)
	case op == 0x14 || op == 0x15 || (op >= 0xd3 && op <= 0xd6) || op == 0xfb:
		return instr{}, fmt.Errorf("at offset %#x: opcode %#x: typed function references and GC are not supported", at, op)
	}
	return instr{}, fmt.Errorf("at offset %#x: unknown opcode %#x", at, op)
}

// blockType reads a block type: 0x40 (no result), one value type, or a
// type index as a non-negative s33 (multi-value).
func (m *module) blockType(r *reader) error {
	start := r.pos
	v, err := r.sleb(33, "block type")
	if err != nil {
		return err
	}
	if v < 0 {
		b := r.b[start]
		if r.pos-start != 1 || (b != blockTypeEmpty && !isValType(b)) {
			return r.errorf("unsupported block type %#x", b)
		}
		return nil
	}
	if v >= int64(len(m.typeParams)) {
		return r.errorf("block type index %d out of range", v)
	}
	return nil
}

// memArg reads a memory argument: alignment exponent, then offset. An
// alignment with bit 6 set announces a memory index (multi-memory), which
// wazero does not support.
func memArg(r *reader) error {
	align, err := r.u32("memory alignment")
	if err != nil {
		return err
	}
	if align >= 0x40 {
		return r.errorf("memory alignment %d: multi-memory is not supported", align)
	}
	_, err = r.u32("memory offset")
	return err
}

// zeroByte reads the reserved memory-index byte of WebAssembly 2.0.
func zeroByte(r *reader, what string) error {
	b, err := r.byte(what)
	if err != nil {
		return err
	}
	if b != 0 {
		return r.errorf("%s must be 0, got %#x (multi-memory is not supported)", what, b)
	}
	return nil
}

// miscImmediates reads the 0xFC-prefixed instructions: non-trapping
// float-to-int (0–7, no immediates) and bulk memory and table operations.
func miscImmediates(r *reader) error {
	sub, err := r.u32("0xfc sub-opcode")
	if err != nil {
		return err
	}
	u32s := func(n int) error {
		for i := 0; i < n; i++ {
			if _, err := r.u32("index"); err != nil {
				return err
			}
		}
		return nil
	}
	switch {
	case sub <= 7: // i32/i64.trunc_sat_f32/f64_s/u
		return nil
	case sub == 8: // memory.init dataidx 0x00
		if err := u32s(1); err != nil {
			return err
		}
		return zeroByte(r, "memory index")
	case sub == 9, sub == 13, sub == 15, sub == 16, sub == 17: // data.drop, elem.drop, table.grow/size/fill
		return u32s(1)
	case sub == 10: // memory.copy 0x00 0x00
		if err := zeroByte(r, "memory index"); err != nil {
			return err
		}
		return zeroByte(r, "memory index")
	case sub == 11: // memory.fill 0x00
		return zeroByte(r, "memory index")
	case sub == 12, sub == 14: // table.init elemidx tableidx, table.copy dst src
		return u32s(2)
	}
	return r.errorf("unknown 0xfc sub-opcode %d", sub)
}

// simdImmediates reads the 0xFD-prefixed (SIMD) instructions. Only loads,
// stores, v128.const, i8x16.shuffle and the lane instructions take
// immediates; the relaxed-SIMD opcodes (0x100–0x113) take none.
func simdImmediates(r *reader) error {
	sub, err := r.u32("0xfd sub-opcode")
	if err != nil {
		return err
	}
	switch {
	case sub <= 0x0b, sub == 0x5c, sub == 0x5d: // v128.load*, v128.store, load*_zero
		return memArg(r)
	case sub == 0x0c || sub == 0x0d: // v128.const, i8x16.shuffle
		_, err := r.bytes(16, "v128 immediate")
		return err
	case sub >= 0x15 && sub <= 0x22: // extract_lane, replace_lane
		_, err := r.byte("lane index")
		return err
	case sub >= 0x54 && sub <= 0x5b: // v128.load*_lane, v128.store*_lane
		if err := memArg(r); err != nil {
			return err
		}
		_, err := r.byte("lane index")
		return err
	case sub <= 0x113:
		return nil
	}
	return r.errorf("unknown 0xfd sub-opcode %#x", sub)
}

// atomicImmediates reads the 0xFE-prefixed (threads) instructions: a
// memory argument for all but atomic.fence, which has a reserved 0x00.
func atomicImmediates(r *reader) error {
	sub, err := r.u32("0xfe sub-opcode")
	if err != nil {
		return err
	}
	switch {
	case sub <= 0x02 || (sub >= 0x10 && sub <= 0x4e):
		return memArg(r)
	case sub == 0x03:
		return zeroByte(r, "atomic.fence reserved byte")
	}
	return r.errorf("unknown 0xfe sub-opcode %#x", sub)
}

// rewriteCode instruments every function body, recording in m.code where
// each original instruction went.
func (m *module) rewriteCode(s section, fuel, check uint32) ([]byte, error) {
	r := s.reader()
	n, err := r.count(2, "function body count")
	if err != nil {
		return nil, err
	}
	if int(n) != len(m.funcTypes) {
		return nil, r.errorf("%d function bodies for %d declared functions", n, len(m.funcTypes))
	}
	// Each metering point adds about 20 bytes; Go-built modules have
	// roughly two per function.
	out := appendU32(make([]byte, 0, len(s.data)+int(n)*48), n)
	var body []byte
	var sc scratch
	for i := uint32(0); i < n; i++ {
		sizeAt := r.offset() - s.off
		size, err := r.u32("function body size")
		if err != nil {
			return nil, err
		}
		base := r.offset()
		raw, err := r.bytes(uint64(size), "function body")
		if err != nil {
			return nil, err
		}
		params := m.typeParams[m.funcTypes[i]]
		body, err = m.rewriteBody(&reader{b: raw, base: base}, body[:0], &sc, params, fuel, check)
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", m.importedFuncs+i, err)
		}
		m.code.add(uint32(sizeAt), uint32(len(out)))
		out = appendU32(out, uint32(len(body)))
		origBody, newBody := uint32(base-s.off), uint32(len(out))
		m.code.add(origBody, newBody)
		for k, o := range sc.moved.orig {
			m.code.add(origBody+o, newBody+sc.moved.inst[k])
		}
		out = append(out, body...)
	}
	if !r.done() {
		return nil, r.errorf("%d bytes left over at the end of the code section", len(r.b)-r.pos)
	}
	return out, nil
}

// rewriteBody instruments one function body (§5.5.13: vec(locals) expr).
//
// The fuel stays in its global at every metering point. Keeping it in a
// local between calls was tried and measured slower (Go-built JSON +11%
// instead of +5.5–8%, tight loops +30–45% instead of +16–28%): one more
// value live across the check's call costs wazero's register allocator more
// than the load and store it saves. So was calling the import through a
// local helper function (mixed: better for one loop, worse for the rest).
func (m *module) rewriteBody(r *reader, out []byte, sc *scratch, params, fuel, check uint32) ([]byte, error) {
	localsStart := r.pos
	groups, err := r.count(2, "local group count")
	if err != nil {
		return nil, err
	}
	total := uint64(params)
	for g := uint32(0); g < groups; g++ {
		cnt, err := r.u32("local count")
		if err != nil {
			return nil, err
		}
		t, err := r.byte("local type")
		if err != nil {
			return nil, err
		}
		if !isValType(t) {
			return nil, r.errorf("unsupported local type %#x", t)
		}
		total += uint64(cnt)
	}
	if total > maxLocals {
		return nil, fmt.Errorf("%w: %d locals (parameters included), the limit is %d", ErrLimit, total, maxLocals)
	}
	out = append(out, r.b[localsStart:r.pos]...)

	codeStart := r.pos
	sc.moved = CodeMap{orig: sc.moved.orig[:0], inst: sc.moved.inst[:0]}
	entryCost, skipEntry, err := m.scanRegions(r, sc)
	if err != nil {
		return nil, err
	}

	// meter: fuel -= cost; if fuel < 0 { fuel = check() }.
	meter := func(out []byte, cost uint32) []byte {
		out = appendU32(append(out, opGlobalGet), fuel)
		out = appendS32(append(out, opI32Const), int32(cost))
		out = append(out, opI32Sub)
		out = appendU32(append(out, opGlobalSet), fuel)
		// wazero reuses the value just stored instead of loading it again.
		out = appendU32(append(out, opGlobalGet), fuel)
		out = append(out, opI32Const, 0x00, opI32LtS, opIf, blockTypeEmpty, opCall)
		out = appendU32(out, check)
		out = appendU32(append(out, opGlobalSet), fuel)
		return append(out, opEnd)
	}

	if !skipEntry {
		n := len(out)
		out = meter(out, entryCost)
		sc.moved.inserted(uint32(codeStart), uint32(n), uint32(len(out)-n))
	}
	// Copy the body between the edits scanRegions recorded, so it is
	// decoded once, not twice.
	pos := codeStart
	for _, e := range sc.edits {
		out = append(out, r.b[pos:e.start]...)
		switch e.kind {
		case kindCall:
			out = appendU32(append(out, opCall), e.index)
			sc.moved.add(uint32(e.end), uint32(len(out))) // the index may have grown a byte
		case kindReturnCall:
			out = appendU32(append(out, opReturnCall), e.index)
			sc.moved.add(uint32(e.end), uint32(len(out)))
		case kindRefFunc:
			out = appendU32(append(out, opRefFunc), e.index)
			sc.moved.add(uint32(e.end), uint32(len(out)))
		case kindLoop:
			out = append(out, r.b[e.start:e.end]...)
			n := len(out)
			out = meter(out, sc.costs[e.index])
			sc.moved.inserted(uint32(e.end), uint32(n), uint32(len(out)-n))
		}
		pos = e.end
	}
	return append(out, r.b[pos:]...), nil
}

// scratch is per-function working memory, reused across the functions of
// a module.
type scratch struct {
	costs  []uint32 // per loop, in the order the loops appear
	edits  []edit
	frames []int // region of each open control frame
	// moved maps the function's instructions, offsets counted from the
	// start of its body (its local declarations).
	moved CodeMap
}

// edit is an instruction the rewrite replaces or follows with metering.
type edit struct {
	start, end int       // the instruction's bytes in the body
	kind       instrKind // kindCall, kindReturnCall, kindRefFunc or kindLoop
	index      uint32    // renumbered function index, or the loop's entry in costs
}

// scanRegions decodes a function's instructions, the only time they are
// decoded, to price its regions: entryCost for the function body outside
// loops, sc.costs[k] for the k-th loop (in the order the loop instructions
// appear) outside nested loops. Each instruction costs 1, charged to the
// innermost enclosing region. It also records in sc.edits the instructions
// the rewrite must touch.
//
// When a loop is reached from the function's entry through straight-line
// code only (no branch, call or if before it; Go's wasm backend puts its
// whole function body in such a loop), the entry check is redundant:
// that loop's header runs before anything else can, on every call. The
// entry check is then skipped (skipEntry) and its cost added to the loop,
// which keeps the charge an upper bound.
func (m *module) scanRegions(r *reader, sc *scratch) (entryCost uint32, skipEntry bool, err error) {
	const entry = -1
	sc.costs, sc.edits = sc.costs[:0], sc.edits[:0]
	frames := append(sc.frames[:0], entry)
	defer func() { sc.frames = frames }()
	straight := true
	folded := entry
	for {
		start := r.pos
		in, err := m.decode(r)
		if err != nil {
			return 0, false, err
		}
		// Charge the instruction to the innermost region.
		if cur := frames[len(frames)-1]; cur == entry {
			entryCost = min(entryCost+1, maxRegionCost)
		} else {
			sc.costs[cur] = min(sc.costs[cur]+1, maxRegionCost)
		}
		switch in.kind {
		case kindPlain:
		case kindRefFunc:
			sc.edits = append(sc.edits, edit{start, r.pos, in.kind, in.funcIdx})
		case kindBlock:
			frames = append(frames, frames[len(frames)-1])
		case kindLoop:
			sc.costs = append(sc.costs, 0)
			loop := len(sc.costs) - 1
			frames = append(frames, loop)
			sc.edits = append(sc.edits, edit{start, r.pos, kindLoop, uint32(loop)})
			if straight {
				folded = loop
				straight = false
			}
		case kindEnd:
			straight = false
			frames = frames[:len(frames)-1]
			if len(frames) == 0 {
				if !r.done() {
					return 0, false, r.errorf("%d bytes after the end of the function body", len(r.b)-r.pos)
				}
				if folded != entry {
					sc.costs[folded] = min(sc.costs[folded]+entryCost, maxRegionCost)
					return entryCost, true, nil
				}
				return max(entryCost, 1), false, nil
			}
		case kindIf:
			straight = false
			frames = append(frames, frames[len(frames)-1])
		case kindCall, kindReturnCall:
			straight = false
			sc.edits = append(sc.edits, edit{start, r.pos, in.kind, in.funcIdx})
		default: // else, indirect calls, branches, return, unreachable
			straight = false
		}
	}
}
