package wasm

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	wazerowasi "github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
)

// statusLog collects "<prefix> <name> <status>" plugin lines into a map.
func statusLog(lines []string, prefix string) map[string]string {
	out := map[string]string{}
	for _, l := range lines {
		rest, ok := strings.CutPrefix(l, prefix+" ")
		if !ok {
			continue
		}
		if name, st, ok := strings.Cut(rest, " "); ok {
			out[name] = st
		}
	}
	return out
}

func le64(v uint64) string { return hex.EncodeToString(binary.LittleEndian.AppendUint64(nil, v)) }
func hexs(s string) string { return hex.EncodeToString([]byte(s)) }

func TestProperties(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, goPlugin(t, "properties"))
	s := newStream(p)
	start := time.Unix(1700000000, 123456789)
	s.cb.info = filter.StreamInfo{
		StartTime:          start,
		Protocol:           "HTTP/1.1",
		ConnectionID:       42,
		DownstreamAddr:     netip.MustParseAddrPort("10.0.0.1:5555"),
		LocalAddr:          netip.MustParseAddrPort("127.0.0.1:8080"),
		RouteName:          "r1",
		ClusterName:        "c1",
		RequestHeaderBytes: 100,
	}
	s.cb.info.DynamicMetadata.Merge("h2m", map[string]any{"tenant": "acme"})
	s.decodeHeaders(true, ":method", "GET", ":path", "/p/q?x=1#frag", ":authority", "example.com", ":scheme", "http",
		"x-multi", "a", "x-multi", "b", "user-agent", "curl", "x-request-id", "rid", "content-length", "12")
	s.encodeHeaders(true, ":status", "200")
	s.cb.info.ResponseCode = 200
	s.cb.info.ResponseCodeDetails = "via_upstream"
	s.cb.info.EndTime = start.Add(1500 * time.Millisecond)
	s.finish()

	props := map[string]string{}
	for _, l := range h.logs.pluginLogs(goPrefix) {
		if rest, ok := strings.CutPrefix(l, "prop "); ok {
			f := strings.SplitN(rest, " ", 4)
			for len(f) < 4 {
				f = append(f, "")
			}
			props[f[0]+" "+f[1]] = f[2] + " " + f[3]
		}
	}
	want := map[string]string{
		"request request.path":            "0 " + hexs("/p/q?x=1#frag"),
		"request request.url_path":        "0 " + hexs("/p/q"),
		"request request.query":           "0 " + hexs("x=1"),
		"request request.host":            "0 " + hexs("example.com"),
		"request request.method":          "0 " + hexs("GET"),
		"request request.scheme":          "0 " + hexs("http"),
		"request request.headers.x-multi": "0 " + hexs("a,b"),
		"request request.protocol":        "0 " + hexs("HTTP/1.1"),
		"request request.time":            "0 " + le64(uint64(start.UnixNano())),
		"request request.id":              "0 " + hexs("rid"),
		"request request.useragent":       "0 " + hexs("curl"),
		"request request.referer":         "1 ",
		"request request.size":            "0 " + le64(12),
		"request request.total_size":      "0 " + le64(100),
		"request request.duration":        "1 ",
		"request source.address":          "0 " + hexs("10.0.0.1:5555"),
		"request source.port":             "0 " + le64(5555),
		"request destination.address":     "0 " + hexs("127.0.0.1:8080"),
		"request destination.port":        "0 " + le64(8080),
		"request connection.id":           "0 " + le64(42),
		"request connection_id":           "0 " + le64(42),
		"request plugin_name":             "0 " + hexs("httpfilter"),
		"request plugin_root_id":          "0 ",
		"request plugin_vm_id":            "0 ",
		"request xds.node":                "0 0a066e6f64652d31",
		"request xds.node.id":             "0 " + hexs("node-1"),
		"request xds.cluster_name":        "0 " + hexs("c1"),
		"request xds.route_name":          "0 " + hexs("r1"),
		"request response.code":           "1 ",
		"request response.headers":        "1 ",
		"request nonexistent.thing":       "1 ",
		"request request":                 "1 ",
		"request trailing":                "0 ",
		// The stream's dynamic metadata (filter.DynamicMetadata).
		"request metadata.filter_metadata.h2m.tenant": "0 " + hexs("acme"),
		"request metadata.filter_metadata.h2m.none":   "1 ",
		"log request.duration":                        "0 " + le64(uint64(1500*time.Millisecond)),
		"log response.code":                           "0 " + le64(200),
		"log response.code_details":                   "0 " + hexs("via_upstream"),
		"log request.path":                            "0 " + hexs("/p/q?x=1#frag"),
	}
	for k, v := range want {
		if got := props[k]; got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// request.headers: the whole map, one entry per name, values joined.
	st, hx, _ := strings.Cut(props["request request.headers"], " ")
	raw, _ := hex.DecodeString(hx)
	pairs := parsePairs(raw)
	if st != "0" || len(pairs) != 8 || pairs[4] != (filter.Pair{Key: "x-multi", Value: "a,b"}) {
		t.Errorf("request.headers = %s %v", st, pairs)
	}
	st, hx, _ = strings.Cut(props["log response.headers"], " ")
	raw, _ = hex.DecodeString(hx)
	if pairs := parsePairs(raw); st != "0" || len(pairs) != 1 || pairs[0] != (filter.Pair{Key: ":status", Value: "200"}) {
		t.Errorf("response.headers in on_log = %s %v", st, pairs)
	}
}

