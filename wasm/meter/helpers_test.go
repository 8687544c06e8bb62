package meter

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmproxy/wasmproxy/pluginbuild"
)

// buildDir holds the Go-built guest for this test binary's run.
var buildDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "meter-test-")
	if err != nil {
		panic(err)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	guestOnce sync.Once
	guestWasm []byte
	guestErr  error
)

// goGuest builds testdata/guest with GOOS=wasip1 GOARCH=wasm
// -buildmode=c-shared once per run.
func goGuest(tb testing.TB) []byte {
	tb.Helper()
	guestOnce.Do(func() {
		var path string
		path, guestErr = pluginbuild.Cached(context.Background(), buildDir, filepath.Join("testdata", "guest"))
		if guestErr == nil {
			guestWasm, guestErr = os.ReadFile(path)
		}
	})
	if guestErr != nil {
		tb.Fatalf("building the Go guest: %v", guestErr)
	}
	return guestWasm
}

func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustInstrument(tb testing.TB, wasm []byte) []byte {
	tb.Helper()
	out, err := Instrument(wasm, Options{})
	if err != nil {
		tb.Fatalf("Instrument: %v", err)
	}
	return out
}

// host is a wazero runtime with everything the test modules import: WASI,
// "env" (add, log), "genv" (a global), and, if meter is set, the meter.
type host struct {
	rt    wazero.Runtime
	meter *Meter
	// logged is the last value the guest passed to env.log.
	logged int32
}

