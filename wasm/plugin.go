package wasm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/codedigest"
)

// defaultRuntime is the runtime name used in stats when the config names
// none, matching what Istio sends and Envoy's official builds use.
const defaultRuntime = "envoy.wasm.runtime.v8"

// Plugin is one loaded PluginConfig: a root context in each instance of
// its VM. Plugins whose VM key (vm_id, VM configuration, code) matches
// share the VM. It implements filter.Factory; it is safe for concurrent
// use.
type Plugin struct {
	host     *Host
	cfg      config.WasmPlugin
	name     string
	source   string // code file, or "inline code", for messages
	compiled *compiledModule
	abi      abiVersion
	vm       *vm

	vmConfig     []byte
	pluginConfig []byte
	environ      []string // "KEY=VALUE" for WASI environ_get
	logPrefix    string   // "wasm log <name> <root_id> <vm_id>: "
	failOpen     bool
	// reload is FAIL_RELOAD or the default policy (failure_policy
	// unset): a poisoned instance is replaced by the next stream that
	// would use it (failreload.go). Only an explicit FAIL_CLOSED (or
	// FAIL_OPEN) leaves it dead until a reload.
	reload bool

	// slots are the VM's pool slots as this plugin sees them: the
	// instance and this plugin's root context in it (nil root: not
	// started there). A reload swaps a slot's binding.
	slots []atomic.Pointer[binding]
	next  atomic.Uint32
	// live is how many slots, from the first, hold an instance: the
	// first when the load returns, the rest once the pool has started
	// behind it (startSlots). pick reads only these.
	live atomic.Uint32
	// pooled is closed once the pool's other instances have started
	// (or failed to) and timings holds PhasePool.
	pooled chan struct{}

	closed    atomic.Bool
	closeOnce sync.Once
	warned    sync.Map // names of unimplemented functions already logged

	timings StartupTimings // set once the load is done; PhasePool once pooled is closed
	// meter is the plugin name's traffic history and last trap
	// (status.go).
	meter *pluginMeter
}

// LoadPlugin compiles (cached by code hash), finds or creates the VM
// (PoolSize instances, each running _initialize / _start), and in each
// instance creates the plugin's root context and runs on_vm_start (VM
// config) and on_configure (plugin config). Any failure returns one error
// line naming the plugin, the code file (or "inline code") and the reason.
func (h *Host) LoadPlugin(ctx context.Context, cfg *config.WasmPlugin) (*Plugin, error) {
	return h.loadPlugin(ctx, cfg, false)
}

