// Command headers is the Go SDK conformance plugin for header maps:
// add, replace and remove on request and response headers, reading all
// pairs and the map size (conformance/README.md, area "headers").
package main

import (
	"strconv"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &stream{} })
}

type stream struct{ types.DefaultHttpContext }

func (*stream) OnHttpRequestHeaders(numHeaders int, _ bool) types.Action {
	// Counted before any edit, so they describe the map the callback got.
	pairs, err := proxywasm.GetHttpRequestHeaders()
	must(err)
	size := 0
	for _, p := range pairs {
		size += len(p[0]) + len(p[1])
	}
	must(proxywasm.AddHttpRequestHeader("x-conf-lang", "go"))
	must(proxywasm.ReplaceHttpRequestHeader("x-conf-replace", "replaced"))
	must(proxywasm.RemoveHttpRequestHeader("x-conf-remove"))
	must(proxywasm.AddHttpRequestHeader("x-conf-pairs", strconv.Itoa(len(pairs))))
	must(proxywasm.AddHttpRequestHeader("x-conf-pairs-bytes", strconv.Itoa(size)))
	must(proxywasm.AddHttpRequestHeader("x-conf-num-headers", strconv.Itoa(numHeaders)))
	return types.ActionContinue
}

func (*stream) OnHttpResponseHeaders(int, bool) types.Action {
	must(proxywasm.AddHttpResponseHeader("x-conf-resp-lang", "go"))
	must(proxywasm.RemoveHttpResponseHeader("x-upstream-remove"))
	must(proxywasm.ReplaceHttpResponseHeader("x-upstream-replace", "replaced-by-go"))
	return types.ActionContinue
}

// must makes a failed host call visible: the trap fails the stream (503).
func must(err error) {
	if err != nil {
		panic(err)
	}
}
