package proxytest_test

import (
	"os"
	"reflect"
	"testing"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
	"github.com/wasmproxy/wasmproxy/wasmtest"
	"github.com/wasmproxy/wasmproxy/wasmtest/proxytest"
)

// onRealHost loads the kitchen plugin for wasmproxy's host (no OnEmulator).
func onRealHost(t *testing.T) proxytest.WasmVMContext {
	t.Helper()
	code, err := os.ReadFile(wasmtest.Build(t, "internal/kitchen/wasm"))
	if err != nil {
		t.Fatal(err)
	}
	vm, err := proxytest.NewWasmVMContext(code)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	return vm
}

// A module given whole to WithVMContext runs on wasmproxy's host, not on
// the emulator: where the two differ, the test sees the host.
func TestCompiledModuleRunsOnWasmproxysHost(t *testing.T) {
	t.Run("trailers after the end of stream never reach the plugin", func(t *testing.T) {
		// The emulator calls the plugin with them; Envoy and wasmproxy
		// have no trailers after a body that ended the stream.
		for _, mode := range []struct {
			name string
			vm   proxytest.WasmVMContext
			want [][2]string
		}{
			{"emulator", compiled(t), pairs("x-keep", "1")},
			{"wasmproxy", onRealHost(t), nil},
		} {
			host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(mode.vm))
			id := host.InitializeHttpContext()
			host.CallOnRequestHeaders(id, pairs(":path", "/headers"), true)
			host.CallOnResponseHeaders(id, pairs(":status", "200"), false)
			host.CallOnResponseBody(id, []byte("x"), true)
			host.CallOnResponseTrailers(id, pairs("x-internal", "secret", "x-keep", "1"))
			if got := host.GetCurrentResponseTrailers(id); !reflect.DeepEqual(got, mode.want) {
				t.Errorf("%s: trailers %q, want %q", mode.name, got, mode.want)
			}
		}
	})
	t.Run("a trap fails the stream as the proxy does", func(t *testing.T) {
		host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(onRealHost(t)))
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, pairs(":path", "/panic"), true)
		want := &proxytest.LocalHttpResponse{StatusCode: 503, StatusCodeDetail: "wasm_fail_stream", GRPCStatus: -1}
		if got := host.GetSentLocalResponse(id); !reflect.DeepEqual(got, want) {
			t.Errorf("local response %+v, want %+v", got, want)
		}
	})
	t.Run("properties the test sets reach the plugin through the host", func(t *testing.T) {
		tenant := []string{"route_metadata", "filter_metadata", "envoy.filters.http.wasm", "tenant"}
		host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(onRealHost(t)).WithProperty(tenant, []byte("acme")))
		id := host.InitializeHttpContext()
		if a := host.CallOnRequestHeaders(id, pairs(":path", "/tenant"), true); a != types.ActionContinue {
			t.Fatalf("action %v", a)
		}
		if got := host.GetCurrentRequestHeaders(id); !reflect.DeepEqual(got, pairs(":path", "/tenant", "x-tenant", "acme")) {
			t.Errorf("headers %q", got)
		}
	})
	t.Run("upstream's callout flow on the host's callout machinery", func(t *testing.T) {
		host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(onRealHost(t)))
		id := host.InitializeHttpContext()
		if a := host.CallOnRequestHeaders(id, pairs(":path", "/auth", "x-user", "ann"), true); a != types.ActionPause {
			t.Fatalf("action %v, want Pause", a)
		}
		attrs := host.GetCalloutAttributesFromContext(id)
		if len(attrs) != 1 || attrs[0].Upstream != "auth" {
			t.Fatalf("callouts %+v", attrs)
		}
		host.CallOnHttpCallResponse(attrs[0].CalloutID, pairs(":status", "403"), nil, []byte("no"))
		if got := host.GetSentLocalResponse(id); got == nil || got.StatusCode != 403 {
			t.Errorf("local response %+v", got)
		}
	})
}

// The factory shapes of upstream's examples (vmTest handing over
// vm.NewPluginContext, or a plugin context's NewHttpContext) run the
// module on wasmproxy's host too: a trap fails the stream as the proxy
// does rather than the test.
func TestFactoryShapesRunOnWasmproxysHost(t *testing.T) {
	for name, opt := range map[string]func(vm proxytest.WasmVMContext) *proxytest.EmulatorOption{
		"plugin context factory": func(vm proxytest.WasmVMContext) *proxytest.EmulatorOption {
			return proxytest.NewEmulatorOption().WithPluginContext(vm.NewPluginContext)
		},
		"http context factory": func(vm proxytest.WasmVMContext) *proxytest.EmulatorOption {
			return proxytest.NewEmulatorOption().WithHttpContext(vm.NewPluginContext(1).NewHttpContext)
		},
	} {
		t.Run(name, func(t *testing.T) {
			host := emulate(t, opt(onRealHost(t)))
			id := host.InitializeHttpContext()
			host.CallOnRequestHeaders(id, pairs(":path", "/panic"), true)
			want := &proxytest.LocalHttpResponse{StatusCode: 503, StatusCodeDetail: "wasm_fail_stream", GRPCStatus: -1}
			if got := host.GetSentLocalResponse(id); !reflect.DeepEqual(got, want) {
				t.Errorf("local response %+v, want %+v", got, want)
			}
		})
	}
}
