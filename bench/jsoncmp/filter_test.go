package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/wasm"
)

// The filter-level half of bench/jsoncmp.sh: one request's filter
// callbacks, in the order and with the data the proxy gives them under
// wrk (bench/post.lua's body, bench/upstream's answer), through the
// native filter and through the Wasm plugin, without sockets. What is
// left between these and the wrk ratio is the proxy's own work, which is
// the same for both. See docs/perf.md ("Where a Wasm request's time
// goes").

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// TestMain removes the plugins buildWasm built.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range built {
		os.RemoveAll(filepath.Dir(f))
	}
	os.Exit(code)
}

// buildWasm builds a Go plugin (dir relative to this package) with the
// standard Go toolchain, as `wasmproxy plugin build` does, once per test
// binary: examples/json-validation, and noop, the SDK-only floor.
func buildWasm(tb testing.TB, dir string) string {
	tb.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if f, ok := built[dir]; ok {
		return f
	}
	out, err := os.MkdirTemp("", "jsoncmp-bench-")
	if err != nil {
		tb.Fatal(err)
	}
	file := filepath.Join(out, filepath.Base(dir)+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", file, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOWORK=off")
	if msg, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building %s: %v\n%s", dir, err, msg)
	}
	built[dir] = file
	return file
}

const jsonValidationDir = "../../examples/json-validation"

// callbacks is the proxy side of a stream: it records what the filter
// asks for so the benchmark can check every request passed.
type callbacks struct {
	req, resp *filter.HeaderMap
	info      filter.StreamInfo
	replies   int
}

func (c *callbacks) Continue(filter.Direction)                         {}
func (c *callbacks) SendLocalReply(int, []byte, []filter.Pair, string) { c.replies++ }
func (c *callbacks) Reset(string)                                      {}
func (c *callbacks) RequestHeaders() *filter.HeaderMap                 { return c.req }
func (c *callbacks) ResponseHeaders() *filter.HeaderMap                { return c.resp }
func (c *callbacks) RequestTrailers() *filter.HeaderMap                { return nil }
func (c *callbacks) ResponseTrailers() *filter.HeaderMap               { return nil }
func (c *callbacks) AddRequestTrailers() *filter.HeaderMap             { return nil }
func (c *callbacks) AddResponseTrailers() *filter.HeaderMap            { return nil }
func (c *callbacks) Info() *filter.StreamInfo                          { return &c.info }

const validBody = `{"id": "xxx", "token": "xxx", "anotherField": "yyy"}`

func newCallbacks() *callbacks {
	req := filter.NewHeaderMap()
	for _, kv := range [][2]string{
		{":method", "POST"}, {":path", "/"}, {":authority", "127.0.0.1:28012"}, {":scheme", "http"},
		{"content-length", "52"}, {"content-type", "application/json"},
		{"x-forwarded-proto", "http"}, {"x-request-id", "8a2c4f0e-3b1d-4e5f-9a7b-6c5d4e3f2a1b"},
	} {
		req.Add(kv[0], kv[1])
	}
	resp := filter.NewHeaderMap()
	for _, kv := range [][2]string{
		{":status", "200"}, {"content-type", "text/plain"}, {"content-length", "22"},
		{"date", "Sun, 06 Dec 2026 03:00:00 GMT"},
	} {
		resp.Add(kv[0], kv[1])
	}
	return &callbacks{req: req, resp: resp}
}

// oneRequest runs the callbacks a proxied POST gives a filter: request
// headers, the body in one chunk, response headers, the response body,
// log, destroy.
func oneRequest(f filter.Factory, cb *callbacks, reqBody, respBody *filter.Buffer) {
	s := f.NewStreamFilter(cb)
	s.DecodeHeaders(cb.req, false)
	s.DecodeData(reqBody, true)
	s.EncodeHeaders(cb.resp, false)
	s.EncodeData(respBody, true)
	s.OnLog()
	s.OnDestroy()
}

