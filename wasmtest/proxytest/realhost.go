package proxytest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

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
	streams map[uint32]*hostStream
	last    map[uint32]types.Action
	conns   map[uint32]*wasmtest.TCPStream
	queues  []string

	// HTTP callouts as upstream's emulator numbers them: an id is the
	// lowest one no unanswered call holds, and a context's list keeps
	// its answered calls. owner maps each stream (replaced ones too) to
	// its context id.
	seenCalls map[*wasmtest.HTTPCall]bool
	pending   map[uint32]*wasmtest.HTTPCall
	byContext map[uint32][]HttpCalloutAttribute
	owner     map[*wasmtest.HTTPStream]uint32

	// mu guards what the host's hooks read on the plugin's goroutine:
	// the properties the test set and the foreign functions it
	// registered.
	mu      sync.Mutex
	props   map[string][]byte
	foreign map[string]func([]byte) []byte
}

// hostStream is an emulator HTTP context on the host: the stream, and
// which headers have gone through it (sent, or skipped because the test
// began with a later callback).
type hostStream struct {
	s                   *wasmtest.HTTPStream
	reqHeaders, respHdr bool
	done                bool // completed or reset
}

// fatal is what panicTB panics with; Error makes the panic print its
// message rather than a pointer.
type fatal struct{ msg string }

func (f fatal) Error() string { return f.msg }

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

func newRealHost(file string, opt *EmulatorOption) (HostEmulator, func()) {
	_, pluginConfig, vmConfig, props := sdk.OptionParts(opt)
	h := &realHost{
		file: file, tb: &panicTB{}, nextID: PluginContextID + 1,
		streams: map[uint32]*hostStream{}, last: map[uint32]types.Action{},
		conns:     map[uint32]*wasmtest.TCPStream{},
		seenCalls: map[*wasmtest.HTTPCall]bool{}, pending: map[uint32]*wasmtest.HTTPCall{},
		byContext: map[uint32][]HttpCalloutAttribute{}, owner: map[*wasmtest.HTTPStream]uint32{},
		props: map[string][]byte{}, foreign: map[string]func([]byte) []byte{},
	}
	for k, v := range props {
		h.props[k] = v
	}
	h.opts = []wasmtest.Option{
		wasmtest.PluginConfig(string(pluginConfig)), wasmtest.VMConfig(string(vmConfig)),
		wasmtest.LogLevel("trace"), wasmtest.AnyCluster(),
		wasmtest.Properties(h.property), wasmtest.ForeignFunctions(h.callForeign),
	}
	return h, h.reset
}

