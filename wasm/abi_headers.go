package wasm

import (
	"context"

	"github.com/tetratelabs/wazero/api"

	"github.com/wasmproxy/wasmproxy/filter"
)

// headerMapFor returns map t for the current call, or nil when no stream
// callback of the effective context is running or the map is unavailable
// now. Map types 4-7 (gRPC metadata, http_call response) exist only
// during their callout callback.
func (inst *instance) headerMapFor(t uint32, write bool) *filter.HeaderMap {
	if t >= mapGrpcInitialMetadata {
		// Callout maps: only inside their callback (also after switching
		// to a stream with proxy_set_effective_context, as Envoy keeps the
		// response reachable).
		return inst.callout.maps[t]
	}
	f := inst.effective
	if f == nil {
		return nil
	}
	if !f.inCallback {
		// Reached through proxy_set_effective_context from a callout or a
		// tick: the headers a stream holds (paused by this filter) stay
		// readable and writable, as in Envoy; the stream goroutine does
		// not touch them until the filter continues.
		switch {
		case t == mapRequestHeaders && f.requestHeld:
			return f.cb.RequestHeaders()
		case t == mapResponseHeaders && f.responseHeld:
			return f.cb.ResponseHeaders()
		}
		return nil
	}
	return f.headerMap(t, write)
}

