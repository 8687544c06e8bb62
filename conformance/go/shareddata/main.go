// Command shareddata is the Go SDK conformance plugin for shared data: a
// request counter kept under key "hits", incremented with compare-and-swap
// so that every instance of the VM counts into one value
// (conformance/README.md, area "shareddata").
package main

import (
	"errors"
	"strconv"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &stream{} })
}

type stream struct{ types.DefaultHttpContext }

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	for {
		value, cas, err := proxywasm.GetSharedData("hits")
		if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
			panic(err)
		}
		hits, _ := strconv.ParseUint(string(value), 10, 64)
		next := strconv.FormatUint(hits+1, 10)
		err = proxywasm.SetSharedData("hits", []byte(next), cas)
		if errors.Is(err, types.ErrorStatusCasMismatch) {
			continue
		}
		if err != nil {
			panic(err)
		}
		if err := proxywasm.AddHttpRequestHeader("x-conf-hits", next); err != nil {
			panic(err)
		}
		return types.ActionContinue
	}
}
