package meter

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// DefaultInterval is the fuel a guest gets per check when Config.Interval
// is 0: at most ten million instructions between checks (fuel is an upper
// bound on instructions executed; see Instrument). Measured spacing: about
// 60 µs in Go-built JSON code, whose large loop bodies are charged in full
// on each pass, 240 µs in a Go loop, 570 µs in a tight hand-written loop.
// That is also how long a running guest can delay a garbage collection's
// stop-the-world. One million would check ten times as often and cost the
// JSON plugin 1–2 points more; docs/perf.md has the measurements.
const DefaultInterval = 10_000_000

// maxInterval keeps fuel arithmetic inside int32 (see maxRegionCost).
const maxInterval = 1 << 30

// ErrDeadlineExceeded is the cause of a guest call stopped by its Deadline.
// The error returned by the guest call wraps it (errors.Is works) and adds
// wazero's guest stack trace, which shows where the guest was running.
// It also matches context.DeadlineExceeded, so code that handles wazero's
// own context-based termination handles this too.
var ErrDeadlineExceeded error = deadlineError{}

type deadlineError struct{}

func (deadlineError) Error() string {
	return "wasm guest call ran past its deadline: deadline exceeded"
}

func (deadlineError) Is(target error) bool { return target == context.DeadlineExceeded }

// Config configures a Meter.
type Config struct {
	// Interval is the fuel the check function hands out each time it is
	// called, that is, the instructions a guest may run between two checks
	// (an upper bound; see Instrument). 0 means DefaultInterval; values are
	// capped at 1<<30.
	Interval int32

	// YieldAfter is how long a guest call may run before a check yields
	// the processor with runtime.Gosched, and again after each yield. 0
	// means DefaultYieldAfter; a negative value means never. Guest calls
	// whose context carries no Deadline yield at every check.
	//
	// Without yielding, a check still lets the Go scheduler in: it is a
	// call into Go code, whose function prologues honour pending
	// preemption requests (sysmon's 10 ms time slice, a garbage
	// collection's stop-the-world), so a guest is preempted like any Go
	// code, at its next check. Yielding earlier shares the P at a finer
	// grain; yielding at every check costs 1–3 µs per check on an
	// otherwise idle machine (Gosched wakes another thread to look for
	// work), which is why it is rationed by time.
	YieldAfter time.Duration
}

// DefaultYieldAfter is the default Config.YieldAfter: a tenth of the Go
// scheduler's own 10 ms time slice. Callbacks that finish sooner (nearly
// all) never yield.
const DefaultYieldAfter = time.Millisecond

// Stats are a Meter's counters since it was created.
type Stats struct {
	Checks        uint64 // calls of the check function
	DeadlineHits  uint64 // guest calls stopped because their Deadline passed
	Cancellations uint64 // guest calls stopped because their context was done
}

// Meter is the host side of instrumented modules: it provides the
// HostModule.CheckFunction import. Each time a guest runs out of fuel the
// check function counts the check, stops the guest if its Deadline has
// passed or its context is done, gives the Go scheduler a chance (Go cannot
// preempt Wasm code, so without checks a long guest computation would hold
// its P and stall the garbage collector's stop-the-world phases; see
// Config.YieldAfter), and refills the fuel.
//
// Stopping a guest closes its module instance (exit code
// sys.ExitCodeDeadlineExceeded or sys.ExitCodeContextCanceled) and panics
// with the cause, which wazero turns into the error the guest call returns.
// Closing is deliberate: the guest was interrupted at an arbitrary point —
// a Go-built guest in the middle of its scheduler or allocator — so its
// memory can no longer be trusted, and every later call must fail at once
// (with a *sys.ExitError) instead of running on corrupt state. The owner
// should discard the instance and make a new one.
//
// A Meter is safe for concurrent use by any number of instances and
// goroutines.
type Meter struct {
	interval      int32
	yieldAfter    int64 // ns; < 0 = never
	checks        atomic.Uint64
	deadlineHits  atomic.Uint64
	cancellations atomic.Uint64
}

// New returns a Meter.
func New(cfg Config) *Meter {
	iv := cfg.Interval
	if iv <= 0 {
		iv = DefaultInterval
	}
	ya := cfg.YieldAfter
	if ya == 0 {
		ya = DefaultYieldAfter
	}
	return &Meter{interval: min(iv, maxInterval), yieldAfter: int64(ya)}
}

// Interval is the fuel handed out per check.
func (m *Meter) Interval() int32 { return m.interval }

// Stats returns the counters.
func (m *Meter) Stats() Stats {
	return Stats{
		Checks:        m.checks.Load(),
		DeadlineHits:  m.deadlineHits.Load(),
		Cancellations: m.cancellations.Load(),
	}
}

