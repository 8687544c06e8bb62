package meter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"
)

// callResult runs fn with a generous bound so that a broken meter fails the
// test instead of hanging it.
func callBounded(t *testing.T, bound time.Duration, fn func() error) (error, time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err, time.Since(start)
	case <-time.After(bound):
		t.Fatalf("guest still running after %v: the deadline did not stop it", bound)
		return nil, 0
	}
}

// ownContext is a context type of a caller's own that answers
// DeadlineKey itself, as DeadlineKey's contract allows (the wasm package's
// call context does so).
type ownContext struct {
	context.Context // Background: no deadline, never done
	d               *Deadline
}

func (c ownContext) Value(key any) any {
	if _, ok := key.(DeadlineKey); ok {
		return c.d
	}
	return nil
}

type otherKey struct{}

// deadlineContexts are the ways a guest call's context may carry its
// Deadline: WithDeadline's, a context derived from that one, and a type of
// the caller's own answering DeadlineKey.
var deadlineContexts = []struct {
	name string
	of   func(*Deadline) context.Context
}{
	{"WithDeadline", func(d *Deadline) context.Context { return WithDeadline(context.Background(), d) }},
	{"derived", func(d *Deadline) context.Context {
		return context.WithValue(WithDeadline(context.Background(), d), otherKey{}, 1)
	}},
	{"own type", func(d *Deadline) context.Context { return ownContext{context.Background(), d} }},
}

func TestDeadlineStopsHandMadeModules(t *testing.T) {
	type module struct {
		name, export string
		wasm         []byte
		params       []uint64
	}
	var cases []struct {
		module
		ctx func(*Deadline) context.Context
	}
	for _, m := range []module{
		{"loop", "spin", spinModule(), nil},
		{"recursion without loops", "rec", recursionModule(), []uint64{60}},
	} {
		for _, c := range deadlineContexts {
			cases = append(cases, struct {
				module
				ctx func(*Deadline) context.Context
			}{module{m.name + "/" + c.name, m.export, m.wasm, m.params}, c.of})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := New(Config{})
			h := newHost(t, compilerConfig(), m)
			mod := h.instantiate(t, mustInstrument(t, tc.wasm))
			var d Deadline
			ctx := tc.ctx(&d)
			d.SetTimeout(50 * time.Millisecond)
			err, took := callBounded(t, time.Minute, func() error {
				_, err := mod.ExportedFunction(tc.export).Call(ctx, tc.params...)
				d.Clear()
				return err
			})
			checkDeadlineErr(t, err)
			// The budget is CPU time, which a thread cannot use faster
			// than the wall clock runs; how much later than 50 ms it
			// stops depends on the machine's load.
			if took < 50*time.Millisecond {
				t.Errorf("stopped after %v, before the 50ms budget could be used", took)
			}
			if s := m.Stats(); s.DeadlineHits != 1 || s.Checks == 0 {
				t.Errorf("stats = %+v, want 1 deadline hit and some checks", s)
			}
			t.Logf("stopped after %v; %+v", took, m.Stats())
		})
	}
}

func checkDeadlineErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("guest call returned no error")
	}
	if !errors.Is(err, ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %q is not ErrDeadlineExceeded / context.DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "deadline exceeded") || !strings.Contains(err.Error(), "wasm stack trace") {
		t.Fatalf("error %q should say deadline exceeded and carry the guest stack", err)
	}
}

func TestDeadlineStopsGoModule(t *testing.T) {
	m := New(Config{})
	h := newHost(t, compilerConfig(), m)
	mod := h.instantiate(t, mustInstrument(t, goGuest(t)))
	var d Deadline
	ctx := WithDeadline(context.Background(), &d)

	// A call within its deadline is unaffected.
	d.SetTimeout(10 * time.Second)
	if res, err := mod.ExportedFunction("loop").Call(ctx, 1000); err != nil || res[0] != goLoop(1000) {
		t.Fatalf("loop(1000) = %v, %v", res, err)
	}

	d.SetTimeout(100 * time.Millisecond)
	err, took := callBounded(t, time.Minute, func() error {
		_, err := mod.ExportedFunction("spin").Call(ctx)
		d.Clear()
		return err
	})
	checkDeadlineErr(t, err)
	if !strings.Contains(err.Error(), "main.spin") {
		t.Errorf("guest stack trace should name main.spin: %v", err)
	}
	t.Logf("for {} stopped after %v", took)

	// The instance is closed: later calls fail at once, without running
	// the interrupted Go runtime.
	if !mod.IsClosed() {
		t.Fatal("instance still open after a deadline hit")
	}
	d.SetTimeout(10 * time.Second)
	_, err = mod.ExportedFunction("loop").Call(ctx, 10)
	var exit *sys.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != sys.ExitCodeDeadlineExceeded {
		t.Fatalf("call after the hit: err = %v, want exit error with ExitCodeDeadlineExceeded", err)
	}

	// A fresh instance of the same compiled code works.
	fresh := h.instantiate(t, mustInstrument(t, goGuest(t)))
	if res, err := fresh.ExportedFunction("loop").Call(ctx, 1000); err != nil || res[0] != goLoop(1000) {
		t.Fatalf("fresh instance: loop(1000) = %v, %v", res, err)
	}
	if s := m.Stats(); s.DeadlineHits != 1 {
		t.Errorf("stats = %+v, want 1 deadline hit", s)
	}
}

