package proxytest_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/proxytest"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// authPlugin asks the "auth" cluster about every request and lets it
// through on a 200, answers 403 otherwise.
func authPlugin() types.VMContext {
	return &vmFuncs{newPlugin: func(uint32) types.PluginContext {
		return &pluginFuncs{newHttp: func(id uint32) types.HttpContext {
			return &httpFuncs{reqHeaders: func(int, bool) types.Action {
				user, _ := proxywasm.GetHttpRequestHeader("x-user")
				_, err := proxywasm.DispatchHttpCall("auth",
					pairs(":method", "POST", ":path", "/check", ":authority", "auth"),
					[]byte(user), pairs("x-t", "1"), 1500,
					func(numHeaders, bodySize, numTrailers int) {
						headers, _ := proxywasm.GetHttpCallResponseHeaders()
						status := ""
						for _, h := range headers {
							if h[0] == ":status" {
								status = h[1]
							}
						}
						body, _ := proxywasm.GetHttpCallResponseBody(0, bodySize)
						trailers, _ := proxywasm.GetHttpCallResponseTrailers()
						proxywasm.LogInfof("reply %d %d %d: %s %s %q", numHeaders, bodySize, numTrailers, status, body, trailers)
						if status == "200" {
							proxywasm.AddHttpRequestHeader("x-auth", string(body))
							proxywasm.ResumeHttpRequest()
							return
						}
						proxywasm.SendHttpResponse(403, nil, []byte("denied"), -1)
					})
				if err != nil {
					proxywasm.LogErrorf("dispatch: %v", err)
					return types.ActionContinue
				}
				return types.ActionPause
			}}
		}}
	}}
}

func TestAuthByCallout(t *testing.T) {
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(authPlugin()))
	allowed, denied := host.InitializeHttpContext(), host.InitializeHttpContext()
	host.CallOnRequestHeaders(allowed, pairs("x-user", "alice"), true)
	host.CallOnRequestHeaders(denied, pairs("x-user", "mallory"), true)

	calls := host.GetCalloutAttributesFromContext(allowed)
	want := []proxytest.HttpCalloutAttribute{{
		CalloutID: calls[0].CalloutID, Upstream: "auth",
		Headers: pairs(":method", "POST", ":path", "/check", ":authority", "auth"),
		Body:    []byte("alice"), Trailers: pairs("x-t", "1"),
	}}
	if !reflect.DeepEqual(calls, want) {
		t.Fatalf("callouts %+v\nwant %+v", calls, want)
	}
	deniedCall := host.GetCalloutAttributesFromContext(denied)[0].CalloutID
	if deniedCall == calls[0].CalloutID {
		t.Fatal("two pending calls share an id")
	}

	host.CallOnHttpCallResponse(calls[0].CalloutID, pairs(":status", "200"), pairs("X-Done", "y"), []byte("ok:alice"))
	if host.GetCurrentHttpStreamAction(allowed) != types.ActionContinue || host.GetSentLocalResponse(allowed) != nil {
		t.Error("the allowed request was not resumed")
	}
	if got := host.GetCurrentRequestHeaders(allowed); !reflect.DeepEqual(got, pairs("x-user", "alice", "x-auth", "ok:alice")) {
		t.Errorf("allowed request headers %q", got)
	}
	host.CallOnHttpCallResponse(deniedCall, pairs(":status", "401"), nil, nil)
	if r := host.GetSentLocalResponse(denied); r == nil || r.StatusCode != 403 || string(r.Data) != "denied" {
		t.Errorf("denied request: local response %+v", r)
	}
	if host.GetCurrentHttpStreamAction(denied) != types.ActionPause {
		t.Error("the denied request was resumed")
	}
	wantLogs := []string{`reply 1 8 1: 200 ok:alice [["x-done" "y"]]`, `reply 1 0 0: 401  []`}
	if got := host.GetInfoLogs(); !reflect.DeepEqual(got, wantLogs) {
		t.Errorf("logs %q, want %q", got, wantLogs)
	}
}

func TestCalloutOfACompletedStreamIsDropped(t *testing.T) {
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(authPlugin()))
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, nil, true)
	call := host.GetCalloutAttributesFromContext(id)[0].CalloutID
	host.CompleteHttpContext(id)
	host.CallOnHttpCallResponse(call, pairs(":status", "200"), nil, nil)
	if logs := host.GetInfoLogs(); len(logs) != 0 {
		t.Errorf("the callback ran for a deleted context: %q", logs)
	}
}

