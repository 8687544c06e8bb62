package proxytest_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
	"github.com/wasmproxy/wasmproxy/wasmtest/proxytest"
)

// proxy-wasm-go-sdk's examples hand the compiled module to the emulator
// in three shapes; each must drive the module.
func TestCompiledModuleShapes(t *testing.T) {
	t.Run("plugin context factory", func(t *testing.T) {
		vm := compiled(t)
		host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(vm.NewPluginContext).
			WithPluginConfiguration([]byte("tick=10")))
		if host.StartPlugin() != types.OnPluginStartStatusOK || host.GetTickPeriod() != 10 {
			t.Errorf("the module's plugin context did not start: period %d", host.GetTickPeriod())
		}
	})
	t.Run("http context factory", func(t *testing.T) {
		vm := compiled(t)
		// Created before any emulator exists, as the properties example
		// does: the module's host calls then fail quietly.
		plugin := vm.NewPluginContext(proxytest.PluginContextID)
		host := emulate(t, proxytest.NewEmulatorOption().WithHttpContext(plugin.NewHttpContext))
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, [][2]string{{":path", "/headers"}}, true)
		if got := host.GetCurrentRequestHeaders(id); !reflect.DeepEqual(got, pairs(":path", "/headers", "x-kitchen", "on", "x-replace", "replaced")) {
			t.Errorf("headers %q", got)
		}
	})
	t.Run("tcp context factory", func(t *testing.T) {
		vm := compiled(t)
		plugin := vm.NewPluginContext(proxytest.PluginContextID)
		host := emulate(t, proxytest.NewEmulatorOption().WithTcpContext(plugin.NewTcpContext))
		id, _ := host.InitializeConnection()
		host.CallOnDownstreamData(id, []byte("x\n"))
		if got := string(host.GetForwardedDownstreamData(id)); got != "> x\n" {
			t.Errorf("forwarded %q", got)
		}
	})
	t.Run("one module, two emulators", func(t *testing.T) {
		vm := compiled(t)
		for _, cfg := range []string{"prefix=1 ", "prefix=2 "} {
			host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vm).WithPluginConfiguration([]byte(cfg)))
			host.StartPlugin()
			id, _ := host.InitializeConnection()
			host.CallOnDownstreamData(id, []byte("x\n"))
			if got, want := string(host.GetForwardedDownstreamData(id)), cfg[len("prefix="):]+"x\n"; got != want {
				t.Errorf("forwarded %q, want %q", got, want)
			}
			reset()
		}
	})
}

func TestCompiledModuleTrapPanicsNamingTheCallback(t *testing.T) {
	vm := compiled(t)
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(vm))
	id := host.InitializeHttpContext()
	defer func() {
		msg, _ := recover().(string)
		for _, want := range []string{"the compiled plugin failed in proxy_on_request_headers", "wasm stack trace"} {
			if !strings.Contains(msg, want) {
				t.Errorf("panic %q does not contain %q", msg, want)
			}
		}
	}()
	host.CallOnRequestHeaders(id, pairs(":path", "/panic"), true)
}

func TestModulesWasmproxyRefusesAreRefused(t *testing.T) {
	for name, code := range map[string][]byte{
		"not wasm": []byte("#!/bin/sh\necho hi\n"),
		// A valid module with no Proxy-Wasm ABI marker: (module).
		"no abi marker": {0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := proxytest.NewWasmVMContext(code)
			if err == nil || !strings.Contains(err.Error(), "wasmproxy cannot run this module") {
				t.Errorf("NewWasmVMContext: %v", err)
			}
		})
	}
}
