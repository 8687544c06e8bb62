package wasm

import (
	"context"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// proxy_send_local_response(status, details_ptr, details_len, body_ptr,
// body_len, headers_ptr, headers_len, grpc_status) -> status.
//
// The reply is deferred until the guest call returns and the callback's
// result is forced to "stop" (Envoy's behaviour; answering inside the
// call re-entered the filter chain and crashed Envoy in the past). A
// second reply on the same stream is ignored, and still OK. Spaces in
// details become '_' so the value is a single token in access logs.
func proxySendLocalResponse(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_send_local_response")
	details, ok1 := readGuest(m, api.DecodeU32(stack[1]), api.DecodeU32(stack[2]))
	body, ok2 := readGuest(m, api.DecodeU32(stack[3]), api.DecodeU32(stack[4]))
	headers, ok3 := readGuest(m, api.DecodeU32(stack[5]), api.DecodeU32(stack[6]))
	if !ok1 || !ok2 || !ok3 {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	f := inst.effective
	if f == nil {
		// The root context has no stream to answer.
		setStatus(stack, statusBadArgument)
		return
	}
	if f.localReplySent || f.reply != nil {
		setStatus(stack, statusOK)
		return
	}
	f.reply = &localReply{
		status:  int(api.DecodeU32(stack[0])),
		body:    append([]byte(nil), body...),
		headers: parsePairs(headers),
		details: strings.ReplaceAll(string(details), " ", "_"),
	}
	if f.inCallback {
		f.stopNext = true
	}
	inst.queue(f)
	setStatus(stack, statusOK)
}

// streamAction implements proxy_continue_stream and proxy_close_stream:
// HTTP_REQUEST/HTTP_RESPONSE act on the effective stream after the call
// returns (a no-op from a root context, as in Envoy); DOWNSTREAM is a
// no-op for HTTP; UPSTREAM is UNIMPLEMENTED, as in Envoy.
func streamAction(ctx context.Context, stack []uint64, name string, closeStream bool) {
	inst := enter(ctx, name)
	t := api.DecodeU32(stack[0])
	if c := inst.effectiveConn; c != nil {
		setStatus(stack, c.streamAction(t, closeStream))
		return
	}
	switch t {
	case streamRequest, streamResponse:
		if f := inst.effective; f != nil {
			switch {
			case closeStream:
				f.reset = "wasm_close_stream"
			case t == streamRequest:
				f.continueReq = true
			default:
				f.continueResp = true
			}
			inst.queue(f)
		}
		setStatus(stack, statusOK)
	case streamDownstream:
		setStatus(stack, statusOK)
	case streamUpstream:
		setStatus(stack, statusUnimplemented)
	default:
		setStatus(stack, statusBadArgument)
	}
}

func proxyContinueStream(ctx context.Context, _ api.Module, stack []uint64) {
	streamAction(ctx, stack, "proxy_continue_stream", false)
}

func proxyCloseStream(ctx context.Context, _ api.Module, stack []uint64) {
	streamAction(ctx, stack, "proxy_close_stream", true)
}

// proxy_continue_request() (ABI 0.1.0) = proxy_continue_stream(HTTP_REQUEST).
func proxyContinueRequest(ctx context.Context, _ api.Module, stack []uint64) {
	stack[0] = streamRequest
	streamAction(ctx, stack, "proxy_continue_request", false)
}

// proxy_continue_response() (ABI 0.1.0) = proxy_continue_stream(HTTP_RESPONSE).
func proxyContinueResponse(ctx context.Context, _ api.Module, stack []uint64) {
	stack[0] = streamResponse
	streamAction(ctx, stack, "proxy_continue_response", false)
}

// proxy_clear_route_cache() (ABI 0.1.0) -> OK: the stream's route is
// matched again, as the clear_route_cache foreign function.
func proxyClearRouteCache(ctx context.Context, _ api.Module, stack []uint64) {
	enter(ctx, "proxy_clear_route_cache").clearRouteCache()
	setStatus(stack, statusOK)
}

// proxy_get_configuration(out_ptr, out_len) (ABI 0.1.0): the plugin
// configuration inside on_configure, the VM configuration otherwise.
func proxyGetConfiguration(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_get_configuration")
	data := inst.vm.vmConfig
	if inst.configuring {
		data = inst.plugin.pluginConfig
	}
	setStatus(stack, copyOut(ctx, inst, m, data, api.DecodeU32(stack[0]), api.DecodeU32(stack[1])))
}

// proxy_set_effective_context(context_id) -> status: later calls in the
// current callback act on that context (the root or a live stream of this
// instance); BAD_ARGUMENT for an unknown id.
func proxySetEffectiveContext(ctx context.Context, _ api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_set_effective_context")
	id := api.DecodeU32(stack[0])
	if rc := inst.roots[id]; rc != nil {
		inst.effective, inst.effectiveID, inst.effectiveConn = nil, id, nil
		inst.root, inst.plugin = rc, rc.plugin
		setStatus(stack, statusOK)
		return
	}
	f := inst.streams.get(id)
	if f == nil {
		if c := inst.conns[id]; c != nil { // a TCP connection
			inst.effective, inst.effectiveID, inst.effectiveConn = nil, id, c
			inst.root, inst.plugin = c.root, c.plugin
			setStatus(stack, statusOK)
			return
		}
		setStatus(stack, statusBadArgument)
		return
	}
	inst.effective, inst.effectiveID, inst.effectiveConn = f, id, nil
	inst.root, inst.plugin = f.root, f.plugin
	setStatus(stack, statusOK)
}

// proxy_set_tick_period_milliseconds(period) -> OK. It applies to the
// instance's root context even when called from a stream; 0 stops ticks.
func proxySetTickPeriod(ctx context.Context, _ api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_set_tick_period_milliseconds")
	if inst.root != nil {
		inst.root.setTickPeriod(time.Duration(api.DecodeU32(stack[0])) * time.Millisecond)
	}
	setStatus(stack, statusOK)
}

// proxy_get_current_time_nanoseconds(out_u64) -> status: wall clock.
func proxyGetCurrentTime(ctx context.Context, m api.Module, stack []uint64) {
	enter(ctx, "proxy_get_current_time_nanoseconds")
	setStatus(stack, putU64(m, api.DecodeU32(stack[0]), uint64(time.Now().UnixNano())))
}

// proxy_done() -> OK / NOT_FOUND: a root context whose proxy_on_done
// returned false at shutdown is deleted (proxy_on_delete) once the
// current call returns; any other context is not pending finalisation
// (NOT_FOUND), as in Envoy.
func proxyDone(ctx context.Context, _ api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_done")
	rc := inst.root
	if rc == nil || inst.effective != nil || !rc.doneWait || rc.deleted {
		setStatus(stack, statusNotFound)
		return
	}
	rc.doneWait = false
	inst.afterCall = append(inst.afterCall, func() { inst.deleteRoot(rc) })
	setStatus(stack, statusOK)
}

func streamFunctions() []hostFunc {
	return []hostFunc{
		{"proxy_send_local_response", ints(8), oneI32, proxySendLocalResponse},
		{"proxy_continue_stream", ints(1), oneI32, proxyContinueStream},
		{"proxy_close_stream", ints(1), oneI32, proxyCloseStream},
		{"proxy_continue_request", nil, oneI32, proxyContinueRequest},
		{"proxy_continue_response", nil, oneI32, proxyContinueResponse},
		{"proxy_clear_route_cache", nil, oneI32, proxyClearRouteCache},
		{"proxy_get_configuration", ints(2), oneI32, proxyGetConfiguration},
		{"proxy_set_effective_context", ints(1), oneI32, proxySetEffectiveContext},
		{"proxy_set_tick_period_milliseconds", ints(1), oneI32, proxySetTickPeriod},
		{"proxy_get_current_time_nanoseconds", ints(1), oneI32, proxyGetCurrentTime},
		{"proxy_done", nil, oneI32, proxyDone},
	}
}
