package wasm

import (
	"errors"
	"fmt"
	"time"
)

// TestHooks let a test harness (package wasmtest) decide when time passes
// and see what a plugin does that leaves no other trace. The proxy never
// sets them: the zero value is production behaviour. Hooks are called on
// the goroutine doing the work, some with an instance locked, so they
// must not call into the host.
type TestHooks struct {
	// ManualTicks stops the tick timers: proxy_set_tick_period_milliseconds
	// only records the period, and ticks come from Plugin.Tick.
	ManualTicks bool
	// PropertyRead sees every proxy_get_property: the path segments and
	// whether a value was found.
	PropertyRead func(path []string, found bool)
	// HTTPCallStarted runs when proxy_http_call has accepted a call (its
	// request goes to Upstreams.HTTPCall next, on another goroutine);
	// HTTPCallDone runs once its reply has been delivered to the plugin
	// (or dropped because the plugin is gone).
	HTTPCallStarted func()
	HTTPCallDone    func()
	// Property, when set, is asked first for every proxy_get_property:
	// a value it returns (ok) is the property's value, in the encoding
	// the plugin reads; otherwise the host resolves the path as usual. It
	// lets a harness stand in for attributes its streams cannot carry
	// (package wasmtest/proxytest: properties a test sets).
	Property func(path []string) (value []byte, ok bool)
	// ForeignFunction, when set, is asked first for every
	// proxy_call_foreign_function: a result it returns (ok) is the call's
	// result; otherwise the host's own functions answer (package
	// wasmtest/proxytest: functions a test registers).
	ForeignFunction func(name string, args []byte) (result []byte, ok bool)
}

// SetTestHooks installs hooks. Call it before loading any plugin.
func (h *Host) SetTestHooks(th TestHooks) { h.hooks = th }

func (h *Host) propertyRead(path [][]byte, found bool) {
	if h.hooks.PropertyRead == nil {
		return
	}
	segs := make([]string, len(path))
	for i, s := range path {
		segs[i] = string(s)
	}
	h.hooks.PropertyRead(segs, found)
}

// testProperty asks the Property hook; ok false without one.
func (h *Host) testProperty(path [][]byte) ([]byte, bool) {
	if h.hooks.Property == nil {
		return nil, false
	}
	segs := make([]string, len(path))
	for i, s := range path {
		segs[i] = string(s)
	}
	return h.hooks.Property(segs)
}

// testForeignFunction asks the ForeignFunction hook; ok false without one.
func (h *Host) testForeignFunction(name, args []byte) ([]byte, bool) {
	if h.hooks.ForeignFunction == nil {
		return nil, false
	}
	return h.hooks.ForeignFunction(string(name), append([]byte(nil), args...))
}

func (h *Host) httpCallStarted() {
	if h.hooks.HTTPCallStarted != nil {
		h.hooks.HTTPCallStarted()
	}
}

func (h *Host) httpCallDone() {
	if h.hooks.HTTPCallDone != nil {
		h.hooks.HTTPCallDone()
	}
}

// TickPeriod is the tick period the plugin's root context set in its
// first live instance; 0 when none.
func (p *Plugin) TickPeriod() time.Duration {
	for _, rc := range p.rootContexts() {
		if rc != nil && !rc.deleted {
			return time.Duration(rc.tickPeriod.Load())
		}
	}
	return 0
}

// Tick delivers proxy_on_tick now, on the caller's goroutine, to the
// plugin's root context in every instance that has a tick period set,
// and reports how many ran. It is how a harness with ManualTicks moves
// time.
func (p *Plugin) Tick() int {
	n := 0
	for _, rc := range p.rootContexts() {
		if rc != nil && rc.tickPeriod.Load() > 0 {
			rc.tick()
			n++
		}
	}
	return n
}

// ExpireCalls stops the guest calls running now in the plugin's
// instances at their next fuel check, as their deadline would: each is a
// deadline hit, which poisons its instance. The call deadline counts the
// guest's CPU time (wasm/meter.Deadline), which on a busy machine runs
// slower than the wall clock; a harness that bounds calls by the wall
// clock (wasmtest) stops them with this when its time is up. Safe from
// any goroutine; an instance not in a call is unaffected.
func (p *Plugin) ExpireCalls() {
	for i := range p.slots {
		if b := p.slots[i].Load(); b != nil && b.inst != nil {
			b.inst.deadline.Expire()
		}
	}
}

// SharedData reads key from the shared data of vm_id vmID, as
// proxy_get_shared_data does.
func (h *Host) SharedData(vmID, key string) (value []byte, cas uint32, ok bool) {
	v, ok := h.shared.get(vmID, []byte(key))
	return append([]byte(nil), v.value...), v.cas, ok
}

// SetSharedData stores key = value unconditionally in the shared data of
// vm_id vmID, as proxy_set_shared_data with cas 0 does.
func (h *Host) SetSharedData(vmID, key string, value []byte) {
	h.shared.set(vmID, []byte(key), value, 0)
}

// EnqueueSharedQueue appends data to queue name of vm_id vmID and
// delivers proxy_on_queue_ready to its registrant on the caller's
// goroutine before returning. The error says when no plugin registered
// the queue.
func (h *Host) EnqueueSharedQueue(vmID, name string, data []byte) error {
	id, ok := h.queues.resolve(vmID, name)
	if !ok {
		return fmt.Errorf("no plugin registered shared queue %q (vm_id %q)", name, vmID)
	}
	owner, ok := h.queues.enqueue(id, data)
	if !ok {
		return fmt.Errorf("shared queue %q (vm_id %q) is gone", name, vmID)
	}
	if owner != nil {
		owner.queueReady(id)
	}
	return nil
}

// SharedQueueLen reports how many items wait on queue name of vm_id
// vmID.
func (h *Host) SharedQueueLen(vmID, name string) (int, error) {
	id, ok := h.queues.resolve(vmID, name)
	if !ok {
		return 0, fmt.Errorf("no plugin registered shared queue %q (vm_id %q)", name, vmID)
	}
	h.queues.mu.Lock()
	defer h.queues.mu.Unlock()
	sq := h.queues.byID[id]
	if sq == nil {
		return 0, fmt.Errorf("shared queue %q (vm_id %q) is gone", name, vmID)
	}
	return len(sq.items), nil
}

// DequeueSharedQueue takes the oldest item of queue name of vm_id vmID.
func (h *Host) DequeueSharedQueue(vmID, name string) ([]byte, error) {
	id, ok := h.queues.resolve(vmID, name)
	if !ok {
		return nil, fmt.Errorf("no plugin registered shared queue %q (vm_id %q)", name, vmID)
	}
	data, st := h.queues.dequeue(id)
	if st != statusOK {
		return nil, errors.New("the queue is empty")
	}
	return data, nil
}
