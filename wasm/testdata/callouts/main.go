// Command callouts is a Proxy-Wasm test plugin, written against the raw
// ABI, for the host functions that reach outside a stream: http_call,
// gRPC, shared queues, foreign functions, properties set by the plugin,
// DNS and proxy_done. The plugin configuration selects the mode; every
// result is logged so tests can check status codes.
package main

import (
	"encoding/hex"
	"runtime"
	"strconv"
	"strings"
	"unsafe"
)

func main() {}

var (
	mode    string
	rootID  uint32
	queueID uint32
	// streamOf maps a callout token to the stream that started it.
	streamOf = map[uint32]uint32{}
	ticks    int
)

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func resetAllocations() { allocations = allocations[:0] }

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

func u32ptr(v *uint32) uint32 { return uint32(uintptr(unsafe.Pointer(v))) }

func report(name string, st uint32) { info(name + " " + itoa(st)) }

//go:wasmexport proxy_on_context_create
func onContextCreate(ctx, parent uint32) {}

//go:wasmexport proxy_on_configure
func onConfigure(root, size uint32) uint32 {
	resetAllocations()
	cfg, _ := getBuffer(7, 0, size)
	mode = string(cfg)
	rootID = root
	rid, _ := getProperty("plugin_root_id")
	info("configure " + itoa(root) + " " + mode + " root_id=" + string(rid))
	switch mode {
	case "queue":
		report("register", proxyRegisterSharedQueue(sptr("q"), 1, u32ptr(&queueID)))
		var again uint32
		proxyRegisterSharedQueue(sptr("q"), 1, u32ptr(&again))
		info("same_id " + strconv.FormatBool(again == queueID))
	case "done", "tick_call":
		proxySetTickPeriod(10)
	case "grpc_background":
		proxySetTickPeriod(10)
	}
	return 1
}

//go:wasmexport proxy_on_tick
func onTick(root uint32) {
	resetAllocations()
	ticks++
	switch mode {
	case "done":
		if ticks == 1 {
			report("tick_done", proxyDone())
		}
	case "tick_call":
		proxySetTickPeriod(0)
		httpCall(root, "auth", "/tick", "")
	}
}

//go:wasmexport proxy_on_done
func onDone(ctx uint32) uint32 {
	info("done " + itoa(ctx))
	if mode == "done" && ctx == rootID {
		proxySetTickPeriod(10)
		ticks = 0
		return 0
	}
	return 1
}

//go:wasmexport proxy_on_delete
func onDelete(ctx uint32) { info("delete " + itoa(ctx)) }

func httpCall(ctx uint32, cluster, path, body string) uint32 {
	hdrs := encodePairs([]pair{{":method", "POST"}, {":path", path}, {":authority", "auth.local"}, {"x-from", "plugin"}})
	trls := encodePairs([]pair{{"x-trailer", "t"}})
	var token uint32
	st := proxyHTTPCall(sptr(cluster), uint32(len(cluster)), ptr(hdrs), uint32(len(hdrs)), sptr(body), uint32(len(body)), ptr(trls), uint32(len(trls)), 2000, u32ptr(&token))
	runtime.KeepAlive(hdrs)
	runtime.KeepAlive(trls)
	report("http_call", st)
	if st == 0 {
		streamOf[token] = ctx
		info("token_low_bits " + itoa(token&3))
	}
	return st
}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(ctx, n, eos uint32) uint32 {
	resetAllocations()
	switch mode {
	case "http_call":
		cluster, st := getHeader(0, "x-cluster")
		if st != 0 {
			cluster = "auth"
		}
		path, _ := getHeader(0, ":path")
		if httpCall(ctx, cluster, path, "hello") != 0 {
			return 0
		}
		return 1
	case "http_call_bad":
		badHTTPCalls()
	case "grpc":
		grpcCalls(ctx)
		return 1
	case "queue":
		var id uint32
		report("resolve", proxyResolveSharedQueue(0, 0, sptr("q"), 1, u32ptr(&id)))
		report("resolve_missing", proxyResolveSharedQueue(0, 0, sptr("nope"), 4, u32ptr(&id)))
		report("resolve_other_vm", proxyResolveSharedQueue(sptr("other"), 5, sptr("q"), 1, u32ptr(&id)))
		msg := "item-" + itoa(ctx)
		report("enqueue", proxyEnqueueSharedQueue(id, sptr(msg), uint32(len(msg))))
		report("enqueue_missing", proxyEnqueueSharedQueue(9999, sptr(msg), uint32(len(msg))))
		p, l := outPtrs()
		report("dequeue_missing", proxyDequeueSharedQueue(9999, p, l))
	case "foreign":
		foreign()
	case "hostile":
		hostile()
	case "dns":
		var token uint32
		report("resolve_dns", envoyResolveDNS(sptr("localhost"), 9, u32ptr(&token)))
	case "properties":
		propertiesMode()
	}
	return 0
}

