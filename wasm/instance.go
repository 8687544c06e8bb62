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

	"github.com/wasmproxy/wasmproxy/wasm/meter"
)

// instance is one module instance of a VM: a single-threaded guest with
// its own memory, one root context per plugin sharing the VM, and a lock.
// Every guest call holds mu; fields below mu are only touched with it
// held.
type instance struct {
	vm    *vm
	index int
	// ctx is passed to every guest call; it carries the instance for host
	// functions (see instanceOf) and the deadline for the meter. It is
	// &callCtx, made once with the instance so calls do not allocate.
	ctx     context.Context
	callCtx callContext

	broken atomic.Bool // a trap poisoned the instance; never call it again
	// trapKind is the trapKind that poisoned it, for the status page.
	trapKind atomic.Uint32
	closed   atomic.Bool

	// deadline bounds the guest call in progress; ctx carries it to the
	// meter's fuel checks. budget is the CPU time each call gets (the
	// VM's start-up or callback limit, 0 = none; meter.Deadline says how
	// it is counted); sawOOM records an allocator's out-of-memory report
	// on stderr (limits.go).
	deadline meter.Deadline
	budget   time.Duration
	sawOOM   bool

	mu  sync.Mutex
	mod api.Module
	// plugin and root are the plugin and root context the current guest
	// call runs under (set by invoke and proxy_set_effective_context).
	plugin *Plugin
	root   *rootContext
	roots  map[uint32]*rootContext
	// starting is true during instantiation and _initialize/_start, when
	// proxy_* calls other than proxy_log are not allowed.
	starting bool
	// configuring is true inside proxy_on_configure and
	// proxy_validate_configuration, the only time the plugin
	// configuration buffer is readable.
	configuring bool

	// Cached exported function handles: looking one up per call costs
	// ~2.6 µs and 12 KB (measured before the project started).
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
	fnQueueReady       api.Function
	fnHTTPCallResponse api.Function
	fnGrpcInitialMeta  api.Function
	fnGrpcReceive      api.Function
	fnGrpcTrailingMeta api.Function
	fnGrpcClose        api.Function
	fnForeign          api.Function
	fnResolveDNS       api.Function
	// TCP callbacks (tcp_filter.go).
	fnNewConnection   api.Function
	fnDownstreamData  api.Function
	fnUpstreamData    api.Function
	fnDownstreamClose api.Function
	fnUpstreamClose   api.Function
	stack             [8]uint64 // params/results of callback calls
	mallocStack       [1]uint64 // separate: the allocator runs inside callbacks
	scratch           []byte    // reusable serialization buffer
	pathBuf           []byte    // property path copied out of guest memory
	stdio             [2][]byte // partial lines written to fd 1 and 2
	nextContextID     uint32
	streams           streamTable
	effective         *httpFilter // stream the current call acts on; nil = root
	effectiveID       uint32
	pending           []*httpFilter // streams with actions to apply after the call
	// conns are the live TCP connection contexts; effectiveConn is the
	// one the current call acts on (nil when it is a root or HTTP one).
	conns         map[uint32]*networkFilter
	effectiveConn *networkFilter
	metrics       metricTable
	// callout holds what a callout callback may read (map types 4-7,
	// buffer types 4, 5 and 8) while it runs.
	callout calloutData
	// afterCall are actions to run once the current guest call returns
	// (deferred root-context deletion after proxy_done).
	afterCall []func()
	tokenSeq  uint32    // callout tokens handed out
	dnsSeq    uint32    // envoy_resolve_dns tokens handed out
	grpc      grpcCalls // live gRPC calls and streams by token

	done chan struct{}
}

