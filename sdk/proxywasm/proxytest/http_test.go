package proxytest_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/proxytest"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func pairs(p ...string) [][2]string {
	out := [][2]string{}
	for i := 0; i+1 < len(p); i += 2 {
		out = append(out, [2]string{p[i], p[i+1]})
	}
	return out
}

func TestHeaderEditsFollowEnvoy(t *testing.T) {
	var seen [][2]string
	var missing, empty error
	var emptyValue string
	h := &httpFuncs{
		reqHeaders: func(n int, eos bool) types.Action {
			seen, _ = proxywasm.GetHttpRequestHeaders()
			_, missing = proxywasm.GetHttpRequestHeader("absent")
			emptyValue, empty = proxywasm.GetHttpRequestHeader("X-Empty")
			proxywasm.AddHttpRequestHeader("X-Multi", "3")      // a third value, lower-cased key
			proxywasm.ReplaceHttpRequestHeader("x-one", "new")  // replaces every value
			proxywasm.ReplaceHttpRequestHeader("x-new", "made") // adds
			proxywasm.RemoveHttpRequestHeader("x-gone")         // every value
			return types.ActionContinue
		},
		respHeaders: func(int, bool) types.Action {
			proxywasm.ReplaceHttpResponseHeaders(pairs(":status", "201", "Server", "w"))
			return types.ActionContinue
		},
	}
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(httpPlugin(h)))
	id := host.InitializeHttpContext()
	in := pairs(":path", "/", "X-Multi", "1", "x-one", "a", "x-gone", "1", "x-multi", "2", "x-one", "b", "x-gone", "2", "x-empty", "")
	if a := host.CallOnRequestHeaders(id, in, true); a != types.ActionContinue {
		t.Fatalf("action %v", a)
	}
	if want := pairs(":path", "/", "x-multi", "1", "x-one", "a", "x-gone", "1", "x-multi", "2", "x-one", "b", "x-gone", "2", "x-empty", ""); !reflect.DeepEqual(seen, want) {
		t.Errorf("the plugin saw %q, want the keys lower-cased: %q", seen, want)
	}
	if !errors.Is(missing, types.ErrorStatusNotFound) {
		t.Errorf("missing header: %v", missing)
	}
	if empty != nil || emptyValue != "" {
		t.Errorf("empty header: %q %v, want \"\" and no error (Envoy)", emptyValue, empty)
	}
	want := pairs(":path", "/", "x-multi", "1", "x-one", "new", "x-multi", "2", "x-empty", "", "x-multi", "3", "x-new", "made")
	if got := host.GetCurrentRequestHeaders(id); !reflect.DeepEqual(got, want) {
		t.Errorf("request headers\n got %q\nwant %q", got, want)
	}
	host.CallOnResponseHeaders(id, pairs(":status", "200"), false)
	if got := host.GetCurrentResponseHeaders(id); !reflect.DeepEqual(got, pairs(":status", "201", "server", "w")) {
		t.Errorf("response headers %q", got)
	}
}

func TestHeadersOfARequestWithoutAny(t *testing.T) {
	var got [][2]string
	var err error
	h := &httpFuncs{reqHeaders: func(int, bool) types.Action {
		got, err = proxywasm.GetHttpRequestHeaders()
		return types.ActionContinue
	}}
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(httpPlugin(h)))
	host.CallOnRequestHeaders(host.InitializeHttpContext(), nil, true)
	// proxy-wasm-go-sdk's emulator answers an empty list; its tests rely
	// on it.
	if err != nil || len(got) != 0 {
		t.Errorf("GetHttpRequestHeaders = %q, %v; want an empty list", got, err)
	}
}

func TestTrailers(t *testing.T) {
	var reqN, respN int
	h := &httpFuncs{
		reqTrailers: func(n int) types.Action {
			reqN = n
			proxywasm.AddHttpRequestTrailer("x-added", "1")
			v, _ := proxywasm.GetHttpRequestTrailer("grpc-status")
			proxywasm.LogInfo("grpc-status " + v)
			return types.ActionPause
		},
		respTrailers: func(n int) types.Action {
			respN = n
			proxywasm.RemoveHttpResponseTrailer("x-secret")
			proxywasm.ReplaceHttpResponseTrailer("x-count", "2")
			return types.ActionContinue
		},
	}
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(httpPlugin(h)))
	id := host.InitializeHttpContext()
	if a := host.CallOnRequestTrailers(id, pairs("grpc-status", "0")); a != types.ActionPause || reqN != 1 {
		t.Errorf("request trailers: action %v, n %d", a, reqN)
	}
	if a := host.CallOnResponseTrailers(id, pairs("x-secret", "s", "x-count", "1")); a != types.ActionContinue || respN != 2 {
		t.Errorf("response trailers: action %v, n %d", a, respN)
	}
	if got := host.GetCurrentRequestTrailers(id); !reflect.DeepEqual(got, pairs("grpc-status", "0", "x-added", "1")) {
		t.Errorf("request trailers %q", got)
	}
	if got := host.GetCurrentResponseTrailers(id); !reflect.DeepEqual(got, pairs("x-count", "2")) {
		t.Errorf("response trailers %q", got)
	}
	if got := host.GetInfoLogs(); !reflect.DeepEqual(got, []string{"grpc-status 0"}) {
		t.Errorf("logs %q", got)
	}
}