func newHost(tb testing.TB, rc wazero.RuntimeConfig, meter *Meter) *host {
	tb.Helper()
	ctx := context.Background()
	h := &host{rt: wazero.NewRuntimeWithConfig(ctx, rc), meter: meter}
	tb.Cleanup(func() { h.rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, h.rt)
	_, err := h.rt.NewHostModuleBuilder("env").
		NewFunctionBuilder().
		WithGoFunction(api.GoFunc(func(_ context.Context, s []uint64) {
			s[0] = uint64(uint32(int32(s[0]) + int32(s[1])))
		}), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}).
		Export("add").
		NewFunctionBuilder().
		WithGoFunction(api.GoFunc(func(_ context.Context, s []uint64) { h.logged = int32(s[0]) }),
			[]api.ValueType{api.ValueTypeI32}, nil).
		Export("log").
		Instantiate(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	// wazero host modules cannot export globals; a one-global module can.
	genv := rawModule{globals: []rawGlobal{{typ: tI32, init: i32Const(7), export: "base"}}}
	if _, err := h.rt.InstantiateWithConfig(ctx, genv.encode(), wazero.NewModuleConfig().WithName("genv")); err != nil {
		tb.Fatal(err)
	}
	if meter != nil {
		if _, err := meter.Instantiate(ctx, h.rt); err != nil {
			tb.Fatal(err)
		}
	}
	return h
}

func compilerConfig() wazero.RuntimeConfig { return wazero.NewRuntimeConfigCompiler() }

// instantiate compiles and instantiates wasm anonymously (so one runtime
// can hold many instances), running _initialize if it is exported.
func (h *host) instantiate(tb testing.TB, wasm []byte) api.Module {
	tb.Helper()
	ctx := context.Background()
	cm, err := h.rt.CompileModule(ctx, wasm)
	if err != nil {
		tb.Fatalf("compile: %v", err)
	}
	cfg := wazero.NewModuleConfig().WithName("")
	if _, ok := cm.ExportedFunctions()["_initialize"]; ok {
		cfg = cfg.WithStartFunctions("_initialize")
	}
	mod, err := h.rt.InstantiateModule(ctx, cm, cfg)
	if err != nil {
		tb.Fatalf("instantiate: %v", err)
	}
	return mod
}

// A minimal module assembler for the small hand-made modules (spin loops,
// loop-free recursion, fuzz seeds). Encodings follow the core spec §5.

const (
	tI32 = 0x7f
	tI64 = 0x7e

	opLocalGet = 0x20
	opLocalTee = 0x22
)

type rawFunc struct {
	params, results []byte
	locals          []byte // one local per entry, by type
	body            []byte // instructions, without the final end
	export          string
}

type rawImport struct {
	module, name    string
	params, results []byte
}

type rawGlobal struct {
	typ     byte
	mutable bool
	init    []byte // constant expression without end
	export  string
}

type rawModule struct {
	imports []rawImport
	funcs   []rawFunc
	globals []rawGlobal
	memory  bool // one page, exported as "memory"
	start   int  // function index + 1; 0 = none
	names   bool // add a name section naming every function "f<index>"
}

func u32(v uint32) []byte { return appendU32(nil, v) }

func i32Const(v int32) []byte { return appendS32([]byte{opI32Const}, v) }

func vecOf(items ...[]byte) []byte {
	out := u32(uint32(len(items)))
	for _, it := range items {
		out = append(out, it...)
	}
	return out
}

func str(s string) []byte { return appendName(nil, []byte(s)) }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func (m rawModule) encode() []byte {
	var types [][]byte
	typeOf := func(params, results []byte) uint32 {
		t := cat([]byte{typeFunc}, vecOf(bytesEach(params)...), vecOf(bytesEach(results)...))
		for i, have := range types {
			if string(have) == string(t) {
				return uint32(i)
			}
		}
		types = append(types, t)
		return uint32(len(types) - 1)
	}
	var imports, funcs, codes, exports, globals [][]byte
	for _, im := range m.imports {
		imports = append(imports, cat(str(im.module), str(im.name), []byte{0x00}, u32(typeOf(im.params, im.results))))
	}
	for i, f := range m.funcs {
		funcs = append(funcs, u32(typeOf(f.params, f.results)))
		var locals [][]byte
		for _, l := range f.locals {
			locals = append(locals, []byte{0x01, l})
		}
		body := cat(vecOf(locals...), f.body, []byte{opEnd})
		codes = append(codes, cat(u32(uint32(len(body))), body))
		if f.export != "" {
			exports = append(exports, cat(str(f.export), []byte{0x00}, u32(uint32(len(m.imports)+i))))
		}
	}
	for i, g := range m.globals {
		mut := byte(0)
		if g.mutable {
			mut = 1
		}
		globals = append(globals, cat([]byte{g.typ, mut}, g.init, []byte{opEnd}))
		if g.export != "" {
			exports = append(exports, cat(str(g.export), []byte{0x03}, u32(uint32(i))))
		}
	}
	if m.memory {
		exports = append(exports, cat(str("memory"), []byte{0x02, 0x00}))
	}
	out := append([]byte{}, wasmMagic...)
	if len(types) > 0 {
		out = appendSection(out, secType, vecOf(types...))
	}
	if len(imports) > 0 {
		out = appendSection(out, secImport, vecOf(imports...))
	}
	if len(funcs) > 0 {
		out = appendSection(out, secFunction, vecOf(funcs...))
	}
	if m.memory {
		out = appendSection(out, secMemory, vecOf([]byte{0x00, 0x01}))
	}
	if len(globals) > 0 {
		out = appendSection(out, secGlobal, vecOf(globals...))
	}
	if len(exports) > 0 {
		out = appendSection(out, secExport, vecOf(exports...))
	}
	if m.start > 0 {
		out = appendSection(out, secStart, u32(uint32(m.start-1)))
	}
	if len(codes) > 0 {
		out = appendSection(out, secCode, vecOf(codes...))
	}
	if m.names {
		var entries [][]byte
		for i := 0; i < len(m.imports)+len(m.funcs); i++ {
			entries = append(entries, cat(u32(uint32(i)), str("f"+itoa(i))))
		}
		sub := vecOf(entries...)
		out = appendSection(out, secCustom, cat(str("name"), []byte{nameSubFunctions}, u32(uint32(len(sub))), sub))
	}
	return out
}

func bytesEach(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// spinModule exports "spin", an infinite loop: (loop (br 0)).
func spinModule() []byte {
	return rawModule{funcs: []rawFunc{{
		body:   []byte{opLoop, blockTypeEmpty, 0x0c, 0x00, opEnd},
		export: "spin",
	}}}.encode()
}

// recursionModule exports "rec" (i32) -> i32, which makes 2^n calls and
// has no loop, so only function-entry metering can stop it:
// rec(n) = n == 0 ? 0 : rec(n-1) + rec(n-1) + 1.
func recursionModule() []byte {
	self := u32(0)
	return rawModule{funcs: []rawFunc{{
		params: []byte{tI32}, results: []byte{tI32},
		body: cat(
			[]byte{opLocalGet, 0x00, 0x45, opIf, tI32}, i32Const(0), []byte{opElse},
			[]byte{opLocalGet, 0x00}, i32Const(1), []byte{opI32Sub, opCall}, self,
			[]byte{opLocalGet, 0x00}, i32Const(1), []byte{opI32Sub, opCall}, self,
			[]byte{0x6a}, i32Const(1), []byte{0x6a, opEnd},
		),
		export: "rec",
	}}}.encode()
}

// loopModule exports "loop" (n i32) -> i32: counts to n in a tight loop.
func loopModule() []byte {
	return rawModule{funcs: []rawFunc{{
		params: []byte{tI32}, results: []byte{tI32}, locals: []byte{tI32},
		body: cat(
			[]byte{opLoop, blockTypeEmpty},
			[]byte{opLocalGet, 0x01}, i32Const(1), []byte{0x6a, opLocalTee, 0x01},
			[]byte{opLocalGet, 0x00, 0x48, 0x0d, 0x00}, // i32.lt_s, br_if 0
			[]byte{opEnd, opLocalGet, 0x01},
		),
		export: "loop",
	}, {export: "empty"}}}.encode()
}