func badHTTPCalls() {
	var token uint32
	call := func(name, cluster string, pairs []pair) {
		h := encodePairs(pairs)
		report(name, proxyHTTPCall(sptr(cluster), uint32(len(cluster)), ptr(h), uint32(len(h)), 0, 0, 0, 0, 100, u32ptr(&token)))
		runtime.KeepAlive(h)
	}
	call("no_path", "auth", []pair{{":method", "GET"}, {":authority", "a"}})
	call("no_method", "auth", []pair{{":path", "/"}, {":authority", "a"}})
	call("no_authority", "auth", []pair{{":method", "GET"}, {":path", "/"}})
	call("host_as_authority", "auth", []pair{{":method", "GET"}, {":path", "/"}, {"host", "a"}})
	call("unknown_cluster", "nope", []pair{{":method", "GET"}, {":path", "/"}, {":authority", "a"}})
}

//go:wasmexport proxy_on_http_call_response
func onHTTPCallResponse(root, token, nh, nb, nt uint32) {
	resetAllocations()
	info("http_response root=" + itoa(root) + " headers=" + itoa(nh) + " body=" + itoa(nb) + " trailers=" + itoa(nt))
	var code uint32
	p, l := outPtrs()
	proxyGetStatus(u32ptr(&code), p, l)
	info("status " + itoa(code) + " " + string(result()))
	status, _ := getHeader(6, ":status")
	body, _ := getBuffer(4, 0, nb)
	tr, _ := getHeader(7, "x-resp-trailer")
	info("response " + status + " " + string(body) + " trailer=" + tr)
	_, st := getBuffer(0, 0, 10)
	report("request_body_in_callout", st)
	ctx := streamOf[token]
	delete(streamOf, token)
	if ctx == 0 || ctx == root {
		return
	}
	report("effective", proxySetEffectiveContext(ctx))
	// The response stays reachable after switching to the stream.
	status2, _ := getHeader(6, ":status")
	info("after_switch " + status2)
	if status != "200" {
		msg := "denied: " + string(body)
		report("local_reply", proxySendLocalResponse(403, sptr("auth denied"), 11, sptr(msg), uint32(len(msg)), 0, 0, -1))
		return
	}
	report("add_header", addHeader(0, "x-auth", string(body)))
	report("continue", proxyContinueStream(0))
}

// --- gRPC ---------------------------------------------------------------

