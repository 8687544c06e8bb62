package wasm

import (
	"context"

	"github.com/tetratelabs/wazero/api"

	"github.com/wasmproxy/wasmproxy/filter"
)

// bufferFor returns buffer type t as available to the current call: an
// HTTP body (writable) only inside that side's body callback of the
// effective stream; the VM configuration at any time; the plugin
// configuration only inside on_configure/validate_configuration; the
// http_call body (4), gRPC message (5) and foreign-function / DNS data (8)
// inside their callbacks, read-only.
func (inst *instance) bufferFor(t uint32) (body *filter.Buffer, data []byte, ok bool) {
	switch t {
	case bufferRequestBody, bufferResponseBody:
		f := inst.effective
		want := phaseRequestBody
		if t == bufferResponseBody {
			want = phaseResponseBody
		}
		if f != nil && f.inCallback && f.phase == want && f.body != nil {
			return f.body, f.body.Bytes, true
		}
	case bufferDownstreamData, bufferUpstreamData:
		return inst.connBuffer(t)
	case bufferVMConfiguration:
		return nil, inst.vm.vmConfig, true
	case bufferPluginConfiguration:
		if inst.configuring {
			return nil, inst.plugin.pluginConfig, true
		}
	case bufferHTTPCallBody, bufferGrpcMessage, bufferForeignFunction:
		if inst.callout.bufType == int(t) {
			return nil, inst.callout.buf, true
		}
	}
	return nil, nil, false
}

// proxy_get_buffer_bytes(type, start, max_size, out_ptr, out_len) ->
// status. The length is clamped to the buffer's end; a start past the end
// gives OK with 0/0.
func proxyGetBufferBytes(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_get_buffer_bytes")
	t := api.DecodeU32(stack[0])
	if t > bufferMax {
		setStatus(stack, statusBadArgument)
		return
	}
	_, data, ok := inst.bufferFor(t)
	if !ok {
		setStatus(stack, statusNotFound)
		return
	}
	start, length := uint64(api.DecodeU32(stack[1])), uint64(api.DecodeU32(stack[2]))
	size := uint64(len(data))
	if start > size {
		start = size
	}
	if start+length > size {
		length = size - start
	}
	setStatus(stack, copyOut(ctx, inst, m, data[start:start+length], api.DecodeU32(stack[3]), api.DecodeU32(stack[4])))
}

// proxy_get_buffer_status(type, out_size, out_flags) -> status. Flags are
// always 0, as Envoy writes them.
func proxyGetBufferStatus(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_get_buffer_status")
	t := api.DecodeU32(stack[0])
	if t > bufferMax {
		setStatus(stack, statusBadArgument)
		return
	}
	_, data, ok := inst.bufferFor(t)
	if !ok {
		setStatus(stack, statusNotFound)
		return
	}
	sizePtr, flagsPtr := api.DecodeU32(stack[1]), api.DecodeU32(stack[2])
	if !writableWord(m, sizePtr) || !writableWord(m, flagsPtr) {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	putU32(m, sizePtr, uint32(len(data)))
	putU32(m, flagsPtr, 0)
	setStatus(stack, statusOK)
}

// proxy_set_buffer_bytes(type, start, size, ptr, len) -> status, with
// Envoy's rules: start 0 drains size bytes and prepends the data (so
// start=0,size=len replaces the whole body); start at or past the end
// appends; anything else, and read-only buffers, are BAD_ARGUMENT.
func proxySetBufferBytes(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_set_buffer_bytes")
	t := api.DecodeU32(stack[0])
	if t > bufferMax {
		setStatus(stack, statusBadArgument)
		return
	}
	body, _, ok := inst.bufferFor(t)
	if !ok {
		setStatus(stack, statusNotFound)
		return
	}
	data, ok := readGuest(m, api.DecodeU32(stack[3]), api.DecodeU32(stack[4]))
	if !ok {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	if body == nil {
		setStatus(stack, statusBadArgument)
		return
	}
	start, size := uint64(api.DecodeU32(stack[1])), uint64(api.DecodeU32(stack[2]))
	cur := uint64(len(body.Bytes))
	switch {
	case start == 0 && (t == bufferDownstreamData || t == bufferUpstreamData) && len(data)+int(cur-min(size, cur)) <= cap(body.Bytes):
		// TCP data: the spare capacity of the proxy's buffer is free
		// (filter.NetworkFilter), so a prepend moves the data in place
		// instead of allocating a copy of every chunk.
		rest := body.Bytes[min(size, cur):]
		out := body.Bytes[:len(data)+len(rest)]
		copy(out[len(data):], rest)
		copy(out, data)
		body.Bytes = out
	case start == 0:
		rest := body.Bytes[min(size, cur):]
		out := make([]byte, len(data)+len(rest))
		copy(out, data)
		copy(out[len(data):], rest)
		body.Bytes = out
	case start >= cur:
		body.Bytes = append(body.Bytes, data...)
	default:
		setStatus(stack, statusBadArgument)
		return
	}
	setStatus(stack, statusOK)
}

func bufferFunctions() []hostFunc {
	return []hostFunc{
		{"proxy_get_buffer_bytes", ints(5), oneI32, proxyGetBufferBytes},
		{"proxy_get_buffer_status", ints(3), oneI32, proxyGetBufferStatus},
		{"proxy_set_buffer_bytes", ints(5), oneI32, proxySetBufferBytes},
	}
}
