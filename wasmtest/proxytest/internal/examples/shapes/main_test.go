package main

// Written as proxy-wasm-go-sdk's examples write their main_test.go (only
// the proxytest import path differs, and the standard library replaces
// testify): each test drives the plugin the way one of those examples'
// tests does, and the helpers at the end run it on the Go code and on the
// compiled module on wasmproxy's host, in the shape the example's vmTest
// hands the plugin over (a VMContext, or a context factory).

import (
	"os"
	"reflect"
	"slices"
	"testing"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
	"github.com/wasmproxy/wasmproxy/wasmtest"
	"github.com/wasmproxy/wasmproxy/wasmtest/proxytest"
)

// http_body's and json_validation's shape: a body callback is the first
// the context gets.
func TestBodyWithoutHeaders(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vm))
		defer reset()
		equal(t, types.OnPluginStartStatusOK, host.StartPlugin())

		t.Run("pause until the end", func(t *testing.T) {
			id := host.InitializeHttpContext()
			equal(t, types.ActionPause, host.CallOnRequestBody(id, []byte("abc"), false))
			equal(t, types.ActionContinue, host.CallOnRequestBody(id, []byte("def"), true))
			equal(t, "ABCDEF", string(host.GetCurrentRequestBody(id)))
			contains(t, host.GetInfoLogs(), "request body of 6 bytes")
		})
		t.Run("refused", func(t *testing.T) {
			id := host.InitializeHttpContext()
			equal(t, types.ActionPause, host.CallOnRequestBody(id, []byte("a forbidden word"), true))
			local := host.GetSentLocalResponse(id)
			if local == nil {
				t.Fatal("no local response")
			}
			equal(t, uint32(403), local.StatusCode)
			equal(t, "no", string(local.Data))
			equal(t, [][2]string{{"x-why", "forbidden word"}}, local.Headers)
		})
		t.Run("response body after request headers", func(t *testing.T) {
			id := host.InitializeHttpContext()
			equal(t, types.ActionContinue, host.CallOnRequestHeaders(id, [][2]string{{":path", "/"}}, true))
			equal(t, types.ActionPause, host.CallOnResponseBody(id, []byte("hello"), false))
			equal(t, types.ActionContinue, host.CallOnResponseBody(id, nil, true))
			equal(t, "hello [shapes]", string(host.GetCurrentResponseBody(id)))
		})
	})
}

// http_headers' and multiple_dispatches' shape: the response is the first
// the context sees, and the plugin holds it on a fan out of callouts.
func TestResponseWithoutRequest(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vm))
		defer reset()

		id := host.InitializeHttpContext()
		action := host.CallOnResponseHeaders(id, [][2]string{{"x-fanout", "3"}, {"key", "value"}}, false)
		equal(t, types.ActionPause, action)
		callouts := host.GetCalloutAttributesFromContext(id)
		equal(t, 3, len(callouts))
		equal(t, fanOutCluster, callouts[2].Upstream)
		equal(t, types.ActionPause, host.GetCurrentHttpStreamAction(id))
		for _, c := range callouts {
			host.CallOnHttpCallResponse(c.CalloutID, nil, nil, nil)
		}
		equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id))
		equal(t, [][2]string{{"x-fanout", "3"}, {"key", "value"}, {"x-shapes", "on"}, {"x-parts", "done"}}, host.GetCurrentResponseHeaders(id))
		host.CompleteHttpContext(id)
		logs := host.GetInfoLogs()
		contains(t, logs, "2 parts pending")
		contains(t, logs, "response resumed after the fan out")
		contains(t, logs, "stream done")
	})
}

// metrics' and shared_data's shape: several requests on one context.
func TestRequestsOnOneContext(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vm))
		defer reset()
		equal(t, types.OnPluginStartStatusOK, host.StartPlugin())

		id := host.InitializeHttpContext()
		for range 3 {
			equal(t, types.ActionContinue, host.CallOnRequestHeaders(id, [][2]string{{":path", "/"}}, false))
		}
		n, err := host.GetCounterMetric("shapes_requests")
		noError(t, err)
		equal(t, uint64(3), n)
		v, _, err := host.GetSharedData(counterKey)
		noError(t, err)
		equal(t, "3", string(v))
		queue, err := host.ResolveSharedQueue("shapes")
		noError(t, err)
		equal(t, 3, host.GetQueueSize(queue))
		contains(t, host.GetInfoLogs(), "request 3")
	})
}