// TestHostilePointers: out-of-range pointers and lengths give
// INVALID_MEMORY_ACCESS, out-of-range types BAD_ARGUMENT, never a host
// panic or a trap.
func TestHostilePointers(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, goPlugin(t, "hostile"))
	s := newStream(p)
	if st := s.decodeHeaders(true, ":path", "/"); st != filter.HeadersContinue {
		t.Fatalf("DecodeHeaders = %v", st)
	}
	s.finish()
	got := statusLog(h.logs.pluginLogs(goPrefix), "hostile")
	want := map[string]string{
		"log": "6", "log_level": "2", "get_pairs_out": "6", "get_pairs_map": "2",
		"get_value_key": "6", "get_value_out": "6", "set_pairs": "6", "add_value": "6",
		"size_out": "6", "buffer_type": "2", "buffer_na": "1", "property_path": "6",
		"property_out": "6", "local_reply": "6", "time_out": "6", "shared_key": "6",
		"metric_type": "2", "http_call": "2", "http_call_again": "2", "effective": "2",
		"done": "1", "continue_bad": "2",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("hostile %s = %q, want %q", k, got[k], v)
		}
	}
	if p.currentInstances()[0].broken.Load() {
		t.Errorf("instance marked broken by hostile calls")
	}
	if len(s.cb.replies) != 0 {
		t.Errorf("a local reply with a bad pointer was sent: %v", s.cb.replies)
	}
}

