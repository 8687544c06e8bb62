package wasm

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"io"
	"net"
	"time"

	"github.com/tetratelabs/wazero/api"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/wasmproxy/wasmproxy/filter"
)

// foreignFunc is one function reachable through
// proxy_call_foreign_function: it gets the arguments and returns the
// result bytes and a status.
type foreignFunc func(inst *instance, args []byte) ([]byte, status)

// foreignRegistry holds Envoy's foreign functions (foreign.cc) that this
// host provides; any other name is NOT_FOUND.
var foreignRegistry = map[string]foreignFunc{
	"compress":               foreignCompress,
	"uncompress":             foreignUncompress,
	"clear_route_cache":      foreignClearRouteCache,
	"declare_property":       foreignDeclareProperty,
	"set_envoy_filter_state": foreignSetFilterState,
}

// proxy_call_foreign_function(name_ptr, name_len, args_ptr, args_len,
// out_ptr, out_len) -> status. Functions act on the effective context.
// With out_ptr 0 the result is discarded.
func proxyCallForeignFunction(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_call_foreign_function")
	name, ok1 := readGuest(m, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	args, ok2 := readGuest(m, api.DecodeU32(stack[2]), api.DecodeU32(stack[3]))
	outPtr, outLen := api.DecodeU32(stack[4]), api.DecodeU32(stack[5])
	if !ok1 || !ok2 {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	fn := foreignRegistry[string(name)]
	if res, ok := inst.vm.host.testForeignFunction(name, args); ok {
		fn = func(*instance, []byte) ([]byte, status) { return res, statusOK }
	}
	if fn == nil {
		setStatus(stack, statusNotFound)
		return
	}
	if outPtr != 0 && (!writableWord(m, outPtr) || !writableWord(m, outLen)) {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	argsCopy := append([]byte(nil), args...)
	res, st := fn(inst, argsCopy)
	if st != statusOK {
		setStatus(stack, st)
		return
	}
	if outPtr == 0 {
		setStatus(stack, statusOK)
		return
	}
	setStatus(stack, copyOut(ctx, inst, m, res, outPtr, outLen))
}

func foreignCompress(_ *instance, args []byte) ([]byte, status) {
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	if _, err := w.Write(args); err != nil {
		return nil, statusSerializationFailure
	}
	if err := w.Close(); err != nil {
		return nil, statusSerializationFailure
	}
	return b.Bytes(), statusOK
}

func foreignUncompress(_ *instance, args []byte) ([]byte, status) {
	r, err := zlib.NewReader(bytes.NewReader(args))
	if err != nil {
		return nil, statusSerializationFailure
	}
	out, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return nil, statusSerializationFailure
	}
	return out, statusOK
}

// clear_route_cache: the effective stream's route is matched again. OK
// without a stream, as in Envoy.
func foreignClearRouteCache(inst *instance, _ []byte) ([]byte, status) {
	inst.clearRouteCache()
	return nil, statusOK
}

// clearRouteCache has the effective stream's route matched again, if
// there is a stream and its proxy can.
func (inst *instance) clearRouteCache() {
	if f := inst.effective; f != nil {
		if c, ok := f.cb.(filter.RouteCacheClearer); ok {
			c.ClearRouteCache()
		}
	}
}

// propertyPrototype is a declare_property declaration.
type propertyPrototype struct {
	readonly bool
	typ      uint64 // WasmType: 0 Bytes, 1 String, 2 FlatBuffers, 3 Protobuf
}

// declare_property(DeclarePropertyArguments{name=1, readonly=2, type=3,
// schema=4, span=5}) -> OK, or BAD_ARGUMENT when already declared or the
// arguments do not parse. Declarations belong to the root context.
func foreignDeclareProperty(inst *instance, args []byte) ([]byte, status) {
	var name string
	var proto propertyPrototype
	ok := walkProto(args, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) bool {
		switch {
		case num == 1 && typ == protowire.BytesType:
			name = string(v)
		case num == 2 && typ == protowire.VarintType:
			proto.readonly = n != 0
		case num == 3 && typ == protowire.VarintType:
			proto.typ = n
		}
		return true
	})
	rc := inst.root
	if !ok || name == "" || rc == nil {
		return nil, statusBadArgument
	}
	if rc.properties == nil {
		rc.properties = map[string]propertyPrototype{}
	}
	if _, dup := rc.properties[name]; dup {
		return nil, statusBadArgument
	}
	rc.properties[name] = proto
	return nil, statusOK
}

// set_envoy_filter_state(SetEnvoyFilterStateArguments{path=1, value=2,
// span=3}) stores value in the effective stream's filter state under
// path; NOT_FOUND without a stream.
func foreignSetFilterState(inst *instance, args []byte) ([]byte, status) {
	var path, value []byte
	ok := walkProto(args, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) bool {
		switch {
		case num == 1 && typ == protowire.BytesType:
			path = v
		case num == 2 && typ == protowire.BytesType:
			value = v
		}
		return true
	})
	if !ok || len(path) == 0 {
		return nil, statusBadArgument
	}
	f := inst.effective
	if f == nil {
		return nil, statusNotFound
	}
	info := f.cb.Info()
	if info == nil {
		return nil, statusNotFound
	}
	if !info.FilterState.Set(string(path), value, false) {
		return nil, statusBadArgument
	}
	return nil, statusOK
}

