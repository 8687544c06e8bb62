package meter

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Benchmarks for docs/perf.md ("Deadline enforcement"):
//
//	go test -run '^$' -bench . -benchtime 2s -count 3 ./wasm/meter
//
// BenchmarkGuestCall compares the cost of one guest call under each way of
// bounding it:
//
//	plain                     no deadline at all (the floor)
//	meter                     instrumented module, default Meter, Deadline.SetTimeout and Clear per call
//	meter/interval=N          the same with another Config.Interval
//	closeOnDone/ctxPerCall    wazero WithCloseOnContextDone(true) and a
//	                          context.WithTimeout per call (what a proxy would do)
//	closeOnDone/sharedCtx     the same with one long-lived cancellable context,
//	                          to separate the per-loop exit from context setup

type benchWorkload struct {
	name   string
	module func(testing.TB) []byte
	export string
	params []uint64
	want   uint64 // first result, checked once
}

func benchWorkloads() []benchWorkload {
	return []benchWorkload{
		{"json", goGuest, "validate", []uint64{uint64(len(jsonDoc))}, 1},
		{"loop1e6/go", goGuest, "loop", []uint64{1_000_000}, goLoop(1_000_000)},
		{"loop1e6/wat", func(testing.TB) []byte { return loopModule() }, "loop", []uint64{1_000_000}, 1_000_000},
		{"empty/go", goGuest, "empty", nil, 0},
		{"empty/wat", func(testing.TB) []byte { return loopModule() }, "empty", nil, 0},
	}
}

type benchMode struct {
	name         string
	instrumented bool
	interval     int32
	yieldAfter   time.Duration
	closeOnDone  bool
	ctxPerCall   bool
}

var benchModes = []benchMode{
	{name: "plain"},
	{name: "meter", instrumented: true},
	{name: "meter/interval=1M", instrumented: true, interval: 1_000_000},
	{name: "meter/interval=100k", instrumented: true, interval: 100_000},
	{name: "closeOnDone/ctxPerCall", closeOnDone: true, ctxPerCall: true},
	{name: "closeOnDone/sharedCtx", closeOnDone: true},
}

// benchInstance is a fresh instance of a workload's module for one mode.
// The runtime and compiled module are kept across benchmarks (compiling the
// Go guest takes seconds); the instance is not, because a Go guest slows
// down as its heap ages, which would bias comparisons against whichever
// side ran longer.
type benchInstance struct {
	fn    api.Function
	meter *Meter
	mod   api.Module
}

type benchCompiled struct {
	host  *host
	code  wazero.CompiledModule
	meter *Meter
}

var (
	benchMu       sync.Mutex
	benchCompiles = map[string]*benchCompiled{}
)

func getBenchInstance(b *testing.B, w benchWorkload, mode benchMode) *benchInstance {
	benchMu.Lock()
	key := w.name + "|" + mode.name
	bc := benchCompiles[key]
	if bc == nil {
		code := w.module(b)
		var m *Meter
		if mode.instrumented {
			code = mustInstrument(b, code)
			m = New(Config{Interval: mode.interval, YieldAfter: mode.yieldAfter})
		}
		rc := wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(mode.closeOnDone)
		h := newHostNoCleanup(b, rc, m)
		cm, err := h.rt.CompileModule(context.Background(), code)
		if err != nil {
			b.Fatal(err)
		}
		bc = &benchCompiled{host: h, code: cm, meter: m}
		benchCompiles[key] = bc
	}
	benchMu.Unlock()

	ctx := context.Background()
	cfg := wazero.NewModuleConfig().WithName("")
	if _, ok := bc.code.ExportedFunctions()["_initialize"]; ok {
		cfg = cfg.WithStartFunctions("_initialize")
	}
	mod, err := bc.host.rt.InstantiateModule(ctx, bc.code, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mod.Close(ctx) })
	if fn := mod.ExportedFunction("buffer"); fn != nil {
		res, err := fn.Call(ctx)
		if err != nil || !mod.Memory().Write(uint32(res[0]), []byte(jsonDoc)) {
			b.Fatalf("writing the JSON input: %v", err)
		}
	}
	bi := &benchInstance{fn: mod.ExportedFunction(w.export), meter: bc.meter, mod: mod}
	stack := make([]uint64, max(len(w.params), len(bi.fn.Definition().ResultTypes())))
	copy(stack, w.params)
	if err := bi.fn.CallWithStack(WithDeadline(ctx, &Deadline{}), stack); err != nil {
		b.Fatal(err)
	}
	if len(bi.fn.Definition().ResultTypes()) > 0 && uint32(stack[0]) != uint32(w.want) {
		b.Fatalf("%s: result %d, want %d", key, stack[0], w.want)
	}
	return bi
}