// Answered calls free their ids, lowest first, and the list keeps every
// call: tests written for proxy-wasm-go-sdk answer "the first call" of a
// context after each tick.
func TestCalloutIDsAreReusedAndListed(t *testing.T) {
	answered := 0
	host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext {
		return &pluginFuncs{tick: func() {
			proxywasm.DispatchHttpCall("c", pairs(":path", "/"), nil, nil, 0, func(int, int, int) { answered++ })
		}}
	}))
	for i := 1; i <= 3; i++ {
		host.Tick()
		calls := host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
		if len(calls) != i {
			t.Fatalf("after %d ticks %d calls listed", i, len(calls))
		}
		host.CallOnHttpCallResponse(calls[0].CalloutID, nil, nil, nil)
		if answered != i {
			t.Fatalf("tick %d: the callback ran %d times", i, answered)
		}
	}
}

func TestGrpcCall(t *testing.T) {
	var results []string
	host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext {
		return &pluginFuncs{tick: func() {
			proxywasm.DispatchGrpcCall("grpc-cluster", "pkg.Svc", "Do", pairs("X-Md", "1"), []byte("req"), 800,
				func(status types.GrpcStatus, size int) {
					if status != types.GrpcStatusOK {
						_, msg, _ := proxywasm.GetGrpcStatus()
						results = append(results, status.String()+": "+msg)
						return
					}
					b, _ := proxywasm.GetGrpcCallResponseBody(0, size)
					results = append(results, "OK "+string(b))
				})
		}}
	}))
	host.Tick()
	host.Tick()
	calls := host.GetGrpcCalloutAttributesFromContext(proxytest.PluginContextID)
	if len(calls) != 2 {
		t.Fatalf("%d gRPC calls", len(calls))
	}
	want := proxytest.GrpcCalloutAttribute{CalloutID: calls[0].CalloutID, Upstream: "grpc-cluster", ServiceName: "pkg.Svc",
		MethodName: "Do", InitialMetadata: pairs("x-md", "1"), Messages: [][]byte{[]byte("req")}, Timeout: 800}
	if !reflect.DeepEqual(calls[0], want) {
		t.Errorf("call %+v\nwant %+v", calls[0], want)
	}
	host.CallOnGrpcReceive(calls[0].CalloutID, []byte("resp"))
	host.CallOnGrpcClose(calls[1].CalloutID, types.GrpcStatusUnavailable, "no backend")
	if want := []string{"OK resp", "Unavailable: no backend"}; !reflect.DeepEqual(results, want) {
		t.Errorf("results %q, want %q", results, want)
	}
	for _, c := range host.GetGrpcCalloutAttributesFromContext(proxytest.PluginContextID) {
		if !c.Done {
			t.Errorf("call %d not done", c.CalloutID)
		}
	}
}

func TestGrpcStream(t *testing.T) {
	var events []string
	var stream uint32
	var errs []error
	host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext {
		return &pluginFuncs{
			start: func(int) types.OnPluginStartStatus {
				var err error
				stream, err = proxywasm.OpenGrpcStream("c", "pkg.Svc", "Watch", nil, proxywasm.GrpcStreamCallbacks{
					OnInitialMetadata: func(n int) {
						md, _ := proxywasm.GetGrpcStreamInitialMetadata()
						events = append(events, "md "+md[0][0]+"="+md[0][1])
					},
					OnMessage: func(size int) {
						b, _ := proxywasm.GetGrpcStreamMessage(0, size)
						events = append(events, "msg "+string(b))
					},
					OnTrailingMetadata: func(n int) {
						md, _ := proxywasm.GetGrpcStreamTrailingMetadata()
						events = append(events, "trailers "+md[0][1])
					},
					OnClose: func(status types.GrpcStatus) {
						_, msg, _ := proxywasm.GetGrpcStatus()
						events = append(events, "close "+status.String()+" "+msg)
					},
				})
				return err == nil
			},
			tick: func() {
				errs = append(errs, proxywasm.SendGrpcStreamMessage(stream, []byte("a"), false))
				errs = append(errs, proxywasm.SendGrpcStreamMessage(stream, []byte("b"), true))
				errs = append(errs, proxywasm.SendGrpcStreamMessage(stream, []byte("c"), false)) // after end of stream
			},
		}
	}))
	host.StartPlugin()
	host.Tick()
	if !errors.Is(errs[2], types.ErrorStatusBadArgument) || errs[0] != nil || errs[1] != nil {
		t.Errorf("send errors %v, want nil, nil, BadArgument", errs)
	}
	s := host.GetGrpcCalloutAttributesFromContext(proxytest.PluginContextID)[0]
	if !s.Stream || !s.HalfClosed || !reflect.DeepEqual(s.Messages, [][]byte{[]byte("a"), []byte("b")}) {
		t.Errorf("stream %+v", s)
	}
	host.CallOnGrpcReceiveInitialMetadata(stream, pairs("K", "v"))
	host.CallOnGrpcReceive(stream, []byte("one"))
	host.CallOnGrpcReceive(stream, []byte("two"))
	host.CallOnGrpcReceiveTrailingMetadata(stream, pairs("grpc-status", "0"))
	host.CallOnGrpcClose(stream, types.GrpcStatusOK, "")
	want := []string{"md k=v", "msg one", "msg two", "trailers 0", "close OK "}
	if !reflect.DeepEqual(events, want) {
		t.Errorf("events %q, want %q", events, want)
	}
}