// loadWasm loads the plugin built from dir with one instance (the
// benchmark is one stream at a time) and the configuration bench/jsoncmp
// uses.
func loadWasm(tb testing.TB, dir string) (filter.Factory, func()) {
	return loadWasmFile(tb, buildWasm(tb, dir))
}

// loadWasmFile is loadWasm of a module already built.
func loadWasmFile(tb testing.TB, file string) (filter.Factory, func()) {
	ctx := context.Background()
	h, err := wasm.NewHost(ctx, wasm.Options{
		CacheDir: filepath.Join(os.TempDir(), "jsoncmp-bench-cache"), PoolSize: 1,
		Logs: logging.NewRegistry(io.Discard, logging.LevelWarn),
	})
	if err != nil {
		tb.Fatal(err)
	}
	p, err := h.LoadPlugin(ctx, &config.WasmPlugin{
		Name: "json_validation", CodeFile: file, PluginConfiguration: []byte(pluginConfig),
	})
	if err != nil {
		h.Close(ctx)
		tb.Fatal(err)
	}
	return p, func() { p.Close(ctx); h.Close(ctx) }
}

// BenchmarkFilter runs one request through each filter; allocs/op are
// the host's and the proxy side's (guest memory is not Go heap).
func BenchmarkFilter(b *testing.B) {
	wasmFactory, closeWasm := loadWasm(b, jsonValidationDir)
	defer closeWasm()
	readFactory, closeRead := loadWasm(b, "readjson")
	defer closeRead()
	noopFactory, closeNoop := loadWasm(b, "noop")
	defer closeNoop()
	for _, tc := range []struct {
		name string
		f    filter.Factory
	}{
		{"native", &nativeJSONValidation{requiredKeys: []string{"id", "token"}}},
		{"wasm", wasmFactory},
		// The example with its reads into a reused buffer (the SDK's
		// Read* accessors): no guest allocation for them.
		{"wasm-read", readFactory},
		// The same callbacks and host calls with no JSON work: the floor
		// that the SDK, the Go runtime and the crossing set.
		{"wasm-noop", noopFactory},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cb := newCallbacks()
			reqBody := &filter.Buffer{Bytes: []byte(validBody)}
			respBody := &filter.Buffer{Bytes: []byte("hello from the server\n")}
			b.ReportAllocs()
			for b.Loop() {
				oneRequest(tc.f, cb, reqBody, respBody)
			}
			if cb.replies != 0 {
				b.Fatalf("%d local replies to a valid request", cb.replies)
			}
		})
	}
}

// TestFilterVerdicts checks that both filters, driven as the benchmark
// drives them, pass the valid body and refuse an invalid one: the
// benchmark compares the same work.
func TestFilterVerdicts(t *testing.T) {
	wasmFactory, closeWasm := loadWasm(t, jsonValidationDir)
	defer closeWasm()
	readFactory, closeRead := loadWasm(t, "readjson")
	defer closeRead()
	for name, f := range map[string]filter.Factory{
		"native":    &nativeJSONValidation{requiredKeys: []string{"id", "token"}},
		"wasm":      wasmFactory,
		"wasm-read": readFactory,
	} {
		for body, replies := range map[string]int{validBody: 0, `{"id": 1}`: 1, `{"id": `: 1} {
			cb := newCallbacks()
			oneRequest(f, cb, &filter.Buffer{Bytes: []byte(body)}, &filter.Buffer{Bytes: []byte("ok")})
			if cb.replies != replies {
				t.Errorf("%s, body %s: %d local replies, want %d", name, body, cb.replies, replies)
			}
		}
	}
}

// threadCPU is the CPU time the calling OS thread has used
// (CLOCK_THREAD_CPUTIME_ID, nanosecond accounting): under the foreign
// load of a shared machine it moves far less than wall time.
func threadCPU() time.Duration {
	var ts syscall.Timespec
	if _, _, errno := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		panic(errno)
	}
	return time.Duration(ts.Nano())
}