// Instantiate adds the host module HostModule to r. Do it once per runtime,
// before instantiating instrumented modules; close the returned module
// (or the runtime) to remove it.
func (m *Meter) Instantiate(ctx context.Context, r wazero.Runtime) (api.Module, error) {
	mod, err := r.NewHostModuleBuilder(HostModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(m.check), nil, []api.ValueType{api.ValueTypeI32}).
		WithName(CheckFunction).
		Export(CheckFunction).
		Instantiate(ctx)
	if err != nil {
		return nil, fmt.Errorf("meter: instantiating host module %q: %w", HostModule, err)
	}
	return mod, nil
}

// check is HostModule.CheckFunction: () -> i32 (the new fuel). It runs
// once per Interval of guest fuel, so it may afford a clock read and a
// context lookup that would be too dear per instruction.
func (m *Meter) check(ctx context.Context, mod api.Module, stack []uint64) {
	m.checks.Add(1)
	now := monotonicNow()
	d, _ := ctx.Value(DeadlineKey{}).(*Deadline)
	if d != nil && d.passed(now) {
		m.deadlineHits.Add(1)
		_ = mod.CloseWithExitCode(ctx, sys.ExitCodeDeadlineExceeded)
		panic(ErrDeadlineExceeded)
	}
	if done := ctx.Done(); done != nil {
		select {
		case <-done:
			m.cancellations.Add(1)
			_ = mod.CloseWithExitCode(ctx, sys.ExitCodeContextCanceled)
			panic(fmt.Errorf("wasm guest call stopped: %w", context.Cause(ctx)))
		default:
		}
	}
	if m.yieldAfter >= 0 {
		if d == nil {
			runtime.Gosched()
		} else if now-d.since >= m.yieldAfter {
			runtime.Gosched()
			d.since = monotonicNow()
		}
	}
	stack[0] = uint64(m.interval)
}

// Deadline is the budget of the guest calls made with a context from
// WithDeadline: the CPU time the calling thread spends on the call, not
// the wall-clock time, so a guest that waits for a core (a busy machine)
// or for a host function that blocks is not charged for the wait. Where
// the OS has no per-thread CPU clock the meter can read (ThreadCPUClock
// false: every OS but Linux), the budget is wall-clock time from the
// start of the call, as before.
//
// How the CPU is counted, and what it costs: reading the thread CPU clock
// is a system call (no vDSO: 1.3–1.7 µs on the development VM, 40x a
// monotonic clock read), too dear for every call. So SetTimeout only
// reads the monotonic clock, and the checks read nothing more until the
// call has run CountAfter of wall-clock time (or its whole budget, if
// that is shorter): a call that finishes sooner, as nearly all do, used
// less CPU than that and cannot have passed its budget. At the first
// check after that point the meter pins the calling goroutine to its OS
// thread (runtime.LockOSThread) and reads the thread's CPU clock; from
// then on the checks charge the CPU the thread used since, reading the
// clock only when the wall-clock time since the last reading could have
// used up the rest of the budget (CPU time never runs faster). While
// pinned, the thread runs nothing but this goroutine, and sleeps when
// the goroutine blocks or yields, so its CPU clock is the call's CPU time
// and the goroutine cannot move to another thread between two readings.
// The time before counting starts is not charged: a runaway guest is
// stopped after at most its budget plus min(budget, CountAfter) plus two
// check intervals of CPU. Pinning is free until the goroutine blocks or
// yields: then its thread must sleep and be woken again (10–15 µs here
// instead of 0.2–0.4 µs), which long calls pay once per
// Config.YieldAfter and per blocking host call.
//
// One Deadline per module instance is the intended use, one guest call
// at a time: SetTimeout before each guest call (one clock read, a few
// stores), and Clear after it, on the goroutine that made the call (Clear
// releases the thread the checks pinned; a call not followed by Clear
// leaves its goroutine pinned). Nested calls (a host function
// calling the guest's allocator) share the outer call's budget. Expire
// may be called from any goroutine, e.g. from a watchdog or at shutdown;
// the guest notices at its next check.
//
// The zero value is a Deadline that never passes.
type Deadline struct {
	expired atomic.Bool // Expire was called

	// Owned by the goroutine making the call.
	budget   int64 // ns; 0 = none
	start    int64 // monotonicNow() at SetTimeout
	since    int64 // start of the call or last yield, for Config.YieldAfter
	counting bool  // CPU is being counted: the goroutine is pinned (ThreadCPUClock)
	mark     int64 // threadCPU() when counting started
	used     int64 // CPU time counted at the last reading of the clock
	readAt   int64 // monotonicNow() at that reading
}

