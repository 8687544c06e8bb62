package wasm

import (
	"math/bits"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmproxy/wasmproxy/wasm/meter"
)

// The plugins' live status for the admin home page (Host.Status): each
// plugin's instances and their state, its traps, and a short history of
// its traffic and the latency it added. What already exists is read
// where it is (the wasm.<plugin>.* counters, the instances' poison flag,
// the pool slots' reload state); the traffic meter and the last error
// are kept here because nothing kept them before.

// Instance states as the status page names them.
const (
	InstanceHealthy  = "healthy"  // the slot's first instance, serving
	InstancePoisoned = "poisoned" // a trap, the deadline or the memory cap poisoned it
	InstanceReplaced = "replaced" // serving, a replacement of a poisoned one
)

// The traffic meter's window: meterSlots slots of MeterSlot each (five
// minutes), so the history costs a fixed ~12 KB per plugin name.
const (
	// MeterSlot is the width of one traffic history point.
	MeterSlot  = 10 * time.Second
	meterSlots = 30
	// latencyBuckets covers 0 to ~17 s in steps of a quarter octave
	// (latencyBucket): a p99 read from it is at most 19% above the
	// true value.
	latencyBuckets = 96
)

// PluginStatus is one loaded plugin as the status page shows it.
type PluginStatus struct {
	Name string
	// VM names the plugin that created the VM the plugin runs in (its
	// own name unless it shares one: same vm_id, configuration, code).
	VM string
	// FailurePolicy is the configured policy ("" = the default, which
	// replaces a poisoned instance as FAIL_RELOAD does).
	FailurePolicy string
	Instances     []InstanceStatus
	// Traps, DeadlineExceeded and MemoryLimitExceeded are the counters
	// wasm.<plugin>.runtime_errors, .deadline_exceeded and
	// .memory_limit_exceeded: every poisoning, then those the call
	// deadline and the memory cap caused.
	Traps, DeadlineExceeded, MemoryLimitExceeded uint64
	// LastError is the plugin's last trap, nil when it never trapped.
	LastError *TrapRecord
	Traffic   Traffic
}

// InstanceStatus is one pool slot of the plugin's VM.
type InstanceStatus struct {
	Index int
	// State is InstanceHealthy, InstancePoisoned or InstanceReplaced.
	State string
	// Reason is why a poisoned instance was poisoned ("trap",
	// "deadline exceeded", "memory limit exceeded"); "" otherwise.
	Reason string
	// Replaced counts the poisoned instances replaced in this slot.
	Replaced int
}

// TrapRecord is one failed guest call: what fail logged.
type TrapRecord struct {
	Time     time.Time
	Instance int
	Callback string
	// Reason is "trap", "deadline exceeded" or "memory limit exceeded".
	Reason  string
	Message string
	// Stack is the guest's stack trace (function names), one frame a
	// line, as wazero reports it.
	Stack string
}

// Traffic is the HTTP streams a plugin saw and the time its callbacks
// added to them.
type Traffic struct {
	// Requests counts the streams that ended at the plugin's filter
	// since the host first loaded a plugin of this name (a reload
	// keeps it).
	Requests uint64
	// Points are the last minutes, oldest first, one per MeterSlot
	// ending with the current (partial) slot.
	Points []TrafficPoint
	// LastMinute merges the last six points (the current one partial):
	// its Start is the first one's.
	LastMinute TrafficPoint
}

// TrafficPoint is one MeterSlot of traffic.
type TrafficPoint struct {
	Start    time.Time
	Requests uint64
	// P99 is the 99th percentile of the time the plugin's request and
	// response callbacks took per stream (waiting for the instance
	// included), as the upper bound of its histogram bucket; 0 when the
	// slot saw no stream.
	P99 time.Duration
}

// pluginMeter is one plugin name's traffic history and last trap,
// shared by every load of that name, so a reload keeps the history.
type pluginMeter struct {
	total   atomic.Uint64
	lastErr atomic.Pointer[TrapRecord]

	mu   sync.Mutex
	ring [meterSlots]meterSlot
}

type meterSlot struct {
	epoch   int64 // unix time / MeterSlot; the slot is stale when it differs
	count   uint64
	buckets [latencyBuckets]uint32
}

// clockBase anchors the meter's clock: callbacks are timed with the
// monotonic clock alone (time.Since reads only that; time.Now reads the
// wall clock too, twice the cost on a VM's kvm-clock), and a stream's
// end is placed in a slot by its Unix second computed from the base.
// It is the deadline's clock (meter.Now), so a callback's start time
// also starts its deadline (instance.invoke): one clock read for both.
var clockBase = meter.Epoch()

// monoNow is the monotonic time since clockBase (plus 1 ns: never 0):
// one clock read.
func monoNow() time.Duration { return time.Duration(meter.Now()) }

// unixSecond is the Unix second of monotonic time mono.
func unixSecond(mono time.Duration) int64 { return clockBase.Add(mono).Unix() }

// trafficMeter returns the meter of the plugin name, creating it.
func (h *Host) trafficMeter(name string) *pluginMeter {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.meters == nil {
		h.meters = map[string]*pluginMeter{}
	}
	m := h.meters[name]
	if m == nil {
		m = &pluginMeter{}
		h.meters[name] = m
	}
	return m
}

