// Package sysmon tunes the Go runtime's system monitor thread.
//
// The runtime runs one thread, sysmon, outside the scheduler: it retakes
// processors from long system calls, preempts goroutines that run for
// more than 10 ms and polls the network when nobody has for 10 ms. After
// every wake-up that found work — and after every time the process
// leaves a spell with all processors idle, which a proxy does hundreds
// of times a second — it sleeps 20 µs at a time for its next 50 rounds.
// Each of those wake-ups is a context switch, and on a virtual machine a
// context switch costs 10–20 µs of CPU: under wrk on this project's
// 2-vCPU benchmark VM the monitor woke ~3,500 times a second and used
// 8–13 % of the proxy's CPU (docs/perf.md, decisions §84).
//
// The kernel lets a thread's timers fire up to its timer slack late
// (50 µs by default), merging wake-ups. [SetTimerSlack] raises the
// slack of the monitor alone: its short sleeps stretch to about the
// slack, while every other thread — the ones whose timers run the
// proxy's timeouts and whose short sleeps hand work between processors —
// keeps the default. Nothing the monitor does needs a finer clock than
// its own 10 ms thresholds.
package sysmon
