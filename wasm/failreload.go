package wasm

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"
)

// FAIL_RELOAD (Envoy ≥ 1.33), and the default policy: a poisoned
// instance is replaced by a fresh one from the compiled module, with
// _initialize and every member plugin's root context start sequence run
// again, when the next stream of such a plugin lands on it; at most once
// per jittered backoff interval. A reload replaces poisoned instances of
// every policy at once (ReplacePoisoned). docs/decisions.md §11 and
// "The default failure policy".

// Reload backoff defaults: Envoy's reload_config.backoff base interval,
// and a maximum of ten times the base as for its other backoffs.
const (
	defaultReloadBackoff = time.Second
	reloadMaxFactor      = 10
)

// reloadState is one pool slot's reload history, guarded by vm.mu.
type reloadState struct {
	next     time.Time // no reload before this
	failures int       // consecutive failed reloads
	replaced int       // poisoned instances replaced (the status page)
}

// reloadBackoff is the wait after a reload attempt: the base interval
// doubled per consecutive failure, capped at the maximum, jittered to
// between half and all of it so pools reloading together spread out.
func (p *Plugin) reloadBackoff(failures int) time.Duration {
	base := time.Duration(p.cfg.ReloadBackoff)
	if base <= 0 {
		base = defaultReloadBackoff
	}
	maxI := time.Duration(p.cfg.ReloadMaxBackoff)
	if maxI <= 0 {
		maxI = reloadMaxFactor * base
	}
	d := base
	for i := 0; i < failures && d < maxI; i++ {
		d *= 2
	}
	d = min(d, maxI)
	return d/2 + rand.N(d/2+1)
}

// reloadSlot replaces the poisoned instance in slot idx on behalf of
// plugin p, whose stream landed on it, unless another stream already did
// or the slot's backoff has not passed. Streams still bound to the old
// instance keep failing per their policy; the old instance is closed
// (its memory freed) right away, since a poisoned instance is never
// called again.
func (v *vm) reloadSlot(idx int, p *Plugin) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if p.closed.Load() || idx >= len(v.instances) || !v.instances[idx].broken.Load() {
		return // closed, or replaced meanwhile
	}
	if time.Now().Before(v.reloads[idx].next) {
		p.countReload("vm_reload_backoff")
		return
	}
	_ = v.replaceSlot(idx, p, []*Plugin{p})
}

// replaceSlot replaces the poisoned instance in slot idx by a fresh one
// with every member plugin's root context started, and arms the slot's
// backoff. p is the plugin on whose behalf it runs (its backoff settings
// and start-up logs); counted names the plugins whose vm_reload,
// vm_reload_success and vm_reload_failure count it. On failure the
// poisoned instance stays and the error is logged and returned. The
// caller holds v.mu.
func (v *vm) replaceSlot(idx int, p *Plugin, counted []*Plugin) error {
	count := func(name string) {
		for _, m := range counted {
			m.countReload(name)
		}
	}
	st := &v.reloads[idx]
	now := time.Now()
	count("vm_reload")
	inst, err := v.newInstance(context.Background(), p, idx, nil)
	roots := make([]*rootContext, len(v.members))
	if err == nil {
		for i, m := range v.members {
			if roots[i], err = inst.startRoot(m, nil); err != nil {
				err = fmt.Errorf("plugin %s: %w", m.name, err)
				break
			}
		}
		if err != nil {
			inst.close()
		}
	}
	if err != nil {
		st.failures++
		st.next = now.Add(p.reloadBackoff(st.failures))
		count("vm_reload_failure")
		v.host.log.Error(fmt.Sprintf("wasm: plugin %s: reloading instance %d failed: %v", p.name, idx, err))
		return err
	}
	st.failures = 0
	st.replaced++
	st.next = now.Add(p.reloadBackoff(0))
	old := v.instances[idx]
	v.instances[idx] = inst
	for i, m := range v.members {
		m.slots[idx].Store(&binding{inst: inst, root: roots[i]})
	}
	v.created.Inc()
	count("vm_reload_success")
	v.host.log.Info(fmt.Sprintf("wasm: plugin %s: instance %d reloaded", p.name, idx))
	old.close()
	return nil
}

// countReload counts one reload event under wasm.<plugin>.<name>.
func (p *Plugin) countReload(name string) {
	p.host.stats.Counter("wasm." + p.name + "." + name).Inc()
}

// Replacement is what ReplacePoisoned did in one VM.
type Replacement struct {
	// Plugins are the names of the plugins running in the VM.
	Plugins []string
	// Replaced and Failed count its poisoned instances replaced, and
	// those whose replacement failed (they stay poisoned).
	Replaced, Failed int
	// Err is the last replacement error, nil when none failed.
	Err error
}

// ReplacePoisoned replaces every poisoned instance of every VM now,
// whatever the plugins' failure policies and reload backoffs, and
// reports each VM that had one. A reload the operator asks for (SIGHUP,
// POST /reload, a changed file) calls it even when the config did not
// change: it is the way out of an explicit FAIL_CLOSED, which leaves a
// poisoned instance dead (Envoy's semantics, where only a config change
// brings new VMs), and skips the backoff of the other policies. Each
// replacement is counted like a stream-triggered one, under every
// plugin bound to the instance.
func (h *Host) ReplacePoisoned() []Replacement {
	h.loadMu.Lock() // no VM comes or goes meanwhile
	defer h.loadMu.Unlock()
	vms := make([]*vm, 0, len(h.vms))
	for _, v := range h.vms {
		vms = append(vms, v)
	}
	// Map order is random; report VMs in their creators' order.
	sort.Slice(vms, func(i, j int) bool { return vms[i].creator < vms[j].creator })
	var out []Replacement
	for _, v := range vms {
		if r, ok := v.replacePoisoned(); ok {
			out = append(out, r)
		}
	}
	return out
}

// replacePoisoned replaces the VM's poisoned instances for
// ReplacePoisoned; ok is false when it had none (or no live plugin).
func (v *vm) replacePoisoned() (r Replacement, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var live []*Plugin
	for _, m := range v.members {
		if !m.closed.Load() {
			live = append(live, m)
			r.Plugins = append(r.Plugins, m.name)
		}
	}
	if len(live) == 0 {
		return r, false
	}
	for idx, inst := range v.instances {
		if !inst.broken.Load() {
			continue
		}
		ok = true
		if err := v.replaceSlot(idx, live[0], live); err != nil {
			r.Failed++
			r.Err = err
		} else {
			r.Replaced++
		}
	}
	return r, ok
}

// removeMember forgets a closed plugin so reloads no longer start its
// root context.
func (v *vm) removeMember(p *Plugin) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i, m := range v.members {
		if m == p {
			v.members = append(v.members[:i], v.members[i+1:]...)
			return
		}
	}
}
