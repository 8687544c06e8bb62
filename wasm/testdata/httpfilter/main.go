// Command httpfilter is a Proxy-Wasm test plugin for the wasm package's
// tests, written against the raw ABI (no SDK). Its plugin configuration
// selects a behaviour ("mode"); every callback logs its name so tests can
// check the life cycle.
package main

import (
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"unsafe"
)

func main() {}

var (
	mode  string
	ticks int
	sink  int // written by the x-spin loop so it is not optimized away
)

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func resetAllocations() { allocations = allocations[:0] }

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_context_create
func onContextCreate(ctx, parent uint32) {
	resetAllocations()
	info("create " + itoa(ctx) + " " + itoa(parent))
}

//go:wasmexport proxy_on_vm_start
func onVMStart(root, size uint32) uint32 {
	resetAllocations()
	cfg, _ := getBuffer(6, 0, size)
	info("vm_start " + itoa(root) + " " + string(cfg))
	if string(cfg) == "fail_vm_start" {
		return 0
	}
	return 1
}

//go:wasmexport proxy_on_configure
func onConfigure(root, size uint32) uint32 {
	resetAllocations()
	cfg, st := getBuffer(7, 0, size)
	mode = string(cfg)
	info("configure " + itoa(root) + " " + mode + " " + itoa(st))
	switch mode {
	case "configure_false":
		return 0
	case "tick":
		proxySetTickPeriod(5)
	}
	return 1
}

//go:wasmexport proxy_on_tick
func onTick(root uint32) {
	ticks++
	info("tick " + itoa(root) + " " + strconv.Itoa(ticks))
	if ticks == 3 {
		proxySetTickPeriod(0)
	}
}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(ctx, n, eos uint32) uint32 {
	resetAllocations()
	info("request_headers " + itoa(ctx) + " " + itoa(n) + " " + itoa(eos))
	if _, st := getHeader(0, "x-trap"); st == 0 {
		// An out-of-bounds load: a deterministic trap.
		var p uintptr = 0xFFFFFFF0
		return uint32(*(*byte)(unsafe.Pointer(p)))
	}
	if _, st := getHeader(0, "x-panic"); st == 0 {
		panic("plugin panicked on purpose")
	}
	if _, st := getHeader(0, "x-spin"); st == 0 {
		// A runaway guest: only the call deadline stops it.
		for spins := 0; ; spins++ {
			sink = spins
		}
	}
	switch mode {
	case "headers":
		return headersMode()
	case "local_reply":
		return localReply()
	case "properties":
		properties("request")
	case "hostile":
		hostile()
	case "shared":
		shared()
	case "metrics":
		metrics()
	case "misc":
		misc()
	case "close":
		info("close " + itoa(proxyCloseStream(0)))
	}
	if v, st := getHeader(0, "x-return"); st == 0 {
		r, _ := strconv.Atoi(v)
		return uint32(r)
	}
	return 0
}

//go:wasmexport proxy_on_request_body
func onRequestBody(ctx, size, eos uint32) uint32 {
	resetAllocations()
	info("request_body " + itoa(ctx) + " " + itoa(size) + " " + itoa(eos))
	if mode == "body" {
		if eos == 0 {
			return 1
		}
		return bodyMode(size)
	}
	if mode == "continue" && eos == 1 {
		info("continue " + itoa(proxyContinueStream(0)) + " " + itoa(proxyContinueStream(3)) + " " + itoa(proxyContinueStream(9)))
		return 0
	}
	if v, st := getHeader(0, "x-body-return"); st == 0 {
		r, _ := strconv.Atoi(v)
		return uint32(r)
	}
	return 0
}

//go:wasmexport proxy_on_request_trailers
func onRequestTrailers(ctx, n uint32) uint32 {
	resetAllocations()
	v, _ := getHeader(1, "x-t")
	info("request_trailers " + itoa(ctx) + " " + itoa(n) + " " + v)
	addHeader(1, "x-added", "yes")
	if r, st := getHeader(0, "x-trailers-return"); st == 0 {
		n, _ := strconv.Atoi(r)
		return uint32(n)
	}
	return 0
}

//go:wasmexport proxy_on_response_headers
func onResponseHeaders(ctx, n, eos uint32) uint32 {
	resetAllocations()
	status, _ := getHeader(2, ":status")
	info("response_headers " + itoa(ctx) + " " + itoa(n) + " " + itoa(eos) + " " + status)
	switch mode {
	case "headers":
		if _, st := getHeader(2, "x-hold"); st == 0 {
			info("hold response " + itoa(ctx))
			return 1 // never resumed
		}
		addHeader(2, "x-resp", "1")
		path, st := getHeader(0, ":path")
		info("request path in response " + path + " " + itoa(st))
		info("write request headers in response " + itoa(addHeader(0, "x-late", "1")))
	case "local_reply":
		return localReply()
	}
	return 0
}

//go:wasmexport proxy_on_response_body
func onResponseBody(ctx, size, eos uint32) uint32 {
	resetAllocations()
	body, _ := getBuffer(1, 0, size)
	info("response_body " + itoa(ctx) + " " + itoa(size) + " " + itoa(eos) + " " + string(body))
	return 0
}

