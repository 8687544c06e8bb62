package wasm

import (
	"context"
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero/api"
)

// status is proxy_status_t (Envoy's WasmResult). Values are the ABI's; the
// names follow the spec.
type status = uint32

const (
	statusOK                   status = 0
	statusNotFound             status = 1
	statusBadArgument          status = 2
	statusSerializationFailure status = 3
	statusParseFailure         status = 4
	statusInvalidMemoryAccess  status = 6
	statusEmpty                status = 7
	statusCasMismatch          status = 8
	statusInternalFailure      status = 10
	statusUnimplemented        status = 12
)

// Map types (proxy_map_type_t).
const (
	mapRequestHeaders   = 0
	mapRequestTrailers  = 1
	mapResponseHeaders  = 2
	mapResponseTrailers = 3
	mapMax              = 7
)

// Buffer types (proxy_buffer_type_t).
const (
	bufferRequestBody         = 0
	bufferResponseBody        = 1
	bufferVMConfiguration     = 6
	bufferPluginConfiguration = 7
	bufferMax                 = 8
)

// Stream types (proxy_stream_type_t).
const (
	streamRequest    = 0
	streamResponse   = 1
	streamDownstream = 2
	streamUpstream   = 3
)

// abiVersion is the Proxy-Wasm ABI a module declares through its marker
// export.
type abiVersion int

const (
	abiUnknown abiVersion = iota
	abi010
	abi020
	abi021
)

func (v abiVersion) String() string {
	switch v {
	case abi010:
		return "0.1.0"
	case abi020:
		return "0.2.0"
	case abi021:
		return "0.2.1"
	}
	return "unknown"
}

// abiMarkers in the order they are tried. cpp-host takes the first marker
// in export-section order; wazero exposes exports as a map, so when a
// module (unusually) carries several markers the newest one wins here.
var abiMarkers = []struct {
	name    string
	version abiVersion
}{
	{"proxy_abi_version_0_2_1", abi021},
	{"proxy_abi_version_0_2_0", abi020},
	{"proxy_abi_version_0_1_0", abi010},
}

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// hostFunc is one imported function the host provides: its exact wasm
// signature (used both to register it and to check a module's imports
// before instantiation) and its stack-based implementation.
type hostFunc struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	fn      api.GoModuleFunc
}

// ints returns n copies of t, for signatures made only of i32.
func ints(n int) []api.ValueType {
	out := make([]api.ValueType, n)
	for i := range out {
		out[i] = i32
	}
	return out
}

var oneI32 = []api.ValueType{i32}

// signature renders a wasm signature like "(i32,i64)->i32".
func signature(params, results []api.ValueType) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, p := range params {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(api.ValueTypeName(p))
	}
	b.WriteString(")->")
	switch len(results) {
	case 0:
		b.WriteString("()")
	case 1:
		b.WriteString(api.ValueTypeName(results[0]))
	default:
		b.WriteByte('(')
		for i, r := range results {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(api.ValueTypeName(r))
		}
		b.WriteByte(')')
	}
	return b.String()
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// instanceKey is the context key under which every guest call carries its
// *instance, so host functions find their instance with no allocation.
type instanceKey struct{}

// instanceOf is the instance whose guest call ctx is: a type assertion
// for the instance's own call context (wazero hands host functions the
// context of the guest call), a Value lookup for a context derived from
// it (instantiation's), nil for any other.
func instanceOf(ctx context.Context) *instance {
	if c, ok := ctx.(*callContext); ok {
		return c.inst
	}
	inst, _ := ctx.Value(instanceKey{}).(*instance)
	return inst
}

// restrictedError is the trap raised when a module calls a proxy_*
// function while it is still starting (_initialize, main, _start), which
// cpp-host forbids: no context exists yet for such calls to act on.
type restrictedError string

func (e restrictedError) Error() string {
	return fmt.Sprintf("restricted_callback: %s may not be called during module start-up", string(e))
}

// enter returns the calling instance and traps when the call is not
// allowed in the current phase.
func enter(ctx context.Context, name string) *instance {
	inst := instanceOf(ctx)
	if inst == nil {
		panic(fmt.Errorf("%s called outside of a wasmproxy instance", name))
	}
	if inst.starting {
		panic(restrictedError(name))
	}
	return inst
}

// --- guest memory helpers -------------------------------------------------

// readGuest returns a view of guest memory. The view is invalid after
// anything that may grow memory (a call into the guest allocator), so
// callers copy what they keep.
func readGuest(m api.Module, ptr, size uint32) ([]byte, bool) {
	if size == 0 {
		return nil, true
	}
	return m.Memory().Read(ptr, size)
}

// writableWord reports whether a 4-byte out-parameter lies inside memory.
func writableWord(m api.Module, ptr uint32) bool {
	_, ok := m.Memory().Read(ptr, 4)
	return ok
}

// putU32 writes a u32 out-parameter.
func putU32(m api.Module, ptr, v uint32) status {
	if !m.Memory().WriteUint32Le(ptr, v) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

// putU64 writes a u64 out-parameter.
func putU64(m api.Module, ptr uint32, v uint64) status {
	if !m.Memory().WriteUint64Le(ptr, v) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

// allocate calls the guest allocator (malloc or proxy_on_memory_allocate)
// through the handle cached on the instance. A trap inside the allocator
// is re-raised so that the guest call in progress fails as a whole.
func (inst *instance) allocate(ctx context.Context, size uint32) uint32 {
	st := inst.mallocStack[:]
	st[0] = uint64(size)
	if err := inst.fnMalloc.CallWithStack(ctx, st); err != nil {
		panic(err)
	}
	return uint32(st[0])
}

// copyOut hands data to the guest the way the ABI specifies: allocate in
// the guest, copy, write (ptr, len) to the two out-pointers. Empty data is
// written as ptr=0, len=0 without calling the allocator (cpp-host does the
// same), and the out-pointers are checked before allocating so a hostile
// pointer does not leak guest memory.
func copyOut[T string | []byte](ctx context.Context, inst *instance, m api.Module, data T, ptrPtr, sizePtr uint32) status {
	if !writableWord(m, ptrPtr) || !writableWord(m, sizePtr) {
		return statusInvalidMemoryAccess
	}
	mem := m.Memory()
	if len(data) == 0 {
		mem.WriteUint32Le(ptrPtr, 0)
		mem.WriteUint32Le(sizePtr, 0)
		return statusOK
	}
	size := uint32(len(data))
	ptr := inst.allocate(ctx, size)
	if ptr == 0 {
		return statusInvalidMemoryAccess
	}
	// The allocator may have grown memory: take a fresh view.
	mem = m.Memory()
	dst, ok := mem.Read(ptr, size)
	if !ok {
		return statusInvalidMemoryAccess
	}
	copy(dst, data)
	mem.WriteUint32Le(ptrPtr, ptr)
	mem.WriteUint32Le(sizePtr, size)
	return statusOK
}

// setStatus stores a proxy_status_t result on the stack.
func setStatus(stack []uint64, s status) { stack[0] = uint64(s) }