// TestTrapFailClosed: under an explicit FAIL_CLOSED a trap answers the
// stream with a 503 and the poisoned instance stays dead (Envoy's
// semantics); the default policy replaces it (failreload_test.go).
func TestTrapFailClosed(t *testing.T) {
	h := newTestHost(t, 2)
	cfg := goPlugin(t, "headers")
	cfg.FailurePolicy = config.FailClosed
	p := h.load(t, cfg)
	s := newStream(p)
	if st := s.decodeHeaders(false, ":path", "/", "x-trap", "1"); st != filter.HeadersStopAllIterationAndWatermark {
		t.Fatalf("DecodeHeaders after trap = %v, want stop", st)
	}
	if len(s.cb.replies) != 1 || s.cb.replies[0].status != 503 || s.cb.replies[0].details != "wasm_fail_stream" {
		t.Fatalf("replies = %+v, want one 503 wasm_fail_stream", s.cb.replies)
	}
	// The 503 goes out through the encode path untouched.
	if st := s.encodeHeaders(true, ":status", "503"); st != filter.HeadersContinue {
		t.Errorf("EncodeHeaders of the failure reply = %v", st)
	}
	s.finish()
	text := h.logs.text()
	if !strings.Contains(text, "wasm: plugin httpfilter: proxy_on_request_headers failed: wasm error: out of bounds memory access") {
		t.Errorf("trap not logged as expected:\n%s", text)
	}
	if !strings.Contains(text, "wasm stack trace") {
		t.Errorf("trap log has no guest stack trace:\n%s", text)
	}
	broken := 0
	for _, inst := range p.currentInstances() {
		if inst.broken.Load() {
			broken++
		}
	}
	if broken != 1 {
		t.Fatalf("broken instances = %d, want 1", broken)
	}
	// The other instance keeps serving.
	for i := 0; i < 3; i++ {
		s := newStream(p)
		if st := s.decodeHeaders(true, ":path", "/", "X-In", "x"); st != filter.HeadersContinue || len(s.cb.replies) != 0 {
			t.Fatalf("stream on the healthy instance: %v %v", st, s.cb.replies)
		}
		s.finish()
	}
	// Poison the second one too: now every stream fails closed at once.
	s = newStream(p)
	s.decodeHeaders(true, ":path", "/", "x-trap", "1")
	s.finish()
	s = newStream(p)
	if st := s.decodeHeaders(true, ":path", "/"); st != filter.HeadersStopAllIterationAndWatermark || len(s.cb.replies) != 1 {
		t.Errorf("with every instance broken: %v %v", st, s.cb.replies)
	}
	s.finish()
	if c := h.stats.Counter("wasm.httpfilter.runtime_errors").Value(); c != 2 {
		t.Errorf("runtime_errors = %d, want 2", c)
	}
}

// TestTrapAnswersHeldResponses: a response the guest paused is answered
// when its instance traps on another stream: reset with details
// wasm_fail_stream (the headers have gone to the client's side of the
// proxy already, so no 503 can replace them), or let through under
// FAIL_OPEN.
func TestTrapAnswersHeldResponses(t *testing.T) {
	for _, open := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail_open=%v", open), func(t *testing.T) {
			h := newTestHost(t, 1)
			cfg := goPlugin(t, "headers")
			if open {
				cfg.FailurePolicy = config.FailOpen
			}
			p := h.load(t, cfg)
			held := newStream(p)
			held.decodeHeaders(true, ":path", "/")
			if st := held.encodeHeaders(true, ":status", "200", "x-hold", "1"); st == filter.HeadersContinue {
				t.Fatalf("the plugin did not hold the response")
			}
			newStream(p).decodeHeaders(true, ":path", "/", "x-trap", "1")
			switch {
			case open && (len(held.cb.resets) != 0 || !slices.Contains(held.cb.continued, filter.Response)):
				t.Errorf("FAIL_OPEN: resets %v, continued %v; want the response continued", held.cb.resets, held.cb.continued)
			case !open && !slices.Equal(held.cb.resets, []string{"wasm_fail_stream"}):
				t.Errorf("resets = %v, want [wasm_fail_stream]", held.cb.resets)
			}
			held.finish()
		})
	}
}

func TestTrapFailOpen(t *testing.T) {
	h := newTestHost(t, 1)
	cfg := goPlugin(t, "headers")
	cfg.FailurePolicy = config.FailOpen
	p := h.load(t, cfg)
	s := newStream(p)
	if st := s.decodeHeaders(false, ":path", "/", "x-trap", "1"); st != filter.HeadersContinue {
		t.Fatalf("DecodeHeaders after trap (fail open) = %v", st)
	}
	if st := s.DecodeData(&filter.Buffer{Bytes: []byte("x")}, true); st != filter.DataContinue {
		t.Errorf("DecodeData after trap (fail open) = %v", st)
	}
	s.finish()
	if len(s.cb.replies) != 0 || len(s.cb.resets) != 0 {
		t.Errorf("fail open sent %v / reset %v", s.cb.replies, s.cb.resets)
	}
	s = newStream(p)
	if st := s.decodeHeaders(true, ":path", "/"); st != filter.HeadersContinue {
		t.Errorf("later stream (fail open, instance broken) = %v", st)
	}
	s.finish()
}

