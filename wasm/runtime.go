// Package wasm is wasmproxy's Proxy-Wasm host: it compiles and runs
// Proxy-Wasm modules on wazero and exposes each configured plugin to the
// proxy as a filter.Factory.
//
// A Host owns one wazero runtime (compiler engine, optional on-disk
// compilation cache) and the host modules every plugin links against:
// "env" (the Proxy-Wasm ABI, all versions) and the whole WASI preview1
// surface under both "wasi_snapshot_preview1" and "wasi_unstable". A
// Plugin is one loaded PluginConfig: a pool of instances of its module,
// each with its own root context and lock; every HTTP stream is bound to
// one instance for its whole life.
//
// Behaviour follows Envoy (and proxy-wasm-cpp-host, which Envoy embeds)
// where it differs from the written spec; docs/compatibility.md
// ("Proxy-Wasm ABI coverage") lists the details this package relies on.
package wasm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/cachetrim"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
	"github.com/wasmproxy/wasmproxy/wasm/meter"
)

// Options configure a Host.
type Options struct {
	CacheDir string // wazero compilation cache directory; "" = in-memory only
	// CacheMaxBytes bounds CacheDir, trimmed least recently used first
	// when the host starts (package cachetrim): 0 is
	// cachetrim.DefaultMaxBytes, negative turns the size bound off
	// (entries unused for cachetrim.DefaultMaxAge still go).
	CacheMaxBytes int64
	PoolSize      int // instances per plugin; 0 = runtime.GOMAXPROCS(0)
	// WarmStart, with CacheDir, names what starts this host (the
	// embedder's config file, say): NewHost starts compiling, in the
	// background, the modules the last host of CacheDir with the same
	// WarmStart used (recorded by FinishWarmStart), so that a load asking
	// for one of them finds it compiled or compiling (warmstart.go). The
	// embedder calls FinishWarmStart once its start's plugins are
	// loaded. "" turns this off.
	WarmStart string
	Logs      *logging.Registry // plugin logs go to component "wasm"; nil = logging.Default
	Stats     *stats.Store      // nil = a private store
	Node      *config.Node      // for xds.node; may be nil (see SetNode)
	// Upstreams reaches the proxy's clusters for callouts; it may also be
	// set later with Host.SetUpstreams.
	Upstreams filter.Upstreams
}

// maxMemoryPages caps every guest memory at 1 GiB, cpp-host's limit.
// Each plugin's own, lower limit is written into its module (limits.go).
const maxMemoryPages = 16384

// Host runs Proxy-Wasm plugins. It is safe for concurrent use.
type Host struct {
	runtime  wazero.Runtime
	cache    wazero.CompilationCache
	cacheDir string // "" = no cache directory
	// prepareRuns and prepareHits count rewrites done and rewrites read
	// from cacheDir (preparedModule), for tests.
	prepareRuns, prepareHits atomic.Int64
	logs                     *logging.Registry
	log                      *slog.Logger
	logHandler               slog.Handler // log's, asked by traceOn on every host call
	stats                    *stats.Store
	node                     *config.Node
	poolSize                 int

	// imports maps "module.name" to what the host provides, to check a
	// module's imports before instantiating it.
	imports map[string]*hostFunc

	// meter provides the fuel-check import of instrumented modules and
	// stops guest calls past their deadline (wasm/meter).
	meter *meter.Meter

	shared    sharedData
	upstreams atomic.Pointer[filter.Upstreams]
	queues    sharedQueues
	hooks     TestHooks // set only by test harnesses (testhooks.go)
	// poolStarting, set only by this package's tests, runs before each
	// of a fresh pool's other instances starts (startSlots); an error
	// is that instance's failure to start.
	poolStarting func(i int) error

	// loadMu serializes loading and closing plugins, which find, create
	// and drop VMs.
	loadMu sync.Mutex
	vms    map[vmKey]*vm

	mu       sync.Mutex
	closed   bool
	compiled map[[sha256.Size]byte]*compiledModule
	plugins  map[*Plugin]struct{} // loaded and not closed

	// Warm start (warmstart.go): warm are the compiles started from the
	// record (warmKeys) that no load has taken yet; startKeys are the
	// keys the loads acquired until FinishWarmStart (warmEnded), for the
	// next start's record. warmWG counts the compiles running.
	warmRecord string // the record's path; "" = no warm start
	warmKeys   [][sha256.Size]byte
	warm       map[[sha256.Size]byte]*warmModule
	startKeys  [][sha256.Size]byte
	warmEnded  bool
	warmWG     sync.WaitGroup
	// meters are the traffic meters by plugin name (status.go), kept
	// across reloads.
	meters map[string]*pluginMeter
}

