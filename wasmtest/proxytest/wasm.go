package proxytest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
	"github.com/wasmproxy/wasmproxy/wasm"
)

// NewWasmVMContext loads the compiled plugin wasm (a Proxy-Wasm module,
// built for GOOS=wasip1 or by any SDK) and returns the VMContext that
// stands for it. Given to EmulatorOption.WithVMContext, or its factory
// methods (NewPluginContext, and the plugin contexts' NewHttpContext,
// NewTcpContext) to the other With...Context options, the module runs
// on wasmproxy's real host (package wasm, through wasmtest's harness:
// the proxy's filter-chain engine and the host's ABI, shared data,
// queues, metrics and logs), and the emulator's methods drive and read
// that host. With OnEmulator it runs against the emulator instead. The
// error says why wasmproxy would refuse the module, or why it failed to
// start. Close the context when done.
func NewWasmVMContext(code []byte, opts ...WasmOption) (WasmVMContext, error) {
	var set wasmSettings
	for _, o := range opts {
		o(&set)
	}
	if err := checkModule(code); err != nil {
		return nil, err
	}
	file, err := moduleFile(code)
	if err != nil {
		return nil, fmt.Errorf("proxytest: storing the module for wasmproxy's host: %w", err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(compilationCache))
	m := &module{ctx: ctx, rt: rt}
	if err := m.start(code); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	vm := &vmContext{m: m, root: PluginContextID, file: file, emulated: set.emulated}
	m.vm = vm
	return vm, nil
}

// WasmOption configures NewWasmVMContext.
type WasmOption func(*wasmSettings)

type wasmSettings struct{ emulated bool }

// OnEmulator runs the module against the emulator's host functions
// instead of wasmproxy's host: for tests that rely on what only the
// emulator offers (gRPC callout events, the last value of a histogram,
// FinishVM, a CAS from the test, per-context state across several
// requests on one context).
func OnEmulator() WasmOption { return func(s *wasmSettings) { s.emulated = true } }

// compilationCache keeps compiled modules for the process: a test file
// loads the same main.wasm for every test function.
var compilationCache = wazero.NewCompilationCache()

var (
	inspectOnce sync.Once
	inspector   *wasm.Host
	inspectErr  error
	inspectMu   sync.Mutex
	inspected   = map[[sha256.Size]byte]error{}
)

// checkModule runs wasmproxy's own check of a module before it loads one
// (`wasmproxy plugin inspect`), once per module content.
func checkModule(code []byte) error {
	inspectOnce.Do(func() {
		inspector, inspectErr = wasm.NewHost(context.Background(), wasm.Options{PoolSize: 1})
	})
	if inspectErr != nil {
		return fmt.Errorf("proxytest: starting wasmproxy's module checker: %w", inspectErr)
	}
	sum := sha256.Sum256(code)
	inspectMu.Lock()
	defer inspectMu.Unlock()
	if err, ok := inspected[sum]; ok {
		return err
	}
	in, err := inspector.Inspect(context.Background(), code, wasm.FilterAny)
	if err == nil && !in.CanRun() {
		err = fmt.Errorf("proxytest: wasmproxy cannot run this module: %s", strings.Join(in.Errors, "; "))
	}
	inspected[sum] = err
	return err
}

// module is one instance of a compiled plugin.
type module struct {
	vm    *vmContext // the VMContext standing for it
	ctx   context.Context
	rt    wazero.Runtime
	mod   api.Module
	alloc api.Function
}

func (m *module) start(code []byte) error {
	ctx := m.ctx
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, m.rt); err != nil {
		return fmt.Errorf("proxytest: WASI: %w", err)
	}
	if err := m.instantiateEnv(); err != nil {
		return fmt.Errorf("proxytest: host functions: %w", err)
	}
	compiled, err := m.rt.CompileModule(ctx, code)
	if err != nil {
		return fmt.Errorf("proxytest: compiling the module: %w", err)
	}
	// Initializers run explicitly below, so that a failure names them.
	cfg := wazero.NewModuleConfig().WithStartFunctions().
		WithStdout(os.Stderr).WithStderr(os.Stderr).
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().
		WithRandSource(rand.Reader)
	mod, err := m.rt.InstantiateModule(ctx, compiled, cfg)
	if err != nil {
		return fmt.Errorf("proxytest: instantiating the module: %w", err)
	}
	m.mod = mod
	for _, name := range []string{"proxy_on_memory_allocate", "malloc"} {
		if f := mod.ExportedFunction(name); f != nil {
			m.alloc = f
			break
		}
	}
	if m.alloc == nil {
		return errors.New("proxytest: the module exports no allocator (proxy_on_memory_allocate or malloc)")
	}
	// A reactor (Go's -buildmode=c-shared, TinyGo) has _initialize; a
	// command has _start, as wasmproxy runs them.
	for _, name := range []string{"_initialize", "_start"} {
		if f := mod.ExportedFunction(name); f != nil {
			if _, err := f.Call(ctx); err != nil {
				return fmt.Errorf("proxytest: the module's %s failed: %w", name, err)
			}
			break
		}
	}
	return nil
}

