// Package main holds the request headers (Pause from on_request_headers)
// while it reads the whole body, then decides: it adds x-tier from the
// JSON body's "tier" and replaces x-body-bytes with the body size. With
// allow_on_headers_stop_iteration the body reaches the plugin while the
// headers wait; without it Envoy stops everything until the plugin
// resumes, which this plugin never does.
package main

import (
	"encoding/json"
	"strconv"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &stream{} })
}

type stream struct{ types.DefaultHttpContext }

func (*stream) OnHttpRequestHeaders(_ int, endOfStream bool) types.Action {
	if endOfStream {
		return types.ActionContinue
	}
	proxywasm.LogInfo("holding headers")
	return types.ActionPause
}

func (*stream) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	if !endOfStream {
		return types.ActionPause // buffer until the whole body is here
	}
	body, err := proxywasm.GetHttpRequestBody(0, bodySize)
	if err != nil {
		proxywasm.LogErrorf("body: %v", err)
		return types.ActionContinue
	}
	var doc struct {
		Tier string `json:"tier"`
	}
	tier := "unknown"
	if json.Unmarshal(body, &doc) == nil && doc.Tier != "" {
		tier = doc.Tier
	}
	if err := proxywasm.AddHttpRequestHeader("x-tier", tier); err != nil {
		proxywasm.LogErrorf("add header: %v", err)
	}
	if err := proxywasm.ReplaceHttpRequestHeader("x-body-bytes", strconv.Itoa(len(body))); err != nil {
		proxywasm.LogErrorf("replace header: %v", err)
	}
	return types.ActionContinue
}