// compiledModule is a module compiled once per code hash and shared by
// every plugin that loads the same bytes.
type compiledModule struct {
	ready chan struct{} // closed once mod/info/err are set
	mod   wazero.CompiledModule
	info  *moduleInfo
	err   error
	refs  int // guarded by Host.mu

	// source is the module as built and limits what it was prepared
	// under; metered says the compiled code has fuel checks, whose
	// offsets codeMap maps back to source for stack traces.
	source  []byte
	limits  limits
	metered bool
	mapOnce sync.Once
	code    *meter.CodeMap
}

// codeMap maps the compiled code back to the module as built. It is
// computed on first use (a trap's stack trace), by running the rewrite
// again, so that a start from the cache directory does not: nil when
// the module was not rewritten.
func (cm *compiledModule) codeMap() *meter.CodeMap {
	if !cm.metered {
		return nil
	}
	cm.mapOnce.Do(func() {
		if _, m, err := prepare(cm.source, cm.limits); err == nil {
			cm.code = m
		}
	})
	return cm.code
}

// NewHost creates the wazero runtime and registers the host modules.
func NewHost(ctx context.Context, opts Options) (*Host, error) {
	h := &Host{
		logs:       opts.Logs,
		stats:      opts.Stats,
		node:       opts.Node,
		poolSize:   opts.PoolSize,
		cacheDir:   opts.CacheDir,
		warmRecord: warmRecordPath(opts.CacheDir, opts.WarmStart),
		compiled:   map[[sha256.Size]byte]*compiledModule{},
		plugins:    map[*Plugin]struct{}{},
		imports:    map[string]*hostFunc{},
		vms:        map[vmKey]*vm{},
	}
	if h.logs == nil {
		h.logs = logging.Default
	}
	if h.stats == nil {
		h.stats = stats.New()
	}
	if h.poolSize <= 0 {
		h.poolSize = runtime.GOMAXPROCS(0)
	}
	h.log = h.logs.Logger("wasm")
	h.logHandler = h.log.Handler()
	if opts.Upstreams != nil {
		h.SetUpstreams(opts.Upstreams)
	}
	h.shared.init()
	h.queues.init()

	rc := wazero.NewRuntimeConfigCompiler().
		// A cancellable context would make every loop iteration exit to Go
		// (2.7x-21x slower, as measured before the project started); deadlines are handled elsewhere.
		WithCloseOnContextDone(false).
		WithMemoryLimitPages(maxMemoryPages)
	if opts.CacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm: compilation cache %s: %w", opts.CacheDir, err)
		}
		h.cache = cache
		rc = rc.WithCompilationCache(cache)
	}
	h.runtime = wazero.NewRuntimeWithConfig(ctx, rc)
	if h.warmRecord != "" {
		// First, so that the compiles overlap the rest of the set-up.
		h.startWarm(ctx)
	}
	if opts.CacheDir != "" {
		// Every rebuilt plugin adds a compiled module that wazero never
		// removes: bound the directory before a load adds to it.
		res, err := cachetrim.Trim(opts.CacheDir, cachetrim.Options{MaxBytes: opts.CacheMaxBytes})
		switch {
		case err != nil:
			h.log.Warn("trimming the compilation cache", "dir", opts.CacheDir, "err", err)
		case !res.Skipped:
			h.log.Debug("compilation cache trimmed", "dir", opts.CacheDir, "entries", res.Entries, "bytes", res.Bytes, "removed", res.Removed, "freed_bytes", res.Freed)
		}
	}
	h.meter = meter.New(meter.Config{})
	if _, err := h.meter.Instantiate(ctx, h.runtime); err != nil {
		_ = h.Close(ctx)
		return nil, fmt.Errorf("wasm: %w", err)
	}

	modules := []struct {
		names []string
		funcs []hostFunc
	}{
		{[]string{"env"}, envFunctions()},
		{[]string{"wasi_snapshot_preview1", "wasi_unstable"}, wasiFunctions()},
	}
	for _, m := range modules {
		for _, name := range m.names {
			b := h.runtime.NewHostModuleBuilder(name)
			for i := range m.funcs {
				f := &m.funcs[i]
				b.NewFunctionBuilder().WithGoModuleFunction(wrapHostFunc(name, f), f.params, f.results).Export(f.name)
				h.imports[name+"."+f.name] = f
			}
			if _, err := b.Instantiate(ctx); err != nil {
				_ = h.Close(ctx)
				return nil, fmt.Errorf("wasm: host module %s: %w", name, err)
			}
		}
	}
	return h, nil
}