// loadPlugin is LoadPlugin; singleton loads into a VM of one instance of
// its own (LoadService).
func (h *Host) loadPlugin(ctx context.Context, cfg *config.WasmPlugin, singleton bool) (*Plugin, error) {
	if cfg == nil {
		return nil, errors.New("wasm: nil plugin config")
	}
	p := &Plugin{
		host:         h,
		cfg:          *cfg,
		name:         cfg.Name,
		source:       "inline code",
		vmConfig:     cfg.VMConfiguration,
		pluginConfig: cfg.PluginConfiguration,
		failOpen:     cfg.FailurePolicy == config.FailOpen,
		reload:       cfg.FailurePolicy == config.FailReload || cfg.FailurePolicy == config.FailDefault,
	}
	if cfg.CodeFile != "" {
		p.source = cfg.CodeFile
	}
	p.meter = h.trafficMeter(p.name)
	fail := func(err error) (*Plugin, error) {
		if p.name == "" {
			// Envoy allows a nameless plugin (the seed's has none); the
			// code source still identifies it.
			return nil, fmt.Errorf("plugin (unnamed) (%s): %w", p.source, err)
		}
		return nil, fmt.Errorf("plugin %q (%s): %w", p.name, p.source, err)
	}

	// A resolved config (the library's resolve step) carries the code
	// file's bytes in Code, read once; CodeFile then only names it.
	clock := newStartClock()
	code := cfg.Code
	readDetail := "resolved"
	if len(code) == 0 && cfg.CodeFile != "" {
		var err error
		if code, err = os.ReadFile(cfg.CodeFile); err != nil {
			return fail(fmt.Errorf("reading code: %w", err))
		}
		readDetail = ""
	}
	clock.mark(PhaseRead, readDetail)
	if len(code) == 0 {
		return fail(errors.New("no code (neither a code file nor inline code)"))
	}
	if len(code) < 8 || !bytes.Equal(code[:4], []byte("\x00asm")) {
		return fail(errors.New("not a WebAssembly module (bad magic)"))
	}
	if !bytes.Equal(code[4:8], []byte{1, 0, 0, 0}) {
		return fail(fmt.Errorf("unsupported WebAssembly binary version %d (want 1)", code[4]))
	}
	digest, hashDetail := codeDigest(cfg, code)
	clock.mark(PhaseHash, hashDetail)
	p.environ = environ(cfg)
	p.logPrefix = logPrefix(cfg)

	lim, err := pluginLimits(cfg)
	if err != nil {
		return fail(err)
	}

	h.loadMu.Lock()
	// A fresh pool's other instances start after the load returns, still
	// under loadMu (startSlots): no other load or close sees the VM half
	// started.
	handedOff := false
	defer func() {
		if !handedOff {
			h.loadMu.Unlock()
		}
	}()
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return fail(errors.New("host is closed"))
	}
	// Waiting for another load is not a phase of this one.
	clock.restart()
	key := makeVMKey(cfg.VMID, cfg.VMConfiguration, digest)
	poolSize := h.poolSize
	if singleton {
		key, poolSize = singletonVMKey(key), 1
	}
	v := h.vms[key]
	fresh := v == nil
	if !fresh && lim != v.limits {
		// As in Envoy, environment variables are not part of the VM
		// key, so the limits in them cannot split a shared VM: say so
		// rather than ignore them silently.
		h.log.Warn(fmt.Sprintf("wasm: plugin %s: shares a VM with plugin %s (same vm_id, configuration and code), whose limits apply (%s); its own (%s) are ignored: give it another vm_id to run under them",
			p.name, v.creator, v.limits, lim))
	}
	if fresh {
		cm, err := h.acquire(ctx, code, digest, lim, clock)
		if err != nil {
			return fail(err)
		}
		runtimeName := cfg.Runtime
		if runtimeName == "" {
			runtimeName = defaultRuntime
		}
		v = &vm{
			host: h, key: key, compiled: cm, abi: cm.info.abi,
			vmID: cfg.VMID, vmConfig: cfg.VMConfiguration, environ: p.environ, limits: lim, creator: p.name,
			capabilities: capabilitySet(cfg),
			created:      h.stats.Counter("wasm." + runtimeName + ".created"),
			active:       h.stats.Gauge("wasm." + runtimeName + ".active"),
		}
	} else {
		clock.mark(PhaseInstrument, "shared")
		clock.mark(PhaseCompile, "shared")
	}
	p.vm, p.compiled, p.abi = v, v.compiled, v.abi
	// v.mu keeps a reload from replacing an instance while the plugin's
	// root contexts are started.
	v.mu.Lock()
	slots, rest, err := p.startSlots(ctx, fresh, poolSize, clock)
	if err != nil {
		v.mu.Unlock()
		return fail(err)
	}
	p.slots = slots
	v.members = append(v.members, p)
	v.mu.Unlock()
	v.plugins++
	if fresh {
		h.vms[key] = v
	}
	p.timings = clock.done()
	p.pooled = make(chan struct{})
	h.log.Debug("plugin started", "plugin", p.name, "code", p.source, "instances", p.live.Load(), "phases", p.timings)
	h.mu.Lock()
	h.plugins[p] = struct{}{}
	h.mu.Unlock()
	if rest == nil {
		close(p.pooled)
		return p, nil
	}
	handedOff = true
	go func() {
		defer h.loadMu.Unlock()
		d, detail := rest()
		p.timings.Phases = append(p.timings.Phases, Phase{Name: PhasePool, Duration: d, Detail: detail})
		// At info level: the proxy has been ready since the first
		// instance started; this says when its whole pool serves.
		h.log.Info("plugin pool started", "plugin", p.name, "code", p.source, "instances", p.live.Load(), "pool", d.Round(time.Microsecond).String())
		close(p.pooled)
	}()
	return p, nil
}