// newInstance instantiates the module and runs its initializer: start
// section (by wazero), _initialize (+ main) or _start. Root contexts are
// started by startRoot. p is the plugin that creates the VM, used for
// logs during start-up. The error is one line naming the failing step.
// newInstance instantiates the module and runs its initializer; tm,
// when not nil, receives how long the two took.
func (v *vm) newInstance(ctx context.Context, p *Plugin, index int, tm *instanceTimes) (*instance, error) {
	inst := &instance{
		vm:            v,
		plugin:        p,
		index:         index,
		nextContextID: 1,
		roots:         map[uint32]*rootContext{},
		conns:         map[uint32]*networkFilter{},
		done:          make(chan struct{}),
	}
	inst.callCtx.inst = inst
	inst.ctx = &inst.callCtx
	inst.mu.Lock()
	defer inst.mu.Unlock()

	inst.starting = true
	inst.budget = v.limits.start
	defer func() { inst.budget = v.limits.call }()
	inst.arm()
	// Linear memory grows in place inside a reservation of the cap
	// (memory_linux.go); only instantiation needs the allocator.
	mem := newGuestMemory(v.limits.memPages)
	began := time.Now()
	mod, err := v.host.runtime.InstantiateModule(mem.context(inst.ctx), v.compiled.mod,
		// Anonymous, so any number of instances of one module coexist;
		// no start functions, because the initializer is called below as
		// Envoy does (the module's start section still runs here).
		wazero.NewModuleConfig().WithName("").WithStartFunctions())
	// The start section ran under the deadline: end that call (Clear
	// also unpins the goroutine if its CPU was being counted).
	inst.deadline.Clear()
	inst.flushStdio()
	if err != nil {
		mem.release()
		return nil, inst.trapError(p, "instantiating", err)
	}
	inst.mod = mod
	info := v.compiled.info
	inst.fnMalloc = mod.ExportedFunction(info.allocator)
	initBegan := time.Now()
	if tm != nil {
		tm.instantiate = initBegan.Sub(began)
		defer func() { tm.initialize = time.Since(initBegan) }()
	}
	if info.initializer != "" {
		if err := inst.callInit(info.initializer); err != nil {
			inst.abort()
			return nil, err
		}
		if info.mainAfterInit != "" {
			// main(argc=0, argv=0) or __main_void(), as cpp-host does.
			inst.stack[0], inst.stack[1] = 0, 0
			inst.arm()
			err := mod.ExportedFunction(info.mainAfterInit).CallWithStack(inst.ctx, inst.stack[:])
			inst.deadline.Clear()
			inst.flushStdio()
			if err != nil {
				inst.abort()
				return nil, inst.trapError(p, "running "+info.mainAfterInit, err)
			}
		}
	}
	inst.starting = false

	get := func(name string) api.Function {
		if info.callbacks[name] && v.callbackAllowed(name) {
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
	inst.fnQueueReady = get("proxy_on_queue_ready")
	inst.fnHTTPCallResponse = get("proxy_on_http_call_response")
	inst.fnGrpcInitialMeta = get("proxy_on_grpc_receive_initial_metadata")
	inst.fnGrpcReceive = get("proxy_on_grpc_receive")
	inst.fnGrpcTrailingMeta = get("proxy_on_grpc_receive_trailing_metadata")
	inst.fnGrpcClose = get("proxy_on_grpc_close")
	if v.abi != abi010 {
		inst.fnForeign = get("proxy_on_foreign_function")
	}
	inst.fnResolveDNS = get("envoy_on_resolve_dns")
	inst.fnNewConnection = get("proxy_on_new_connection")
	inst.fnDownstreamData = get("proxy_on_downstream_data")
	inst.fnUpstreamData = get("proxy_on_upstream_data")
	inst.fnDownstreamClose = get("proxy_on_downstream_connection_close")
	inst.fnUpstreamClose = get("proxy_on_upstream_connection_close")
	return inst, nil
}

// startRoot creates plugin p's root context in the instance and runs
// Envoy's start sequence for it: proxy_on_context_create(root, 0),
// proxy_on_vm_start, proxy_validate_configuration, proxy_on_configure.
// On failure the root context is removed again.
//
// tm, when not nil, receives how long on_vm_start (with the context's
// creation) and on_configure (with its validation) took.
func (inst *instance) startRoot(p *Plugin, tm *instanceTimes) (*rootContext, error) {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	rc := newRootContext(p, inst, inst.nextContextID)
	inst.nextContextID++
	inst.roots[rc.id] = rc
	// Start-up callbacks get the longer start-up budget.
	inst.budget = inst.vm.limits.start
	defer func() { inst.budget = inst.vm.limits.call }()
	steps := []struct {
		name     string
		fn       api.Function
		arg      int
		wantTrue bool
		conf     bool
	}{
		{"proxy_on_context_create", inst.fnContextCreate, 0, false, false},
		{"proxy_on_vm_start", inst.fnVMStart, len(inst.vm.vmConfig), true, false},
		{"proxy_validate_configuration", inst.fnValidate, len(p.pluginConfig), true, true},
		{"proxy_on_configure", inst.fnConfigure, len(p.pluginConfig), true, true},
	}
	began, configBegan := time.Now(), time.Time{}
	if tm != nil {
		defer func() {
			if configBegan.IsZero() {
				configBegan = time.Now()
			}
			tm.vmStart, tm.configure = configBegan.Sub(began), time.Since(configBegan)
		}()
	}
	for _, s := range steps {
		if s.fn == nil {
			continue
		}
		if s.conf && configBegan.IsZero() {
			configBegan = time.Now()
		}
		inst.configuring = s.conf
		r, err := inst.invoke(nil, rc.id, s.fn, uint64(rc.id), uint64(s.arg), 0)
		inst.configuring = false
		if err != nil {
			inst.fail(s.name, err) // logs the trap, with its stack trace
			inst.dropRoot(rc)
			return nil, fmt.Errorf("%s: %s", s.name, firstLine(err.Error()))
		}
		if s.wantTrue && uint32(r) == 0 {
			inst.dropRoot(rc)
			return nil, fmt.Errorf("%s returned false", s.name)
		}
	}
	shareInitialPages(inst) // started: pages in common with the module's image become shared (cowmem_linux.go)
	return rc, nil
}

// dropRoot forgets a root context. The caller holds mu.
func (inst *instance) dropRoot(rc *rootContext) {
	rc.deleted = true
	rc.stop()
	delete(inst.roots, rc.id)
}

// callInit runs _initialize or _start. A command module's _start may end
// with proc_exit(0), which cpp-host only logs, so no exit error arises.
func (inst *instance) callInit(name string) error {
	fn := inst.mod.ExportedFunction(name)
	inst.arm()
	err := fn.CallWithStack(inst.ctx, inst.stack[:])
	inst.deadline.Clear()
	inst.flushStdio()
	if err != nil {
		return inst.trapError(inst.plugin, "running "+name, err)
	}
	return nil
}

// trapError turns a wazero error during start-up into one line for the
// load error, logging the full text (with the guest stack trace) at error
// level under the name of plugin p.
func (inst *instance) trapError(p *Plugin, step string, err error) error {
	msg := inst.vm.compiled.original(err).Error()
	if line := firstLine(msg); line != msg {
		p.host.log.Error(fmt.Sprintf("wasm: plugin %s: %s failed: %s", p.name, step, line),
			"stack", strings.TrimSpace(msg[len(line):]))
		msg = line
	}
	return fmt.Errorf("%s: %s", step, msg)
}

// invoke calls a guest callback with up to three arguments on behalf of
// context id (stream f, or root context id when f is nil), then applies
// the actions the guest queued on streams. The caller holds mu.
func (inst *instance) invoke(f *httpFilter, id uint32, fn api.Function, a, b, c uint64) (uint64, error) {
	st := inst.stack[:]
	st[0], st[1], st[2] = a, b, c
	if f != nil {
		inst.root, inst.plugin = f.root, f.plugin
	} else if rc := inst.roots[id]; rc != nil {
		inst.root, inst.plugin = rc, rc.plugin
	}
	inst.effective, inst.effectiveID = f, id
	if f != nil && f.began != 0 && inst.budget > 0 {
		// The stream callback read the clock as it began (to time
		// itself): that reading starts the deadline too. Once: a second
		// guest call in the same callback reads the clock again.
		inst.deadline.SetTimeoutAt(inst.budget, int64(f.began))
		f.began = 0
	} else {
		inst.arm()
	}
	err := fn.CallWithStack(inst.ctx, st)
	if inst.budget > 0 {
		// Host-initiated guest calls outside invoke (the allocator) must
		// not inherit a deadline that has already passed; and Clear
		// unpins this goroutine if the meter pinned it to count CPU.
		inst.deadline.Clear()
	}
	inst.effective, inst.effectiveID = nil, 0
	inst.effectiveConn = nil // set by networkFilter.call or proxy_set_effective_context
	inst.applyPending()
	if len(inst.afterCall) != 0 {
		inst.runAfterCall()
	}
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

// arm sets the deadline of the guest call about to start: one clock
// read and a few stores; the meter looks at it once per fuel check. Every
// armed call is followed by deadline.Clear on the same goroutine.
func (inst *instance) arm() {
	if inst.budget > 0 {
		inst.deadline.SetTimeout(inst.budget)
	}
}

// fail marks the instance broken after a trap in callback and logs it
// once, with the reason and the guest stack trace (function names, from
// wazero). Later callbacks on it are skipped; the plugins' failure
// policies decide what happens to its streams and whether it is
// replaced (failreload.go). Counted in wasm.<plugin>.runtime_errors, and in
// deadline_exceeded or memory_limit_exceeded when that was the cause.
func (inst *instance) fail(callback string, err error) {
	if inst.broken.Swap(true) {
		return
	}
	p := inst.plugin
	kind := inst.classify(err)
	msg := inst.vm.compiled.original(err).Error()
	line := firstLine(msg)
	stack := strings.TrimSpace(msg[len(line):])
	if kind != trapRuntime {
		line = kind.String() + ": " + line
	}
	p.host.log.Error(fmt.Sprintf("wasm: plugin %s: %s failed: %s", p.name, callback, line),
		"instance", inst.index, "callback", callback, "reason", kind.String(), "stack", stack)
	inst.trapKind.Store(uint32(kind))
	if p.meter != nil {
		p.meter.recordTrap(&TrapRecord{Time: time.Now(), Instance: inst.index, Callback: callback, Reason: kind.String(), Message: line, Stack: stack})
	}
	p.host.stats.Counter("wasm." + p.name + ".runtime_errors").Inc()
	// Streams and connections the guest had paused would wait forever
	// for a resume the poisoned instance can no longer give: answer them
	// now.
	inst.streams.each(func(f *httpFilter) { f.failHeld(inst) })
	for _, c := range inst.conns {
		c.failHeld()
	}
	inst.applyPending()
	switch kind {
	case trapDeadline:
		p.host.stats.Counter("wasm." + p.name + ".deadline_exceeded").Inc()
	case trapMemory:
		p.host.stats.Counter("wasm." + p.name + ".memory_limit_exceeded").Inc()
	}
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

// closeRoot ends one root context: proxy_on_done, then proxy_on_delete
// unless on_done returned false, in which case the context waits for the
// plugin's proxy_done (Envoy honours that for root contexts only). The
// caller holds mu.
func (inst *instance) closeRoot(rc *rootContext) {
	if rc.deleted {
		return
	}
	rc.stop()
	if inst.broken.Load() {
		inst.dropRoot(rc)
		return
	}
	if inst.fnDone != nil {
		r, err := inst.invoke(nil, rc.id, inst.fnDone, uint64(rc.id), 0, 0)
		if err != nil {
			inst.fail("proxy_on_done", err)
			inst.dropRoot(rc)
			return
		}
		if uint32(r) == 0 {
			rc.doneWait = true
			return
		}
	}
	inst.deleteRoot(rc)
}

// deleteRoot calls proxy_on_delete for a root context and forgets it.
// The caller holds mu.
func (inst *instance) deleteRoot(rc *rootContext) {
	if rc.deleted {
		return
	}
	if inst.fnDelete != nil && !inst.broken.Load() {
		if _, err := inst.invoke(nil, rc.id, inst.fnDelete, uint64(rc.id), 0, 0); err != nil {
			inst.fail("proxy_on_delete", err)
		}
	}
	inst.dropRoot(rc)
}

func (inst *instance) runAfterCall() {
	fns := inst.afterCall
	inst.afterCall = nil
	for _, fn := range fns {
		fn()
	}
}

// close ends every root context still alive (on_done, on_delete) and the
// module.
func (inst *instance) close() {
	if inst.closed.Load() {
		return
	}
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if inst.closed.Load() {
		return
	}
	for _, rc := range inst.sortedRoots() {
		if rc.doneWait {
			inst.deleteRoot(rc)
			continue
		}
		inst.closeRoot(rc)
		if rc.doneWait {
			// The VM goes away: do not wait for proxy_done any longer.
			inst.deleteRoot(rc)
		}
	}
	inst.closed.Store(true)
	close(inst.done)
	inst.closeModule()
}

// sortedRoots lists the live root contexts by id. The caller holds mu.
func (inst *instance) sortedRoots() []*rootContext {
	out := make([]*rootContext, 0, len(inst.roots))
	for id := uint32(1); id < inst.nextContextID && len(out) < len(inst.roots); id++ {
		if rc := inst.roots[id]; rc != nil {
			out = append(out, rc)
		}
	}
	return out
}