// A plugin that holds the body until its end and then rewrites it sees
// every chunk appended to what it held.
func TestBodyChunksAreBufferedWhilePaused(t *testing.T) {
	var sizes []int
	var seen []string
	h := &httpFuncs{reqBody: func(n int, eos bool) types.Action {
		sizes = append(sizes, n)
		b, err := proxywasm.GetHttpRequestBody(0, n)
		if err != nil {
			seen = append(seen, "<"+err.Error()+">")
		} else {
			seen = append(seen, string(b))
		}
		if !eos {
			return types.ActionPause
		}
		proxywasm.ReplaceHttpRequestBody([]byte("[" + string(b) + "]"))
		return types.ActionContinue
	}}
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(httpPlugin(h)))
	id := host.InitializeHttpContext()
	for _, c := range []string{"ab", "cd"} {
		if a := host.CallOnRequestBody(id, []byte(c), false); a != types.ActionPause {
			t.Fatalf("chunk %q: %v", c, a)
		}
	}
	if a := host.CallOnRequestBody(id, nil, true); a != types.ActionContinue {
		t.Fatalf("last chunk: %v", a)
	}
	if !reflect.DeepEqual(sizes, []int{2, 4, 4}) || !reflect.DeepEqual(seen, []string{"ab", "abcd", "abcd"}) {
		t.Errorf("the plugin saw sizes %v and bodies %q", sizes, seen)
	}
	if got := string(host.GetCurrentRequestBody(id)); got != "[abcd]" {
		t.Errorf("body %q", got)
	}
	// After ActionContinue the next chunk stands alone.
	host.CallOnRequestBody(id, []byte("ef"), true)
	if got := seen[len(seen)-1]; got != "ef" {
		t.Errorf("after continue the plugin saw %q, want only the new chunk", got)
	}
}

func TestBodyEditsFollowEnvoy(t *testing.T) {
	ops := map[string]func() error{
		"append":  func() error { return proxywasm.AppendHttpResponseBody([]byte("+end")) },
		"prepend": func() error { return proxywasm.PrependHttpResponseBody([]byte("start+")) },
		"replace": func() error { return proxywasm.ReplaceHttpResponseBody([]byte("new")) },
		"read past the end": func() error {
			_, err := proxywasm.GetHttpResponseBody(100, 5)
			return err
		},
		"read a slice": func() error {
			b, err := proxywasm.GetHttpResponseBody(2, 3)
			if err == nil {
				err = proxywasm.ReplaceHttpResponseBody(b)
			}
			return err
		},
	}
	want := map[string]struct {
		body string
		err  error
	}{
		"append":            {"body+end", nil},
		"prepend":           {"start+body", nil},
		"replace":           {"new", nil},
		"read past the end": {"body", types.ErrorStatusNotFound},
		"read a slice":      {"dy", nil},
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			var err error
			h := &httpFuncs{respBody: func(int, bool) types.Action { err = op(); return types.ActionContinue }}
			host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(httpPlugin(h)))
			id := host.InitializeHttpContext()
			host.CallOnResponseBody(id, []byte("body"), true)
			if got := string(host.GetCurrentResponseBody(id)); got != want[name].body || !errors.Is(err, want[name].err) && err != want[name].err {
				t.Errorf("body %q, error %v; want %q, %v", got, err, want[name].body, want[name].err)
			}
		})
	}
}

