package main

// Written as a proxy-wasm-go-sdk example's main_test.go is: only the
// proxytest import path differs (and the standard library replaces
// testify). vmTest runs every case on the Go code and on the compiled
// module on wasmproxy's host.

import (
	"os"
	"reflect"
	"slices"
	"testing"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
	"github.com/wasmproxy/wasmproxy/wasmtest"
	"github.com/wasmproxy/wasmproxy/wasmtest/proxytest"
)

func TestAuthByCallout(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vm))
		defer reset()
		equal(t, types.OnPluginStartStatusOK, host.StartPlugin())

		for _, tc := range []struct {
			token, status string
			allowed       bool
		}{{"good", "200", true}, {"bad", "403", false}} {
			t.Run(tc.token, func(t *testing.T) {
				id := host.InitializeHttpContext()
				action := host.CallOnRequestHeaders(id, [][2]string{{":path", "/x"}, {"authorization", tc.token}}, true)
				equal(t, types.ActionPause, action)

				attrs := host.GetCalloutAttributesFromContext(id)
				equal(t, 1, len(attrs))
				equal(t, "auth", attrs[0].Upstream)
				if !slices.Contains(attrs[0].Headers, [2]string{"x-token", tc.token}) {
					t.Fatalf("callout headers %q", attrs[0].Headers)
				}
				host.CallOnHttpCallResponse(attrs[0].CalloutID, [][2]string{{":status", tc.status}}, nil, nil)

				local := host.GetSentLocalResponse(id)
				if tc.allowed {
					equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id))
					if local != nil {
						t.Fatalf("local response %+v", local)
					}
				} else {
					if local == nil {
						t.Fatal("no local response")
					}
					equal(t, uint32(401), local.StatusCode)
					equal(t, "denied", string(local.Data))
				}
				host.CompleteHttpContext(id)
			})
		}
		equal(t, []string{"allowed", "denied"}, host.GetInfoLogs())
	})
}

func TestCounterTicksAndQueue(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vm))
		defer reset()
		equal(t, types.OnPluginStartStatusOK, host.StartPlugin())
		equal(t, uint32(5000), host.GetTickPeriod())

		for range 2 {
			id := host.InitializeHttpContext()
			host.CallOnRequestHeaders(id, [][2]string{{":path", "/x"}}, true)
			attrs := host.GetCalloutAttributesFromContext(id)
			host.CallOnHttpCallResponse(attrs[0].CalloutID, [][2]string{{":status", "200"}}, nil, nil)
			host.CompleteHttpContext(id)
		}
		v, _, err := host.GetSharedData(countKey)
		noError(t, err)
		equal(t, "2", string(v))

		host.Tick()
		queue, err := host.ResolveSharedQueue("events")
		noError(t, err)
		noError(t, host.EnqueueSharedQueue(queue, []byte("hello")))
		equal(t, []string{"allowed", "allowed", "tick: 2 requests", "event hello"}, host.GetInfoLogs())
	})
}

func TestTcpUppercase(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vm))
		defer reset()
		equal(t, types.OnPluginStartStatusOK, host.StartPlugin())

		id, action := host.InitializeConnection()
		equal(t, types.ActionContinue, action)
		equal(t, types.ActionContinue, host.CallOnDownstreamData(id, []byte("hello ")))
		equal(t, types.ActionContinue, host.CallOnDownstreamData(id, []byte("tcp")))
		equal(t, "HELLO TCP", string(host.GetForwardedDownstreamData(id)))
		host.CompleteConnection(id)
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