// startSlots starts the plugin in every instance of its VM, creating
// them first when the VM is fresh (poolSize of them). The first instance
// starts alone, so that a plugin that cannot start fails once and its
// phases are those of one instance; when it fails, everything started is
// closed again (the VM too when fresh). The caller holds loadMu and v.mu.
//
// In a fresh VM of more than one instance, the others are left to rest,
// which the caller runs once the load has returned (so a proxy is ready
// when one instance is, as the issue of start-up asks) while still
// holding loadMu, without v.mu: it starts them in parallel, at most
// GOMAXPROCS at a time, and publishes them (v.instances, the slots,
// p.live) under v.mu; until then every stream goes to the first
// instance. An instance that fails to start there is logged and left
// out of the pool, which the first one's start has shown the plugin
// works in. rest returns PhasePool's wall time and detail.
func (p *Plugin) startSlots(ctx context.Context, fresh bool, poolSize int, clock *startClock) (slots []atomic.Pointer[binding], rest func() (time.Duration, string), err error) {
	v := p.vm
	n := poolSize
	if !fresh {
		n = len(v.instances)
	}
	if n == 0 {
		// Not reached: a VM in Host.vms keeps its pool. No instance
		// to start in, no slot.
		return nil, nil, errors.New("the plugin's VM has no instances")
	}
	insts := make([]*instance, n)
	roots := make([]*rootContext, n)
	start := func(ctx context.Context, i int, tm *instanceTimes) error {
		inst := (*instance)(nil)
		if fresh {
			var err error
			if inst, err = v.newInstance(ctx, p, i, tm); err != nil {
				return err
			}
			v.created.Inc()
			v.active.Add(1)
		} else {
			inst = v.instances[i]
		}
		insts[i] = inst
		if inst.broken.Load() || inst.closed.Load() {
			return nil
		}
		rc, err := inst.startRoot(p, tm)
		roots[i] = rc
		return err
	}
	// closeOne ends the root context started in insts[i], and when fresh
	// the instance too, after a failure.
	closeOne := func(i int) {
		inst, rc := insts[i], roots[i]
		if inst == nil {
			return
		}
		inst.mu.Lock()
		if rc != nil && !inst.closed.Load() {
			inst.closeRoot(rc)
		}
		inst.mu.Unlock()
		if fresh {
			inst.close()
			v.active.Add(-1)
		}
	}
	closeAll := func() {
		for i := range n {
			closeOne(i)
		}
	}
	var first instanceTimes
	err = start(ctx, 0, &first)
	instDetail := ""
	if !fresh {
		instDetail = "shared"
	}
	clock.add(PhaseInstantiate, first.instantiate, instDetail)
	clock.add(PhaseInitialize, first.initialize, instDetail)
	clock.add(PhaseVMStart, first.vmStart, "")
	clock.add(PhaseConfigure, first.configure, "")
	clock.restart()
	if err != nil {
		closeAll()
		if fresh {
			// The VM owns no instance yet; this releases its compiled code.
			v.mu.Unlock()
			v.close(ctx)
			v.mu.Lock()
		}
		return nil, nil, err
	}
	slots = make([]atomic.Pointer[binding], n)
	slots[0].Store(&binding{inst: insts[0], root: roots[0]})
	if fresh {
		v.instances = insts[:1:1]
		v.reloads = make([]reloadState, n)
	}
	if fresh && n > 1 {
		p.live.Store(1)
		ctx = context.WithoutCancel(ctx) // the load's context may end when it returns
		rest = func() (time.Duration, string) {
			began := time.Now()
			errs := make([]error, n)
			sem := make(chan struct{}, runtime.GOMAXPROCS(0))
			var wg sync.WaitGroup
			for i := 1; i < n; i++ {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; wg.Done() }()
					if hook := p.host.poolStarting; hook != nil {
						if errs[i] = hook(i); errs[i] != nil {
							return
						}
					}
					if errs[i] = start(ctx, i, nil); errs[i] != nil {
						closeOne(i)
					}
				}()
			}
			wg.Wait()
			v.mu.Lock()
			for i := 1; i < n; i++ {
				if errs[i] != nil {
					p.host.log.Error(fmt.Sprintf("wasm: plugin %s: starting instance %d of its pool failed; it runs on the others: %v", p.name, i, errs[i]))
					continue
				}
				idx := len(v.instances) // below i when one before failed
				insts[i].index = idx
				v.instances = append(v.instances, insts[i])
				slots[idx].Store(&binding{inst: insts[i], root: roots[i]})
			}
			started := len(v.instances)
			p.live.Store(uint32(started))
			v.mu.Unlock()
			return time.Since(began), fmt.Sprintf("%d more instances, after ready", started-1)
		}
		return slots, rest, nil
	}
	for i := 1; i < n; i++ {
		if err = start(ctx, i, nil); err != nil {
			closeAll()
			return nil, nil, err
		}
		slots[i].Store(&binding{inst: insts[i], root: roots[i]})
	}
	clock.mark(PhasePool, fmt.Sprintf("%d more instances", n-1))
	p.live.Store(uint32(n))
	return slots, nil, nil
}

