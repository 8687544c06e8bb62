package wasm

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// rootContextID is the id of each instance's single root context. Context
// ids are per instance (per VM copy in Envoy's terms): 0 is the VM itself,
// 1 the plugin's root context, streams count up from 2.
const rootContextID = 1

// instance is one module instance of a plugin: a single-threaded guest
// with its own memory, root context and lock. Every guest call holds mu;
// fields below mu are only touched with it held.
type instance struct {
	plugin *Plugin
	index  int
	// ctx is passed to every guest call; it carries the instance for host
	// functions (see instanceOf). Created once so calls do not allocate.
	ctx context.Context

	broken atomic.Bool // a trap poisoned the instance; never call it again
	closed atomic.Bool

	mu  sync.Mutex
	mod api.Module
	// starting is true during instantiation and _initialize/_start, when
	// proxy_* calls other than proxy_log are not allowed.
	starting bool
	// configuring is true inside proxy_on_configure and
	// proxy_validate_configuration, the only time the plugin
	// configuration buffer is readable.
	configuring bool

	// Cached exported function handles: looking one up per call costs
	// ~2.6 µs and 12 KB (perf-baselines §3).
	fnMalloc           api.Function
	fnContextCreate    api.Function
	fnVMStart          api.Function
	fnValidate         api.Function
	fnConfigure        api.Function
	fnTick             api.Function
	fnRequestHeaders   api.Function
	fnRequestBody      api.Function
	fnRequestTrailers  api.Function
	fnResponseHeaders  api.Function
	fnResponseBody     api.Function
	fnResponseTrailers api.Function
	fnLog              api.Function
	fnDone             api.Function
	fnDelete           api.Function
	stack              [8]uint64 // params/results of callback calls
	mallocStack        [1]uint64 // separate: the allocator runs inside callbacks
	scratch            []byte    // reusable serialization buffer
	pathBuf            []byte    // property path copied out of guest memory
	stdio              [2][]byte // partial lines written to fd 1 and 2
	nextContextID      uint32
	streams            map[uint32]*httpFilter
	effective          *httpFilter // stream the current call acts on; nil = root
	effectiveID        uint32
	pending            []*httpFilter // streams with actions to apply after the call
	metrics            metricTable

	// Tick state: the period is stored by proxy_set_tick_period_milliseconds
	// (under mu) and read by the ticker goroutine.
	tickPeriod  atomic.Int64
	tickStarted bool
	tickWake    chan struct{}
	done        chan struct{}
}

// newInstance instantiates the module and runs Envoy's start sequence:
// start section (by wazero), _initialize (+ main) or _start, root context
// creation, proxy_on_vm_start, proxy_validate_configuration and
// proxy_on_configure. The error is one line naming the failing step.
func (p *Plugin) newInstance(ctx context.Context, index int) (*instance, error) {
	inst := &instance{
		plugin:        p,
		index:         index,
		nextContextID: rootContextID + 1,
		streams:       map[uint32]*httpFilter{},
		tickWake:      make(chan struct{}, 1),
		done:          make(chan struct{}),
	}
	inst.ctx = context.WithValue(context.Background(), instanceKey{}, inst)
	inst.mu.Lock()
	defer inst.mu.Unlock()

	inst.starting = true
	mod, err := p.host.runtime.InstantiateModule(inst.ctx, p.compiled.mod,
		// Anonymous, so any number of instances of one module coexist;
		// no start functions, because the initializer is called below as
		// Envoy does (the module's start section still runs here).
		wazero.NewModuleConfig().WithName("").WithStartFunctions())
	inst.flushStdio()
	if err != nil {
		return nil, p.trapError("instantiating", err)
	}
	inst.mod = mod
	info := p.compiled.info
	inst.fnMalloc = mod.ExportedFunction(info.allocator)
	if info.initializer != "" {
		if err := inst.callInit(info.initializer); err != nil {
			inst.abort()
			return nil, err
		}
		if info.mainAfterInit != "" {
			// main(argc=0, argv=0) or __main_void(), as cpp-host does.
			inst.stack[0], inst.stack[1] = 0, 0
			err := mod.ExportedFunction(info.mainAfterInit).CallWithStack(inst.ctx, inst.stack[:])
			inst.flushStdio()
			if err != nil {
				inst.abort()
				return nil, p.trapError("running "+info.mainAfterInit, err)
			}
		}
	}
	inst.starting = false

	get := func(name string) api.Function {
		if info.callbacks[name] {
			return mod.ExportedFunction(name)
		}
		return nil
	}
	inst.fnContextCreate = get("proxy_on_context_create")
	inst.fnVMStart = get("proxy_on_vm_start")
	inst.fnValidate = get("proxy_validate_configuration")
	inst.fnConfigure = get("proxy_on_configure")
	inst.fnTick = get("proxy_on_tick")
	inst.fnRequestHeaders = get("proxy_on_request_headers")
	inst.fnRequestBody = get("proxy_on_request_body")
	inst.fnRequestTrailers = get("proxy_on_request_trailers")
	inst.fnResponseHeaders = get("proxy_on_response_headers")
	inst.fnResponseBody = get("proxy_on_response_body")
	inst.fnResponseTrailers = get("proxy_on_response_trailers")
	inst.fnLog = get("proxy_on_log")
	inst.fnDone = get("proxy_on_done")
	inst.fnDelete = get("proxy_on_delete")

	steps := []struct {
		name     string
		fn       api.Function
		arg      int
		wantTrue bool
		conf     bool
	}{
		{"proxy_on_context_create", inst.fnContextCreate, 0, false, false},
		{"proxy_on_vm_start", inst.fnVMStart, len(p.vmConfig), true, false},
		{"proxy_validate_configuration", inst.fnValidate, len(p.pluginConfig), true, true},
		{"proxy_on_configure", inst.fnConfigure, len(p.pluginConfig), true, true},
	}
	for _, s := range steps {
		if s.fn == nil {
			continue
		}
		inst.configuring = s.conf
		r, err := inst.invoke(nil, rootContextID, s.fn, rootContextID, uint64(s.arg), 0)
		inst.configuring = false
		if err != nil {
			inst.abort()
			return nil, p.trapError(s.name, err)
		}
		if s.wantTrue && uint32(r) == 0 {
			inst.abort()
			return nil, fmt.Errorf("%s returned false", s.name)
		}
	}
	return inst, nil
}