// SetNode sets the node xds.node reads (Options.Node), for an embedder
// that creates the host before it has parsed its config. It must be
// called before the first LoadPlugin.
func (h *Host) SetNode(n *config.Node) { h.node = n }

// Close closes every plugin still loaded (ending their root contexts),
// then the runtime and the compilation cache handle. A load in progress
// finishes first and is closed too; later loads fail. Plugins must not
// be used afterwards.
func (h *Host) Close(ctx context.Context) error {
	// Closing the runtime frees every module's memory, which is unmapped
	// (memory_linux.go): an instance the runtime closes behind its lock,
	// such as one a load is starting, would fault when next called.
	h.loadMu.Lock()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.loadMu.Unlock()
		return nil
	}
	h.closed = true
	plugins := make([]*Plugin, 0, len(h.plugins))
	for p := range h.plugins {
		plugins = append(plugins, p)
	}
	h.mu.Unlock()
	h.loadMu.Unlock()
	for _, p := range plugins {
		_ = p.Close(ctx)
	}
	// Compiles started ahead that no load took are cancelled; the
	// runtime closes after the last has returned.
	h.endWarm()
	h.warmWG.Wait()
	var errs []error
	if h.runtime != nil {
		errs = append(errs, h.runtime.Close(ctx))
	}
	if h.cache != nil {
		errs = append(errs, h.cache.Close(ctx))
	}
	return errors.Join(errs...)
}

// acquire returns the compiled module for code (whose sha256 is digest)
// under limits l (memory cap written in, fuel checks added: prepare),
// compiling it on first use. Concurrent loads of the same bytes and
// limits wait for one compilation. The rewrite runs only when neither
// this host nor the cache directory has it (preparedModule); clock
// records the instrument and compile phases.
func (h *Host) acquire(ctx context.Context, code []byte, digest [sha256.Size]byte, l limits, clock *startClock) (*compiledModule, error) {
	// The key is the code's digest and the limits that change the
	// rewrite: no second pass over the code.
	sum := sha256.Sum256(fmt.Appendf(digest[:len(digest):len(digest)], "\x00%t:%d", l.metered(), l.memPages))
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, errors.New("host is closed")
	}
	cm := h.compiled[sum]
	if cm != nil {
		cm.refs++
		h.mu.Unlock()
		<-cm.ready
		clock.mark(PhaseInstrument, "shared")
		clock.mark(PhaseCompile, "shared")
		if cm.err != nil {
			return nil, cm.err
		}
		return cm, nil
	}
	cm = &compiledModule{ready: make(chan struct{}), refs: 1, source: code, limits: l, metered: l.metered()}
	h.compiled[sum] = cm
	if h.warmRecord != "" && !h.warmEnded && len(h.startKeys) < warmMax && !slices.Contains(h.startKeys, sum) {
		h.startKeys = append(h.startKeys, sum)
	}
	w := h.takeWarm(sum)
	h.mu.Unlock()

	if w != nil {
		// Compiled ahead from the last start's record: the same key, so
		// the same code and limits. If that failed (say its rewrite is
		// gone from the cache), compile as without it; a module the
		// host cannot run fails below with the same message.
		<-w.ready
		if w.err == nil {
			info, err := h.analyze(w.mod)
			if err == nil {
				cm.mod, cm.info = w.mod, info
				// The compile phase is what was left to wait for.
				clock.add(PhaseInstrument, 0, "ahead")
				clock.mark(PhaseCompile, "ahead")
				close(cm.ready)
				return cm, nil
			}
			_ = w.mod.Close(ctx)
		}
	}

	prepared, cached, err := h.preparedModule(code, sum, l)
	detail := ""
	if cached {
		detail = "cached"
	}
	clock.mark(PhaseInstrument, detail)
	// A cold start compiles functions on every core (wazero's default
	// is one worker); the compiled code is the same either way.
	compileCtx := experimental.WithCompilationWorkers(ctx, runtime.GOMAXPROCS(0))
	compile := func(prepared []byte) {
		cm.err = nil
		if mod, err := h.runtime.CompileModule(compileCtx, prepared); err != nil {
			cm.err = fmt.Errorf("compiling: %s", firstLine(err.Error()))
		} else if info, aerr := h.analyze(mod); aerr != nil {
			_ = mod.Close(ctx)
			cm.err = aerr
		} else {
			cm.mod, cm.info = mod, info
		}
	}
	if err != nil {
		// A module the rewrite cannot read is usually one wazero cannot
		// either, and wazero's message is the one users know.
		cm.err = err
		if raw, cerr := h.runtime.CompileModule(ctx, code); cerr != nil {
			cm.err = fmt.Errorf("compiling: %s", firstLine(cerr.Error()))
		} else {
			_ = raw.Close(ctx)
		}
	} else if compile(prepared); cm.err != nil && cached {
		// The cached rewrite of a module that loaded before does not
		// load now: a damaged cache file, not the module's fault.
		// Drop it and rewrite the module again.
		h.log.Warn("cached rewrite of a plugin module does not load; rewriting it", "err", cm.err)
		h.dropPrepared(sum)
		if prepared, _, err = h.preparedModule(code, sum, l); err != nil {
			cm.err = err
		} else {
			compile(prepared)
		}
	}
	clock.mark(PhaseCompile, "")
	if cm.err != nil {
		// Forget failed entries so a later load tries again.
		h.mu.Lock()
		delete(h.compiled, sum)
		h.mu.Unlock()
	}
	close(cm.ready)
	if cm.err != nil {
		return nil, cm.err
	}
	return cm, nil
}

