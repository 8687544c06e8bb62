package proxytest_test

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/proxytest"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// counterPlugin counts requests in shared data with a CAS loop.
func counterPlugin() types.VMContext {
	return httpPlugin(&httpFuncs{reqHeaders: func(int, bool) types.Action {
		for {
			v, cas, err := proxywasm.GetSharedData("requests")
			n := 0
			if err == nil {
				n, _ = strconv.Atoi(string(v))
			} else if !errors.Is(err, types.ErrorStatusNotFound) {
				proxywasm.LogErrorf("get: %v", err)
				return types.ActionContinue
			}
			err = proxywasm.SetSharedData("requests", []byte(strconv.Itoa(n+1)), cas)
			if errors.Is(err, types.ErrorStatusCasMismatch) {
				continue
			}
			proxywasm.LogInfof("requests: %d", n+1)
			return types.ActionContinue
		}
	}})
}

func TestSharedDataCounter(t *testing.T) {
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(counterPlugin()))
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, nil, true)
	host.CallOnRequestHeaders(id, nil, true)
	v, cas, err := host.GetSharedData("requests")
	if err != nil || string(v) != "2" || cas == 0 {
		t.Fatalf("shared data %q cas %d, %v", v, cas, err)
	}
	// Another plugin writes in between: a stale CAS fails, the current
	// one and 0 succeed.
	if err := host.SetSharedData("requests", []byte("10"), cas); err != nil {
		t.Fatal(err)
	}
	if err := host.SetSharedData("requests", []byte("11"), cas); !errors.Is(err, types.ErrorStatusCasMismatch) {
		t.Errorf("a stale CAS: %v", err)
	}
	host.CallOnRequestHeaders(id, nil, true)
	if got := host.GetInfoLogs(); !reflect.DeepEqual(got, []string{"requests: 1", "requests: 2", "requests: 11"}) {
		t.Errorf("logs %q", got)
	}
	if _, _, err := host.GetSharedData("absent"); !errors.Is(err, types.ErrorStatusNotFound) {
		t.Errorf("absent key: %v", err)
	}
}

func TestSharedQueues(t *testing.T) {
	var queueID uint32
	var ready []string
	var resolveErr error
	plugin := &pluginFuncs{
		start: func(int) types.OnPluginStartStatus {
			var err error
			queueID, err = proxywasm.RegisterSharedQueue("events")
			_, resolveErr = proxywasm.ResolveSharedQueue("other_vm", "absent")
			return err == nil
		},
		queue: func(id uint32) {
			for {
				item, err := proxywasm.DequeueSharedQueue(id)
				if errors.Is(err, types.ErrorStatusEmpty) {
					return
				}
				ready = append(ready, string(item))
			}
		},
	}
	plugin.newHttp = func(uint32) types.HttpContext {
		return &httpFuncs{reqHeaders: func(int, bool) types.Action {
			id, err := proxywasm.ResolveSharedQueue("", "events")
			if err != nil {
				proxywasm.LogErrorf("resolve: %v", err)
			}
			path, _ := proxywasm.GetHttpRequestHeader(":path")
			proxywasm.EnqueueSharedQueue(id, []byte(path))
			// The notification comes after this callback, never in the
			// middle of it.
			proxywasm.LogInfof("enqueued, %d delivered", len(ready))
			return types.ActionContinue
		}}
	}
	host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext { return plugin }))
	host.StartPlugin()
	if !errors.Is(resolveErr, types.ErrorStatusNotFound) {
		t.Errorf("resolving an absent queue: %v", resolveErr)
	}
	if id, err := host.ResolveSharedQueue("events"); err != nil || id != queueID {
		t.Fatalf("ResolveSharedQueue = %d, %v; the plugin registered %d", id, err, queueID)
	}
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, pairs(":path", "/a"), true)
	if !reflect.DeepEqual(ready, []string{"/a"}) || host.GetQueueSize(queueID) != 0 {
		t.Errorf("after the request: delivered %q, %d left", ready, host.GetQueueSize(queueID))
	}
	if got := host.GetInfoLogs(); !reflect.DeepEqual(got, []string{"enqueued, 0 delivered"}) {
		t.Errorf("logs %q", got)
	}
	// From the test, as another plugin would.
	if err := host.EnqueueSharedQueue(queueID, []byte("from-test")); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ready, []string{"/a", "from-test"}) {
		t.Errorf("delivered %q", ready)
	}
	if err := host.EnqueueSharedQueue(9999, nil); !errors.Is(err, types.ErrorStatusNotFound) {
		t.Errorf("enqueue to an unknown queue: %v", err)
	}
	if _, err := host.DequeueSharedQueue(queueID); !errors.Is(err, types.ErrorStatusEmpty) {
		t.Errorf("dequeue from an empty queue: %v", err)
	}
}

