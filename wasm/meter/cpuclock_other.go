//go:build !linux

package meter

// ThreadCPUClock reports whether Deadline budgets count the CPU time of
// the calling thread (true) or wall-clock time (false). Off Linux the
// meter has no per-thread CPU clock it can read cheaply and portably
// (package syscall does not offer clock_gettime there), so a budget is
// wall-clock time from the start of the call: a busy machine can then
// stop a healthy guest, as before the CPU clock.
const ThreadCPUClock = false

// threadCPU is not used where ThreadCPUClock is false.
func threadCPU() int64 { return monotonicNow() }