//go:wasmexport proxy_on_log
func onLog(ctx uint32) {
	resetAllocations()
	v, st := getHeader(0, ":path")
	info("log " + itoa(ctx) + " " + v + " " + itoa(st))
	if mode == "properties" {
		properties("log")
	}
}

//go:wasmexport proxy_on_done
func onDone(ctx uint32) uint32 {
	info("done " + itoa(ctx))
	return 1
}

//go:wasmexport proxy_on_delete
func onDelete(ctx uint32) {
	info("delete " + itoa(ctx))
}

func headersMode() uint32 {
	v, st := getHeader(0, "X-In")
	info("x-in " + v + " " + itoa(st))
	_, st = getHeader(0, "x-missing")
	info("missing " + itoa(st))
	addHeader(0, "x-seen", v)
	replaceHeader(0, "x-replace", "new")
	key := "x-remove"
	proxyRemoveHeaderMapValue(0, sptr(key), uint32(len(key)))
	p, l := outPtrs()
	st = proxyGetHeaderMapPairs(0, p, l)
	var parts []string
	for _, kv := range decodePairs(result()) {
		parts = append(parts, kv.key+"="+kv.value)
	}
	info("pairs " + itoa(st) + " " + strings.Join(parts, ","))
	var size uint32
	st = proxyGetHeaderMapSize(0, uint32(uintptr(unsafe.Pointer(&size))))
	info("size " + itoa(st) + " " + itoa(size))
	// Response headers do not exist yet: pairs read as empty, a value is
	// BAD_ARGUMENT (map unavailable).
	st = proxyGetHeaderMapPairs(2, p, l)
	info("response pairs " + itoa(st) + " " + itoa(out[1]))
	_, st = getHeader(2, ":status")
	info("response value " + itoa(st))
	info("trailer add " + itoa(addHeader(1, "x-t", "1")))
	return 0
}

func localReply() uint32 {
	details := "denied by plugin"
	body := "nope"
	headers := encodePairs([]pair{{"x-reason", "test"}})
	st := proxySendLocalResponse(403, sptr(details), uint32(len(details)), sptr(body), uint32(len(body)), ptr(headers), uint32(len(headers)), -1)
	info("local_reply " + itoa(st))
	return 0
}

func bodyMode(size uint32) uint32 {
	body, st := getBuffer(0, 0, size)
	info("body-content " + itoa(st) + " " + string(body))
	part, _ := getBuffer(0, 6, 100)
	info("body-part " + string(part))
	_, st = getBuffer(0, 1000, 10)
	info("body-past-end " + itoa(st) + " " + itoa(out[1]))
	var n, flags uint32
	st = proxyGetBufferStatus(0, uint32(uintptr(unsafe.Pointer(&n))), uint32(uintptr(unsafe.Pointer(&flags))))
	info("body-status " + itoa(st) + " " + itoa(n) + " " + itoa(flags))
	repl := "<" + string(body) + ">"
	st = proxySetBufferBytes(0, 0, size, sptr(repl), uint32(len(repl)))
	info("body-replace " + itoa(st))
	tail := "!"
	st = proxySetBufferBytes(0, uint32(len(repl)), 0, sptr(tail), 1)
	info("body-append " + itoa(st))
	st = proxySetBufferBytes(0, 2, 1, sptr(tail), 1)
	info("body-middle " + itoa(st))
	_, st = getBuffer(1, 0, 10)
	info("response-body-unavailable " + itoa(st))
	info("vm-config-readable " + itoa(func() uint32 { _, s := getBuffer(6, 0, 10); return s }()))
	info("plugin-config-unavailable " + itoa(func() uint32 { _, s := getBuffer(7, 0, 10); return s }()))
	info("trailer " + itoa(addHeader(1, "x-trailer", "t")))
	return 0
}

func properties(phase string) {
	paths := []string{
		"request.path", "request.url_path", "request.query", "request.host", "request.method",
		"request.scheme", "request.headers.x-multi", "request.headers", "request.protocol",
		"request.time", "request.id", "request.useragent", "request.referer", "request.size",
		"request.total_size", "request.duration", "source.address", "source.port",
		"destination.address", "destination.port", "connection.id", "connection_id",
		"plugin_name", "plugin_root_id", "plugin_vm_id", "xds.node", "xds.node.id",
		"xds.cluster_name", "xds.route_name", "response.code", "response.code_details",
		"response.headers", "nonexistent.thing", "request",
		"metadata.filter_metadata.h2m.tenant", "metadata.filter_metadata.h2m.none",
	}
	for _, p := range paths {
		v, st := getProperty(strings.ReplaceAll(p, ".", "\x00"))
		info("prop " + phase + " " + p + " " + itoa(st) + " " + hex.EncodeToString(v))
	}
	// A trailing NUL is ignored.
	_, st := getProperty("plugin_name\x00")
	info("prop " + phase + " trailing " + itoa(st))
}

