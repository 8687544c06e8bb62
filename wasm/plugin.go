package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/stats"
)

// defaultRuntime is the runtime name used in stats when the config names
// none, matching what Istio sends and Envoy's official builds use.
const defaultRuntime = "envoy.wasm.runtime.v8"

// Plugin is one loaded PluginConfig: a pool of started instances of its
// module. It implements filter.Factory; it is safe for concurrent use.
type Plugin struct {
	host     *Host
	cfg      config.WasmPlugin
	name     string
	source   string // code file, or "inline code", for messages
	compiled *compiledModule
	abi      abiVersion

	vmConfig     []byte
	pluginConfig []byte
	environ      []string // "KEY=VALUE" for WASI environ_get
	logPrefix    string   // "wasm log <name> <root_id> <vm_id>: "
	failOpen     bool

	instances []*instance
	next      atomic.Uint32

	active    *stats.Gauge
	closed    atomic.Bool
	closeOnce sync.Once
	warned    sync.Map // names of unimplemented functions already logged
}

// LoadPlugin compiles (cached by code hash), instantiates PoolSize
// instances, and in each runs _initialize / _start, creates the root
// context, on_vm_start (VM config) and on_configure (plugin config). Any
// failure returns one error line naming the plugin, the code file (or
// "inline code") and the reason.
func (h *Host) LoadPlugin(ctx context.Context, cfg *config.WasmPlugin) (*Plugin, error) {
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
	}
	if cfg.CodeFile != "" {
		p.source = cfg.CodeFile
	}
	fail := func(err error) (*Plugin, error) {
		if p.name == "" {
			// Envoy allows a nameless plugin (the seed's has none); the
			// code source still identifies it.
			return nil, fmt.Errorf("plugin (unnamed) (%s): %w", p.source, err)
		}
		return nil, fmt.Errorf("plugin %q (%s): %w", p.name, p.source, err)
	}

	code := cfg.Code
	if cfg.CodeFile != "" {
		var err error
		if code, err = os.ReadFile(cfg.CodeFile); err != nil {
			return fail(fmt.Errorf("reading code: %w", err))
		}
	}
	if len(code) == 0 {
		return fail(errors.New("no code (neither a code file nor inline code)"))
	}
	if len(code) < 8 || !bytes.Equal(code[:4], []byte("\x00asm")) {
		return fail(errors.New("not a WebAssembly module (bad magic)"))
	}
	if !bytes.Equal(code[4:8], []byte{1, 0, 0, 0}) {
		return fail(fmt.Errorf("unsupported WebAssembly binary version %d (want 1)", code[4]))
	}

	cm, err := h.acquire(ctx, code)
	if err != nil {
		return fail(err)
	}
	p.compiled = cm
	p.abi = cm.info.abi
	p.environ = environ(cfg)
	p.logPrefix = logPrefix(cfg)

	runtimeName := cfg.Runtime
	if runtimeName == "" {
		runtimeName = defaultRuntime
	}
	created := h.stats.Counter("wasm." + runtimeName + ".created")
	p.active = h.stats.Gauge("wasm." + runtimeName + ".active")

	for i := 0; i < h.poolSize; i++ {
		inst, err := p.newInstance(ctx, i)
		if err != nil {
			p.Close(ctx)
			return fail(err)
		}
		created.Inc()
		p.active.Add(1)
		p.instances = append(p.instances, inst)
	}
	h.mu.Lock()
	h.plugins[p] = struct{}{}
	h.mu.Unlock()
	return p, nil
}

// Name is the plugin's configured name.
func (p *Plugin) Name() string { return p.name }

// NewStreamFilter implements filter.Factory. The stream is bound to an
// instance lazily, when its context is created.
func (p *Plugin) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &httpFilter{plugin: p, cb: cb}
}

// Close ends every instance's root context (proxy_on_done, then
// proxy_on_delete) and closes the instances. Streams still bound to the
// plugin continue without calling the guest, so close a plugin once its
// streams have ended (after a reload has drained).
func (p *Plugin) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		for _, inst := range p.instances {
			inst.close()
			p.active.Add(-1)
		}
		if p.compiled != nil {
			p.host.release(ctx, p.compiled)
		}
		p.host.mu.Lock()
		delete(p.host.plugins, p)
		p.host.mu.Unlock()
	})
	return nil
}

// pick chooses the instance for a new stream: round robin, skipping
// instances a trap has poisoned. nil means none is usable.
func (p *Plugin) pick() *instance {
	n := uint32(len(p.instances))
	if n == 0 {
		return nil
	}
	start := p.next.Add(1)
	for i := uint32(0); i < n; i++ {
		inst := p.instances[(start+i)%n]
		if !inst.broken.Load() && !inst.closed.Load() {
			return inst
		}
	}
	return nil
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
