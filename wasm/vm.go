package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmproxy/wasmproxy/stats"
)

// vmKey identifies a VM the way Envoy does: sha256 over vm_id, the VM
// configuration and the code. Plugins whose keys match share the VM's
// instances, each with its own root context; runtime and environment
// variables are not part of the key (Envoy issue #40881).
type vmKey [sha256.Size]byte

func makeVMKey(vmID string, vmConfig []byte, codeSum [sha256.Size]byte) vmKey {
	h := sha256.New()
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(vmID)))
	h.Write(n[:])
	h.Write([]byte(vmID))
	binary.LittleEndian.PutUint64(n[:], uint64(len(vmConfig)))
	h.Write(n[:])
	h.Write(vmConfig)
	h.Write(codeSum[:])
	var k vmKey
	copy(k[:], h.Sum(nil))
	return k
}

// vm is a pool of instances of one module, shared by every loaded plugin
// with the same VM key. Envoy has one VM copy per worker thread; here the
// pool plays that part (Options.PoolSize instances). refs and plugins are
// guarded by Host.loadMu.
type vm struct {
	host     *Host
	key      vmKey
	compiled *compiledModule
	abi      abiVersion
	vmID     string
	vmConfig []byte
	environ  []string // "KEY=VALUE" for WASI environ_get (from the first plugin)
	// capabilities is the capability_restriction_config allow-list of the
	// plugin that created the VM; nil allows everything.
	capabilities map[string]bool

	// limits are the deadlines and memory cap of every instance, from
	// the plugin that created the VM, named by creator.
	limits  limits
	creator string

	// mu guards instances against a reload replacing one, members, and
	// reloads; taken before any instance lock.
	mu        sync.Mutex
	instances []*instance
	members   []*Plugin     // loaded plugins with root contexts here
	reloads   []reloadState // FAIL_RELOAD state per slot
	plugins   int           // plugins using the VM

	created *stats.Counter
	active  *stats.Gauge
}

// rootContext is one plugin's root context inside one instance. Ticks,
// callout replies and queue notifications are delivered to it.
type rootContext struct {
	plugin *Plugin
	inst   *instance
	id     uint32

	// doneWait is set when proxy_on_done returned false at shutdown: the
	// root context stays until the plugin calls proxy_done.
	doneWait bool
	deleted  bool

	// Status of the last failed callout, for proxy_get_status (guarded by
	// the instance lock).
	statusCode uint32
	statusMsg  string
	// properties declared with the declare_property foreign function.
	properties map[string]propertyPrototype

	// Tick state: the period is stored by proxy_set_tick_period_milliseconds
	// (under the instance lock) and read by the ticker goroutine.
	tickPeriod  atomic.Int64
	tickStarted bool
	tickWake    chan struct{}
	done        chan struct{}
	closeOnce   bool
}

func newRootContext(p *Plugin, inst *instance, id uint32) *rootContext {
	return &rootContext{plugin: p, inst: inst, id: id, tickWake: make(chan struct{}, 1), done: make(chan struct{})}
}

// stop ends the tick loop. The caller holds the instance lock.
func (rc *rootContext) stop() {
	if !rc.closeOnce {
		rc.closeOnce = true
		close(rc.done)
	}
}

// setTickPeriod stores the root context's tick period; 0 stops ticking.
// Called from a host function, so the instance lock is held.
func (rc *rootContext) setTickPeriod(d time.Duration) {
	rc.tickPeriod.Store(int64(d))
	if d > 0 && !rc.tickStarted && !rc.inst.vm.host.hooks.ManualTicks {
		rc.tickStarted = true
		go rc.tickLoop()
	}
	select {
	case rc.tickWake <- struct{}{}:
	default:
	}
}

// tickLoop calls proxy_on_tick on the root context every period, taking
// the instance lock like any other guest call.
func (rc *rootContext) tickLoop() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		d := time.Duration(rc.tickPeriod.Load())
		if d <= 0 {
			select {
			case <-rc.tickWake:
				continue
			case <-rc.done:
				return
			case <-rc.inst.done:
				return
			}
		}
		timer.Reset(d)
		select {
		case <-timer.C:
			rc.tick()
		case <-rc.tickWake:
			timer.Stop()
		case <-rc.done:
			return
		case <-rc.inst.done:
			return
		}
	}
}

func (rc *rootContext) tick() {
	inst := rc.inst
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if inst.fnTick == nil || rc.deleted || inst.broken.Load() || inst.closed.Load() {
		return
	}
	if _, err := inst.invoke(nil, rc.id, inst.fnTick, uint64(rc.id), 0, 0); err != nil {
		inst.fail("proxy_on_tick", err)
	}
}

// runRoot calls a guest callback on root context rc from outside any
// guest call (a callout reply, a queue notification): it takes the
// instance lock and skips the call when the instance or the root context
// is gone. It reports false when the callback could not run.
func (rc *rootContext) runRoot(name string, fn func(inst *instance) error) bool {
	inst := rc.inst
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if rc.deleted || inst.broken.Load() || inst.closed.Load() {
		return false
	}
	if err := fn(inst); err != nil {
		inst.fail(name, err)
		return false
	}
	return true
}

// background returns a context for host-side work (callouts) that ends
// when the instance closes.
func (inst *instance) background() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-inst.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
