package meter

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// validator compiles modules with every feature the test modules use, to
// compare what wazero thinks of a module before and after instrumentation.
type validator struct{ rt wazero.Runtime }

func newValidator(tb testing.TB) *validator {
	ctx := context.Background()
	rc := wazero.NewRuntimeConfigInterpreter().
		WithCoreFeatures(api.CoreFeaturesV2 | experimental.CoreFeaturesThreads | experimental.CoreFeaturesTailCall)
	v := &validator{rt: wazero.NewRuntimeWithConfig(ctx, rc)}
	tb.Cleanup(func() { v.rt.Close(context.Background()) })
	return v
}

func (v *validator) valid(wasm []byte) (err error) {
	// wazero v1.12 panics on some malformed modules (see
	// TestRejectsModuleThatCrashesWazero); count that as a rejection.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("wazero panicked: %v", r)
		}
	}()
	cm, err := v.rt.CompileModule(context.Background(), wasm)
	if err == nil {
		cm.Close(context.Background())
	}
	return err
}

// checkInstrument instruments input and checks the contract: no panic
// (the caller's goroutine would die), and a module wazero accepts is
// accepted after instrumentation, one it rejects is rejected (by Instrument
// or by wazero).
//
// When fuzzing, inputs Instrument rejects are not shown to wazero, nor are
// name sections Instrument could not read: wazero v1.12 allocates what
// counts and lengths claim before reading them (TestHostileTinyModules),
// and random input soon claims gigabytes, which ends the fuzzing process
// with a fatal error. The deterministic tests above check those inputs
// against wazero instead. What Instrument accepts has every count backed
// by bytes, so wazero can safely decode it.
func checkInstrument(t testing.TB, v *validator, input []byte, fuzzing bool) {
	t.Helper()
	out, err := Instrument(input, Options{})
	if errors.Is(err, ErrLimit) || (fuzzing && err != nil) {
		return
	}
	if fuzzing {
		if m, perr := parseModule(input); perr == nil && !m.namesReadable() {
			input = withoutNames(input)
		}
	}
	inErr := v.valid(input)
	if err != nil {
		if inErr == nil && !errors.Is(err, ErrAlreadyInstrumented) {
			t.Fatalf("wazero accepts the module but Instrument fails: %v\ninput %x", err, input)
		}
		return
	}
	outErr := v.valid(out)
	switch {
	case inErr == nil && outErr != nil:
		t.Fatalf("instrumented module rejected: %v\ninput %x", outErr, input)
	case inErr != nil && outErr == nil && v.valid(withoutNames(input)) != nil && !wazeroCustomSectionBug(inErr):
		// (Instrument drops a name section it cannot read; wazero may
		// have rejected the input for that section alone.)
		t.Fatalf("invalid module (%v) became valid after instrumentation\ninput %x", inErr, input)
	}
	if _, err := Instrument(out, Options{}); !errors.Is(err, ErrAlreadyInstrumented) {
		t.Fatalf("instrumenting the output again: err = %v, want ErrAlreadyInstrumented", err)
	}
}

func smallSeeds(tb testing.TB) map[string][]byte {
	return map[string][]byte{
		"spin": spinModule(), "recursion": recursionModule(), "loop": loopModule(),
		"rich": readTestdata(tb, "rich.wasm"), "ext": readTestdata(tb, "ext.wasm"),
		"dwarf4": readTestdata(tb, "lines-dwarf4.wasm"), "dwarf5": readTestdata(tb, "lines-dwarf5.wasm"),
	}
}

// TestTruncatedModules instruments every prefix of the small modules.
func TestTruncatedModules(t *testing.T) {
	v := newValidator(t)
	for name, wasm := range smallSeeds(t) {
		t.Run(name, func(t *testing.T) {
			for n := 0; n < len(wasm); n++ {
				checkInstrument(t, v, wasm[:n], false)
			}
		})
	}
}