// walkProto visits the fields of a serialized message; false when it is
// malformed.
func walkProto(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, n uint64) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return false
			}
			b = b[m:]
			if !fn(num, typ, nil, v) {
				return false
			}
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return false
			}
			b = b[m:]
			if !fn(num, typ, v, 0) {
				return false
			}
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return false
			}
			b = b[m:]
		}
	}
	return true
}

// proxy_set_property(path_ptr, path_len, value_ptr, value_len) -> status:
// stores the value in the effective stream's filter state under
// "wasm.<path>" (NOT_FOUND without a stream); a property declared
// read-only with declare_property can be set once, then BAD_ARGUMENT.
// proxy_get_property(<path>) reads it back.
func proxySetProperty(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_set_property")
	path, ok1 := readGuest(m, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	value, ok2 := readGuest(m, api.DecodeU32(stack[2]), api.DecodeU32(stack[3]))
	if !ok1 || !ok2 {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	if len(path) > 0 && path[len(path)-1] == 0 {
		path = path[:len(path)-1]
	}
	f := inst.effective
	if f == nil || len(path) == 0 {
		setStatus(stack, statusNotFound)
		return
	}
	info := f.cb.Info()
	if info == nil {
		setStatus(stack, statusNotFound)
		return
	}
	readonly := false
	if rc := inst.root; rc != nil {
		readonly = rc.properties[string(path)].readonly
	}
	if !info.FilterState.Set("wasm."+string(path), value, readonly) {
		setStatus(stack, statusBadArgument)
		return
	}
	setStatus(stack, statusOK)
}

// envoy_resolve_dns(addr_ptr, addr_len, out_token) -> status: resolves in
// the background and calls envoy_on_resolve_dns(root, token, size) with
// buffer 8 holding [u32 n][n × u32 ttl][n NUL-terminated addresses]
// (size 0 on failure), as Envoy.
func envoyResolveDNS(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "envoy_resolve_dns")
	addr, ok := readGuest(m, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	tokenPtr := api.DecodeU32(stack[2])
	if !ok || !writableWord(m, tokenPtr) {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	rc := inst.root
	if rc == nil || len(addr) == 0 {
		setStatus(stack, statusBadArgument)
		return
	}
	inst.dnsSeq++
	token := inst.dnsSeq
	name := string(addr)
	go func() {
		bg, cancel := rc.inst.background()
		defer cancel()
		rctx, c2 := context.WithTimeout(bg, 5*time.Second)
		ips, err := net.DefaultResolver.LookupHost(rctx, name)
		c2()
		var data []byte
		if err == nil && len(ips) > 0 {
			data = binary.LittleEndian.AppendUint32(data, uint32(len(ips)))
			for range ips {
				data = binary.LittleEndian.AppendUint32(data, 0)
			}
			for _, ip := range ips {
				data = append(append(data, ip...), 0)
			}
		}
		rc.runRoot("envoy_on_resolve_dns", func(inst *instance) error {
			if inst.fnResolveDNS == nil {
				return nil
			}
			return inst.withCallout(func(c *calloutData) {
				c.bufType, c.buf = bufferForeignFunction, data
			}, func() error {
				_, err := inst.invoke(nil, rc.id, inst.fnResolveDNS, uint64(rc.id), uint64(token), uint64(len(data)))
				return err
			})
		})
	}()
	setStatus(stack, putU32(m, tokenPtr, token))
}

func foreignFunctions() []hostFunc {
	return []hostFunc{
		{"proxy_call_foreign_function", ints(6), oneI32, proxyCallForeignFunction},
		{"proxy_set_property", ints(4), oneI32, proxySetProperty},
		{"envoy_resolve_dns", ints(3), oneI32, envoyResolveDNS},
	}
}