// StartupTimings reports how long each phase of the plugin's load took.
// The pool's other instances start after the load returns: this waits
// for them, so PhasePool is there.
func (p *Plugin) StartupTimings() StartupTimings {
	p.waitPool()
	return p.timings
}

// WaitPool waits until the pool's other instances, which start after
// LoadPlugin has returned, have started (or failed to): a harness whose
// streams must spread over the whole pool calls it first.
func (p *Plugin) WaitPool() { p.waitPool() }

// waitPool is WaitPool; see startSlots.
func (p *Plugin) waitPool() {
	if p.pooled != nil {
		<-p.pooled
	}
}

// codeDigest is the sha256 of code: the digest resolving stamped on the
// config when it has one for these bytes (detail "resolved"), else
// computed with codedigest.Of, the one hash of module code.
func codeDigest(cfg *config.WasmPlugin, code []byte) ([sha256.Size]byte, string) {
	var sum [sha256.Size]byte
	if cfg.CodeDigest != "" && len(cfg.Code) > 0 {
		if b, err := hex.DecodeString(cfg.CodeDigest); err == nil && len(b) == len(sum) {
			copy(sum[:], b)
			return sum, "resolved"
		}
	}
	b, _ := hex.DecodeString(codedigest.Of(code))
	copy(sum[:], b)
	return sum, ""
}

// close ends every instance of the VM and releases its compiled code.
func (v *vm) close(ctx context.Context) {
	v.mu.Lock()
	insts := v.instances
	v.instances, v.members = nil, nil
	v.mu.Unlock()
	for _, inst := range insts {
		inst.close()
		v.active.Add(-1)
	}
	v.host.release(ctx, v.compiled)
}

// Name is the plugin's configured name.
func (p *Plugin) Name() string { return p.name }

// NewStreamFilter implements filter.Factory. The stream is bound to an
// instance lazily, when its context is created.
func (p *Plugin) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &httpFilter{plugin: p, cb: cb}
}

// closeRoots ends the plugin's root contexts (proxy_on_done, then
// proxy_on_delete).
func (p *Plugin) closeRoots() {
	for _, rc := range p.rootContexts() {
		inst := rc.inst
		inst.mu.Lock()
		if !inst.closed.Load() {
			inst.closeRoot(rc)
		}
		inst.mu.Unlock()
	}
}