// call calls the module's callback name; a missing one answers def, as
// hosts treat callbacks a module does not export. A trap panics: the test
// cannot go on with a module in an unknown state.
func (m *module) call(name string, def uint64, args ...uint64) uint64 {
	f := m.mod.ExportedFunction(name)
	if f == nil {
		return def
	}
	res, err := f.Call(m.ctx, args...)
	if err != nil {
		panic(fmt.Sprintf("proxytest: the compiled plugin failed in %s%v: %v", name, args, err))
	}
	if len(res) == 0 {
		return def
	}
	return res[0]
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// vmContext is the module's plugin as a types.VMContext.
type vmContext struct {
	m *module
	// root is the plugin context on_vm_start is called for: the last
	// one created; rootCtx is that context.
	root    uint32
	rootCtx *pluginContext
	// file holds the module for wasmproxy's host; emulated is OnEmulator.
	file     string
	emulated bool
}

func (v *vmContext) OnVMStart(vmConfigurationSize int) types.OnVMStartStatus {
	if v.rootCtx != nil {
		v.rootCtx.create()
	}
	return v.m.call("proxy_on_vm_start", 1, uint64(v.root), uint64(vmConfigurationSize)) != 0
}

// NewPluginContext returns the module's plugin context contextID. The
// module creates it (proxy_on_context_create) at the context's first
// use, so that calling a factory has no effect on the module until a
// host uses what it returned (NewHostEmulator calls the factories it is
// given to learn whether they stand for a module).
func (v *vmContext) NewPluginContext(contextID uint32) types.PluginContext {
	v.root = contextID
	v.rootCtx = &pluginContext{m: v.m, id: contextID}
	return v.rootCtx
}

// Close releases the module and its runtime.
func (v *vmContext) Close() error { return v.m.rt.Close(v.m.ctx) }

type pluginContext struct {
	m       *module
	id      uint32
	created bool
}

func (p *pluginContext) create() {
	if !p.created {
		p.created = true
		p.m.call("proxy_on_context_create", 0, uint64(p.id), 0)
	}
}

func (p *pluginContext) OnPluginStart(size int) types.OnPluginStartStatus {
	p.create()
	return p.m.call("proxy_on_configure", 1, uint64(p.id), uint64(size)) != 0
}

func (p *pluginContext) OnPluginDone() bool {
	p.create()
	return p.m.call("proxy_on_done", 1, uint64(p.id)) != 0
}

func (p *pluginContext) OnQueueReady(queueID uint32) {
	p.create()
	p.m.call("proxy_on_queue_ready", 0, uint64(p.id), uint64(queueID))
}

func (p *pluginContext) OnTick() {
	p.create()
	p.m.call("proxy_on_tick", 0, uint64(p.id))
}

// NewHttpContext and NewTcpContext return the module's stream context:
// the emulator asks for one of them at the stream's first callback, and
// the module creates it then (see NewPluginContext).
func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &streamContext{m: p.m, id: uint64(contextID), root: p}
}