func hostile() {
	p, l := outPtrs()
	const bad = 0xFFFFFFF0
	report := func(name string, st uint32) { info("hostile " + name + " " + itoa(st)) }
	report("log", proxyLog(2, bad, 100))
	report("log_level", proxyLog(9, sptr("x"), 1))
	report("get_pairs_out", proxyGetHeaderMapPairs(0, bad, l))
	report("get_pairs_map", proxyGetHeaderMapPairs(99, p, l))
	key := ":path"
	report("get_value_key", proxyGetHeaderMapValue(0, bad, 10, p, l))
	report("get_value_out", proxyGetHeaderMapValue(0, sptr(key), uint32(len(key)), bad, l))
	report("set_pairs", proxySetHeaderMapPairs(0, bad, 64))
	report("add_value", proxyAddHeaderMapValue(0, sptr(key), uint32(len(key)), bad, 5))
	report("size_out", proxyGetHeaderMapSize(0, bad))
	report("buffer_type", proxyGetBufferBytes(99, 0, 1, p, l))
	report("buffer_na", proxyGetBufferBytes(0, 0, 1, p, l))
	report("property_path", proxyGetProperty(bad, 50, p, l))
	report("property_out", proxyGetProperty(sptr("plugin_name"), 11, bad, bad))
	report("local_reply", proxySendLocalResponse(500, bad, 5, 0, 0, 0, 0, -1))
	report("time_out", proxyGetCurrentTime(bad))
	report("shared_key", proxySetSharedData(bad, 5, 0, 0, 0))
	report("metric_type", proxyDefineMetric(7, sptr("m"), 1, p))
	report("http_call", proxyHTTPCall(0, 0, 0, 0, 0, 0, 0, 0, 0, p))
	report("http_call_again", proxyHTTPCall(0, 0, 0, 0, 0, 0, 0, 0, 0, p))
	report("effective", proxySetEffectiveContext(12345))
	report("done", proxyDone())
	report("continue_bad", proxyContinueStream(9))
	_ = l
}

func shared() {
	p, l := outPtrs()
	var cas uint32
	casPtr := uint32(uintptr(unsafe.Pointer(&cas)))
	k, v1, v2 := "key", "v1", "v2"
	report := func(name string, st uint32) { info("shared " + name + " " + itoa(st)) }
	report("get_missing", proxyGetSharedData(sptr("nokey"), 5, p, l, casPtr))
	report("set", proxySetSharedData(sptr(k), 3, sptr(v1), 2, 0))
	report("get", proxyGetSharedData(sptr(k), 3, p, l, casPtr))
	info("shared value " + string(result()) + " " + strconv.FormatBool(cas != 0))
	report("set_bad_cas", proxySetSharedData(sptr(k), 3, sptr(v2), 2, cas+1000))
	report("set_good_cas", proxySetSharedData(sptr(k), 3, sptr(v2), 2, cas))
	proxyGetSharedData(sptr(k), 3, p, l, casPtr)
	info("shared value " + string(result()))
}

func metrics() {
	var id, cid, gid, hid uint32
	idPtr := uint32(uintptr(unsafe.Pointer(&id)))
	report := func(name string, st uint32) { info("metric " + name + " " + itoa(st)) }
	report("define_counter", proxyDefineMetric(0, sptr("test_counter"), 12, idPtr))
	cid = id
	report("define_gauge", proxyDefineMetric(1, sptr("test_gauge"), 10, idPtr))
	gid = id
	report("define_histogram", proxyDefineMetric(2, sptr("test_histogram"), 14, idPtr))
	hid = id
	info("metric ids " + itoa(cid) + " " + itoa(gid) + " " + itoa(hid))
	report("inc_counter", proxyIncrementMetric(cid, 5))
	report("inc_counter_negative", proxyIncrementMetric(cid, -1))
	report("inc_gauge_negative", proxyIncrementMetric(gid, -3))
	report("record_gauge", proxyRecordMetric(gid, 42))
	report("record_histogram", proxyRecordMetric(hid, 7))
	report("inc_histogram", proxyIncrementMetric(hid, 1))
	report("unknown", proxyIncrementMetric(cid+400, 1))
	var v uint64
	report("get_counter", proxyGetMetric(cid, uint32(uintptr(unsafe.Pointer(&v)))))
	info("metric counter " + strconv.FormatUint(v, 10))
	report("get_histogram", proxyGetMetric(hid, uint32(uintptr(unsafe.Pointer(&v)))))
}

func misc() {
	var level uint32
	proxyGetLogLevel(uint32(uintptr(unsafe.Pointer(&level))))
	info("log_level " + itoa(level))
	var now uint64
	proxyGetCurrentTime(uint32(uintptr(unsafe.Pointer(&now))))
	info("time_positive " + strconv.FormatBool(now > 1_600_000_000_000_000_000))
	os.Stdout.WriteString("hello stdout\n")
	println("hello stderr")
	info("env " + os.Getenv("PLUGIN_ENV") + " " + os.Getenv("WASMPROXY_TEST_HOST_ENV"))
	info("args " + strconv.Itoa(len(os.Args)))
}
