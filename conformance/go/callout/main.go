// Command callout is the Go SDK conformance plugin for HTTP callouts: a
// request under /callout is paused while the plugin calls
// /callout-target on cluster "upstream"; the reply's status and body size
// become request headers and the request resumes (conformance/README.md,
// area "callout").
package main

import (
	"strconv"
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &stream{} })
}

type stream struct{ types.DefaultHttpContext }

func add(key, value string) {
	if err := proxywasm.AddHttpRequestHeader(key, value); err != nil {
		panic(err)
	}
}

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	path, err := proxywasm.GetHttpRequestHeader(":path")
	if err != nil || !strings.HasPrefix(path, "/callout") {
		return types.ActionContinue
	}
	headers := [][2]string{{":method", "GET"}, {":path", "/callout-target"}, {":authority", "conformance-upstream"}}
	_, err = proxywasm.DispatchHttpCall("upstream", headers, nil, nil, 5000, func(numHeaders, bodySize, _ int) {
		status := ""
		if numHeaders > 0 {
			headers, _ := proxywasm.GetHttpCallResponseHeaders()
			for _, h := range headers {
				if h[0] == ":status" {
					status = h[1]
				}
			}
		}
		body, _ := proxywasm.GetHttpCallResponseBody(0, bodySize)
		add("x-conf-callout-status", status)
		add("x-conf-callout-body-size", strconv.Itoa(len(body)))
		add("x-conf-lang", "go")
		if err := proxywasm.ResumeHttpRequest(); err != nil {
			panic(err)
		}
	})
	if err != nil {
		add("x-conf-callout-error", err.Error())
		return types.ActionContinue
	}
	return types.ActionPause
}
