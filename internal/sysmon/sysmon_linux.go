package sysmon

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// SetTimerSlack sets the timer slack of the runtime's monitor thread to
// d and returns the thread's id. It needs CAP_SYS_NICE (the kernel lets a
// thread change another thread's slack only with it, even in its own
// process); without it the error wraps [os.ErrPermission] and nothing
// changes. It fails, changing nothing, when it cannot tell the monitor
// thread apart (see [monitorThread]).
func SetTimerSlack(d time.Duration) (int, error) {
	if d <= 0 {
		return 0, fmt.Errorf("sysmon: timer slack must be positive, got %v", d)
	}
	tid, err := monitorThread()
	if err != nil {
		return 0, err
	}
	path := fmt.Sprintf("/proc/%d/timerslack_ns", tid)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(strconv.FormatInt(d.Nanoseconds(), 10))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return tid, fmt.Errorf("sysmon: setting the timer slack of the monitor thread %d: %w", tid, err)
	}
	return tid, nil
}

// TimerSlack returns the timer slack of thread tid of this process.
func TimerSlack(tid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/timerslack_ns", tid))
	if err != nil {
		return 0, fmt.Errorf("sysmon: %w", err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("sysmon: timer slack of thread %d: %w", tid, err)
	}
	return time.Duration(ns), nil
}

// The futex operation word of <linux/futex.h>: the command in the low
// bits, flags above (the runtime waits with FUTEX_WAIT_PRIVATE).
const (
	futexWait          = 0
	futexPrivateFlag   = 128
	futexClockRealtime = 256
)

// errNotMonitor means the thread was seen doing something the monitor
// never does.
var errNotMonitor = errors.New("not waiting as the monitor does")

// monitorThread returns the id of the runtime's monitor thread. The
// runtime starts it before anything else of the program runs and before
// any other thread but the main one, and the kernel hands out thread ids
// in increasing order (until they wrap at pid_max), so it is the lowest
// id in /proc/self/task after the process's own. That guess is checked
// against what the thread is doing: the monitor spends its life in
// nanosleep or, when every processor is idle, in a futex wait with a
// timeout; the scheduler's other threads park in futex waits without
// one or in epoll_pwait. A thread seen running is looked at again.
func monitorThread() (int, error) {
	pid := os.Getpid()
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, fmt.Errorf("sysmon: listing this process's threads: %w", err)
	}
	var tids []int
	for _, e := range entries {
		if tid, err := strconv.Atoi(e.Name()); err == nil && tid != pid {
			tids = append(tids, tid)
		}
	}
	if len(tids) == 0 {
		return 0, errors.New("sysmon: this process has no thread but the main one")
	}
	sort.Ints(tids)
	tid := tids[0]
	// The monitor runs for a few µs between sleeps of 20 µs to 10 ms: a
	// few looks find it asleep; a thread never seen asleep is not it.
	const looks = 200
	for i := 0; i < looks; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/syscall", tid))
		if err != nil {
			return 0, fmt.Errorf("sysmon: reading what thread %d is doing: %w", tid, err)
		}
		switch sleeping, err := monitorSleep(string(b)); {
		case err != nil:
			return 0, fmt.Errorf("sysmon: thread %d, the oldest after the main one, is not the runtime's monitor: %w (%s)", tid, err, strings.TrimSpace(string(b)))
		case sleeping:
			return tid, nil
		}
		time.Sleep(time.Millisecond)
	}
	return 0, fmt.Errorf("sysmon: thread %d, the oldest after the main one, was running at each of %d looks: cannot tell whether it is the runtime's monitor", tid, looks)
}

// monitorSleep reads a line of /proc/PID/task/TID/syscall ("NR arg1 …
// arg6 sp pc", or "running"): true when the thread sleeps as the monitor
// does, false when it is running, errNotMonitor when it waits in a way
// the monitor never does.
func monitorSleep(line string) (bool, error) {
	f := strings.Fields(line)
	if len(f) == 1 && f[0] == "running" {
		return false, nil
	}
	if len(f) < 5 {
		return false, fmt.Errorf("unreadable syscall line %q", line)
	}
	nr, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return false, fmt.Errorf("unreadable syscall line %q", line)
	}
	switch nr {
	case unix.SYS_NANOSLEEP:
		return true, nil
	case unix.SYS_FUTEX:
		op, err1 := strconv.ParseUint(strings.TrimPrefix(f[2], "0x"), 16, 64)
		timeout, err2 := strconv.ParseUint(strings.TrimPrefix(f[4], "0x"), 16, 64)
		if err1 != nil || err2 != nil {
			return false, fmt.Errorf("unreadable syscall line %q", line)
		}
		if op&^(futexPrivateFlag|futexClockRealtime) == futexWait && timeout != 0 {
			return true, nil
		}
	}
	return false, errNotMonitor
}