func grpcCalls(ctx uint32) {
	up, _ := getHeader(0, "x-grpc-upstream")
	what, _ := getHeader(0, "x-grpc")
	svc, meth := "grpc.health.v1.Health", "Check"
	md := encodePairs([]pair{{"x-md", "v"}})
	var token uint32
	switch what {
	case "call":
		// HealthCheckRequest{service: "ok"}
		msg := []byte{0x0a, 0x02, 'o', 'k'}
		st := proxyGrpcCall(sptr(up), uint32(len(up)), sptr(svc), uint32(len(svc)), sptr(meth), uint32(len(meth)), ptr(md), uint32(len(md)), ptr(msg), uint32(len(msg)), 5000, u32ptr(&token))
		report("grpc_call", st)
		info("grpc_token_bits " + itoa(token&3))
		report("grpc_send_on_call", proxyGrpcSend(token, 0, 0, 0))
		runtime.KeepAlive(msg)
	case "unknown":
		msg := []byte{0x0a, 0x07, 'u', 'n', 'k', 'n', 'o', 'w', 'n'}
		report("grpc_call", proxyGrpcCall(sptr(up), uint32(len(up)), sptr(svc), uint32(len(svc)), sptr(meth), uint32(len(meth)), 0, 0, ptr(msg), uint32(len(msg)), 5000, u32ptr(&token)))
	case "stream":
		meth = "Watch"
		st := proxyGrpcStream(sptr(up), uint32(len(up)), sptr(svc), uint32(len(svc)), sptr(meth), uint32(len(meth)), ptr(md), uint32(len(md)), u32ptr(&token))
		report("grpc_stream", st)
		info("grpc_token_bits " + itoa(token&3))
		msg := []byte{0x0a, 0x02, 'o', 'k'}
		report("grpc_send", proxyGrpcSend(token, ptr(msg), uint32(len(msg)), 1))
		report("grpc_send_after_end", proxyGrpcSend(token, ptr(msg), uint32(len(msg)), 0))
		runtime.KeepAlive(msg)
	case "cancel":
		msg := []byte{0x0a, 0x04, 's', 'l', 'o', 'w'}
		proxyGrpcCall(sptr(up), uint32(len(up)), sptr(svc), uint32(len(svc)), sptr(meth), uint32(len(meth)), 0, 0, ptr(msg), uint32(len(msg)), 5000, u32ptr(&token))
		report("grpc_cancel", proxyGrpcCancel(token))
		report("grpc_cancel_again", proxyGrpcCancel(token))
		report("grpc_close_unknown", proxyGrpcClose(token))
		report("grpc_cancel_http_token", proxyGrpcCancel(4))
		runtime.KeepAlive(msg)
	case "bad":
		report("grpc_unknown_cluster", proxyGrpcCall(sptr("nope"), 4, sptr(svc), uint32(len(svc)), sptr(meth), uint32(len(meth)), 0, 0, 0, 0, 100, u32ptr(&token)))
		report("grpc_send_unknown", proxyGrpcSend(4*77+2, 0, 0, 0))
		report("grpc_send_not_stream", proxyGrpcSend(4*77+1, 0, 0, 0))
	}
	runtime.KeepAlive(md)
	streamOf[token] = ctx
}

//go:wasmexport proxy_on_grpc_receive_initial_metadata
func onGrpcInitialMetadata(root, token, n uint32) {
	resetAllocations()
	p, l := outPtrs()
	proxyGetHeaderMapPairs(4, p, l)
	var keys []string
	for _, kv := range decodePairs(result()) {
		keys = append(keys, kv.key)
	}
	ct, _ := getHeader(4, "content-type")
	info("grpc_initial_metadata " + strconv.FormatBool(n > 0) + " content-type=" + ct)
}

//go:wasmexport proxy_on_grpc_receive
func onGrpcReceive(root, token, size uint32) {
	resetAllocations()
	msg, _ := getBuffer(5, 0, size)
	info("grpc_receive " + hex.EncodeToString(msg))
	if strings.HasSuffix(itoa(token&3), "2") {
		// A stream: cancel after the first message.
		report("grpc_stream_cancel", proxyGrpcCancel(token))
		finishStream(root, token, "stream_done")
		return
	}
	// A unary call's success is reported by this callback alone.
	finishStream(root, token, "grpc_0")
}

//go:wasmexport proxy_on_grpc_receive_trailing_metadata
func onGrpcTrailingMetadata(root, token, n uint32) {
	resetAllocations()
	st, _ := getHeader(5, "grpc-status")
	info("grpc_trailing_metadata grpc-status=" + st)
}

//go:wasmexport proxy_on_grpc_close
func onGrpcClose(root, token, code uint32) {
	resetAllocations()
	var c uint32
	p, l := outPtrs()
	proxyGetStatus(u32ptr(&c), p, l)
	info("grpc_close " + itoa(code) + " " + itoa(c) + " " + string(result()))
	finishStream(root, token, "grpc_"+itoa(code))
}

