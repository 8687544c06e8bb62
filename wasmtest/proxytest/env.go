package proxytest

import (
	"context"
	"encoding/binary"
	"math"
	"time"

	"github.com/tetratelabs/wazero/api"

	sdk "github.com/wasmproxy/wasmproxy/sdk/proxywasm/proxytest"
)

// The module's "env" imports: each reads its arguments from the module's
// memory, calls the live emulator (sdk proxytest.CurrentABI) and writes
// the results back the way a Proxy-Wasm host does, allocating with the
// module's own allocator. Statuses are proxy_status_t values.

const (
	statusOK                  = 0
	statusInvalidMemoryAccess = 6
	statusUnimplemented       = 12
)

type hostFunc struct {
	name   string
	params []api.ValueType
	fn     func(m api.Module, h sdk.ABI, s []uint64) uint32
}

func i32s(n int) []api.ValueType {
	out := make([]api.ValueType, n)
	for i := range out {
		out[i] = api.ValueTypeI32
	}
	return out
}

var i32i64 = []api.ValueType{api.ValueTypeI32, api.ValueTypeI64}

func (m *module) instantiateEnv() error {
	b := m.rt.NewHostModuleBuilder("env")
	for _, f := range m.hostFunctions() {
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, mod api.Module, s []uint64) {
			h := sdk.CurrentABI()
			if h == nil { // no emulator live (a test called the module directly)
				s[0] = statusUnimplemented
				return
			}
			s[0] = uint64(f.fn(mod, h, s))
		}), f.params, []api.ValueType{api.ValueTypeI32}).Export(f.name)
	}
	_, err := b.Instantiate(m.ctx)
	return err
}

func u32(v uint64) uint32 { return uint32(v) }

// arg reads the (pointer, length) argument at s[i], s[i+1].
func arg(mod api.Module, s []uint64, i int) ([]byte, bool) {
	n := u32(s[i+1])
	if n == 0 {
		return nil, true
	}
	return mod.Memory().Read(u32(s[i]), n)
}

// args reads n consecutive (pointer, length) arguments from s[i].
func args(mod api.Module, s []uint64, i, n int) ([][]byte, bool) {
	out := make([][]byte, n)
	for k := range out {
		b, ok := arg(mod, s, i+2*k)
		if !ok {
			return nil, false
		}
		out[k] = b
	}
	return out, true
}

