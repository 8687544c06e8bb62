package proxytest_test

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
	"github.com/wasmproxy/wasmproxy/wasmtest"
	"github.com/wasmproxy/wasmproxy/wasmtest/proxytest"
	"github.com/wasmproxy/wasmproxy/wasmtest/proxytest/internal/kitchen"
)

// The tests are written as proxy-wasm-go-sdk's examples write theirs: one
// body, run by vmTest against the plugin's Go code and against the same
// code compiled for wasip1. Every assertion holds in both modes.

// vmTest runs f with the kitchen plugin as Go code ("go") and as a
// compiled module ("wasm").
func vmTest(t *testing.T, f func(t *testing.T, vm types.VMContext)) {
	t.Helper()
	t.Run("go", func(t *testing.T) { f(t, kitchen.New()) })
	t.Run("wasm", func(t *testing.T) {
		vm := compiled(t)
		f(t, vm)
	})
}

// compiled builds the kitchen plugin for wasip1 (once per test process)
// and loads it.
func compiled(t *testing.T) proxytest.WasmVMContext {
	t.Helper()
	code, err := os.ReadFile(wasmtest.Build(t, "internal/kitchen/wasm"))
	if err != nil {
		t.Fatal(err)
	}
	// The kitchen plugin exercises what only the emulator offers (gRPC
	// events, histogram values, FinishVM, properties the plugin sets read
	// back by the test): see internal/examples for plugins whose tests
	// run on the real host.
	vm, err := proxytest.NewWasmVMContext(code, proxytest.OnEmulator())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	return vm
}

func emulate(t *testing.T, opt *proxytest.EmulatorOption) proxytest.HostEmulator {
	t.Helper()
	host, reset := proxytest.NewHostEmulator(opt)
	t.Cleanup(reset)
	return host
}

func pairs(kv ...string) [][2]string {
	out := [][2]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, [2]string{kv[i], kv[i+1]})
	}
	return out
}

func expectLogs(t *testing.T, logs []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(logs, w) {
			t.Errorf("no log %q in %q", w, logs)
		}
	}
}

func TestHeaders(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(vm))
		id := host.InitializeHttpContext()
		action := host.CallOnRequestHeaders(id, pairs(":path", "/headers", "X-Replace", "a", "x-drop", "1", "x-replace", "b", "x-drop", "2"), false)
		if action != types.ActionContinue {
			t.Fatalf("request headers: %v", action)
		}
		if got, want := host.GetCurrentRequestHeaders(id), pairs(":path", "/headers", "x-replace", "replaced", "x-kitchen", "on"); !reflect.DeepEqual(got, want) {
			t.Errorf("request headers %q, want %q", got, want)
		}
		host.CallOnRequestTrailers(id, pairs("grpc-status", "0"))
		if got := host.GetCurrentRequestTrailers(id); !reflect.DeepEqual(got, pairs("grpc-status", "0", "x-trailers-seen", "1")) {
			t.Errorf("request trailers %q", got)
		}
		host.CallOnResponseHeaders(id, pairs(":status", "200", "Server", "upstream"), false)
		if got := host.GetCurrentResponseHeaders(id); !reflect.DeepEqual(got, pairs(":status", "200", "server", "upstream", "x-response-headers", "2")) {
			t.Errorf("response headers %q", got)
		}
		host.CallOnResponseBody(id, []byte("hello"), true)
		if got := string(host.GetCurrentResponseBody(id)); got != "hello [kitchen]" {
			t.Errorf("response body %q", got)
		}
		host.CallOnResponseTrailers(id, pairs("x-internal", "secret", "x-keep", "1"))
		if got := host.GetCurrentResponseTrailers(id); !reflect.DeepEqual(got, pairs("x-keep", "1")) {
			t.Errorf("response trailers %q", got)
		}
		host.CompleteHttpContext(id)
		expectLogs(t, host.GetInfoLogs(), "request /headers with 5 headers", fmt.Sprintf("stream %d done: /headers", id))
	})
}

