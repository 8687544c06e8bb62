package proxytest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/wasmproxy/wasmproxy/filter"
	sdk "github.com/wasmproxy/wasmproxy/sdk/proxywasm/proxytest"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
	"github.com/wasmproxy/wasmproxy/wasmtest"
)

// realHost is the emulator's API over wasmproxy's real host: the module
// runs in package wasm's Host through wasmtest (the proxy's filter-chain
// engine, the host's ABI, its shared data, queues, metrics and logs), and
// each method drives or reads that state. It is what NewHostEmulator
// returns for WithVMContext(NewWasmVMContext(wasm)).
//
// The plugin is loaded (instantiate, _initialize, proxy_on_vm_start,
// proxy_on_configure, as the proxy does: the host does not start a VM
// without configuring it) at StartVM, StartPlugin or the first call that
// needs it.
type realHost struct {
	file     string
	opts     []wasmtest.Option
	tb       *panicTB
	p        *wasmtest.Plugin
	startErr string

	nextID  uint32
	streams map[uint32]*wasmtest.HTTPStream
	last    map[uint32]types.Action
	conns   map[uint32]*wasmtest.TCPStream
	calls   map[uint32]*wasmtest.HTTPCall
	callIDs map[*wasmtest.HTTPCall]uint32
	queues  []string
}

// fatal is what panicTB panics with.
type fatal struct{ msg string }

// panicTB is the wasmtest.TB of a host emulator, which has no *testing.T:
// a failure panics (the test fails naming it), cleanups run at reset.
type panicTB struct{ cleanups []func() }

func (*panicTB) Helper()                           {}
func (*panicTB) Errorf(format string, args ...any) { panic(fatal{fmt.Sprintf(format, args...)}) }
func (*panicTB) Fatalf(format string, args ...any) { panic(fatal{fmt.Sprintf(format, args...)}) }
func (b *panicTB) Cleanup(f func())                { b.cleanups = append(b.cleanups, f) }

func (b *panicTB) reset() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
	b.cleanups = nil
}

// moduleFile writes code where wasmtest can load it, once per content.
func moduleFile(code []byte) (string, error) {
	sum := sha256.Sum256(code)
	dir := filepath.Join(os.TempDir(), "wasmproxy-proxytest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	file := filepath.Join(dir, hex.EncodeToString(sum[:12])+".wasm")
	if _, err := os.Stat(file); err == nil {
		return file, nil
	}
	tmp, err := os.CreateTemp(dir, "module-*")
	if err != nil {
		return "", err
	}
	_, err = tmp.Write(code)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return file, nil
}

func newRealHost(vm *vmContext, opt *EmulatorOption) (HostEmulator, func()) {
	_, pluginConfig, vmConfig, props := sdk.OptionParts(opt)
	if len(props) > 0 {
		panic("proxytest: WithProperty has no place on wasmproxy's host, whose properties come from the stream " +
			"(wasmtest.WithInfo) and the node; run this test on the emulator: NewWasmVMContext(wasm, OnEmulator())")
	}
	h := &realHost{
		file: vm.file, tb: &panicTB{}, nextID: PluginContextID + 1,
		streams: map[uint32]*wasmtest.HTTPStream{}, last: map[uint32]types.Action{},
		conns: map[uint32]*wasmtest.TCPStream{}, calls: map[uint32]*wasmtest.HTTPCall{},
		callIDs: map[*wasmtest.HTTPCall]uint32{},
		opts: []wasmtest.Option{
			wasmtest.PluginConfig(string(pluginConfig)), wasmtest.VMConfig(string(vmConfig)),
			wasmtest.LogLevel("trace"), wasmtest.AnyCluster(),
		},
	}
	return h, h.tb.reset
}

// plugin loads the plugin on first use; a start that failed panics.
func (h *realHost) plugin() *wasmtest.Plugin {
	h.start()
	if h.p == nil {
		panic("proxytest: the plugin did not start on wasmproxy's host: " + h.startErr)
	}
	return h.p
}

func (h *realHost) start() bool {
	if h.p != nil || h.startErr != "" {
		return h.p != nil
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				f, ok := r.(fatal)
				if !ok {
					panic(r)
				}
				h.startErr = f.msg
			}
		}()
		h.p = wasmtest.Load(h.tb, h.file, h.opts...)
	}()
	return h.p != nil
}

func (h *realHost) StartVM() types.OnVMStartStatus { return types.OnVMStartStatus(h.start()) }
func (h *realHost) StartPlugin() types.OnPluginStartStatus {
	return types.OnPluginStartStatus(h.start())
}