// callInit runs _initialize or _start. A command module's _start may end
// with proc_exit(0), which cpp-host only logs, so no exit error arises.
func (inst *instance) callInit(name string) error {
	fn := inst.mod.ExportedFunction(name)
	err := fn.CallWithStack(inst.ctx, inst.stack[:])
	inst.flushStdio()
	if err != nil {
		return inst.plugin.trapError("running "+name, err)
	}
	return nil
}

// trapError turns a wazero error into one line for load errors, logging
// the full text (with the guest stack trace) at error level.
func (p *Plugin) trapError(step string, err error) error {
	msg := err.Error()
	if line := firstLine(msg); line != msg {
		p.host.log.Error(fmt.Sprintf("wasm: plugin %s: %s failed: %s", p.name, step, line),
			"stack", strings.TrimSpace(msg[len(line):]))
		msg = line
	}
	return fmt.Errorf("%s: %s", step, msg)
}

// invoke calls a guest callback with up to three arguments on behalf of
// context id (stream f, or the root context when f is nil), then applies
// the actions the guest queued on streams. The caller holds mu.
func (inst *instance) invoke(f *httpFilter, id uint32, fn api.Function, a, b, c uint64) (uint64, error) {
	st := inst.stack[:]
	st[0], st[1], st[2] = a, b, c
	inst.effective, inst.effectiveID = f, id
	err := fn.CallWithStack(inst.ctx, st)
	inst.effective, inst.effectiveID = nil, 0
	inst.applyPending()
	if len(inst.stdio[0])|len(inst.stdio[1]) != 0 {
		inst.flushStdio()
	}
	return st[0], err
}

// queue records that stream f has actions to apply after the current
// guest call; they go through filter.Callbacks, which only post to the
// stream, so applying them while mu is held cannot re-enter the guest.
func (inst *instance) queue(f *httpFilter) {
	if !f.queued {
		f.queued = true
		inst.pending = append(inst.pending, f)
	}
}

func (inst *instance) applyPending() {
	for i, f := range inst.pending {
		f.queued = false
		f.applyActions()
		inst.pending[i] = nil
	}
	inst.pending = inst.pending[:0]
}

// fail marks the instance broken after a trap in callback and logs it
// once, with the guest stack trace. Later callbacks on it are skipped.
func (inst *instance) fail(callback string, err error) {
	if inst.broken.Swap(true) {
		return
	}
	p := inst.plugin
	msg := err.Error()
	line := firstLine(msg)
	p.host.log.Error(fmt.Sprintf("wasm: plugin %s: %s failed: %s", p.name, callback, line),
		"instance", inst.index, "stack", strings.TrimSpace(msg[len(line):]))
	p.host.stats.Counter("wasm." + p.name + ".runtime_errors").Inc()
}

// closeModule releases the guest. The caller holds mu.
func (inst *instance) closeModule() {
	if inst.mod != nil {
		_ = inst.mod.Close(context.Background())
	}
}

// abort discards an instance whose start-up failed. The caller holds mu.
func (inst *instance) abort() {
	inst.closed.Store(true)
	close(inst.done)
	inst.closeModule()
}

// close ends the root context (on_done, on_delete) and the module.
func (inst *instance) close() {
	if inst.closed.Swap(true) {
		return
	}
	close(inst.done)
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if !inst.broken.Load() {
		for _, cb := range []struct {
			name string
			fn   api.Function
		}{{"proxy_on_done", inst.fnDone}, {"proxy_on_delete", inst.fnDelete}} {
			if cb.fn == nil {
				continue
			}
			if _, err := inst.invoke(nil, rootContextID, cb.fn, rootContextID, 0, 0); err != nil {
				inst.fail(cb.name, err)
				break
			}
		}
	}
	inst.closeModule()
}

// --- timers ---------------------------------------------------------------

// setTickPeriod stores the root context's tick period; 0 stops ticking.
// Called from a host function, so mu is held.
func (inst *instance) setTickPeriod(d time.Duration) {
	inst.tickPeriod.Store(int64(d))
	if d > 0 && !inst.tickStarted {
		inst.tickStarted = true
		go inst.tickLoop()
	}
	select {
	case inst.tickWake <- struct{}{}:
	default:
	}
}

// tickLoop calls proxy_on_tick on the root context every period, taking
// the instance lock like any other guest call.
func (inst *instance) tickLoop() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		d := time.Duration(inst.tickPeriod.Load())
		if d <= 0 {
			select {
			case <-inst.tickWake:
				continue
			case <-inst.done:
				return
			}
		}
		timer.Reset(d)
		select {
		case <-timer.C:
			inst.tick()
		case <-inst.tickWake:
			timer.Stop()
		case <-inst.done:
			return
		}
	}
}

func (inst *instance) tick() {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if inst.fnTick == nil || inst.broken.Load() || inst.closed.Load() {
		return
	}
	if _, err := inst.invoke(nil, rootContextID, inst.fnTick, rootContextID, 0, 0); err != nil {
		inst.fail("proxy_on_tick", err)
	}
}