func TestBodyInChunks(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(vm))
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, pairs(":path", "/body", "content-length", "9"), false)
		if got := host.GetCurrentRequestHeaders(id); !reflect.DeepEqual(got, pairs(":path", "/body")) {
			t.Errorf("content-length kept: %q", got)
		}
		for _, chunk := range []string{"abc", "def"} {
			if a := host.CallOnRequestBody(id, []byte(chunk), false); a != types.ActionPause {
				t.Fatalf("chunk %q: %v", chunk, a)
			}
		}
		if a := host.CallOnRequestBody(id, []byte("ghi"), true); a != types.ActionContinue {
			t.Fatalf("last chunk: %v", a)
		}
		if got := string(host.GetCurrentRequestBody(id)); got != "<ABCDEFGHI>" {
			t.Errorf("body %q", got)
		}
		expectLogs(t, host.GetInfoLogs(), "body: abcdefghi")
		if v, err := host.GetHistogramMetric("kitchen_body_bytes"); err != nil || v != 9 {
			t.Errorf("histogram %d, %v", v, err)
		}
	})
}

func TestAuthByHttpCallout(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(vm))
		alice, bob := host.InitializeHttpContext(), host.InitializeHttpContext()
		for id, user := range map[uint32]string{alice: "alice", bob: "bob"} {
			if a := host.CallOnRequestHeaders(id, pairs(":path", "/auth", "x-user", user), true); a != types.ActionPause {
				t.Fatalf("%s: %v", user, a)
			}
		}
		calls := host.GetCalloutAttributesFromContext(alice)
		if len(calls) != 1 || calls[0].Upstream != "auth" ||
			!reflect.DeepEqual(calls[0].Headers, pairs(":method", "GET", ":path", "/check?user=alice", ":authority", "auth.local")) {
			t.Fatalf("alice's callouts %+v", calls)
		}
		host.CallOnHttpCallResponse(calls[0].CalloutID, pairs(":status", "200"), nil, []byte("alice@example.com"))
		if host.GetCurrentHttpStreamAction(alice) != types.ActionContinue || host.GetSentLocalResponse(alice) != nil {
			t.Error("alice was not let through")
		}
		if got := host.GetCurrentRequestHeaders(alice); !reflect.DeepEqual(got, pairs(":path", "/auth", "x-user", "alice", "x-auth-user", "alice@example.com")) {
			t.Errorf("alice's headers %q", got)
		}
		bobCall := host.GetCalloutAttributesFromContext(bob)[0]
		host.CallOnHttpCallResponse(bobCall.CalloutID, pairs(":status", "401"), pairs("x-t", "1"), []byte("unknown user"))
		want := &proxytest.LocalHttpResponse{StatusCode: 403, Data: []byte("forbidden: unknown user"), Headers: pairs("x-denied-by", "kitchen"), GRPCStatus: -1}
		if got := host.GetSentLocalResponse(bob); !reflect.DeepEqual(got, want) {
			t.Errorf("bob's local response %+v, want %+v", got, want)
		}
		expectLogs(t, host.GetInfoLogs(), "auth answered 200 (1 headers, 17 bytes, 0 trailers)", "auth answered 401 (1 headers, 12 bytes, 1 trailers)")
	})
}

func TestCalloutForACompletedStreamIsDropped(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(vm))
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, pairs(":path", "/auth"), true)
		call := host.GetCalloutAttributesFromContext(id)[0].CalloutID
		host.CompleteHttpContext(id)
		host.CallOnHttpCallResponse(call, pairs(":status", "200"), nil, nil)
		for _, l := range host.GetInfoLogs() {
			if strings.HasPrefix(l, "auth answered") {
				t.Errorf("the callback ran after the stream was deleted: %q", l)
			}
		}
	})
}

func TestAuthByGrpc(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(vm))
		ok, failed := host.InitializeHttpContext(), host.InitializeHttpContext()
		host.CallOnRequestHeaders(ok, pairs(":path", "/grpc"), true)
		host.CallOnRequestHeaders(failed, pairs(":path", "/grpc"), true)
		call := host.GetGrpcCalloutAttributesFromContext(ok)[0]
		want := proxytest.GrpcCalloutAttribute{CalloutID: call.CalloutID, Upstream: "authz", ServiceName: "kitchen.Authz", MethodName: "Check",
			InitialMetadata: pairs("x-path", "/grpc"), Messages: [][]byte{[]byte("check")}, Timeout: 1000}
		if !reflect.DeepEqual(call, want) {
			t.Fatalf("gRPC call %+v\nwant %+v", call, want)
		}
		host.CallOnGrpcReceive(call.CalloutID, []byte("granted"))
		if host.GetCurrentHttpStreamAction(ok) != types.ActionContinue ||
			!reflect.DeepEqual(host.GetCurrentRequestHeaders(ok), pairs(":path", "/grpc", "x-authz", "granted")) {
			t.Errorf("granted request: %v %q", host.GetCurrentHttpStreamAction(ok), host.GetCurrentRequestHeaders(ok))
		}
		host.CallOnGrpcClose(host.GetGrpcCalloutAttributesFromContext(failed)[0].CalloutID, types.GrpcStatusUnavailable, "authz is down")
		r := host.GetSentLocalResponse(failed)
		if r == nil || r.StatusCode != 503 || string(r.Data) != "Unavailable: authz is down" || r.GRPCStatus != 14 {
			t.Errorf("failed request's local response %+v", r)
		}
	})
}