// TestGoPanic: a Go guest's panic prints to stderr, calls proc_exit (only
// logged) and ends in a trap; the host must see a failed callback, not hang.
func TestGoPanic(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, goPlugin(t, "headers"))
	done := make(chan filter.HeadersStatus, 1)
	go func() {
		s := newStream(p)
		done <- s.decodeHeaders(true, ":path", "/", "x-panic", "1")
	}()
	select {
	case st := <-done:
		if st != filter.HeadersStopAllIterationAndWatermark {
			t.Errorf("DecodeHeaders after a guest panic = %v", st)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("guest panic did not end the callback")
	}
	// The runtime writes its panic report to fd 2 in many small pieces;
	// they come out as whole lines.
	requireLogs(t, h.logs.pluginLogs(goPrefix), "panic: plugin panicked on purpose", "goroutine 1 [running]:")
	if !p.currentInstances()[0].broken.Load() {
		t.Errorf("instance not broken after a panic")
	}
}

// TestABI010 drives a hand-written ABI 0.1.0 module: header callbacks take
// two arguments and a missing header is OK with an empty value.
func TestABI010(t *testing.T) {
	m := rawModule{
		memory:  true,
		imports: []rawImport{{"env", "proxy_get_header_map_value", []byte{tI32, tI32, tI32, tI32, tI32}, i32x1}},
		funcs: []rawFunc{
			markerFunc("proxy_abi_version_0_1_0"),
			bumpMalloc(),
			{params: i32x2, export: "proxy_on_context_create"},
			{params: i32x2, results: i32x1, export: "proxy_on_request_headers", body: code(
				i32Const(300),
				i32Const(0), i32Const(100), i32Const(9), i32Const(200), i32Const(204), call(0),
				i32Store(),
				i32Const(1),
			)},
		},
		data: []rawData{{100, []byte("x-missing")}, {204, []byte{0xff, 0xff, 0xff, 0xff}}, {300, []byte{0xff, 0xff, 0xff, 0xff}}},
	}
	h := newTestHost(t, 1)
	p := h.load(t, &config.WasmPlugin{Name: "abi010", Code: m.bytes()})
	if p.abi != abi010 {
		t.Fatalf("abi = %v", p.abi)
	}
	s := newStream(p)
	if st := s.decodeHeaders(true, ":path", "/"); st != filter.HeadersStopAllIterationAndWatermark {
		t.Fatalf("DecodeHeaders = %v", st)
	}
	s.finish()
	mem := p.currentInstances()[0].mod.Memory()
	status, _ := mem.ReadUint32Le(300)
	size, _ := mem.ReadUint32Le(204)
	if status != statusOK || size != 0 {
		t.Errorf("0.1.0 missing header: status %d size %d, want OK and 0", status, size)
	}

	bad := m
	bad.funcs = append([]rawFunc(nil), m.funcs...)
	bad.funcs[3] = rawFunc{params: []byte{tI32, tI32, tI32}, results: i32x1, body: i32Const(0), export: "proxy_on_request_headers"}
	_, err := h.LoadPlugin(context.Background(), &config.WasmPlugin{Name: "abi010", Code: bad.bytes()})
	if err == nil || !strings.Contains(err.Error(), "module exports proxy_on_request_headers with signature (i32,i32,i32)->i32, want (i32,i32)->i32") {
		t.Errorf("3-argument header callback in a 0.1.0 module: %v", err)
	}
}

