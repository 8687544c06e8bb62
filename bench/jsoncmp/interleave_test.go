package main

import (
	"runtime"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/filter"
)

// BenchmarkFilterInterleaved runs the seed plugin's request the way the
// proxy's streams reach one instance under wrk -c50 with a pool of two:
// about 25 streams live at once, their callbacks interleaved (every
// stream's request headers, then every stream's body, ...), against one
// stream at a time as BenchmarkFilter does. The two alternate in blocks
// on one locked OS thread; each reports its thread CPU time per request
// (cpu-ns/op) and x1 the ratio of the interleaved one to the serial one:
// what holding many streams' contexts at once costs the guest (its
// stream table, its heap, its caches), with no socket or proxy work in
// between. Measured 0.80-0.82: interleaving is cheaper (each callback's
// guest code runs 25 times in a row, warm), so the many live streams of
// the real path are not why a request costs the guest more there than
// here. docs/perf.md, "Issue 16: the plugin's end-to-end cost".
func BenchmarkFilterInterleaved(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f, closeWasm := loadWasm(b, jsonValidationDir)
	defer closeWasm()
	cb := newCallbacks()
	reqBody := &filter.Buffer{Bytes: []byte(validBody)}
	respBody := &filter.Buffer{Bytes: []byte("hello from the server\n")}
	const live = 25
	ss := make([]filter.StreamFilter, live)
	interleaved := func() {
		for i := range ss {
			ss[i] = f.NewStreamFilter(cb)
		}
		for _, s := range ss {
			s.DecodeHeaders(cb.req, false)
		}
		for _, s := range ss {
			s.DecodeData(reqBody, true)
		}
		for _, s := range ss {
			s.EncodeHeaders(cb.resp, false)
		}
		for _, s := range ss {
			s.EncodeData(respBody, true)
		}
		for _, s := range ss {
			s.OnLog()
		}
		for _, s := range ss {
			s.OnDestroy()
		}
	}
	serial := func() {
		for range live {
			oneRequest(f, cb, reqBody, respBody)
		}
	}
	var cpuSerial, cpuInter time.Duration
	n := 0
	for b.Loop() {
		for range 8 {
			t0 := threadCPU()
			serial()
			t1 := threadCPU()
			interleaved()
			t2 := threadCPU()
			cpuSerial += t1 - t0
			cpuInter += t2 - t1
			n += live
		}
	}
	if cb.replies != 0 {
		b.Fatalf("%d local replies to a valid request", cb.replies)
	}
	b.ReportMetric(float64(cpuSerial)/float64(n), "serial-cpu-ns/op")
	b.ReportMetric(float64(cpuInter)/float64(n), "interleaved-cpu-ns/op")
	b.ReportMetric(float64(cpuInter)/float64(cpuSerial), "x1")
}