func TestSharedDataCounterAndMetrics(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(vm))
		id := host.InitializeHttpContext()
		for range 3 {
			host.CallOnRequestHeaders(id, pairs(":path", "/count"), true)
		}
		// Another plugin moves the counter.
		_, cas, err := host.GetSharedData("count")
		if err != nil {
			t.Fatal(err)
		}
		if err := host.SetSharedData("count", []byte("41"), cas); err != nil {
			t.Fatal(err)
		}
		host.CallOnRequestHeaders(id, pairs(":path", "/count"), true)
		expectLogs(t, host.GetInfoLogs(), "count: 1", "count: 3", "count: 42")
		if v, err := host.GetCounterMetric("kitchen_requests_total"); err != nil || v != 4 {
			t.Errorf("requests counter %d, %v", v, err)
		}
		if _, err := host.GetGaugeMetric("kitchen_requests_total"); err == nil {
			t.Error("the counter read as a gauge")
		}
	})
}

func TestSharedQueue(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(vm))
		if host.StartPlugin() != types.OnPluginStartStatusOK {
			t.Fatal("the plugin did not start")
		}
		queue, err := host.ResolveSharedQueue("events")
		if err != nil {
			t.Fatal(err)
		}
		host.CallOnRequestHeaders(host.InitializeHttpContext(), pairs(":path", "/queue"), true)
		if err := host.EnqueueSharedQueue(queue, []byte("from the test")); err != nil {
			t.Fatal(err)
		}
		expectLogs(t, host.GetInfoLogs(), "event: /queue", "event: from the test")
		if host.GetQueueSize(queue) != 0 {
			t.Errorf("%d items left", host.GetQueueSize(queue))
		}
	})
}

func TestRouteMetadataProperty(t *testing.T) {
	tenant := []string{"route_metadata", "filter_metadata", "envoy.filters.http.wasm", "tenant"}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		t.Run("with a tenant", func(t *testing.T) {
			host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(vm).WithProperty(tenant, []byte("acme")))
			id := host.InitializeHttpContext()
			if a := host.CallOnRequestHeaders(id, pairs(":path", "/tenant"), true); a != types.ActionContinue {
				t.Fatalf("action %v", a)
			}
			if got := host.GetCurrentRequestHeaders(id); !reflect.DeepEqual(got, pairs(":path", "/tenant", "x-tenant", "acme")) {
				t.Errorf("headers %q", got)
			}
			if v, err := host.GetProperty([]string{"kitchen", "tenant"}); err != nil || string(v) != "acme" {
				t.Errorf("the property the plugin set: %q %v", v, err)
			}
		})
		t.Run("without", func(t *testing.T) {
			host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(vm))
			id := host.InitializeHttpContext()
			if a := host.CallOnRequestHeaders(id, pairs(":path", "/tenant"), true); a != types.ActionPause {
				t.Fatalf("action %v", a)
			}
			want := &proxytest.LocalHttpResponse{StatusCode: 404, Data: []byte("unknown tenant"), Headers: pairs("x-reason", "no tenant"), GRPCStatus: -1}
			if got := host.GetSentLocalResponse(id); !reflect.DeepEqual(got, want) {
				t.Errorf("local response %+v", got)
			}
		})
	})
}

