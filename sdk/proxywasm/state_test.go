package proxywasm

import (
	"errors"
	"reflect"
	"testing"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

type recorder struct{ events []string }

func (r *recorder) add(e string) { r.events = append(r.events, e) }

type testVM struct {
	types.DefaultVMContext
	r *recorder
}

func (v *testVM) OnVMStart(int) types.OnVMStartStatus { v.r.add("vmstart"); return true }
func (v *testVM) NewPluginContext(uint32) types.PluginContext {
	return &testPlugin{r: v.r}
}

type testPlugin struct {
	types.DefaultPluginContext
	r   *recorder
	tcp bool
}

func (p *testPlugin) OnPluginStart(n int) types.OnPluginStartStatus {
	p.r.add("pluginstart")
	return n == 0
}
func (p *testPlugin) OnTick()            { p.r.add("tick") }
func (p *testPlugin) OnPluginDone() bool { p.r.add("plugindone"); return false }
func (p *testPlugin) NewHttpContext(uint32) types.HttpContext {
	if p.tcp {
		return nil
	}
	return &testHTTP{r: p.r}
}
func (p *testPlugin) NewTcpContext(uint32) types.TcpContext { return &testTCP{r: p.r} }

type testHTTP struct {
	types.DefaultHttpContext
	r *recorder
}

func (h *testHTTP) OnHttpRequestHeaders(n int, eos bool) types.Action {
	h.r.add("reqheaders")
	if eos {
		return types.ActionContinue
	}
	return types.ActionPause
}
func (h *testHTTP) OnHttpStreamDone() { h.r.add("httpdone") }

type testTCP struct {
	types.DefaultTcpContext
	r *recorder
}

func (t *testTCP) OnDownstreamData(n int, eos bool) types.Action {
	t.r.add("down")
	return types.ActionPause
}
func (t *testTCP) OnDownstreamClose(p types.PeerType) { t.r.add("close:" + p.String()) }
func (t *testTCP) OnStreamDone()                      { t.r.add("tcpdone") }

func reset(t *testing.T) *recorder {
	t.Helper()
	state = newVMState()
	t.Cleanup(func() { state = newVMState() })
	r := &recorder{}
	SetVMContext(&testVM{r: r})
	return r
}

func TestHTTPLifecycle(t *testing.T) {
	r := reset(t)
	onContextCreate(1, 0)
	if !onVMStart(1, 0) || !onConfigure(1, 0) || onConfigure(1, 5) {
		t.Fatal("unexpected start/configure results")
	}
	onTick(1)
	onContextCreate(2, 1)
	if got := onRequestHeaders(2, 3, false); got != uint32(types.ActionPause) {
		t.Fatalf("request headers = %d", got)
	}
	if got := onRequestHeaders(2, 3, true); got != uint32(types.ActionContinue) {
		t.Fatalf("request headers eos = %d", got)
	}
	if got := onResponseHeaders(2, 1, false); got != 0 {
		t.Fatalf("default response headers = %d", got)
	}
	onLog(2)
	if !onDone(2) {
		t.Fatal("stream onDone must be true")
	}
	onDelete(2)
	if onDone(1) {
		t.Fatal("root onDone must return the plugin's answer (false)")
	}
	onDelete(1)
	onDelete(99) // unknown: ignored
	want := []string{"vmstart", "pluginstart", "pluginstart", "tick", "reqheaders", "reqheaders", "httpdone", "plugindone"}
	if !reflect.DeepEqual(r.events, want) {
		t.Fatalf("events = %v, want %v", r.events, want)
	}
	if len(state.roots)+state.streams.len() != 0 {
		t.Fatal("contexts left after delete")
	}
}

func TestTCPFallback(t *testing.T) {
	r := reset(t)
	SetPluginContext(func(uint32) types.PluginContext { return &testPlugin{r: r, tcp: true} })
	onContextCreate(1, 0)
	onContextCreate(2, 1)
	if got := onDownstreamData(2, 10, false); got != uint32(types.ActionPause) {
		t.Fatalf("downstream data = %d", got)
	}
	if streamOf(2).tcp == nil {
		t.Fatal("stream context not created as TCP")
	}
	onDownstreamConnectionClose(2, uint32(types.PeerTypeRemote))
	onLog(2)
	want := []string{"down", "close:remote", "tcpdone"}
	if !reflect.DeepEqual(r.events, want) {
		t.Fatalf("events = %v, want %v", r.events, want)
	}
}

// TestHTTPAndTCPFromOnePlugin: a plugin that makes both kinds of
// context serves HTTP streams and TCP connections alike; each context's
// kind comes from its first callback.
func TestHTTPAndTCPFromOnePlugin(t *testing.T) {
	r := reset(t)
	SetPluginContext(func(uint32) types.PluginContext { return &testPlugin{r: r} })
	onContextCreate(1, 0)
	onContextCreate(2, 1)
	onContextCreate(3, 1)
	onNewConnection(3)
	onDownstreamData(3, 4, false)
	onRequestHeaders(2, 1, true)
	if streamOf(2).http == nil {
		t.Error("context 2 is not an HTTP context")
	}
	if streamOf(3).tcp == nil {
		t.Error("context 3 is not a TCP context")
	}
	onLog(2)
	onLog(3)
	want := []string{"down", "reqheaders", "httpdone", "tcpdone"}
	if !reflect.DeepEqual(r.events, want) {
		t.Fatalf("events = %v, want %v", r.events, want)
	}
	onDelete(2)
	onDelete(3)
	onContextCreate(4, 1)
	onDelete(4) // never used: forgotten all the same
	onDelete(1)
	if len(state.roots)+state.streams.len() != 0 {
		t.Fatal("contexts left after delete")
	}
}

func TestSetHttpContextShortcut(t *testing.T) {
	r := reset(t)
	SetHttpContext(func(uint32) types.HttpContext { return &testHTTP{r: r} })
	onContextCreate(1, 0)
	if !onVMStart(1, 0) || !onConfigure(1, 7) {
		t.Fatal("default start/configure must succeed")
	}
	onContextCreate(2, 1)
	onRequestHeaders(2, 1, true)
	if !reflect.DeepEqual(r.events, []string{"reqheaders"}) {
		t.Fatalf("events = %v", r.events)
	}
}

func TestMainRunOnceWhenNothingRegistered(t *testing.T) {
	state = newVMState()
	t.Cleanup(func() { state = newVMState(); runMain = nil })
	calls := 0
	r := &recorder{}
	runMain = func() { calls++; SetVMContext(&testVM{r: r}) }
	onContextCreate(1, 0)
	onContextCreate(3, 0)
	if calls != 1 {
		t.Fatalf("main ran %d times, want 1", calls)
	}

	// Registered from init: main never runs.
	state = newVMState()
	SetVMContext(&testVM{r: r})
	runMain = func() { t.Fatal("main ran although a VM context was registered") }
	onContextCreate(1, 0)
}

func TestNoVMContextPanics(t *testing.T) {
	state = newVMState()
	t.Cleanup(func() { state = newVMState() })
	defer func() {
		if recover() == nil {
			t.Fatal("expected a panic without any registered VM context")
		}
	}()
	onContextCreate(1, 0)
}

func TestHttpCalloutDispatch(t *testing.T) {
	reset(t)
	onContextCreate(1, 0)
	onContextCreate(2, 1)
	onRequestHeaders(2, 0, true) // makes 2 the active context
	var got []int
	if !state.registerHttpCallout(8, func(h, b, tr int) { got = append(got, h, b, tr, int(state.active)) }) {
		t.Fatal("register failed")
	}
	onHttpCallResponse(1, 8, 3, 10, 0)
	if !reflect.DeepEqual(got, []int{3, 10, 0, 2}) {
		t.Fatalf("callback got %v", got)
	}
	onHttpCallResponse(1, 8, 3, 10, 0) // answered already: ignored
	if len(got) != 4 {
		t.Fatal("callback ran twice")
	}

	// The caller is gone before the reply: no callback.
	onRequestHeaders(2, 0, true)
	state.registerHttpCallout(12, func(int, int, int) { t.Fatal("callback for deleted context") })
	onDelete(2)
	onHttpCallResponse(1, 12, 1, 0, 0)
}

func TestDispatchHttpCallOutsideContext(t *testing.T) {
	reset(t)
	if _, err := DispatchHttpCall("c", nil, nil, nil, 0, nil); err == nil {
		t.Fatal("expected an error outside any context")
	}
}

func TestNativeHostCallsAreUnimplemented(t *testing.T) {
	if _, err := GetHttpRequestHeader("x"); !errors.Is(err, types.ErrorUnimplemented) {
		t.Fatalf("err = %v", err)
	}
	if err := SendHttpResponse(403, nil, []byte("no"), -1); !errors.Is(err, types.ErrorUnimplemented) {
		t.Fatalf("err = %v", err)
	}
}

// streamOf is the live stream state of a context id (zero if none).
func streamOf(id uint32) streamState {
	st, _ := state.streams.get(id)
	return st
}

// TestStreamTable: ids that share a slot spill into the map and back,
// an update of a live id stays where the id is, and deletes find either.
func TestStreamTable(t *testing.T) {
	var tb streamTable
	a, b, c := uint32(7), uint32(7+streamSlots), uint32(7+2*streamSlots) // one slot
	for i, id := range []uint32{a, b, c, 8} {
		tb.put(id, streamState{root: uint32(100 + i)})
	}
	if tb.len() != 4 || len(tb.overflow) != 2 {
		t.Fatalf("len %d, overflow %d; want 4 and 2", tb.len(), len(tb.overflow))
	}
	tb.put(b, streamState{root: 1}) // update in the map
	tb.put(a, streamState{root: 2}) // update in the slot
	for _, tc := range []struct {
		id   uint32
		root uint32
		ok   bool
	}{{a, 2, true}, {b, 1, true}, {c, 102, true}, {8, 103, true}, {9, 0, false}, {0, 0, false}} {
		st, ok := tb.get(tc.id)
		if ok != tc.ok || st.root != tc.root {
			t.Errorf("get(%d) = %d, %v; want %d, %v", tc.id, st.root, ok, tc.root, tc.ok)
		}
	}
	if !tb.del(a) || tb.del(a) {
		t.Fatal("del of the slot's id: want true once")
	}
	// The slot is free again; a map entry with the same low bits stays
	// in the map and is still found.
	if st, ok := tb.get(c); !ok || st.root != 102 {
		t.Errorf("get(%d) after freeing its slot = %d, %v", c, st.root, ok)
	}
	tb.put(a+3*streamSlots, streamState{root: 5}) // takes the free slot
	if tb.slots[a%streamSlots].id != a+3*streamSlots {
		t.Errorf("a new id did not take the free slot")
	}
	for _, id := range []uint32{b, c, 8, a + 3*streamSlots} {
		if !tb.del(id) {
			t.Errorf("del(%d) = false", id)
		}
	}
	if tb.len() != 0 {
		t.Errorf("len %d after deleting everything", tb.len())
	}
}

type reusedHTTPPlugin struct {
	types.DefaultPluginContext
	h types.HttpContext
}

func (p *reusedHTTPPlugin) NewHttpContext(uint32) types.HttpContext { return p.h }

type reusedHTTPVM struct {
	types.DefaultVMContext
	p *reusedHTTPPlugin
}

func (v *reusedHTTPVM) NewPluginContext(uint32) types.PluginContext { return v.p }

// TestStreamLifecycleAllocatesNothing: the SDK's own part of a stream,
// from proxy_on_context_create through every HTTP callback a proxied
// request gets to proxy_on_delete, makes no Go allocation (in Wasm each
// one is the runtime's allocator and, now and then, a collection that
// stops a callback), and a root deleted and created again under the same
// id is the one its new streams get.
func TestStreamLifecycleAllocatesNothing(t *testing.T) {
	state = newVMState()
	defer func() { state = newVMState() }()
	h := &testHTTP{r: &recorder{}}
	SetVMContext(&reusedHTTPVM{p: &reusedHTTPPlugin{h: h}})
	onContextCreate(1, 0)
	id := uint32(2)
	stream := func() {
		onContextCreate(id, 1)
		onRequestHeaders(id, 6, false)
		onRequestBody(id, 52, true)
		onResponseHeaders(id, 4, false)
		onResponseBody(id, 22, true)
		onLog(id)
		onDone(id)
		onDelete(id)
		id++
	}
	stream() // the recorder's slice grows here and below, not per stream
	h.r.events = make([]string, 0, 4096)
	if n := testing.AllocsPerRun(1000, stream); n != 0 {
		t.Errorf("a stream allocates %v times in the SDK, want 0", n)
	}
	if state.streams.len() != 0 {
		t.Fatalf("%d streams live after all were deleted", state.streams.len())
	}
	// The cached parent is forgotten with its root.
	onDelete(1)
	r2 := &testHTTP{r: &recorder{}}
	SetVMContext(&reusedHTTPVM{p: &reusedHTTPPlugin{h: r2}})
	onContextCreate(1, 0)
	onContextCreate(id, 1)
	if got := state.http(id, "test"); got != r2 {
		t.Fatalf("a stream of the re-created root got the deleted root's HTTP context")
	}
	onDelete(id)
	onDelete(1)
	defer func() {
		if recover() == nil {
			t.Fatal("a stream of a deleted root was created")
		}
	}()
	onContextCreate(id+1, 1)
}