// goLoop is testdata/guest's loop in native Go.
func goLoop(n int32) uint64 {
	x := int32(1)
	for i := int32(0); i < n; i++ {
		x = x*31 + i
	}
	return uint64(uint32(x))
}

func TestContextCancellationStopsGuest(t *testing.T) {
	m := New(Config{})
	h := newHost(t, compilerConfig(), m)
	mod := h.instantiate(t, mustInstrument(t, spinModule()))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	err, _ := callBounded(t, 10*time.Second, func() error {
		_, err := mod.ExportedFunction("spin").Call(ctx)
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if s := m.Stats(); s.Cancellations != 1 || s.DeadlineHits != 0 {
		t.Errorf("stats = %+v", s)
	}
}

// TestGuestDoesNotPinTheP runs a spinning guest with GOMAXPROCS=1. Without
// checks, no other goroutine (this test's included) and no garbage
// collection could run until the guest stopped; with checks but no yield
// (YieldAfter < 0) sleep + GC took 3–5 s here, like next to a spinning
// pure-Go goroutine; with the default 1 ms yield, about 0.2 s.
func TestGuestDoesNotPinTheP(t *testing.T) {
	m := New(Config{})
	h := newHost(t, compilerConfig(), m)
	mod := h.instantiate(t, mustInstrument(t, goGuest(t)))
	fn := mod.ExportedFunction("spin")

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var d Deadline
	ctx := WithDeadline(context.Background(), &d)
	d.SetTimeout(time.Minute)
	done := make(chan error, 1)
	go func() {
		_, err := fn.Call(ctx)
		done <- err
	}()
	runtime.Gosched() // let the guest start
	// The guest spins until Expire below, so a GC that returns at all
	// (it needs every P to stop: the guest must reach a check) shows the
	// guest does not pin the P. How long it took is logged, not judged:
	// this machine is shared.
	start := time.Now()
	time.Sleep(10 * time.Millisecond)
	gcDone := make(chan struct{})
	go func() { runtime.GC(); close(gcDone) }()
	select {
	case <-gcDone:
		t.Logf("sleep(10ms) + GC next to a spinning guest on one P: %v", time.Since(start))
	case err := <-done:
		t.Fatalf("the guest stopped before it was expired: %v", err)
	case <-time.After(5 * time.Minute):
		t.Fatal("no GC could run next to a spinning guest: it pins the P")
	}

	d.Expire() // stop it from outside
	select {
	case err := <-done:
		checkDeadlineErr(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Expire did not stop the guest")
	}
}

// callAll calls every export of mod with args chosen per name and returns
// a transcript of results, errors and the side effects tests can see.
func callAll(t *testing.T, h *host, mod api.Module, args map[string][][]uint64) string {
	t.Helper()
	var b strings.Builder
	ctx := WithDeadline(context.Background(), &Deadline{})
	names := sortedKeys(args)
	for _, name := range names {
		fn := mod.ExportedFunction(name)
		if fn == nil {
			t.Fatalf("export %q missing", name)
		}
		for _, a := range args[name] {
			res, err := fn.Call(ctx, a...)
			if err != nil {
				// Keep only the first line: stack traces differ by design.
				msg, _, _ := strings.Cut(err.Error(), "\n")
				fmt.Fprintf(&b, "%s%v: error %s\n", name, a, msg)
				continue
			}
			fmt.Fprintf(&b, "%s%v = %v (log %d)\n", name, a, res, h.logged)
		}
	}
	if mem := mod.ExportedMemory("memory"); mem != nil {
		buf, _ := mem.Read(0, 1024)
		fmt.Fprintf(&b, "memory[0:1024] = %x\n", buf)
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

// TestSameResults runs modules before and after instrumentation and
// compares everything observable.
func TestSameResults(t *testing.T) {
	f32 := func(f float32) uint64 { return api.EncodeF32(f) }
	v2plus := wazero.NewRuntimeConfigCompiler().
		WithCoreFeatures(api.CoreFeaturesV2 | experimental.CoreFeaturesThreads | experimental.CoreFeaturesTailCall)
	for _, tc := range []struct {
		name string
		wasm func(testing.TB) []byte
		rc   wazero.RuntimeConfig
		args map[string][][]uint64
	}{
		{
			name: "rich (imports, tables, elements, start, SIMD, bulk memory)",
			wasm: func(tb testing.TB) []byte { return readTestdata(tb, "rich.wasm") },
			rc:   compilerConfig(),
			args: map[string][][]uint64{
				"sum": {{0}, {10}, {1000}}, "fact": {{0}, {5}, {20}}, "indirect": {{0, 21}, {1, 9}, {2, 4}, {5, 1}, {6, 1}},
				"reffunc": {{3}}, "funcref_global": {{8}}, "multi": {{1}, {10}, {100}}, "brtable": {{0}, {1}, {2}, {3}, {9}},
				"bulk": {{}}, "numeric": {{0x1ff, f32(-3.7)}, {5, f32(1e20)}}, "simd": {{1}, {0x01020304}},
				"select_ref": {{0}, {1}}, "table2": {{0, 5}, {1, 5}, {2, 5}}, "counter_value": {{}},
			},
		},
		{
			name: "ext (tail calls, atomics)",
			wasm: func(tb testing.TB) []byte { return readTestdata(tb, "ext.wasm") },
			rc:   v2plus,
			args: map[string][][]uint64{"even": {{0}, {7}, {1_000_000}}, "atomics": {{3}}},
		},
		{
			name: "hand-made loop",
			wasm: func(testing.TB) []byte { return loopModule() },
			rc:   compilerConfig(),
			args: map[string][][]uint64{"loop": {{0}, {1}, {12345}}, "empty": {{}}},
		},
		{
			name: "Go-built (encoding/json, imports, 2000+ functions)",
			wasm: goGuest,
			rc:   compilerConfig(),
			args: map[string][][]uint64{
				"validate": {{uint64(len(jsonDoc))}, {10}, {0}}, "loop": {{0}, {1_000_000}},
				"addvia": {{5, 100}}, "fib": {{20}}, "empty": {{}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := tc.wasm(t)
			inst := mustInstrument(t, orig)
			var transcripts [2]string
			for i, code := range [][]byte{orig, inst} {
				var m *Meter
				if i == 1 {
					m = New(Config{Interval: 1000}) // check often, to exercise the refill path
				}
				h := newHost(t, tc.rc, m)
				mod := h.instantiate(t, code)
				if fn := mod.ExportedFunction("buffer"); fn != nil {
					res, err := fn.Call(context.Background())
					if err != nil || !mod.Memory().Write(uint32(res[0]), []byte(jsonDoc)) {
						t.Fatalf("writing the JSON input: %v", err)
					}
				}
				transcripts[i] = callAll(t, h, mod, tc.args)
				if m != nil && m.Stats().Checks == 0 {
					t.Error("instrumented module never called check")
				}
			}
			if transcripts[0] != transcripts[1] {
				t.Errorf("results differ\nbefore:\n%s\nafter:\n%s", transcripts[0], transcripts[1])
			}
			t.Logf("%d -> %d bytes; transcript:\n%s", len(orig), len(inst), firstLines(transcripts[0], 30))
		})
	}
}

// jsonDoc is the seed's 59-byte request body.
const jsonDoc = `{"user":"alice","action":"login","ts":1700000000,"ok":true}`

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	for i, l := range lines {
		if len(l) > 160 {
			lines[i] = l[:160] + "…"
		}
	}
	return strings.Join(lines, "\n")
}

// TestStructurePreserved compares what wazero sees of a module before and
// after: same exports with the same signatures and names, same imports plus
// the check function, and the names of all functions shifted by one.
func TestStructurePreserved(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"rich.wasm", "go"} {
		t.Run(name, func(t *testing.T) {
			var orig []byte
			if name == "go" {
				orig = goGuest(t)
			} else {
				orig = readTestdata(t, name)
			}
			inst := mustInstrument(t, orig)
			rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
			defer rt.Close(ctx)
			a, err := rt.CompileModule(ctx, orig)
			if err != nil {
				t.Fatal(err)
			}
			b, err := rt.CompileModule(ctx, inst)
			if err != nil {
				t.Fatal(err)
			}
			describe := func(defs map[string]api.FunctionDefinition) string {
				var s strings.Builder
				for _, k := range sortedKeys(defs) {
					d := defs[k]
					fmt.Fprintf(&s, "%s=%s%v%v;", k, d.Name(), d.ParamTypes(), d.ResultTypes())
				}
				return s.String()
			}
			if x, y := describe(a.ExportedFunctions()), describe(b.ExportedFunctions()); x != y {
				t.Errorf("exports differ:\n%s\n%s", x, y)
			}
			ia, ib := a.ImportedFunctions(), b.ImportedFunctions()
			if len(ib) != len(ia)+1 {
				t.Fatalf("imports: %d -> %d, want one more", len(ia), len(ib))
			}
			for i := range ia {
				if ia[i].DebugName() != ib[i].DebugName() {
					t.Errorf("import %d: %s -> %s", i, ia[i].DebugName(), ib[i].DebugName())
				}
			}
			check := ib[len(ia)]
			if mod, fn, _ := check.Import(); mod != HostModule || fn != CheckFunction || len(check.ParamTypes()) != 0 ||
				!bytes.Equal(check.ResultTypes(), []api.ValueType{api.ValueTypeI32}) {
				t.Errorf("check import = %s %v -> %v", check.DebugName(), check.ParamTypes(), check.ResultTypes())
			}
			if len(b.ExportedMemories()) != len(a.ExportedMemories()) {
				t.Error("exported memories differ")
			}
		})
	}
}

func TestInstrumentedTwice(t *testing.T) {
	once := mustInstrument(t, spinModule())
	if _, err := Instrument(once, Options{}); !errors.Is(err, ErrAlreadyInstrumented) {
		t.Fatalf("second Instrument: err = %v, want ErrAlreadyInstrumented", err)
	}
}

// TestUnreadableDebugInfoDropped: DWARF that cannot be translated (here a
// line table without .debug_info) is left out, never copied with stale
// offsets; other custom sections stay.
func TestUnreadableDebugInfoDropped(t *testing.T) {
	mod := spinModule()
	debug := appendSection(nil, secCustom, cat(str(".debug_line"), []byte{1, 2, 3}))
	other := appendSection(nil, secCustom, cat(str("producers"), []byte{0}))
	mod = append(append(mod, debug...), other...)
	for _, opts := range []Options{{}, {DropDebugInfo: true}} {
		out, err := Instrument(mod, opts)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(out, []byte(".debug_line")) || !bytes.Contains(out, []byte("producers")) {
			t.Errorf("%+v: want .debug_line dropped and producers kept", opts)
		}
	}
}

// TestModulesWithoutSections covers modules that lack the type, import or
// global sections Instrument adds to, and a start function.
func TestModulesWithoutSections(t *testing.T) {
	for name, wasm := range map[string][]byte{
		"empty module": append([]byte{}, wasmMagic...),
		"start + global + names": rawModule{
			imports: []rawImport{{module: "env", name: "log", params: []byte{tI32}}},
			globals: []rawGlobal{{typ: tI32, mutable: true, init: i32Const(1), export: "g"}},
			funcs: []rawFunc{
				{body: cat([]byte{opGlobalGet, 0}, i32Const(41), []byte{0x6a, opGlobalSet, 0})},
				{results: []byte{tI32}, body: []byte{opGlobalGet, 0}, export: "get"},
			},
			start: 2, names: true,
		}.encode(),
	} {
		t.Run(name, func(t *testing.T) {
			m := New(Config{})
			h := newHost(t, compilerConfig(), m)
			mod := h.instantiate(t, mustInstrument(t, wasm))
			if fn := mod.ExportedFunction("get"); fn != nil {
				res, err := fn.Call(context.Background())
				if err != nil || res[0] != 42 {
					t.Fatalf("get() = %v, %v; want 42 (start ran once)", res, err)
				}
			}
		})
	}
}

// TestExpireStopsOnlyArmedCalls: Expire stops the call its Deadline arms;
// a Deadline that is not armed (a host-initiated call after Clear, such as
// the guest allocator outside a callback) ignores a stale Expire, and the
// next SetTimeout clears it.
func TestExpireStopsOnlyArmedCalls(t *testing.T) {
	m := New(Config{Interval: 1000})
	h := newHost(t, compilerConfig(), m)
	loop := h.instantiate(t, mustInstrument(t, loopModule())).ExportedFunction("loop")
	var d Deadline
	ctx := WithDeadline(context.Background(), &d)

	d.Expire() // nothing armed
	if res, err := loop.Call(ctx, 100_000); err != nil || res[0] != 100_000 {
		t.Fatalf("unarmed call after Expire: %v, %v; want it to run", res, err)
	}
	d.SetTimeout(time.Minute)
	res, err := loop.Call(ctx, 100_000)
	d.Clear()
	if err != nil || res[0] != 100_000 {
		t.Fatalf("armed call after a stale Expire: %v, %v; SetTimeout should have cleared it", res, err)
	}

	spin := h.instantiate(t, mustInstrument(t, spinModule())).ExportedFunction("spin")
	d.SetTimeout(time.Minute)
	d.Expire()
	err, _ = callBounded(t, time.Minute, func() error {
		_, err := spin.Call(ctx)
		d.Clear()
		return err
	})
	checkDeadlineErr(t, err)
	if s := m.Stats(); s.DeadlineHits != 1 {
		t.Errorf("stats = %+v, want 1 deadline hit", s)
	}
}
