package proxytest_test

import (
	"errors"
	"testing"
	"unsafe"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/proxytest"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// TestReadIntoBuffer: the Read* accessors append the header value or the
// body to the caller's buffer, in place when it has the room, leave it
// unchanged on an error, and agree with the Get* accessors.
func TestReadIntoBuffer(t *testing.T) {
	buf := make([]byte, 0, 256)
	var reqCT, respCT, reqBody, respBody, missing []byte
	var missingErr, badErr error
	var inPlace bool
	h := &httpFuncs{
		reqHeaders: func(int, bool) types.Action {
			reqCT, _ = proxywasm.ReadHttpRequestHeader(buf[:0], "Content-Type")
			inPlace = unsafe.SliceData(reqCT) == unsafe.SliceData(buf)
			missing, missingErr = proxywasm.ReadHttpRequestHeader(append(make([]byte, 0, 16), "kept"...), "absent")
			return types.ActionContinue
		},
		reqBody: func(n int, eos bool) types.Action {
			if !eos {
				return types.ActionPause
			}
			reqBody, _ = proxywasm.ReadHttpRequestBody(append(buf[:0], "body:"...), 0, n)
			_, badErr = proxywasm.ReadHttpRequestBody(buf[:0], -1, n)
			return types.ActionContinue
		},
		respHeaders: func(int, bool) types.Action {
			respCT, _ = proxywasm.ReadHttpResponseHeader(nil, "content-type") // no buffer: allocated
			return types.ActionContinue
		},
		respBody: func(n int, eos bool) types.Action {
			respBody, _ = proxywasm.ReadHttpResponseBody(make([]byte, 0, 2), 1, 3) // too small: grown
			return types.ActionContinue
		},
	}
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(httpPlugin(h)))
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, pairs(":path", "/", "content-type", "application/json"), false)
	if string(reqCT) != "application/json" || !inPlace {
		t.Errorf("request content-type %q (in the caller's buffer: %v)", reqCT, inPlace)
	}
	if !errors.Is(missingErr, types.ErrorStatusNotFound) || string(missing) != "kept" {
		t.Errorf("missing header: %q, %v; want the buffer unchanged and NotFound", missing, missingErr)
	}
	host.CallOnRequestBody(id, []byte(`{"id": `), false)
	host.CallOnRequestBody(id, []byte(`1}`), true)
	if string(reqBody) != `body:{"id": 1}` {
		t.Errorf("request body %q", reqBody)
	}
	if !errors.Is(badErr, types.ErrorStatusBadArgument) {
		t.Errorf("negative start: %v", badErr)
	}
	host.CallOnResponseHeaders(id, pairs(":status", "200", "content-type", "text/plain"), false)
	if string(respCT) != "text/plain" {
		t.Errorf("response content-type %q", respCT)
	}
	host.CallOnResponseBody(id, []byte("hello"), true)
	if string(respBody) != "ell" {
		t.Errorf("response body [1:4] = %q", respBody)
	}
}