func finishStream(root, token uint32, value string) {
	ctx := streamOf[token]
	delete(streamOf, token)
	if ctx == 0 {
		return
	}
	if proxySetEffectiveContext(ctx) != 0 {
		return
	}
	addHeader(0, "x-grpc-result", value)
	proxyContinueStream(0)
}

// --- queues ---------------------------------------------------------------

//go:wasmexport proxy_on_queue_ready
func onQueueReady(root, id uint32) {
	resetAllocations()
	p, l := outPtrs()
	st := proxyDequeueSharedQueue(id, p, l)
	info("queue_ready " + itoa(root) + " " + strconv.FormatBool(id == queueID) + " " + itoa(st) + " " + string(result()))
	report("dequeue_empty", proxyDequeueSharedQueue(id, p, l))
}

// --- foreign functions and properties -----------------------------------

func callForeign(name string, args []byte) ([]byte, uint32) {
	p, l := outPtrs()
	out[0], out[1] = 0, 0
	st := proxyCallForeignFunction(sptr(name), uint32(len(name)), ptr(args), uint32(len(args)), p, l)
	runtime.KeepAlive(args)
	if st != 0 {
		return nil, st
	}
	return result(), st
}

// protoString is field num as a length-delimited protobuf field.
func protoString(num byte, s string) []byte {
	return append([]byte{num<<3 | 2, byte(len(s))}, s...)
}

func foreign() {
	text := strings.Repeat("hello wasm ", 20)
	z, st := callForeign("compress", []byte(text))
	report("compress", st)
	info("compressed_smaller " + strconv.FormatBool(len(z) > 0 && len(z) < len(text)))
	back, st := callForeign("uncompress", z)
	report("uncompress", st)
	info("roundtrip " + strconv.FormatBool(string(back) == text))
	_, st = callForeign("uncompress", []byte("not zlib"))
	report("uncompress_bad", st)
	_, st = callForeign("no_such_function", nil)
	report("unknown_function", st)
	_, st = callForeign("clear_route_cache", nil)
	report("clear_route_cache", st)
	// DeclarePropertyArguments{name: "ro", readonly: true}
	decl := append(protoString(1, "ro"), 0x10, 1)
	_, st = callForeign("declare_property", decl)
	report("declare", st)
	_, st = callForeign("declare_property", decl)
	report("declare_again", st)
	report("set_ro", proxySetProperty(sptr("ro"), 2, sptr("v1"), 2))
	report("set_ro_again", proxySetProperty(sptr("ro"), 2, sptr("v2"), 2))
	v, st := getProperty("ro")
	info("get_ro " + itoa(st) + " " + string(v))
	report("set_rw", proxySetProperty(sptr("my.prop"), 7, sptr("a"), 1))
	report("set_rw_again", proxySetProperty(sptr("my.prop"), 7, sptr("b"), 1))
	v, st = getProperty("my.prop")
	info("get_rw " + itoa(st) + " " + string(v))
	v, st = getProperty("filter_state\x00wasm.my.prop")
	info("get_filter_state " + itoa(st) + " " + string(v))
	fs := append(protoString(1, "my.key"), protoString(2, "fsv")...)
	_, st = callForeign("set_envoy_filter_state", fs)
	report("set_envoy_filter_state", st)
	v, st = getProperty("filter_state\x00my.key")
	info("get_envoy_filter_state " + itoa(st) + " " + string(v))
	// Discarded result: out pointer 0.
	report("discard_result", proxyCallForeignFunction(sptr("compress"), 8, sptr("x"), 1, 0, 0))
}

func propertiesMode() {
	for _, path := range []string{
		"xds\x00route_name", "route_name", "xds\x00cluster_name", "cluster_name",
		"xds\x00virtual_host_name", "xds\x00listener_direction",
		"xds\x00route_metadata\x00filter_metadata\x00test\x00team",
		"route_metadata\x00filter_metadata\x00test\x00team",
		"xds\x00cluster_metadata\x00filter_metadata\x00test\x00tier",
		"cluster_metadata\x00filter_metadata\x00test\x00tier",
		"xds\x00listener_metadata\x00filter_metadata\x00test\x00zone",
		"listener_metadata\x00filter_metadata\x00test\x00zone",
		"xds\x00node\x00id", "node\x00id", "xds\x00node\x00metadata\x00region",
		"plugin_vm_id", "connection\x00mtls", "request\x00protocol", "source\x00port",
		"xds\x00route_metadata\x00filter_metadata\x00test\x00weight",
	} {
		v, st := getProperty(path)
		info("property " + strings.ReplaceAll(path, "\x00", ".") + " " + itoa(st) + " " + hex.EncodeToString(v))
	}
}