// FinishVM is not a step wasmproxy's host takes on its own: the plugin
// is done when the host closes it (at reset).
func (h *realHost) FinishVM() bool {
	panic("proxytest: FinishVM: wasmproxy's host calls proxy_on_done only when it unloads the plugin, which reset does")
}

func (h *realHost) newID() uint32 {
	id := h.nextID
	h.nextID++
	return id
}

// Logs.

func (h *realHost) logs(level string) []string {
	var out []string
	for _, e := range h.plugin().Logs() {
		if e.FromPlugin && e.Level == level {
			out = append(out, e.Message)
		}
	}
	return out
}

func (h *realHost) GetTraceLogs() []string    { return h.logs("trace") }
func (h *realHost) GetDebugLogs() []string    { return h.logs("debug") }
func (h *realHost) GetInfoLogs() []string     { return h.logs("info") }
func (h *realHost) GetWarnLogs() []string     { return h.logs("warning") }
func (h *realHost) GetErrorLogs() []string    { return h.logs("error") }
func (h *realHost) GetCriticalLogs() []string { return h.logs("critical") }

// Metrics: the host's stats store holds them as the proxy exports them.

func (h *realHost) metric(name string) (uint64, error) {
	v, ok := h.plugin().Metric(name)
	if !ok {
		return 0, fmt.Errorf("proxytest: no metric %q on wasmproxy's host: %w", name, types.ErrorStatusNotFound)
	}
	return uint64(v), nil
}

func (h *realHost) GetCounterMetric(name string) (uint64, error) { return h.metric(name) }
func (h *realHost) GetGaugeMetric(name string) (uint64, error)   { return h.metric(name) }

func (h *realHost) GetHistogramMetric(name string) (uint64, error) {
	panic("proxytest: GetHistogramMetric: wasmproxy's host keeps histogram summaries, not the last value; use wasmtest.Plugin.Histogram")
}

// Ticks.

func (h *realHost) GetTickPeriod() uint32 { return uint32(h.plugin().TickPeriod().Milliseconds()) }
func (h *realHost) Tick()                 { h.plugin().Tick() }

// Shared data and queues: the host's own, under the plugin's vm_id ("").

func (h *realHost) GetSharedData(key string) ([]byte, uint32, error) {
	v, ok := h.plugin().SharedData(key)
	if !ok {
		return nil, 0, types.ErrorStatusNotFound
	}
	return v, 0, nil
}

func (h *realHost) SetSharedData(key string, value []byte, cas uint32) error {
	if cas != 0 {
		return errors.New("proxytest: SetSharedData with a CAS is not offered on wasmproxy's host; pass 0")
	}
	h.plugin().SetSharedData(key, value)
	return nil
}

func (h *realHost) ResolveSharedQueue(name string) (uint32, error) {
	for i, n := range h.queues {
		if n == name {
			return uint32(i + 1), nil
		}
	}
	h.queues = append(h.queues, name)
	return uint32(len(h.queues)), nil
}

func (h *realHost) queue(id uint32) (string, error) {
	if id == 0 || int(id) > len(h.queues) {
		return "", fmt.Errorf("proxytest: no queue %d resolved: %w", id, types.ErrorStatusNotFound)
	}
	return h.queues[id-1], nil
}

func (h *realHost) EnqueueSharedQueue(id uint32, data []byte) error {
	name, err := h.queue(id)
	if err != nil {
		return err
	}
	h.plugin().Enqueue(name, data)
	return nil
}

func (h *realHost) DequeueSharedQueue(id uint32) ([]byte, error) {
	name, err := h.queue(id)
	if err != nil {
		return nil, err
	}
	d, ok := h.plugin().Dequeue(name)
	if !ok {
		return nil, types.ErrorStatusEmpty
	}
	return d, nil
}

func (h *realHost) GetQueueSize(uint32) int {
	panic("proxytest: GetQueueSize: wasmproxy's host does not expose queue lengths; dequeue instead")
}

// HTTP streams: each is a wasmtest.HTTPStream, run by the proxy's
// filter-chain engine with the plugin as its one filter.

func (h *realHost) InitializeHttpContext() uint32 {
	id := h.newID()
	h.streams[id] = h.plugin().NewHTTPStream()
	return id
}

func (h *realHost) stream(id uint32) *wasmtest.HTTPStream {
	s, ok := h.streams[id]
	if !ok {
		panic(fmt.Sprintf("proxytest: no HTTP context %d", id))
	}
	return s
}