// reset ends what the test left open as a client going away would (a
// stream the plugin still holds is not a failure: upstream's emulator
// lets a test stop anywhere), then unloads the plugin.
func (h *realHost) reset() {
	defer h.tb.reset()
	if h.p == nil {
		return
	}
	for _, hs := range h.streams {
		if !hs.done {
			hs.done = true
			hs.s.Reset()
		}
	}
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

// GetQueueSize is the length of the host's queue; 0 when no plugin
// registered it (or the id was never resolved), as upstream's.
func (h *realHost) GetQueueSize(id uint32) int {
	name, err := h.queue(id)
	if err != nil {
		return 0
	}
	n, _ := h.plugin().QueueLen(name)
	return n
}

// HTTP streams: each is a wasmtest.HTTPStream, run by the proxy's
// filter-chain engine with the plugin as its one filter.

func (h *realHost) InitializeHttpContext() uint32 {
	id := h.newID()
	h.streams[id] = h.newStream(id)
	return id
}

func (h *realHost) newStream(id uint32) *hostStream {
	s := h.plugin().NewHTTPStream()
	h.owner[s] = id
	return &hostStream{s: s}
}

func (h *realHost) hostStream(id uint32) *hostStream {
	s, ok := h.streams[id]
	if !ok {
		panic(fmt.Sprintf("proxytest: no HTTP context %d", id))
	}
	return s
}

func (h *realHost) stream(id uint32) *wasmtest.HTTPStream { return h.hostStream(id).s }

// Upstream's emulator calls whatever callback a test names; a stream on
// the host goes in protocol order. A test that begins with a later
// callback gets the headers before it passed by the plugin without their
// callback (wasmtest's Skip...Headers): the plugin sees what the test
// called and nothing else, reading empty header maps as on the emulator.

// request readies id for a request callback.
func (h *realHost) request(id uint32) *wasmtest.HTTPStream {
	hs := h.hostStream(id)
	if !hs.reqHeaders {
		hs.s.SkipRequestHeaders(nil, false)
		hs.reqHeaders = true
	}
	return hs.s
}

// response readies id for a response callback; headers says the
// callback is the response headers.
func (h *realHost) response(id uint32, headers bool) *wasmtest.HTTPStream {
	hs := h.hostStream(id)
	if !hs.reqHeaders {
		// A response the plugin never saw the request of, as after a
		// filter before it answered.
		hs.s.SkipRequestHeaders(nil, true)
		hs.reqHeaders = true
	}
	if !headers && !hs.respHdr {
		hs.s.SkipResponseHeaders(nil, false)
		hs.respHdr = true
	}
	return hs.s
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

// CallOnRequestHeaders on a context whose request headers went by
// already (upstream's tests send several requests on one context) is a
// new request: the host never calls on_request_headers twice for one
// stream, so the context's stream ends (completed, or reset when the
// plugin still holds it) and a new one, with a new stream context in the
// plugin, takes the id.
func (h *realHost) CallOnRequestHeaders(id uint32, hs [][2]string, end bool) types.Action {
	cur := h.hostStream(id)
	if cur.reqHeaders {
		h.CompleteHttpContext(id)
		cur = h.newStream(id)
		h.streams[id] = cur
	}
	cur.reqHeaders = true
	return h.action(id, cur.s.SendRequestHeaders(toHeaders(hs), end))
}

func (h *realHost) CallOnRequestBody(id uint32, body []byte, end bool) types.Action {
	return h.action(id, h.request(id).SendRequestBody(body, end))
}

func (h *realHost) CallOnRequestTrailers(id uint32, t [][2]string) types.Action {
	return h.action(id, h.request(id).SendRequestTrailers(toHeaders(t)))
}

func (h *realHost) CallOnResponseHeaders(id uint32, hs [][2]string, end bool) types.Action {
	s := h.response(id, true)
	h.hostStream(id).respHdr = true
	return h.action(id, s.SendResponseHeaders(toHeaders(hs), end))
}

func (h *realHost) CallOnResponseBody(id uint32, body []byte, end bool) types.Action {
	return h.action(id, h.response(id, false).SendResponseBody(body, end))
}

func (h *realHost) CallOnResponseTrailers(id uint32, t [][2]string) types.Action {
	return h.action(id, h.response(id, false).SendResponseTrailers(toHeaders(t)))
}

// CompleteHttpContext ends the stream: completed, or, when the plugin
// still holds a direction (which upstream's emulator allows), reset as
// by a client giving up; either way the plugin gets on_log and on_done.
func (h *realHost) CompleteHttpContext(id uint32) {
	hs := h.hostStream(id)
	if hs.done {
		return
	}
	hs.done = true
	if hs.s.RequestPaused() || hs.s.ResponsePaused() {
		hs.s.Reset()
		return
	}
	hs.s.Complete()
}

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

// syncCalls numbers the calls the plugin made since the last look, in
// the order it made them, as upstream's emulator does: the lowest id no
// unanswered call holds (so an answered call's id is reused, and tests
// answer "the first call" again after each tick).
func (h *realHost) syncCalls() {
	for _, c := range h.plugin().HTTPCalls() {
		if h.seenCalls[c] {
			continue
		}
		h.seenCalls[c] = true
		id := uint32(0)
		for h.pending[id] != nil {
			id++
		}
		h.pending[id] = c
		owner := PluginContextID
		if s := c.Stream(); s != nil {
			if o, ok := h.owner[s]; ok {
				owner = o
			}
		}
		h.byContext[owner] = append(h.byContext[owner], HttpCalloutAttribute{
			CalloutID: id, Upstream: c.Cluster, Headers: fromMap(c.Headers),
			Trailers: fromMap(c.Trailers), Body: append([]byte{}, c.Body...),
		})
	}
}

// GetCalloutAttributesFromContext lists every call the context made,
// answered ones included, as upstream's emulator does.
func (h *realHost) GetCalloutAttributesFromContext(contextID uint32) []HttpCalloutAttribute {
	h.syncCalls()
	return append([]HttpCalloutAttribute(nil), h.byContext[contextID]...)
}

func (h *realHost) CallOnHttpCallResponse(calloutID uint32, headers, trailers [][2]string, body []byte) {
	h.syncCalls()
	c, ok := h.pending[calloutID]
	if !ok {
		panic(fmt.Sprintf("proxytest: no unanswered HTTP call %d", calloutID))
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
	delete(h.pending, calloutID)
	c.RespondWith(wasmtest.CallResponse{Status: status, Headers: rest, Body: body, Trailers: toHeaders(trailers)})
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

// Properties and foreign functions: what the test sets and registers is
// what the host answers the plugin first (wasmtest.Properties,
// wasmtest.ForeignFunctions); every other property comes from the
// stream and the node as in the proxy, every other foreign function
// from the host's own.

func propertyKey(path []string) string { return strings.Join(path, "\x00") }

// property is the host's Property hook, on the plugin's goroutine.
func (h *realHost) property(path []string) ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.props[propertyKey(path)]
	return v, ok
}

// callForeign is the host's ForeignFunction hook.
func (h *realHost) callForeign(name string, args []byte) ([]byte, bool) {
	h.mu.Lock()
	f, ok := h.foreign[name]
	h.mu.Unlock()
	if !ok {
		return nil, false
	}
	return f(args), true
}

// GetProperty reads a property the test set (WithProperty, SetProperty).
func (h *realHost) GetProperty(path []string) ([]byte, error) {
	if len(path) == 0 {
		return nil, fmt.Errorf("proxytest: GetProperty: empty path: %w", types.ErrorStatusBadArgument)
	}
	v, ok := h.property(path)
	if !ok {
		return nil, types.ErrorStatusNotFound
	}
	return append([]byte(nil), v...), nil
}

// SetProperty sets what the plugin reads at path from now on.
func (h *realHost) SetProperty(path []string, data []byte) error {
	if len(path) == 0 {
		return fmt.Errorf("proxytest: SetProperty: empty path: %w", types.ErrorStatusBadArgument)
	}
	if len(data) == 0 {
		return fmt.Errorf("proxytest: SetProperty %q: empty value: %w", path, types.ErrorStatusBadArgument)
	}
	h.mu.Lock()
	h.props[propertyKey(path)] = append([]byte(nil), data...)
	h.mu.Unlock()
	return nil
}

func (h *realHost) GetPropertyMap(path []string) ([][2]string, error) {
	v, err := h.GetProperty(path)
	if err != nil {
		return nil, err
	}
	m, ok := decodePairs(v)
	if !ok {
		return nil, fmt.Errorf("proxytest: GetPropertyMap: property %q is not a map in the header-pair encoding: %w", path, types.ErrorStatusSerializationFailure)
	}
	return m, nil
}

func (h *realHost) RegisterForeignFunction(name string, f func([]byte) []byte) {
	h.mu.Lock()
	h.foreign[name] = f
	h.mu.Unlock()
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

// decodePairs reads the header-pair encoding (count, then each key and
// value length, then the NUL-terminated keys and values).
func decodePairs(b []byte) ([][2]string, bool) {
	if len(b) < 4 {
		return nil, false
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > len(b)/8 || 4+8*n > len(b) {
		return nil, false
	}
	out := make([][2]string, 0, n)
	data := b[4+8*n:]
	for i := range n {
		kl := int(binary.LittleEndian.Uint32(b[4+8*i:]))
		vl := int(binary.LittleEndian.Uint32(b[8+8*i:]))
		if kl+1+vl+1 > len(data) {
			return nil, false
		}
		k := string(data[:kl])
		data = data[kl+1:]
		v := string(data[:vl])
		data = data[vl+1:]
		out = append(out, [2]string{k, v})
	}
	return out, true
}
