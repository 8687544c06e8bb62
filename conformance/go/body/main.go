// Command body is the Go SDK conformance plugin for HTTP body buffers:
// it buffers each body to its end, prepends "[go]" to the request body and
// appends "[go was here]\n" to the response body (conformance/README.md,
// area "body").
package main

import (
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &stream{} })
}

type stream struct{ types.DefaultHttpContext }

func (*stream) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	if !endOfStream {
		return types.ActionPause // buffer: see the whole body at once
	}
	if bodySize > 0 {
		body, err := proxywasm.GetHttpRequestBody(0, bodySize)
		if err != nil || len(body) != bodySize {
			panic("request body: short read")
		}
		if err := proxywasm.PrependHttpRequestBody([]byte("[go]")); err != nil {
			panic(err)
		}
	}
	return types.ActionContinue
}

func (*stream) OnHttpResponseHeaders(int, bool) types.Action {
	// The body changes length below, so content-length must go.
	if err := proxywasm.RemoveHttpResponseHeader("content-length"); err != nil {
		panic(err)
	}
	return types.ActionContinue
}

func (*stream) OnHttpResponseBody(_ int, endOfStream bool) types.Action {
	if !endOfStream {
		return types.ActionPause
	}
	if err := proxywasm.AppendHttpResponseBody([]byte("[go was here]\n")); err != nil {
		panic(err)
	}
	return types.ActionContinue
}