// TestCorruptedModules changes single bytes of the small modules to
// values that matter to the format: LEB128 continuation bits, section and
// opcode boundaries, indices.
func TestCorruptedModules(t *testing.T) {
	v := newValidator(t)
	for name, wasm := range smallSeeds(t) {
		t.Run(name, func(t *testing.T) {
			buf := make([]byte, len(wasm))
			for i := 8; i < len(wasm); i++ {
				for _, b := range []byte{0x00, 0x01, 0x0b, 0x10, 0x40, 0x7f, 0x80, 0xff, wasm[i] ^ 0x80, wasm[i] + 1} {
					copy(buf, wasm)
					buf[i] = b
					checkInstrument(t, v, buf, false)
				}
			}
		})
	}
}

// TestGoModuleDamage cuts and corrupts the Go-built module at random
// places: Instrument must fail cleanly or produce a module, never panic.
// (Compiling each variant would take seconds, so only the small modules get
// the full before/after comparison.)
func TestGoModuleDamage(t *testing.T) {
	wasm := goGuest(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		n := rng.IntN(len(wasm))
		if _, err := Instrument(wasm[:n], Options{}); err == nil && n > 8 {
			// Only a cut at a section boundary leaves a well-formed module,
			// and the Go module's last sections (data, custom) are far
			// from any random cut but a few.
			t.Logf("prefix of %d bytes instruments cleanly", n)
		}
	}
	buf := make([]byte, len(wasm))
	for i := 0; i < 300; i++ {
		copy(buf, wasm)
		for j := 0; j < 1+rng.IntN(4); j++ {
			buf[8+rng.IntN(len(buf)-8)] = byte(rng.Uint32())
		}
		_, _ = Instrument(buf, Options{})
	}
	garbage := make([]byte, 4096)
	for i := 0; i < 300; i++ {
		for j := range garbage {
			garbage[j] = byte(rng.Uint32())
		}
		copy(garbage, wasmMagic)
		if _, err := Instrument(garbage[:rng.IntN(len(garbage))], Options{}); err == nil {
			t.Logf("random bytes instrumented cleanly")
		}
	}
}

// FuzzInstrument checks the contract of checkInstrument on arbitrary
// input: go test -fuzz=FuzzInstrument ./wasm/meter
func FuzzInstrument(f *testing.F) {
	for _, wasm := range smallSeeds(f) {
		f.Add(wasm)
		f.Add(wasm[:len(wasm)/2])
	}
	f.Add(append([]byte{}, wasmMagic...))
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x01\x80\x80\x80\x80\x00"))
	// Found by fuzzing: an empty custom section at the end (wazero bug,
	// see wazeroCustomSectionBug).
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x00\x0a\x09000000000"))
	v := newValidator(f)
	f.Fuzz(func(t *testing.T, wasm []byte) {
		checkInstrument(t, v, wasm, true)
	})
}

// TestRejectsModuleThatCrashesWazero: wazero v1.12's CompileModule panics
// (index out of range in func_validation.go) on a module whose function
// section names a type that does not exist, when another function calls
// it. Instrument checks type indices, so a module it returns cannot do
// that.
func TestRejectsModuleThatCrashesWazero(t *testing.T) {
	m := append([]byte{}, wasmMagic...)
	m = appendSection(m, secType, vecOf([]byte{typeFunc, 0, 0}))
	m = appendSection(m, secFunction, vecOf(u32(0), u32(9)))
	m = appendSection(m, secCode, vecOf(cat(u32(4), []byte{0, opCall, 1, opEnd}), cat(u32(2), []byte{0, opEnd})))
	if err := newValidator(t).valid(m); err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Logf("wazero no longer panics on this module (err = %v); the comment above is stale", err)
	}
	_, err := Instrument(m, Options{})
	if err == nil || !strings.Contains(err.Error(), "type index 9 out of range") {
		t.Fatalf("Instrument: err = %v, want a type index error", err)
	}
	t.Log(err)
}

// withoutNames returns wasm without its "name" custom sections.
func withoutNames(wasm []byte) []byte {
	m, err := parseModule(wasm)
	if err != nil {
		return wasm
	}
	out := append([]byte{}, wasmMagic...)
	for _, s := range m.sections {
		if s.id == secCustom {
			r := s.reader()
			if name, err := r.name("custom section name"); err == nil && string(name) == "name" {
				continue
			}
		}
		out = appendSection(out, s.id, s.data)
	}
	return out
}

