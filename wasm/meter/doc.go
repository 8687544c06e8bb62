// Package meter makes WebAssembly guests stoppable and preemptible at a
// cost the data path can afford.
//
// wazero's own answer, WithCloseOnContextDone, makes compiled code leave
// native execution at every loop iteration to look at the context, which
// made a Go-built JSON plugin 2.7x slower and a tight loop 21x slower
// (docs/perf.md). And while a guest runs, Go cannot preempt it: a runaway
// plugin holds its P and stalls garbage-collection stop-the-world phases.
//
// This package rewrites a module once, at load (Instrument), so that it
// keeps a fuel counter in a global, decremented at each function entry and
// loop header, and calls the host (Meter's check function) only when the
// fuel runs out, once per Config.Interval instructions at most. The check
// stops the guest when its Deadline has passed and otherwise yields the
// processor. A Deadline is a budget of CPU time, not of wall-clock time
// (on Linux; see Deadline), so a busy machine never stops a healthy
// guest. docs/decisions.md records why it is built this way.
//
// Typical use:
//
//	code, err := meter.Instrument(raw, meter.Options{})
//	m := meter.New(meter.Config{})
//	m.Instantiate(ctx, runtime)           // once per wazero.Runtime
//	compiled, err := runtime.CompileModule(ctx, code)
//	inst, err := runtime.InstantiateModule(ctx, compiled, cfg)
//	var d meter.Deadline                  // one per instance
//	callCtx := meter.WithDeadline(ctx, &d) // once per instance
//	d.SetTimeout(100 * time.Millisecond)  // before each guest call: 100 ms of CPU
//	err = fn.CallWithStack(callCtx, stack)
//	d.Clear()                             // after it, on the same goroutine
//	if errors.Is(err, meter.ErrDeadlineExceeded) { /* instance is closed; replace it */ }
package meter

// The hand-written test modules are committed in binary form so tests need
// no WebAssembly toolchain; regenerate them after editing the .wat sources
// (wabt's wat2wasm, Debian package "wabt").
//go:generate wat2wasm --debug-names testdata/rich.wat -o testdata/rich.wasm
//go:generate wat2wasm --enable-tail-call --enable-threads --debug-names testdata/ext.wat -o testdata/ext.wasm

// The DWARF test plugin is compiled from C (Debian: clang, lld).
//go:generate sh testdata/lines.sh