const clockThreadCPUTime = 3 // CLOCK_THREAD_CPUTIME_ID (Linux)

// BenchmarkFilterPaired runs the filters of BenchmarkFilter in
// alternating blocks of 200 requests on one locked OS thread and reports
// each one's thread CPU time per request (cpu-ns/op) and its ratio to
// the native filter's (x-native), the figure docs/perf.md quotes: a
// disturbance hits every variant alike.
func BenchmarkFilterPaired(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	wasmFactory, closeWasm := loadWasm(b, jsonValidationDir)
	defer closeWasm()
	readFactory, closeRead := loadWasm(b, "readjson")
	defer closeRead()
	noopFactory, closeNoop := loadWasm(b, "noop")
	defer closeNoop()
	variants := []struct {
		name string
		f    filter.Factory
		cpu  time.Duration
	}{
		{name: "native", f: &nativeJSONValidation{requiredKeys: []string{"id", "token"}}},
		{name: "wasm", f: wasmFactory},
		{name: "wasm-read", f: readFactory},
		{name: "wasm-noop", f: noopFactory},
	}
	// JSONCMP_EXTRA=name=file.wasm,... adds modules built elsewhere, e.g.
	// the same plugins built against another tree's SDK, to compare in
	// the same run.
	if extra := os.Getenv("JSONCMP_EXTRA"); extra != "" {
		for _, spec := range strings.Split(extra, ",") {
			name, file, ok := strings.Cut(spec, "=")
			if !ok {
				b.Fatalf("JSONCMP_EXTRA: want name=file.wasm, got %q", spec)
			}
			f, closeExtra := loadWasmFile(b, file)
			defer closeExtra()
			variants = append(variants, struct {
				name string
				f    filter.Factory
				cpu  time.Duration
			}{name: name, f: f})
		}
	}
	cb := newCallbacks()
	reqBody := &filter.Buffer{Bytes: []byte(validBody)}
	respBody := &filter.Buffer{Bytes: []byte("hello from the server\n")}
	const block = 200
	blocks := 0
	for b.Loop() {
		for i := range variants {
			v := &variants[i]
			began := threadCPU()
			for range block {
				oneRequest(v.f, cb, reqBody, respBody)
			}
			v.cpu += threadCPU() - began
		}
		blocks++
	}
	if cb.replies != 0 {
		b.Fatalf("%d local replies to a valid request", cb.replies)
	}
	n := float64(blocks * block)
	for _, v := range variants {
		b.ReportMetric(float64(v.cpu)/n, v.name+"-cpu-ns/op")
		if v.name != "native" {
			b.ReportMetric(float64(v.cpu)/float64(variants[0].cpu), v.name+"-x-native")
		}
	}
}

// TestHostAllocatesOnlyTheStream: a whole request through the seed
// plugin allocates one Go object on the host side, the stream's filter
// struct: the host calls it makes (a header lookup, the body copied into
// the guest) and the guest calls allocate nothing (docs/perf.md).
func TestHostAllocatesOnlyTheStream(t *testing.T) {
	f, closeWasm := loadWasm(t, jsonValidationDir)
	defer closeWasm()
	cb := newCallbacks()
	reqBody := &filter.Buffer{Bytes: []byte(validBody)}
	respBody := &filter.Buffer{Bytes: []byte("hello from the server\n")}
	oneRequest(f, cb, reqBody, respBody) // the first stream makes the guest's contexts
	if n := testing.AllocsPerRun(200, func() { oneRequest(f, cb, reqBody, respBody) }); n > 1 {
		t.Errorf("a request allocates %v Go objects on the host, want 1 (the stream)", n)
	}
	if cb.replies != 0 {
		t.Fatalf("%d local replies to a valid request", cb.replies)
	}
}
