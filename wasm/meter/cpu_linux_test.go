package meter

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero/api"
)

// waitModule exports "run" (n i32) -> i32, which calls the import
// test.wait, counts to n, calls test.wait again and counts on to 2n; it
// returns 2n. With a small Config.Interval the counting loops reach many
// checks after each wait.
func waitModule() []byte {
	wait := u32(0)
	count := func(limit []byte) []byte { // local1 += 1 while local1 < limit
		return cat(
			[]byte{opLoop, blockTypeEmpty},
			[]byte{opLocalGet, 0x01}, i32Const(1), []byte{0x6a, opLocalTee, 0x01},
			limit, []byte{0x48, 0x0d, 0x00}, // i32.lt_s, br_if 0
			[]byte{opEnd},
		)
	}
	return rawModule{
		imports: []rawImport{{module: "test", name: "wait"}},
		funcs: []rawFunc{{
			params: []byte{tI32}, results: []byte{tI32}, locals: []byte{tI32},
			body: cat(
				[]byte{opCall}, wait,
				count([]byte{opLocalGet, 0x00}),
				[]byte{opCall}, wait,
				count([]byte{opLocalGet, 0x00, opLocalGet, 0x00, 0x6a}),
				[]byte{opLocalGet, 0x01},
			),
			export: "run",
		}},
	}.encode()
}

// TestDeadlineCountsCPUNotWaiting: the budget is CPU time. A guest call
// that spends three times its budget blocked in a host function, twice
// (once before the meter starts counting CPU, once while it counts, with
// the goroutine pinned), but little CPU, is not stopped; with the
// wall-clock deadline it was, at the first check after the first wait.
// Time a thread spends descheduled is the same to the CPU clock (the e2e
// test TestDeadlineUnderCPUStarvation runs that with spinning processes).
// A guest spinning on the CPU under the same budget is still stopped, and
// only after it used its budget of CPU.
func TestDeadlineCountsCPUNotWaiting(t *testing.T) {
	const budget = 50 * time.Millisecond
	m := New(Config{Interval: 1000}) // a check every ~1000 instructions
	h := newHost(t, compilerConfig(), m)
	ctx := context.Background()
	waits := 0
	_, err := h.rt.NewHostModuleBuilder("test").
		NewFunctionBuilder().
		WithGoFunction(api.GoFunc(func(context.Context, []uint64) {
			waits++
			<-time.After(3 * budget) // blocked: no CPU
		}), nil, nil).
		Export("wait").
		Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mod := h.instantiate(t, mustInstrument(t, waitModule()))
	var d Deadline
	callCtx := WithDeadline(ctx, &d)

	d.SetTimeout(budget)
	start := time.Now()
	res, err := mod.ExportedFunction("run").Call(callCtx, 100_000)
	d.Clear()
	wall := time.Since(start)
	checks := m.Stats().Checks
	if err != nil {
		t.Fatalf("a call that waited %v in host functions but used little CPU was stopped (budget %v): %v", wall, budget, err)
	}
	if res[0] != 200_000 || waits != 2 {
		t.Fatalf("run(100000) = %d after %d waits, want 200000 after 2", res[0], waits)
	}
	if wall < 6*budget || checks < 100 {
		t.Fatalf("the call took %v and %d checks: the test needs well over its budget of wall-clock time and checks after the waits", wall, checks)
	}
	if s := m.Stats(); s.DeadlineHits != 0 {
		t.Fatalf("stats = %+v, want no deadline hit", s)
	}
	t.Logf("%v of wall-clock time, %d checks, not stopped", wall, checks)

	// A CPU loop with the same budget is stopped, after using it.
	spin := h.instantiate(t, mustInstrument(t, spinModule()))
	cpu0 := processCPU()
	err, took := callBounded(t, time.Minute, func() error {
		d.SetTimeout(budget)
		_, err := spin.ExportedFunction("spin").Call(callCtx)
		d.Clear()
		return err
	})
	cpu := processCPU() - cpu0
	checkDeadlineErr(t, err)
	if cpu < budget {
		t.Errorf("the spinning guest was stopped after %v of process CPU, before its %v budget was used", cpu, budget)
	}
	// The bound: budget + CountAfter + two check intervals, plus the
	// test's other goroutines. Generous, because only "bounded" matters.
	if cpu > budget+time.Second {
		t.Errorf("the spinning guest was stopped after %v of process CPU; budget %v", cpu, budget)
	}
	if s := m.Stats(); s.DeadlineHits != 1 {
		t.Errorf("stats = %+v, want 1 deadline hit", s)
	}
	t.Logf("spin stopped after %v of process CPU, %v of wall-clock time", cpu, took)
}