func TestTick(t *testing.T) {
	h := newTestHost(t, 1)
	h.load(t, goPlugin(t, "tick"))
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(h.logs.text(), "tick 1 3") {
		if time.Now().After(deadline) {
			t.Fatalf("no third tick:\n%s", h.logs.text())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the plugin set the period to 0 at tick 3
	if strings.Contains(h.logs.text(), "tick 1 4") {
		t.Errorf("ticks continued after the period was set to 0")
	}
}

func TestSharedData(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, goPlugin(t, "shared"))
	s := newStream(p)
	s.decodeHeaders(true, ":path", "/")
	s.finish()
	requireLogs(t, h.logs.pluginLogs(goPrefix),
		"shared get_missing 1", "shared set 0", "shared get 0", "shared value v1 true",
		"shared set_bad_cas 8", "shared set_good_cas 0", "shared value v2")
	if v, ok := h.shared.get("", []byte("key")); !ok || string(v.value) != "v2" {
		t.Errorf("host shared data for vm_id \"\" = %q %v", v.value, ok)
	}
	if _, ok := h.shared.get("other-vm", []byte("key")); ok {
		t.Errorf("shared data leaked across vm_ids")
	}
}

func TestMetrics(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, goPlugin(t, "metrics"))
	s := newStream(p)
	s.decodeHeaders(true, ":path", "/")
	s.finish()
	got := statusLog(h.logs.pluginLogs(goPrefix), "metric")
	want := map[string]string{
		"define_counter": "0", "define_gauge": "0", "define_histogram": "0", "inc_counter": "0",
		"inc_counter_negative": "2", "inc_gauge_negative": "0", "record_gauge": "0",
		"record_histogram": "0", "inc_histogram": "2", "unknown": "1", "get_counter": "0",
		"counter": "5", "get_histogram": "2",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("metric %s = %q, want %q", k, got[k], v)
		}
	}
	requireLogs(t, h.logs.pluginLogs(goPrefix), "metric ids 0 1 2")
	if v := h.stats.CustomCounter("test_counter").Value(); v != 5 {
		t.Errorf("test_counter = %d", v)
	}
	if v := h.stats.CustomGauge("test_gauge").Value(); v != 42 {
		t.Errorf("test_gauge = %d", v)
	}
	if c := h.stats.CustomHistogram("test_histogram").Snapshot().Count; c != 1 {
		t.Errorf("test_histogram count = %d", c)
	}
	for _, c := range h.stats.Snapshot().Counters {
		if c.Name == "test_counter" && c.Kind != stats.Custom {
			t.Errorf("test_counter is not a custom stat")
		}
	}
}

func TestWASIAndMisc(t *testing.T) {
	t.Setenv("WASMPROXY_TEST_HOST_ENV", "he")
	h := newTestHost(t, 1)
	cfg := goPlugin(t, "misc")
	cfg.EnvKeyValues = map[string]string{"PLUGIN_ENV": "pe"}
	cfg.EnvHostKeys = []string{"WASMPROXY_TEST_HOST_ENV", "WASMPROXY_TEST_UNSET"}
	p := h.load(t, cfg)
	s := newStream(p)
	s.decodeHeaders(true, ":path", "/")
	s.finish()
	requireLogs(t, h.logs.pluginLogs(goPrefix),
		"log_level 0", "time_positive true", "hello stdout", "hello stderr", "env pe he", "args 0")
	text := h.logs.text()
	if !strings.Contains(text, "[info][wasm] wasm log httpfilter: hello stdout\n") {
		t.Errorf("stdout not logged at info:\n%s", text)
	}
	if !strings.Contains(text, "[error][wasm] wasm log httpfilter: hello stderr\n") {
		t.Errorf("stderr not logged at error:\n%s", text)
	}
}

// TestWASISignatures checks every WASI function against wazero's own
// wasi_snapshot_preview1 definitions (used here only as a reference).
func TestWASISignatures(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	b := r.NewHostModuleBuilder("wasi_snapshot_preview1")
	wazerowasi.NewFunctionExporter().ExportFunctions(b)
	ref, err := b.Compile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ours := map[string]hostFunc{}
	for _, f := range wasiFunctions() {
		ours[f.name] = f
	}
	for name, def := range ref.ExportedFunctions() {
		f, ok := ours[name]
		if !ok {
			t.Errorf("missing WASI function %s", name)
			continue
		}
		if !sameTypes(f.params, def.ParamTypes()) || !sameTypes(f.results, def.ResultTypes()) {
			t.Errorf("%s: ours %s, wazero %s", name, signature(f.params, f.results), signature(def.ParamTypes(), def.ResultTypes()))
		}
	}
}