// Close ends the plugin's root context in every instance (proxy_on_done,
// then proxy_on_delete) and, when no other plugin shares the VM, closes
// the instances. Streams still bound to the plugin continue without
// calling the guest, so close a plugin once its streams have ended
// (after a reload has drained).
func (p *Plugin) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		h := p.host
		h.loadMu.Lock()
		p.closeRoots()
		v := p.vm
		if v != nil {
			v.removeMember(p)
			v.plugins--
			if v.plugins <= 0 {
				if h.vms[v.key] == v {
					delete(h.vms, v.key)
				}
				v.close(ctx)
			}
		}
		h.loadMu.Unlock()
		h.mu.Lock()
		delete(h.plugins, p)
		h.mu.Unlock()
	})
	return nil
}

// pick chooses the instance for a new stream, with the plugin's root
// context in it: round robin, skipping instances a trap has poisoned.
// Under FAIL_RELOAD and the default policy a poisoned instance where the
// round robin lands is first replaced, unless its backoff forbids
// (failreload.go). nil means none is usable.
func (p *Plugin) pick() (*instance, *rootContext) {
	n := p.live.Load()
	if n == 0 {
		return nil, nil
	}
	start := p.next.Add(1)
	for i := uint32(0); i < n; i++ {
		idx := (start + i) % n
		b := p.slots[idx].Load()
		if i == 0 && p.reload && b.inst.broken.Load() {
			p.vm.reloadSlot(int(idx), p)
			b = p.slots[idx].Load()
		}
		if !b.inst.broken.Load() && !b.inst.closed.Load() && b.root != nil {
			return b.inst, b.root
		}
	}
	return nil, nil
}

// pickFree returns, locked, a healthy instance of the pool other than
// busy whose lock is free at this moment, with the plugin's root context
// in it, or nil when every other one is held too. A new stream whose
// round-robin instance is running another stream's callback starts on
// an idle one instead of waiting: Envoy's streams never wait for a VM
// (each worker owns its own), and a wait here parks the stream's
// goroutine and wakes it again once the holder is done.
func (p *Plugin) pickFree(busy *instance) (*instance, *rootContext) {
	n := p.live.Load()
	for i := uint32(0); i < n; i++ {
		b := p.slots[i].Load()
		if b == nil || b.inst == busy || b.root == nil || b.inst.broken.Load() || b.inst.closed.Load() {
			continue
		}
		if b.inst.mu.TryLock() {
			return b.inst, b.root
		}
	}
	return nil, nil
}

// binding is one pool slot as a plugin sees it.
type binding struct {
	inst *instance
	root *rootContext // nil when the plugin has no root context there
}

// rootContexts lists the plugin's current root contexts.
func (p *Plugin) rootContexts() []*rootContext {
	out := make([]*rootContext, 0, len(p.slots))
	for i := range p.slots {
		if b := p.slots[i].Load(); b != nil && b.root != nil {
			out = append(out, b.root)
		}
	}
	return out
}

// environ builds the WASI environment from vm_config.environment_variables:
// key_values as given, host_env_keys copied from the process environment
// when set there. Sorted, so every instance sees the same order.
func environ(cfg *config.WasmPlugin) []string {
	env := map[string]string{}
	for _, k := range cfg.EnvHostKeys {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	for k, v := range cfg.EnvKeyValues {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// logPrefix is Envoy's prefix for plugin log lines: "wasm log" followed by
// the plugin name, root id and vm id, empty parts omitted.
func logPrefix(cfg *config.WasmPlugin) string {
	s := "wasm log"
	for _, part := range []string{cfg.Name, cfg.RootID, cfg.VMID} {
		if part != "" {
			s += " " + part
		}
	}
	return s + ": "
}

// currentInstances lists the instances in the plugin's slots, once the
// pool has started.
func (p *Plugin) currentInstances() []*instance {
	p.waitPool()
	out := make([]*instance, 0, len(p.slots))
	for i := range p.slots {
		if b := p.slots[i].Load(); b != nil {
			out = append(out, b.inst)
		}
	}
	return out
}