// BenchmarkClock compares the clocks the meter reads: the monotonic clock
// (vDSO), read at every check and by SetTimeout, and the thread CPU clock
// (clock_gettime(CLOCK_THREAD_CPUTIME_ID), which the vDSO does not serve:
// a system call), read only at checks of calls that ran CountAfter; and
// what pinning a goroutine to its thread costs when nothing blocks. The
// CPU clock's resolution (clock_getres) is reported too.
func BenchmarkClock(b *testing.B) {
	var sink int64
	b.Run("monotonic", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			sink += monotonicNow()
		}
	})
	b.Run("threadCPU", func(b *testing.B) {
		var ts syscall.Timespec
		syscall.RawSyscall(syscall.SYS_CLOCK_GETRES, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
		for i := 0; i < b.N; i++ {
			sink += threadCPU()
		}
		b.ReportMetric(float64(ts.Nano()), "resolution-ns")
	})
	b.Run("lock+unlockOSThread", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			runtime.LockOSThread()
			runtime.UnlockOSThread()
		}
	})
	// A yield, and a round trip through a channel to another goroutine
	// (a host function that blocks), unpinned and pinned: a pinned
	// goroutine's thread sleeps and another takes its P, then the
	// scheduler must wake that very thread again.
	for _, pinned := range []bool{false, true} {
		suffix := ""
		if pinned {
			suffix = "/pinned"
		}
		b.Run("gosched"+suffix, func(b *testing.B) {
			if pinned {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
			}
			for i := 0; i < b.N; i++ {
				runtime.Gosched()
			}
		})
		b.Run("block"+suffix, func(b *testing.B) {
			ping, pong := make(chan struct{}), make(chan struct{})
			go func() {
				for range ping {
					pong <- struct{}{}
				}
			}()
			defer close(ping)
			if pinned {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
			}
			for i := 0; i < b.N; i++ {
				ping <- struct{}{}
				<-pong
			}
		})
	}
	_ = sink
}

// TestThreadCPUClock: the CPU clock of a pinned thread advances by about
// the CPU the thread burns, and not while it sleeps; it is what the
// budget counts.
func TestThreadCPUClock(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0 := threadCPU()
	<-time.After(50 * time.Millisecond)
	slept := threadCPU() - c0
	if slept > int64(20*time.Millisecond) {
		t.Errorf("the thread's CPU clock advanced %v while it slept 50 ms", time.Duration(slept))
	}
	c0, w0 := threadCPU(), time.Now()
	for time.Since(w0) < 20*time.Millisecond {
	}
	spun := threadCPU() - c0
	if spun <= 0 {
		t.Errorf("the thread's CPU clock did not advance while it spun (%v)", time.Duration(spun))
	}
	// The two clocks come from different sources (scheduler clock,
	// clocksource): allow them a millisecond of disagreement.
	if spun > int64(time.Since(w0)+time.Millisecond) {
		t.Errorf("the thread's CPU clock advanced %v, more than the wall clock (%v)", time.Duration(spun), time.Since(w0))
	}
	t.Logf("CPU clock while sleeping 50 ms: %v; while spinning for 20 ms of wall time: %v", time.Duration(slept), time.Duration(spun))
}