func TestPairs(t *testing.T) {
	in := []filter.Pair{{Key: "a", Value: "1"}, {Key: "bb", Value: ""}, {Key: ":path", Value: "/x"}}
	enc := appendPairs(nil, in)
	if len(enc) != 4+3*8+(1+1+1+1)+(2+1+0+1)+(5+1+2+1) {
		t.Errorf("encoded size %d", len(enc))
	}
	if got := parsePairs(enc); !equalPairs(got, in) {
		t.Errorf("round trip = %v", got)
	}
	for name, b := range map[string][]byte{
		"trailing byte":   append(append([]byte(nil), enc...), 0),
		"missing nul":     append(append([]byte(nil), enc[:len(enc)-1]...), 'x'),
		"short":           enc[:10],
		"too many pairs":  binary.LittleEndian.AppendUint32(nil, 5000),
		"size overflow":   append(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 1), 0xffffffff), 0), 0, 0),
		"empty":           nil,
		"zero pairs":      binary.LittleEndian.AppendUint32(nil, 0),
		"truncated value": enc[:len(enc)-2],
	} {
		if got := parsePairs(b); got != nil {
			t.Errorf("%s: parsed %v, want nil", name, got)
		}
	}
}

// TestConcurrentStreams runs many streams at once over a pool of two
// instances (meaningful under -race).
func TestConcurrentStreams(t *testing.T) {
	h := newTestHost(t, 2)
	p := h.load(t, goPlugin(t, "headers"))
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				s := newStream(p)
				if st := s.decodeHeaders(false, ":path", "/", "x-in", "v"); st != filter.HeadersContinue {
					errs <- "DecodeHeaders failed"
					return
				}
				if v, _ := s.cb.reqHeaders.Get("x-seen"); v != "v" {
					errs <- "x-seen = " + v
					return
				}
				s.encodeHeaders(true, ":status", "200")
				s.finish()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for _, inst := range p.currentInstances() {
		if n := inst.streams.len(); n != 0 {
			t.Errorf("instance %d still has %d streams", inst.index, n)
		}
	}
}

func TestHostClosed(t *testing.T) {
	h := newTestHost(t, 1)
	h.Close(context.Background())
	_, err := h.LoadPlugin(context.Background(), goPlugin(t, "headers"))
	if err == nil || !strings.Contains(err.Error(), "host is closed") {
		t.Errorf("LoadPlugin on a closed host: %v", err)
	}
}

// BenchmarkStream measures one whole stream (headers both ways, log,
// done, delete) through the Go test plugin; the report's allocs/op are
// the host's (guest memory is not Go heap).
func BenchmarkStream(b *testing.B) {
	sink := &logSink{}
	h, err := NewHost(context.Background(), Options{
		CacheDir: testDir + "/cache", PoolSize: 1,
		Logs: logging.NewRegistry(sink, logging.LevelError),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(context.Background())
	p, err := h.LoadPlugin(context.Background(), &config.WasmPlugin{Name: "bench", CodeFile: buildPlugin(b, "httpfilter"), PluginConfiguration: []byte("bench")})
	if err != nil {
		b.Fatal(err)
	}
	cb := &fakeCallbacks{reqHeaders: headerMap(":method", "GET", ":path", "/", "x-return", "0"), respHeaders: headerMap(":status", "200")}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := p.NewStreamFilter(cb)
		f.DecodeHeaders(cb.reqHeaders, true)
		f.EncodeHeaders(cb.respHeaders, true)
		f.OnLog()
		f.OnDestroy()
	}
}

// TestClosedPluginPassesThrough: streams that outlive their plugin (a
// reload that closed it) continue without calling the guest.
func TestClosedPluginPassesThrough(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, goPlugin(t, "local_reply"))
	s := newStream(p)
	p.Close(context.Background())
	if st := s.decodeHeaders(true, ":path", "/"); st != filter.HeadersContinue || len(s.cb.replies) != 0 {
		t.Errorf("closed plugin: %v %v", st, s.cb.replies)
	}
	s.finish()
}
