// Command localreply is the Go SDK conformance plugin for local replies:
// requests under /local are answered by the plugin with 418, a body and
// an extra header, and response headers are marked so a test sees that
// response callbacks run for the local reply too, as in Envoy
// (conformance/README.md, area "localreply").
package main

import (
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &stream{} })
}

type stream struct{ types.DefaultHttpContext }

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	path, err := proxywasm.GetHttpRequestHeader(":path")
	if err != nil {
		panic(err)
	}
	if !strings.HasPrefix(path, "/local") {
		return types.ActionContinue
	}
	if err := proxywasm.SendHttpResponse(418, [][2]string{{"x-conf-local", "go"}}, []byte("local reply from go\n"), -1); err != nil {
		panic(err)
	}
	return types.ActionPause
}

func (*stream) OnHttpResponseHeaders(int, bool) types.Action {
	if err := proxywasm.AddHttpResponseHeader("x-conf-resp-lang", "go"); err != nil {
		panic(err)
	}
	return types.ActionContinue
}
