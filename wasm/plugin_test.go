package wasm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// markerAndMemory is the least a module needs to get past ABI detection.
func abiModule(extra ...rawFunc) rawModule {
	return rawModule{memory: true, funcs: append([]rawFunc{markerFunc("proxy_abi_version_0_2_1"), bumpMalloc()}, extra...)}
}

func TestLoadErrors(t *testing.T) {
	h := newTestHost(t, 1)
	missingImport := abiModule()
	missingImport.imports = []rawImport{{"env", "proxy_does_not_exist", i32x1, i32x1}}
	badSignature := abiModule()
	badSignature.imports = []rawImport{{"env", "proxy_log", i32x1, i32x1}}
	otherModule := abiModule()
	otherModule.imports = []rawImport{{"foo", "bar", nil, nil}}
	missingWASI := abiModule()
	missingWASI.imports = []rawImport{{"wasi_snapshot_preview1", "sock_open", i32x1, i32x1}}
	startTrap := abiModule(rawFunc{body: opUnreachable})
	startTrap.start = 3 // the third function: marker, malloc, trap
	restricted := abiModule(rawFunc{body: code(i32Const(0), call(0), opDrop), export: "_initialize"})
	restricted.imports = []rawImport{{"env", "proxy_get_current_time_nanoseconds", i32x1, i32x1}}
	badCallback := abiModule(rawFunc{params: i32x1, export: "proxy_on_request_headers"})
	hugeMemory := abiModule()
	hugeMemory.pages = 8192 // 512 MiB, over the default limit of 256 MiB

	tests := []struct {
		name string
		cfg  *config.WasmPlugin
		want string
	}{
		{"missing file", &config.WasmPlugin{Name: "json", CodeFile: "./nonexistent.wasm"},
			`plugin "json" (./nonexistent.wasm): reading code: open ./nonexistent.wasm: no such file or directory`},
		{"garbage", &config.WasmPlugin{Name: "g", Code: []byte("this is not wasm at all")},
			`plugin "g" (inline code): not a WebAssembly module (bad magic)`},
		{"wrong magic", &config.WasmPlugin{Name: "g", Code: []byte("\x00asn\x01\x00\x00\x00")},
			`plugin "g" (inline code): not a WebAssembly module (bad magic)`},
		{"bad version", &config.WasmPlugin{Name: "g", Code: []byte("\x00asm\x02\x00\x00\x00")},
			`plugin "g" (inline code): unsupported WebAssembly binary version 2 (want 1)`},
		{"corrupt body", &config.WasmPlugin{Name: "g", Code: []byte("\x00asm\x01\x00\x00\x00\x01\xff\xff")},
			`plugin "g" (inline code): compiling: `},
		{"no abi marker", &config.WasmPlugin{Name: "m", Code: rawModule{memory: true, funcs: []rawFunc{bumpMalloc()}}.bytes()},
			`plugin "m" (inline code): no Proxy-Wasm ABI version marker exported (want proxy_abi_version_0_1_0, _0_2_0 or _0_2_1)`},
		{"missing import", &config.WasmPlugin{Name: "m", Code: missingImport.bytes()},
			`plugin "m" (inline code): module imports env.proxy_does_not_exist, which this host does not provide`},
		{"missing wasi import", &config.WasmPlugin{Name: "m", Code: missingWASI.bytes()},
			`plugin "m" (inline code): module imports wasi_snapshot_preview1.sock_open, which this host does not provide`},
		{"bad import signature", &config.WasmPlugin{Name: "m", Code: badSignature.bytes()},
			`plugin "m" (inline code): module imports env.proxy_log with signature (i32)->i32, but the host provides (i32,i32,i32)->i32`},
		{"other module", &config.WasmPlugin{Name: "m", Code: otherModule.bytes()},
			`plugin "m" (inline code): module imports foo.bar from module "foo", which this host does not provide`},
		{"no allocator", &config.WasmPlugin{Name: "m", Code: rawModule{memory: true, funcs: []rawFunc{markerFunc("proxy_abi_version_0_2_0")}}.bytes()},
			`plugin "m" (inline code): module exports no allocator (want malloc or proxy_on_memory_allocate)`},
		{"no memory", &config.WasmPlugin{Name: "m", Code: rawModule{funcs: []rawFunc{markerFunc("proxy_abi_version_0_2_0"), bumpMalloc()}}.bytes()},
			`plugin "m" (inline code): module does not export its memory as "memory"`},
		{"bad callback signature", &config.WasmPlugin{Name: "m", Code: badCallback.bytes()},
			`plugin "m" (inline code): module exports proxy_on_request_headers with signature (i32)->(), want (i32,i32,i32)->i32`},
		{"start section trap", &config.WasmPlugin{Name: "m", Code: startTrap.bytes()},
			`plugin "m" (inline code): instantiating: start function[2] failed: wasm error: unreachable`},
		{"restricted call during start-up", &config.WasmPlugin{Name: "m", Code: restricted.bytes()},
			`plugin "m" (inline code): running _initialize: restricted_callback: proxy_get_current_time_nanoseconds may not be called during module start-up`},
		{"huge declared memory", &config.WasmPlugin{Name: "m", Code: hugeMemory.bytes()},
			`plugin "m" (inline code): module declares 512 MiB of initial memory, over the memory limit of 256 MiB (WASMPROXY_MEMORY_LIMIT_MB)`},
		{"unknown abi marker", &config.WasmPlugin{Name: "m", Code: rawModule{memory: true, funcs: []rawFunc{markerFunc("proxy_abi_version_0_3_0"), bumpMalloc()}}.bytes()},
			`plugin "m" (inline code): no Proxy-Wasm ABI version marker exported (want proxy_abi_version_0_1_0, _0_2_0 or _0_2_1)`},
		{"bad limit value", &config.WasmPlugin{Name: "m", Code: abiModule().bytes(), EnvKeyValues: map[string]string{"WASMPROXY_CALL_DEADLINE_MS": "soon"}},
			`plugin "m" (inline code): vm_config.environment_variables.key_values.WASMPROXY_CALL_DEADLINE_MS: "soon" is not a number from 0 to 3600000`},
		{"on_vm_start false", &config.WasmPlugin{Name: "go", CodeFile: buildPlugin(t, "httpfilter"), VMConfiguration: []byte("fail_vm_start")},
			`plugin "go" (` + buildPlugin(t, "httpfilter") + `): proxy_on_vm_start returned false`},
		{"on_configure false", &config.WasmPlugin{Name: "go", CodeFile: buildPlugin(t, "httpfilter"), PluginConfiguration: []byte("configure_false")},
			`plugin "go" (` + buildPlugin(t, "httpfilter") + `): proxy_on_configure returned false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := h.LoadPlugin(context.Background(), tt.cfg)
			if err == nil {
				p.Close(context.Background())
				t.Fatalf("LoadPlugin succeeded, want error %q", tt.want)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if !strings.HasPrefix(msg, tt.want) {
				t.Errorf("error\n got: %s\nwant: %s", msg, tt.want)
			}
		})
	}
	if g := h.stats.Gauge("wasm." + defaultRuntime + ".active").Value(); g != 0 {
		t.Errorf("active instances after failed loads = %d, want 0", g)
	}
}

// TestLifecycle checks Envoy's order of callbacks for the root context and
// one HTTP stream, header reads/writes, and the stats.
func TestLifecycleAndHeaders(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, goPlugin(t, "headers"))
	if p.Name() != "httpfilter" {
		t.Fatalf("Name() = %q", p.Name())
	}
	s := newStream(p)
	st := s.decodeHeaders(false, ":method", "GET", ":path", "/a?b=c", "X-In", "hello", "x-replace", "old", "x-replace", "old2", "x-remove", "1")
	if st != filter.HeadersContinue {
		t.Fatalf("DecodeHeaders = %v, want Continue", st)
	}
	want := []filter.Pair{{Key: ":method", Value: "GET"}, {Key: ":path", Value: "/a?b=c"}, {Key: "x-in", Value: "hello"}, {Key: "x-replace", Value: "new"}, {Key: "x-seen", Value: "hello"}}
	if got := s.cb.reqHeaders.Pairs(); !equalPairs(got, want) {
		t.Errorf("request headers = %v, want %v", got, want)
	}
	if st := s.encodeHeaders(false, ":status", "200"); st != filter.HeadersContinue {
		t.Fatalf("EncodeHeaders = %v", st)
	}
	if v, _ := s.cb.respHeaders.Get("x-resp"); v != "1" {
		t.Errorf("response header x-resp = %q", v)
	}
	s.finish()
	p.Close(context.Background())

	requireLogs(t, h.logs.pluginLogs(goPrefix),
		"create 1 0", "vm_start 1 vmconf", "configure 1 headers 0",
		"create 2 1", "request_headers 2 6 0",
		"x-in hello 0", "missing 1",
		"pairs 0 :method=GET,:path=/a?b=c,x-in=hello,x-replace=new,x-seen=hello",
		"size 0 53", // Envoy: sum of key and value bytes
		"response pairs 0 0", "response value 2",
		"trailer add 2",
		"response_headers 2 1 0 200",
		"request path in response /a?b=c 0",
		"write request headers in response 2",
		"log 2 /a?b=c 0", "done 2", "delete 2",
		"done 1", "delete 1")
	if c := h.stats.Counter("wasm." + defaultRuntime + ".created").Value(); c != 1 {
		t.Errorf("created = %d, want 1", c)
	}
	if g := h.stats.Gauge("wasm." + defaultRuntime + ".active").Value(); g != 0 {
		t.Errorf("active after Close = %d, want 0", g)
	}
}

func equalPairs(a, b []filter.Pair) bool {
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

func TestPluginLogFormat(t *testing.T) {
	h := newTestHost(t, 1)
	cfg := goPlugin(t, "headers")
	cfg.Name, cfg.RootID, cfg.VMID = "json", "root-a", "vm-b"
	h.load(t, cfg)
	requireLogs(t, h.logs.messages(), "wasm log json root-a vm-b: configure 1 headers 0")
	if !strings.Contains(h.logs.text(), "][info][wasm] wasm log json root-a vm-b: configure 1 headers 0\n") {
		t.Errorf("plugin logs not under component wasm at info:\n%s", h.logs.text())
	}
}

func TestCodeFromInline(t *testing.T) {
	h := newTestHost(t, 1)
	cfg := goPlugin(t, "headers")
	code, err := readFile(cfg.CodeFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CodeFile, cfg.Code = "", code
	p := h.load(t, cfg)
	if len(p.currentInstances()) != 1 {
		t.Fatalf("instances = %d", len(p.currentInstances()))
	}
}

func TestLocalReply(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, goPlugin(t, "local_reply"))
	s := newStream(p)
	if st := s.decodeHeaders(true, ":path", "/"); st != filter.HeadersStopAllIterationAndWatermark {
		t.Fatalf("DecodeHeaders = %v, want the forced stop (StopAllIterationAndWatermark)", st)
	}
	if len(s.cb.replies) != 1 {
		t.Fatalf("replies = %v", s.cb.replies)
	}
	r := s.cb.replies[0]
	if r.status != 403 || r.body != "nope" || r.details != "denied_by_plugin" || !equalPairs(r.headers, []filter.Pair{{Key: "x-reason", Value: "test"}}) {
		t.Errorf("reply = %+v", r)
	}
	// The local reply runs through on_response_headers, which asks again:
	// ignored, and the reply's headers pass.
	if st := s.encodeHeaders(false, ":status", "403"); st != filter.HeadersContinue {
		t.Errorf("EncodeHeaders of the local reply = %v, want Continue", st)
	}
	if len(s.cb.replies) != 1 {
		t.Errorf("second local reply was not ignored: %v", s.cb.replies)
	}
	s.finish()
	requireLogs(t, h.logs.pluginLogs(goPrefix), "local_reply 0", "response_headers 2 1 0 403", "local_reply 0", "done 2", "delete 2")
}

func TestBody(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, goPlugin(t, "body"))
	s := newStream(p)
	if st := s.decodeHeaders(false, ":path", "/"); st != filter.HeadersContinue {
		t.Fatalf("DecodeHeaders = %v", st)
	}
	buf := &filter.Buffer{Bytes: []byte("hello")}
	if st := s.DecodeData(buf, false); st != filter.DataStopIterationAndBuffer {
		t.Fatalf("DecodeData (partial) = %v, want StopIterationAndBuffer", st)
	}
	buf.Bytes = append(buf.Bytes, " world"...)
	if st := s.DecodeData(buf, true); st != filter.DataContinue {
		t.Fatalf("DecodeData (end) = %v, want Continue", st)
	}
	if got := string(buf.Bytes); got != "<hello world>!" {
		t.Errorf("body = %q, want %q", got, "<hello world>!")
	}
	if !s.cb.addedReqTrailers {
		t.Errorf("request trailers were not created from the last body callback")
	} else if v, _ := s.cb.reqTrailers.Get("x-trailer"); v != "t" {
		t.Errorf("trailer x-trailer = %q", v)
	}
	s.encodeHeaders(false, ":status", "200")
	rb := &filter.Buffer{Bytes: []byte("resp")}
	if st := s.EncodeData(rb, true); st != filter.DataContinue {
		t.Errorf("EncodeData = %v", st)
	}
	s.finish()
	requireLogs(t, h.logs.pluginLogs(goPrefix),
		"request_body 2 5 0", "request_body 2 11 1",
		"body-content 0 hello world", "body-part world", "body-past-end 0 0",
		"body-status 0 11 0", "body-replace 0", "body-append 0", "body-middle 2",
		"response-body-unavailable 1", "vm-config-readable 0", "plugin-config-unavailable 1",
		"trailer 0", "response_body 2 4 1 resp")
}

func TestStatusMapping(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, goPlugin(t, "status"))
	cfg := goPlugin(t, "status")
	cfg.AllowOnHeadersStopIteration = true
	pAllow := h.load(t, cfg)

	headers := []struct {
		ret   string
		want  filter.HeadersStatus
		allow filter.HeadersStatus
	}{
		{"0", filter.HeadersContinue, filter.HeadersContinue},
		{"1", filter.HeadersStopAllIterationAndWatermark, filter.HeadersStopIteration},
		{"2", filter.HeadersContinue, filter.HeadersContinue},
		{"3", filter.HeadersStopAllIterationAndBuffer, filter.HeadersStopAllIterationAndBuffer},
		{"4", filter.HeadersStopAllIterationAndWatermark, filter.HeadersStopAllIterationAndWatermark},
		{"7", filter.HeadersStopAllIterationAndWatermark, filter.HeadersStopAllIterationAndWatermark},
	}
	for _, tt := range headers {
		for _, c := range []struct {
			p    *Plugin
			want filter.HeadersStatus
		}{{p, tt.want}, {pAllow, tt.allow}} {
			s := newStream(c.p)
			if got := s.decodeHeaders(false, ":path", "/", "x-return", tt.ret); got != c.want {
				t.Errorf("headers result %s (allow=%v) = %v, want %v", tt.ret, c.p == pAllow, got, c.want)
			}
			s.finish()
		}
	}
	bodies := []struct {
		ret  string
		want filter.DataStatus
	}{
		{"0", filter.DataContinue}, {"1", filter.DataStopIterationAndBuffer},
		{"2", filter.DataStopIterationAndWatermark}, {"3", filter.DataStopIterationNoBuffer},
		{"9", filter.DataStopIterationNoBuffer},
	}
	for _, tt := range bodies {
		s := newStream(p)
		s.decodeHeaders(false, ":path", "/", "x-body-return", tt.ret)
		if got := s.DecodeData(&filter.Buffer{Bytes: []byte("x")}, false); got != tt.want {
			t.Errorf("body result %s = %v, want %v", tt.ret, got, tt.want)
		}
		s.finish()
	}
	for _, tt := range []struct {
		ret  string
		want filter.TrailersStatus
	}{{"0", filter.TrailersContinue}, {"1", filter.TrailersStopIteration}, {"5", filter.TrailersStopIteration}} {
		s := newStream(p)
		s.decodeHeaders(false, ":path", "/", "x-trailers-return", tt.ret)
		tr := headerMap("x-t", "tv")
		s.cb.reqTrailers = tr
		if got := s.DecodeTrailers(tr); got != tt.want {
			t.Errorf("trailers result %s = %v, want %v", tt.ret, got, tt.want)
		}
		if v, _ := tr.Get("x-added"); v != "yes" {
			t.Errorf("trailer written in on_request_trailers = %q", v)
		}
		s.finish()
	}
	// Both plugins share one VM (same VM key), so their contexts share
	// one id sequence: roots 1 and 2, then 12 + 5 streams before these.
	requireLogs(t, h.logs.pluginLogs(goPrefix), "request_trailers 20 1 tv")
}

func TestContinueAndClose(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, goPlugin(t, "continue"))
	s := newStream(p)
	if st := s.decodeHeaders(false, ":path", "/", "x-return", "1"); st != filter.HeadersStopAllIterationAndWatermark {
		t.Fatalf("DecodeHeaders = %v", st)
	}
	if st := s.DecodeData(&filter.Buffer{Bytes: []byte("x")}, true); st != filter.DataContinue {
		t.Fatalf("DecodeData = %v", st)
	}
	if len(s.cb.continued) != 1 || s.cb.continued[0] != filter.Request {
		t.Errorf("continued = %v, want [Request]", s.cb.continued)
	}
	s.finish()
	// continue_stream: request OK, upstream UNIMPLEMENTED, unknown BAD_ARGUMENT.
	requireLogs(t, h.logs.pluginLogs(goPrefix), "continue 0 12 2")

	pc := h.load(t, goPlugin(t, "close"))
	s = newStream(pc)
	s.decodeHeaders(true, ":path", "/")
	if len(s.cb.resets) != 1 || s.cb.resets[0] != "wasm_close_stream" {
		t.Errorf("resets = %v, want [wasm_close_stream]", s.cb.resets)
	}
	s.finish()
}

// TestStreamNeverReached: a stream whose headers never reached the filter
// still gets a context for the access-log phase, then done and delete.
func TestStreamNeverReached(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, goPlugin(t, "headers"))
	s := newStream(p)
	s.finish()
	requireLogs(t, h.logs.pluginLogs(goPrefix), "create 2 1", "log 2  1", "done 2", "delete 2")
}

func readFile(path string) ([]byte, error) { return os.ReadFile(filepath.Clean(path)) }