func (p *pluginContext) NewTcpContext(contextID uint32) types.TcpContext {
	return &streamContext{m: p.m, id: uint64(contextID), root: p}
}

// streamContext is an HTTP stream or TCP connection of the module.
type streamContext struct {
	m       *module
	id      uint64
	root    *pluginContext
	created bool
}

func (s *streamContext) create() {
	if !s.created {
		s.created = true
		s.root.create()
		s.m.call("proxy_on_context_create", 0, s.id, uint64(s.root.id))
	}
}

func (s *streamContext) call(name string, def uint64, args ...uint64) uint64 {
	s.create()
	return s.m.call(name, def, append([]uint64{s.id}, args...)...)
}

func (s *streamContext) action(name string, args ...uint64) types.Action {
	return types.Action(s.call(name, 0, args...))
}

func (s *streamContext) OnHttpRequestHeaders(n int, eos bool) types.Action {
	return s.action("proxy_on_request_headers", uint64(n), b2u(eos))
}

func (s *streamContext) OnHttpRequestBody(n int, eos bool) types.Action {
	return s.action("proxy_on_request_body", uint64(n), b2u(eos))
}

func (s *streamContext) OnHttpRequestTrailers(n int) types.Action {
	return s.action("proxy_on_request_trailers", uint64(n))
}

func (s *streamContext) OnHttpResponseHeaders(n int, eos bool) types.Action {
	return s.action("proxy_on_response_headers", uint64(n), b2u(eos))
}

func (s *streamContext) OnHttpResponseBody(n int, eos bool) types.Action {
	return s.action("proxy_on_response_body", uint64(n), b2u(eos))
}

func (s *streamContext) OnHttpResponseTrailers(n int) types.Action {
	return s.action("proxy_on_response_trailers", uint64(n))
}

func (s *streamContext) OnHttpStreamDone() { s.call("proxy_on_log", 0) }

func (s *streamContext) OnNewConnection() types.Action {
	return s.action("proxy_on_new_connection")
}

func (s *streamContext) OnDownstreamData(n int, eos bool) types.Action {
	return s.action("proxy_on_downstream_data", uint64(n), b2u(eos))
}

func (s *streamContext) OnDownstreamClose(peer types.PeerType) {
	s.call("proxy_on_downstream_connection_close", 0, uint64(peer))
}

func (s *streamContext) OnUpstreamData(n int, eos bool) types.Action {
	return s.action("proxy_on_upstream_data", uint64(n), b2u(eos))
}

func (s *streamContext) OnUpstreamClose(peer types.PeerType) {
	s.call("proxy_on_upstream_connection_close", 0, uint64(peer))
}

func (s *streamContext) OnStreamDone() { s.call("proxy_on_log", 0) }

// The module receives the replies to its callouts (sdk proxytest.ABIEvents).

func (m *module) ProxyOnHttpCallResponse(root, token, numHeaders, bodySize, numTrailers uint32) {
	m.call("proxy_on_http_call_response", 0, uint64(root), uint64(token), uint64(numHeaders), uint64(bodySize), uint64(numTrailers))
}

func (m *module) ProxyOnGrpcReceiveInitialMetadata(root, token, n uint32) {
	m.call("proxy_on_grpc_receive_initial_metadata", 0, uint64(root), uint64(token), uint64(n))
}

func (m *module) ProxyOnGrpcReceive(root, token, size uint32) {
	m.call("proxy_on_grpc_receive", 0, uint64(root), uint64(token), uint64(size))
}

func (m *module) ProxyOnGrpcReceiveTrailingMetadata(root, token, n uint32) {
	m.call("proxy_on_grpc_receive_trailing_metadata", 0, uint64(root), uint64(token), uint64(n))
}

func (m *module) ProxyOnGrpcClose(root, token, status uint32) {
	m.call("proxy_on_grpc_close", 0, uint64(root), uint64(token), uint64(status))
}