func TestQueueSizeCountsWhatNobodyDequeued(t *testing.T) {
	var id uint32
	host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext {
		return &pluginFuncs{tick: func() {
			id, _ = proxywasm.RegisterSharedQueue("q")
			proxywasm.EnqueueSharedQueue(id, []byte("x"))
		}}
	}))
	host.Tick()
	host.Tick()
	if host.GetQueueSize(id) != 2 {
		t.Errorf("queue size %d, want 2", host.GetQueueSize(id))
	}
	if b, err := host.DequeueSharedQueue(id); err != nil || string(b) != "x" || host.GetQueueSize(id) != 1 {
		t.Errorf("dequeue: %q %v, size %d", b, err, host.GetQueueSize(id))
	}
}

func TestMetrics(t *testing.T) {
	var errs []string
	try := func(name string, f func()) {
		defer func() {
			if r := recover(); r != nil {
				errs = append(errs, name)
			}
		}()
		f()
	}
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(&vmFuncs{start: func(int) types.OnVMStartStatus {
		c := proxywasm.DefineCounterMetric("requests_total")
		c.Increment(2)
		c.Increment(3)
		g := proxywasm.DefineGaugeMetric("in_flight")
		g.Add(5)
		g.Add(-2)
		h := proxywasm.DefineHistogramMetric("size")
		h.Record(10)
		h.Record(42)
		if c.Value() != 5 || g.Value() != 3 {
			proxywasm.LogErrorf("values %d %d", c.Value(), g.Value())
		}
		if proxywasm.DefineCounterMetric("requests_total") != c {
			proxywasm.LogError("redefining gave another metric")
		}
		try("counter by 0", func() { c.Increment(0) })
		try("histogram value", func() { h.Value() })
		try("gauge named like the counter", func() { proxywasm.DefineGaugeMetric("requests_total") })
		return types.OnVMStartStatusOK
	}}))
	host.StartVM()
	if logs := host.GetErrorLogs(); len(logs) != 0 {
		t.Error(logs)
	}
	if want := []string{"counter by 0", "histogram value", "gauge named like the counter"}; !reflect.DeepEqual(errs, want) {
		t.Errorf("host errors on %q, want %q (Envoy's rules)", errs, want)
	}
	for _, c := range []struct {
		get  func(string) (uint64, error)
		name string
		want uint64
	}{
		{host.GetCounterMetric, "requests_total", 5},
		{host.GetGaugeMetric, "in_flight", 3},
		{host.GetHistogramMetric, "size", 42},
	} {
		if v, err := c.get(c.name); err != nil || v != c.want {
			t.Errorf("%s = %d, %v; want %d", c.name, v, err, c.want)
		}
	}
	if _, err := host.GetGaugeMetric("requests_total"); err == nil || !strings.Contains(err.Error(), "is a counter, not a gauge") {
		t.Errorf("wrong type: %v", err)
	}
	if _, err := host.GetCounterMetric("absent"); err == nil {
		t.Error("an absent metric read without error")
	}
}

