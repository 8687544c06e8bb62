//go:build unix

package meter

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPaired alternates short blocks of plain and metered calls of
// the same workload and reports both per-call times and their ratio, in
// wall time and in process CPU time. On a shared machine this is steadier
// than comparing separate benchmarks: load changes hit both sides alike,
// and CPU time ignores time spent descheduled. One op is one block of each.
// interval=1G shows the inline metering alone (a check every ~1e9 units).
func BenchmarkPaired(b *testing.B) {
	meterModes := []benchMode{
		benchModes[1], benchModes[2],
		{name: "meter/interval=1G", instrumented: true, interval: 1 << 30},
		{name: "meter/yield-every-check", instrumented: true, yieldAfter: time.Nanosecond},
	}
	for _, w := range benchWorkloads() {
		for _, mode := range meterModes {
			b.Run(w.name+"/"+mode.name, func(b *testing.B) {
				benchPaired(b, w, mode)
			})
		}
	}
}

func benchPaired(b *testing.B, w benchWorkload, mode benchMode) {
	plain := getBenchInstance(b, w, benchModes[0])
	metered := getBenchInstance(b, w, mode)
	stack := make([]uint64, max(len(w.params), len(plain.fn.Definition().ResultTypes())))
	var d Deadline
	ctx := WithDeadline(context.Background(), &d)
	// About 0.3–1 ms per block.
	block := 1
	switch w.name {
	case "json":
		block = 20
	case "empty/go", "empty/wat":
		block = 20_000
	}
	var plainT, meterT, plainCPU, meterCPU time.Duration
	ratios := make([]float64, 0, 1024)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cpu0 := processCPU()
		start := time.Now()
		for j := 0; j < block; j++ {
			copy(stack, w.params)
			if err := plain.fn.CallWithStack(ctx, stack); err != nil {
				b.Fatal(err)
			}
		}
		mid := time.Now()
		cpu1 := processCPU()
		for j := 0; j < block; j++ {
			copy(stack, w.params)
			d.SetTimeout(time.Second)
			err := metered.fn.CallWithStack(ctx, stack)
			d.Clear()
			if err != nil {
				b.Fatal(err)
			}
		}
		end := time.Now()
		meterCPU += processCPU() - cpu1
		meterT += end.Sub(mid)
		plainT += mid.Sub(start)
		plainCPU += cpu1 - cpu0
		ratios = append(ratios, float64(end.Sub(mid))/float64(mid.Sub(start)))
	}
	calls := float64(b.N * block)
	b.ReportMetric(float64(plainT.Nanoseconds())/calls, "plain-ns/call")
	b.ReportMetric(float64(meterT.Nanoseconds())/calls, "meter-ns/call")
	b.ReportMetric(float64(meterT)/float64(plainT), "ratio")
	b.ReportMetric(float64(meterCPU)/float64(plainCPU), "cpu-ratio")
	// The median of per-block ratios shrugs off blocks hit by a guest
	// garbage collection or by another process.
	slices.Sort(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "median-ratio")
}

// processCPU is the CPU time this process has used (user + system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