// --- DNS ------------------------------------------------------------------

//go:wasmexport envoy_on_resolve_dns
func onResolveDNS(root, token, size uint32) {
	resetAllocations()
	data, _ := getBuffer(8, 0, size)
	ok := size > 4 && strings.Contains(string(data), "127.0.0.1") || strings.Contains(string(data), "::1")
	info("dns " + itoa(token) + " " + strconv.FormatBool(ok))
}

// --- bad input ------------------------------------------------------------

func hostile() {
	const bad = 0xFFFFFFF0
	p, l := outPtrs()
	var x uint32
	xp := u32ptr(&x)
	h := encodePairs([]pair{{":method", "GET"}, {":path", "/"}, {":authority", "a"}})
	report("http_call_upstream", proxyHTTPCall(bad, 4, ptr(h), uint32(len(h)), 0, 0, 0, 0, 0, xp))
	report("http_call_headers", proxyHTTPCall(sptr("auth"), 4, bad, 40, 0, 0, 0, 0, 0, xp))
	report("http_call_body", proxyHTTPCall(sptr("auth"), 4, ptr(h), uint32(len(h)), bad, 40, 0, 0, 0, xp))
	report("http_call_trailers", proxyHTTPCall(sptr("auth"), 4, ptr(h), uint32(len(h)), 0, 0, bad, 40, 0, xp))
	report("http_call_token", proxyHTTPCall(sptr("auth"), 4, ptr(h), uint32(len(h)), 0, 0, 0, 0, 0, bad))
	report("get_status", proxyGetStatus(bad, p, l))
	report("grpc_call", proxyGrpcCall(bad, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, xp))
	report("grpc_call_msg", proxyGrpcCall(sptr("grpc"), 4, 0, 0, 0, 0, 0, 0, bad, 10, 0, xp))
	report("grpc_call_token", proxyGrpcCall(sptr("grpc"), 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, bad))
	report("grpc_stream", proxyGrpcStream(sptr("grpc"), 4, bad, 4, 0, 0, 0, 0, xp))
	report("grpc_send", proxyGrpcSend(6, bad, 10, 0))
	report("register_queue", proxyRegisterSharedQueue(bad, 3, xp))
	report("register_queue_out", proxyRegisterSharedQueue(sptr("q"), 1, bad))
	report("resolve_queue", proxyResolveSharedQueue(bad, 3, sptr("q"), 1, xp))
	report("enqueue", proxyEnqueueSharedQueue(1, bad, 3))
	report("dequeue_out", proxyDequeueSharedQueue(1, bad, l))
	report("foreign_name", proxyCallForeignFunction(bad, 3, 0, 0, p, l))
	report("foreign_args", proxyCallForeignFunction(sptr("compress"), 8, bad, 3, p, l))
	report("foreign_out", proxyCallForeignFunction(sptr("compress"), 8, sptr("x"), 1, bad, l))
	report("set_property_path", proxySetProperty(bad, 3, sptr("x"), 1))
	report("set_property_value", proxySetProperty(sptr("x"), 1, bad, 3))
	report("resolve_dns", envoyResolveDNS(bad, 3, xp))
	report("map_type_8", proxyGetHeaderMapPairs(8, p, l))
	report("map_type_6_outside", proxyGetHeaderMapPairs(6, p, l))
	report("buffer_type_9", proxyGetBufferBytes(9, 0, 1, p, l))
	report("buffer_type_4_outside", proxyGetBufferBytes(4, 0, 1, p, l))
	report("set_map_6_outside", proxySetHeaderMapPairs(6, ptr(h), uint32(len(h))))
	runtime.KeepAlive(h)
}