func uint64LE(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func TestProperties(t *testing.T) {
	var got []string
	h := &httpFuncs{reqHeaders: func(int, bool) types.Action {
		read := func(path ...string) {
			v, err := proxywasm.GetProperty(path)
			got = append(got, strings.Join(path, ".")+"="+string(v)+errString(err))
		}
		read("route_metadata", "filter_metadata", "envoy.filters.http.wasm", "tenant")
		read("request", "path")
		proxywasm.SetProperty([]string{"wasm", "decision"}, []byte("allow"))
		m, err := proxywasm.GetPropertyMap([]string{"request", "headers"})
		got = append(got, "headers="+strings.Join(m[0][:], ":")+errString(err))
		return types.ActionContinue
	}}
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(httpPlugin(h)).
		WithProperty([]string{"route_metadata", "filter_metadata", "envoy.filters.http.wasm", "tenant"}, []byte("acme")).
		WithProperty([]string{"request", "headers"}, serializePairs(pairs("x-a", "1"))))
	if err := host.SetProperty([]string{"request", "size"}, uint64LE(12)); err != nil {
		t.Fatal(err)
	}
	host.CallOnRequestHeaders(host.InitializeHttpContext(), nil, true)
	want := []string{
		"route_metadata.filter_metadata.envoy.filters.http.wasm.tenant=acme",
		"request.path= (not found)",
		"headers=x-a:1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the plugin read %q, want %q", got, want)
	}
	if v, err := host.GetProperty([]string{"wasm", "decision"}); err != nil || string(v) != "allow" {
		t.Errorf("the property the plugin set: %q, %v", v, err)
	}
	if v, _ := host.GetProperty([]string{"request", "size"}); binary.LittleEndian.Uint64(v) != 12 {
		t.Errorf("request.size %v", v)
	}
	if m, err := host.GetPropertyMap([]string{"request", "headers"}); err != nil || !reflect.DeepEqual(m, pairs("x-a", "1")) {
		t.Errorf("GetPropertyMap %q %v", m, err)
	}
	if _, err := host.GetPropertyMap([]string{"wasm", "decision"}); err == nil {
		t.Error("a string property read as a map")
	}
	for _, bad := range []func() error{
		func() error { return host.SetProperty(nil, []byte("x")) },
		func() error { return host.SetProperty([]string{"a"}, nil) },
		func() error { _, err := host.GetProperty(nil); return err },
	} {
		if err := bad(); !errors.Is(err, types.ErrorStatusBadArgument) {
			t.Errorf("bad property call: %v", err)
		}
	}
}

func errString(err error) string {
	if errors.Is(err, types.ErrorStatusNotFound) {
		return " (not found)"
	}
	if err != nil {
		return " (" + err.Error() + ")"
	}
	return ""
}

// serializePairs is the header-pair encoding, written out here so the
// test does not trust the code it tests.
func serializePairs(p [][2]string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(p)))
	for _, kv := range p {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(kv[0])))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(kv[1])))
	}
	for _, kv := range p {
		b = append(append(append(append(b, kv[0]...), 0), kv[1]...), 0)
	}
	return b
}

func TestForeignFunctions(t *testing.T) {
	var results []string
	host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext {
		return &pluginFuncs{tick: func() {
			for _, name := range []string{"upper", "absent"} {
				r, err := proxywasm.CallForeignFunction(name, []byte("abc"))
				results = append(results, name+"="+string(r)+errString(err))
			}
		}}
	}))
	host.RegisterForeignFunction("upper", func(b []byte) []byte { return []byte(strings.ToUpper(string(b))) })
	host.Tick()
	if want := []string{"upper=ABC", "absent= (not found)"}; !reflect.DeepEqual(results, want) {
		t.Errorf("results %q, want %q", results, want)
	}
}

func TestTickPeriodBelongsToThePluginContext(t *testing.T) {
	var fromStream, fromRoot error
	plugin := &pluginFuncs{
		done: func() bool { return false },
		tick: func() { fromRoot = proxywasm.SetTickPeriodMilliSeconds(0); proxywasm.PluginDone() },
	}
	plugin.newHttp = func(uint32) types.HttpContext {
		return &httpFuncs{reqHeaders: func(int, bool) types.Action {
			fromStream = proxywasm.SetTickPeriodMilliSeconds(5)
			return types.ActionContinue
		}}
	}
	host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext { return plugin }))
	host.CallOnRequestHeaders(host.InitializeHttpContext(), nil, true)
	if fromStream != nil || host.GetTickPeriod() != 5 {
		t.Errorf("a stream setting the tick period: %v, period %d (Envoy sets its plugin context's)", fromStream, host.GetTickPeriod())
	}
	if host.FinishVM() {
		t.Error("FinishVM returned true")
	}
	host.Tick()
	if fromRoot != nil || host.GetTickPeriod() != 0 {
		t.Errorf("tick: %v, period %d", fromRoot, host.GetTickPeriod())
	}
}