func toHeaders(kv [][2]string) wasmtest.Headers {
	out := make(wasmtest.Headers, 0, len(kv))
	for _, p := range kv {
		out = append(out, filter.Pair{Key: strings.ToLower(p[0]), Value: p[1]})
	}
	return out
}

func fromMap(m *filter.HeaderMap) [][2]string {
	if m == nil {
		return nil
	}
	out := make([][2]string, 0, m.Len())
	for _, p := range m.Pairs() {
		out = append(out, [2]string{p.Key, p.Value})
	}
	return out
}

func (h *realHost) action(id uint32, r wasmtest.Result) types.Action {
	a := types.ActionPause
	if r.Action == wasmtest.Continue {
		a = types.ActionContinue
	}
	h.last[id] = a
	return a
}

func (h *realHost) CallOnRequestHeaders(id uint32, hs [][2]string, end bool) types.Action {
	return h.action(id, h.stream(id).SendRequestHeaders(toHeaders(hs), end))
}

func (h *realHost) CallOnRequestBody(id uint32, body []byte, end bool) types.Action {
	return h.action(id, h.stream(id).SendRequestBody(body, end))
}

func (h *realHost) CallOnRequestTrailers(id uint32, t [][2]string) types.Action {
	return h.action(id, h.stream(id).SendRequestTrailers(toHeaders(t)))
}

func (h *realHost) CallOnResponseHeaders(id uint32, hs [][2]string, end bool) types.Action {
	return h.action(id, h.stream(id).SendResponseHeaders(toHeaders(hs), end))
}

func (h *realHost) CallOnResponseBody(id uint32, body []byte, end bool) types.Action {
	return h.action(id, h.stream(id).SendResponseBody(body, end))
}

func (h *realHost) CallOnResponseTrailers(id uint32, t [][2]string) types.Action {
	return h.action(id, h.stream(id).SendResponseTrailers(toHeaders(t)))
}

func (h *realHost) CompleteHttpContext(id uint32) { h.stream(id).Complete() }

// GetCurrentHttpStreamAction is the last callback's action, or Continue
// once the host resumed the stream (the plugin continued it).
func (h *realHost) GetCurrentHttpStreamAction(id uint32) types.Action {
	s := h.stream(id)
	if !s.RequestPaused() && !s.ResponsePaused() {
		return types.ActionContinue
	}
	return h.last[id]
}

func (h *realHost) GetCurrentRequestHeaders(id uint32) [][2]string {
	m, _, _ := h.stream(id).Current(true)
	return fromMap(m)
}

func (h *realHost) GetCurrentResponseHeaders(id uint32) [][2]string {
	m, _, _ := h.stream(id).Current(false)
	return fromMap(m)
}

func (h *realHost) GetCurrentRequestBody(id uint32) []byte {
	_, b, _ := h.stream(id).Current(true)
	return b
}

func (h *realHost) GetCurrentResponseBody(id uint32) []byte {
	_, b, _ := h.stream(id).Current(false)
	return b
}

func (h *realHost) GetCurrentRequestTrailers(id uint32) [][2]string {
	_, _, t := h.stream(id).Current(true)
	return fromMap(t)
}

func (h *realHost) GetCurrentResponseTrailers(id uint32) [][2]string {
	_, _, t := h.stream(id).Current(false)
	return fromMap(t)
}

func (h *realHost) GetSentLocalResponse(id uint32) *LocalHttpResponse {
	r := h.stream(id).LocalResponse()
	if r == nil {
		return nil
	}
	out := &LocalHttpResponse{StatusCode: uint32(r.Status), StatusCodeDetail: r.Details, GRPCStatus: -1}
	if len(r.Body) > 0 {
		out.Data = r.Body
	}
	for _, p := range r.Headers {
		out.Headers = append(out.Headers, [2]string{p.Key, p.Value})
	}
	return out
}

// HTTP callouts: every cluster exists and the test answers each call.

func (h *realHost) syncCalls() {
	for _, c := range h.plugin().HTTPCalls() {
		if _, ok := h.callIDs[c]; !ok {
			id := uint32(len(h.callIDs) + 1)
			h.callIDs[c] = id
			h.calls[id] = c
		}
	}
}

