package wasm

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// FAIL_RELOAD (Envoy ≥ 1.33): a poisoned instance is replaced by a fresh
// one from the compiled module, with _initialize and every member
// plugin's root context start sequence run again, when the next stream of
// a FAIL_RELOAD plugin lands on it; at most once per jittered backoff
// interval. docs/decisions.md §11.

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
// plugin p, unless another stream already did or the slot's backoff
// has not passed. Streams still bound to the old instance keep failing
// per their policy; the old instance is closed (its memory freed) right
// away, since a poisoned instance is never called again.
func (v *vm) reloadSlot(idx int, p *Plugin) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if p.closed.Load() || idx >= len(v.instances) {
		return
	}
	old := v.instances[idx]
	if !old.broken.Load() {
		return // replaced meanwhile
	}
	counter := func(name string) { v.host.stats.Counter("wasm." + p.name + "." + name).Inc() }
	st := &v.reloads[idx]
	now := time.Now()
	if now.Before(st.next) {
		counter("vm_reload_backoff")
		return
	}
	counter("vm_reload")
	inst, err := v.newInstance(context.Background(), p, idx)
	roots := make([]*rootContext, len(v.members))
	if err == nil {
		for i, m := range v.members {
			if roots[i], err = inst.startRoot(m); err != nil {
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
		counter("vm_reload_failure")
		v.host.log.Error(fmt.Sprintf("wasm: plugin %s: reloading instance %d failed: %v", p.name, idx, err))
		return
	}
	st.failures = 0
	st.next = now.Add(p.reloadBackoff(0))
	v.instances[idx] = inst
	for i, m := range v.members {
		m.slots[idx].Store(&binding{inst: inst, root: roots[i]})
	}
	v.created.Inc()
	counter("vm_reload_success")
	v.host.log.Info(fmt.Sprintf("wasm: plugin %s: instance %d reloaded", p.name, idx))
	old.close()
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