func TestGrpcCancel(t *testing.T) {
	ran := false
	var id uint32
	var cancelErr, again error
	host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext {
		return &pluginFuncs{tick: func() {
			if id == 0 {
				id, _ = proxywasm.DispatchGrpcCall("c", "s", "m", nil, nil, 0, func(types.GrpcStatus, int) { ran = true })
				return
			}
			cancelErr = proxywasm.CancelGrpcCall(id)
			again = proxywasm.CancelGrpcCall(id)
		}}
	}))
	host.Tick()
	host.Tick()
	if cancelErr != nil || !errors.Is(again, types.ErrorStatusNotFound) {
		t.Errorf("cancel: %v, again: %v", cancelErr, again)
	}
	c := host.GetGrpcCalloutAttributesFromContext(proxytest.PluginContextID)[0]
	if !c.Cancelled || !c.Done {
		t.Errorf("call %+v not cancelled", c)
	}
	defer func() {
		if recover() == nil || ran {
			t.Error("answering a cancelled call did not panic, or ran its callback")
		}
	}()
	host.CallOnGrpcReceive(id, nil)
}

func TestGrpcStreamHalfClose(t *testing.T) {
	var closeErr, sendErr error
	host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext {
		return &pluginFuncs{tick: func() {
			id, _ := proxywasm.OpenGrpcStream("c", "s", "m", pairs("k", "v"), proxywasm.GrpcStreamCallbacks{})
			closeErr = proxywasm.CloseGrpcStream(id)
			sendErr = proxywasm.SendGrpcStreamMessage(id, []byte("late"), false)
		}}
	}))
	host.Tick()
	s := host.GetGrpcCalloutAttributesFromContext(proxytest.PluginContextID)[0]
	if closeErr != nil || !errors.Is(sendErr, types.ErrorStatusBadArgument) {
		t.Errorf("close %v, send after close %v", closeErr, sendErr)
	}
	if !s.HalfClosed || s.Done || s.Cancelled || len(s.Messages) != 0 {
		t.Errorf("stream %+v: want half-closed, still open for responses", s)
	}
	host.CallOnGrpcClose(s.CalloutID, types.GrpcStatusOK, "") // responses still arrive
}

// Tests written for proxy-wasm-go-sdk may compare whole attributes, ids
// included: its emulator numbers HTTP calls from 0.
func TestHttpCalloutIDsCountFromZero(t *testing.T) {
	host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext {
		return &pluginFuncs{tick: func() {
			for range 3 {
				proxywasm.DispatchHttpCall("c", nil, nil, nil, 1000, func(int, int, int) {})
			}
		}}
	}))
	host.Tick()
	var ids []uint32
	for _, c := range host.GetCalloutAttributesFromContext(proxytest.PluginContextID) {
		ids = append(ids, c.CalloutID)
	}
	if !reflect.DeepEqual(ids, []uint32{0, 1, 2}) {
		t.Errorf("ids %v, want 0, 1, 2", ids)
	}
	want := proxytest.HttpCalloutAttribute{CalloutID: 1, Upstream: "c", Headers: [][2]string{}, Trailers: [][2]string{}, Body: []byte{}}
	if got := host.GetCalloutAttributesFromContext(proxytest.PluginContextID)[1]; !reflect.DeepEqual(got, want) {
		t.Errorf("attribute %#v, want %#v", got, want)
	}
}