// lowerKey copies key into the instance scratch buffer, lower-cased, so
// lookups need neither an allocation nor the guest memory view (which a
// later allocator call could invalidate).
func (inst *instance) lowerKey(key []byte) []byte {
	b := inst.scratch[:0]
	for _, c := range key {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	inst.scratch = b
	return b
}

// proxy_get_header_map_pairs(map, out_ptr, out_len) -> status. An
// unavailable map reads as empty (OK, 0/0), as in Envoy.
func proxyGetHeaderMapPairs(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_get_header_map_pairs")
	t := api.DecodeU32(stack[0])
	if t > mapMax {
		setStatus(stack, statusBadArgument)
		return
	}
	hm := inst.headerMapFor(t, false)
	if hm == nil || hm.Len() == 0 {
		setStatus(stack, copyOut(ctx, inst, m, "", api.DecodeU32(stack[1]), api.DecodeU32(stack[2])))
		return
	}
	// Serialized only now that the guest asked, into a reused buffer.
	inst.scratch = appendPairs(inst.scratch[:0], hm.Pairs())
	setStatus(stack, copyOut(ctx, inst, m, inst.scratch, api.DecodeU32(stack[1]), api.DecodeU32(stack[2])))
}

// proxy_set_header_map_pairs(map, ptr, len) -> status. A malformed buffer
// parses as an empty list and so clears the map (Envoy's behaviour).
func proxySetHeaderMapPairs(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_set_header_map_pairs")
	t := api.DecodeU32(stack[0])
	if t > mapMax {
		setStatus(stack, statusBadArgument)
		return
	}
	data, ok := readGuest(m, api.DecodeU32(stack[1]), api.DecodeU32(stack[2]))
	if !ok {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	hm := inst.headerMapFor(t, true)
	if hm == nil {
		setStatus(stack, statusBadArgument)
		return
	}
	hm.Replace(parsePairs(data))
	if t == mapRequestHeaders {
		inst.clearRouteCache() // as Envoy's Wasm context on every request header edit
	}
	setStatus(stack, statusOK)
}

// proxy_get_header_map_value(map, key_ptr, key_len, out_ptr, out_len) ->
// status: the first value of the lower-cased key. Missing key: NOT_FOUND,
// or OK with "" for ABI 0.1.0. Unavailable map: BAD_ARGUMENT, except in
// the access-log phase where it reads as a missing key.
func proxyGetHeaderMapValue(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_get_header_map_value")
	t := api.DecodeU32(stack[0])
	if t > mapMax {
		setStatus(stack, statusBadArgument)
		return
	}
	key, ok := readGuest(m, api.DecodeU32(stack[1]), api.DecodeU32(stack[2]))
	if !ok {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	outPtr, outLen := api.DecodeU32(stack[3]), api.DecodeU32(stack[4])
	hm := inst.headerMapFor(t, false)
	if hm == nil {
		if f := inst.effective; f == nil || f.phase != phaseLog {
			setStatus(stack, statusBadArgument)
			return
		}
	} else {
		k := inst.lowerKey(key)
		for _, p := range hm.Pairs() {
			if p.Key == string(k) {
				setStatus(stack, copyOut(ctx, inst, m, p.Value, outPtr, outLen))
				return
			}
		}
	}
	if inst.vm.abi == abi010 {
		setStatus(stack, copyOut(ctx, inst, m, "", outPtr, outLen))
		return
	}
	setStatus(stack, statusNotFound)
}

// headerEdit implements add (append), replace (set-or-add) and remove.
func headerEdit(ctx context.Context, m api.Module, stack []uint64, name string, op func(hm *filter.HeaderMap, key, value string)) {
	inst := enter(ctx, name)
	t := api.DecodeU32(stack[0])
	if t > mapMax {
		setStatus(stack, statusBadArgument)
		return
	}
	key, ok := readGuest(m, api.DecodeU32(stack[1]), api.DecodeU32(stack[2]))
	if !ok {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	var value []byte
	if len(stack) >= 5 {
		if value, ok = readGuest(m, api.DecodeU32(stack[3]), api.DecodeU32(stack[4])); !ok {
			setStatus(stack, statusInvalidMemoryAccess)
			return
		}
	}
	hm := inst.headerMapFor(t, true)
	if hm == nil {
		setStatus(stack, statusBadArgument)
		return
	}
	op(hm, string(inst.lowerKey(key)), string(value))
	if t == mapRequestHeaders {
		inst.clearRouteCache() // as Envoy's Wasm context on every request header edit
	}
	setStatus(stack, statusOK)
}

func proxyAddHeaderMapValue(ctx context.Context, m api.Module, stack []uint64) {
	headerEdit(ctx, m, stack, "proxy_add_header_map_value", (*filter.HeaderMap).Add)
}

func proxyReplaceHeaderMapValue(ctx context.Context, m api.Module, stack []uint64) {
	headerEdit(ctx, m, stack, "proxy_replace_header_map_value", (*filter.HeaderMap).Set)
}

func proxyRemoveHeaderMapValue(ctx context.Context, m api.Module, stack []uint64) {
	headerEdit(ctx, m, stack[:3], "proxy_remove_header_map_value", func(hm *filter.HeaderMap, key, _ string) { hm.Del(key) })
}

// proxy_get_header_map_size(map, out_size) -> status: Envoy reports the
// map's byte size (sum of key and value lengths), not the serialized size.
func proxyGetHeaderMapSize(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_get_header_map_size")
	t := api.DecodeU32(stack[0])
	if t > mapMax {
		setStatus(stack, statusBadArgument)
		return
	}
	hm := inst.headerMapFor(t, false)
	if hm == nil {
		setStatus(stack, statusBadArgument)
		return
	}
	setStatus(stack, putU32(m, api.DecodeU32(stack[1]), uint32(hm.ByteSize())))
}

func headerFunctions() []hostFunc {
	return []hostFunc{
		{"proxy_get_header_map_pairs", ints(3), oneI32, proxyGetHeaderMapPairs},
		{"proxy_set_header_map_pairs", ints(3), oneI32, proxySetHeaderMapPairs},
		{"proxy_get_header_map_value", ints(5), oneI32, proxyGetHeaderMapValue},
		{"proxy_add_header_map_value", ints(5), oneI32, proxyAddHeaderMapValue},
		{"proxy_replace_header_map_value", ints(5), oneI32, proxyReplaceHeaderMapValue},
		{"proxy_remove_header_map_value", ints(3), oneI32, proxyRemoveHeaderMapValue},
		{"proxy_get_header_map_size", ints(2), oneI32, proxyGetHeaderMapSize},
	}
}