func (h *realHost) GetCalloutAttributesFromContext(contextID uint32) []HttpCalloutAttribute {
	h.syncCalls()
	var out []HttpCalloutAttribute
	for id := uint32(1); int(id) <= len(h.calls); id++ {
		c := h.calls[id]
		owner := PluginContextID
		for sid, s := range h.streams {
			if s == c.Stream() {
				owner = sid
			}
		}
		if owner != contextID {
			continue
		}
		out = append(out, HttpCalloutAttribute{
			CalloutID: id, Upstream: c.Cluster, Headers: fromMap(c.Headers),
			Trailers: fromMap(c.Trailers), Body: c.Body,
		})
	}
	return out
}

func (h *realHost) CallOnHttpCallResponse(calloutID uint32, headers, trailers [][2]string, body []byte) {
	h.syncCalls()
	c, ok := h.calls[calloutID]
	if !ok {
		panic(fmt.Sprintf("proxytest: no HTTP call %d", calloutID))
	}
	status := 200
	var rest wasmtest.Headers
	for _, p := range toHeaders(headers) {
		if p.Key == ":status" {
			n, err := strconv.Atoi(p.Value)
			if err != nil {
				panic(fmt.Sprintf("proxytest: CallOnHttpCallResponse: :status %q is not a number", p.Value))
			}
			status = n
			continue
		}
		rest = append(rest, p)
	}
	if len(trailers) > 0 {
		panic("proxytest: CallOnHttpCallResponse: trailers are not offered on wasmproxy's host harness")
	}
	c.Respond(status, rest, body)
}

// TCP connections.

func (h *realHost) InitializeConnection() (uint32, types.Action) {
	id := h.newID()
	s := h.plugin().NewTCPStream()
	h.conns[id] = s
	return id, h.action(id, s.Connect())
}

func (h *realHost) conn(id uint32) *wasmtest.TCPStream {
	s, ok := h.conns[id]
	if !ok {
		panic(fmt.Sprintf("proxytest: no TCP context %d", id))
	}
	return s
}

func (h *realHost) CallOnDownstreamData(id uint32, data []byte) types.Action {
	return h.action(id, h.conn(id).SendDownstream(data, false))
}

func (h *realHost) CallOnUpstreamData(id uint32, data []byte) types.Action {
	return h.action(id, h.conn(id).SendUpstream(data, false))
}

func (h *realHost) GetForwardedDownstreamData(id uint32) []byte {
	d, _ := h.conn(id).Upstream()
	return d
}

func (h *realHost) GetForwardedUpstreamData(id uint32) []byte {
	d, _ := h.conn(id).Client()
	return d
}

func (h *realHost) GetConnectionCloseRequests(id uint32) (downstream, upstream bool) {
	closed, _ := h.conn(id).Closed()
	return closed, closed
}

func (h *realHost) CloseUpstreamConnection(id uint32) {
	h.conn(id).SendUpstream(nil, true)
}

func (h *realHost) CloseDownstreamConnection(id uint32) {
	h.conn(id).SendDownstream(nil, true)
}

func (h *realHost) CompleteConnection(id uint32) { h.conn(id).Close() }

// What wasmproxy's host has no test entry for: these name the emulator
// mode, which has them.

func unsupported(what string) string {
	return "proxytest: " + what + " is not available on wasmproxy's host; run this test on the emulator: NewWasmVMContext(wasm, OnEmulator())"
}

func (h *realHost) GetProperty([]string) ([]byte, error) {
	panic(unsupported("GetProperty"))
}

func (h *realHost) SetProperty([]string, []byte) error { panic(unsupported("SetProperty")) }

func (h *realHost) GetPropertyMap([]string) ([][2]string, error) {
	panic(unsupported("GetPropertyMap"))
}

func (h *realHost) RegisterForeignFunction(string, func([]byte) []byte) {
	panic(unsupported("RegisterForeignFunction"))
}

func (h *realHost) GetGrpcCalloutAttributesFromContext(uint32) []GrpcCalloutAttribute {
	panic(unsupported("gRPC callouts"))
}

func (h *realHost) CallOnGrpcReceiveInitialMetadata(uint32, [][2]string) {
	panic(unsupported("gRPC callouts"))
}

func (h *realHost) CallOnGrpcReceive(uint32, []byte) { panic(unsupported("gRPC callouts")) }

func (h *realHost) CallOnGrpcReceiveTrailingMetadata(uint32, [][2]string) {
	panic(unsupported("gRPC callouts"))
}

func (h *realHost) CallOnGrpcClose(uint32, types.GrpcStatus, string) {
	panic(unsupported("gRPC callouts"))
}