// dispatch_call_on_tick's shape: a callout on every tick, each answered
// as "the first" of the plugin context's calls (upstream's emulator reuses
// an answered call's id and keeps listing answered calls).
func TestCalloutOnEveryTick(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vm))
		defer reset()
		equal(t, types.OnPluginStartStatusOK, host.StartPlugin())
		equal(t, uint32(tickPeriod), host.GetTickPeriod())

		for i := 1; i <= 3; i++ {
			host.Tick()
			attrs := host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
			equal(t, i, len(attrs))
			equal(t, uint32(0), attrs[0].CalloutID)
			host.CallOnHttpCallResponse(attrs[0].CalloutID, nil, nil, nil)
		}
		logs := host.GetInfoLogs()
		contains(t, logs, "tick 1 answered")
		contains(t, logs, "tick 3 answered")
	})
}

// foreign_call_on_tick's shape: a foreign function the test registers.
func TestForeignFunctionOnTick(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vm))
		defer reset()
		var asked []string
		host.RegisterForeignFunction("clock", func(b []byte) []byte {
			asked = append(asked, string(b))
			return []byte("12:00 " + string(b))
		})
		equal(t, types.OnPluginStartStatusOK, host.StartPlugin())
		host.Tick()
		host.Tick()
		equal(t, []string{"utc", "utc"}, asked)
		logs := host.GetInfoLogs()
		contains(t, logs, "tick 1 at 12:00 utc")
		contains(t, logs, "tick 2 at 12:00 utc")
	})
}

// properties' shape: the route's metadata comes from the test, set before
// the plugin starts and changed between requests.
func TestPropertiesFromTheTest(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		opt := proxytest.NewEmulatorOption().WithVMContext(vm).WithProperty(tenantPath, []byte("acme"))
		host, reset := proxytest.NewHostEmulator(opt)
		defer reset()

		id := host.InitializeHttpContext()
		equal(t, types.ActionContinue, host.CallOnRequestHeaders(id, [][2]string{{"x-user", "ann"}}, false))
		contains(t, host.GetInfoLogs(), "tenant acme, user ann")

		noError(t, host.SetProperty(tenantPath, []byte("globex")))
		v, err := host.GetProperty(tenantPath)
		noError(t, err)
		equal(t, "globex", string(v))
		id = host.InitializeHttpContext()
		equal(t, types.ActionPause, host.CallOnRequestHeaders(id, nil, false))
		local := host.GetSentLocalResponse(id)
		if local == nil {
			t.Fatal("no local response")
		}
		equal(t, uint32(401), local.StatusCode)
		equal(t, [][2]string{{"x-tenant", "globex"}}, local.Headers)
		_, err = host.GetProperty([]string{"no", "such"})
		equal(t, types.ErrorStatusNotFound, err)
	})
}

// http_auth_random's shape, with a reply that carries trailers.
func TestAuthByCalloutWithTrailers(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		opt := proxytest.NewEmulatorOption().WithVMContext(vm).WithProperty(tenantPath, []byte("acme"))
		host, reset := proxytest.NewHostEmulator(opt)
		defer reset()

		id := host.InitializeHttpContext()
		equal(t, types.ActionPause, host.CallOnRequestHeaders(id, [][2]string{{"authorization", "t0k"}}, true))
		attrs := host.GetCalloutAttributesFromContext(id)
		equal(t, 1, len(attrs))
		equal(t, "auth", attrs[0].Upstream)
		if !slices.Contains(attrs[0].Headers, [2]string{"x-tenant", "acme"}) {
			t.Fatalf("callout headers %q", attrs[0].Headers)
		}
		host.CallOnHttpCallResponse(attrs[0].CalloutID, [][2]string{{":status", "401"}}, [][2]string{{"x-why", "expired"}}, nil)
		local := host.GetSentLocalResponse(id)
		if local == nil {
			t.Fatal("no local response")
		}
		equal(t, uint32(403), local.StatusCode)
		equal(t, "expired", string(local.Data))
		contains(t, host.GetInfoLogs(), "auth answered 401 with 1 trailers")
	})
}