// record counts one stream that ended in Unix second sec after d in the
// plugin's callbacks: a lock and a few stores, no allocation (the ring
// is fixed).
func (m *pluginMeter) record(sec int64, d time.Duration) {
	m.total.Add(1)
	epoch := sec / int64(MeterSlot/time.Second)
	b := latencyBucket(d)
	m.mu.Lock()
	s := &m.ring[epoch%meterSlots]
	if s.epoch != epoch {
		*s = meterSlot{epoch: epoch}
	}
	s.count++
	s.buckets[b]++
	m.mu.Unlock()
}

// latencyBucket is d's histogram bucket: 0 below 1 µs, then four buckets
// per doubling.
func latencyBucket(d time.Duration) int {
	if d < 1024 {
		return 0
	}
	v := uint64(d) >> 8 // units of 256 ns, ≥ 4
	l := bits.Len64(v)  // ≥ 3
	sub := int(v>>(l-3)) & 3
	return min((l-3)*4+sub+1, latencyBuckets-1)
}

// latencyUpper is the upper bound of bucket i.
func latencyUpper(i int) time.Duration {
	if i == 0 {
		return 1024
	}
	l, sub := (i-1)/4+3, (i-1)%4
	return time.Duration(uint64(5+sub) << (l - 3) << 8)
}

// snapshot copies the history up to now (monoNow).
func (m *pluginMeter) snapshot(now time.Duration) Traffic {
	t := Traffic{Requests: m.total.Load(), Points: make([]TrafficPoint, meterSlots)}
	cur := unixSecond(now) / int64(MeterSlot/time.Second)
	const minute = int(time.Minute / MeterSlot)
	var merged [latencyBuckets]uint32
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range meterSlots {
		epoch := cur - int64(meterSlots-1-i)
		p := TrafficPoint{Start: time.Unix(epoch*int64(MeterSlot/time.Second), 0)}
		if i == meterSlots-minute {
			t.LastMinute.Start = p.Start
		}
		if s := &m.ring[epoch%meterSlots]; s.epoch == epoch && s.count > 0 {
			p.Requests = s.count
			p.P99 = p99(s.count, &s.buckets)
			if i >= meterSlots-minute {
				t.LastMinute.Requests += s.count
				for b, c := range s.buckets {
					merged[b] += c
				}
			}
		}
		t.Points[i] = p
	}
	t.LastMinute.P99 = p99(t.LastMinute.Requests, &merged)
	return t
}

// p99 is the upper bound of the bucket holding the 99th percentile of
// n samples; 0 when n is 0.
func p99(n uint64, buckets *[latencyBuckets]uint32) time.Duration {
	if n == 0 {
		return 0
	}
	rank := (n*99 + 99) / 100 // ceil(0.99 n)
	var acc uint64
	for b, c := range buckets {
		if acc += uint64(c); acc >= rank {
			return latencyUpper(b)
		}
	}
	return latencyUpper(latencyBuckets - 1)
}

// recordTrap keeps the plugin's last trap for the status page.
func (m *pluginMeter) recordTrap(r *TrapRecord) { m.lastErr.Store(r) }

// Status reports every loaded plugin, by name, as of now.
func (h *Host) Status() []PluginStatus {
	h.mu.Lock()
	plugins := make([]*Plugin, 0, len(h.plugins))
	for p := range h.plugins {
		plugins = append(plugins, p)
	}
	h.mu.Unlock()
	sort.Slice(plugins, func(i, j int) bool { return plugins[i].name < plugins[j].name })

	counters := map[string]uint64{}
	for _, c := range h.stats.Snapshot().Counters {
		if strings.HasPrefix(c.Name, "wasm.") {
			counters[c.Name] = uint64(c.Value)
		}
	}
	now := monoNow()
	out := make([]PluginStatus, 0, len(plugins))
	for _, p := range plugins {
		ps := PluginStatus{
			Name:                p.name,
			FailurePolicy:       string(p.cfg.FailurePolicy),
			Traps:               counters["wasm."+p.name+".runtime_errors"],
			DeadlineExceeded:    counters["wasm."+p.name+".deadline_exceeded"],
			MemoryLimitExceeded: counters["wasm."+p.name+".memory_limit_exceeded"],
		}
		if p.meter != nil {
			ps.LastError = p.meter.lastErr.Load()
			ps.Traffic = p.meter.snapshot(now)
		}
		if v := p.vm; v != nil {
			ps.VM = v.creator
			v.mu.Lock()
			for i := range p.slots {
				b := p.slots[i].Load()
				if b == nil {
					continue
				}
				is := InstanceStatus{Index: i, State: InstanceHealthy}
				if i < len(v.reloads) {
					is.Replaced = v.reloads[i].replaced
				}
				switch {
				case b.inst.broken.Load():
					is.State = InstancePoisoned
					is.Reason = trapKind(b.inst.trapKind.Load()).String()
				case is.Replaced > 0:
					is.State = InstanceReplaced
				}
				ps.Instances = append(ps.Instances, is)
			}
			v.mu.Unlock()
		}
		out = append(out, ps)
	}
	return out
}