func TestTicksPostponeTelemetryAndForeignFunctions(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(vm).WithPluginConfiguration([]byte("tick=250")))
		host.RegisterForeignFunction("now", func([]byte) []byte { return []byte("12:00") })
		if host.StartPlugin() != types.OnPluginStartStatusOK || host.GetTickPeriod() != 250 {
			t.Fatalf("tick period %d", host.GetTickPeriod())
		}
		a, b := host.InitializeHttpContext(), host.InitializeHttpContext()
		host.CallOnRequestHeaders(a, pairs(":path", "/postpone"), true)
		host.CallOnRequestHeaders(b, pairs(":path", "/postpone"), true)
		if v, _ := host.GetGaugeMetric("kitchen_postponed"); v != 2 {
			t.Errorf("postponed gauge %d", v)
		}
		host.Tick()
		for _, id := range []uint32{a, b} {
			if host.GetCurrentHttpStreamAction(id) != types.ActionContinue {
				t.Errorf("stream %d not resumed", id)
			}
			if got := host.GetCurrentRequestHeaders(id); !reflect.DeepEqual(got, pairs(":path", "/postpone", "x-postponed-ticks", "1")) {
				t.Errorf("stream %d headers %q", id, got)
			}
		}
		if v, _ := host.GetGaugeMetric("kitchen_postponed"); v != 0 {
			t.Errorf("postponed gauge %d after the tick", v)
		}
		host.Tick()
		expectLogs(t, host.GetDebugLogs(), "tick 1", "tick 2")
		expectLogs(t, host.GetInfoLogs(), "foreign now: 12:00")

		streams := host.GetGrpcCalloutAttributesFromContext(proxytest.PluginContextID)
		if len(streams) != 1 || !streams[0].Stream || streams[0].MethodName != "Report" ||
			!reflect.DeepEqual(streams[0].Messages, [][]byte{[]byte("tick 1"), []byte("tick 2")}) ||
			!reflect.DeepEqual(streams[0].InitialMetadata, pairs("x-plugin", "kitchen")) {
			t.Fatalf("telemetry stream %+v", streams)
		}
		host.CallOnGrpcReceive(streams[0].CalloutID, []byte("slow down"))
		host.CallOnGrpcClose(streams[0].CalloutID, types.GrpcStatusResourceExhausted, "quota")
		expectLogs(t, host.GetInfoLogs(), "telemetry says slow down", "telemetry closed: ResourceExhausted quota")
		host.Tick() // the stream is gone: the send fails and says so
		expectLogs(t, host.GetWarnLogs(), "telemetry send: not found")
	})
}

func TestVMAndPluginLifecycle(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		t.Run("start and finish", func(t *testing.T) {
			host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(vm).
				WithVMConfiguration([]byte("vm-wide")).WithPluginConfiguration([]byte("prefix=# ")))
			if host.StartVM() != types.OnVMStartStatusOK || host.StartPlugin() != types.OnPluginStartStatusOK {
				t.Fatal("did not start")
			}
			if !host.FinishVM() {
				t.Error("FinishVM: the plugin is not done")
			}
			expectLogs(t, host.GetInfoLogs(), "vm configuration (7 bytes): vm-wide",
				"plugin 1 started with 9 bytes of configuration", "plugin done")
		})
		t.Run("rejected configuration", func(t *testing.T) {
			host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(vm).WithPluginConfiguration([]byte("reject=yes")))
			if host.StartPlugin() != types.OnPluginStartStatusFailed {
				t.Error("the plugin accepted a configuration it rejects")
			}
			expectLogs(t, host.GetWarnLogs(), "configuration rejected")
		})
	})
}

func TestTcpLines(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(vm).WithPluginConfiguration([]byte("prefix=client: ")))
		host.StartPlugin()
		id, a := host.InitializeConnection()
		if a != types.ActionContinue {
			t.Fatalf("new connection: %v", a)
		}
		for _, s := range []struct {
			data string
			want types.Action
		}{{"hel", types.ActionPause}, {"lo\nwor", types.ActionPause}, {"ld\n", types.ActionContinue}, {"quit\n", types.ActionContinue}} {
			if a := host.CallOnDownstreamData(id, []byte(s.data)); a != s.want {
				t.Errorf("downstream %q: %v, want %v", s.data, a, s.want)
			}
		}
		if got := string(host.GetForwardedDownstreamData(id)); got != "client: hello\nclient: world\nclient: quit\n" {
			t.Errorf("forwarded %q", got)
		}
		if down, up := host.GetConnectionCloseRequests(id); !down || up {
			t.Errorf("close requests %v %v", down, up)
		}
		host.CallOnUpstreamData(id, []byte("pong"))
		if got := string(host.GetForwardedUpstreamData(id)); got != "pong" {
			t.Errorf("upstream forwarded %q", got)
		}
		host.CloseDownstreamConnection(id)
		host.CloseUpstreamConnection(id)
		host.CompleteConnection(id)
		expectLogs(t, host.GetInfoLogs(), "connection opened", "upstream sent 4 bytes", "client closed (local)", "upstream closed (local)", "connection done")
	})
}