func TestTooManyLocals(t *testing.T) {
	for _, tc := range []struct {
		locals uint32
		ok     bool
	}{{49_999, true}, {50_000, false}, {1 << 30, false}} { // plus one parameter
		m := rawModule{funcs: []rawFunc{{params: []byte{tI32}, export: "f"}}}.encode()
		// Replace the body (no locals) with one declaring tc.locals i32s.
		mod, err := parseModule(m)
		if err != nil {
			t.Fatal(err)
		}
		body := cat(vecOf(cat(u32(tc.locals), []byte{tI32})), []byte{opEnd})
		out := append([]byte{}, wasmMagic...)
		for _, s := range mod.sections {
			data := s.data
			if s.id == secCode {
				data = vecOf(cat(u32(uint32(len(body))), body))
			}
			out = appendSection(out, s.id, data)
		}
		_, err = Instrument(out, Options{})
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrLimit)) {
			t.Errorf("1 parameter + %d locals: err = %v", tc.locals, err)
		}
	}
}

// wazeroCustomSectionBug reports wazero v1.12 rejecting a valid module
// whose last section is a custom section with an empty payload (with debug
// info enabled, the default, it reads the payload with bytes.Reader.Read,
// which returns io.EOF for an empty read at the end). Instrument may add
// sections after it, and wazero then accepts the module, as it should.
func wazeroCustomSectionBug(err error) bool {
	return strings.Contains(err.Error(), "failed to read custom section") && strings.HasSuffix(err.Error(), "EOF")
}

// TestHostileTinyModules: each of these modules, a few dozen bytes, makes
// wazero v1.12's CompileModule spend seconds or gigabytes (the last one is
// a fatal out-of-memory error that no recover catches), because it sizes
// allocations by untrusted counts. Instrument must reject each at once.
func TestHostileTinyModules(t *testing.T) {
	for name, wasm := range map[string][]byte{
		"export name of 233 MB": []byte("\x00asm\x01\x00\x00\x00\x01\t\x02`\x01\x7f\x01\x7f`\x00\x00\x03\x03\x02\x00\x01\a\x10\xee\xee\xeeoop\x00\x00\x05"),
		"16M locals": cat(wasmMagic,
			appendSection(nil, secType, vecOf([]byte{typeFunc, 0, 0})),
			appendSection(nil, secFunction, vecOf(u32(0))),
			appendSection(nil, secCode, vecOf(cat(u32(7), vecOf(cat(u32(1<<24), []byte{tI32})), []byte{opEnd})))),
		"2 billion globals": cat(wasmMagic, appendSection(nil, secGlobal, u32(1<<31))),
		"found by fuzzing, 42 bytes, wazero runs out of memory": []byte("\x00asm\x01\x00\x00\x00\x06\x10\xee\xff\xd8\xff\x05\x10\x000\x0000000S\xd8\xff\x05\x10\x000\x000000000000"),
		"4 billion data segments":                               cat(wasmMagic, appendSection(nil, secData, u32(1<<32-1))),
		"4 billion tables":                                      cat(wasmMagic, appendSection(nil, secTable, u32(1<<32-1))),
	} {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := Instrument(wasm, Options{})
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("Instrument accepted the module")
			}
			// The bound is on memory, which the machine's load does not
			// change; the time is logged.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
				t.Errorf("rejecting took %v and %d bytes", took, alloc)
			}
			t.Log(took, err)
		})
	}
}

// namesReadable reports whether Instrument keeps the module's name section
// (true when there is none).
func (m *module) namesReadable() bool {
	for _, s := range m.sections {
		if s.id != secCustom {
			continue
		}
		r := s.reader()
		if name, err := r.name("custom section name"); err == nil && string(name) == "name" {
			if _, err := m.rewriteNames(&reader{b: r.b[r.pos:], base: r.offset()}); err != nil {
				return false
			}
		}
	}
	return true
}