// CountAfter is how long (wall-clock time) a guest call runs before its
// Deadline starts counting the CPU time of the calling thread. Calls that
// end sooner never read the CPU clock. The same as DefaultYieldAfter: a
// call that long is rare and already pays for a yield.
const CountAfter = time.Millisecond

// SetTimeout starts a guest call: it may use budget of CPU time (of wall
// time where ThreadCPUClock is false). Call it on the goroutine that makes
// the call, after the previous call's Clear. (Without that Clear, the
// goroutine of the previous call stays pinned to its thread until it
// exits; SetTimeout never unpins, because it may run on another
// goroutine, whose own pin it must not undo.)
func (d *Deadline) SetTimeout(budget time.Duration) {
	d.SetTimeoutAt(budget, monotonicNow())
}

// SetTimeoutAt is SetTimeout for a call that starts at now, a reading of
// Now the caller has just made (to time the call itself, say), so the
// two share one clock read. now must not be older than the time the
// caller wants charged to the call.
func (d *Deadline) SetTimeoutAt(budget time.Duration, now int64) {
	d.start, d.since = now, now
	d.counting = false
	d.budget = max(int64(budget), 1)
	if d.expired.Load() { // a load is cheaper than an atomic store
		d.expired.Store(false)
	}
}

// Expire makes the deadline of the call in progress pass now: the guest
// stops at its next check. A Deadline that is not armed (no SetTimeout
// since the last Clear) ignores it until the next SetTimeout, which
// clears it.
func (d *Deadline) Expire() { d.expired.Store(true) }

// Clear ends a guest call: it removes the deadline and releases the OS
// thread the checks pinned, if they did. Call it after every call made
// with the Deadline, on the goroutine that made it.
func (d *Deadline) Clear() {
	d.budget = 0
	if d.expired.Load() {
		d.expired.Store(false)
	}
	if d.counting {
		d.counting = false
		runtime.UnlockOSThread()
	}
}

// passed reports at a check whether the call in progress is out of
// budget; now is monotonicNow(). It starts counting CPU time once the
// call has run CountAfter (see Deadline).
func (d *Deadline) passed(now int64) bool {
	budget := d.budget
	if budget == 0 {
		return false // not armed: a stale Expire must not stop other calls
	}
	if d.expired.Load() {
		return true
	}
	if !ThreadCPUClock {
		return now-d.start >= budget
	}
	if !d.counting {
		if now-d.start < min(budget, int64(CountAfter)) {
			return false // no CPU clock read needed yet: CPU time <= wall time
		}
		runtime.LockOSThread()
		d.counting = true
		d.mark, d.used, d.readAt = threadCPU(), 0, now
		return false
	}
	// A thread's CPU clock cannot run faster than the wall clock: until
	// the wall time since the last reading covers the rest of the budget,
	// the budget cannot be used up, and the clock is not read. So a long
	// call reads it a few times (a runaway: at about budget, then at
	// shrinking remainders), not at every check.
	if d.used+(now-d.readAt) < budget {
		return false
	}
	d.used, d.readAt = threadCPU()-d.mark, now
	return d.used >= budget
}

// DeadlineKey is the context key under which a guest call's context
// carries its *Deadline to the check function, which reads it with
// ctx.Value(DeadlineKey{}) at each check (once per Config.Interval of
// fuel, never per guest call). WithDeadline makes such a context; a
// context type of the caller's own may answer the key instead, so that
// one small context answers everything its guest calls ask without a
// chain of context.WithValue to walk. The contract: Value(DeadlineKey{})
// returns a *Deadline (a nil one, or nil, for none), the same one for as
// long as calls are made with the context, and it is the Deadline that
// SetTimeout arms and Clear ends around each of those calls. Done and
// Err are honoured as for any context (a done context stops the guest
// at its next check).
type DeadlineKey struct{}

// WithDeadline returns a context that carries d to the check function. Make
// it once per instance and pass it (or a context derived from it) to every
// guest call: ctx.Value is only consulted at checks, so the per-call cost
// is only that of setting d. (A context of the caller's own type may
// answer DeadlineKey instead.)
func WithDeadline(parent context.Context, d *Deadline) context.Context {
	return context.WithValue(parent, DeadlineKey{}, d)
}

// epoch anchors deadlines to the monotonic clock: time.Since and Sub use
// the monotonic reading, so wall-clock steps never fire or delay a deadline.
var epoch = time.Now()

// monotonicNow is nanoseconds since epoch, plus one so that 0 can mean
// "no deadline".
func monotonicNow() int64 { return int64(time.Since(epoch)) + 1 }

// Now is the clock of SetTimeoutAt: monotonic nanoseconds since Epoch,
// plus one (never 0). One clock read.
func Now() int64 { return monotonicNow() }

// Epoch is the time Now counts from.
func Epoch() time.Time { return epoch }