func putU32(mod api.Module, ptr uint64, v uint32) uint32 {
	if !mod.Memory().WriteUint32Le(u32(ptr), v) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

// copyOut hands data to the module: allocated with its allocator, then
// (pointer, length) written to the out-parameters; empty data is 0, 0.
func (m *module) copyOut(mod api.Module, data []byte, ptrPtr, lenPtr uint64) uint32 {
	mem := mod.Memory()
	if _, ok := mem.Read(u32(ptrPtr), 4); !ok {
		return statusInvalidMemoryAccess
	}
	if _, ok := mem.Read(u32(lenPtr), 4); !ok {
		return statusInvalidMemoryAccess
	}
	var ptr uint32
	if len(data) > 0 {
		res, err := m.alloc.Call(m.ctx, uint64(len(data)))
		if err != nil {
			panic(err) // a trap in the allocator fails the callback in progress
		}
		ptr = uint32(res[0])
		if !mem.Write(ptr, data) {
			return statusInvalidMemoryAccess
		}
	}
	mem.WriteUint32Le(u32(ptrPtr), ptr)
	mem.WriteUint32Le(u32(lenPtr), uint32(len(data)))
	return statusOK
}

// result writes a (data, status) result to the out-parameters at
// s[i], s[i+1] when the status is OK.
func (m *module) result(mod api.Module, s []uint64, i int, data []byte, st uint32) uint32 {
	if st != statusOK {
		return st
	}
	return m.copyOut(mod, data, s[i], s[i+1])
}

// idResult writes a u32 result to the out-parameter at s[i] when OK.
func idResult(mod api.Module, s []uint64, i int, v, st uint32) uint32 {
	if st != statusOK {
		return st
	}
	return putU32(mod, s[i], v)
}

func (m *module) hostFunctions() []hostFunc {
	return []hostFunc{
		{"proxy_log", i32s(3), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			msg, ok := arg(mod, s, 1)
			if !ok {
				return statusInvalidMemoryAccess
			}
			return h.ProxyLog(u32(s[0]), msg)
		}},
		{"proxy_get_log_level", i32s(1), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			level, st := h.ProxyGetLogLevel()
			return idResult(mod, s, 0, level, st)
		}},
		{"proxy_set_tick_period_milliseconds", i32s(1), func(_ api.Module, h sdk.ABI, s []uint64) uint32 {
			return h.ProxySetTickPeriodMilliseconds(u32(s[0]))
		}},
		{"proxy_set_effective_context", i32s(1), func(_ api.Module, h sdk.ABI, s []uint64) uint32 {
			return h.ProxySetEffectiveContext(u32(s[0]))
		}},
		{"proxy_done", nil, func(_ api.Module, h sdk.ABI, _ []uint64) uint32 { return h.ProxyDone() }},
		{"proxy_call_foreign_function", i32s(6), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			a, ok := args(mod, s, 0, 2)
			if !ok {
				return statusInvalidMemoryAccess
			}
			res, st := h.ProxyCallForeignFunction(a[0], a[1])
			return m.result(mod, s, 4, res, st)
		}},
		{"proxy_get_property", i32s(4), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			path, ok := arg(mod, s, 0)
			if !ok {
				return statusInvalidMemoryAccess
			}
			v, st := h.ProxyGetProperty(path)
			return m.result(mod, s, 2, v, st)
		}},
		{"proxy_set_property", i32s(4), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			a, ok := args(mod, s, 0, 2)
			if !ok {
				return statusInvalidMemoryAccess
			}
			return h.ProxySetProperty(a[0], a[1])
		}},
		{"proxy_get_header_map_pairs", i32s(3), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			v, st := h.ProxyGetHeaderMapPairs(u32(s[0]))
			return m.result(mod, s, 1, v, st)
		}},
		{"proxy_set_header_map_pairs", i32s(3), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			pairs, ok := arg(mod, s, 1)
			if !ok {
				return statusInvalidMemoryAccess
			}
			return h.ProxySetHeaderMapPairs(u32(s[0]), pairs)
		}},
		{"proxy_get_header_map_value", i32s(5), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			key, ok := arg(mod, s, 1)
			if !ok {
				return statusInvalidMemoryAccess
			}
			v, st := h.ProxyGetHeaderMapValue(u32(s[0]), key)
			return m.result(mod, s, 3, v, st)
		}},
		{"proxy_add_header_map_value", i32s(5), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			a, ok := args(mod, s, 1, 2)
			if !ok {
				return statusInvalidMemoryAccess
			}
			return h.ProxyAddHeaderMapValue(u32(s[0]), a[0], a[1])
		}},
		{"proxy_replace_header_map_value", i32s(5), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			a, ok := args(mod, s, 1, 2)
			if !ok {
				return statusInvalidMemoryAccess
			}
			return h.ProxyReplaceHeaderMapValue(u32(s[0]), a[0], a[1])
		}},
		{"proxy_remove_header_map_value", i32s(3), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			key, ok := arg(mod, s, 1)
			if !ok {
				return statusInvalidMemoryAccess
			}
			return h.ProxyRemoveHeaderMapValue(u32(s[0]), key)
		}},
		{"proxy_get_header_map_size", i32s(2), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			// Envoy reports the sum of key and value lengths.
			v, st := h.ProxyGetHeaderMapPairs(u32(s[0]))
			if st != statusOK {
				return st
			}
			return putU32(mod, s[1], headerBytes(v))
		}},
		{"proxy_get_buffer_bytes", i32s(5), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			v, st := h.ProxyGetBufferBytes(u32(s[0]), u32(s[1]), u32(s[2]))
			return m.result(mod, s, 3, v, st)
		}},
		{"proxy_get_buffer_status", i32s(3), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			v, st := h.ProxyGetBufferBytes(u32(s[0]), 0, math.MaxUint32)
			if st != statusOK {
				return st
			}
			if st := putU32(mod, s[1], uint32(len(v))); st != statusOK {
				return st
			}
			return putU32(mod, s[2], 0) // flags: always 0, as Envoy writes them
		}},
		{"proxy_set_buffer_bytes", i32s(5), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			data, ok := arg(mod, s, 3)
			if !ok {
				return statusInvalidMemoryAccess
			}
			return h.ProxySetBufferBytes(u32(s[0]), u32(s[1]), u32(s[2]), data)
		}},
		{"proxy_continue_stream", i32s(1), func(_ api.Module, h sdk.ABI, s []uint64) uint32 {
			return h.ProxyContinueStream(u32(s[0]))
		}},
		{"proxy_close_stream", i32s(1), func(_ api.Module, h sdk.ABI, s []uint64) uint32 {
			return h.ProxyCloseStream(u32(s[0]))
		}},
		{"proxy_send_local_response", i32s(8), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			a, ok := args(mod, s, 1, 3)
			if !ok {
				return statusInvalidMemoryAccess
			}
			return h.ProxySendLocalResponse(u32(s[0]), a[0], a[1], a[2], int32(u32(s[7])))
		}},
		{"proxy_http_call", i32s(10), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			a, ok := args(mod, s, 0, 4)
			if !ok {
				return statusInvalidMemoryAccess
			}
			token, st := h.ProxyHttpCall(a[0], a[1], a[2], a[3], u32(s[8]), m)
			return idResult(mod, s, 9, token, st)
		}},
		{"proxy_grpc_call", i32s(12), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			a, ok := args(mod, s, 0, 5)
			if !ok {
				return statusInvalidMemoryAccess
			}
			token, st := h.ProxyGrpcCall(a[0], a[1], a[2], a[3], a[4], u32(s[10]), m)
			return idResult(mod, s, 11, token, st)
		}},
		{"proxy_grpc_stream", i32s(9), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			a, ok := args(mod, s, 0, 4)
			if !ok {
				return statusInvalidMemoryAccess
			}
			token, st := h.ProxyGrpcStream(a[0], a[1], a[2], a[3], m)
			return idResult(mod, s, 8, token, st)
		}},
		{"proxy_grpc_send", i32s(4), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			msg, ok := arg(mod, s, 1)
			if !ok {
				return statusInvalidMemoryAccess
			}
			return h.ProxyGrpcSend(u32(s[0]), msg, u32(s[3]) != 0)
		}},
		{"proxy_grpc_cancel", i32s(1), func(_ api.Module, h sdk.ABI, s []uint64) uint32 {
			return h.ProxyGrpcCancel(u32(s[0]))
		}},
		{"proxy_grpc_close", i32s(1), func(_ api.Module, h sdk.ABI, s []uint64) uint32 {
			return h.ProxyGrpcClose(u32(s[0]))
		}},
		{"proxy_get_status", i32s(3), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			code, msg, st := h.ProxyGetStatus()
			if st != statusOK {
				return st
			}
			if st := putU32(mod, s[0], code); st != statusOK {
				return st
			}
			return m.copyOut(mod, msg, s[1], s[2])
		}},
		{"proxy_get_shared_data", i32s(5), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			key, ok := arg(mod, s, 0)
			if !ok {
				return statusInvalidMemoryAccess
			}
			v, cas, st := h.ProxyGetSharedData(key)
			if st != statusOK {
				return st
			}
			if st := putU32(mod, s[4], cas); st != statusOK {
				return st
			}
			return m.copyOut(mod, v, s[2], s[3])
		}},
		{"proxy_set_shared_data", i32s(5), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			a, ok := args(mod, s, 0, 2)
			if !ok {
				return statusInvalidMemoryAccess
			}
			return h.ProxySetSharedData(a[0], a[1], u32(s[4]))
		}},
		{"proxy_register_shared_queue", i32s(3), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			name, ok := arg(mod, s, 0)
			if !ok {
				return statusInvalidMemoryAccess
			}
			id, st := h.ProxyRegisterSharedQueue(name)
			return idResult(mod, s, 2, id, st)
		}},
		{"proxy_resolve_shared_queue", i32s(5), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			a, ok := args(mod, s, 0, 2)
			if !ok {
				return statusInvalidMemoryAccess
			}
			id, st := h.ProxyResolveSharedQueue(a[0], a[1])
			return idResult(mod, s, 4, id, st)
		}},
		{"proxy_enqueue_shared_queue", i32s(3), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			data, ok := arg(mod, s, 1)
			if !ok {
				return statusInvalidMemoryAccess
			}
			return h.ProxyEnqueueSharedQueue(u32(s[0]), data)
		}},
		{"proxy_dequeue_shared_queue", i32s(3), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			v, st := h.ProxyDequeueSharedQueue(u32(s[0]))
			return m.result(mod, s, 1, v, st)
		}},
		{"proxy_define_metric", i32s(4), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			name, ok := arg(mod, s, 1)
			if !ok {
				return statusInvalidMemoryAccess
			}
			id, st := h.ProxyDefineMetric(u32(s[0]), name)
			return idResult(mod, s, 3, id, st)
		}},
		{"proxy_increment_metric", i32i64, func(_ api.Module, h sdk.ABI, s []uint64) uint32 {
			return h.ProxyIncrementMetric(u32(s[0]), int64(s[1]))
		}},
		{"proxy_record_metric", i32i64, func(_ api.Module, h sdk.ABI, s []uint64) uint32 {
			return h.ProxyRecordMetric(u32(s[0]), s[1])
		}},
		{"proxy_get_metric", i32s(2), func(mod api.Module, h sdk.ABI, s []uint64) uint32 {
			v, st := h.ProxyGetMetric(u32(s[0]))
			if st != statusOK {
				return st
			}
			if !mod.Memory().WriteUint64Le(u32(s[1]), v) {
				return statusInvalidMemoryAccess
			}
			return statusOK
		}},
		{"proxy_get_current_time_nanoseconds", i32s(1), func(mod api.Module, _ sdk.ABI, s []uint64) uint32 {
			if !mod.Memory().WriteUint64Le(u32(s[0]), uint64(time.Now().UnixNano())) {
				return statusInvalidMemoryAccess
			}
			return statusOK
		}},
	}
}

// headerBytes sums the key and value lengths of a header-pair encoded
// map.
func headerBytes(enc []byte) uint32 {
	if len(enc) < 4 {
		return 0
	}
	n := binary.LittleEndian.Uint32(enc)
	var total uint32
	for i := uint32(0); i < n && 4+8*i+8 <= uint32(len(enc)); i++ {
		total += binary.LittleEndian.Uint32(enc[4+8*i:]) + binary.LittleEndian.Uint32(enc[4+8*i+4:])
	}
	return total
}

var _ sdk.ABIEvents = (*module)(nil)