// helloworld's shape: the plugin context factory.
func TestPluginContextFactory(t *testing.T) {
	pluginTest(t, func(t *testing.T, pc types.PluginContextFactory) {
		host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithPluginContext(pc))
		defer reset()
		equal(t, types.OnPluginStartStatusOK, host.StartPlugin())
		equal(t, uint32(tickPeriod), host.GetTickPeriod())
		contains(t, host.GetInfoLogs(), "shapes started")
	})
}

// properties' shape in proxy-wasm-go-sdk: the HTTP context factory, and
// a property set by the test between requests.
func TestHttpContextFactory(t *testing.T) {
	httpTest(t, func(t *testing.T, h types.HttpContextFactory) {
		host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithHttpContext(h))
		defer reset()

		id := host.InitializeHttpContext()
		equal(t, types.ActionContinue, host.CallOnRequestHeaders(id, nil, false))
		host.CompleteHttpContext(id)
		contains(t, host.GetInfoLogs(), "no tenant for this route")

		noError(t, host.SetProperty(tenantPath, []byte("acme")))
		id = host.InitializeHttpContext()
		equal(t, types.ActionContinue, host.CallOnRequestHeaders(id, [][2]string{{"x-user", "bob"}}, false))
		host.CompleteHttpContext(id)
		contains(t, host.GetInfoLogs(), "tenant acme, user bob")
	})
}

// network's shape: the TCP context factory.
func TestTcpContextFactory(t *testing.T) {
	tcpTest(t, func(t *testing.T, f types.TcpContextFactory) {
		host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithTcpContext(f))
		defer reset()
		id, action := host.InitializeConnection()
		equal(t, types.ActionContinue, action)
		equal(t, types.ActionContinue, host.CallOnDownstreamData(id, []byte("hello ")))
		equal(t, types.ActionContinue, host.CallOnDownstreamData(id, []byte("tcp")))
		equal(t, "HELLO TCP", string(host.GetForwardedDownstreamData(id)))
		host.CompleteConnection(id)
	})
}

// compiled loads the plugin built for wasip1 from this folder (once per
// test process), as upstream's examples load main.wasm.
func compiled(t *testing.T) proxytest.WasmVMContext {
	t.Helper()
	wasm, err := os.ReadFile(wasmtest.Build(t, "."))
	noError(t, err)
	v, err := proxytest.NewWasmVMContext(wasm)
	noError(t, err)
	t.Cleanup(func() { v.Close() })
	return v
}

// vmTest runs f on the plugin's Go code, then on the compiled plugin on
// wasmproxy's host.
func vmTest(t *testing.T, f func(*testing.T, types.VMContext)) {
	t.Helper()
	t.Run("go", func(t *testing.T) { f(t, &vmContext{}) })
	t.Run("wasm", func(t *testing.T) { f(t, compiled(t)) })
}

// pluginTest is helloworld's vmTest: a plugin context factory.
func pluginTest(t *testing.T, f func(*testing.T, types.PluginContextFactory)) {
	t.Helper()
	t.Run("go", func(t *testing.T) {
		f(t, func(uint32) types.PluginContext { return newPluginContext() })
	})
	t.Run("wasm", func(t *testing.T) { f(t, compiled(t).NewPluginContext) })
}

// httpTest is properties' vmTest: an HTTP context factory.
func httpTest(t *testing.T, f func(*testing.T, types.HttpContextFactory)) {
	t.Helper()
	t.Run("go", func(t *testing.T) {
		f(t, func(uint32) types.HttpContext { return &httpContext{} })
	})
	t.Run("wasm", func(t *testing.T) {
		p := compiled(t).NewPluginContext(1)
		f(t, p.NewHttpContext)
	})
}

// tcpTest hands over a TCP context factory.
func tcpTest(t *testing.T, f func(*testing.T, types.TcpContextFactory)) {
	t.Helper()
	t.Run("go", func(t *testing.T) {
		f(t, func(uint32) types.TcpContext { return &tcpContext{} })
	})
	t.Run("wasm", func(t *testing.T) {
		p := compiled(t).NewPluginContext(1)
		f(t, p.NewTcpContext)
	})
}

func equal(t *testing.T, want, got any) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("got %#v, want %#v", got, want)
	}
}

func contains(t *testing.T, logs []string, want string) {
	t.Helper()
	if !slices.Contains(logs, want) {
		t.Fatalf("no %q in %q", want, logs)
	}
}

func noError(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
