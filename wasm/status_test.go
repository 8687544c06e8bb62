package wasm

import (
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
)

// TestStatusReportsTrafficTrapsAndReplacements drives the compiled test
// plugin: streams are counted with the time their callbacks took, a
// trap shows as a poisoned instance with the plugin's last error and its
// guest stack, and once replaced the slot reads "replaced".
func TestStatusReportsTrafficTrapsAndReplacements(t *testing.T) {
	h := newTestHost(t, 2)
	cfg := goPlugin(t, "headers")
	cfg.FailurePolicy = config.FailClosed // the poisoned instance stays until ReplacePoisoned
	p := h.load(t, cfg)

	for range 5 {
		s := newStream(p)
		s.decodeHeaders(true, ":path", "/", "X-In", "x")
		s.encodeHeaders(true, ":status", "200")
		s.finish()
	}
	st := pluginStatus(t, h, "httpfilter")
	if st.Traffic.Requests != 5 {
		t.Fatalf("requests = %d, want 5", st.Traffic.Requests)
	}
	if len(st.Traffic.Points) != meterSlots {
		t.Fatalf("%d history points, want %d", len(st.Traffic.Points), meterSlots)
	}
	var inPoints uint64
	var p99 time.Duration
	for _, pt := range st.Traffic.Points {
		inPoints += pt.Requests
		p99 = max(p99, pt.P99)
	}
	// The five streams may straddle two slots, never leave the window.
	if lm := st.Traffic.LastMinute; lm.Requests != 5 || lm.P99 < p99 || lm.Start != st.Traffic.Points[meterSlots-6].Start {
		t.Fatalf("last minute %+v, want 5 requests, p99 ≥ %v, from the sixth last point", lm, p99)
	}
	if inPoints != 5 || p99 <= 0 {
		t.Fatalf("history holds %d requests, p99 %v; want 5 and a latency", inPoints, p99)
	}
	if len(st.Instances) != 2 || st.Instances[0].State != InstanceHealthy || st.Instances[1].State != InstanceHealthy {
		t.Fatalf("instances %+v, want two healthy", st.Instances)
	}
	if st.Traps != 0 || st.LastError != nil {
		t.Fatalf("traps %d, last error %+v before any trap", st.Traps, st.LastError)
	}

	s := newStream(p)
	s.decodeHeaders(true, ":path", "/", "x-trap", "1")
	s.finish()
	st = pluginStatus(t, h, "httpfilter")
	poisoned := -1
	for _, is := range st.Instances {
		if is.State == InstancePoisoned {
			poisoned = is.Index
			if is.Reason != "trap" {
				t.Errorf("poisoned instance reason %q, want trap", is.Reason)
			}
		}
	}
	if poisoned < 0 || st.Traps != 1 {
		t.Fatalf("after a trap: instances %+v, traps %d; want one poisoned, 1 trap", st.Instances, st.Traps)
	}
	e := st.LastError
	if e == nil || e.Callback != "proxy_on_request_headers" || e.Instance != poisoned || e.Reason != "trap" ||
		!strings.Contains(e.Stack, "proxy_on_request_headers") || e.Message == "" || e.Time.IsZero() {
		t.Fatalf("last error %+v, want the trap in proxy_on_request_headers on instance %d with its guest stack", e, poisoned)
	}
	if st.Traffic.Requests != 6 {
		t.Errorf("requests = %d after the trapping stream, want 6", st.Traffic.Requests)
	}

	h.ReplacePoisoned()
	st = pluginStatus(t, h, "httpfilter")
	if is := st.Instances[poisoned]; is.State != InstanceReplaced || is.Replaced != 1 {
		t.Fatalf("after ReplacePoisoned: slot %+v, want replaced once", is)
	}
	if st.LastError == nil {
		t.Fatal("the last error is gone after the replacement; it must stay for the operator")
	}
}

func pluginStatus(t *testing.T, h *testHost, name string) PluginStatus {
	t.Helper()
	for _, ps := range h.Status() {
		if ps.Name == name {
			return ps
		}
	}
	t.Fatalf("no plugin %q in Status()", name)
	return PluginStatus{}
}

// TestLatencyBuckets: every duration falls in a bucket whose upper bound
// is above it and at most 25% (a quarter octave) above its lower bound.
func TestLatencyBuckets(t *testing.T) {
	prev := 0
	for d := time.Duration(1); d < 20*time.Second; d = d*9/8 + 1 {
		b := latencyBucket(d)
		if b < prev {
			t.Fatalf("bucket of %v is %d, below the bucket %d of a shorter time", d, b, prev)
		}
		prev = b
		if b == latencyBuckets-1 {
			continue // the last bucket is open-ended
		}
		if up := latencyUpper(b); d >= up {
			t.Fatalf("%v in bucket %d whose upper bound is %v", d, b, up)
		}
		if b > 0 {
			if lo := latencyUpper(b - 1); d < lo || float64(latencyUpper(b)) > 1.25*float64(lo)+1 {
				t.Fatalf("%v in bucket %d [%v, %v)", d, b, lo, latencyUpper(b))
			}
		}
	}
}

// BenchmarkTrafficMeter is what the status page adds to every stream
// apart from its two clock reads per callback: one record into the
// plugin's meter, from every core at once (the meter's lock is shared
// by the plugin's streams).
func BenchmarkTrafficMeter(b *testing.B) {
	m := &pluginMeter{}
	sec := unixSecond(monoNow())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(3000)
		for pb.Next() {
			m.record(sec, d)
			d += 7
		}
	})
}

// BenchmarkCallbackClock is the clock reads added around each callback:
// two monotonic reads and a subtraction.
func BenchmarkCallbackClock(b *testing.B) {
	var f httpFilter
	for i := 0; i < b.N; i++ {
		f.took(monoNow())
	}
}
