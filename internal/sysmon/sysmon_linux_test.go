package sysmon

import (
	"errors"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMonitorSleep reads lines of /proc/PID/task/TID/syscall as the
// kernel writes them (taken from a running wasmproxy on linux/amd64 and
// rewritten with this platform's syscall numbers).
func TestMonitorSleep(t *testing.T) {
	nr := func(n uintptr) string { return strconv.FormatUint(uint64(n), 10) }
	for _, tc := range []struct {
		name, line string
		sleeping   bool
		notMonitor bool
	}{
		{"short sleep", nr(unix.SYS_NANOSLEEP) + " 0x7fe79ea4ed10 0x0 0x0 0x0 0x0 0x0 0x7fe79ea4ecf0 0x4961a3\n", true, false},
		{"deep sleep: futex wait with a timeout", nr(unix.SYS_FUTEX) + " 0x2a3f080 0x80 0x0 0x7fe79ea4ed28 0x0 0x0 0x7fe79ea4ecf0 0x496123\n", true, false},
		{"running", "running\n", false, false},
		{"parked scheduler thread: futex wait without timeout", nr(unix.SYS_FUTEX) + " 0x20de7a6f3160 0x80 0x0 0x0 0x0 0x0 0x7fe787fbed40 0x496123\n", false, true},
		{"futex wake", nr(unix.SYS_FUTEX) + " 0x20de7a6f3160 0x81 0x1 0x0 0x0 0x0 0x7fe787fbed40 0x496123\n", false, true},
		{"netpoller", nr(unix.SYS_EPOLL_PWAIT) + " 0x4 0x7ffd6c0e5b30 0x80 0xffffffff 0x0 0x8 0x7ffd6c0e5b10 0x4961a3\n", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sleeping, err := monitorSleep(tc.line)
			if sleeping != tc.sleeping || errors.Is(err, errNotMonitor) != tc.notMonitor || (err != nil && !tc.notMonitor) {
				t.Errorf("monitorSleep(%q) = %v, %v; want %v, not the monitor %v", tc.line, sleeping, err, tc.sleeping, tc.notMonitor)
			}
		})
	}
	for _, line := range []string{"", "35", "x 0x0 0x0 0x0 0x0", nr(unix.SYS_FUTEX) + " 0x1 zz 0x0 0x0"} {
		if _, err := monitorSleep(line); err == nil || errors.Is(err, errNotMonitor) {
			t.Errorf("monitorSleep(%q): %v, want an unreadable-line error", line, err)
		}
	}
}

// TestMonitorThreadRunsNoGoroutine: the thread found is one of this
// process's, not the main one, and none of the threads that run this
// test's goroutines (each locked to its thread while the search runs).
func TestMonitorThreadRunsNoGoroutine(t *testing.T) {
	const locked = 4
	tids := make(chan int)
	release := make(chan struct{})
	for i := 0; i < locked; i++ {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tids <- unix.Gettid()
			<-release
		}()
	}
	busy := map[int]bool{unix.Gettid(): true}
	for i := 0; i < locked; i++ {
		busy[<-tids] = true
	}
	tid, err := monitorThread()
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	if tid == os.Getpid() || busy[tid] {
		t.Fatalf("monitor thread %d is the main thread (%d) or runs goroutines (%v)", tid, os.Getpid(), busy)
	}
	if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid)); err != nil {
		t.Fatalf("monitor thread %d is not a thread of this process: %v", tid, err)
	}
}

// TestSetTimerSlack sets the monitor's slack and reads it back from the
// kernel, then puts the default back. Changing another thread's slack
// takes CAP_SYS_NICE: without it the error says so.
func TestSetTimerSlack(t *testing.T) {
	if _, err := SetTimerSlack(0); err == nil {
		t.Error("SetTimerSlack(0): no error")
	}
	tid, err := SetTimerSlack(3 * time.Millisecond)
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("no CAP_SYS_NICE: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := SetTimerSlack(50 * time.Microsecond); err != nil {
			t.Error(err)
		}
	})
	if got, err := TimerSlack(tid); err != nil || got != 3*time.Millisecond {
		t.Errorf("thread %d's timer slack %v (%v), want 3ms", tid, got, err)
	}
	if got, err := TimerSlack(unix.Gettid()); err != nil || got == 3*time.Millisecond {
		t.Errorf("the test's own thread's timer slack %v (%v): changed too", got, err)
	}
}