// newHostNoCleanup is newHost for instances cached across benchmarks:
// they live until the process exits, so the runtime must not be closed
// when the first sub-benchmark ends.
func newHostNoCleanup(b *testing.B, rc wazero.RuntimeConfig, m *Meter) *host {
	return newHost(noCleanupTB{b}, rc, m)
}

type noCleanupTB struct{ testing.TB }

func (noCleanupTB) Cleanup(func()) {}

func BenchmarkGuestCall(b *testing.B) {
	for _, w := range benchWorkloads() {
		b.Run(w.name, func(b *testing.B) {
			for _, mode := range benchModes {
				b.Run(mode.name, func(b *testing.B) {
					bi := getBenchInstance(b, w, mode)
					stack := make([]uint64, max(len(w.params), len(bi.fn.Definition().ResultTypes())))
					var d Deadline
					ctx := WithDeadline(context.Background(), &d)
					var cancelShared context.CancelFunc
					if mode.closeOnDone && !mode.ctxPerCall {
						ctx, cancelShared = context.WithCancel(context.Background())
						defer cancelShared()
					}
					var before Stats
					if bi.meter != nil {
						before = bi.meter.Stats()
					}
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						copy(stack, w.params)
						var err error
						switch {
						case mode.instrumented:
							d.SetTimeout(time.Second)
							err = bi.fn.CallWithStack(ctx, stack)
							d.Clear()
						case mode.ctxPerCall:
							callCtx, cancel := context.WithTimeout(ctx, time.Second)
							err = bi.fn.CallWithStack(callCtx, stack)
							cancel()
						default:
							err = bi.fn.CallWithStack(ctx, stack)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					if bi.meter != nil {
						b.ReportMetric(float64(bi.meter.Stats().Checks-before.Checks)/float64(b.N), "checks/op")
					}
				})
			}
		})
	}
}

// BenchmarkInstrument measures the one-off rewrite of the 3.3 MB Go guest.
func BenchmarkInstrument(b *testing.B) {
	wasm := goGuest(b)
	b.SetBytes(int64(len(wasm)))
	var out []byte
	for i := 0; i < b.N; i++ {
		var err error
		if out, err = Instrument(wasm, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(out))/float64(len(wasm)), "size-ratio")
}

// BenchmarkCompile measures what instrumentation adds to compiling the Go
// guest with the compiler engine (no compilation cache). Slow: one
// iteration is about a second.
func BenchmarkCompile(b *testing.B) {
	for _, instrumented := range []bool{false, true} {
		b.Run(fmt.Sprintf("instrumented=%v", instrumented), func(b *testing.B) {
			wasm := goGuest(b)
			if instrumented {
				wasm = mustInstrument(b, wasm)
			}
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
				if _, err := rt.CompileModule(ctx, wasm); err != nil {
					b.Fatal(err)
				}
				rt.Close(ctx)
			}
		})
	}
}

// BenchmarkDeadlineSet is the per-call cost the meter adds on the host
// side: SetTimeout before the call and Clear after it.
func BenchmarkDeadlineSet(b *testing.B) {
	var d Deadline
	for i := 0; i < b.N; i++ {
		d.SetTimeout(time.Second)
		d.Clear()
	}
}

// BenchmarkCheck is the Go side of one check, without the guest→host
// transition: counter, clock read, context lookups, and a yield once per
// millisecond of benchmark, as a long guest call would. "short" is a
// check in the first CountAfter of a call (nearly every check: no CPU
// clock read); "counting" one after it, which reads the thread's CPU
// clock (Linux) with the goroutine pinned, and yields under the pin.
func BenchmarkCheck(b *testing.B) {
	for _, counting := range []bool{false, true} {
		name := "short"
		if counting {
			name = "counting"
		}
		b.Run(name, func(b *testing.B) {
			m := New(Config{})
			var d Deadline
			ctx := WithDeadline(context.Background(), &d)
			stack := make([]uint64, 1)
			d.SetTimeout(time.Hour)
			if counting {
				d.start -= int64(CountAfter) // as if the call had run 1 ms
				m.check(ctx, nil, stack)     // starts counting
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if !counting && i%1024 == 0 {
					d.SetTimeout(time.Hour) // stay in the call's first millisecond
				}
				m.check(ctx, nil, stack)
			}
			b.StopTimer()
			d.Clear()
		})
	}
}
