package meter

// The "name" custom section (core spec, appendix "Name Section"): a
// sequence of subsections, each an id byte, a u32 size and content.
// Subsections 1 (function names, a name map), 2 (local names) and 3
// (label names, an extension wazero ignores) are keyed by function index
// and are renumbered; the others (module, type, table, memory, global,
// element, data names) are copied.
//
// A name map is vec(index name), sorted by index; an indirect name map is
// vec(function-index name-map).

const (
	nameSubFunctions = 1
	nameSubLocals    = 2
	nameSubLabels    = 3
)

// remapName renumbers a function index in the name section. Unlike
// remapFunc it accepts indices past the end: wazero does not check them,
// and a module it loads must still load after instrumentation.
func (m *module) remapName(idx uint32) uint32 {
	if idx >= m.importedFuncs && idx != ^uint32(0) {
		return idx + 1
	}
	return idx
}

// rewriteNames rewrites the content of a name section after its name.
func (m *module) rewriteNames(r *reader) ([]byte, error) {
	out := make([]byte, 0, len(r.b)+32)
	for !r.done() {
		id, _ := r.byte("name subsection id")
		size, err := r.u32("name subsection size")
		if err != nil {
			return nil, err
		}
		base := r.offset()
		data, err := r.bytes(uint64(size), "name subsection")
		if err != nil {
			return nil, err
		}
		sub := &reader{b: data, base: base}
		var content []byte
		switch id {
		case nameSubFunctions:
			content, err = m.rewriteFunctionNames(sub)
		case nameSubLocals:
			content, err = m.rewriteIndirectNames(sub)
		case nameSubLabels:
			// wazero skips this subsection unread, so a layout we do not
			// understand must not fail the module: keep it as it is.
			if content, err = m.rewriteIndirectNames(sub); err != nil {
				content, err = data, nil
			}
		default:
			content = data
		}
		if err != nil {
			return nil, err
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(content)))
		out = append(out, content...)
	}
	return out, nil
}

// rewriteFunctionNames renumbers the function name map and names the
// check import, so guest stack traces that pass through it read well.
func (m *module) rewriteFunctionNames(r *reader) ([]byte, error) {
	n, err := r.count(2, "function name count")
	if err != nil {
		return nil, err
	}
	out := appendU32(make([]byte, 0, len(r.b)+32), n+1)
	inserted := false
	insert := func() {
		out = appendU32(out, m.importedFuncs)
		out = appendName(out, []byte(HostModule+"."+CheckFunction))
		inserted = true
	}
	for i := uint32(0); i < n; i++ {
		idx, err := r.u32("function name index")
		if err != nil {
			return nil, err
		}
		name, err := r.name("function name")
		if err != nil {
			return nil, err
		}
		if !inserted && idx >= m.importedFuncs {
			insert()
		}
		out = appendU32(out, m.remapName(idx))
		out = appendName(out, name)
	}
	if !inserted {
		insert()
	}
	if !r.done() {
		return nil, r.errorf("%d bytes left over in the function names", len(r.b)-r.pos)
	}
	return out, nil
}

// rewriteIndirectNames renumbers the outer (function) index of an
// indirect name map; the inner maps are keyed by local or label index,
// which instrumentation does not change.
func (m *module) rewriteIndirectNames(r *reader) ([]byte, error) {
	n, err := r.count(2, "indirect name map count")
	if err != nil {
		return nil, err
	}
	out := appendU32(make([]byte, 0, len(r.b)+8), n)
	for i := uint32(0); i < n; i++ {
		idx, err := r.u32("function index")
		if err != nil {
			return nil, err
		}
		out = appendU32(out, m.remapName(idx))
		start := r.pos
		inner, err := r.count(2, "name count")
		if err != nil {
			return nil, err
		}
		for j := uint32(0); j < inner; j++ {
			if _, err := r.u32("index"); err != nil {
				return nil, err
			}
			if _, err := r.name("name"); err != nil {
				return nil, err
			}
		}
		out = append(out, r.b[start:r.pos]...)
	}
	if !r.done() {
		return nil, r.errorf("%d bytes left over in an indirect name map", len(r.b)-r.pos)
	}
	return out, nil
}