func TestLocalResponse(t *testing.T) {
	h := &httpFuncs{reqHeaders: func(int, bool) types.Action {
		proxywasm.SendHttpResponse(403, pairs("X-Reason", "denied"), []byte("no"), 7)
		proxywasm.SendHttpResponse(500, nil, nil, -1) // ignored: the first one wins
		return types.ActionPause
	}}
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(httpPlugin(h)))
	id := host.InitializeHttpContext()
	if host.GetSentLocalResponse(id) != nil {
		t.Fatal("a local response before any callback")
	}
	host.CallOnRequestHeaders(id, nil, true)
	got := host.GetSentLocalResponse(id)
	want := &proxytest.LocalHttpResponse{StatusCode: 403, Data: []byte("no"), Headers: pairs("x-reason", "denied"), GRPCStatus: 7}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("local response %+v, want %+v", got, want)
	}
	if host.GetCurrentHttpStreamAction(id) != types.ActionPause {
		t.Error("the stream action is not the plugin's Pause")
	}
}

func TestLocalResponseWithoutBodyHasNilData(t *testing.T) {
	h := &httpFuncs{reqHeaders: func(int, bool) types.Action {
		proxywasm.SendHttpResponse(401, nil, nil, -1)
		return types.ActionPause
	}}
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(httpPlugin(h)))
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, nil, false)
	r := host.GetSentLocalResponse(id)
	if r == nil || r.StatusCode != 401 || r.Data != nil || r.Headers != nil || r.GRPCStatus != -1 {
		t.Errorf("local response %+v, want 401 with nil Data and Headers", r)
	}
}

func TestStreamDoneSeesTheStreamAndDeletesIt(t *testing.T) {
	var done []string
	h := &httpFuncs{done: func() {
		p, _ := proxywasm.GetHttpRequestHeader(":path")
		s, _ := proxywasm.GetHttpResponseHeader(":status")
		done = append(done, p+" "+s)
	}}
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(httpPlugin(h)))
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, pairs(":path", "/x"), true)
	host.CallOnResponseHeaders(id, pairs(":status", "204"), true)
	host.CompleteHttpContext(id)
	if !reflect.DeepEqual(done, []string{"/x 204"}) {
		t.Errorf("OnHttpStreamDone saw %q", done)
	}
	if got := host.GetCurrentRequestHeaders(id); !reflect.DeepEqual(got, pairs(":path", "/x")) {
		t.Errorf("the completed stream's headers %q", got)
	}
}

// Postponing: a paused request is resumed from a tick through its
// context (SetEffectiveContext).
func TestResumeFromTickThroughEffectiveContext(t *testing.T) {
	var held []uint32
	var badErr error
	plugin := &pluginFuncs{
		tick: func() {
			badErr = proxywasm.SetEffectiveContext(424242)
			for _, id := range held {
				proxywasm.SetEffectiveContext(id)
				proxywasm.AddHttpRequestHeader("x-resumed", "yes")
				proxywasm.ResumeHttpRequest()
			}
			held = nil
		},
	}
	plugin.newHttp = func(id uint32) types.HttpContext {
		return &httpFuncs{reqHeaders: func(int, bool) types.Action {
			held = append(held, id)
			return types.ActionPause
		}}
	}
	host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext { return plugin }))
	a, b := host.InitializeHttpContext(), host.InitializeHttpContext()
	host.CallOnRequestHeaders(a, nil, true)
	host.CallOnRequestHeaders(b, nil, true)
	if host.GetCurrentHttpStreamAction(a) != types.ActionPause {
		t.Fatal("not paused")
	}
	host.Tick()
	for _, id := range []uint32{a, b} {
		if host.GetCurrentHttpStreamAction(id) != types.ActionContinue {
			t.Errorf("stream %d not resumed", id)
		}
		if got := host.GetCurrentRequestHeaders(id); !reflect.DeepEqual(got, pairs("x-resumed", "yes")) {
			t.Errorf("stream %d headers %q", id, got)
		}
	}
	if !errors.Is(badErr, types.ErrorStatusBadArgument) {
		t.Errorf("SetEffectiveContext(unknown) = %v, want BadArgument", badErr)
	}
}

func TestStreamMapsAreUnavailableFromThePluginContext(t *testing.T) {
	var getErr, addErr error
	host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext {
		return &pluginFuncs{tick: func() {
			_, getErr = proxywasm.GetHttpRequestHeaders()
			addErr = proxywasm.AddHttpRequestHeader("k", "v")
		}}
	}))
	host.Tick()
	if !errors.Is(getErr, types.ErrorStatusNotFound) || !errors.Is(addErr, types.ErrorStatusBadArgument) {
		t.Errorf("from OnTick: get %v, add %v; want NotFound and BadArgument (no stream)", getErr, addErr)
	}
}
