package main

// This file is written as a proxy-wasm-go-sdk example's main_test.go is:
// only the proxytest import path differs
// (and the assertions use the standard library where upstream uses
// testify, which wasmproxy does not depend on). vmTest runs every case on the
// Go code and on the compiled module on wasmproxy's host.

import (
	"os"
	"reflect"
	"slices"
	"testing"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
	"github.com/wasmproxy/wasmproxy/wasmtest"
	"github.com/wasmproxy/wasmproxy/wasmtest/proxytest"
)

func TestHeaders(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		opt := proxytest.NewEmulatorOption().WithVMContext(vm).WithPluginConfiguration([]byte("!"))
		host, reset := proxytest.NewHostEmulator(opt)
		defer reset()
		equal(t, types.OnPluginStartStatusOK, host.StartPlugin())

		id := host.InitializeHttpContext()
		action := host.CallOnRequestHeaders(id, [][2]string{{":method", "GET"}, {":path", "/a"}}, true)
		equal(t, types.ActionContinue, action)
		equal(t, [][2]string{{":method", "GET"}, {":path", "/a"}, {"x-bodyguard", "on!"}}, host.GetCurrentRequestHeaders(id))

		action = host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}, {"server", "upstream"}}, true)
		equal(t, types.ActionContinue, action)
		equal(t, [][2]string{{":status", "200"}, {"server", "bodyguard"}}, host.GetCurrentResponseHeaders(id))
		host.CompleteHttpContext(id)

		equal(t, []string{`bodyguard started: "!"`, "request /a"}, host.GetInfoLogs())
		n, err := host.GetCounterMetric("bodyguard_requests")
		noError(t, err)
		equal(t, uint64(1), n)
	})
}

func TestBodyInChunks(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vm))
		defer reset()
		equal(t, types.OnPluginStartStatusOK, host.StartPlugin())

		t.Run("allowed", func(t *testing.T) {
			id := host.InitializeHttpContext()
			equal(t, types.ActionContinue, host.CallOnRequestHeaders(id, [][2]string{{":path", "/up"}}, false))
			equal(t, types.ActionPause, host.CallOnRequestBody(id, []byte("hello "), false))
			equal(t, types.ActionContinue, host.CallOnRequestBody(id, []byte("world"), true))
			equal(t, "hello world", string(host.GetCurrentRequestBody(id)))
			if r := host.GetSentLocalResponse(id); r != nil {
				t.Fatalf("local response %+v", r)
			}
			host.CompleteHttpContext(id)
		})
		t.Run("refused", func(t *testing.T) {
			id := host.InitializeHttpContext()
			host.CallOnRequestHeaders(id, [][2]string{{":path", "/up"}}, false)
			equal(t, types.ActionPause, host.CallOnRequestBody(id, []byte("a forb"), false))
			equal(t, types.ActionPause, host.CallOnRequestBody(id, []byte("idden word"), true))
			local := host.GetSentLocalResponse(id)
			if local == nil {
				t.Fatal("no local response")
			}
			equal(t, uint32(403), local.StatusCode)
			equal(t, "no", string(local.Data))
			equal(t, [][2]string{{"x-why", "forbidden word"}}, local.Headers)
			host.CompleteHttpContext(id)
		})
		if logs := host.GetInfoLogs(); !slices.Contains(logs, "body of 16 bytes") {
			t.Fatalf("no body log in %q", logs)
		}
		n, err := host.GetCounterMetric("bodyguard_requests")
		noError(t, err)
		equal(t, uint64(2), n)
	})
}

// vmTest runs f on the plugin's Go code, then on the plugin compiled for
// wasip1 (built from this folder once per test process, as upstream's
// examples load main.wasm) on wasmproxy's host.
func vmTest(t *testing.T, f func(*testing.T, types.VMContext)) {
	t.Helper()
	t.Run("go", func(t *testing.T) { f(t, &vmContext{}) })
	t.Run("wasm", func(t *testing.T) {
		wasm, err := os.ReadFile(wasmtest.Build(t, "."))
		noError(t, err)
		v, err := proxytest.NewWasmVMContext(wasm)
		noError(t, err)
		defer v.Close()
		f(t, v)
	})
}

func equal(t *testing.T, want, got any) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("got %#v, want %#v", got, want)
	}
}

func noError(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
