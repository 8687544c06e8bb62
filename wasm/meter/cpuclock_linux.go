package meter

import (
	"syscall"
	"unsafe"
)

// ThreadCPUClock reports whether Deadline budgets count the CPU time of
// the calling thread (true) or wall-clock time (false).
const ThreadCPUClock = true

// clockThreadCPUTimeID is CLOCK_THREAD_CPUTIME_ID, the same number on
// every Linux architecture (uapi/linux/time.h); package syscall does not
// name it.
const clockThreadCPUTimeID = 3

// threadCPU is the CPU time the calling OS thread has used, in ns
// (clock_gettime(CLOCK_THREAD_CPUTIME_ID)). The vDSO does not serve CPU
// clocks, so this is a real system call; RawSyscall skips the Go
// scheduler's syscall bookkeeping, which is safe because clock_gettime
// never blocks. It cannot fail for this clock and a valid pointer.
func threadCPU() int64 {
	var ts syscall.Timespec
	syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}