// release drops one reference; the last one frees the compiled code.
func (h *Host) release(ctx context.Context, cm *compiledModule) {
	h.mu.Lock()
	cm.refs--
	last := cm.refs == 0
	if last {
		for k, v := range h.compiled {
			if v == cm {
				delete(h.compiled, k)
				break
			}
		}
	}
	h.mu.Unlock()
	if last {
		_ = cm.mod.Close(ctx)
	}
}

// moduleInfo is what LoadPlugin needs to know about a compiled module,
// computed once per code hash.
type moduleInfo struct {
	abi       abiVersion
	allocator string
	// initializer is "_initialize" (reactor) or "_start" (command) or "".
	initializer string
	// mainAfterInit is "main" or "__main_void" when a reactor also has one,
	// which Envoy calls after _initialize.
	mainAfterInit string
	callbacks     map[string]bool
}

// analyze checks a module against what the host provides, before any
// instance exists: ABI marker, imports (names and signatures), memory,
// allocator and callback signatures. Loading fails on the first problem,
// a one-line error that names the import or export at fault; `wasmproxy
// plugin inspect` (Inspect in inspect.go) runs the same check and reports
// every problem, so the two never disagree.
func (h *Host) analyze(mod wazero.CompiledModule) (*moduleInfo, error) {
	info, problems := h.checkModule(mod)
	if len(problems) > 0 {
		return nil, problems[0]
	}
	return info, nil
}

// moduleProblem is one reason a module cannot run, tied to the import or
// export it concerns so that Inspect can show it there.
type moduleProblem struct {
	importName string // "module.name" of the import at fault, if any
	exportName string // name of the export at fault, if any
	msg        string
}

func (p *moduleProblem) Error() string { return p.msg }

// checkModule is analyze's check, collecting every problem in order
// rather than stopping at the first.
func (h *Host) checkModule(mod wazero.CompiledModule) (*moduleInfo, []*moduleProblem) {
	var problems []*moduleProblem
	fail := func(imp, exp, format string, args ...any) {
		problems = append(problems, &moduleProblem{importName: imp, exportName: exp, msg: fmt.Sprintf(format, args...)})
	}
	exports := mod.ExportedFunctions()
	info := &moduleInfo{callbacks: map[string]bool{}}
	for _, m := range abiMarkers {
		if _, ok := exports[m.name]; ok {
			info.abi = m.version
			break
		}
	}
	if info.abi == abiUnknown {
		fail("", "", "no Proxy-Wasm ABI version marker exported (want proxy_abi_version_0_1_0, _0_2_0 or _0_2_1)")
	}
	for _, def := range mod.ImportedFunctions() {
		module, name, _ := def.Import()
		switch module {
		case "env", "wasi_snapshot_preview1", "wasi_unstable":
		case meter.HostModule:
			continue // added by prepare; provided by h.meter
		default:
			fail(module+"."+name, "", "module imports %s.%s from module %q, which this host does not provide (only env, wasi_snapshot_preview1 and wasi_unstable)", module, name, module)
			continue
		}
		f := h.imports[module+"."+name]
		if f == nil {
			fail(module+"."+name, "", "module imports %s.%s, which this host does not provide", module, name)
			continue
		}
		if !sameTypes(def.ParamTypes(), f.params) || !sameTypes(def.ResultTypes(), f.results) {
			fail(module+"."+name, "", "module imports %s.%s with signature %s, but the host provides %s",
				module, name, signature(def.ParamTypes(), def.ResultTypes()), signature(f.params, f.results))
		}
	}
	for _, mem := range mod.ImportedMemories() {
		module, name, _ := mem.Import()
		fail(module+"."+name, "", "module imports memory %s.%s, which this host does not provide (the module must define and export its own memory)", module, name)
	}
	if _, ok := mod.ExportedMemories()["memory"]; !ok {
		fail("", "memory", `module does not export its memory as "memory"`)
	}

	// wantSig reports whether name is exported with the given signature;
	// exported with another one is a problem.
	wantSig := func(name string, params, results []api.ValueType) bool {
		def, ok := exports[name]
		if !ok {
			return false
		}
		if !sameTypes(def.ParamTypes(), params) || !sameTypes(def.ResultTypes(), results) {
			fail("", name, "module exports %s with signature %s, want %s",
				name, signature(def.ParamTypes(), def.ResultTypes()), signature(params, results))
			return false
		}
		return true
	}
	for _, name := range []string{"malloc", "proxy_on_memory_allocate"} {
		if wantSig(name, oneI32, oneI32) {
			info.allocator = name
			break
		}
	}
	if info.allocator == "" {
		fail("", "malloc", "module exports no allocator (want malloc or proxy_on_memory_allocate)")
	}
	for _, name := range []string{"_initialize", "_start"} {
		if wantSig(name, nil, nil) {
			info.initializer = name
			break
		}
	}
	if info.initializer == "_initialize" {
		if wantSig("main", ints(2), oneI32) {
			info.mainAfterInit = "main"
		} else if wantSig("__main_void", nil, oneI32) {
			info.mainAfterInit = "__main_void"
		}
	}
	for _, cb := range callbackSignatures(info.abi) {
		info.callbacks[cb.name] = wantSig(cb.name, cb.params, cb.results)
	}
	return info, problems
}

// callbackSig is the signature a guest callback must have to be called.
type callbackSig struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
}

// callbackSignatures lists every callback the host may call, with the
// header callbacks' arity depending on the ABI version.
func callbackSignatures(v abiVersion) []callbackSig {
	headerParams := 3
	if v == abi010 {
		headerParams = 2
	}
	sigs := []callbackSig{
		{"proxy_on_context_create", ints(2), nil},
		{"proxy_on_vm_start", ints(2), oneI32},
		{"proxy_validate_configuration", ints(2), oneI32},
		{"proxy_on_configure", ints(2), oneI32},
		{"proxy_on_tick", ints(1), nil},
		{"proxy_on_request_headers", ints(headerParams), oneI32},
		{"proxy_on_request_body", ints(3), oneI32},
		{"proxy_on_request_trailers", ints(2), oneI32},
		{"proxy_on_response_headers", ints(headerParams), oneI32},
		{"proxy_on_response_body", ints(3), oneI32},
		{"proxy_on_response_trailers", ints(2), oneI32},
		{"proxy_on_log", ints(1), nil},
		{"proxy_on_done", ints(1), oneI32},
		{"proxy_on_delete", ints(1), nil},
		{"proxy_on_new_connection", ints(1), oneI32},
		{"proxy_on_downstream_data", ints(3), oneI32},
		{"proxy_on_upstream_data", ints(3), oneI32},
		{"proxy_on_downstream_connection_close", ints(2), nil},
		{"proxy_on_upstream_connection_close", ints(2), nil},
		{"proxy_on_queue_ready", ints(2), nil},
		{"proxy_on_http_call_response", ints(5), nil},
		{"proxy_on_grpc_receive_initial_metadata", ints(3), nil},
		{"proxy_on_grpc_receive", ints(3), nil},
		{"proxy_on_grpc_receive_trailing_metadata", ints(3), nil},
		{"proxy_on_grpc_close", ints(3), nil},
		{"proxy_on_foreign_function", ints(3), nil},
		{"envoy_on_resolve_dns", ints(3), nil},
	}
	return sigs
}

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
